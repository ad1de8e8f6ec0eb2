"""Where a training step's time goes: cProfile over a short fit on the periodic set, grouped by stage.

Stages: the ODE-RNN encoder, the latent ODE solve, the decoder, the backward pass, and the rest (loss,
batching, optimiser). The fit runs ``--epochs`` epochs of ``LatentODE`` with the periodic benchmark's settings.
One torch thread.

    python benchmarks/profile_step.py                 # ~30 s
    python benchmarks/profile_step.py --set n_samples=1 batch_size=100
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch
from _common import command_line, machine, parse_overrides, write_result

from latentode import LatentODE, train_test_split_series
from latentode.datasets import make_periodic

STAGES = {
    "encoder (ODE-RNN, forward)": ("latent_model.py", "encode"),
    "latent ODE solve (forward)": ("latent_model.py", "latent_states"),
    "decoder (forward)": ("latent_model.py", "decode"),
    "backward pass": ("~", "<method 'run_backward' of 'torch._C._EngineBase' objects>"),
}
"""Stage name -> (file suffix, function name) in cProfile's statistics."""

PERIODIC_SETTINGS = {"latent_dim": 10, "hidden_dim": 100, "encoder_dim": 20, "noise_std": 0.01,
                     "objective": "interpolation", "context_fraction": 0.5}
"""As ``benchmarks/periodic.py``."""


def cumulative_seconds(stats: pstats.Stats, file_suffix: str, function: str) -> float:
    """Summed cumulative time of the profiled functions with that name in files ending with ``file_suffix``."""
    return sum(entry[3] for (file, _, name), entry in stats.stats.items()
               if name == function and file.endswith(file_suffix))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-series", type=int, default=1000)
    parser.add_argument("--set", nargs="*", default=[], metavar="PARAM=VALUE", help="override LatentODE parameters")
    parser.add_argument("--out", default="benchmarks/results/profile_step.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    options = parse_overrides(args.set)
    train, _ = train_test_split_series(make_periodic(n_series=args.n_series, random_state=0), test_size=0.2, random_state=0)
    model = LatentODE(**PERIODIC_SETTINGS, max_epochs=1, early_stopping_patience=None, validation_fraction=0.0,
                      random_state=0, verbose=0)
    model.set_params(**options)
    model.fit(train)  # warm-up: first-call overheads stay out of the profile
    model.set_params(max_epochs=args.epochs)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    model.fit(train)
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    steps = args.epochs * -(-len(train["id"].unique()) // model.batch_size)
    seconds = {stage: cumulative_seconds(stats, *where) for stage, where in STAGES.items()}
    seconds["other (loss, batching, optimiser)"] = total - sum(seconds.values())
    print(f"{steps} training steps, {total / steps:.3f} s per step (under cProfile)")
    for stage, value in seconds.items():
        print(f"  {stage:<36} {value / steps:7.3f} s/step  {100 * value / total:5.1f}%")
    result = {"benchmark": "profile_step", "command": command_line(__file__, argv),
              "machine": machine(),
              "settings": {**PERIODIC_SETTINGS, **options, "batch_size": model.batch_size},
              "steps": steps, "seconds_per_step": total / steps,
              "stages": {stage: {"seconds_per_step": value / steps, "fraction": value / total}
                         for stage, value in seconds.items()}}
    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
