"""Tests of the ``latentode`` command line: end to end in subprocesses, error paths and parsing in-process."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from latentode import cli

ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Subprocess environment: off-screen figures, one thread (the tests run on two slow cores)."""

SUBPROCESS_TIMEOUT = 120
"""Seconds before a hung command fails its test."""

TINY_MODEL = ["--epochs", "2", "--latent-dim", "4", "--hidden-dim", "16", "--seed", "0", "--quiet"]
"""A LatentODE small and short enough to fit in about a second."""

N_SERIES, N_POINTS = 40, 12
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    """Run ``python -m latentode ARGS`` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "latentode", *map(str, args)],
        check=False,
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def assert_one_line_error(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("latentode: error: "), stderr
    assert "Traceback" not in stderr


def make_sines(n_series: int = N_SERIES, n_points: int = N_POINTS, seed: int = 0) -> pd.DataFrame:
    """Wide frame of noisy sines and cosines, each series observed at its own irregular times in [0, 5]."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        t = np.sort(rng.choice(np.linspace(0.0, 5.0, 60), n_points, replace=False))
        phase = rng.uniform(0, 2 * np.pi)
        frames.append(
            pd.DataFrame(
                {
                    "id": i,
                    "time": t,
                    "a": np.sin(t + phase) + 0.05 * rng.standard_normal(n_points),
                    "b": np.cos(t + phase),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with sines.csv and a tiny LatentODE fitted on it by ``latentode fit`` (model.lode)."""
    folder = tmp_path_factory.mktemp("cli")
    make_sines().to_csv(folder / "sines.csv", index=False)
    result = run_cli(
        "fit",
        "sines.csv",
        "--id-col",
        "id",
        "--time-col",
        "time",
        *TINY_MODEL,
        "-o",
        "model.lode",
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return SimpleNamespace(path=folder, fit_stdout=result.stdout)


# ---------------------------------------------------------------------------------------------------------
# End to end, in subprocesses


def test_fit_prints_final_metrics_and_saves(work):
    assert (work.path / "model.lode").stat().st_size > 0
    assert "valid_mse" in work.fit_stdout and "valid_loss" in work.fit_stdout
    assert "Saved model to model.lode" in work.fit_stdout


def test_predict_times_with_interval(work):
    result = run_cli(
        "predict",
        "model.lode",
        "sines.csv",
        "--times",
        "0,2.5,6",
        "--interval",
        "0.9",
        "-o",
        "out/pred.csv",
        cwd=work.path,
    )
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(work.path / "out" / "pred.csv")
    assert list(out.columns) == ["id", "time", "a", "b", "a_lower", "a_upper", "b_lower", "b_upper"]
    assert len(out) == 3 * N_SERIES
    assert out["time"].tolist()[:3] == [0.0, 2.5, 6.0]
    assert (out["a_lower"] <= out["a_upper"]).all() and (out["b_lower"] <= out["b_upper"]).all()
    assert out.notna().all().all()


def test_predict_queries_with_samples(work):
    pd.DataFrame({"id": [0, 0, 7], "time": [0.5, 5.5, 1.0]}).to_csv(work.path / "queries.csv", index=False)
    result = run_cli(
        "predict",
        "model.lode",
        "sines.csv",
        "--queries",
        "queries.csv",
        "--samples",
        "5",
        "--seed",
        "1",
        "-o",
        "draws.csv",
        cwd=work.path,
    )
    assert result.returncode == 0, result.stderr
    draws = pd.read_csv(work.path / "draws.csv")
    assert list(draws.columns) == ["id", "time", "sample", "a", "b"]
    assert len(draws) == 3 * 5
    assert sorted(draws["sample"].unique()) == list(range(5))
    assert set(draws["id"]) == {0, 7}


def test_evaluate_writes_json(work):
    result = run_cli(
        "evaluate",
        "model.lode",
        "sines.csv",
        "--protocol",
        "interpolation",
        "--json",
        "scores.json",
        cwd=work.path,
    )
    assert result.returncode == 0, result.stderr
    assert "LOCF" in result.stdout and "overall" in result.stdout
    scores = json.loads((work.path / "scores.json").read_text())
    for key in ("protocol", "fraction", "seed", "n_series", "n_hidden", "mse", "locf_mse", "baseline"):
        assert key in scores
    assert scores["protocol"] == "interpolation" and scores["n_series"] == N_SERIES
    assert scores["n_hidden"] == 2 * N_SERIES * N_POINTS // 2  # half the points, both features observed
    for name in ("mse", "locf_mse"):
        assert set(scores[name]["per_feature"]) == {"a", "b"}
        assert np.isfinite(scores[name]["overall"]) and scores[name]["overall"] >= 0


def test_plot_writes_png(work):
    result = run_cli("plot", "model.lode", "sines.csv", "--ids", "0,5", "-o", "fig.png", cwd=work.path)
    assert result.returncode == 0, result.stderr
    data = (work.path / "fig.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_demo_tiny(tmp_path):
    result = run_cli("demo", "--n-series", "30", "--epochs", "1", "--quiet", "--out", "figures", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figure = tmp_path / "figures" / cli.DEMO_FIGURE
    assert figure.stat().st_size > 0
    assert str(figure.relative_to(tmp_path)) in result.stdout
    assert "interpolation" in result.stdout and "extrapolation" in result.stdout and "LOCF" in result.stdout


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow (the parquet extra) is not installed")
def test_parquet_round(work, tmp_path):
    make_sines(n_series=12, seed=1).to_parquet(tmp_path / "data.parquet")
    pd.DataFrame({"id": [3, 4], "time": [1.0, 2.0]}).to_parquet(tmp_path / "queries.pq")
    assert cli.main(["fit", str(tmp_path / "data.parquet"), *TINY_MODEL, "-o", str(tmp_path / "m.lode")]) == 0
    result = run_cli(
        "predict", "m.lode", "data.parquet", "--queries", "queries.pq", "-o", "pred.parquet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = pd.read_parquet(tmp_path / "pred.parquet")
    assert list(out.columns) == ["id", "time", "a", "b"] and out["id"].tolist() == [3, 4]


def test_bad_input_in_a_real_process_is_one_line_and_debug_shows_traceback(work):
    (work.path / "truncated.lode").write_bytes((work.path / "model.lode").read_bytes()[:500])
    args = ["predict", "truncated.lode", "sines.csv", "--times", "1", "-o", "x.csv"]
    result = run_cli(*args, cwd=work.path)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "truncated" in result.stderr
    debug = run_cli(*args, "--debug", cwd=work.path)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and debug.stderr.rstrip().splitlines()[-1].startswith(
        "latentode: error: "
    )


# ---------------------------------------------------------------------------------------------------------
# Bad input, help and parsing, in-process (the same main() the subprocesses run, without re-importing torch)


@pytest.fixture(scope="module")
def broken(work):
    """Files for the bad-input cases: unknown feature columns, a truncated model."""
    make_sines(n_series=3).rename(columns={"b": "c"}).to_csv(work.path / "renamed.csv", index=False)
    (work.path / "cut.lode").write_bytes((work.path / "model.lode").read_bytes()[:-200])
    return work.path


BAD_INPUTS = {
    "missing data file": (["fit", "{p}/nope.csv", "-o", "{p}/m.lode"], "does not exist"),
    "missing column": (["fit", "{p}/sines.csv", "--time-col", "hour", "-o", "{p}/m.lode"], "'hour'"),
    "unknown feature columns": (
        ["predict", "{p}/model.lode", "{p}/renamed.csv", "--times", "1", "-o", "{p}/x.csv"],
        "extra ['c']",
    ),
    "truncated model": (
        ["predict", "{p}/cut.lode", "{p}/sines.csv", "--times", "1", "-o", "{p}/x.csv"],
        "cut.lode",
    ),
    "bad --times": (
        ["predict", "{p}/model.lode", "{p}/sines.csv", "--times", "1,soon", "-o", "{p}/x.csv"],
        "'soon'",
    ),
    "unknown option": (["fit", "{p}/sines.csv", "--frobnicate", "-o", "{p}/m.lode"], "--frobnicate"),
    "unknown output format": (
        ["predict", "{p}/model.lode", "{p}/sines.csv", "--times", "1", "-o", "{p}/x.xlsx"],
        "x.xlsx",
    ),
    "unknown series id": (
        ["plot", "{p}/model.lode", "{p}/sines.csv", "--ids", "0,999", "-o", "{p}/f.png"],
        "'999'",
    ),
    "option of the other model": (
        ["fit", "{p}/sines.csv", "--model", "ode_rnn", "--latent-dim", "3", "-o", "{p}/m"],
        "--latent-dim",
    ),
    "fraction out of range": (
        ["evaluate", "{p}/model.lode", "{p}/sines.csv", "--protocol", "interpolation", "--fraction", "1.5"],
        "(0, 1)",
    ),
    "no command": ([], "COMMAND"),
    "unwritable model output, refused before training": (
        ["fit", "{p}/sines.csv", "-o", "/proc/m.lode"], "Cannot write '/proc/m.lode'"
    ),
    "bad device": (
        ["predict", "{p}/model.lode", "{p}/sines.csv", "--times", "1", "--device", "bogus", "-o", "{p}/x.csv"],
        "Invalid device 'bogus'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case, broken, capsys):
    args, expected = BAD_INPUTS[case]
    assert cli.main([a.format(p=broken) for a in args]) == cli.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert expected in err


def test_missing_pyarrow_names_the_extra(work, monkeypatch, capsys):
    (work.path / "data.pq").write_bytes(b"PAR1")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real_find_spec(name, *a)
    )
    args = [
        "predict",
        str(work.path / "model.lode"),
        str(work.path / "data.pq"),
        "--times",
        "1",
        "-o",
        "x.csv",
    ]
    assert cli.main(args) == cli.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert 'pip install "latentode[parquet]"' in err


@pytest.mark.parametrize("command", [None, "demo", "fit", "predict", "evaluate", "plot"])
def test_help_has_examples(command, capsys):
    assert cli.main(([command] if command else []) + ["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: latentode" in out and "examples:" in out


def test_console_script_is_declared():
    scripts = importlib.metadata.entry_points(group="console_scripts", name="latentode")
    assert [s.value for s in scripts] == ["latentode.cli:main"]


def test_evaluate_extrapolation_and_datetime_times(tmp_path, capsys):
    """A model fitted on datetime strings takes --times as datetimes and evaluates by extrapolation."""
    data = make_sines(n_series=12, seed=2)
    data["time"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(data["time"], unit="h")
    data.to_csv(tmp_path / "dated.csv", index=False)
    model = str(tmp_path / "dated.lode")
    assert cli.main(["fit", str(tmp_path / "dated.csv"), *TINY_MODEL, "-o", model]) == 0
    out = tmp_path / "pred.csv"
    assert (
        cli.main(
            [
                "predict",
                model,
                str(tmp_path / "dated.csv"),
                "--times",
                "2024-01-01 01:00,2024-01-01 07:30",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert pd.read_csv(out)["time"].iloc[:2].tolist() == ["2024-01-01 01:00:00", "2024-01-01 07:30:00"]
    assert cli.main(["predict", model, str(tmp_path / "dated.csv"), "--times", "2.5", "-o", str(out)]) == 2
    capsys.readouterr()
    assert (
        cli.main(
            [
                "evaluate",
                model,
                str(tmp_path / "dated.csv"),
                "--protocol",
                "extrapolation",
                "--fraction",
                "0.75",
                "--json",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["protocol"] == "extrapolation" and scores["n_hidden"] == 2 * 12 * 3


@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [
        (["0 days 00:30:00", "01:30:00"], None, "timedelta64"),
        (["2024-01-01", "2024-01-02 12:00"], None, "datetime64"),
        (["1.5", "2"], "numeric", "float64"),
        (["1h", "2h"], "timedelta", "timedelta64"),
    ],
)
def test_csv_time_parsing(values, kind, expected):
    parsed = cli._parse_times(pd.Series(values, dtype=object), column="time", source="x.csv", kind=kind)
    assert str(parsed.dtype).startswith(expected)


def test_locf_baseline_carries_the_last_value_and_falls_back_to_the_context_mean():
    def predict(context, queries):  # a model that always predicts zero
        return queries.assign(v=0.0, w=0.0)

    model = SimpleNamespace(id_col="id", time_col="time", variable_col=None, value_col=None,
                            feature_names_in_=np.array(["v", "w"], dtype=object), predict=predict)
    context = pd.DataFrame({"id": [1, 1, 2], "time": [1.0, 3.0, 5.0], "v": [10.0, 30.0, 50.0],
                            "w": [np.nan, np.nan, 7.0]})
    hidden = pd.DataFrame({"id": [1, 1, 1, 2], "time": [0.0, 2.0, 4.0, 6.0], "v": [0.0, 0.0, 0.0, 0.0],
                           "w": [1.0, np.nan, np.nan, np.nan]})
    scores = cli._score_hidden(model, context, hidden)
    # v: before the first observation the first one (10); between and after, the last one before: 10, 30, 50.
    assert scores["locf_mse"]["per_feature"]["v"] == pytest.approx((10**2 + 10**2 + 30**2 + 50**2) / 4)
    # w was never observed in series 1: the context mean of w (7.0) stands in.
    assert scores["locf_mse"]["per_feature"]["w"] == pytest.approx((7.0 - 1.0) ** 2)
    assert scores["mse"]["per_feature"] == {"v": 0.0, "w": 1.0}
    assert scores["n_hidden"] == 5


def test_library_warnings_are_one_line(tmp_path, capsys):
    data = make_sines(n_series=12, seed=3)
    pd.concat([data, data.iloc[:1]]).to_csv(tmp_path / "dup.csv", index=False)  # one duplicate (id, time) row
    assert cli.main(["fit", str(tmp_path / "dup.csv"), *TINY_MODEL, "-o", str(tmp_path / "m.lode")]) == 0
    err = capsys.readouterr().err
    assert "latentode: warning: Averaged 1 duplicate" in err and "warnings.warn" not in err
