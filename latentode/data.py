"""From pandas records to validated series and typed batches, and back: the irregular-series data layer.

Two DataFrame layouts are accepted:

* **wide**: one row per (id, time), one column per feature, NaN where a feature was not observed;
* **long**: one row per observation, with a ``variable`` column naming the feature and a ``value`` column
  (how medical records such as PhysioNet's come). Select it by giving ``variable_col`` and ``value_col``.

Time may be numeric, ``datetime64`` (timezone-aware or naive) or ``timedelta64``. Internally datetimes
become float **seconds since 1970-01-01** (UTC for aware timestamps) and timedeltas float seconds; what is
returned to the user is always in the user's own time type, id dtype and column names.

Duplicate (id, time) rows are **averaged** feature by feature over their observed values (as the PhysioNet
preprocessing of the Latent ODE paper does), with a warning that counts them; pass ``duplicates="error"``
to refuse them instead. Unsorted input is sorted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import torch

from .batch import IrregularBatch

__all__ = [
    "FrameSpec",
    "TimeCodec",
    "SeriesSet",
    "read_frame",
    "read_queries",
    "to_frame",
    "DUPLICATE_POLICIES",
]

DUPLICATE_POLICIES = ("mean", "error")
"""How duplicate (id, time) rows are handled: averaged over observed values, or refused."""

_EPOCH = pd.Timestamp("1970-01-01")
_ONE_SECOND = pd.Timedelta(seconds=1)
_MAX_IDS_IN_MESSAGE = 5
"""How many offending series ids an error message lists before it says 'and N more'."""


def _some(values: Sequence, n: int = _MAX_IDS_IN_MESSAGE) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:n])
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
                f"variable_col={self.variable_col!r}, value_col={self.value_col!r}); give both, or neither for wide format."
            )
        if self.duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates={self.duplicates!r} is not one of {DUPLICATE_POLICIES}.")
        if self.id_col == self.time_col:
            raise ValueError(f"id_col and time_col are both {self.id_col!r}; they must be different columns.")

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
                f"{'timezone-aware' if self.tz else 'timezone-naive'} datetimes; convert with tz_localize/tz_convert."
            )
        epoch = _EPOCH.tz_localize("UTC") if self.tz is not None else _EPOCH
        return ((s - epoch) / _ONE_SECOND).to_numpy(dtype=np.float64, na_value=np.nan)

    def decode(self, seconds: np.ndarray) -> pd.Series:
        """The inverse of :meth:`encode`, in the user's time dtype."""
        seconds = np.asarray(seconds, dtype=np.float64)
        if self.kind == "numeric":
            out = pd.Series(seconds)
            return out.astype(self.dtype) if np.issubdtype(np.dtype(self.dtype), np.floating) else out
        nanos = np.round(seconds * 1e9).astype("int64")
        delta = pd.to_timedelta(nanos, unit="ns")
        if self.kind == "timedelta":
            return pd.Series(delta).astype(self.dtype)
        if self.tz is not None:
            return pd.Series(_EPOCH.tz_localize("UTC") + delta).dt.tz_convert(self.tz).astype(self.dtype)
        return pd.Series(_EPOCH + delta).astype(self.dtype)


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
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
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
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} is missing column(s) {missing}; it has {list(df.columns)}. "
            "Rename the columns or pass id_col=/time_col= (and variable_col=/value_col= for long format)."
        )


def _long_to_wide(df: pd.DataFrame, spec: FrameSpec, feature_names: Sequence[str] | None) -> pd.DataFrame:
    var, val = spec.variable_col, spec.value_col
    _check_columns(df, [spec.id_col, spec.time_col, var, val], "The long-format DataFrame")
    values = df[val]
    if pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype(np.float64)
    if not pd.api.types.is_numeric_dtype(values.dtype):
        raise TypeError(
            f"Value column {val!r} has dtype {values.dtype}; expected numbers. "
            "Convert it with pd.to_numeric, or drop the non-numeric variables."
        )
    variables = df[var]
    if variables.isna().any():
        raise ValueError(f"Column {var!r} has {int(variables.isna().sum())} missing variable names; drop those rows.")
    # Every variable present becomes a column (sorted by name), even one whose values are all NaN, so that
    # a feature never observed anywhere is reported by the wide-format checks below instead of vanishing.
    names = pd.Index(sorted(pd.unique(variables.astype(str))))
    if feature_names is not None:
        names = names.union(pd.Index(feature_names), sort=False)
    codes = pd.Categorical(variables.astype(str), categories=names)
    long = pd.DataFrame(
        {
            "__id": df[spec.id_col].reset_index(drop=True),
            "__time": df[spec.time_col].reset_index(drop=True),
            "__var": codes,
            "__val": values.reset_index(drop=True),
        }
    )
    # Duplicates of (id, time, variable) are averaged here and counted for the policy check.
    n_dup = int(long.duplicated(["__id", "__time", "__var"]).sum())
    if n_dup and spec.duplicates == "error":
        raise ValueError(
            f"{n_dup} duplicate (id, time, variable) rows; remove them or pass duplicates='mean' to average them."
        )
    if n_dup:
        warnings.warn(f"Averaged {n_dup} duplicate (id, time, variable) rows.", UserWarning, stacklevel=4)
    wide = long.pivot_table(
        index=["__id", "__time"], columns="__var", values="__val", aggfunc="mean", dropna=False, observed=False
    )
    wide.columns = [str(c) for c in wide.columns]
    # pivot_table drops (id, time) pairs whose values are all NaN; keep every such pair as an unobserved row.
    keys = long[["__id", "__time"]].drop_duplicates()
    wide = keys.merge(wide.reset_index(), on=["__id", "__time"], how="left")
    return wide.rename(columns={"__id": spec.id_col, "__time": spec.time_col})


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

    Raises
    ------
    TypeError
        Not a DataFrame; a non-numeric feature or a time column of an unsupported or different type.
    ValueError
        Empty frame; missing id/time columns; NaN or infinite timestamps or values; missing ids; a series
        with no observed value; a feature never observed; unknown or missing feature columns; duplicate
        (id, time) rows under ``duplicates="error"``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Expected a pandas DataFrame, got {type(df).__name__}. Build one with pd.DataFrame(...).")
    if len(df) == 0:
        raise ValueError("The DataFrame is empty: it has no rows. Pass at least one observation.")
    _check_columns(df, [spec.id_col, spec.time_col], "The DataFrame")
    if spec.is_long:
        if feature_names is not None:
            unknown = sorted(set(df[spec.variable_col].astype(str)) - set(feature_names))
            if unknown:
                raise ValueError(
                    f"Unknown variable(s) {unknown} in column {spec.variable_col!r}; the model was fitted on "
                    f"{list(feature_names)}. Drop those rows."
                )
        df = _long_to_wide(df, spec, feature_names)
        duplicates_checked = True
    else:
        duplicates_checked = False

    ids = df[spec.id_col]
    if ids.isna().any():
        raise ValueError(f"Column {spec.id_col!r} has {int(ids.isna().sum())} missing ids; drop or fill those rows.")
    codec = codec or TimeCodec.from_values(df[spec.time_col], spec.time_col)
    times = codec.encode(df[spec.time_col], f"Time column {spec.time_col!r}")
    bad = ~np.isfinite(times)
    if bad.any():
        bad_ids = pd.unique(ids[bad])
        raise ValueError(
            f"Time column {spec.time_col!r} has {int(bad.sum())} NaN or infinite timestamps (series "
            f"{_some(bad_ids)}); drop those rows or fill in their times."
        )

    present = [c for c in df.columns if c not in (spec.id_col, spec.time_col)]
    if feature_names is not None:
        missing = [c for c in feature_names if c not in present]
        extra = [c for c in present if c not in feature_names]
        if extra or (missing and not spec.is_long):
            raise ValueError(
                f"Feature columns differ from those seen in fit: missing {missing}, extra {extra}. "
                f"Pass exactly the columns {list(feature_names)} (plus {spec.id_col!r} and {spec.time_col!r})."
            )
        present = list(feature_names)
    if not present:
        raise ValueError(
            f"No feature columns: the DataFrame has only {spec.id_col!r} and {spec.time_col!r}. Add value columns, "
            "or pass variable_col=/value_col= for long format."
        )
    non_numeric = [
        c for c in present if not (pd.api.types.is_numeric_dtype(df[c].dtype) or pd.api.types.is_bool_dtype(df[c].dtype))
    ]
    if non_numeric:
        raise TypeError(
            f"Feature column(s) {non_numeric} are not numeric ({[str(df[c].dtype) for c in non_numeric]}); "
            "convert them (pd.to_numeric, one-hot encoding) or drop them."
        )
    values = df[present].to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        cols = [present[j] for j in np.where(np.isinf(values).any(0))[0]]
        raise ValueError(f"Feature column(s) {cols} contain infinite values; replace them with NaN or finite numbers.")

    # Sort by (id, time) with a stable sort; ids keep their first-appearance order only if already sorted.
    id_codes, id_uniques = pd.factorize(ids, sort=True)
    order = np.lexsort((times, id_codes))
    id_codes, times, values = id_codes[order], times[order], values[order]
    raw_times = df[spec.time_col].iloc[order].reset_index(drop=True)

    same = (id_codes[1:] == id_codes[:-1]) & (times[1:] == times[:-1])
    if same.any():
        if spec.duplicates == "error" and not duplicates_checked:
            dup_ids = pd.unique(id_uniques[id_codes[1:][same]])
            raise ValueError(
                f"{int(same.sum())} duplicate (id, time) rows (series {_some(dup_ids)}); remove them or pass "
                "duplicates='mean' to average them."
            )
        group = np.concatenate([[0], np.cumsum(~same)])
        if not duplicates_checked:
            warnings.warn(
                f"Averaged {int(same.sum())} duplicate (id, time) rows over their observed values.",
                UserWarning,
                stacklevel=2,
            )
        frame = pd.DataFrame(values).groupby(group, sort=True).mean()
        first = np.concatenate([[True], ~same])
        values = frame.to_numpy(dtype=np.float64)
        id_codes, times = id_codes[first], times[first]
        raw_times = raw_times[first].reset_index(drop=True)

    observed = ~np.isnan(values)
    if require_all_features:
        never = [present[j] for j in np.where(~observed.any(0))[0]]
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
        feature_names=tuple(str(c) for c in present),
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
        per_id = {k: g[spec.time_col] for k, g in times.groupby(spec.id_col, sort=False)}
        unknown = [k for k in per_id if k not in series.ids]
        if unknown:
            raise ValueError(f"Query ids {_some(unknown)} are not in the context data; add their observations.")
        raw = [per_id.get(i, times[spec.time_col].iloc[:0]) for i in series.ids]
    elif isinstance(times, dict):
        unknown = [k for k in times if k not in series.ids]
        if unknown:
            raise ValueError(f"Query ids {_some(unknown)} are not in the context data; add their observations.")
        raw = [pd.Series(times[i]) if i in times else pd.Series([], dtype=series.raw_times.dtype) for i in series.ids]
    else:
        if isinstance(times, (str, bytes)) or np.ndim(times) == 0:
            raise TypeError(
                f"times must be an array-like, a dict {{id: times}} or a DataFrame of ({spec.id_col}, "
                f"{spec.time_col}) rows; got {type(times).__name__}."
            )
        shared = pd.Series(times) if not isinstance(times, pd.Series) else times.reset_index(drop=True)
        raw = [shared] * n
    encoded = []
    for r in raw:
        t = codec.encode(r.reset_index(drop=True), "Query times")
        if not np.isfinite(t).all():
            raise ValueError("Query times contain NaN or infinite values; remove them.")
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
    counts = np.array([len(t) for t in raw_times], dtype=np.int64)
    frame = pd.DataFrame({spec.id_col: pd.Series(series_ids.repeat(counts), dtype=series_ids.dtype)})
    if len(raw_times):
        frame[spec.time_col] = pd.concat(list(raw_times), ignore_index=True)
    else:
        frame[spec.time_col] = pd.Series([], dtype=float)
    for name, arrays in (extra or {}).items():
        frame[name] = np.concatenate(list(arrays)) if len(arrays) else np.array([])
    data = np.concatenate(list(values), axis=0) if len(values) else np.zeros((0, len(feature_names)))
    wide = pd.concat([frame, pd.DataFrame(data, columns=list(feature_names))], axis=1)
    if not (spec.is_long if long is None else long):
        return wide
    keys = [c for c in wide.columns if c not in feature_names]
    melted = wide.melt(id_vars=keys, value_vars=list(feature_names), var_name=spec.variable_col or "variable",
                       value_name=spec.value_col or "value", ignore_index=False)
    melted = melted.dropna(subset=[spec.value_col or "value"])
    melted["__row"] = melted.index
    melted = melted.sort_values(["__row"], kind="stable").drop(columns="__row").reset_index(drop=True)
    return melted
