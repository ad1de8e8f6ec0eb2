"""Scalers fitted on training data only: per-feature standardisation and a time scale."""

from __future__ import annotations

import numpy as np

__all__ = ["FeatureScaler", "TimeScaler", "MIN_FEATURE_SCALE", "TARGET_SERIES_SPAN"]

MIN_FEATURE_SCALE = 1e-8
"""A feature whose observed standard deviation is below this is only centred, not divided."""

TARGET_SERIES_SPAN = 1.0
"""After time scaling, the median series spans this many time units (so solvers see O(1) times)."""


class FeatureScaler:
    """Per-feature standardisation computed from observed (non-NaN) values only.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_features,)
    """

    def fit(self, values: np.ndarray) -> FeatureScaler:
        """Fit on ``values`` (n_rows, n_features) with NaN where not observed."""
        values = np.asarray(values, dtype=np.float64)
        observed = ~np.isnan(values)
        counts = observed.sum(0)
        if (counts == 0).any():
            raise ValueError(f"Feature(s) at positions {np.where(counts == 0)[0].tolist()} have no observed value.")
        filled = np.where(observed, values, 0.0)
        self.mean_ = filled.sum(0) / counts
        var = np.where(observed, (values - self.mean_) ** 2, 0.0).sum(0) / counts
        std = np.sqrt(var)
        self.scale_ = np.where(std > MIN_FEATURE_SCALE, std, 1.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.mean_) / self.scale_

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scale_ + self.mean_

    def get_state(self) -> dict:
        return {"mean_": self.mean_.tolist(), "scale_": self.scale_.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> FeatureScaler:
        out = cls()
        out.mean_, out.scale_ = np.asarray(state["mean_"], float), np.asarray(state["scale_"], float)
        return out


class TimeScaler:
    """Shift and scale time so that the median series spans :data:`TARGET_SERIES_SPAN` units.

    ``origin_`` is the earliest training time, ``scale_`` the median span of the training series (last minus
    first time). When every series has a single time point, the median gap between consecutive distinct times
    of all training data is used, and 1.0 if that is zero too. Users never rescale time by hand: a series
    measured in seconds over days and one measured in years both reach the solver as O(1) times.

    Attributes
    ----------
    origin_, scale_ : float
    """

    def fit(self, times: np.ndarray, offsets: np.ndarray) -> TimeScaler:
        """Fit on concatenated per-series ``times`` with series boundaries ``offsets`` (n_series + 1)."""
        times = np.asarray(times, dtype=np.float64)
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
        return (np.asarray(times, dtype=np.float64) - self.origin_) / self.scale_

    def inverse_transform(self, times: np.ndarray) -> np.ndarray:
        return np.asarray(times, dtype=np.float64) * self.scale_ + self.origin_

    def get_state(self) -> dict:
        return {"origin_": self.origin_, "scale_": self.scale_}

    @classmethod
    def from_state(cls, state: dict) -> TimeScaler:
        out = cls()
        out.origin_, out.scale_ = float(state["origin_"]), float(state["scale_"])
        return out
