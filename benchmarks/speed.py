"""Speed and memory: training-step time, predict throughput (series x query times per second), peak memory.

Data: PhysioNet-shaped irregular series (41 features, ~15% of features observed per time point, 20-80 time
points per series on their own timestamps, so timestamps never line up across series). One torch thread.

    python benchmarks/speed.py            # ~1 minute
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import pandas as pd
import torch
from _common import command_line, machine, write_result

from latentode import LatentODE

N_FEATURES = 41
"""As PhysioNet 2012's time-varying variables."""

OBSERVED_PER_TIME_POINT = 0.15
"""Fraction of features observed at each time point (PhysioNet-like sparsity)."""


def make_records(n_series: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        n = int(rng.integers(20, 81))
        times = np.sort(rng.uniform(0, 48, n))  # hours, irregular, never shared across series
        base = rng.normal(size=N_FEATURES)
        values = base + np.sin(times[:, None] * rng.uniform(0.05, 0.3, N_FEATURES) + rng.uniform(0, 6, N_FEATURES))
        values[rng.random(values.shape) > OBSERVED_PER_TIME_POINT] = np.nan
        empty = np.isnan(values).all(1)
        values[empty, rng.integers(0, N_FEATURES, empty.sum())] = 0.0
        frame = pd.DataFrame(values, columns=[f"v{j}" for j in range(N_FEATURES)])
        frame.insert(0, "time", times)
        frame.insert(0, "id", i)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-series", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--queries", type=int, default=100, help="query times per series for predict")
    parser.add_argument("--out", default="benchmarks/results/speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    df = make_records(args.n_series, seed=0)
    union = df["time"].nunique()
    rss_data = peak_rss_mib()

    steps: list[float] = []

    from latentode.training import Callback

    class StepTimer(Callback):
        def on_train_begin(self, trainer):
            self.last = time.perf_counter()

        def on_batch_end(self, trainer, loss):
            now = time.perf_counter()
            steps.append(now - self.last)
            self.last = now

        def on_epoch_end(self, trainer, record):
            self.last = time.perf_counter()

    model = LatentODE(latent_dim=20, max_epochs=args.epochs, validation_fraction=0.0, early_stopping_patience=None,
                      random_state=0, verbose=0, callbacks=[StepTimer()])
    began = time.perf_counter()
    model.fit(df)
    fit_seconds = time.perf_counter() - began
    rss_fit = peak_rss_mib()

    queries = np.linspace(-12, 60, args.queries)  # before, between and after each series' observations
    model.predict(df[df["id"] < 50], queries)  # warm-up
    began = time.perf_counter()
    predicted = model.predict(df, queries)
    predict_seconds = time.perf_counter() - began
    rss_predict = peak_rss_mib()
    began = time.perf_counter()
    model.predict_interval(df, queries[:20], n_samples=50, random_state=0)
    interval_seconds = time.perf_counter() - began

    result = {
        "benchmark": "speed",
        "command": command_line(__file__, argv),
        "machine": machine(),
        "data": {"n_series": args.n_series, "n_features": N_FEATURES, "rows": len(df), "union_timestamps": int(union)},
        "train_step_seconds_median": statistics.median(steps),
        "train_steps": len(steps),
        "fit_seconds": fit_seconds,
        "predict": {"series": args.n_series, "queries_per_series": args.queries, "seconds": predict_seconds,
                    "predictions_per_second": len(predicted) / predict_seconds,
                    "values_per_second": len(predicted) * N_FEATURES / predict_seconds},
        "predict_interval_seconds_20_queries_50_samples": interval_seconds,
        "peak_rss_mib": {"after_loading_data": rss_data, "after_fit": rss_fit, "after_predict": rss_predict},
    }
    print(f"data: {args.n_series} series x {N_FEATURES} features, {len(df)} rows, {union} distinct timestamps")
    print(f"training step (batch 50): median {result['train_step_seconds_median']:.3f} s over {len(steps)} steps")
    print(f"predict: {len(predicted)} (series x time) rows in {predict_seconds:.2f} s = "
          f"{result['predict']['predictions_per_second']:.0f} rows/s ({result['predict']['values_per_second']:.0f} values/s)")
    print(f"predict_interval (20 times, 50 samples): {interval_seconds:.2f} s")
    print(f"peak RSS: data {rss_data:.0f} MiB, after fit {rss_fit:.0f} MiB, after predict {rss_predict:.0f} MiB")
    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
