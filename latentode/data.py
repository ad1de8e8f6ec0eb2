"""From pandas records to validated series and typed batches, and back: the irregular-series data layer.

Two DataFrame layouts are accepted:

* **wide**: one row per (id, time), one column per feature, NaN where a feature was not observed;
* **long**: one row per observation, with a ``variable`` column naming the feature and a ``value`` column
  (how medical records such as PhysioNet's come). Select it by giving ``variable_col`` and ``value_col``.

Time may be numeric, ``datetime64`` (timezone-aware or naive) or ``timedelta64``. Internally datetimes
become float **seconds since 1970-01-01** (UTC for aware timestamps) and timedeltas float seconds; what is
returned to the user is always in the user's own time type, id dtype and column names.

Duplicate (id, time) rows (in long format, duplicate (id, time, variable) rows) are **averaged** feature by
feature over their observed values (as the PhysioNet preprocessing of the Latent ODE paper does), with a
warning that counts them; pass ``duplicates="error"`` to refuse them instead. Unsorted input is sorted by
(id, time). Feature names are ``str``: wide column labels are converted with ``str()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from .batch import IrregularBatch

__all__ = [
    "DUPLICATE_POLICIES",
    "SAMPLE_COLUMN",
    "TIME_KINDS",
    "FrameSpec",
    "SeriesSet",
    "TimeCodec",
    "read_frame",
    "read_queries",
    "to_frame",
]

DUPLICATE_POLICIES = ("mean", "error")
"""How duplicate (id, time) rows are handled: averaged over observed values, or refused."""

TIME_KINDS = ("numeric", "datetime", "timedelta")
"""The time types a :class:`TimeCodec` converts: plain numbers, ``datetime64`` and ``timedelta64``."""

SAMPLE_COLUMN = "sample"
"""Column of posterior draws' index in the frames ``sample`` returns; no feature may have this name."""

_EPOCH = pd.Timestamp("1970-01-01")
_ONE_SECOND = pd.Timedelta(seconds=1)
_MAX_IDS_IN_MESSAGE = 5
"""How many offending series ids an error message lists before it says 'and N more'."""


_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
"""Ticks of each datetime64 / timedelta64 unit in one second."""

_DECODE_NOISE_ULPS = 4
"""Float64 rounding error, in units in the last place, that :meth:`TimeCodec.decode` rounds away.

Encoding and decoding a time each round once or twice (together at most about 1.5 ulp), so decoded ticks are
rounded to the smallest power of ten at least this many ulps wide: times on that grid come back exactly."""


def _plain(value):
    """A NumPy scalar as the Python value it holds, so messages read ``1`` rather than ``np.int64(1)``."""
    return value.item() if isinstance(value, np.generic) else value


def _some(values: Sequence, n: int = _MAX_IDS_IN_MESSAGE) -> str:
    values = list(values)
    shown = ", ".join(repr(_plain(v)) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


@dataclass(frozen=True)
class FrameSpec:
    """Which columns of a DataFrame hold what.

    Parameters
    ----------
    id_col, time_col : str
        Series identifier and timestamp columns.
    variable_col, value_col : str or None
        Give both for **long** format (one observation per row); leave both ``None`` for wide format.
    duplicates : {"mean", "error"}
        Policy for several rows with the same (id, time): average them, or raise.
    """

    id_col: str = "id"
    time_col: str = "time"
    variable_col: str | None = None
    value_col: str | None = None
    duplicates: Literal["mean", "error"] = "mean"

    def __post_init__(self) -> None:
        if (self.variable_col is None) != (self.value_col is None):
            raise ValueError(
                "Long format needs both variable_col and value_col (got "
                f"variable_col={self.variable_col!r}, value_col={self.value_col!r}); "
                "give both, or neither for wide format."
            )
        if self.duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates={self.duplicates!r} is not one of {DUPLICATE_POLICIES}.")
        named = {"id_col": self.id_col, "time_col": self.time_col, "variable_col": self.variable_col,
                 "value_col": self.value_col}
        given = {k: v for k, v in named.items() if v is not None}
        if len(set(given.values())) < len(given):
            raise ValueError(
                f"Column parameters must name different columns; got {given}. Give each its own column."
            )

    @property
    def is_long(self) -> bool:
        return self.variable_col is not None


@dataclass(frozen=True)
class TimeCodec:
    """Converts the user's time column to float and back.

    ``kind`` is ``"numeric"`` (floats pass through), ``"datetime"`` (seconds since 1970-01-01, in UTC when
    timezone-aware) or ``"timedelta"`` (seconds).
    """

    kind: Literal["numeric", "datetime", "timedelta"]
    dtype: str
    tz: str | None = None

    @classmethod
    def from_values(cls, values: pd.Series | np.ndarray | Sequence, name: str = "time") -> TimeCodec:
        s = pd.Series(values) if not isinstance(values, pd.Series) else values
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            return cls("datetime", str(s.dtype), str(s.dtype.tz))
        if pd.api.types.is_datetime64_dtype(s.dtype):
            return cls("datetime", str(s.dtype))
        if pd.api.types.is_timedelta64_dtype(s.dtype):
            return cls("timedelta", str(s.dtype))
        if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
            raise TypeError(
                f"Time column {name!r} has dtype {s.dtype}; expected numbers, datetime64 or timedelta64. "
                "Convert it first, e.g. df[col] = pd.to_datetime(df[col]) or pd.to_numeric(df[col])."
            )
        return cls("numeric", str(s.dtype))

    def encode(self, values: pd.Series | np.ndarray | Sequence, name: str = "time") -> np.ndarray:
        """Float64 array of times; NaT becomes NaN. Raises TypeError for values of another time type."""
        s = values if isinstance(values, pd.Series) else pd.Series(values)
        if self.kind == "numeric" and s.dtype == object:
            s = pd.to_numeric(s, errors="coerce") if s.map(lambda v: isinstance(v, (int, float))).all() else s
        other = TimeCodec.from_values(s, name)
        if other.kind != self.kind:
            raise TypeError(
                f"{name} holds {other.kind} values ({s.dtype}) but the model was fitted on {self.kind} times "
                f"({self.dtype}); pass times of the same type."
            )
        if self.kind == "numeric":
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        if self.kind == "timedelta":
            return (s / _ONE_SECOND).to_numpy(dtype=np.float64, na_value=np.nan)
        if (self.tz is None) != (other.tz is None):
            raise TypeError(
                f"{name} is {'timezone-aware' if other.tz else 'timezone-naive'} but the model was fitted on "
                f"{'timezone-aware' if self.tz else 'timezone-naive'} datetimes; "
                "convert with tz_localize/tz_convert."
            )
        epoch = _EPOCH.tz_localize("UTC") if self.tz is not None else _EPOCH
        return ((s - epoch) / _ONE_SECOND).to_numpy(dtype=np.float64, na_value=np.nan)

    def decode(self, seconds: np.ndarray) -> pd.Series:
        """The inverse of :meth:`encode`, in the user's time dtype; NaN becomes NaT.

        Datetimes and timedeltas keep their unit (``s``, ``ms``, ``us``, ``ns``) and are rounded to the
        finest grid that float64 resolves at their magnitude (1 us for present-day datetimes), so times on
        that grid round-trip exactly. Numeric times come back in their integer dtype when every value is a
        whole number within its range, otherwise as float64.

        Raises
        ------
        ValueError
            A time falls outside the range of the datetime64 / timedelta64 dtype.
        """
        seconds = np.asarray(seconds, dtype=np.float64).reshape(-1)
        dtype = pd.api.types.pandas_dtype(self.dtype)
        if self.kind == "numeric":
            return _decode_numeric(seconds, dtype)
        unit = dtype.unit if isinstance(dtype, pd.DatetimeTZDtype) else np.datetime_data(dtype)[0]
        ticks = _seconds_to_ticks(seconds, unit, self.dtype)
        if self.kind == "timedelta":
            return pd.Series(ticks.view(f"m8[{unit}]"))
        out = pd.Series(ticks.view(f"M8[{unit}]"))
        if self.tz is not None:
            out = out.dt.tz_localize("UTC").dt.tz_convert(dtype.tz)
        return out


def _decode_numeric(values: np.ndarray, dtype) -> pd.Series:
    out = pd.Series(values)
    if pd.api.types.is_float_dtype(dtype):
        return out.astype(dtype)
    if pd.api.types.is_integer_dtype(dtype):
        finite = np.isfinite(values)
        whole = bool(np.all(values[finite] == np.round(values[finite])))
        nullable = pd.api.types.is_extension_array_dtype(dtype)
        info = np.iinfo(dtype.numpy_dtype if nullable else dtype)
        in_range = bool(np.all((values[finite] >= info.min) & (values[finite] <= info.max)))
        if whole and in_range and (nullable or finite.all()):
            return out.astype(dtype)
    return out


def _seconds_to_ticks(seconds: np.ndarray, unit: str, dtype_name: str) -> np.ndarray:
    """Int64 ticks of ``unit`` for float ``seconds`` (NaN -> NaT), rounded per :data:`_DECODE_NOISE_ULPS`."""
    per_second = _TICKS_PER_SECOND.get(unit)
    if per_second is None:
        raise ValueError(
            f"Unsupported time unit {unit!r} of {dtype_name}; convert to 's', 'ms', 'us' or 'ns'."
        )
    finite = np.isfinite(seconds)
    safe = np.where(finite, seconds, 0.0)
    noise = _DECODE_NOISE_ULPS * np.spacing(np.abs(safe)) * per_second
    quantum = 10.0 ** np.ceil(np.log10(np.maximum(noise, 1.0)))
    steps = np.round(safe * per_second / quantum)
    limit = np.iinfo(np.int64).max
    if np.any(np.abs(steps * quantum) >= limit):
        raise ValueError(
            f"Times up to {np.abs(seconds[finite]).max():.6g} seconds do not fit {dtype_name}; "
            "use a coarser unit (e.g. datetime64[s])."
        )
    ticks = steps.astype(np.int64) * quantum.astype(np.int64)
    ticks[~finite] = np.iinfo(np.int64).min  # NaT
    return ticks


@dataclass(frozen=True)
class SeriesSet:
    """Validated series in a compact layout: rows of all series concatenated, sorted by (id, time).

    Attributes
    ----------
    ids : pandas.Index, shape (n_series,)
        Series ids in the user's dtype, in order of first appearance after sorting.
    offsets : ndarray of int64, shape (n_series + 1,)
        Rows of series ``i`` are ``offsets[i]:offsets[i + 1]``.
    times : ndarray of float64, shape (n_rows,)
        Encoded times (see :class:`TimeCodec`), strictly increasing within each series.
    raw_times : pandas.Series, shape (n_rows,)
        The same times in the user's type, so that round trips are exact.
    values : ndarray of float64, shape (n_rows, n_features)
        NaN where not observed.
    feature_names : tuple of str
    codec : TimeCodec
    """

    ids: pd.Index
    offsets: np.ndarray
    times: np.ndarray
    raw_times: pd.Series
    values: np.ndarray
    feature_names: tuple[str, ...]
    codec: TimeCodec

    @property
    def n_series(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def row_series(self) -> np.ndarray:
        """Series position (0..n_series-1) of every row."""
        return np.repeat(np.arange(self.n_series), self.lengths)

    def subset(self, positions: np.ndarray | Sequence[int]) -> SeriesSet:
        """The series at ``positions`` (integer positions, in the order given)."""
        positions = np.asarray(positions, dtype=np.int64)
        lengths = self.lengths[positions]
        starts = self.offsets[positions]
        shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        rows = shift + np.arange(lengths.sum())
        return SeriesSet(
            ids=self.ids[positions],
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            times=self.times[rows],
            raw_times=self.raw_times.iloc[rows].reset_index(drop=True),
            values=self.values[rows],
            feature_names=self.feature_names,
            codec=self.codec,
        )

    def to_batch(
        self,
        positions: np.ndarray | Sequence[int] | None = None,
        *,
        time_transform=None,
        value_transform=None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> IrregularBatch:
        """Pad the series at ``positions`` (all by default) into an :class:`IrregularBatch`.

        ``time_transform`` and ``value_transform`` (e.g. fitted :class:`~latentode.preprocessing.TimeScaler`
        and :class:`~latentode.preprocessing.FeatureScaler` ``transform`` methods) are applied first.
        """
        sub = self if positions is None else self.subset(positions)
        times = sub.times if time_transform is None else time_transform(sub.times)
        values = sub.values if value_transform is None else value_transform(sub.values)
        lengths = sub.lengths
        n, width, n_features = sub.n_series, max(int(lengths.max(initial=1)), 1), values.shape[1]
        row_series = sub.row_series
        row_step = np.arange(len(times)) - np.repeat(sub.offsets[:-1], lengths)
        last = times[sub.offsets[1:] - 1]
        t = np.repeat(last[:, None], width, axis=1)
        t[row_series, row_step] = times
        v = np.zeros((n, width, n_features))
        m = np.zeros((n, width, n_features), dtype=bool)
        observed = ~np.isnan(values)
        v[row_series, row_step] = np.where(observed, values, 0.0)
        m[row_series, row_step] = observed
        return IrregularBatch(
            times=torch.as_tensor(t, dtype=dtype, device=device),
            values=torch.as_tensor(v, dtype=dtype, device=device),
            mask=torch.as_tensor(m, device=device),
            lengths=torch.as_tensor(lengths, dtype=torch.int64, device=device),
        )


def _check_columns(df: pd.DataFrame, required: Sequence[str], what: str) -> None:
    if isinstance(df.columns, pd.MultiIndex):
        raise TypeError(
            f"{what} has MultiIndex columns; flatten them to one level of names first, e.g. "
            "df.columns = ['_'.join(map(str, c)) for c in df.columns]."
        )
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} is missing column(s) {missing}; it has {list(df.columns)}. "
            "Rename the columns or pass id_col=/time_col= (and variable_col=/value_col= for long format)."
        )
    repeated = list(pd.unique(df.columns[df.columns.duplicated()]))
    if repeated:
        raise ValueError(f"{what} has repeated column name(s) {repeated}; give every column a unique name.")


def _is_numeric_column(dtype) -> bool:
    return pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    )


def _check_finite_values(values: np.ndarray, names: Sequence[str]) -> None:
    inf = np.isinf(values)
    if inf.any():
        cols = [names[j] for j in np.where(inf.any(0))[0]]
        raise ValueError(
            f"Feature(s) {cols} contain infinite values; replace them with NaN or finite numbers."
        )


def _wide_values(
    df: pd.DataFrame, spec: FrameSpec, feature_names: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Values (n_rows, n_features), NaN where unobserved, of a wide frame, and the feature names."""
    labels = [c for c in df.columns if c not in (spec.id_col, spec.time_col)]
    names = [str(c) for c in labels]
    clashing = sorted({n for n in names if names.count(n) > 1})
    if clashing:
        raise ValueError(f"Feature columns {clashing} have the same name once converted to str; rename them.")
    if feature_names is not None:
        expected = [str(c) for c in feature_names]
        missing = [c for c in expected if c not in names]
        extra = [c for c in names if c not in expected]
        if missing or extra:
            raise ValueError(
                f"Feature columns differ from those seen in fit: missing {missing}, extra {extra}. "
                f"Pass exactly the columns {expected} (plus {spec.id_col!r} and {spec.time_col!r})."
            )
        labels = [labels[names.index(c)] for c in expected]
        names = expected
    if not names:
        raise ValueError(
            f"No feature columns: the DataFrame has only {spec.id_col!r} and {spec.time_col!r}. "
            "Add value columns, or pass variable_col=/value_col= for long format."
        )
    non_numeric = [
        (n, str(df[c].dtype)) for n, c in zip(names, labels) if not _is_numeric_column(df[c].dtype)
    ]
    if non_numeric:
        raise TypeError(
            f"Feature column(s) {[n for n, _ in non_numeric]} are not numeric "
            f"(dtypes {[d for _, d in non_numeric]}); "
            "convert them (pd.to_numeric, one-hot encoding) or drop them."
        )
    values = df[labels].to_numpy(dtype=np.float64, na_value=np.nan)
    _check_finite_values(values, names)
    return values, names


def _long_entries(
    df: pd.DataFrame, spec: FrameSpec, feature_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per row of a long frame: the feature index and the value (NaN allowed); and the feature names.

    Features are every variable present, sorted by name (even one whose values are all NaN, so that a feature
    never observed is reported instead of vanishing), or exactly ``feature_names`` when given.
    """
    var, val = spec.variable_col, spec.value_col
    values = df[val]
    if not _is_numeric_column(values.dtype):
        raise TypeError(
            f"Value column {val!r} has dtype {values.dtype}; expected numbers. "
            "Convert it with pd.to_numeric, or drop the non-numeric variables."
        )
    variables = df[var]
    if variables.isna().any():
        raise ValueError(
            f"Column {var!r} has {int(variables.isna().sum())} missing variable names; drop those rows."
        )
    variables = variables.astype(str).to_numpy(dtype=object)
    present = sorted(pd.unique(variables))
    if feature_names is not None:
        names = [str(c) for c in feature_names]
        unknown = [v for v in present if v not in set(names)]
        if unknown:
            raise ValueError(
                f"Unknown variable(s) {unknown} in column {var!r}; the model was fitted on {names}. "
                "Drop those rows."
            )
    else:
        names = present
    codes = pd.Index(names).get_indexer(variables)
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        raise ValueError(
            f"Value column {val!r} has {int(infinite.sum())} infinite values (variables "
            f"{sorted(pd.unique(variables[infinite]))}); replace them with NaN or finite numbers."
        )
    return codes, values, names


def read_frame(
    df: pd.DataFrame,
    spec: FrameSpec,
    *,
    feature_names: Sequence[str] | None = None,
    codec: TimeCodec | None = None,
    require_all_features: bool = True,
) -> SeriesSet:
    """Validate a wide or long DataFrame and return its :class:`SeriesSet`.

    Parameters
    ----------
    df : pandas.DataFrame
    spec : FrameSpec
    feature_names : sequence of str, optional
        The features seen in ``fit``. When given, the frame's features must be exactly these (a long
        frame may lack some); the error names the missing and the extra columns.
    codec : TimeCodec, optional
        The time codec fitted earlier; the frame's time type must match it.
    require_all_features : bool
        When True (fit), a feature that is never observed is an error.

    Returns
    -------
    SeriesSet
        Sorted by (id, time). Feature column names are converted to ``str``. Duplicate (id, time) rows
        (in long format, duplicate (id, time, variable) rows) are averaged over their observed values with
        a ``UserWarning``, or refused when ``spec.duplicates == "error"``.

    Raises
    ------
    TypeError
        Not a DataFrame; a non-numeric feature or a time column of an unsupported or different type.
    ValueError
        Empty frame; missing or repeated columns; NaN or infinite timestamps; infinite values; missing ids;
        a series with no observed value; a feature never observed; unknown or missing feature columns;
        duplicate rows under ``duplicates="error"``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"Expected a pandas DataFrame, got {type(df).__name__}. Build one with pd.DataFrame(...)."
        )
    if len(df) == 0:
        raise ValueError("The DataFrame is empty: it has no rows. Pass at least one observation.")
    what = "The long-format DataFrame" if spec.is_long else "The DataFrame"
    required = [spec.id_col, spec.time_col] + ([spec.variable_col, spec.value_col] if spec.is_long else [])
    _check_columns(df, required, what)

    ids = df[spec.id_col]
    if ids.isna().any():
        raise ValueError(
            f"Column {spec.id_col!r} has {int(ids.isna().sum())} missing ids; drop or fill those rows."
        )
    codec = codec or TimeCodec.from_values(df[spec.time_col], spec.time_col)
    times = codec.encode(df[spec.time_col], f"Time column {spec.time_col!r}")
    bad = ~np.isfinite(times)
    if bad.any():
        raise ValueError(
            f"Time column {spec.time_col!r} has {int(bad.sum())} NaN or infinite timestamps (series "
            f"{_some(pd.unique(ids[bad]))}); drop those rows or fill in their times."
        )
    if spec.is_long:
        codes, entries, names = _long_entries(df, spec, feature_names)
    else:
        entries, names = _wide_values(df, spec, feature_names)

    # Sort by (id, time), stably; ids end up in sorted order.
    try:
        id_codes, id_uniques = pd.factorize(ids, sort=True)
    except TypeError as err:
        raise TypeError(
            f"Column {spec.id_col!r} mixes id types that cannot be sorted ({err}); use ids of one type."
        ) from None
    order = np.lexsort((times, id_codes))
    id_codes, times = id_codes[order], times[order]
    entries = entries[order]
    raw_times = df[spec.time_col].iloc[order].reset_index(drop=True)
    new_point = np.ones(len(times), dtype=bool)
    new_point[1:] = (id_codes[1:] != id_codes[:-1]) | (times[1:] != times[:-1])
    point = np.cumsum(new_point) - 1  # (id, time) group of every sorted row
    n_points = int(point[-1]) + 1

    if spec.is_long:
        codes = codes[order]
        duplicate = pd.Series(point.astype(np.int64) * len(names) + codes).duplicated().to_numpy()
        kind = "(id, time, variable)"
    else:
        duplicate = ~new_point
        kind = "(id, time)"
    n_dup = int(duplicate.sum())
    if n_dup:
        if spec.duplicates == "error":
            dup_ids = pd.unique(id_uniques[id_codes[duplicate]])
            raise ValueError(
                f"{n_dup} duplicate {kind} rows (series {_some(dup_ids)}); "
                "remove them or pass duplicates='mean' to average them over their observed values."
            )
        warnings.warn(
            f"Averaged {n_dup} duplicate {kind} rows over their observed values.", UserWarning, stacklevel=2
        )

    if spec.is_long or n_dup:
        # Mean over the observed values of each (id, time) point and feature; NaN where none was observed.
        sums = np.zeros((n_points, len(names)))
        counts = np.zeros((n_points, len(names)))
        seen = ~np.isnan(entries)
        if spec.is_long:
            np.add.at(sums, (point[seen], codes[seen]), entries[seen])
            np.add.at(counts, (point[seen], codes[seen]), 1.0)
        else:
            np.add.at(sums, point, np.where(seen, entries, 0.0))
            np.add.at(counts, point, seen.astype(np.float64))
        values = np.full_like(sums, np.nan)
        np.divide(sums, counts, out=values, where=counts > 0)
        id_codes, times = id_codes[new_point], times[new_point]
        raw_times = raw_times[new_point].reset_index(drop=True)
    else:
        values = entries

    reserved = [n for n in names if n in (spec.id_col, spec.time_col, SAMPLE_COLUMN)]
    if reserved:
        raise ValueError(
            f"Feature(s) {reserved} share a name with the id, time or {SAMPLE_COLUMN!r} column of the frames "
            "the model returns; rename them."
        )
    observed = ~np.isnan(values)
    if require_all_features:
        never = [names[j] for j in np.where(~observed.any(0))[0]]
        if never:
            raise ValueError(f"Feature(s) {never} are never observed (all NaN); drop those columns.")
    series_observed = np.zeros(len(id_uniques), dtype=bool)
    np.logical_or.at(series_observed, id_codes, observed.any(1))
    if not series_observed.all():
        empty = id_uniques[~series_observed]
        raise ValueError(
            f"{len(empty)} series have no observed value (ids {_some(empty)}); drop them or add observations."
        )
    counts = np.bincount(id_codes, minlength=len(id_uniques))
    return SeriesSet(
        ids=pd.Index(id_uniques, name=spec.id_col),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        times=times,
        raw_times=raw_times,
        values=values,
        feature_names=tuple(names),
        codec=codec,
    )


def read_queries(times, series: SeriesSet, spec: FrameSpec) -> tuple[list[np.ndarray], list[pd.Series]]:
    """Per-series query times for :class:`SeriesSet` ``series``.

    ``times`` is one array-like applied to every series, a dict ``{id: array}``, or a DataFrame of
    (id, time) query rows. Returns, per series in ``series.ids`` order, the encoded float times and the
    raw times as given (in the user's type).
    """
    codec = series.codec
    n = series.n_series
    if isinstance(times, pd.DataFrame):
        _check_columns(times, [spec.id_col, spec.time_col], "The query DataFrame")
        per_id = {k: g[spec.time_col] for k, g in times.groupby(spec.id_col, sort=False, dropna=False)}
        unknown = [k for k in per_id if k not in series.ids]
        if unknown:
            raise ValueError(
                f"Query ids {_some(unknown)} are not in the context data; add their observations."
            )
        raw = [per_id.get(i, times[spec.time_col].iloc[:0]) for i in series.ids]
    elif isinstance(times, dict):
        unknown = [k for k in times if k not in series.ids]
        if unknown:
            raise ValueError(
                f"Query ids {_some(unknown)} are not in the context data; add their observations."
            )
        raw = [
            pd.Series(times[i]) if i in times else pd.Series([], dtype=series.raw_times.dtype)
            for i in series.ids
        ]
    else:
        if isinstance(times, (str, bytes)) or np.ndim(times) == 0:
            raise TypeError(
                f"times must be an array-like, a dict {{id: times}} or a DataFrame of ({spec.id_col}, "
                f"{spec.time_col}) rows; got {type(times).__name__}."
            )
        if not isinstance(times, (pd.Series, pd.Index)) and np.ndim(times) != 1:
            raise ValueError(
                f"times must be one-dimensional (one array of times for every series), got shape "
                f"{np.shape(times)}; for different times per series pass a dict {{id: times}} or a DataFrame "
                f"of ({spec.id_col}, {spec.time_col}) rows."
            )
        shared = pd.Series(times) if not isinstance(times, pd.Series) else times.reset_index(drop=True)
        raw = [shared] * n
    encoded = []
    for r in raw:
        t = codec.encode(r.reset_index(drop=True), "Query times")
        if not np.isfinite(t).all():
            raise ValueError(
                f"Query times contain {int((~np.isfinite(t)).sum())} NaN or infinite values; remove them."
            )
        encoded.append(t)
    if sum(len(t) for t in encoded) == 0:
        raise ValueError("No query times were given; pass at least one time.")
    return encoded, [r.reset_index(drop=True) for r in raw]


def to_frame(
    series_ids: pd.Index,
    raw_times: Sequence[pd.Series],
    values: Sequence[np.ndarray],
    feature_names: Sequence[str],
    spec: FrameSpec,
    *,
    long: bool | None = None,
    extra: dict[str, Sequence[np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Assemble per-series rows back into a DataFrame with the user's column names and dtypes.

    ``values[i]`` has shape (len(raw_times[i]), n_features). Long format (``variable``/``value`` columns)
    is used when ``long`` is True, or by default when ``spec`` is long; unobserved (NaN) entries are then
    omitted. ``extra`` adds per-row columns placed right after the time column.
    """
    feature_names = [str(c) for c in feature_names]
    if not len(series_ids) == len(raw_times) == len(values):
        raise ValueError(
            f"Got {len(series_ids)} series ids, {len(raw_times)} time arrays and {len(values)} value arrays; "
            "give one of each per series."
        )
    counts = np.array([len(t) for t in raw_times], dtype=np.int64)
    for i, (n, v) in enumerate(zip(counts, values)):
        if np.shape(v) != (n, len(feature_names)):
            raise ValueError(
                f"values[{i}] has shape {np.shape(v)}; expected ({n}, {len(feature_names)}) = "
                "(len(raw_times[i]), n_features)."
            )
    for name, arrays in (extra or {}).items():
        if [len(a) for a in arrays] != counts.tolist():
            raise ValueError(f"extra[{name!r}] must hold one array per series, of lengths {counts.tolist()}.")
    taken = [spec.id_col, spec.time_col, *(extra or {})]
    clash = [c for c in feature_names if c in taken]
    if clash or len(set(taken)) < len(taken):
        raise ValueError(
            f"Column names clash: features {clash}, id/time/extra columns {taken}; "
            "every column needs its own name."
        )
    frame = pd.DataFrame({spec.id_col: pd.Series(series_ids.repeat(counts), dtype=series_ids.dtype)})
    if len(raw_times):
        frame[spec.time_col] = pd.concat(list(raw_times), ignore_index=True)
    else:
        frame[spec.time_col] = pd.Series([], dtype=float)
    for name, arrays in (extra or {}).items():
        frame[name] = np.concatenate(list(arrays)) if len(arrays) else np.array([])
    data = np.concatenate(list(values), axis=0) if len(values) else np.zeros((0, len(feature_names)))
    if not (spec.is_long if long is None else long):
        return pd.concat([frame, pd.DataFrame(data, columns=feature_names)], axis=1)
    # One row per observed entry, in row order and then feature order.
    rows, cols = np.nonzero(~np.isnan(data))
    out = frame.iloc[rows].reset_index(drop=True)
    out[spec.variable_col or "variable"] = pd.Series(pd.Index(feature_names).take(cols))
    out[spec.value_col or "value"] = data[rows, cols]
    return out
