"""Seeded splits for the Latent ODE paper's protocols: by series, interpolation and extrapolation."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["extrapolation_split", "interpolation_split", "train_test_split_series"]

_FRACTION_TOLERANCE = 1e-9
"""Slack for float error in ``fraction * n`` (``0.3 * 10`` is 3.0000000000000004) before rounding up."""


def _check(df: pd.DataFrame, id_col: str, time_col: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in (id_col, time_col) if c not in df.columns]
    if missing:
        raise ValueError(f"The DataFrame is missing column(s) {missing}; it has {list(df.columns)}.")


def _check_fraction(name: str, value: float, *, allow_zero: bool = True) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        raise ValueError(f"{name} must be in {'[0, 1)' if allow_zero else '(0, 1)'}, got {value!r}.")


def train_test_split_series(
    df: pd.DataFrame,
    *,
    test_size: float = 0.2,
    val_size: float = 0.0,
    id_col: str = "id",
    time_col: str = "time",
    random_state: int | None = None,
) -> tuple[pd.DataFrame, ...]:
    """Split whole series (never rows of one series) into train / [validation /] test frames.

    Returns ``(train, test)``, or ``(train, val, test)`` when ``val_size > 0``. Sizes are fractions of the
    number of series; each part keeps at least one series.
    """
    _check(df, id_col, time_col)
    _check_fraction("test_size", test_size, allow_zero=False)
    _check_fraction("val_size", val_size)
    if test_size + val_size >= 1:
        raise ValueError(
            f"test_size + val_size must be below 1 to leave training series, got {test_size} + {val_size}."
        )
    ids = pd.unique(df[id_col])
    n_parts = 3 if val_size > 0 else 2
    if len(ids) < n_parts:
        raise ValueError(f"Need at least {n_parts} series to split into {n_parts} parts, got {len(ids)}.")
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(ids))
    # Every part keeps at least one series: test leaves room for validation (if asked for) and training.
    n_test = min(max(1, round(test_size * len(ids))), len(ids) - n_parts + 1)
    n_val = min(max(1, round(val_size * len(ids))), len(ids) - n_test - 1) if val_size > 0 else 0
    test_ids, val_ids = ids[order[:n_test]], ids[order[n_test : n_test + n_val]]
    in_test, in_val = df[id_col].isin(test_ids), df[id_col].isin(val_ids)
    parts = [df[~in_test & ~in_val], df[in_val], df[in_test]] if val_size > 0 else [df[~in_test], df[in_test]]
    return tuple(p.reset_index(drop=True) for p in parts)


def _observed_rows(df: pd.DataFrame, id_col: str, time_col: str, variable_col: str | None) -> pd.Series:
    if variable_col is not None:
        return pd.Series(True, index=df.index)
    features = [c for c in df.columns if c not in (id_col, time_col)]
    return df[features].notna().any(axis=1)


def interpolation_split(
    df: pd.DataFrame,
    *,
    hide_fraction: float = 0.5,
    id_col: str = "id",
    time_col: str = "time",
    variable_col: str | None = None,
    random_state: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hide a random ``hide_fraction`` of each series' observed time points.

    Returns ``(context, hidden)``: the model reads ``context`` and is scored on reconstructing ``hidden``.
    Each series keeps at least one time point in context; a series with a single time point has nothing
    hidden. For long format (give ``variable_col``) whole time points are hidden, all variables together.
    """
    _check(df, id_col, time_col)
    _check_fraction("hide_fraction", hide_fraction, allow_zero=False)
    rng = np.random.default_rng(random_state)
    points = df.loc[_observed_rows(df, id_col, time_col, variable_col), [id_col, time_col]].drop_duplicates()
    points = points.assign(__key=rng.random(len(points)))
    points["__rank"] = points.groupby(id_col, sort=False)["__key"].rank(method="first")
    points["__n"] = points.groupby(id_col, sort=False)["__key"].transform("size")
    n_hidden = np.minimum(np.floor(hide_fraction * points["__n"] + 0.5), points["__n"] - 1)
    hidden_points = points.loc[points["__rank"] <= n_hidden, [id_col, time_col]]
    marker = df[[id_col, time_col]].merge(
        hidden_points.assign(__hidden=True), on=[id_col, time_col], how="left"
    )
    hidden = marker["__hidden"].fillna(False).to_numpy(dtype=bool)
    return df[~hidden].reset_index(drop=True), df[hidden].reset_index(drop=True)


def extrapolation_split(
    df: pd.DataFrame,
    *,
    context_fraction: float = 0.5,
    id_col: str = "id",
    time_col: str = "time",
    variable_col: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Observe the first ``context_fraction`` of each series' observed time points, predict the rest.

    Returns ``(context, future)``. Each series keeps at least one time point in context; the split is by
    count of observed time points per series (the paper's protocol splits its shared grid in half).
    """
    _check(df, id_col, time_col)
    _check_fraction("context_fraction", context_fraction, allow_zero=False)
    observed = _observed_rows(df, id_col, time_col, variable_col)
    points = df.loc[observed, [id_col, time_col]].drop_duplicates()
    points = points.sort_values([id_col, time_col], kind="stable")
    n = points.groupby(id_col, sort=False)[time_col].transform("size")
    rank = points.groupby(id_col, sort=False).cumcount()
    n_context = np.maximum(np.ceil(context_fraction * n - _FRACTION_TOLERANCE), 1)
    cut = points.loc[rank.to_numpy() == (n_context.to_numpy() - 1), [id_col, time_col]]
    cut = cut.rename(columns={time_col: "__cut"})
    merged = df[[id_col, time_col]].merge(cut, on=id_col, how="left")
    future = (merged[time_col] > merged["__cut"]).to_numpy(dtype=bool)
    return df[~future].reset_index(drop=True), df[future].reset_index(drop=True)
