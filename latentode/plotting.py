"""Plotting a fitted model: observations, posterior mean on a dense grid and the predictive band."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DENSE_GRID_POINTS", "GRID_MARGIN", "plot_series"]

DENSE_GRID_POINTS = 200
"""Number of time points of the dense prediction grid."""

GRID_MARGIN = 0.1
"""The grid extends this fraction of the observed span beyond the last observation (extrapolation)."""

_TIMEDELTA_UNITS = (("days", pd.Timedelta(days=1)), ("hours", pd.Timedelta(hours=1)),
                    ("minutes", pd.Timedelta(minutes=1)), ("seconds", pd.Timedelta(seconds=1)))
"""Units a timedelta axis is drawn in (matplotlib has no timedelta axis): the largest the series spans twice."""


def _timedelta_unit(times: pd.Series) -> tuple[str, pd.Timedelta]:
    span = times.max() - times.min()
    for name, unit in _TIMEDELTA_UNITS:
        if span >= 2 * unit:
            return name, unit
    return _TIMEDELTA_UNITS[-1]


def _axis_values(times, unit: pd.Timedelta | None):
    """Times as matplotlib draws them: timedeltas as floats in ``unit``, anything else unchanged."""
    if unit is None:
        return times
    return pd.to_timedelta(pd.Series(times)).to_numpy() / unit.to_timedelta64()


def plot_series(model, X: pd.DataFrame, series_id, *, coverage: float | None = 0.9, times=None,
                n_samples: int = 200, truth: pd.DataFrame | None = None, random_state: int | None = 0,
                features=None, fig=None):
    """Draw, per feature, a series' observations, the posterior mean over a dense grid and the interval band.

    Parameters
    ----------
    model : fitted LatentODE or ODERNN
    X : DataFrame
        Context observations (the model's format); only series ``series_id`` is used.
    series_id :
        Which series to draw.
    coverage : float or None
        Central coverage of the band (``LatentODE`` only); None draws no band.
    times : array-like, optional
        Times to predict at (default: a dense grid over the observations plus a margin).
    truth : DataFrame, optional
        Wide frame with ground truth for the series, drawn as a thin line.
    features : list of str, optional
        Subset of features to draw (default: all).
    fig : matplotlib Figure, optional
        Figure to draw into.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    model._check_fitted()
    spec = model._spec()
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame of observations, got {type(X).__name__}.")
    if spec.id_col not in X.columns or X.empty:
        raise ValueError(f"X must be a non-empty DataFrame with an {spec.id_col!r} column; got columns {list(X.columns)}.")
    rows = X[X[spec.id_col] == series_id]
    if rows.empty:
        raise ValueError(f"Series {series_id!r} is not in X; pick one of its ids (e.g. {X[spec.id_col].iloc[0]!r}).")
    if times is not None and (isinstance(times, (dict, pd.DataFrame, str)) or np.ndim(times) != 1):
        raise TypeError("times must be a one-dimensional array of times for this series (or None for a dense grid).")
    series = model._read(rows)
    codec = series.codec
    if times is None:
        lo, hi = series.times.min(), series.times.max()
        span = max(hi - lo, model.time_scaler_.scale_)
        grid = np.linspace(lo, hi + GRID_MARGIN * span, DENSE_GRID_POINTS)
        times = codec.decode(grid)
    names = list(features) if features is not None else model.feature_names_in_.tolist()
    if not names:
        raise ValueError("features is empty; name at least one feature to draw, or pass None for all.")
    unknown = [f for f in names if f not in model.feature_names_in_]
    if unknown:
        raise ValueError(f"Unknown feature(s) {unknown}; the model has {model.feature_names_in_.tolist()}.")
    query = {series_id: times}
    mean = model.predict(rows, query)
    band = None
    if coverage is not None and hasattr(model, "predict_interval"):
        band = model.predict_interval(rows, query, coverage=coverage, n_samples=n_samples, random_state=random_state)
    if fig is None:
        fig = plt.figure(figsize=(7, 2.2 * len(names)))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    wide = series.values
    observed_times = series.raw_times
    unit_name, unit = _timedelta_unit(observed_times) if codec.kind == "timedelta" else (None, None)
    if truth is not None:
        if not isinstance(truth, pd.DataFrame) or spec.id_col not in truth or spec.time_col not in truth:
            raise ValueError(f"truth must be a wide DataFrame with {spec.id_col!r}, {spec.time_col!r} and feature columns.")
        truth_rows = truth[truth[spec.id_col] == series_id]
        if not any(name in truth_rows for name in names):
            raise ValueError(
                f"truth has none of the features {names} as columns; give it in wide format (one column per feature)."
            )
    for ax, name in zip(axes, names):
        j = model.feature_names_in_.tolist().index(name)
        if band is not None:
            ax.fill_between(_axis_values(band[spec.time_col], unit), band[f"{name}_lower"], band[f"{name}_upper"],
                            alpha=0.25, label=f"{coverage:.0%} interval")
        ax.plot(_axis_values(mean[spec.time_col], unit), mean[name], lw=1.8, label="posterior mean")
        if truth is not None and name in truth_rows:
            ax.plot(_axis_values(truth_rows[spec.time_col], unit), truth_rows[name], "k--", lw=0.8, label="truth")
        seen = ~np.isnan(wide[:, j])
        ax.scatter(_axis_values(observed_times[seen], unit), wide[seen, j], s=14, c="k", zorder=3, label="observed")
        ax.set_ylabel(name)
    axes[0].set_title(f"{spec.id_col} = {series_id}")
    axes[0].legend(loc="best", fontsize=7)
    axes[-1].set_xlabel(spec.time_col if unit is None else f"{spec.time_col} ({unit_name})")
    if hasattr(fig, "tight_layout"):  # a SubFigure has no layout of its own; its parent lays it out
        fig.tight_layout()
    return fig
