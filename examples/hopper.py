"""MuJoCo Hopper: the Latent ODE paper's interpolation and extrapolation protocol, at a small size.

Trajectories of the DeepMind Control Suite hopper are simulated by :func:`latentode.datasets.make_hopper`
exactly as in the reference implementation (YuliaRubanova/latent_ode): 200 states of 14 variables (7 joint
positions, 7 velocities) per trajectory, at times ``t = i / 200`` for step ``i`` (so a trajectory spans
[0, 1)). Each trajectory is observed at a random half of its time points (``observed_fraction=0.5``).

Scaling follows the reference's ``utils.normalize_data``: every variable becomes ``(x - min) / max`` with
``min`` and ``max`` taken over all time points of all trajectories (here: of the training trajectories only,
so that nothing is learned from the test set). The estimators standardise internally as well, but errors
are reported in these globally scaled units, like the paper's table.

Protocols, on held-out trajectories:

* **interpolation**: the model reads the observed half of the time points and reconstructs the whole
  trajectory; the MSE is over all 200 time points (as the reference computes it). It is trained as the
  reference does: on full training trajectories, its encoder reading a random half of the points.
* **extrapolation**: the model reads the observed points of the first third of the trajectory (the
  reference's ``split_data_extrap`` keeps ``T // 3`` points for hopper) and forecasts the remaining
  two thirds. It is trained on the half-observed training trajectories with ``context_fraction=1/3``.

Baselines: last observation carried forward (both protocols) and linear interpolation between the observed
points (interpolation). At 200 steps per unit time and half the points observed, linear interpolation is a
very strong baseline, which a model trained for a few minutes on a CPU does not beat; the paper trains on
10,000 trajectories for far longer.

Run::

    python examples/hopper.py            # full size (2000 trajectories), several minutes on a laptop CPU
    python examples/hopper.py --small    # 300 trajectories, tiny models, a few seconds after simulation

Simulated trajectories are cached in ``~/.cache/latentode`` (see ``datasets/README.md``). Needs
``dm_control`` and ``mujoco`` (``pip install "latentode[datasets]"``).
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from latentode import LatentODE, train_test_split_series
from latentode.baselines import carry_forward, linear_interpolation
from latentode.datasets import HOPPER_FEATURES, make_hopper

FEATURES = list(HOPPER_FEATURES)
"""The 14 state variables."""

N_STEPS = 200
"""States per trajectory; time is ``step / N_STEPS``."""

OBSERVED_FRACTION = 0.5
"""Fraction of each trajectory's time points the model reads."""

EXTRAPOLATION_CONTEXT_STEPS = N_STEPS // 3
"""Extrapolation reads the steps before this one (the reference's ``T // 3`` for hopper) and forecasts the rest."""

TEST_SIZE = 0.2
"""Fraction of trajectories held out (the reference's 80/20 split)."""

PLOTTED_FEATURES = ["rootz_pos", "rooty_pos", "knee_pos", "rooty_vel"]
"""State variables drawn in the figure."""

PNG_COLOURS = 64
"""Figures are saved as palette PNGs with this many colours, which keeps them a few tens of KB."""


@dataclass(frozen=True)
class Sizes:
    """Data, model and training sizes for a run."""

    n_series: int
    latent_dim: int
    hidden_dim: int
    encoder_dim: int
    max_epochs: int
    max_time: float
    dpi: int


FULL = Sizes(n_series=2000, latent_dim=12, hidden_dim=64, encoder_dim=32, max_epochs=300, max_time=150.0, dpi=90)
SMALL_SAFETY_SECONDS = 120.0
"""The small run stops on its epoch count, not on the clock (so tests do not depend on machine load);
this only caps a pathologically slow machine."""
SMALL = Sizes(n_series=300, latent_dim=4, hidden_dim=16, encoder_dim=16, max_epochs=1, max_time=SMALL_SAFETY_SECONDS, dpi=70)


def reference_scaling(train: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The reference's per-variable ``min`` and ``max`` (a zero ``max`` is replaced by 1), from ``train``."""
    low, high = train[FEATURES].min(), train[FEATURES].max()
    return low, high.where(high != 0, 1.0)


def at_rows(predicted: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """A prediction frame (id, time, features) read at the (id, time) rows of ``targets``, in their order."""
    return targets[["id", "time"]].merge(predicted, on=["id", "time"], how="left")[FEATURES].to_numpy()


def model_means(model: LatentODE, context: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """The model's posterior mean at the target rows, in their order: (rows, 14)."""
    return at_rows(model.predict(context, targets[["id", "time"]]), targets)


def baseline_at(baseline, context: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """A :mod:`latentode.baselines` function's values at the target rows, in their order: (rows, 14)."""
    return at_rows(baseline(context, targets[["id", "time"]]), targets)


def mse(predicted: np.ndarray, targets: pd.DataFrame) -> float:
    return float(np.mean((predicted - targets[FEATURES].to_numpy()) ** 2))


def save_png(fig: Figure, path: Path, dpi: int) -> None:
    """Render ``fig`` and save it as a palette PNG (a README-friendly file size)."""
    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=PNG_COLOURS).save(path, optimize=True)


def plot(models: dict, contexts: dict, truth: pd.DataFrame, series_id, sizes: Sizes, path: Path) -> None:
    """One held-out trajectory: rows are the two protocols, columns a few state variables."""
    true = truth[truth["id"] == series_id]
    fig = Figure(figsize=(11, 5))
    axes = fig.subplots(2, len(PLOTTED_FEATURES), squeeze=False)
    for row, protocol in enumerate(("interpolation", "extrapolation")):
        seen = contexts[protocol][contexts[protocol]["id"] == series_id]
        mean = models[protocol].predict(seen, true["time"].to_numpy())
        for column, name in enumerate(PLOTTED_FEATURES):
            ax = axes[row, column]
            ax.plot(true["time"], true[name], "k--", lw=0.8, label="truth")
            ax.plot(mean["time"], mean[name], color="tab:blue", lw=1.4, label="Latent ODE")
            ax.scatter(seen["time"], seen[name], s=6, c="k", zorder=3, label="read by the model")
            if protocol == "extrapolation":
                ax.axvline(EXTRAPOLATION_CONTEXT_STEPS / N_STEPS, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{protocol}: {name}", fontsize=9)
            ax.set_xlabel("t = step / 200")
    axes[0, 0].legend(loc="best", fontsize=7)
    fig.tight_layout()
    save_png(fig, path, sizes.dpi)


def main(small: bool = False, out_dir: str | Path = "examples/figures", seed: int = 0, *,
         cache_dir: str | Path | None = None) -> dict:
    """Simulate Hopper, fit interpolation and extrapolation Latent ODEs, score held-out trajectories.

    ``cache_dir`` is where simulated trajectories are cached (``make_hopper``'s default when None).

    Returns
    -------
    dict
        ``interp_mse``, ``interp_mse_locf``, ``interp_mse_linear``, ``extrap_mse``, ``extrap_mse_locf``
        (globally scaled units), ``interp_epochs``, ``extrap_epochs``, ``fit_seconds``.
    """
    sizes = SMALL if small else FULL
    truth = make_hopper(n_series=sizes.n_series, n_steps=N_STEPS, cache_dir=cache_dir)
    observed = make_hopper(n_series=sizes.n_series, n_steps=N_STEPS, observed_fraction=OBSERVED_FRACTION,
                           cache_dir=cache_dir)
    train_truth, test_truth = train_test_split_series(truth, test_size=TEST_SIZE, random_state=seed)
    low, high = reference_scaling(train_truth)

    def scaled(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{name: (frame[name] - low[name]) / high[name] for name in FEATURES})

    truth, observed = scaled(truth), scaled(observed)
    train_ids, test_ids = pd.unique(train_truth["id"]), pd.unique(test_truth["id"])
    targets = truth[truth["id"].isin(test_ids)].reset_index(drop=True)
    cut = EXTRAPOLATION_CONTEXT_STEPS / N_STEPS - 0.5 / N_STEPS  # halfway between two steps
    test_observed = observed[observed["id"].isin(test_ids)].reset_index(drop=True)
    contexts = {
        "interpolation": test_observed,
        "extrapolation": test_observed[test_observed["time"] < cut].reset_index(drop=True),
    }
    future = targets[targets["time"] > cut].reset_index(drop=True)

    settings = {"latent_dim": sizes.latent_dim, "hidden_dim": sizes.hidden_dim, "encoder_dim": sizes.encoder_dim,
                "n_samples": 1, "solver": "rk4", "max_epochs": sizes.max_epochs, "max_time": sizes.max_time,
                "random_state": seed, "verbose": 0}
    started = time.perf_counter()
    models = {
        "interpolation": LatentODE(objective="interpolation", context_fraction=OBSERVED_FRACTION, **settings)
        .fit(truth[truth["id"].isin(train_ids)]),
        "extrapolation": LatentODE(objective="extrapolation", context_fraction=EXTRAPOLATION_CONTEXT_STEPS / N_STEPS,
                                   **settings).fit(observed[observed["id"].isin(train_ids)]),
    }
    fit_seconds = time.perf_counter() - started

    metrics = {
        "interp_mse": mse(model_means(models["interpolation"], contexts["interpolation"], targets), targets),
        "interp_mse_locf": mse(baseline_at(carry_forward, contexts["interpolation"], targets), targets),
        "interp_mse_linear": mse(baseline_at(linear_interpolation, contexts["interpolation"], targets), targets),
        "extrap_mse": mse(model_means(models["extrapolation"], contexts["extrapolation"], future), future),
        "extrap_mse_locf": mse(baseline_at(carry_forward, contexts["extrapolation"], future), future),
        "interp_epochs": float(models["interpolation"].n_epochs_),
        "extrap_epochs": float(models["extrapolation"].n_epochs_),
        "fit_seconds": fit_seconds,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(models, contexts, targets, test_ids[0], sizes, out / "hopper.png")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny, fast run (as in the tests)")
    parser.add_argument("--out-dir", default="examples/figures", help="where to write the figure")
    parser.add_argument("--cache-dir", default=None, help="cache of simulated trajectories (~/.cache/latentode)")
    args = parser.parse_args()
    for key, value in main(small=args.small, out_dir=args.out_dir, cache_dir=args.cache_dir).items():
        print(f"{key}: {value:.4g}")
