"""Batched solves on per-row gaps and per-row query times, against exact solutions and as properties."""

from __future__ import annotations

import math

import pytest
import scipy.linalg
import torch
from torch import nn

from latentode import dynamics
from latentode.dynamics import GRID_STEPS, RelativeTimeField, evolve, solve_at_times
from latentode.solve import SolverConfig, odesolve
from latentode.vector_fields import MLPVectorField

DTYPES = (torch.float32, torch.float64)


class Linear(nn.Module):
    """dz/dt = z A^T (autonomous); exact flow z expm(A t)^T."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ self.matrix.T

    def exact(self, z: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        matrix = self.matrix.double().numpy()
        flows = [torch.as_tensor(scipy.linalg.expm(matrix * float(dt))) for dt in (t1 - t0).reshape(-1)]
        flat = torch.stack(flows).reshape(*(t1 - t0).shape, *matrix.shape)
        return (flat @ z.double()[..., None]).squeeze(-1)


class TimeDecay(nn.Module):
    """dz/dt = -t z (time dependent, t a scalar or one time per row); exact z exp(-(t1^2 - t0^2) / 2)."""

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -torch.as_tensor(t, dtype=z.dtype)[..., None] * z

    def exact(self, z: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        return z.double() * torch.exp(-(t1.double() ** 2 - t0.double() ** 2) / 2)[..., None]


def make_field(name: str, dtype: torch.dtype) -> nn.Module:
    if name == "linear":
        matrix = torch.tensor([[-0.3, 1.2], [-1.0, 0.1]], dtype=dtype)
        return Linear(matrix)
    return TimeDecay()


CONFIGS = {
    "euler": (SolverConfig("euler", step_size=1e-3), {torch.float64: 5e-3, torch.float32: 5e-3}),
    "rk4": (SolverConfig("rk4", step_size=0.05), {torch.float64: 1e-6, torch.float32: 1e-5}),
    "dopri5": (SolverConfig("dopri5", rtol=1e-9, atol=1e-10), {torch.float64: 1e-7, torch.float32: 1e-4}),
}
"""Solver configurations of the accuracy tests and their allowed absolute error per dtype."""


def _dopri5_for(dtype: torch.dtype) -> SolverConfig:
    return (
        SolverConfig("dopri5", rtol=1e-9, atol=1e-10)
        if dtype == torch.float64
        else SolverConfig("dopri5", rtol=1e-6, atol=1e-7)
    )


def _config(name: str, dtype: torch.dtype) -> SolverConfig:
    return _dopri5_for(dtype) if name == "dopri5" else CONFIGS[name][0]


# -- evolve ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("field_name", ["linear", "decay"])
def test_evolve_per_row_gaps_match_exact(field_name, method, dtype):
    torch.manual_seed(0)
    field = make_field(field_name, dtype)
    z = torch.randn(5, 2, dtype=dtype)
    start = torch.tensor([0.0, 0.5, -0.4, 1.0, 0.3], dtype=dtype)
    delta = torch.tensor([0.7, -0.9, 0.0, 0.25, -0.3], dtype=dtype)
    out = evolve(field, z, start, delta, _config(method, dtype))
    assert out.shape == z.shape and out.dtype == dtype
    exact = field.exact(z, start, start + delta)
    error = float((out.double() - exact).abs().max())
    assert error < CONFIGS[method][1][dtype], error
    assert torch.equal(out[2], z[2]), "a zero gap must leave the state unchanged"


def test_evolve_all_zero_gaps_is_identity():
    torch.manual_seed(0)
    field = MLPVectorField(3, hidden_dim=8)
    z = torch.randn(4, 3)
    out = evolve(field, z, torch.rand(4), torch.zeros(4), SolverConfig("dopri5"))
    assert torch.equal(out, z)


# -- solve_at_times ----------------------------------------------------------------------------------------


ANCHOR = [0.0, 0.5, -0.3, 1.0]
QUERIES = [
    [0.7, -0.2, 0.0, 1.3, 0.05],
    [0.5, 0.1, 1.9, -0.4, 0.51],
    [-0.3, -1.0, 0.4, 0.0, -0.29],
    [1.0, 1.0, 2.0, 0.0, 0.333],
]
"""Per-row query times: unsorted, before and after each row's anchor, repeated, and at the anchor itself."""


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
@pytest.mark.parametrize("field_name", ["linear", "decay"])
def test_solve_at_times_matches_exact(field_name, method, dtype):
    torch.manual_seed(0)
    field = make_field(field_name, dtype)
    z0 = torch.randn(4, 2, dtype=dtype)
    anchor = torch.tensor(ANCHOR, dtype=dtype)
    queries = torch.tensor(QUERIES, dtype=dtype)
    config = _config(method, dtype) if method == "dopri5" else SolverConfig("rk4")
    out = solve_at_times(field, z0, anchor, queries, config)
    assert out.shape == (4, 5, 2) and out.dtype == dtype
    exact = field.exact(z0[:, None, :].expand(-1, 5, -1), anchor[:, None].expand(-1, 5), queries)
    error = float((out.double() - exact).abs().max())
    assert error < {torch.float64: 2e-6, torch.float32: 2e-4}[dtype], error
    # At the anchor the state is z0 itself.
    assert torch.allclose(out[0, 2], z0[0], atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_solve_at_times_fixed_step_uses_step_size():
    field = make_field("decay", torch.float64)
    z0 = torch.randn(4, 2, dtype=torch.float64)
    anchor = torch.tensor(ANCHOR, dtype=torch.float64)
    queries = torch.tensor(QUERIES, dtype=torch.float64)
    exact = field.exact(z0[:, None, :].expand(-1, 5, -1), anchor[:, None].expand(-1, 5), queries)
    coarse = solve_at_times(field, z0, anchor, queries, SolverConfig("euler"))
    fine = solve_at_times(field, z0, anchor, queries, SolverConfig("euler", step_size=1e-3))
    coarse_error = float((coarse - exact).abs().max())
    fine_error = float((fine - exact).abs().max())
    assert fine_error < 5e-3 and fine_error < coarse_error / 5


@pytest.mark.parametrize("method", sorted(GRID_STEPS))
def test_grid_steps_are_torchdiffeqs(method):
    # solve_at_times steps fixed-step methods itself; each step must be torchdiffeq's own, for a
    # time-dependent field, forwards and backwards, and its gradients too.
    torch.manual_seed(0)
    field = MLPVectorField(3, hidden_dim=16, n_layers=2, time_dependent=True).double()
    z0 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    anchor = torch.linspace(-0.5, 0.5, 5, dtype=torch.float64)
    queries = anchor[:, None] + torch.tensor([[-0.3, -0.1, 0.0, 0.25, 0.7]], dtype=torch.float64)
    ours = solve_at_times(field, z0, anchor, queries, SolverConfig(method, step_size=0.1), grid_step=0.1)
    grid = torch.arange(10, dtype=torch.float64) * 0.1
    expected = []
    for direction in (1.0, -1.0):
        relative = RelativeTimeField(field, anchor, torch.full((5,), direction, dtype=torch.float64))
        expected.append(odesolve(relative, z0, grid, SolverConfig(method)))
    # Read the torchdiffeq paths at the grid points the queries fall on (0.0, 0.1 and 0.7 from the anchor).
    forwards, backwards = expected
    torch.testing.assert_close(ours[:, 2], forwards[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[:, 1], backwards[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[:, 4], forwards[7], rtol=1e-12, atol=1e-12)
    (grad_ours,) = torch.autograd.grad(ours[:, 4].sum(), z0)
    (grad_expected,) = torch.autograd.grad(forwards[7].sum(), z0)
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("residual", [False, True])
def test_dense_and_gathered_read_off_agree(residual, monkeypatch):
    # Query times are read off the grid by one batched product while its weight matrix is small, else by
    # gathering each stencil point: the same numbers and gradients either way.
    torch.manual_seed(0)
    field = MLPVectorField(3, hidden_dim=16).double()
    z0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    anchor = torch.tensor(ANCHOR, dtype=torch.float64)
    queries = torch.tensor(QUERIES, dtype=torch.float64)
    config = SolverConfig("rk4", step_size=0.1)

    def solve():
        out = solve_at_times(field, z0, anchor, queries, config, grid_step=0.1, residual=residual)
        return out, torch.autograd.grad((out * torch.cos(out)).sum(), z0)[0]

    dense, dense_grad = solve()
    monkeypatch.setattr(dynamics, "DENSE_READOUT_MAX_ELEMENTS", 0)
    gathered, gathered_grad = solve()
    torch.testing.assert_close(dense, gathered, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dense_grad, gathered_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("residual", [False, True])
def test_solve_at_times_steps_each_direction_only_as_far_as_its_queries(residual):
    # Interpolation's shape: the later queries span a whole series after the anchor, the earlier one lies
    # a single grid step before it. The backward grid covers that step (and the cubic stencil's two extra
    # cells), not the forward span; the prediction is the same as solving backwards alone.
    field = MLPVectorField(2, hidden_dim=8).double()
    z0 = torch.randn(3, 2, dtype=torch.float64)
    anchor = torch.zeros(3, dtype=torch.float64)
    queries = torch.tensor([[-0.1, 0.5, 1.0]] * 3, dtype=torch.float64)
    config = SolverConfig("rk4", step_size=0.1)
    evaluations_per_step = 1 if residual else 4
    extra = 0 if residual else 2
    field.reset_nfe()
    both = solve_at_times(field, z0, anchor, queries, config, grid_step=0.1, residual=residual)
    assert field.nfe == evaluations_per_step * ((10 + extra) + (1 + extra))
    alone = solve_at_times(field, z0, anchor, queries[:, :1], config, grid_step=0.1, residual=residual)
    assert torch.equal(both[:, :1], alone)


def _random_field(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(1)
    return MLPVectorField(3, hidden_dim=16, n_layers=2, time_dependent=True).to(dtype)


INVARIANCE = {
    "euler": (SolverConfig("euler"), False, 1e-12),
    "rk4": (SolverConfig("rk4"), False, 1e-12),
    "rk4_step": (SolverConfig("rk4", step_size=0.05), False, 1e-12),
    "residual": (SolverConfig("euler"), True, 1e-12),
    "dopri5": (SolverConfig("dopri5", rtol=1e-7, atol=1e-8), False, 1e-5),
}
"""Configuration, residual flag and tolerance of the invariance tests (fixed grids agree to rounding)."""


@pytest.mark.parametrize("case", sorted(INVARIANCE))
def test_query_time_invariance(case):
    """States at [a, b, c] equal those at [a] and at [b, c] asked separately."""
    config, residual, atol = INVARIANCE[case]
    field = _random_field(torch.float64)
    z0 = torch.randn(3, 3, dtype=torch.float64)
    anchor = torch.tensor([0.0, 0.2, -0.5], dtype=torch.float64)
    queries = torch.tensor([[0.3, 1.5, -0.7], [0.25, 0.2, 1.3], [-0.6, 0.1, 0.9]], dtype=torch.float64)
    together = solve_at_times(field, z0, anchor, queries, config, residual=residual)
    first = solve_at_times(field, z0, anchor, queries[:, :1], config, residual=residual)
    rest = solve_at_times(field, z0, anchor, queries[:, 1:], config, residual=residual)
    assert torch.allclose(together, torch.cat([first, rest], dim=1), atol=atol, rtol=0)
    # Asking in another order permutes the answers.
    order = torch.tensor([2, 0, 1])
    shuffled = solve_at_times(field, z0, anchor, queries[:, order], config, residual=residual)
    assert torch.allclose(shuffled, together[:, order], atol=atol, rtol=0)


@pytest.mark.parametrize("case", sorted(INVARIANCE))
def test_rows_are_independent(case):
    """Solving a batch of rows equals solving each row on its own."""
    config, residual, atol = INVARIANCE[case]
    field = _random_field(torch.float64)
    z0 = torch.randn(4, 3, dtype=torch.float64)
    anchor = torch.tensor([0.0, 0.2, -0.5, 1.0], dtype=torch.float64)
    queries = torch.tensor([[0.3, 1.5], [0.25, 0.2], [-0.6, 0.1], [1.1, 1.2]], dtype=torch.float64)
    batched = solve_at_times(field, z0, anchor, queries, config, residual=residual)
    looped = torch.cat(
        [
            solve_at_times(
                field, z0[i : i + 1], anchor[i : i + 1], queries[i : i + 1], config, residual=residual
            )
            for i in range(4)
        ]
    )
    assert torch.allclose(batched, looped, atol=atol, rtol=0)


def test_residual_steps_on_grid_and_interpolates_linearly():
    matrix = torch.tensor([[-0.1, 0.05], [0.02, -0.03]], dtype=torch.float64)
    field = Linear(matrix)
    z0 = torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64)
    anchor = torch.tensor([0.0, 1.0], dtype=torch.float64)
    grid_step = 0.1
    queries = torch.tensor([[0.25, 0.3], [0.75, 1.0]], dtype=torch.float64)
    # A fixed-step step_size does not change the residual grid.
    out = solve_at_times(
        field, z0, anchor, queries, SolverConfig("rk4", step_size=0.5), grid_step=grid_step, residual=True
    )
    eye = torch.eye(2, dtype=torch.float64)

    def expected(row: int, query: float) -> torch.Tensor:
        rel = query - float(anchor[row])
        step = eye + (matrix if rel >= 0 else -matrix)
        n = min(math.floor(abs(rel) / grid_step), 2)  # the largest distance, 0.3, spans 3 cells
        u = abs(rel) / grid_step - n
        left = torch.linalg.matrix_power(step, n) @ z0[row]
        right = step @ left
        return left + u * (right - left)

    for row in range(2):
        for k in range(2):
            assert torch.allclose(out[row, k], expected(row, float(queries[row, k])), atol=1e-12)


def test_query_too_far_from_anchor_raises():
    field = make_field("decay", torch.float32)
    with pytest.raises(ValueError, match="grid points"):
        solve_at_times(field, torch.zeros(1, 2), torch.zeros(1), torch.tensor([[1e5]]), SolverConfig("rk4"))


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_solve_at_times_adjoint_matches_backprop(method):
    field = _random_field(torch.float64)
    z0 = torch.randn(3, 3, dtype=torch.float64)
    anchor = torch.tensor([0.0, 0.2, -0.5], dtype=torch.float64)
    queries = torch.tensor([[0.3, 0.9], [0.25, -0.2], [-0.6, 0.1]], dtype=torch.float64)
    extra = {"rtol": 1e-9, "atol": 1e-9} if method == "dopri5" else {}

    def gradients(adjoint: bool):
        field.zero_grad()
        start = z0.clone().requires_grad_(True)
        out = solve_at_times(
            field, start, anchor, queries, SolverConfig(method, adjoint=adjoint, **extra), grid_step=0.1
        )
        (out**2).sum().backward()
        return [start.grad] + [p.grad.clone() for p in field.parameters()]

    for a, b in zip(gradients(False), gradients(True), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


class Oscillator(nn.Module):
    """z' = omega (z2, -z1): a rotation at ``omega`` radians per unit time; exact (cos, -sin)(omega t)."""

    def __init__(self, omega: float) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.omega * torch.stack([z[..., 1], -z[..., 0]], dim=-1)


@pytest.mark.parametrize("omega", [5.0, 12.6, 25.0])
@pytest.mark.parametrize("grid_step", [0.02, 0.05])
def test_interpolation_between_grid_points_keeps_its_error_bound(omega, grid_step):
    # Queries everywhere between the grid points, forwards and backwards; the solver is exact to 1e-9, so
    # the error is the cubic interpolation's: at most h^4 max|z''''| / 24 = (omega h)^4 / 24 (reached in the
    # first cell, whose stencil is one-sided; 9/384 instead of 1/24 everywhere else).
    z0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    queries = torch.linspace(-1, 1, 997, dtype=torch.float64)[None]
    out = solve_at_times(Oscillator(omega), z0, torch.zeros(1, dtype=torch.float64), queries,
                         SolverConfig("dopri5", rtol=1e-10, atol=1e-12), grid_step=grid_step)
    exact = torch.stack([torch.cos(omega * queries), -torch.sin(omega * queries)], dim=-1)
    bound = (omega * grid_step) ** 4 / 24 + 1e-8
    error = float((out - exact).abs().max())
    assert error <= bound, (error, bound)
    assert error > bound / 100  # the bound is tight, so this test would notice a coarser scheme
