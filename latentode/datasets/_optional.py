"""Import of the optional packages some dataset builders need."""

from __future__ import annotations

import importlib
from types import ModuleType

DATASETS_EXTRA_HINT = 'pip install "latentode[datasets]"'
"""Command that installs every optional package the dataset builders use."""


def import_optional(module_name: str, *, needed_for: str) -> ModuleType:
    """Import an optional dependency, or explain how to install it.

    Parameters
    ----------
    module_name : str
        Dotted name of the module to import, e.g. ``"dm_control.suite"``.
    needed_for : str
        What the module is needed for, used in the error message,
        e.g. ``"make_hopper"``.

    Returns
    -------
    module : types.ModuleType
        The imported module.

    Raises
    ------
    ImportError
        If the module cannot be imported. The message names the
        ``latentode[datasets]`` extra that provides it.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        top_level = module_name.split(".")[0]
        raise ImportError(
            f"{needed_for} needs the optional package {top_level!r}, which could not be imported "
            f"({error}). Install the dataset extras with: {DATASETS_EXTRA_HINT}"
        ) from error
