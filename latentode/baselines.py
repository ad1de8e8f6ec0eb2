"""Naive baselines over the same inputs and outputs as ``LatentODE.predict``: carry forward, linear.

Any model of irregular series should beat these; the examples and benchmarks report them beside every
model. Both read a wide or long DataFrame of context observations and query times given as for
:meth:`latentode.LatentODE.predict` (one array for every series, a dict ``{id: times}`` or a DataFrame of
(id, time) rows), and return a wide DataFrame (id, time, one column per feature) in the user's time type.
Each feature is treated on its own, from the times at which it was observed; a feature never observed in a
series gives NaN for that series. Everything is vectorised over series and query times (one sort per
feature), so they run on millions of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from .data import FrameSpec, SeriesSet, read_frame, read_queries, to_frame

__all__ = ["carry_forward", "linear_interpolation"]

ENDS = ("flat", "linear")
"""How :func:`linear_interpolation` continues before a feature's first and after its last observation."""


def carry_forward(
    X: pd.DataFrame,
    times,
    *,
    id_col: str = "id",
    time_col: str = "time",
    variable_col: str | None = None,
    value_col: str | None = None,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Last observation carried forward: each feature's latest value at or before each query time.

    A query before a feature's first observation gets that first observation (carried backward).

    Parameters
    ----------
    X : pandas.DataFrame
        Context observations, wide or long (give ``variable_col`` and ``value_col`` for long).
    times : array-like, dict or pandas.DataFrame
        Query times, as for :meth:`latentode.LatentODE.predict`.
    id_col, time_col, variable_col, value_col : str
        Column names, as for the estimators.
    features : sequence of str, optional
        Feature columns to use (all but id and time by default, for a wide frame).
    """
    series, raw, queries = _read(X, times, FrameSpec(id_col, time_col, variable_col, value_col), features)
    out = np.full((len(queries.times), len(series.feature_names)), np.nan)
    for j in range(len(series.feature_names)):
        feature = _Observed(series, j)
        previous, has_previous = feature.last_at_or_before(queries)
        first, has_first = feature.first_of(queries.series)
        take = np.where(has_previous, previous, first)
        found = has_previous | has_first
        out[found, j] = feature.values[take[found]]
    return _frame(series, raw, out, id_col, time_col)


def linear_interpolation(
    X: pd.DataFrame,
    times,
    *,
    ends: Literal["flat", "linear"] = "flat",
    id_col: str = "id",
    time_col: str = "time",
    variable_col: str | None = None,
    value_col: str | None = None,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Linear interpolation between the observations around each query time, per feature.

    Parameters
    ----------
    X, times, id_col, time_col, variable_col, value_col, features :
        As for :func:`carry_forward`.
    ends : {"flat", "linear"}
        Before a feature's first and after its last observation: hold that observation (``"flat"``), or
        continue the line through the two nearest observations (``"linear"``, linear extrapolation; flat when
        the series observed the feature only once).
    """
    if ends not in ENDS:
        raise ValueError(f"ends={ends!r} is not one of {ENDS}.")
    series, raw, queries = _read(X, times, FrameSpec(id_col, time_col, variable_col, value_col), features)
    out = np.full((len(queries.times), len(series.feature_names)), np.nan)
    q = queries.times
    for j in range(len(series.feature_names)):
        feature = _Observed(series, j)
        t, v = feature.times, feature.values
        previous, has_previous = feature.last_at_or_before(queries)
        first, has_first = feature.first_of(queries.series)
        end = feature.offsets[queries.series + 1]  # one past the series' last observation of the feature
        following = previous + 1
        inside = has_previous & (following < end)
        after = has_previous & ~inside
        before = ~has_previous & has_first
        # Each query's bracketing pair (left, right), and the fraction of the way from left to right.
        left = np.where(inside | after, previous, first)
        right = np.where(inside, following, left)
        if ends == "linear":
            right = np.where(before & (first + 1 < end), first + 1, right)
            left = np.where(after & (previous - 1 >= feature.offsets[queries.series]), previous - 1, left)
            right = np.where(after, previous, right)
        found = has_previous | has_first
        left, right = left[found], right[found]
        span = t[right] - t[left]
        fraction = np.divide(q[found] - t[left], span, out=np.zeros_like(span), where=span != 0)
        out[found, j] = v[left] + fraction * (v[right] - v[left])
    return _frame(series, raw, out, id_col, time_col)


class _Queries:
    """Query times of all series concatenated: ``series`` (position of each query's series) and ``times``."""

    def __init__(self, encoded: list[np.ndarray]) -> None:
        self.counts = np.array([len(t) for t in encoded], dtype=np.int64)
        self.series = np.repeat(np.arange(len(encoded)), self.counts)
        self.times = np.concatenate(encoded) if encoded else np.zeros(0)


class _Observed:
    """The rows of a :class:`SeriesSet` where feature ``j`` is observed, still sorted by (series, time)."""

    def __init__(self, series: SeriesSet, j: int) -> None:
        seen = ~np.isnan(series.values[:, j])
        self.series = series.row_series[seen]
        self.times = series.times[seen]
        self.values = series.values[seen, j]
        # Observations of series i are offsets[i]:offsets[i + 1].
        self.offsets = np.searchsorted(self.series, np.arange(series.n_series + 1))

    def last_at_or_before(self, queries: _Queries) -> tuple[np.ndarray, np.ndarray]:
        """Index of each query's series' last observation at or before its time, and whether there is one.

        One stable sort of observations and queries together by (series, time), observations first at equal
        times: the number of observations sorted before a query, minus one, is that index.
        """
        n_obs = len(self.times)
        is_query = np.concatenate([np.zeros(n_obs, dtype=bool), np.ones(len(queries.times), dtype=bool)])
        order = np.lexsort((is_query, np.concatenate([self.times, queries.times]),
                            np.concatenate([self.series, queries.series])))
        seen_before = np.cumsum(~is_query[order])
        index = np.empty(len(queries.times), dtype=np.int64)
        sorted_queries = is_query[order]
        index[order[sorted_queries] - n_obs] = seen_before[sorted_queries] - 1
        return index, index >= self.offsets[queries.series]

    def first_of(self, series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the first observation of each given series, and whether the series has any."""
        first = self.offsets[series]
        return first, first < self.offsets[series + 1]


def _read(X, times, spec: FrameSpec, features) -> tuple[SeriesSet, list[pd.Series], _Queries]:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame of observations, got {type(X).__name__}.")
    if features is not None and not spec.is_long:
        features = list(features)
        missing = [f for f in features if f not in X.columns]
        if missing:
            raise ValueError(f"features {missing} are not columns of X; choose among {list(X.columns)}.")
        X = X[[spec.id_col, spec.time_col, *features]] if spec.id_col in X and spec.time_col in X else X
    series = read_frame(X, spec, require_all_features=False)
    if features is not None and spec.is_long:
        missing = [f for f in features if f not in series.feature_names]
        if missing:
            raise ValueError(f"features {missing} never occur in column {spec.variable_col!r} of X; "
                             f"choose among {list(series.feature_names)}.")
        keep = [series.feature_names.index(f) for f in features]
        series = replace(series, values=series.values[:, keep], feature_names=tuple(features))
    encoded, raw = read_queries(times, series, spec)
    return series, raw, _Queries(encoded)


def _frame(series: SeriesSet, raw: list[pd.Series], out: np.ndarray, id_col: str, time_col: str) -> pd.DataFrame:
    per_series = np.split(out, np.cumsum([len(r) for r in raw])[:-1])
    return to_frame(series.ids, raw, per_series, series.feature_names, FrameSpec(id_col, time_col), long=False)
