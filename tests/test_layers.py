"""The CPU-friendly Linear and Tanh: the same values and gradients as torch's, on the fast path and off it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentode.layers import FAST_TANH_MIN_ELEMENTS, MIN_ORIENTED_ROWS, Linear, Tanh, oriented_mm


def _values_and_gradients(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    layer.zero_grad()
    out = layer(x)
    out.backward(grad)
    return [out.detach(), x.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize(("rows", "in_features", "out_features"), [
    (MIN_ORIENTED_ROWS, 10, 100),   # narrow input: input and weight gradients oriented
    (3 * MIN_ORIENTED_ROWS, 100, 10),  # narrow output: forward product oriented
    (MIN_ORIENTED_ROWS, 100, 1),    # a single column: never oriented
    (MIN_ORIENTED_ROWS - 1, 10, 10),  # too few rows: torch.nn.functional.linear
    (50, 41, 64),
])
def test_linear_matches_torch_linear(rows, in_features, out_features):
    torch.manual_seed(0)
    ours = Linear(in_features, out_features).double()
    reference = nn.Linear(in_features, out_features).double()
    reference.load_state_dict(ours.state_dict())  # the same parameters under the same names
    x = torch.randn(rows // 2, 2, in_features, dtype=torch.float64)  # leading axes are flattened and restored
    grad = torch.randn(rows // 2, 2, out_features, dtype=torch.float64)
    exact = _values_and_gradients(reference, x, grad)
    for a, b in zip(_values_and_gradients(ours, x, grad), exact, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # In float32 both round; ours is no less accurate than torch's against the float64 values.
    ours32, reference32 = ours.float(), reference.float()
    for a, b, e in zip(_values_and_gradients(ours32, x.float(), grad.float()),
                       _values_and_gradients(reference32, x.float(), grad.float()), exact, strict=True):
        error, reference_error = float((a.double() - e).abs().max()), float((b.double() - e).abs().max())
        assert error <= 2 * reference_error + 1e-6, (error, reference_error)


def test_linear_takes_the_oriented_path_only_where_it_pays():
    layer = Linear(10, 100)
    big = layer(torch.randn(MIN_ORIENTED_ROWS, 10, requires_grad=True))
    small = layer(torch.randn(MIN_ORIENTED_ROWS - 1, 10, requires_grad=True))
    wide = Linear(100, 100)(torch.randn(MIN_ORIENTED_ROWS, 100, requires_grad=True))
    assert "OrientedLinear" in type(big.grad_fn).__name__
    assert "OrientedLinear" not in type(small.grad_fn).__name__
    assert "OrientedLinear" not in type(wide.grad_fn).__name__  # no narrow product to avoid


def test_linear_without_bias_and_without_input_gradient():
    torch.manual_seed(0)
    ours, reference = Linear(10, 20, bias=False), nn.Linear(10, 20, bias=False)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(MIN_ORIENTED_ROWS, 10)
    ours(x).sum().backward()
    reference(x).sum().backward()
    assert torch.allclose(ours.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("m", "k", "n"), [(2000, 100, 10), (100, 2000, 10), (10, 2000, 100), (2000, 10, 1)])
def test_oriented_mm_is_the_product(m, k, n):
    a, b = torch.randn(m, k, dtype=torch.float64), torch.randn(k, n, dtype=torch.float64)
    out = oriented_mm(a, b)
    assert out.is_contiguous()
    assert torch.allclose(out, a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [FAST_TANH_MIN_ELEMENTS, 10])
def test_tanh_matches_torch_tanh_in_value_and_gradient(n):
    torch.manual_seed(0)
    x = torch.cat([torch.randn(n - 4) * 4, torch.tensor([0.0, 1e-8, 30.0, -30.0])]).requires_grad_(True)
    grad = torch.randn(n)
    ours = Tanh()(x)
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    reference = torch.tanh(x)
    (reference_grad,) = torch.autograd.grad(reference, x, grad)
    assert torch.allclose(ours, reference, rtol=0, atol=2.5e-7)
    assert torch.allclose(ours_grad, reference_grad, rtol=1e-5, atol=5e-6)
    assert float(ours.detach().abs().max()) <= 1.0
    fast = "SigmoidTanh" in type(ours.grad_fn).__name__
    assert fast == (n >= FAST_TANH_MIN_ELEMENTS)


def test_tanh_is_exact_in_float64():
    x = torch.randn(FAST_TANH_MIN_ELEMENTS, dtype=torch.float64)
    assert torch.equal(Tanh()(x), torch.tanh(x))
