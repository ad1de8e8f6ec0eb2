"""Shared fixtures: small synthetic irregular data sets and one fitted LatentODE reused across test files.

Everything is sized to run in seconds on two slow CPU cores: one torch thread, tiny networks, few epochs.
The session-scoped ``fitted`` model is trained once (about ten seconds) and only read by the tests.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

N_SINE_SERIES = 150
"""Series in the noisy-sine data set."""

N_HELD_OUT = 30
"""Sine series kept out of training, on which held-out accuracy and coverage are measured."""

SINE_POINTS = (20, 40)
"""Each sine series is observed at between 20 and 40 (inclusive) random times of its own."""

SINE_SPAN = 5.0
"""Sine series are observed on [0, SINE_SPAN]."""

SINE_CYCLES = (0.8, 1.6)
"""Each sine series completes a random number of cycles from this range over SINE_SPAN."""

SINE_NOISE = 0.1
"""Standard deviation of the Gaussian observation noise of the sine series."""

TINY = {
    "latent_dim": 2,
    "hidden_dim": 8,
    "encoder_dim": 8,
    "n_layers": 1,
    "solver": "rk4",
    "step_size": 0.25,
    "max_epochs": 2,
    "batch_size": 16,
    "kl_warmup_epochs": 1,
    "random_state": 0,
    "verbose": 0,
}
"""Parameters of a LatentODE that fits in a fraction of a second (for tests of plumbing, not accuracy)."""

FITTED = {
    "latent_dim": 4,
    "hidden_dim": 16,
    "encoder_dim": 16,
    "n_layers": 1,
    "solver": "rk4",
    "step_size": 0.1,
    "learning_rate": 0.03,
    "batch_size": 20,
    "max_epochs": 40,
    "kl_warmup_epochs": 3,
    "noise_std": 0.2,
    "random_state": 0,
    "verbose": 0,
}
"""Parameters of the session's fitted LatentODE: small, but it learns the sine data set."""


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests run on small tensors, where extra threads only add overhead (and nondeterminism)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_sines(n_series: int = N_SINE_SERIES, *, seed: int = 0, id_offset: int = 0) -> pd.DataFrame:
    """Noisy sines with random frequency and phase, each on its own irregular timestamps (wide frame y)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        cycles = rng.uniform(*SINE_CYCLES)
        phase = rng.uniform(0, 2 * np.pi)
        n = int(rng.integers(SINE_POINTS[0], SINE_POINTS[1] + 1))
        t = np.sort(rng.uniform(0, SINE_SPAN, n))
        y = np.sin(2 * np.pi * cycles * t / SINE_SPAN + phase) + rng.normal(0, SINE_NOISE, n)
        frames.append(pd.DataFrame({"id": i + id_offset, "time": t, "y": y}))
    return pd.concat(frames, ignore_index=True)


def make_small(n_series: int = 12, *, seed: int = 0, n_points: tuple[int, int] = (5, 9)) -> pd.DataFrame:
    """A small two-feature wide frame with integer ids: feature a misses about a fifth of its values, b none."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        n = int(rng.integers(n_points[0], n_points[1] + 1))
        t = np.sort(rng.choice(np.arange(0.0, 10.0, 0.25), size=n, replace=False))
        phase = rng.uniform(0, 2 * np.pi)
        a = np.sin(t / 2 + phase) + rng.normal(0, 0.05, n)
        b = np.cos(t / 3 + phase) + rng.normal(0, 0.05, n)
        a[rng.random(n) < 0.2] = np.nan
        frames.append(pd.DataFrame({"id": i, "time": t, "a": a, "b": b}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def sines() -> pd.DataFrame:
    return make_sines()


@pytest.fixture(scope="session")
def sines_train(sines) -> pd.DataFrame:
    return sines[sines["id"] < N_SINE_SERIES - N_HELD_OUT].reset_index(drop=True)


@pytest.fixture(scope="session")
def sines_test(sines) -> pd.DataFrame:
    return sines[sines["id"] >= N_SINE_SERIES - N_HELD_OUT].reset_index(drop=True)


@pytest.fixture(scope="session")
def fitted(sines_train):
    """A LatentODE trained on the training sines. Tests must not modify it (no refit, no set_params)."""
    from latentode import LatentODE

    return LatentODE(**FITTED).fit(sines_train)


@pytest.fixture(scope="session")
def small() -> pd.DataFrame:
    return make_small()


@pytest.fixture(scope="session")
def tiny_fitted(small):
    """A LatentODE fitted for two epochs on the small two-feature frame."""
    from latentode import LatentODE

    return LatentODE(**TINY).fit(small)
