"""Latent trajectories: what a Latent ODE fitted on spirals does in its latent space.

A :class:`latentode.LatentODE` is fitted on irregularly sampled clockwise and counter-clockwise spirals
(:func:`latentode.datasets.make_spirals`, one turn). For held-out series, the script takes the posterior
mean of z0 and solves the latent ODE forwards over the whole time window, then draws those latent
trajectories (projected on their first two principal components) coloured by the spiral's direction.
The model is never told the direction; if the latent space separates the two kinds of spiral, it found
the distinction by itself.

The latent path comes from :meth:`latentode.LatentODE.latent_trajectories`, which takes the same
``times`` as ``predict`` and returns a DataFrame with one ``latent<k>`` column per latent dimension. z0
alone is ``model.transform(frame)`` (the posterior mean, one row per series): the script also reports how
well a logistic regression on z0 recovers the direction (trained on the training series, scored on the
held-out ones).

Run::

    python examples/latent_trajectories.py            # full size, a couple of minutes on a laptop CPU
    python examples/latent_trajectories.py --small    # a few seconds
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
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from latentode import LatentODE, train_test_split_series
from latentode.datasets import make_spirals

T_MAX = 2 * math.pi
"""Length of each series: one turn of the spiral."""

TEST_SIZE = 0.25
"""Fraction of series held out."""

KL_WARMUP_EPOCHS = 3
"""The KL term of the ELBO reaches full weight after this many epochs."""

N_GRID = 60
"""Time points along each latent trajectory."""

N_DRAWN = 40
"""Held-out latent trajectories drawn."""

DIRECTION_NAMES = {0: "counter-clockwise", 1: "clockwise"}
"""Label values of ``make_spirals(return_labels=True)`` and their names."""

COLOURS = {0: "tab:blue", 1: "tab:red"}
"""Colour of each direction in the figure."""

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


FULL = Sizes(n_series=400, latent_dim=6, hidden_dim=32, encoder_dim=32, max_epochs=300, max_time=120.0, dpi=90)
SMALL_SAFETY_SECONDS = 120.0
"""The small run stops on its epoch count, not on the clock (so tests do not depend on machine load);
this only caps a pathologically slow machine."""
SMALL = Sizes(n_series=40, latent_dim=4, hidden_dim=16, encoder_dim=16, max_epochs=2, max_time=SMALL_SAFETY_SECONDS, dpi=70)


def latent_paths(model: LatentODE, frame: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Latent states (series, len(times), state) from the posterior mean of z0, series in sorted id order."""
    paths = model.latent_trajectories(frame, times)
    columns = model.get_feature_names_out().tolist()
    return paths[columns].to_numpy().reshape(paths[model.id_col].nunique(), len(times), len(columns))


def save_png(fig: Figure, path: Path, dpi: int) -> None:
    """Render ``fig`` and save it as a palette PNG (a README-friendly file size)."""
    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=PNG_COLOURS).save(path, optimize=True)


def main(small: bool = False, out_dir: str | Path = "examples/figures", seed: int = 0) -> dict:
    """Fit on spirals, draw held-out latent trajectories coloured by direction, probe z0 for the direction.

    Returns
    -------
    dict
        ``direction_accuracy`` (logistic regression on z0, held-out series), ``majority_accuracy`` (always
        guessing the commoner direction), ``pca_explained_variance`` (of the two components drawn),
        ``epochs``, ``fit_seconds``.
    """
    sizes = SMALL if small else FULL
    observed, _, labels = make_spirals(n_series=sizes.n_series, t_max=T_MAX, random_state=seed, return_labels=True)
    train, test = train_test_split_series(observed, test_size=TEST_SIZE, random_state=seed)
    model = LatentODE(
        latent_dim=sizes.latent_dim, hidden_dim=sizes.hidden_dim, encoder_dim=sizes.encoder_dim,
        objective="interpolation", n_samples=1, solver="rk4", kl_warmup_epochs=KL_WARMUP_EPOCHS,
        max_epochs=sizes.max_epochs, max_time=sizes.max_time, random_state=seed, verbose=0,
    )
    started = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - started

    # transform() returns rows in sorted id order.
    train_ids, test_ids = np.sort(pd.unique(train["id"])), np.sort(pd.unique(test["id"]))
    probe = LogisticRegression().fit(model.transform(train), labels.loc[train_ids].to_numpy())
    test_labels = labels.loc[test_ids].to_numpy()
    accuracy = float(probe.score(model.transform(test), test_labels))
    majority = float(max(np.mean(test_labels), 1 - np.mean(test_labels)))

    times = np.linspace(0.0, T_MAX, N_GRID)
    paths = latent_paths(model, test, times)[..., : sizes.latent_dim]  # (series, time, latent)
    pca = PCA(n_components=2).fit(paths.reshape(-1, paths.shape[-1]))
    projected = pca.transform(paths.reshape(-1, paths.shape[-1])).reshape(*paths.shape[:2], 2)

    fig = Figure(figsize=(10, 4.5))
    ax_paths, ax_time = fig.subplots(1, 2)
    for k in range(min(N_DRAWN, len(test_ids))):
        colour = COLOURS[int(test_labels[k])]
        ax_paths.plot(projected[k, :, 0], projected[k, :, 1], color=colour, lw=0.8, alpha=0.7)
        ax_paths.scatter(projected[k, 0, 0], projected[k, 0, 1], color=colour, s=10)
        ax_time.plot(times, projected[k, :, 1], color=colour, lw=0.8, alpha=0.7)
    for label, name in DIRECTION_NAMES.items():
        ax_paths.plot([], [], color=COLOURS[label], label=name)
    ax_paths.set_xlabel("latent PC 1")
    ax_paths.set_ylabel("latent PC 2")
    ax_paths.set_title(f"held-out latent trajectories (dots: z0); z0 probe accuracy {accuracy:.0%}", fontsize=9)
    ax_paths.legend(fontsize=8)
    ax_time.set_xlabel("time")
    ax_time.set_ylabel("latent PC 2")
    ax_time.set_title("latent PC 2 over time", fontsize=9)
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_png(fig, out / "latent_trajectories.png", sizes.dpi)
    return {
        "direction_accuracy": accuracy,
        "majority_accuracy": majority,
        "pca_explained_variance": float(pca.explained_variance_ratio_.sum()),
        "epochs": float(model.n_epochs_),
        "fit_seconds": fit_seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny, fast run (as in the tests)")
    parser.add_argument("--out-dir", default="examples/figures", help="where to write the figure")
    args = parser.parse_args()
    for key, value in main(small=args.small, out_dir=args.out_dir).items():
        print(f"{key}: {value:.4g}")
