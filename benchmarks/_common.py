"""Shared by the benchmark scripts: what each result records of how and where it was measured; torchrun ports."""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import statistics
import sys
import time
from pathlib import Path


def command_line(script: str, argv: list[str] | None) -> str:
    """``python benchmarks/<script> <arguments>`` with the arguments actually given (``argv`` or sys.argv)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *arguments])


def parse_overrides(items: list[str]) -> dict:
    """``["solver=rk4", "batch_size=100"]`` -> ``{"solver": "rk4", "batch_size": 100}`` (JSON values, else strings)."""
    options = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"--set expects PARAM=VALUE, got {item!r}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


CALIBRATION_REPEATS = 2000
"""Repeats of the calibration kernel; about a second on a 2-core CI machine."""


def calibration_microseconds() -> float:
    """Median time of a fixed kernel like one vector-field call (150 x 100 matmul, tanh, backward), one thread.

    Cloud machines of the same class differ in speed from day to day (2-3x seen here); dividing a figure by this
    one makes figures from different runs comparable.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(150, 100, generator=generator)
    weight = torch.randn(100, 100, generator=generator, requires_grad=True)
    times = []
    for _ in range(CALIBRATION_REPEATS):
        start = time.perf_counter()
        torch.tanh(x @ weight).sum().backward()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def machine(**extra) -> dict:
    """Where a result was measured: platform, CPU model, count and vector instruction set, torch version and
    threads, calibration.

    ``cpu_capability`` is the instruction set torch's CPU kernels use here (``torch.backends.cpu``), e.g.
    "AVX2" or "AVX512": float32 results round differently from one to the other, so a training curve is
    reproducible only on a machine with the same capability (same code, same seed).
    """
    import torch

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "calibration_microseconds": calibration_microseconds(), **extra}


def write_result(result: dict, out: str | os.PathLike) -> None:
    """Write a benchmark's result as JSON (creating its folder) and say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


def free_port() -> int:
    """A TCP port free on the loopback interface now, for a torchrun rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
