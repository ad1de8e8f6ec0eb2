"""Simulate the MuJoCo Hopper data set of the Latent ODE paper and cache it on disk.

Run once before training on Hopper, so later calls to
``latentode.datasets.make_hopper`` load the trajectories instead of simulating them
(10,000 trajectories take roughly a minute)::

    python datasets/prepare_hopper.py --n-series 10000 --cache-dir ~/.cache/latentode

Needs the dataset extras: ``pip install "latentode[datasets]"``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from latentode.datasets import make_hopper
from latentode.datasets._hopper import DEFAULT_CACHE_DIR, HOPPER_REFERENCE_SEED

DEFAULT_N_SERIES = 10000
"""Number of trajectories of the reference data set."""

DEFAULT_N_STEPS = 200
"""Number of recorded states per trajectory in the reference data set."""


def main(argv: Sequence[str] | None = None) -> Path:
    """Generate and cache the Hopper trajectories; return the cache directory.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    cache_dir : pathlib.Path
        Directory now holding the cache file.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-series", type=int, default=DEFAULT_N_SERIES, help="number of trajectories")
    parser.add_argument("--n-steps", type=int, default=DEFAULT_N_STEPS, help="states per trajectory")
    parser.add_argument("--seed", type=int, default=HOPPER_REFERENCE_SEED, help="seed of the initial states")
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="where to write the .npy cache file"
    )
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir.expanduser()
    start = time.perf_counter()
    data = make_hopper(
        n_series=args.n_series, n_steps=args.n_steps, random_state=args.seed, cache_dir=cache_dir
    )
    elapsed = time.perf_counter() - start
    print(
        f"{data['id'].nunique()} Hopper trajectories x {args.n_steps} steps ready in {cache_dir} "
        f"({elapsed:.1f} s)"
    )
    return cache_dir


if __name__ == "__main__":
    main()
