"""Two layers in forms that run faster on the CPU, with the same parameters and the same results up to rounding.

* :class:`Linear`: on this project's CPU build of torch (MKL sgemm), a product ``A @ B`` whose result has
  between 2 and 15 columns and many rows runs 2-6x slower than the same product computed transposed,
  ``(B^T @ A^T)^T`` (``benchmarks/kernels.py``). A 10-dimensional latent state meets that case in the
  forward product of a layer with 10 outputs and in the input and weight gradients of a layer with 10
  inputs: the decoder's first layer, applied to every (sample, series, query time), spent most of its
  time there. :class:`Linear` is :class:`torch.nn.Linear` (same parameters and ``state_dict``) with those
  products oriented the fast way.
* :class:`Tanh`: ``torch.tanh`` on float32 costs about 3 ns per element on that build, ``torch.sigmoid``
  0.5 ns; ``tanh(x) = 2 sigmoid(2x) - 1`` computed in place is 4x faster on large inputs (absolute
  difference at most 2e-7).

Both switch only on large CPU inputs (a custom autograd function's Python cost outweighs the saving on small
ones), so the same values can differ by float32 rounding between a large batch and a small one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

__all__ = ["FAST_TANH_MIN_ELEMENTS", "MIN_ORIENTED_ROWS", "NARROW_COLUMNS", "Linear", "Tanh", "oriented_mm"]

NARROW_COLUMNS = 16
"""A product with more than one and fewer than this many result columns, and at least this many rows, is
computed transposed."""

FAST_TANH_MIN_ELEMENTS = 65_536
"""Float32 CPU inputs with at least this many elements take :class:`Tanh`'s sigmoid form."""

MIN_ORIENTED_ROWS = 1024
"""Inputs with fewer rows than this use ``torch.nn.functional.linear``: below it, the Python cost of a custom
autograd function exceeds what the orientation saves."""


def _narrow(rows: int, columns: int) -> bool:
    return 1 < columns < NARROW_COLUMNS <= rows


def oriented_mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 2-D ``a``, ``b``, computed as ``(b^T @ a^T)^T`` where the result is narrow; contiguous."""
    if _narrow(a.shape[0], b.shape[1]):
        return torch.mm(b.T, a.T).T.contiguous()
    return torch.mm(a, b)


class _OrientedLinear(torch.autograd.Function):
    """``x @ weight^T + bias`` for 2-D ``x``, with each of its three products oriented by :func:`oriented_mm`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if _narrow(x.shape[0], weight.shape[0]):
            out = torch.mm(weight, x.T) if bias is None else torch.addmm(bias[:, None], weight, x.T)
            return out.T.contiguous()
        return torch.mm(x, weight.T) if bias is None else torch.addmm(bias, x, weight.T)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        grad_x = oriented_mm(grad, weight) if needs_x else None
        grad_weight = oriented_mm(grad.T, x) if needs_weight else None
        grad_bias = grad.sum(0) if ctx.has_bias and needs_bias else None
        return grad_x, grad_weight, grad_bias


class Linear(nn.Linear):
    """:class:`torch.nn.Linear`, computed by :func:`oriented_mm`'s rule on the CPU (see the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // max(self.in_features, 1)
        if x.device.type != "cpu" or rows < MIN_ORIENTED_ROWS or not (
            _narrow(rows, self.out_features) or _narrow(rows, self.in_features)
            or _narrow(self.out_features, self.in_features)
        ):
            return functional.linear(x, self.weight, self.bias)
        if x.dim() == 2:
            return _OrientedLinear.apply(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        return _OrientedLinear.apply(flat, self.weight, self.bias).reshape(*x.shape[:-1], self.out_features)


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) = 2 sigmoid(2x) - 1, in place on one new tensor; the gradient is tanh's, 1 - tanh(x)^2."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = torch.mul(x, 2.0)
        y.sigmoid_().mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """:class:`torch.nn.Tanh`, computed as ``2 sigmoid(2x) - 1`` on large float32 CPU inputs (module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and x.device.type == "cpu" and x.numel() >= FAST_TANH_MIN_ELEMENTS:
            return _SigmoidTanh.apply(x)
        return torch.tanh(x)
