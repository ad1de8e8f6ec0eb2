"""A residual stack against a Neural ODE as the latent dynamics of the same Latent ODE, on the same data.

A residual network updates its state as ``h_{n+1} = h_n + f(h_n)``: Euler's method with the step folded
into ``f``. A Neural ODE takes the limit, ``dh/dt = f(h)``, and lets an adaptive solver (dopri5) decide how
many evaluations of ``f`` it needs. Here both are the latent dynamics of a :class:`latentode.LatentODE`
(``dynamics="residual"`` steps once per grid cell of ``grid_step`` in scaled time; ``dynamics="ode"``),
with the same encoder, decoder, vector-field network (hence the same parameter count), seed, data and
number of epochs.

Data: irregularly sampled spirals (:func:`latentode.datasets.make_spirals`, one turn), interpolation
objective; held-out series are scored on reconstructing a hidden half of their points, against last
observation carried forward.

Reported per model: held-out interpolation MSE, function evaluations of ``f`` per training batch (from
``history_``, encoder included) and per prediction, parameter count and training time. The figure shows
predicted trajectories of a few held-out series, the validation error per epoch and the function
evaluations per epoch.

Run::

    python examples/resnet_vs_ode.py            # full size, a few minutes on a laptop CPU
    python examples/resnet_vs_ode.py --small    # a few seconds
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

from latentode import LatentODE, interpolation_split, train_test_split_series
from latentode.baselines import carry_forward
from latentode.datasets import make_spirals

FEATURES = ["x", "y"]
"""Feature columns of the spirals."""

T_MAX = 2 * math.pi
"""Length of each series: one turn of the spiral."""

TEST_SIZE = 0.2
"""Fraction of series held out."""

HIDE_FRACTION = 0.5
"""Fraction of each held-out series' points hidden from the model and scored."""

KL_WARMUP_EPOCHS = 3
"""The KL term of the ELBO reaches full weight after this many epochs."""

DYNAMICS = {"ResNet (residual)": "residual", "Neural ODE (dopri5)": "ode"}
"""The two latent dynamics compared, by display name."""

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
    dpi: int


FULL = Sizes(n_series=400, latent_dim=6, hidden_dim=32, encoder_dim=32, max_epochs=40, max_time=240.0, dpi=90)
SMALL_SAFETY_SECONDS = 120.0
"""The small run stops on its epoch count, not on the clock (so tests do not depend on machine load);
this only caps a pathologically slow machine."""
SMALL = Sizes(n_series=40, latent_dim=4, hidden_dim=16, encoder_dim=16, max_epochs=2, max_time=SMALL_SAFETY_SECONDS, dpi=70)


def at_rows(predicted: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """A prediction frame (id, time, features) read at the (id, time) rows of ``targets``, in their order."""
    return targets[["id", "time"]].merge(predicted, on=["id", "time"], how="left")[FEATURES].to_numpy()


def mse(predicted: np.ndarray, targets: pd.DataFrame) -> float:
    return float(np.mean((predicted - targets[FEATURES].to_numpy()) ** 2))


def save_png(fig: Figure, path: Path, dpi: int) -> None:
    """Render ``fig`` and save it as a palette PNG (a README-friendly file size)."""
    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=PNG_COLOURS).save(path, optimize=True)


def plot(models: dict, context: pd.DataFrame, truth: pd.DataFrame, ids, metrics: dict, sizes: Sizes,
         path: Path) -> None:
    """Top: held-out series in the plane, both models. Bottom: validation MSE and NFE per epoch."""
    fig = Figure(figsize=(10, 6.5))
    grid_spec = fig.add_gridspec(2, max(len(ids), 2))
    colours = dict(zip(models, ("tab:orange", "tab:blue")))
    grid = np.linspace(0.0, T_MAX, N_GRID)
    for column, series_id in enumerate(ids):
        ax = fig.add_subplot(grid_spec[0, column])
        seen = context[context["id"] == series_id]
        true = truth[truth["id"] == series_id]
        ax.plot(true["x"], true["y"], "k--", lw=0.8, label="truth")
        for name, model in models.items():
            mean = model.predict(seen, grid)
            ax.plot(mean["x"], mean["y"], color=colours[name], lw=1.4, label=name)
        ax.scatter(seen["x"], seen["y"], s=10, c="k", zorder=3, label="read by the model")
        ax.set_aspect("equal")
        ax.set_title(f"held-out series {series_id}", fontsize=9)
    fig.axes[0].legend(loc="best", fontsize=7)
    bottom = grid_spec[1, :].subgridspec(1, 2)
    ax_mse, ax_nfe = fig.add_subplot(bottom[0, 0]), fig.add_subplot(bottom[0, 1])
    for name, model in models.items():
        epochs = [record["epoch"] for record in model.history_]
        label = f"{name}: {int(metrics[f'n_params_{DYNAMICS[name]}']):,} parameters"
        ax_mse.plot(epochs, [record["valid_mse"] for record in model.history_], color=colours[name], label=label)
        ax_nfe.plot(epochs, [record["nfe"] for record in model.history_], color=colours[name], label=name)
    ax_mse.set_yscale("log")
    ax_mse.set_xlabel("epoch")
    ax_mse.set_ylabel("validation MSE (standardised)")
    ax_mse.legend(fontsize=7)
    ax_nfe.set_xlabel("epoch")
    ax_nfe.set_ylabel("evaluations of f per training batch")
    ax_nfe.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, sizes.dpi)


def main(small: bool = False, out_dir: str | Path = "examples/figures", seed: int = 0) -> dict:
    """Fit the residual and the ODE Latent ODE on the same spirals; compare accuracy, NFE, size and time.

    Returns
    -------
    dict
        Per dynamics ``d`` in {``residual``, ``ode``}: ``interp_mse_d``, ``nfe_train_d`` (mean per training
        batch over epochs), ``nfe_predict_d`` (one prediction over the held-out set), ``n_params_d``,
        ``fit_seconds_d``, ``epochs_d``; and ``interp_mse_locf``.
    """
    sizes = SMALL if small else FULL
    observed, truth = make_spirals(n_series=sizes.n_series, t_max=T_MAX, random_state=seed)
    train, test = train_test_split_series(observed, test_size=TEST_SIZE, random_state=seed)
    context, hidden = interpolation_split(test, hide_fraction=HIDE_FRACTION, random_state=seed)

    locf = carry_forward(context, hidden[["id", "time"]])
    metrics: dict[str, float] = {"interp_mse_locf": mse(at_rows(locf, hidden), hidden)}
    models = {}
    for name, dynamics in DYNAMICS.items():
        model = LatentODE(
            latent_dim=sizes.latent_dim, hidden_dim=sizes.hidden_dim, encoder_dim=sizes.encoder_dim,
            dynamics=dynamics, objective="interpolation", n_samples=1, kl_warmup_epochs=KL_WARMUP_EPOCHS,
            max_epochs=sizes.max_epochs, max_time=sizes.max_time, early_stopping_patience=None,
            random_state=seed, verbose=0,
        )
        started = time.perf_counter()
        model.fit(train)
        metrics[f"fit_seconds_{dynamics}"] = time.perf_counter() - started
        model.module_.reset_nfe()
        predicted = model.predict(context, hidden[["id", "time"]])
        metrics[f"nfe_predict_{dynamics}"] = float(model.module_.nfe)
        metrics[f"interp_mse_{dynamics}"] = mse(at_rows(predicted, hidden), hidden)
        metrics[f"nfe_train_{dynamics}"] = float(np.mean([record["nfe"] for record in model.history_]))
        metrics[f"n_params_{dynamics}"] = float(sum(p.numel() for p in model.module_.parameters()))
        metrics[f"epochs_{dynamics}"] = float(model.n_epochs_)
        models[name] = model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(models, context, truth, pd.unique(test["id"])[:N_SHOWN], metrics, sizes, out / "resnet_vs_ode.png")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny, fast run (as in the tests)")
    parser.add_argument("--out-dir", default="examples/figures", help="where to write the figure")
    args = parser.parse_args()
    for key, value in main(small=args.small, out_dir=args.out_dir).items():
        print(f"{key}: {value:.4g}")
