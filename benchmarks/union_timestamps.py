"""Training-step time against the number of distinct timestamps in a batch, at fixed series length.

The reference implementation solves every batch on the union of its series' timestamps, so its step time
grows with that union (shared/REFERENCE.md). Here the encoder steps through each series' own gaps and the
latent path is solved on a shared grid in scaled time, so the step time should stay flat as the union grows.

Batches are PhysioNet-like: 50 series x 41 features, each series observed at 50 time points drawn from a pool
of U distinct times in [0, 1] (so the batch's union is exactly U), each time point observing about 15% of the
features (at least one). One step is a full training step of ``LatentODEModel(41, latent_dim=20)`` with its
defaults: forward loss, backward, Adam update. Figures are seconds with ``torch.set_num_threads(1)``.

    python benchmarks/union_timestamps.py                       # U = 50 ... 1600, 5 timed steps each
    python benchmarks/union_timestamps.py --repeats 3 --unions 50 200 800
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from _common import command_line, machine, write_result

from latentode.batch import IrregularBatch
from latentode.latent_model import LatentODEModel

UNIONS = (50, 100, 200, 400, 800, 1600)
"""Numbers of distinct timestamps per batch that are measured by default."""

N_SERIES = 50
"""Series per batch (the reference's PhysioNet batch size)."""

N_FEATURES = 41
"""Features per time point (PhysioNet 2012's 41 variables)."""

SERIES_LENGTH = 50
"""Time points of every series, whatever the union."""

OBSERVED_FRACTION = 0.15
"""Chance that a feature is observed at a time point (PhysioNet-like sparsity); each point observes >= 1."""

LATENT_DIM = 20
"""Latent dimension of the timed model (the reference's PhysioNet setting)."""

REFERENCE_STEP_SECONDS = {50: 6.3, 100: 7.6, 200: 9.4, 400: 20.9, 800: 40.0}
"""Reference implementation's training step, seconds, on this 2-core machine with 1 torch thread
(shared/REFERENCE.md: 41 features, batch 50, PhysioNet-like sparsity)."""

REFERENCE_SOURCE = (
    "shared/REFERENCE.md, YuliaRubanova/latent_ode measured on our 2-core machine (1 torch thread)"
)


def make_batch(
    union: int,
    *,
    n_series: int = N_SERIES,
    n_features: int = N_FEATURES,
    length: int = SERIES_LENGTH,
    seed: int = 0,
) -> IrregularBatch:
    """A batch whose series each have ``length`` points and whose union of timestamps has exactly ``union``.

    The pool of ``union`` distinct times in [0, 1] is shuffled and dealt out cyclically, ``length``
    consecutive pool entries per series: every pool time is used once the deal goes round
    (``n_series * length >= union``) and no series repeats a time (``length <= union``).
    """
    if not length <= union <= n_series * length:
        raise ValueError(
            f"Need length <= union <= n_series * length, got union={union}, length={length}, "
            f"n_series={n_series}."
        )
    generator = torch.Generator().manual_seed(seed)
    pool = torch.sort(torch.rand(union, generator=generator, dtype=torch.float64)).values
    while bool((pool.diff() == 0).any()):  # distinct times (a tie in float64 is all but impossible)
        pool = torch.sort(torch.rand(union, generator=generator, dtype=torch.float64)).values
    deal = torch.randperm(union, generator=generator)
    slots = (torch.arange(n_series)[:, None] * length + torch.arange(length)[None, :]) % union
    times = torch.sort(pool[deal[slots]], dim=1).values.to(torch.float32)
    mask = torch.rand(n_series, length, n_features, generator=generator) < OBSERVED_FRACTION
    forced = torch.randint(0, n_features, (n_series, length), generator=generator)
    mask.scatter_(2, forced[..., None], True)
    frequency = 1 + 3 * torch.rand(n_series, 1, n_features, generator=generator)
    phase = 6.283 * torch.rand(n_series, 1, n_features, generator=generator)
    values = torch.sin(frequency * 6.283 * times[..., None] + phase)
    values = values + 0.1 * torch.randn(values.shape, generator=generator)
    values = torch.where(mask, values, torch.zeros(()))
    lengths = torch.full((n_series,), length, dtype=torch.int64)
    return IrregularBatch(times=times, values=values, mask=mask, lengths=lengths)


def time_steps(union: int, repeats: int, *, seed: int = 0, **batch_kwargs) -> dict:
    """Seconds of a warm-up and ``repeats`` timed training steps of a fresh model (reconstruction)."""
    batch = make_batch(union, seed=seed, **batch_kwargs)
    distinct = int(torch.unique(batch.times[batch.time_mask]).numel())
    torch.manual_seed(seed)
    model = LatentODEModel(batch.n_features, LATENT_DIM)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    seconds, nfe = [], []
    for step in range(repeats + 1):
        model.reset_nfe()
        start = time.perf_counter()
        optimizer.zero_grad()
        terms = model.loss(batch, batch, generator=generator)
        terms.loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        if step > 0:  # the first step is a warm-up
            seconds.append(elapsed)
            nfe.append(model.nfe)
    return {
        "union_timestamps": union,
        "distinct_timestamps_in_batch": distinct,
        "median_step_s": statistics.median(seconds),
        "step_s": seconds,
        "median_nfe": statistics.median(nfe),
        "reference_step_s": REFERENCE_STEP_SECONDS.get(union),
    }


def _format(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/union_timestamps.json"))
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per union (after one warm-up)")
    parser.add_argument("--unions", type=int, nargs="+", default=list(UNIONS))
    parser.add_argument(
        "--n-series", type=int, default=N_SERIES, help="series per batch (small for a smoke run)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}.")

    torch.set_num_threads(1)
    print(
        f"Training step ({args.n_series} series x {N_FEATURES} features, {SERIES_LENGTH} points per series, "
        f"latent {LATENT_DIM}; median of {args.repeats} after a warm-up; 1 torch thread)"
    )
    print(
        f"{'union':>6} {'distinct':>9} {'ours (s)':>9} {'min-max (s)':>13} {'NFE':>6} {'reference (s)':>14} "
        f"{'speed-up':>9}"
    )
    results = []
    for union in args.unions:
        row = time_steps(union, args.repeats, seed=args.seed, n_series=args.n_series)
        results.append(row)
        reference = row["reference_step_s"]
        speedup = None if reference is None else f"{reference / row['median_step_s']:.0f}x"
        spread = f"{min(row['step_s']):.3f}-{max(row['step_s']):.3f}"
        print(
            f"{union:>6} {row['distinct_timestamps_in_batch']:>9} {row['median_step_s']:>9.3f} {spread:>13} "
            f"{row['median_nfe']:>6.0f} {_format(reference, '.1f'):>14} {speedup or '-':>9}",
            flush=True,
        )
    medians = [row["median_step_s"] for row in results]
    ratio = max(medians) / min(medians)
    print(
        f"slowest / fastest median step: {ratio:.2f} (the reference: "
        f"{max(REFERENCE_STEP_SECONDS.values()) / min(REFERENCE_STEP_SECONDS.values()):.1f} from 50 to 800)"
    )

    report = {
        "benchmark": "union_timestamps",
        "config": {
            "n_series": args.n_series,
            "n_features": N_FEATURES,
            "series_length": SERIES_LENGTH,
            "observed_fraction": OBSERVED_FRACTION,
            "latent_dim": LATENT_DIM,
            "repeats": args.repeats,
            "warmup_steps": 1,
            "torch_threads": 1,
            "seed": args.seed,
            "objective": "reconstruction (context = target)",
        },
        "results": results,
        "slowest_over_fastest": ratio,
        "reference": {"step_s": REFERENCE_STEP_SECONDS, "source": REFERENCE_SOURCE},
        "machine": machine(python=platform.python_version()),
        "command": command_line(__file__, argv),
    }
    write_result(report, args.out)
    return report


if __name__ == "__main__":
    main()
