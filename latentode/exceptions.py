"""The library's exception types: one root, and a not-fitted error that sklearn also recognises."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = ["DistributedError", "LatentODEError", "ModelFileError", "NotFittedError", "SolverError"]


class LatentODEError(Exception):
    """Root of every exception this library raises on purpose."""


class NotFittedError(LatentODEError, _SklearnNotFittedError):
    """An estimator was used before ``fit``; also an ``sklearn.exceptions.NotFittedError``."""


class SolverError(LatentODEError, RuntimeError):
    """The ODE solver could not integrate (step size underflow, too many steps)."""


class ModelFileError(LatentODEError, ValueError):
    """A saved model file is missing, truncated, tampered with, or from an incompatible version."""


class DistributedError(LatentODEError, RuntimeError):
    """Another process of a distributed (torchrun) fit failed, so this one stopped too instead of waiting."""
