"""MuJoCo Hopper, the Latent ODE paper's protocols at 10/20/30/50% of time points observed.

Trajectories come from dm_control exactly as in the reference implementation (200 steps of the 14-dim state,
t = step / 200, the reference's global (x - min) / max scaling from training trajectories). For each observed
fraction: interpolation (read the observed points, reconstruct all 200 steps) and extrapolation (read the
observed points of the first third, forecast the rest, as the reference's ``split_data_extrap`` for hopper).
Test MSE in units of 1e-2 next to the paper's Table (Latent ODE with ODE-RNN encoder, and ODE-RNN).

    python benchmarks/hopper.py            # 600 trajectories, 30 s of training per model (~6 min)
    python benchmarks/hopper.py --full     # 10,000 trajectories, 30 min per model (hours)

Needs ``pip install "latentode[datasets]"``.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from _common import command_line, machine, write_result
from _examples import load_example

from latentode import ODERNN, LatentODE, train_test_split_series
from latentode.baselines import carry_forward, linear_interpolation
from latentode.datasets import make_hopper

FRACTIONS = (0.1, 0.2, 0.3, 0.5)
PAPER = {  # test MSE x 1e-2, Rubanova et al. 2019, Table (shared/REFERENCE.md)
    "latent_ode_interpolation": (0.360, 0.295, 0.300, 0.285),
    "latent_ode_extrapolation": (1.441, 1.400, 1.175, 1.258),
    "ode_rnn_interpolation": (1.647, 1.209, 0.986, 0.665),
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-series", type=int, default=600)
    parser.add_argument("--budget", type=float, default=30.0, help="training seconds per model")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/hopper.json")
    args = parser.parse_args(argv)
    if args.full:
        args.n_series, args.budget = 10_000, 1800.0
    torch.set_num_threads(1)
    ex = load_example("hopper")
    features, n_steps = ex.FEATURES, ex.N_STEPS
    truth = make_hopper(n_series=args.n_series, n_steps=n_steps)
    train_truth, test_truth = train_test_split_series(truth, test_size=ex.TEST_SIZE, random_state=args.seed)
    low, high = ex.reference_scaling(train_truth)
    truth = truth.assign(**{f: (truth[f] - low[f]) / high[f] for f in features})
    train_ids, test_ids = pd.unique(train_truth["id"]), pd.unique(test_truth["id"])
    targets = truth[truth["id"].isin(test_ids)].reset_index(drop=True)
    cut = ex.EXTRAPOLATION_CONTEXT_STEPS / n_steps - 0.5 / n_steps
    future = targets[targets["time"] > cut].reset_index(drop=True)
    settings = {"latent_dim": 15, "hidden_dim": 64, "encoder_dim": 32, "n_samples": 1, "solver": "rk4",
                "max_epochs": 100_000, "max_time": args.budget, "early_stopping_patience": None,
                "random_state": args.seed, "verbose": 0}
    rows = []
    for fraction in FRACTIONS:
        observed = make_hopper(n_series=args.n_series, n_steps=n_steps, observed_fraction=fraction)
        observed = observed.assign(**{f: (observed[f] - low[f]) / high[f] for f in features})
        seen = observed[observed["id"].isin(test_ids)].reset_index(drop=True)
        early = seen[seen["time"] < cut].reset_index(drop=True)
        train_obs = observed[observed["id"].isin(train_ids)]
        row = {"observed_fraction": fraction}
        started = time.perf_counter()
        interp = LatentODE(objective="interpolation", context_fraction=fraction, **settings)
        interp.fit(truth[truth["id"].isin(train_ids)])
        row["latent_ode_interpolation"] = ex.mse(ex.model_means(interp, seen, targets), targets)
        rnn = ODERNN(hidden_dim=64, context_fraction=1.0, max_epochs=100_000, max_time=args.budget,
                     early_stopping_patience=None, random_state=args.seed, verbose=0).fit(train_obs)
        row["ode_rnn_interpolation"] = ex.mse(ex.model_means(rnn, seen, targets), targets)
        extrap = LatentODE(objective="extrapolation", context_fraction=ex.EXTRAPOLATION_CONTEXT_STEPS / n_steps,
                           **settings).fit(train_obs)
        row["latent_ode_extrapolation"] = ex.mse(ex.model_means(extrap, early, future), future)
        row["locf_interpolation"] = ex.mse(ex.baseline_at(carry_forward, seen, targets), targets)
        row["linear_interpolation"] = ex.mse(ex.baseline_at(linear_interpolation, seen, targets), targets)
        row["locf_extrapolation"] = ex.mse(ex.baseline_at(carry_forward, early, future), future)
        row["epochs"] = {"interp": interp.n_epochs_, "ode_rnn": rnn.n_epochs_, "extrap": extrap.n_epochs_}
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(f"{int(fraction * 100):3d}% observed: " + ", ".join(
            f"{k} {v * 100:.3f}" for k, v in row.items() if isinstance(v, float) and k not in ("observed_fraction", "seconds")
        ) + "  (x1e-2)", flush=True)
    print(f"\n{'x1e-2':<26}" + "".join(f"{int(f * 100):>9d}%" for f in FRACTIONS))
    for key in ("latent_ode_interpolation", "ode_rnn_interpolation", "locf_interpolation", "linear_interpolation",
                "latent_ode_extrapolation", "locf_extrapolation"):
        print(f"{'ours ' + key:<26}" + "".join(f"{r[key] * 100:>10.3f}" for r in rows))
        if key in PAPER:
            print(f"{'paper ' + key:<26}" + "".join(f"{v:>10.3f}" for v in PAPER[key]))
    result = {"benchmark": "hopper", "command": command_line(__file__, argv),
              "machine": machine(),
              "n_series": args.n_series, "budget_seconds_per_model": args.budget, "units": "MSE (not x1e-2)",
              "paper_x1e-2": PAPER, "rows": rows}
    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
