"""Spirals: fit a Latent ODE to irregularly sampled 2-D spirals, then interpolate and extrapolate new ones.

Each series of :func:`latentode.datasets.make_spirals` is a noisy clockwise or counter-clockwise spiral (one
turn here, ``t_max = 2 pi``) seen at its own 30 random times. Whole series are held out for testing. Two
protocols of the Latent ODE paper are scored on the held-out series, in the data's own units (both
coordinates lie in [-1, 1]):

* **interpolation**: half of each series' points are hidden; the model reads the other half and
  predicts the hidden ones;
* **extrapolation**: the model reads the first half of each series and forecasts the second half.

The naive baseline carries the last observation forward (LOCF; before a series' first observation, the
first one is carried backward). As in the paper, each protocol has its own model, trained with the
matching ``objective``: the interpolation model's encoder reads random subsets spread over the whole
series, the extrapolation model's encoder reads first halves and learns to forecast the rest.

The figure shows a few held-out series under the extrapolation protocol: truth, what the model read, what
it had to forecast, the posterior mean and its 90% predictive band, over time and in the plane.

Run::

    python examples/spirals.py            # full size, 30 epochs per model (~8 minutes on 2 CPU cores)
    python examples/spirals.py --small    # a few seconds
"""

from __future__ import annotations

import argparse
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from latentode import LatentODE, extrapolation_split, interpolation_split, train_test_split_series
from latentode.baselines import carry_forward
from latentode.datasets import make_spirals

FEATURES = ["x", "y"]
"""Feature columns of the spirals."""

T_MAX = 2 * math.pi
"""Length of each series: one turn of the spiral (``make_spirals``' default is two)."""

TEST_SIZE = 0.2
"""Fraction of series held out for testing."""

HIDE_FRACTION = 0.5
"""Interpolation: fraction of each held-out series' points hidden from the model."""

CONTEXT_FRACTION = 0.5
"""Extrapolation: the model reads this first fraction of each held-out series' points."""

COVERAGE = 0.9
"""Central coverage of the predictive band."""

N_SHOWN = 3
"""Held-out series drawn in the figure."""

N_GRID = 150
"""Time points of the dense prediction grid in the figure."""

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
    n_interval_samples: int
    dpi: int


FULL = Sizes(n_series=500, latent_dim=6, hidden_dim=32, encoder_dim=32, max_epochs=30, max_time=600.0,
             n_interval_samples=200, dpi=90)
SMALL_SAFETY_SECONDS = 120.0
"""The small run stops on its epoch count, not on the clock (so tests do not depend on machine load);
this only caps a pathologically slow machine."""
SMALL = Sizes(n_series=40, latent_dim=4, hidden_dim=16, encoder_dim=16, max_epochs=3, max_time=SMALL_SAFETY_SECONDS,
              n_interval_samples=30, dpi=70)

KL_WARMUP_EPOCHS = 3
"""The KL term of the ELBO reaches full weight after this many epochs."""


def at_rows(predicted: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """A prediction frame (id, time, features) read at the (id, time) rows of ``targets``, in their order."""
    return targets[["id", "time"]].merge(predicted, on=["id", "time"], how="left")[FEATURES].to_numpy()


def mse(predicted: np.ndarray, targets: pd.DataFrame) -> float:
    """Mean squared error over the observed target values."""
    truth = targets[FEATURES].to_numpy()
    seen = ~np.isnan(truth)
    return float(np.mean((predicted[seen] - truth[seen]) ** 2))


def save_png(fig: Figure, path: Path, dpi: int) -> None:
    """Render ``fig`` and save it as a palette PNG (a README-friendly file size)."""
    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=PNG_COLOURS).save(path, optimize=True)


def plot(model: LatentODE, context: pd.DataFrame, future: pd.DataFrame, truth: pd.DataFrame, ids, sizes: Sizes,
         path: Path) -> None:
    """Per shown series: x(t) and y(t) with the band, then the path in the plane."""
    t_max = float(truth["time"].max())
    grid = np.linspace(0.0, t_max, N_GRID)
    fig = Figure(figsize=(10, 2.6 * len(ids)))
    axes = fig.subplots(len(ids), 3, squeeze=False)
    for row, series_id in enumerate(ids):
        seen = context[context["id"] == series_id]
        hidden = future[future["id"] == series_id]
        true = truth[truth["id"] == series_id]
        mean = model.predict(seen, grid)
        band = model.predict_interval(seen, grid, coverage=COVERAGE, n_samples=sizes.n_interval_samples,
                                      random_state=0)
        cut = float(seen["time"].max())
        for column, name in enumerate(FEATURES):
            ax = axes[row, column]
            ax.fill_between(grid, band[f"{name}_lower"], band[f"{name}_upper"], color="tab:blue", alpha=0.2,
                            label=f"{COVERAGE:.0%} band")
            ax.plot(true["time"], true[name], "k--", lw=0.8, label="truth")
            ax.plot(grid, mean[name], color="tab:blue", lw=1.5, label="prediction")
            ax.scatter(seen["time"], seen[name], s=12, c="k", zorder=3, label="read by the model")
            ax.scatter(hidden["time"], hidden[name], s=14, facecolors="none", edgecolors="tab:red", zorder=3,
                       label="to forecast")
            ax.axvline(cut, color="grey", lw=0.8, ls=":")
            ax.set_ylabel(name)
            ax.set_xlabel("time")
        ax = axes[row, 2]
        ax.plot(true["x"], true["y"], "k--", lw=0.8)
        ax.plot(mean["x"], mean["y"], color="tab:blue", lw=1.5)
        ax.scatter(seen["x"], seen["y"], s=12, c="k", zorder=3)
        ax.scatter(hidden["x"], hidden["y"], s=14, facecolors="none", edgecolors="tab:red", zorder=3)
        ax.set_aspect("equal")
        ax.set_title(f"series {series_id} in the plane", fontsize=9)
        axes[row, 0].set_title(f"series {series_id}: forecast after the dotted line", fontsize=9)
    axes[0, 1].legend(loc="upper left", fontsize=7, ncol=2)
    fig.tight_layout()
    save_png(fig, path, sizes.dpi)


def main(small: bool = False, out_dir: str | Path = "examples/figures", seed: int = 0) -> dict:
    """Fit on spirals, score interpolation and extrapolation of held-out series, draw a few of them.

    Returns
    -------
    dict
        ``interp_mse``, ``interp_mse_locf``, ``extrap_mse``, ``extrap_mse_locf`` (held-out MSE of the models
        and of last observation carried forward), ``extrap_coverage`` (fraction of forecast values inside
        the 90% band), ``interp_epochs``, ``extrap_epochs``, ``fit_seconds`` (both models).
    """
    sizes = SMALL if small else FULL
    observed, truth = make_spirals(n_series=sizes.n_series, t_max=T_MAX, random_state=seed)
    train, test = train_test_split_series(observed, test_size=TEST_SIZE, random_state=seed)

    models = {}
    started = time.perf_counter()
    for objective in ("interpolation", "extrapolation"):
        models[objective] = LatentODE(
            latent_dim=sizes.latent_dim, hidden_dim=sizes.hidden_dim, encoder_dim=sizes.encoder_dim,
            objective=objective, context_fraction=CONTEXT_FRACTION, n_samples=1, solver="rk4",
            kl_warmup_epochs=KL_WARMUP_EPOCHS, max_epochs=sizes.max_epochs, max_time=sizes.max_time,
            random_state=seed, verbose=0,
        ).fit(train)
    fit_seconds = time.perf_counter() - started

    metrics: dict[str, float] = {}
    interp_context, hidden = interpolation_split(test, hide_fraction=HIDE_FRACTION, random_state=seed)
    asked = hidden[["id", "time"]]
    metrics["interp_mse"] = mse(at_rows(models["interpolation"].predict(interp_context, asked), hidden), hidden)
    metrics["interp_mse_locf"] = mse(at_rows(carry_forward(interp_context, asked), hidden), hidden)

    model = models["extrapolation"]
    context, future = extrapolation_split(test, context_fraction=CONTEXT_FRACTION)
    asked = future[["id", "time"]]
    metrics["extrap_mse"] = mse(at_rows(model.predict(context, asked), future), future)
    metrics["extrap_mse_locf"] = mse(at_rows(carry_forward(context, asked), future), future)

    band = model.predict_interval(context, future[["id", "time"]], coverage=COVERAGE,
                                  n_samples=sizes.n_interval_samples, random_state=seed)
    band = future[["id", "time"]].merge(band, on=["id", "time"], how="left")
    inside = [(band[f"{n}_lower"] <= future[n]) & (future[n] <= band[f"{n}_upper"]) for n in FEATURES]
    metrics["extrap_coverage"] = float(np.mean(np.concatenate([i.to_numpy() for i in inside])))
    metrics["interp_epochs"] = float(models["interpolation"].n_epochs_)
    metrics["extrap_epochs"] = float(model.n_epochs_)
    metrics["fit_seconds"] = fit_seconds

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = pd.unique(test["id"])[:N_SHOWN]
    plot(model, context, future, truth, shown, sizes, out / "spirals.png")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny, fast run (as in the tests)")
    parser.add_argument("--out-dir", default="examples/figures", help="where to write the figure")
    args = parser.parse_args()
    for key, value in main(small=args.small, out_dir=args.out_dir).items():
        print(f"{key}: {value:.4g}")
