"""Tests of latentode.splits: by-series, interpolation and extrapolation splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentode.splits import extrapolation_split, interpolation_split, train_test_split_series


def make_frame(n_series: int = 12, seed: int = 0, time_type: str = "float") -> pd.DataFrame:
    """Series of 1..9 points, shuffled, with an all-NaN row in series 0 and a partial NaN pattern."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_series):
        n = 1 + i % 9
        times = np.sort(rng.choice(100, size=n, replace=False)).astype(float)
        for t in times:
            rows.append(
                {
                    "id": f"s{i}",
                    "time": t,
                    "x": rng.normal(),
                    "y": rng.normal() if rng.random() < 0.5 else np.nan,
                }
            )
    df = pd.DataFrame(rows)
    df.loc[len(df)] = {"id": "s0", "time": 1000.0, "x": np.nan, "y": np.nan}
    if time_type == "datetime":
        df["time"] = pd.Timestamp("2022-01-01", tz="UTC") + pd.to_timedelta(df["time"], unit="min")
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def observed_points(df: pd.DataFrame) -> pd.DataFrame:
    return df[df[["x", "y"]].notna().any(axis=1)]


def assert_partition(df: pd.DataFrame, *parts: pd.DataFrame) -> None:
    """The parts hold exactly the rows of ``df``, each once."""
    together = pd.concat(parts, ignore_index=True)
    key = list(df.columns)
    pd.testing.assert_frame_equal(
        together.sort_values(key).reset_index(drop=True), df.sort_values(key).reset_index(drop=True)
    )


# ---------------------------------------------------------------------------------------------- by series


@pytest.mark.parametrize("val_size", [0.0, 0.25])
def test_series_split_partitions_whole_series(val_size):
    df = make_frame()
    parts = train_test_split_series(df, test_size=0.25, val_size=val_size, random_state=3)
    assert len(parts) == (3 if val_size else 2)
    assert_partition(df, *parts)
    id_sets = [set(p["id"]) for p in parts]
    assert all(id_sets), "every part holds at least one series"
    for a in range(len(id_sets)):
        for b in range(a + 1, len(id_sets)):
            assert not id_sets[a] & id_sets[b], "no series is split across parts"
    assert len(id_sets[-1]) == 3
    if val_size:
        assert len(id_sets[1]) == 3


def test_series_split_is_seeded():
    df = make_frame()
    a = train_test_split_series(df, test_size=0.3, random_state=11)
    b = train_test_split_series(df, test_size=0.3, random_state=11)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    tests = {
        frozenset(train_test_split_series(df, test_size=0.3, random_state=s)[1]["id"]) for s in range(10)
    }
    assert len(tests) > 1, "different seeds give different splits"


@pytest.mark.parametrize("test_size, val_size", [(0.9, 0.05), (0.05, 0.9), (0.01, 0.01), (0.6, 0.39)])
def test_series_split_keeps_every_part_non_empty_at_extreme_sizes(test_size, val_size):
    df = make_frame(n_series=3)
    parts = train_test_split_series(df, test_size=test_size, val_size=val_size, random_state=0)
    assert len(parts) == 3
    assert [p["id"].nunique() for p in parts] == [1, 1, 1]
    assert_partition(df, *parts)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_size": 0.0}, r"test_size must be in \(0, 1\), got 0.0"),
        ({"test_size": 1.0}, r"test_size must be in \(0, 1\)"),
        ({"val_size": -0.1}, r"val_size must be in \[0, 1\)"),
        ({"test_size": 0.6, "val_size": 0.5}, "test_size \\+ val_size must be below 1"),
        ({"id_col": "patient"}, r"missing column\(s\) \['patient'\]"),
    ],
)
def test_series_split_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_test_split_series(make_frame(), **kwargs)


def test_series_split_needs_enough_series():
    with pytest.raises(ValueError, match="at least 3 series.*got 2"):
        train_test_split_series(make_frame(n_series=2), val_size=0.2)
    with pytest.raises(TypeError, match="Expected a pandas DataFrame"):
        train_test_split_series(make_frame().to_numpy())


# ------------------------------------------------------------------------------------------ interpolation


@pytest.mark.parametrize("time_type", ["float", "datetime"])
@pytest.mark.parametrize("hide_fraction", [0.1, 0.5, 0.9])
def test_interpolation_split_hides_a_fraction_of_each_series(hide_fraction, time_type):
    df = make_frame(time_type=time_type)
    context, hidden = interpolation_split(df, hide_fraction=hide_fraction, random_state=0)
    assert_partition(df, context, hidden)
    points = observed_points(df).groupby("id").size()
    kept = observed_points(context).groupby("id").size().reindex(points.index, fill_value=0)
    n_hidden = hidden.groupby("id").size().reindex(points.index, fill_value=0)
    assert (kept >= 1).all(), "every series keeps at least one observed point"
    expected = np.minimum(np.floor(hide_fraction * points + 0.5), points - 1)
    np.testing.assert_array_equal(n_hidden.to_numpy(), expected.to_numpy())
    assert observed_points(hidden).shape == hidden.shape, "only observed points are hidden"


def test_interpolation_split_is_seeded():
    df = make_frame()
    a = interpolation_split(df, random_state=5)
    b = interpolation_split(df, random_state=5)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    hidden = {
        tuple(map(tuple, interpolation_split(df, random_state=s)[1][["id", "time"]].to_numpy()))
        for s in range(5)
    }
    assert len(hidden) > 1


def test_interpolation_split_hides_whole_time_points_in_long_format():
    df = make_frame()
    long = df.melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
    context, hidden = interpolation_split(long, hide_fraction=0.5, variable_col="variable", random_state=0)
    assert_partition(long, context, hidden)
    context_points = set(map(tuple, context[["id", "time"]].to_numpy()))
    hidden_points = set(map(tuple, hidden[["id", "time"]].to_numpy()))
    assert not context_points & hidden_points, "a time point is hidden with all its variables"
    assert set(context["id"]) == set(long["id"])


def test_interpolation_split_refuses_bad_fraction():
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"hide_fraction must be in \(0, 1\)"):
            interpolation_split(make_frame(), hide_fraction=bad)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['time'\]"):
        interpolation_split(make_frame().drop(columns="time"))


# ------------------------------------------------------------------------------------------ extrapolation


@pytest.mark.parametrize("time_type", ["float", "datetime"])
@pytest.mark.parametrize("context_fraction", [0.3, 0.5, 0.8])
def test_extrapolation_split_observes_the_first_part(context_fraction, time_type):
    df = make_frame(time_type=time_type)
    context, future = extrapolation_split(df, context_fraction=context_fraction)
    assert_partition(df, context, future)
    last_context = context.groupby("id")["time"].max()
    first_future = future.groupby("id")["time"].min()
    assert (last_context.reindex(first_future.index) < first_future).all(), (
        "context precedes future per series"
    )
    points = observed_points(df).groupby("id").size()
    kept = observed_points(context).groupby("id").size().reindex(points.index)
    expected = np.maximum(np.ceil(np.round(context_fraction * points, 9)), 1)
    np.testing.assert_array_equal(kept.to_numpy(), expected.to_numpy())


def test_extrapolation_split_is_deterministic_and_counts_exactly():
    df = pd.DataFrame({"id": 1, "time": np.arange(10.0), "x": 1.0})
    context, future = extrapolation_split(df.sample(frac=1.0, random_state=0), context_fraction=0.3)
    assert sorted(context["time"]) == [0.0, 1.0, 2.0], "0.3 * 10 gives 3 points despite float rounding"
    assert sorted(future["time"]) == list(np.arange(3.0, 10.0))
    again = extrapolation_split(df.sample(frac=1.0, random_state=0), context_fraction=0.3)
    pd.testing.assert_frame_equal(context, again[0])


def test_extrapolation_split_in_long_format_keeps_time_points_together():
    long = make_frame().melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
    context, future = extrapolation_split(long, variable_col="variable")
    assert_partition(long, context, future)
    assert not set(map(tuple, context[["id", "time"]].to_numpy())) & set(
        map(tuple, future[["id", "time"]].to_numpy())
    )
    last_context = context.groupby("id")["time"].max()
    first_future = future.groupby("id")["time"].min()
    assert (last_context.reindex(first_future.index) < first_future).all()


def test_extrapolation_split_refuses_bad_fraction():
    with pytest.raises(ValueError, match=r"context_fraction must be in \(0, 1\), got 1.5"):
        extrapolation_split(make_frame(), context_fraction=1.5)
