"""Data-parallel training with PyTorch's own engine: process groups set up by torchrun, DDP, sharding.

Launch any script or ``latentode fit`` under ``torchrun --nproc-per-node N`` (or multi-node with
``--nnodes``/``--rdzv-endpoint``): :func:`setup` finds the ``WORLD_SIZE``/``RANK`` variables torchrun sets and
initialises the default process group (gloo on CPU, nccl on GPU). Without them everything runs in one process.
"""

from __future__ import annotations

import atexit
import os
import time

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_sum", "barrier", "broadcast_int", "is_distributed", "is_main_process", "rank", "setup", "shard",
    "world_size",
]

EXIT_DRAIN_SECONDS = 0.05
"""At exit, how long the main thread pauses, without the GIL, before the process group is destroyed.

A gloo worker thread frees a finished collective's tensors after the caller has moved on; when they were
created in Python, freeing them needs the GIL. If the interpreter is already finalising by then, the thread
is killed inside a C++ destructor and the whole process aborts with "terminate called without an active
exception", failing a launch whose training went well. Sleeping lets those threads take the GIL and finish
first: ``python benchmarks/distributed_exit.py`` counted 3 aborted 2-process launches in 30 without the
drain (``--no-drain``, i.e. 0 here) and 0 in 40 with it.
"""


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that logs, shows progress and writes files."""
    return rank() == 0


def setup(device: torch.device) -> bool:
    """Initialise the default process group from torchrun's environment, once. Returns whether distributed.

    On CUDA, each process uses the GPU ``LOCAL_RANK``. Without ``WORLD_SIZE`` > 1 in the environment this does
    nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        # Tear the group down before the interpreter exits: left running, its communication threads can make
        # a rank abort at exit ("terminate called without an active exception"), failing the whole launch.
        atexit.register(_teardown)
    return is_distributed()


def _teardown() -> None:
    """At exit: let gloo's threads release the last collectives (see :data:`EXIT_DRAIN_SECONDS`), then destroy
    the process group while the interpreter is still whole."""
    if dist.is_available() and dist.is_initialized():
        if EXIT_DRAIN_SECONDS > 0:  # 0 turns the drain off (benchmarks/distributed_exit.py --no-drain)
            time.sleep(EXIT_DRAIN_SECONDS)
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` under torchrun on GPUs, else ``device``."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(order: np.ndarray) -> np.ndarray:
    """This rank's share of a permutation that every rank drew identically.

    Shares have equal length (the permutation wraps around to fill the last ones), so that every rank runs
    the same number of steps, as DistributedDataParallel requires.
    """
    n, size = len(order), world_size()
    if size == 1:
        return order
    per_rank = -(-n // size)
    padded = np.resize(order, per_rank * size)
    return padded[rank() :: size]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum floats over all processes (identity in a single process)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every process (identity in a single process).

    Used for anything every rank must agree on but may have drawn differently, such as a seed drawn from
    the operating system's entropy when ``random_state=None``.
    """
    if not is_distributed():
        return int(value)
    tensor = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()
