"""Scalers fitted on training data only: per-feature standardisation and a time scale."""

from __future__ import annotations

import numpy as np

from .exceptions import NotFittedError

__all__ = ["MIN_FEATURE_SCALE", "TARGET_SERIES_SPAN", "FeatureScaler", "TimeScaler"]

MIN_FEATURE_SCALE = 1e-8
"""A feature whose observed standard deviation is below this is only centred, not divided."""

TARGET_SERIES_SPAN = 1.0
"""After time scaling, the median series spans this many time units (so solvers see O(1) times)."""


def _check_fitted(scaler: object, attributes: tuple[str, ...]) -> None:
    if not all(hasattr(scaler, a) for a in attributes):
        raise NotFittedError(
            f"This {type(scaler).__name__} instance is not fitted yet. Call 'fit' with training data first."
        )


def _as_2d(values, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{what} must have shape (n_rows, n_features), got shape {values.shape}.")
    return values


class FeatureScaler:
    """Per-feature standardisation computed from observed (non-NaN, unmasked) values only.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_features,)
        Mean and standard deviation of each feature's observed training values (``scale_`` is 1 where the
        deviation is below :data:`MIN_FEATURE_SCALE`).

    Examples
    --------
    >>> import numpy as np
    >>> scaler = FeatureScaler().fit(np.array([[1.0, np.nan], [3.0, 10.0]]))
    >>> scaler.mean_.tolist(), scaler.scale_.tolist()
    ([2.0, 10.0], [1.0, 1.0])
    """

    def fit(self, values: np.ndarray, mask: np.ndarray | None = None) -> FeatureScaler:
        """Fit on ``values`` (n_rows, n_features) with NaN where not observed.

        ``mask`` (bool, same shape), when given, marks the observed entries; entries it marks ``False`` are
        ignored whatever they hold (NaN entries are ignored in any case).
        """
        values = _as_2d(values, "values")
        observed = ~np.isnan(values)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != values.shape:
                raise ValueError(
                    f"mask has shape {mask.shape} but values have shape {values.shape}; give equal shapes."
                )
            observed &= mask.astype(bool)
        if np.isinf(values[observed]).any():
            raise ValueError(
                "values contain infinite observed entries; replace them with NaN or finite numbers."
            )
        counts = observed.sum(0)
        if (counts == 0).any():
            raise ValueError(
                f"Feature(s) at positions {np.where(counts == 0)[0].tolist()} have no observed value; "
                "drop them or add observations."
            )
        filled = np.where(observed, values, 0.0)
        mean = filled.sum(0) / counts
        var = np.where(observed, (filled - mean) ** 2, 0.0).sum(0) / counts
        std = np.sqrt(var)
        self.mean_ = mean
        self.scale_ = np.where(std > MIN_FEATURE_SCALE, std, 1.0)
        return self

    def _checked(self, values) -> np.ndarray:
        _check_fitted(self, ("mean_", "scale_"))
        values = np.asarray(values, dtype=np.float64)
        if values.ndim < 1 or values.shape[-1] != len(self.mean_):
            raise ValueError(
                f"values have shape {values.shape} but the scaler was fitted on {len(self.mean_)} features; "
                f"expected shape (..., {len(self.mean_)})."
            )
        return values

    def transform(self, values: np.ndarray) -> np.ndarray:
        """``(values - mean_) / scale_`` over the last axis (features); NaN stays NaN."""
        return (self._checked(values) - self.mean_) / self.scale_

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`transform`."""
        return self._checked(values) * self.scale_ + self.mean_

    def get_state(self) -> dict:
        _check_fitted(self, ("mean_", "scale_"))
        return {"mean_": self.mean_.tolist(), "scale_": self.scale_.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> FeatureScaler:
        out = cls()
        out.mean_, out.scale_ = np.asarray(state["mean_"], float), np.asarray(state["scale_"], float)
        return out


class TimeScaler:
    """Shift and scale time so that the median series spans :data:`TARGET_SERIES_SPAN` units.

    ``origin_`` is the earliest training time, ``scale_`` the median span of the training series (last minus
    first time) over the series that span more than one instant. When every series has a single time point,
    the median gap between consecutive distinct times of all training data is used, and 1.0 if that is zero
    too. Users never rescale time by hand: a series measured in seconds over days and one measured in years
    both reach the solver as O(1) times.

    Attributes
    ----------
    origin_, scale_ : float

    Examples
    --------
    >>> import numpy as np
    >>> scaler = TimeScaler().fit(np.array([0.0, 10.0, 5.0, 25.0]), offsets=np.array([0, 2, 4]))
    >>> scaler.origin_, scaler.scale_
    (0.0, 15.0)
    """

    def fit(self, times: np.ndarray, offsets: np.ndarray) -> TimeScaler:
        """Fit on concatenated per-series ``times`` with series boundaries ``offsets`` (n_series + 1).

        Series ``i`` is ``times[offsets[i]:offsets[i + 1]]``, sorted, with at least one time.
        """
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        if len(times) == 0 or not np.isfinite(times).all():
            raise ValueError("times must be a non-empty array of finite numbers.")
        if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(times) or (np.diff(offsets) < 1).any():
            raise ValueError(
                f"offsets must rise strictly from 0 to len(times)={len(times)} "
                "(one entry per series boundary, "
                f"every series non-empty); got {offsets.tolist()[:10]}{' ...' if len(offsets) > 10 else ''}."
            )
        spans = times[offsets[1:] - 1] - times[offsets[:-1]]
        spans = spans[spans > 0]
        if len(spans):
            scale = float(np.median(spans))
        else:
            gaps = np.diff(np.unique(times))
            scale = float(np.median(gaps)) if len(gaps) else 1.0
        self.origin_ = float(times.min())
        self.scale_ = scale / TARGET_SERIES_SPAN if scale > 0 else 1.0
        return self

    def transform(self, times: np.ndarray) -> np.ndarray:
        """``(times - origin_) / scale_``."""
        _check_fitted(self, ("origin_", "scale_"))
        return (np.asarray(times, dtype=np.float64) - self.origin_) / self.scale_

    def inverse_transform(self, times: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`transform`."""
        _check_fitted(self, ("origin_", "scale_"))
        return np.asarray(times, dtype=np.float64) * self.scale_ + self.origin_

    def get_state(self) -> dict:
        _check_fitted(self, ("origin_", "scale_"))
        return {"origin_": self.origin_, "scale_": self.scale_}

    @classmethod
    def from_state(cls, state: dict) -> TimeScaler:
        out = cls()
        out.origin_, out.scale_ = float(state["origin_"]), float(state["scale_"])
        return out
