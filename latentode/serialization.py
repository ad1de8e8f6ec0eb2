"""Saving and loading fitted estimators in a format that cannot execute code when loaded.

A model file is a zip archive with two members:

* ``config.json``: the format version, the library version, the estimator class and its parameters, the
  fitted preprocessing (feature names, time codec, scalers), the training history, the SHA-256 of the
  weights, and the SHA-256 of the config itself (of its canonical JSON without that entry);
* ``weights.pt``: the module's ``state_dict``, read back with ``torch.load(..., weights_only=True)``.

Loading checks, in order: the file is a readable zip with both members (else truncated or not a model
file), the JSON parses, the format version is one this library reads, every key is there, the config's
and the weights' checksums match (else edited, tampered with or corrupted), every entry has the type and
size it must have, and the weights fit the architecture the parameters build. Any failure raises
:class:`~latentode.exceptions.ModelFileError` saying which. (The checksums detect damage and naive edits;
they are not a signature: someone who recomputes them can still change a file.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import asdict

import numpy as np
import torch

from .data import TIME_KINDS
from .exceptions import ModelFileError

__all__ = ["FILE_FORMAT", "load_estimator", "save_estimator"]

FILE_FORMAT = 1
"""Version of the model file layout; files with another version are refused with a clear message."""

_CONFIG, _WEIGHTS = "config.json", "weights.pt"
_REQUIRED = ("format", "library_version", "estimator", "params", "feature_names", "time_codec", "time_scaler",
             "feature_scaler", "history", "n_epochs", "best_epoch", "weights_sha256", "config_sha256")


def _estimators() -> dict:
    from .estimator import ODERNN, LatentODE

    return {"LatentODE": LatentODE, "ODERNN": ODERNN}


def _jsonable(value):
    """A parameter value as JSON can hold it.

    numpy scalars become Python numbers, paths strings, ``torch.device`` its name; a numpy ``RandomState`` or
    ``Generator`` given as ``random_state`` becomes ``None`` (its state is consumed by ``fit``; it is not a
    setting a loaded model could reuse).
    """
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, (np.random.RandomState, np.random.Generator)):
        return None
    return value


def config_checksum(config: dict) -> str:
    """SHA-256 of the canonical JSON of ``config`` without its ``config_sha256`` entry."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value, length: int) -> bool:
    """Whether ``value`` is a list of ``length`` numbers."""
    return isinstance(value, list) and len(value) == length and all(_is_number(x) for x in value)


def _check_state(config: dict) -> None:
    """Raise ModelFileError unless the fitted-state entries have the types and sizes ``_restore`` needs."""
    names, codec = config["feature_names"], config["time_codec"]
    feature_scaler, time_scaler = config["feature_scaler"], config["time_scaler"]
    n_features = len(names) if isinstance(names, list) else -1
    checks = {
        "estimator is not a string": isinstance(config["estimator"], str),
        "params is not an object": isinstance(config["params"], dict),
        "feature_names is not a non-empty list of strings":
            n_features > 0 and all(isinstance(n, str) for n in names),
        "time_codec is not a time codec":
            isinstance(codec, dict) and codec.get("kind") in TIME_KINDS and isinstance(codec.get("dtype"), str),
        "feature_scaler does not hold one mean and one scale per feature":
            isinstance(feature_scaler, dict) and all(_numbers(feature_scaler.get(k), n_features)
                                                     for k in ("mean_", "scale_")),
        "time_scaler does not hold a number origin_ and a positive scale_":
            isinstance(time_scaler, dict) and _is_number(time_scaler.get("origin_"))
            and _is_number(time_scaler.get("scale_")) and time_scaler["scale_"] > 0,
        "history is not a list of records":
            isinstance(config["history"], list) and all(isinstance(r, dict) for r in config["history"]),
        **{f"{key} is not a non-negative integer":
           isinstance(config[key], int) and not isinstance(config[key], bool) and config[key] >= 0
           for key in ("n_epochs", "best_epoch")},
    }
    problems = [problem for problem, ok in checks.items() if not ok]
    if problems:
        raise ModelFileError("; ".join(problems))


def save_estimator(estimator, path: str | os.PathLike) -> None:
    """Write a fitted estimator to ``path`` (see the module docstring for the format)."""
    from . import __version__

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in estimator.module_.state_dict().items()}, buffer)
    weights = buffer.getvalue()
    # Training callbacks are code, not state: they are not saved (a loaded model has callbacks=None).
    params = {k: _jsonable(v) for k, v in estimator.get_params().items() if k != "callbacks"}
    try:
        json.dumps(params)
    except TypeError as error:
        raise TypeError(f"Cannot save: a parameter is not JSON-serialisable ({error}).") from error
    config = {
        "format": FILE_FORMAT,
        "library_version": __version__,
        "estimator": type(estimator).__name__,
        "params": params,
        "feature_names": [str(f) for f in estimator.feature_names_in_],
        "time_codec": asdict(estimator.time_codec_),
        "time_scaler": estimator.time_scaler_.get_state(),
        "feature_scaler": estimator.feature_scaler_.get_state(),
        "history": estimator.history_,
        "n_epochs": int(estimator.n_epochs_),
        "best_epoch": int(estimator.best_epoch_),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    config["config_sha256"] = config_checksum(config)
    tmp = f"{os.fspath(path)}.tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_CONFIG, json.dumps(config, indent=1))
        archive.writestr(_WEIGHTS, weights)
    os.replace(tmp, path)


def load_estimator(path: str | os.PathLike, *, device: str = "auto"):
    """Read a model file written by :func:`save_estimator`; raises ModelFileError when it is unusable."""
    from . import __version__

    name = os.fspath(path)
    if not os.path.exists(name):
        raise ModelFileError(f"No model file at {name!r}.")
    try:
        with zipfile.ZipFile(name) as archive:
            members = set(archive.namelist())
            if not {_CONFIG, _WEIGHTS} <= members:
                raise ModelFileError(f"{name!r} is not a latentode model file: it lacks {_CONFIG} or {_WEIGHTS}.")
            raw_config = archive.read(_CONFIG)
            weights = archive.read(_WEIGHTS)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error) as error:
        if "CRC" in str(error) or isinstance(error, zlib.error):
            raise ModelFileError(
                f"{name!r} is corrupted or was tampered with: a member fails its integrity check "
                f"({type(error).__name__}: {error}). Save the model again."
            ) from error
        raise ModelFileError(
            f"{name!r} is truncated or not a latentode model file ({type(error).__name__}: {error}). Save the model again."
        ) from error
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise ModelFileError(
            f"{name!r} is truncated or not a latentode model file ({type(error).__name__}: {error}). Save the model again."
        ) from error
    try:
        config = json.loads(raw_config)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{name!r} has an unreadable {_CONFIG} ({error}); the file was corrupted.") from error
    if not isinstance(config, dict):
        raise ModelFileError(f"{name!r} has a {_CONFIG} that is not a JSON object; it was not written by latentode.")
    if "format" in config and config["format"] != FILE_FORMAT:
        raise ModelFileError(
            f"{name!r} uses model file format {config['format']!r} (written by latentode "
            f"{config.get('library_version', 'of an unknown version')}); this latentode {__version__} reads "
            f"format {FILE_FORMAT}. Load it with the latentode version that wrote it."
        )
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ModelFileError(f"{name!r} has a {_CONFIG} without {missing}; it was not written by latentode.")
    if config["config_sha256"] != config_checksum(config):
        raise ModelFileError(
            f"{name!r}: {_CONFIG} does not match its recorded checksum; it was edited or corrupted. Save the model again."
        )
    if hashlib.sha256(weights).hexdigest() != config["weights_sha256"]:
        raise ModelFileError(f"{name!r}: the weights do not match their recorded checksum; the file was tampered with or corrupted.")
    try:
        _check_state(config)
    except ModelFileError as error:
        raise ModelFileError(f"{name!r} has an invalid {_CONFIG}: {error}.") from None
    estimators = _estimators()
    if config["estimator"] not in estimators:
        raise ModelFileError(f"{name!r} holds an unknown estimator {config['estimator']!r}.")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(f"{name!r}: the weights cannot be read safely ({type(error).__name__}: {error}).") from error
    from .estimator import _resolve_device

    _resolve_device(device)  # a bad or unavailable device is the caller's error, not the file's
    try:
        estimator = estimators[config["estimator"]](**config["params"])
        estimator._check_params()
        estimator._restore(config, state, device)
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise ModelFileError(
            f"{name!r} does not match this latentode version's {config['estimator']} ({type(error).__name__}: {error})."
        ) from error
    return estimator
