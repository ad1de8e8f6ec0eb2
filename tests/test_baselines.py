"""Tests of latentode.baselines: carry forward and linear interpolation against a plain per-series loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentode.baselines import carry_forward, linear_interpolation


def loop_reference(context: pd.DataFrame, queries: pd.DataFrame, features: list[str], how: str) -> np.ndarray:
    """One series and one feature at a time, with numpy's own searchsorted / interp."""
    out = np.full((len(queries), len(features)), np.nan)
    for row, (series_id, when) in enumerate(zip(queries["id"], queries["time"])):
        seen = context[context["id"] == series_id].sort_values("time")
        for j, name in enumerate(features):
            observed = seen[seen[name].notna()]
            t, v = observed["time"].to_numpy(float), observed[name].to_numpy(float)
            if len(t) == 0:
                continue
            if how == "locf":
                out[row, j] = v[max(np.searchsorted(t, when, side="right") - 1, 0)]
            elif how == "flat" or len(t) == 1 or t[0] <= when <= t[-1]:
                out[row, j] = np.interp(when, t, v)
            elif when < t[0]:
                out[row, j] = v[0] + (when - t[0]) * (v[1] - v[0]) / (t[1] - t[0])
            else:
                out[row, j] = v[-1] + (when - t[-1]) * (v[-1] - v[-2]) / (t[-1] - t[-2])
    return out


@pytest.fixture
def context() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "a", "a", "b", "b"],
        "time": [0.0, 1.0, 3.0, 0.5, 2.0],
        "x": [1.0, np.nan, 5.0, -1.0, 2.0],
        "y": [np.nan, 10.0, 30.0, 7.0, np.nan],
    })


def test_carry_forward_by_hand(context):
    out = carry_forward(context, [-1.0, 0.0, 2.0, 3.0, 4.0])
    a, b = out[out["id"] == "a"], out[out["id"] == "b"]
    assert a["x"].tolist() == [1.0, 1.0, 1.0, 5.0, 5.0]  # x unobserved at t=1: still the t=0 value at t=2
    assert a["y"].tolist() == [10.0, 10.0, 10.0, 30.0, 30.0]  # before y's first observation: carried backward
    assert b["x"].tolist() == [-1.0, -1.0, 2.0, 2.0, 2.0]
    assert list(out.columns) == ["id", "time", "x", "y"]


def test_linear_interpolation_by_hand(context):
    out = linear_interpolation(context, {"a": [0.5, 2.0, 4.0], "b": [1.25]})
    assert out["x"].tolist() == pytest.approx([1 + 2 / 3, 3 + 2 / 3, 5.0, 0.5])  # x of a: (0, 1) to (3, 5)
    assert out["y"].tolist() == pytest.approx([10.0, 20.0, 30.0, 7.0])
    extrapolated = linear_interpolation(context, {"a": [-1.0, 4.0]}, ends="linear")
    assert extrapolated["x"].tolist() == pytest.approx([1 - 4 / 3, 5 + 4 / 3])
    assert extrapolated["y"].tolist() == pytest.approx([-10.0, 40.0])


def test_query_frame_keeps_its_rows_and_a_never_observed_feature_is_nan():
    context = pd.DataFrame({"id": [1, 1, 2], "time": [0.0, 1.0, 0.0], "x": [0.0, 2.0, 3.0], "y": [1.0, np.nan, np.nan]})
    queries = pd.DataFrame({"id": [2, 1, 1], "time": [5.0, 0.5, 0.25]})
    out = linear_interpolation(context, queries)
    assert out["id"].tolist() == [1, 1, 2] and out["time"].tolist() == [0.5, 0.25, 5.0]
    assert out["x"].tolist() == pytest.approx([1.0, 0.5, 3.0])
    assert out["y"].iloc[:2].tolist() == [1.0, 1.0] and np.isnan(out["y"].iloc[2])


def test_datetimes_and_long_format_come_back_in_the_users_types():
    start = pd.Timestamp("2024-01-01", tz="UTC")
    long = pd.DataFrame({
        "patient": ["p", "p", "p"],
        "when": [start, start + pd.Timedelta(hours=2), start],
        "lab": ["hr", "hr", "temp"],
        "reading": [60.0, 80.0, 37.0],
    })
    asked = [start + pd.Timedelta(hours=1), start + pd.Timedelta(hours=3)]
    out = linear_interpolation(long, asked, id_col="patient", time_col="when", variable_col="lab", value_col="reading")
    assert out["when"].tolist() == asked
    assert out["hr"].tolist() == pytest.approx([70.0, 80.0])
    assert out["temp"].tolist() == pytest.approx([37.0, 37.0])
    only = carry_forward(long, asked, id_col="patient", time_col="when", variable_col="lab", value_col="reading",
                         features=["temp"])
    assert list(only.columns) == ["patient", "when", "temp"]


def test_bad_input_is_refused_with_the_fix(context):
    with pytest.raises(ValueError, match="ends='cubic' is not one of"):
        linear_interpolation(context, [0.0], ends="cubic")
    with pytest.raises(ValueError, match=r"features \['z'\] are not columns of X"):
        carry_forward(context, [0.0], features=["z"])
    with pytest.raises(ValueError, match="not in the context data"):
        carry_forward(context, {"c": [0.0]})
    with pytest.raises(ValueError, match="NaN or infinite"):
        carry_forward(context, [0.0, np.nan])
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        carry_forward(context.to_numpy(), [0.0])


@st.composite
def frames_and_queries(draw):
    n_series = draw(st.integers(1, 4))
    rows = []
    for i in range(n_series):
        times = draw(st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True))
        for t in times:
            x = draw(st.one_of(st.none(), st.integers(-9, 9)))
            y = draw(st.one_of(st.none(), st.integers(-9, 9)))
            rows.append((i, t / 2, np.nan if x is None else float(x), np.nan if y is None else float(y)))
    frame = pd.DataFrame(rows, columns=["id", "time", "x", "y"])
    # Every series needs one observed value (read_frame refuses an empty series).
    frame.loc[frame.groupby("id").head(1).index, "x"] = 0.5
    ids = sorted(frame["id"].unique())
    queries = pd.DataFrame({
        "id": draw(st.lists(st.sampled_from(ids), min_size=1, max_size=12)),
    })
    queries["time"] = draw(st.lists(st.integers(-5, 40), min_size=len(queries), max_size=len(queries)))
    queries["time"] = queries["time"] / 2
    return frame, queries


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames_and_queries(), st.sampled_from(["locf", "flat", "linear"]))
def test_vectorised_baselines_match_a_loop_over_series(data, how):
    frame, queries = data
    if how == "locf":
        out = carry_forward(frame, queries)
    else:
        out = linear_interpolation(frame, queries, ends=how)
    # Output rows are grouped by series in context order, keeping the query order within each series.
    expected_rows = queries.assign(_order=range(len(queries))).sort_values(["id", "_order"], kind="stable")
    assert out["id"].tolist() == expected_rows["id"].tolist()
    assert out["time"].tolist() == expected_rows["time"].tolist()
    expected = loop_reference(frame, expected_rows, ["x", "y"], how)
    np.testing.assert_allclose(out[["x", "y"]].to_numpy(), expected, rtol=1e-12, atol=1e-12)
