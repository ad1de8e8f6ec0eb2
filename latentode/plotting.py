"""Plotting a fitted model: observations, posterior mean on a dense grid and the predictive band."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DENSE_GRID_POINTS", "GRID_MARGIN", "plot_series"]

DENSE_GRID_POINTS = 200
"""Number of time points of the dense prediction grid."""

GRID_MARGIN = 0.1
"""The grid extends this fraction of the observed span beyond the last observation (extrapolation)."""


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
    rows = X[X[spec.id_col] == series_id]
    if rows.empty:
        raise ValueError(f"Series {series_id!r} is not in X; pick one of its ids (e.g. {X[spec.id_col].iloc[0]!r}).")
    series = model._read(rows)
    codec = series.codec
    if times is None:
        lo, hi = series.times.min(), series.times.max()
        span = max(hi - lo, model.time_scaler_.scale_)
        grid = np.linspace(lo, hi + GRID_MARGIN * span, DENSE_GRID_POINTS)
        times = codec.decode(grid)
    names = list(features) if features is not None else model.feature_names_in_.tolist()
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
    for ax, name in zip(axes, names):
        j = model.feature_names_in_.tolist().index(name)
        if band is not None:
            ax.fill_between(band[spec.time_col], band[f"{name}_lower"], band[f"{name}_upper"], alpha=0.25,
                            label=f"{coverage:.0%} interval")
        ax.plot(mean[spec.time_col], mean[name], lw=1.8, label="posterior mean")
        if truth is not None:
            t_rows = truth[truth[spec.id_col] == series_id]
            if name in t_rows:
                ax.plot(t_rows[spec.time_col], t_rows[name], "k--", lw=0.8, label="truth")
        seen = ~np.isnan(wide[:, j])
        ax.scatter(observed_times[seen], wide[seen, j], s=14, c="k", zorder=3, label="observed")
        ax.set_ylabel(name)
    axes[0].set_title(f"{spec.id_col} = {series_id}")
    axes[0].legend(loc="best", fontsize=7)
    axes[-1].set_xlabel(spec.time_col)
    if hasattr(fig, "tight_layout"):  # a SubFigure has no layout of its own; its parent lays it out
        fig.tight_layout()
    return fig
