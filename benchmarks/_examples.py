"""Import an example script as a module, so benchmarks reuse its protocol code instead of copying it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    """The module ``examples/<name>.py`` (registered in ``sys.modules``, which its dataclasses need)."""
    spec = importlib.util.spec_from_file_location(f"latentode_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
