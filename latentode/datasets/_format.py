"""The wide and long table layouts the dataset functions return, and conversion between them.

Wide layout: columns ``id``, ``time``, then one float column per feature; ``NaN``
marks a feature not observed at that time; one row per ``(id, time)``; rows sorted
by ``(id, time)``.

Long layout: columns ``id``, ``time``, ``variable``, ``value``; one row per
observation (no ``NaN`` values); rows sorted by ``(id, time, variable)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

ID_COLUMN = "id"
"""Name of the series-identifier column."""

TIME_COLUMN = "time"
"""Name of the observation-time column."""

VARIABLE_COLUMN = "variable"
"""Name of the feature-name column of the long layout."""

VALUE_COLUMN = "value"
"""Name of the observed-value column of the long layout."""

FORMATS = ("wide", "long")
"""Table layouts a loader can return."""


def check_format(format: object) -> str:
    """Check a ``format`` argument.

    Parameters
    ----------
    format : object
        The value received.

    Returns
    -------
    format : str
        ``"wide"`` or ``"long"``.

    Raises
    ------
    ValueError
        If ``format`` is not one of :data:`FORMATS`.
    """
    if format not in FORMATS:
        raise ValueError(f"Invalid format {format!r}. Must be one of {FORMATS}.")
    return str(format)


def sort_wide(wide: pd.DataFrame) -> pd.DataFrame:
    """Sort a wide table by ``(id, time)`` and reset its index.

    Parameters
    ----------
    wide : pandas.DataFrame
        Table in the wide layout.

    Returns
    -------
    wide : pandas.DataFrame
        A sorted copy with a fresh ``RangeIndex``.
    """
    return wide.sort_values([ID_COLUMN, TIME_COLUMN], kind="stable").reset_index(drop=True)


def wide_to_long(wide: pd.DataFrame) -> pd.DataFrame:
    """Melt a wide table into the long layout, dropping unobserved (``NaN``) cells.

    Parameters
    ----------
    wide : pandas.DataFrame
        Table in the wide layout.

    Returns
    -------
    long : pandas.DataFrame
        Columns ``id``, ``time``, ``variable``, ``value``, sorted by
        ``(id, time, variable)``.
    """
    long = wide.melt(
        id_vars=[ID_COLUMN, TIME_COLUMN], var_name=VARIABLE_COLUMN, value_name=VALUE_COLUMN
    ).dropna(subset=[VALUE_COLUMN])
    long[VALUE_COLUMN] = long[VALUE_COLUMN].astype(float)
    return long.sort_values([ID_COLUMN, TIME_COLUMN, VARIABLE_COLUMN], kind="stable").reset_index(drop=True)


def long_to_wide(long: pd.DataFrame, variables: Sequence[str] | None = None) -> pd.DataFrame:
    """Pivot a long table into the wide layout, averaging repeated observations.

    Parameters
    ----------
    long : pandas.DataFrame
        Columns ``id``, ``time``, ``variable``, ``value``.
    variables : sequence of str, optional
        Feature columns of the result, in this order; a variable never observed
        becomes an all-``NaN`` column. By default the variables present, sorted.

    Returns
    -------
    wide : pandas.DataFrame
        Columns ``id``, ``time``, then one float column per variable. Several
        observations of one variable at one ``(id, time)`` are averaged.
    """
    wide = (
        long.groupby([ID_COLUMN, TIME_COLUMN, VARIABLE_COLUMN], sort=False)[VALUE_COLUMN]
        .mean()
        .unstack(VARIABLE_COLUMN)
    )
    if variables is None:
        variables = sorted(wide.columns)
    wide = wide.reindex(columns=list(variables)).astype(float)
    wide.columns.name = None
    wide = wide.dropna(how="all").reset_index()
    return sort_wide(wide)
