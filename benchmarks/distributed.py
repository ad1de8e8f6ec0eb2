"""Data-parallel throughput: training series per second with 1 and 2 processes under torchrun (gloo, CPU).

Each process uses one torch thread, so 2 processes use both cores of a 2-core machine.

    python benchmarks/distributed.py          # ~1-2 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _common import command_line, free_port, machine, write_result


def worker(out: str, n_series: int, epochs: int) -> None:
    """Runs under torchrun: fit, then rank 0 writes the per-epoch seconds."""
    torch.set_num_threads(1)
    import torch.distributed as dist

    from latentode import LatentODE
    from latentode.datasets import make_periodic

    df = make_periodic(n_series=n_series, random_state=0)
    model = LatentODE(max_epochs=epochs, validation_fraction=0.0, early_stopping_patience=None, random_state=0,
                      verbose=0).fit(df)
    if not dist.is_initialized() or dist.get_rank() == 0:
        Path(out).write_text(json.dumps([r["seconds"] for r in model.history_]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-series", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/distributed.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.n_series, args.epochs)
        return {}
    rows = {}
    for nproc in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "seconds.json")
            command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
                       "--master-addr=127.0.0.1", f"--master-port={free_port()}", __file__,
                       f"--n-series={args.n_series}", f"--epochs={args.epochs}", f"--worker={out}"]
            subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            seconds = json.loads(Path(out).read_text())
        per_epoch = sorted(seconds[1:] or seconds)[len(seconds[1:] or seconds) // 2]  # median, first epoch warm-up
        rows[nproc] = {"epoch_seconds": seconds, "median_epoch_seconds": per_epoch,
                       "series_per_second": args.n_series / per_epoch}
        print(f"{nproc} process(es): median epoch {per_epoch:.2f} s, {rows[nproc]['series_per_second']:.0f} series/s")
    speedup = rows[2]["series_per_second"] / rows[1]["series_per_second"]
    print(f"speed-up with 2 processes: {speedup:.2f}x")
    result = {"benchmark": "distributed", "command": command_line(__file__, argv),
              "machine": machine(torch_threads_per_process=1),
              "n_series": args.n_series, "epochs": args.epochs, "processes": rows, "speedup_2_vs_1": speedup}
    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
