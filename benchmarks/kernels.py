"""The two CPU kernels that latentode.layers works around: narrow matrix products and float32 tanh.

1. ``A @ B`` against ``(B^T @ A^T)^T`` for the shapes a 10-dimensional latent state produces (results 2-32
   columns wide, 150-15,000 rows), one thread.
2. ``torch.tanh`` against ``2 sigmoid(2x) - 1`` in place, and :class:`latentode.layers.Tanh`, forward and
   backward, at the sizes of the latent field (15,000 elements) and the decoder (1,500,000).
3. The periodic benchmark's decoder (10 -> 100 -> 1, tanh, applied to 3 samples x 50 series x 100 times)
   built from torch's layers against latentode's, forward and backward.

    python benchmarks/kernels.py          # ~1 minute
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from _common import command_line, machine, write_result
from torch import nn

from latentode import layers
from latentode.vector_fields import mlp

REPEATS = 7
"""Timed repetitions per figure (after warm-up), by default; the median is reported."""


def median_microseconds(fn, calls: int, repeats: int = REPEATS) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def calls_for(size: int) -> int:
    return max(3, min(200, 30_000_000 // max(size, 1)))


def transposed_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mm(b.T, a.T).T


def sigmoid_form(x: torch.Tensor) -> torch.Tensor:
    return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


def forward_backward(fn, x: torch.Tensor, grad: torch.Tensor) -> None:
    fn(x).backward(grad)


def matmul_orientation(repeats: int) -> list[dict]:
    rows = []
    for m, k in [(150, 100), (1500, 100), (15000, 100), (100, 15000), (15000, 10)]:
        for n in [1, 2, 4, 8, 10, 12, 16, 20, 32]:
            a, b = torch.randn(m, k), torch.randn(k, n)
            calls = calls_for(m * k * n // 10)
            plain = median_microseconds(partial(torch.mm, a, b), calls, repeats)
            transposed = median_microseconds(partial(transposed_mm, a, b), calls, repeats)
            rows.append({"m": m, "k": k, "n": n, "plain_us": plain, "transposed_us": transposed,
                         "plain_over_transposed": plain / transposed})
    return rows


def tanh_forms(repeats: int) -> list[dict]:
    rows = []
    for size in [15_000, 150_000, 1_500_000]:
        x = torch.randn(size, requires_grad=True)
        grad = torch.randn(size)
        calls = calls_for(size)
        rows.append({
            "elements": size,
            "torch_tanh_forward_us": median_microseconds(partial(torch.tanh, x.detach()), calls, repeats),
            "sigmoid_form_forward_us": median_microseconds(partial(sigmoid_form, x.detach()), calls, repeats),
            "torch_tanh_forward_backward_us": median_microseconds(partial(forward_backward, torch.tanh, x, grad), calls, repeats),
            "latentode_tanh_forward_backward_us": median_microseconds(
                partial(forward_backward, layers.Tanh(), x, grad), calls, repeats),
            "uses_sigmoid_form": size >= layers.FAST_TANH_MIN_ELEMENTS,
        })
    return rows


def decoder(repeats: int) -> dict:
    torch.manual_seed(0)
    ours = mlp(10, 1, 100, 1, "tanh")
    torchs = nn.Sequential(nn.Linear(10, 100), nn.Tanh(), nn.Linear(100, 1))
    torchs.load_state_dict(ours.state_dict())
    z = torch.randn(3, 50, 100, 10, requires_grad=True)

    def step(net):
        return lambda: net(z).sum().backward()

    return {"input": list(z.shape),
            "torch_layers_forward_backward_us": median_microseconds(step(torchs), 10, repeats),
            "latentode_layers_forward_backward_us": median_microseconds(step(ours), 10, repeats)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--out", default="benchmarks/results/kernels.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    orientation = matmul_orientation(args.repeats)
    print("A @ B (m x k @ k x n) against (B^T @ A^T)^T: plain / transposed time")
    for (m, k) in dict.fromkeys((r["m"], r["k"]) for r in orientation):
        cells = [f"n={r['n']}: {r['plain_over_transposed']:.1f}" for r in orientation if (r["m"], r["k"]) == (m, k)]
        print(f"  m={m:6d} k={k:6d}  " + "  ".join(cells))
    tanh = tanh_forms(args.repeats)
    print("tanh, microseconds:")
    for r in tanh:
        print(f"  {r['elements']:>9,} elements  forward torch {r['torch_tanh_forward_us']:8.0f}  sigmoid form "
              f"{r['sigmoid_form_forward_us']:8.0f}  |  forward+backward torch {r['torch_tanh_forward_backward_us']:8.0f}"
              f"  latentode {r['latentode_tanh_forward_backward_us']:8.0f}")
    dec = decoder(args.repeats)
    print(f"decoder {dec['input']}, forward+backward: torch layers {dec['torch_layers_forward_backward_us'] / 1000:.2f} ms,"
          f" latentode layers {dec['latentode_layers_forward_backward_us'] / 1000:.2f} ms")
    result = {"benchmark": "kernels", "command": command_line(__file__, argv), "machine": machine(),
              "matmul_orientation": orientation, "tanh": tanh, "decoder": dec}
    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
