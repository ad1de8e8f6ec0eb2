"""Tests of latentode.data: reading pandas frames, validation, batching, and the way back to pandas."""

from __future__ import annotations

import datetime as dt
import string
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentode.batch import IrregularBatch
from latentode.data import FrameSpec, SeriesSet, TimeCodec, read_frame, read_queries, to_frame

WIDE = FrameSpec()
LONG = FrameSpec(variable_col="variable", value_col="value")

# ---------------------------------------------------------------------------------------------- helpers


def per_series(s: SeriesSet, array) -> list:
    """Split a per-row array or Series of ``s`` into one piece per series."""
    pieces = []
    for i in range(s.n_series):
        lo, hi = s.offsets[i], s.offsets[i + 1]
        pieces.append(array.iloc[lo:hi] if isinstance(array, pd.Series) else array[lo:hi])
    return pieces


def set_to_frame(s: SeriesSet, spec: FrameSpec, **kwargs) -> pd.DataFrame:
    return to_frame(
        s.ids, per_series(s, s.raw_times), per_series(s, s.values), s.feature_names, spec, **kwargs
    )


def batch_to_frame(batch: IrregularBatch, s: SeriesSet, spec: FrameSpec) -> pd.DataFrame:
    """Back from a float64 batch to pandas: decode times, NaN where the mask is False, drop the padding."""
    raw_times, values = [], []
    for i in range(batch.batch_size):
        n = int(batch.lengths[i])
        raw_times.append(s.codec.decode(batch.times[i, :n].numpy()))
        v = batch.values[i, :n].numpy().copy()
        v[~batch.mask[i, :n].numpy()] = np.nan
        values.append(v)
    return to_frame(s.ids, raw_times, values, s.feature_names, spec)


def sorted_frame(df: pd.DataFrame, by=("id", "time")) -> pd.DataFrame:
    return df.sort_values(list(by), kind="stable").reset_index(drop=True)


def make_wide(id_type: str = "int", time_type: str = "float") -> pd.DataFrame:
    """Three series, shuffled rows, a NaN pattern with every series and feature observed."""
    ids = {"int": [7, 7, 7, 3, 3, 11], "str": ["b", "b", "b", "a", "a", "c"]}[id_type]
    hours = [2.5, 0.0, 1.0, 4.0, 0.5, 3.0]
    df = pd.DataFrame(
        {
            "id": ids,
            "time": hours,
            "x": [1.5, np.nan, -2.0, 0.25, np.nan, 9.0],
            "y": [np.nan, 3.0, np.nan, 1e-3, -7.0, np.nan],
        }
    )
    df["time"] = convert_hours(df["time"], time_type)
    return df


def convert_hours(hours: pd.Series, time_type: str) -> pd.Series:
    if time_type == "float":
        return hours.astype(np.float64)
    if time_type == "int":
        return (hours * 2).astype(np.int64)
    if time_type == "datetime":
        return pd.Timestamp("2021-03-04 05:06:07.123456") + pd.to_timedelta(hours, unit="h")
    if time_type == "datetime_tz":
        return pd.Timestamp("2021-03-28 00:30", tz="Europe/Paris") + pd.to_timedelta(hours, unit="h")
    if time_type == "timedelta":
        return pd.to_timedelta(hours, unit="h") + pd.Timedelta(microseconds=17)
    raise AssertionError(time_type)


TIME_TYPES = ["float", "int", "datetime", "datetime_tz", "timedelta"]
ID_TYPES = ["int", "str"]


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("time_type", TIME_TYPES)
@pytest.mark.parametrize("id_type", ID_TYPES)
def test_wide_round_trip_is_exact(id_type, time_type):
    df = make_wide(id_type, time_type)
    s = read_frame(df, WIDE)
    out = set_to_frame(s, WIDE)
    pd.testing.assert_frame_equal(out, sorted_frame(df))
    assert out["id"].dtype == df["id"].dtype
    assert out["time"].dtype == df["time"].dtype


@pytest.mark.parametrize("time_type", TIME_TYPES)
@pytest.mark.parametrize("id_type", ID_TYPES)
def test_round_trip_through_batch_is_exact(id_type, time_type):
    df = make_wide(id_type, time_type)
    s = read_frame(df, WIDE)
    batch = s.to_batch(dtype=torch.float64)
    out = batch_to_frame(batch, s, WIDE)
    pd.testing.assert_frame_equal(out, sorted_frame(df))


@pytest.mark.parametrize("time_type", TIME_TYPES)
def test_long_round_trip_is_exact(time_type):
    wide = make_wide("str", time_type)
    long = wide.melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
    s = read_frame(long.sample(frac=1.0, random_state=0), LONG)
    assert s.feature_names == ("x", "y")
    out = set_to_frame(s, LONG)
    pd.testing.assert_frame_equal(out, sorted_frame(long, ("id", "time", "variable")))
    # The same data in wide format, and the wide and long readings agree.
    pd.testing.assert_frame_equal(set_to_frame(s, LONG, long=False), sorted_frame(wide))


def test_custom_column_names_are_preserved():
    df = make_wide("str").rename(columns={"id": "patient", "time": "t", "x": "Heart rate", "y": "pH"})
    spec = FrameSpec(id_col="patient", time_col="t")
    s = read_frame(df, spec)
    assert s.feature_names == ("Heart rate", "pH")
    assert s.ids.name == "patient"
    out = set_to_frame(s, spec)
    assert list(out.columns) == ["patient", "t", "Heart rate", "pH"]
    pd.testing.assert_frame_equal(out, sorted_frame(df, ("patient", "t")))

    long = df.melt(id_vars=["patient", "t"], var_name="param", value_name="v").dropna()
    long_spec = FrameSpec(id_col="patient", time_col="t", variable_col="param", value_col="v")
    s_long = read_frame(long, long_spec)
    out_long = set_to_frame(s_long, long_spec)
    assert list(out_long.columns) == ["patient", "t", "param", "v"]
    pd.testing.assert_frame_equal(out_long, sorted_frame(long, ("patient", "t", "param")))


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint16", "str", "object", "category", "string"])
def test_id_dtype_is_preserved(dtype):
    df = make_wide("int")
    df["id"] = (
        df["id"].astype(dtype)
        if dtype not in ("str", "object", "string")
        else df["id"].map(lambda i: f"p{i}").astype(dtype)
    )
    s = read_frame(df, WIDE)
    assert s.ids.dtype == df["id"].dtype
    out = set_to_frame(s, WIDE)
    assert out["id"].dtype == df["id"].dtype
    pd.testing.assert_frame_equal(out, sorted_frame(df))


def test_to_frame_extra_columns_follow_time():
    s = read_frame(make_wide(), WIDE)
    out = set_to_frame(s, WIDE, extra={"std": per_series(s, np.arange(len(s.times), dtype=float))})
    assert list(out.columns) == ["id", "time", "std", "x", "y"]
    np.testing.assert_array_equal(out["std"], np.arange(len(s.times)))


def test_to_frame_long_omits_unobserved_entries():
    s = read_frame(make_wide(), WIDE)
    out = set_to_frame(s, WIDE, long=True)
    assert list(out.columns) == ["id", "time", "variable", "value"]
    assert len(out) == int((~np.isnan(s.values)).sum())
    assert out["value"].notna().all()


def test_to_frame_rejects_inconsistent_pieces():
    s = read_frame(make_wide(), WIDE)
    with pytest.raises(ValueError, match="series ids.*time arrays.*value arrays"):
        to_frame(s.ids, per_series(s, s.raw_times)[:-1], per_series(s, s.values), s.feature_names, WIDE)
    values = per_series(s, s.values)
    values[0] = values[0][:, :1]
    with pytest.raises(ValueError, match=r"values\[0\] has shape"):
        to_frame(s.ids, per_series(s, s.raw_times), values, s.feature_names, WIDE)
    with pytest.raises(ValueError, match="clash"):
        to_frame(s.ids, per_series(s, s.raw_times), per_series(s, s.values), ("id", "y"), WIDE)


# ------------------------------------------------------------------------------------ layout and batch


def test_unsorted_input_is_sorted():
    s = read_frame(make_wide("int"), WIDE)
    assert list(s.ids) == [3, 7, 11]
    np.testing.assert_array_equal(s.offsets, [0, 2, 5, 6])
    for t in per_series(s, s.times):
        assert np.all(np.diff(t) > 0)
    np.testing.assert_array_equal(s.values[:, 0], [np.nan, 0.25, np.nan, -2.0, 1.5, 9.0])


def test_batch_padding_semantics():
    s = read_frame(make_wide("int"), WIDE)
    batch = s.to_batch()
    assert batch.times.shape == (3, 3) and batch.values.shape == (3, 3, 2) and batch.mask.shape == (3, 3, 2)
    assert batch.times.dtype == torch.float32 and batch.mask.dtype == torch.bool
    assert batch.lengths.tolist() == [2, 3, 1]
    valid = batch.time_mask
    assert valid.tolist() == [[True, True, False], [True, True, True], [True, False, False]]
    for i, n in enumerate(batch.lengths.tolist()):
        times = batch.times[i]
        assert torch.all(times[n:] == times[n - 1]), "padded times repeat the last valid time"
        assert torch.all(times[1:n] > times[: n - 1]), "valid times strictly increase"
    assert not batch.mask[~valid].any(), "mask is False at padding"
    assert torch.all(batch.values[~valid] == 0), "values are 0 at padding"
    assert torch.all(batch.values[~batch.mask] == 0), "values are 0 wherever unobserved"
    assert torch.isfinite(batch.values).all()
    assert batch.last_times.tolist() == [4.0, 2.5, 3.0]


def test_mask_matches_nan_pattern():
    s = read_frame(make_wide("str"), WIDE)
    batch = s.to_batch(dtype=torch.float64)
    for i, (values, n) in enumerate(zip(per_series(s, s.values), batch.lengths.tolist())):
        np.testing.assert_array_equal(batch.mask[i, :n].numpy(), ~np.isnan(values))
        observed = ~np.isnan(values)
        np.testing.assert_array_equal(batch.values[i, :n].numpy()[observed], values[observed])


def test_to_batch_positions_and_transforms():
    s = read_frame(make_wide("int"), WIDE)
    batch = s.to_batch(
        [2, 0], time_transform=lambda t: t * 10, value_transform=lambda v: v + 1, dtype=torch.float64
    )
    assert batch.lengths.tolist() == [1, 2]
    assert batch.times.tolist() == [[30.0, 30.0], [5.0, 40.0]]
    assert batch.values[0, 0].tolist() == [10.0, 0.0]
    assert batch.mask[0, 0].tolist() == [True, False]
    sub = s.subset([2, 0])
    assert list(sub.ids) == [11, 3] and sub.offsets.tolist() == [0, 1, 3]
    assert sub.raw_times.tolist() == [3.0, 0.5, 4.0]


def test_to_batch_with_no_series():
    s = read_frame(make_wide(), WIDE)
    batch = s.to_batch(np.array([], dtype=int))
    assert batch.batch_size == 0 and batch.times.shape == (0, 1)


def test_select_points_moves_kept_points_to_front():
    s = read_frame(make_wide("int"), WIDE)
    batch = s.to_batch(dtype=torch.float64)
    keep = torch.tensor([[False, True, True], [True, False, True], [True, True, True]])
    out = batch.select_points(keep)
    assert out.lengths.tolist() == [1, 2, 1]
    assert out.times.shape == (3, 2)
    assert out.times[0].tolist() == [4.0, 4.0]
    assert out.times[1].tolist() == [0.0, 2.5]
    assert out.times[2].tolist() == [3.0, 3.0]
    assert torch.equal(out.values[1, 1], batch.values[1, 2])
    assert out.mask[1, 1].tolist() == batch.mask[1, 2].tolist()
    valid = out.time_mask
    assert not out.mask[~valid].any() and torch.all(out.values[~valid] == 0)
    with pytest.raises(ValueError, match="no time points"):
        batch.select_points(torch.tensor([[False, False, True], [True, True, True], [True, True, True]]))


def test_index_trims_to_longest_selected_series():
    s = read_frame(make_wide("int"), WIDE)
    batch = s.to_batch()
    sub = batch.index(torch.tensor([2, 0]))
    assert sub.lengths.tolist() == [1, 2] and sub.times.shape == (2, 2)
    assert torch.equal(sub.values, batch.values[[2, 0], :2])
    assert batch.index(slice(2, 3)).times.shape == (1, 1)


# --------------------------------------------------------------------------------------------- time


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_datetime_decode_is_exact_on_the_microsecond_grid(unit):
    t = pd.Series(
        pd.to_datetime(
            ["1969-07-20 20:17:40", "2020-02-29 23:59:59.999", "2037-12-31 01:02:03.456789"], format="ISO8601"
        )
    )
    t = t.astype(f"datetime64[{unit}]")
    codec = TimeCodec.from_values(t)
    seconds = codec.encode(t)
    assert seconds[0] == (pd.Timestamp("1969-07-20 20:17:40") - pd.Timestamp("1970-01-01")).total_seconds()
    pd.testing.assert_series_equal(codec.decode(seconds), t)


def test_datetime_unit_is_seconds_since_epoch_in_utc():
    naive = pd.Series([pd.Timestamp("1970-01-02")])
    aware = pd.Series([pd.Timestamp("1970-01-02 01:00", tz=dt.timezone(dt.timedelta(hours=1)))])
    assert TimeCodec.from_values(naive).encode(naive).tolist() == [86400.0]
    assert TimeCodec.from_values(aware).encode(aware).tolist() == [86400.0]
    delta = pd.Series(pd.to_timedelta([1.5], unit="min"))
    assert TimeCodec.from_values(delta).encode(delta).tolist() == [90.0]


def test_decode_keeps_user_types():
    ints = pd.Series([3, 5], dtype="int32")
    codec = TimeCodec.from_values(ints)
    assert codec.decode(np.array([3.0, 5.0])).dtype == np.int32
    assert codec.decode(np.array([3.5])).dtype == np.float64, "non-integral times cannot be int"
    far = pd.Series(pd.to_datetime(["2900-01-01"])).astype("datetime64[s]")
    pd.testing.assert_series_equal(
        TimeCodec.from_values(far).decode(TimeCodec.from_values(far).encode(far)), far
    )
    naive = pd.Series(pd.to_datetime(["2020-01-01"]))
    assert TimeCodec.from_values(naive).decode(np.array([np.nan])).isna().all()


def test_time_type_must_match_the_fitted_codec():
    fit = read_frame(make_wide("int", "datetime"), WIDE)
    with pytest.raises(TypeError, match="numeric values.*fitted on datetime"):
        read_frame(make_wide("int", "float"), WIDE, codec=fit.codec, feature_names=fit.feature_names)
    with pytest.raises(TypeError, match="timezone-aware.*timezone-naive"):
        read_frame(make_wide("int", "datetime_tz"), WIDE, codec=fit.codec, feature_names=fit.feature_names)


# ----------------------------------------------------------------------------------------- duplicates


def test_duplicates_are_averaged_over_observed_values_with_a_warning():
    df = pd.DataFrame(
        {
            "id": [1, 1, 1, 1],
            "time": [0.0, 1.0, 0.0, 0.0],
            "x": [1.0, 5.0, 3.0, np.nan],
            "y": [np.nan, 1, np.nan, 4],
        }
    )
    with pytest.warns(UserWarning, match=r"Averaged 2 duplicate \(id, time\) rows"):
        s = read_frame(df, WIDE)
    np.testing.assert_array_equal(s.times, [0.0, 1.0])
    np.testing.assert_array_equal(s.values, [[2.0, 4.0], [5.0, 1.0]])
    assert s.raw_times.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match=r"2 duplicate \(id, time\) rows \(series 1\).*duplicates='mean'"):
        read_frame(df, FrameSpec(duplicates="error"))


def test_long_duplicates_are_averaged_or_refused():
    long = pd.DataFrame(
        {
            "id": ["a"] * 4,
            "time": [0.0, 0.0, 0.0, 1.0],
            "variable": ["x", "x", "y", "x"],
            "value": [1.0, 2, 5, 7],
        }
    )
    with pytest.warns(UserWarning, match=r"Averaged 1 duplicate \(id, time, variable\) rows"):
        s = read_frame(long, LONG)
    np.testing.assert_array_equal(s.values, [[1.5, 5.0], [7.0, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_frame(long.iloc[1:], LONG)  # several variables at one (id, time) are not duplicates
    with pytest.raises(ValueError, match=r"1 duplicate \(id, time, variable\) rows \(series 'a'\)"):
        read_frame(long, FrameSpec(variable_col="variable", value_col="value", duplicates="error"))


def test_long_rows_with_nan_values_keep_their_time_point():
    long = pd.DataFrame({"id": [1, 1], "time": [0.0, 1.0], "variable": ["x", "x"], "value": [2.0, np.nan]})
    s = read_frame(long, LONG)
    np.testing.assert_array_equal(s.times, [0.0, 1.0])
    np.testing.assert_array_equal(s.values, [[2.0], [np.nan]])


def test_long_format_does_not_build_a_dense_id_by_time_grid():
    rng = np.random.default_rng(0)
    n_ids, per_id = 1000, 20
    long = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n_ids), per_id),
            "time": rng.random(n_ids * per_id),
            "variable": rng.choice(["a", "b", "c"], n_ids * per_id),
            "value": rng.random(n_ids * per_id),
        }
    )
    tracemalloc.start()
    try:
        s = read_frame(long, LONG)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(s.times) == n_ids * per_id
    assert peak < 50e6, f"reading a 20k-row long frame took {peak / 1e6:.0f} MB"


# ----------------------------------------------------------------------------------------- validation

BAD_WIDE = [
    ("missing id", lambda df: df.drop(columns="id"), ValueError, r"missing column\(s\) \['id'\].*id_col="),
    ("missing time", lambda df: df.drop(columns="time"), ValueError, r"missing column\(s\) \['time'\]"),
    (
        "NaN time",
        lambda df: df.assign(time=[0.0, np.nan, 1, 2, 3, 4]),
        ValueError,
        r"1 NaN or infinite timestamps \(series 7\)",
    ),
    (
        "inf time",
        lambda df: df.assign(time=[0.0, np.inf, 1, 2, 3, 4]),
        ValueError,
        "NaN or infinite timestamps",
    ),
    (
        "NaT",
        lambda df: df.assign(
            time=pd.to_datetime(["2020-01-01", None, "2020-01-02", "2020-01-01", "2020-01-03", "2020-01-01"])
        ),
        ValueError,
        "NaN or infinite timestamps",
    ),
    (
        "string time",
        lambda df: df.assign(time=df["time"].astype(str)),
        TypeError,
        "Time column 'time' has dtype.*pd.to_datetime",
    ),
    (
        "non-numeric feature",
        lambda df: df.assign(z=list("abcdef")),
        TypeError,
        r"Feature column\(s\) \['z'\] are not numeric",
    ),
    (
        "series without observation",
        lambda df: df.assign(x=[1.0, 2, np.nan, np.nan, 3, 4], y=np.nan),
        ValueError,
        "never observed",
    ),
    (
        "series without observation",
        lambda df: df.assign(x=[1.0, 2, 3, np.nan, np.nan, 4], y=[1.0, np.nan, np.nan, np.nan, np.nan, 2]),
        ValueError,
        r"1 series have no observed value \(ids 3\)",
    ),
    (
        "never observed",
        lambda df: df.assign(z=np.nan),
        ValueError,
        r"Feature\(s\) \['z'\] are never observed",
    ),
    ("empty", lambda df: df.iloc[:0], ValueError, "DataFrame is empty"),
    ("infinite value", lambda df: df.assign(x=np.inf), ValueError, r"\['x'\] contain infinite values"),
    ("missing ids", lambda df: df.assign(id=[1.0, np.nan, 2, 2, 3, 3]), ValueError, "1 missing ids"),
    ("no features", lambda df: df[["id", "time"]], ValueError, "No feature columns"),
    (
        "repeated columns",
        lambda df: pd.concat([df, df[["x"]]], axis=1),
        ValueError,
        r"repeated column name\(s\) \['x'\]",
    ),
    ("not a frame", lambda df: df.to_numpy(), TypeError, "Expected a pandas DataFrame"),
]


@pytest.mark.parametrize("name, corrupt, error, match", BAD_WIDE, ids=[b[0] for b in BAD_WIDE])
def test_bad_wide_input_is_refused_with_a_clear_message(name, corrupt, error, match):
    df = make_wide("int")
    with pytest.raises(error, match=match):
        read_frame(corrupt(df), WIDE)


def test_predict_time_feature_columns_must_match_fit():
    fit = read_frame(make_wide(), WIDE)
    new = make_wide().rename(columns={"y": "z"}).assign(w=1.0)
    with pytest.raises(ValueError, match=r"missing \['y'\], extra \['z', 'w'\]"):
        read_frame(new, WIDE, feature_names=fit.feature_names, codec=fit.codec)
    # Same columns in another order are fine, and come back in the fitted order.
    reordered = make_wide()[["y", "time", "x", "id"]]
    s = read_frame(reordered, WIDE, feature_names=fit.feature_names, codec=fit.codec)
    assert s.feature_names == ("x", "y")
    np.testing.assert_array_equal(s.values, fit.values)
    # At predict time a feature may be unobserved in the new data.
    partial = make_wide().assign(y=np.nan)
    s = read_frame(
        partial, WIDE, feature_names=fit.feature_names, codec=fit.codec, require_all_features=False
    )
    assert np.isnan(s.values[:, 1]).all()


def test_a_frame_with_a_shuffled_index_reads_by_position():
    df = make_wide("str").set_axis([10, 3, 5, 99, 0, 1])
    pd.testing.assert_frame_equal(set_to_frame(read_frame(df, WIDE), WIDE), sorted_frame(df))
    with pytest.raises(ValueError, match=r"1 NaN or infinite timestamps \(series 'a'\)"):
        read_frame(df.assign(time=[0.0, 1.0, 2.0, np.nan, 4.0, 5.0]), WIDE)


def test_non_string_column_names_are_compared_as_strings():
    df = make_wide().rename(columns={"x": 0, "y": 1})
    s = read_frame(df, WIDE)
    assert s.feature_names == ("0", "1")
    read_frame(df, WIDE, feature_names=s.feature_names)
    with pytest.raises(ValueError, match="same name once converted to str"):
        read_frame(make_wide().rename(columns={"x": 1, "y": "1"}), WIDE)


def test_bad_long_input_is_refused_with_a_clear_message():
    long = make_wide().melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
    with pytest.raises(ValueError, match=r"long-format DataFrame is missing column\(s\) \['variable'\]"):
        read_frame(long.drop(columns="variable"), LONG, feature_names=["x", "y"])
    with pytest.raises(ValueError, match=r"Unknown variable\(s\) \['y'\] in column 'variable'"):
        read_frame(long, LONG, feature_names=["x"])
    with pytest.raises(TypeError, match="Value column 'value' has dtype"):
        read_frame(long.assign(value="high"), LONG)
    with pytest.raises(ValueError, match="missing variable names"):
        read_frame(long.assign(variable=None), LONG)
    with pytest.raises(ValueError, match=r"Feature\(s\) \['z'\] are never observed"):
        read_frame(pd.concat([long, long.iloc[:1].assign(variable="z", value=np.nan)]), LONG)
    with pytest.raises(ValueError, match="NaN or infinite timestamps"):
        read_frame(long.assign(time=np.nan), LONG)
    with pytest.raises(ValueError, match=r"Value column 'value' has 1 infinite values \(variables \['x'\]\)"):
        read_frame(pd.concat([long, long.iloc[:1].assign(value=np.inf)]), LONG)
    with pytest.raises(ValueError, match="variable_col and value_col"):
        FrameSpec(variable_col="variable")


def test_long_predict_may_lack_some_variables():
    long = make_wide().melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
    only_x = long[long["variable"] == "x"]
    s = read_frame(only_x, LONG, feature_names=["x", "y"], require_all_features=False)
    assert s.feature_names == ("x", "y")
    assert np.isnan(s.values[:, 1]).all()


def test_frame_spec_is_validated():
    with pytest.raises(ValueError, match="duplicates='drop' is not one of"):
        FrameSpec(duplicates="drop")
    with pytest.raises(ValueError, match="must name different columns"):
        FrameSpec(id_col="t", time_col="t")
    with pytest.raises(ValueError, match="must name different columns"):
        FrameSpec(variable_col="v", value_col="v")
    with pytest.raises(ValueError, match="must name different columns"):
        FrameSpec(variable_col="variable", value_col="time")


@pytest.mark.parametrize("name", ["id", "time", "sample"])
def test_features_may_not_take_the_names_of_returned_columns(name):
    # A long-format variable called like the id or time column, or "sample", would clash in predict's frames.
    long = pd.DataFrame({"id": [0, 0, 1, 1], "time": [0.0, 1.0, 0.0, 1.0], "variable": [name, "a"] * 2,
                         "value": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match=f"Feature\\(s\\) \\['{name}'\\] share a name"):
        read_frame(long, LONG)
    if name == "sample":
        with pytest.raises(ValueError, match="share a name"):
            read_frame(make_wide().rename(columns={"x": "sample"}), WIDE)


def test_multiindex_columns_are_refused():
    wide = make_wide()
    wide.columns = pd.MultiIndex.from_tuples([(c, "") for c in wide.columns])
    with pytest.raises(TypeError, match="MultiIndex columns; flatten"):
        read_frame(wide, WIDE)


# ---------------------------------------------------------------------------------------------- queries


def test_read_queries_shared_dict_and_frame():
    s = read_frame(make_wide("str"), WIDE)  # ids a, b, c
    encoded, raw = read_queries([0.0, 10.0], s, WIDE)
    assert len(encoded) == 3 and all(e.tolist() == [0.0, 10.0] for e in encoded)

    encoded, raw = read_queries({"c": [5.0], "a": np.array([1.0, 2.0])}, s, WIDE)
    assert [e.tolist() for e in encoded] == [[1.0, 2.0], [], [5.0]]
    assert raw[1].dtype == s.raw_times.dtype

    frame = pd.DataFrame({"id": ["b", "a", "b"], "time": [3.0, 4.0, 1.0]})
    encoded, raw = read_queries(frame, s, WIDE)
    assert [e.tolist() for e in encoded] == [[4.0], [3.0, 1.0], []]
    assert [r.tolist() for r in raw] == [[4.0], [3.0, 1.0], []]


def test_read_queries_in_datetime_follow_the_codec():
    s = read_frame(make_wide("int", "datetime_tz"), WIDE)
    when = pd.Timestamp("2021-03-28 12:00", tz="UTC")
    encoded, raw = read_queries(pd.Series([when]), s, WIDE)
    assert encoded[0][0] == (when - pd.Timestamp("1970-01-01", tz="UTC")).total_seconds()
    assert raw[0].tolist() == [when]
    with pytest.raises(TypeError, match="numeric values"):
        read_queries([1.0], s, WIDE)


def test_read_queries_refuses_bad_input():
    s = read_frame(make_wide("str"), WIDE)
    with pytest.raises(ValueError, match=r"Query ids 'zz' are not in the context data"):
        read_queries({"zz": [1.0]}, s, WIDE)
    with pytest.raises(ValueError, match=r"Query ids 'zz' are not in the context data"):
        read_queries(pd.DataFrame({"id": ["a", "zz"], "time": [1.0, 2.0]}), s, WIDE)
    with pytest.raises(ValueError, match="not in the context data"):
        read_queries(pd.DataFrame({"id": ["a", None], "time": [1.0, 2.0]}), s, WIDE)
    with pytest.raises(ValueError, match="missing column"):
        read_queries(pd.DataFrame({"id": ["a"]}), s, WIDE)
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        read_queries([1.0, np.nan], s, WIDE)
    with pytest.raises(ValueError, match="No query times"):
        read_queries([], s, WIDE)
    with pytest.raises(TypeError, match="times must be an array-like"):
        read_queries(1.0, s, WIDE)


# ------------------------------------------------------------------------------------------- properties

NAME = st.text(alphabet=string.ascii_letters + string.digits + " _", min_size=1, max_size=6).filter(
    lambda n: n not in ("id", "time")
)


@st.composite
def wide_frames(draw):
    """Random valid wide frames: unique float times per id, every series and feature observed, shuffled."""
    n_series = draw(st.integers(1, 5))
    id_strategy = st.integers(-(2**40), 2**40) if draw(st.booleans()) else st.text(min_size=1, max_size=4)
    ids = draw(st.lists(id_strategy, min_size=n_series, max_size=n_series, unique=True))
    names = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    time = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
    value = st.floats(allow_nan=False, allow_infinity=False)
    row_ids, row_times = [], []
    for i in ids:
        times = draw(st.lists(time, min_size=1, max_size=6, unique=True))
        row_ids += [i] * len(times)
        row_times += times
    n_rows = len(row_ids)
    values = np.array(draw(st.lists(value, min_size=n_rows * len(names), max_size=n_rows * len(names))))
    values = values.reshape(n_rows, len(names))
    observed = np.array(draw(st.lists(st.booleans(), min_size=values.size, max_size=values.size)))
    observed = observed.reshape(values.shape)
    starts = np.cumsum([0] + [row_ids.count(i) for i in ids])
    for k in range(n_series):  # at least one observation per series ...
        observed[draw(st.integers(starts[k], starts[k + 1] - 1)), draw(st.integers(0, len(names) - 1))] = True
    for j in range(len(names)):  # ... and per feature
        observed[draw(st.integers(0, n_rows - 1)), j] = True
    values[~observed] = np.nan
    df = pd.DataFrame({"id": row_ids, "time": np.array(row_times, dtype=np.float64)})
    for j, name in enumerate(names):
        df[name] = values[:, j]
    order = draw(st.permutations(range(n_rows)))
    return df.iloc[list(order)].reset_index(drop=True)


PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(wide_frames())
def test_property_wide_round_trip(df):
    s = read_frame(df, WIDE)
    pd.testing.assert_frame_equal(set_to_frame(s, WIDE), sorted_frame(df))
    batch = s.to_batch(dtype=torch.float64)
    pd.testing.assert_frame_equal(batch_to_frame(batch, s, WIDE), sorted_frame(df))


@PROPERTY_SETTINGS
@given(wide_frames())
def test_property_long_round_trip(df):
    features = [c for c in df.columns if c not in ("id", "time")]
    long = df.melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
    long = long.sample(frac=1.0, random_state=1).reset_index(drop=True)
    s = read_frame(long, LONG)
    assert s.feature_names == tuple(sorted(features))
    expected = sorted_frame(long, ("id", "time", "variable"))
    pd.testing.assert_frame_equal(set_to_frame(s, LONG), expected)
    # Wide rows with no observation have no long rows, so they are absent from the long reading.
    wide = sorted_frame(df[df[features].notna().any(axis=1)])[["id", "time", *sorted(features)]]
    pd.testing.assert_frame_equal(set_to_frame(s, LONG, long=False), wide)
