"""How often a clean 2-process fit aborts at exit, with and without the exit drain of latentode.distributed.

Each launch is ``torchrun --nproc-per-node 2`` of a one-epoch ODERNN fit (gloo on loopback) that ends
normally; a launch fails when a rank aborts at interpreter exit ("terminate called without an active
exception", exit code -6). ``--no-drain`` sets ``EXIT_DRAIN_SECONDS = 0`` in the workers, the behaviour
before the drain existed.

    python benchmarks/distributed_exit.py                  # 30 launches with the drain (~3 min)
    python benchmarks/distributed_exit.py --no-drain       # 30 launches without it
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
from _common import command_line, free_port, machine, write_result

ABORT_MESSAGE = "terminate called without an active exception"


def worker(drain: bool) -> None:
    """Runs under torchrun: a small fit that ends normally, then the interpreter exits."""
    import pandas as pd
    import torch

    import latentode.distributed
    from latentode import ODERNN

    torch.set_num_threads(1)
    if not drain:
        latentode.distributed.EXIT_DRAIN_SECONDS = 0.0
    rng = np.random.default_rng(0)
    rows = [{"id": i, "time": t, "x": np.sin(t + i)} for i in range(16) for t in np.sort(rng.uniform(0, 5, 12))]
    ODERNN(hidden_dim=8, ode_hidden_dim=16, max_epochs=1, validation_fraction=0.25, device="cpu", verbose=0,
           random_state=0).fit(pd.DataFrame(rows))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launches", type=int, default=30)
    parser.add_argument("--no-drain", action="store_true", help="workers skip the exit drain")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/distributed_exit*.json)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(drain=not args.no_drain)
        return {}
    drain = not args.no_drain
    aborts, other_failures = 0, 0
    for launch in range(args.launches):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
                   f"--master-port={free_port()}", __file__, "--worker", *(["--no-drain"] if not drain else [])]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        aborted = result.returncode != 0 and ABORT_MESSAGE in result.stderr
        aborts += aborted
        other_failures += result.returncode != 0 and not aborted
        outcome = "aborted at exit" if aborted else f"exit code {result.returncode}"
        print(f"launch {launch + 1:3d}: {outcome}", flush=True)
    print(f"\n{'drain' if drain else 'no drain'}: {aborts} of {args.launches} launches aborted at exit"
          f" ({other_failures} failed otherwise)")
    result = {"benchmark": "distributed_exit", "command": command_line(__file__, argv), "machine": machine(),
              "drain": drain, "launches": args.launches, "aborted_at_exit": aborts, "other_failures": other_failures}
    write_result(result, args.out or f"benchmarks/results/distributed_exit{'' if drain else '_no_drain'}.json")
    return result


if __name__ == "__main__":
    main()
