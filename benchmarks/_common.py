"""Shared by the benchmark scripts: the command line that produced a result, recorded in its JSON."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path


def command_line(script: str, argv: list[str] | None) -> str:
    """``python benchmarks/<script> <arguments>`` with the arguments actually given (``argv`` or sys.argv)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *arguments])


def parse_overrides(items: list[str]) -> dict:
    """``["solver=rk4", "batch_size=100"]`` -> ``{"solver": "rk4", "batch_size": 100}`` (JSON values, else strings)."""
    options = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"--set expects PARAM=VALUE, got {item!r}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
