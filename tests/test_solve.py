"""The ODE layer against problems with exact solutions: accuracy, convergence order, adjoint, errors."""

from __future__ import annotations

import math

import pytest
import scipy.linalg
import torch
from torch import nn

from latentode.exceptions import LatentODEError, SolverError
from latentode.solve import ADAPTIVE_METHODS, FIXED_STEP_METHODS, SolverConfig, odesolve, solver_error
from latentode.vector_fields import MLPVectorField, make_activation, mlp

DTYPES = (torch.float32, torch.float64)
METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "implicit_adams", "dopri5", "dopri8", "bosh3", "fehlberg2",
           "adaptive_heun")
"""Every method :class:`SolverConfig` accepts."""

FIXED_STEP = {"euler": 1e-3, "midpoint": 1e-2, "heun2": 1e-2, "heun3": 1e-2, "rk4": 1e-2, "implicit_adams": 1e-2}
"""Step size of each fixed-step method in the accuracy tests."""

ADAPTIVE_TOL = {
    torch.float64: {"dopri5": 1e-9, "dopri8": 1e-9, "bosh3": 1e-8, "fehlberg2": 1e-9, "adaptive_heun": 1e-5},
    torch.float32: {"dopri5": 1e-5, "dopri8": 1e-5, "bosh3": 1e-5, "fehlberg2": 1e-6, "adaptive_heun": 1e-5},
}
"""rtol of each adaptive method in the accuracy tests (atol is a tenth of it in float32, equal in float64)."""

MAX_ERROR = {
    torch.float64: {
        "euler": 2e-2,
        "midpoint": 1e-3,
        "heun2": 1e-3,
        "heun3": 1e-5,
        "rk4": 5e-8,
        "implicit_adams": 5e-8,
        "dopri5": 1e-7,
        "dopri8": 1e-5,
        "bosh3": 2e-4,
        "fehlberg2": 1e-5,
        "adaptive_heun": 1e-3,
    },
    torch.float32: {
        "euler": 2e-2,
        "midpoint": 1e-3,
        "heun2": 1e-3,
        "heun3": 1e-4,
        "rk4": 5e-5,
        "implicit_adams": 5e-5,
        "dopri5": 2e-4,
        "dopri8": 2e-3,
        "bosh3": 1e-2,
        "fehlberg2": 1e-3,
        "adaptive_heun": 1e-3,
    },
}
"""Largest allowed absolute error against the exact solution. torchdiffeq's bosh3 is far less accurate than
its tolerance suggests (about 3e-5 at rtol=atol=1e-8 on y' = Ay), hence its loose bound; so is its dopri8 in
float32 (8e-4 at rtol=1e-5)."""


def config_for(method: str, dtype: torch.dtype, **kwargs) -> SolverConfig:
    if method in FIXED_STEP:
        return SolverConfig(method, step_size=FIXED_STEP[method], **kwargs)
    rtol = ADAPTIVE_TOL[dtype][method]
    atol = rtol if dtype == torch.float64 else rtol / 10
    return SolverConfig(method, rtol=rtol, atol=atol, **kwargs)


class Linear(nn.Module):
    """dy/dt = y A^T for a fixed matrix A (rows of y are independent states)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y @ self.matrix.T


class Square(nn.Module):
    """dy/dt = y**2: from y(0) = 1 the solution 1 / (1 - t) blows up at t = 1."""

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y * y


def decay_problem(dtype):
    rate = 0.7
    y0 = torch.tensor([[1.0], [-2.0], [0.5]], dtype=dtype)
    t = torch.linspace(0, 2, 5, dtype=dtype)
    exact = y0.double()[None] * torch.exp(-rate * t.double())[:, None, None]
    return Linear(torch.tensor([[-rate]], dtype=dtype)), y0, t, exact


def oscillator_problem(dtype):
    omega = 2.0
    y0 = torch.tensor([[1.0, 0.0], [0.3, -1.0]], dtype=dtype)
    t = torch.linspace(0, 2, 5, dtype=dtype)
    tt = t.double()[:, None]
    x0, v0 = y0.double()[:, 0], y0.double()[:, 1]
    x = torch.cos(omega * tt) * x0 + torch.sin(omega * tt) / omega * v0
    v = -omega * torch.sin(omega * tt) * x0 + torch.cos(omega * tt) * v0
    matrix = torch.tensor([[0.0, 1.0], [-(omega**2), 0.0]], dtype=dtype)
    return Linear(matrix), y0, t, torch.stack([x, v], dim=-1)


def expm_problem(dtype):
    generator = torch.Generator().manual_seed(0)
    matrix = 0.5 * torch.randn(4, 4, dtype=torch.float64, generator=generator)
    y0 = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    exact = torch.stack([y0 @ torch.as_tensor(scipy.linalg.expm(matrix.numpy() * float(s))).T for s in t])
    return Linear(matrix.to(dtype)), y0.to(dtype), t.to(dtype), exact


PROBLEMS = {"decay": decay_problem, "oscillator": oscillator_problem, "expm": expm_problem}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_matches_exact_solution(problem, method, dtype):
    func, y0, t, exact = PROBLEMS[problem](dtype)
    out = odesolve(func, y0, t, config_for(method, dtype))
    assert out.shape == (len(t), *y0.shape)
    assert out.dtype == dtype
    error = float((out.double() - exact).abs().max())
    assert error < MAX_ERROR[dtype][method], f"{method} {dtype}: error {error:.3g}"


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_backwards_in_time(method):
    func, y0, _, _ = decay_problem(torch.float64)
    t = torch.tensor([1.0, 0.5, -0.5], dtype=torch.float64)
    exact = y0[None] * torch.exp(-0.7 * (t - 1.0))[:, None, None]
    out = odesolve(func, y0, t, config_for(method, torch.float64))
    assert torch.allclose(out, exact, atol=MAX_ERROR[torch.float64][method], rtol=0)


@pytest.mark.parametrize(
    ("method", "order", "step"), [("euler", 1, 0.02), ("midpoint", 2, 0.05), ("rk4", 4, 0.1)]
)
def test_convergence_order(method, order, step):
    """Halving the step divides the global error by about 2**order."""
    func, y0, _, _ = oscillator_problem(torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    _, _, _, exact = oscillator_problem(torch.float64)
    errors = []
    for h in (step, step / 2, step / 4):
        out = odesolve(func, y0, t, SolverConfig(method, step_size=h))[-1]
        errors.append(float((out - exact[-1]).abs().max()))
    observed = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    for value in observed:
        assert abs(value - order) < 0.25, f"{method}: observed orders {observed}, expected {order}"


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("dopri5", {"rtol": 1e-10, "atol": 1e-10}),
        ("rk4", {"step_size": 0.01}),
    ],
)
def test_adjoint_gradients_match_backprop(method, kwargs):
    torch.manual_seed(0)
    func = MLPVectorField(3, hidden_dim=8, n_layers=1, time_dependent=True).double()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    target = torch.randn(3, 4, 3, dtype=torch.float64)

    def gradients(adjoint: bool):
        func.zero_grad()
        start = y0.clone().requires_grad_(True)
        out = odesolve(func, start, t, SolverConfig(method, adjoint=adjoint, **kwargs))
        ((out - target) ** 2).sum().backward()
        return [start.grad.clone()] + [p.grad.clone() for p in func.parameters()]

    direct, adjoint = gradients(False), gradients(True)
    for a, b in zip(direct, adjoint, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), float((a - b).abs().max())


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="Invalid method") as info:
        SolverConfig("rk45")
    for name in FIXED_STEP_METHODS + ADAPTIVE_METHODS:
        assert name in str(info.value)
    assert set(FIXED_STEP_METHODS + ADAPTIVE_METHODS) == set(METHODS)  # every accepted method is tested above
    with pytest.raises(ValueError, match="Invalid method"):
        SolverConfig("explicit_adams")  # torchdiffeq's gives wrong answers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rtol": 0.0},
        {"atol": -1.0},
        {"method": "rk4", "step_size": 0.0},
        {"max_steps": 0},
    ],
)
def test_bad_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        SolverConfig(**kwargs)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_step_size_underflow_raises_solver_error_with_advice(method):
    y0 = torch.ones(1, dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    with pytest.raises(SolverError, match="underflow") as info:
        odesolve(Square(), y0, t, SolverConfig(method))
    message = str(info.value)
    assert method in message and "rtol" in message and "fixed-step" in message
    assert isinstance(info.value, LatentODEError) and isinstance(info.value, RuntimeError)


def test_max_steps_exceeded_raises_solver_error():
    func, y0, t, _ = oscillator_problem(torch.float64)
    with pytest.raises(SolverError, match="max_steps=5"):
        odesolve(func, y0, t, SolverConfig("dopri5", rtol=1e-10, atol=1e-10, max_steps=5))


def test_other_assertion_errors_propagate():
    class Broken(nn.Module):
        def forward(self, t, y):
            raise AssertionError("something else")

    with pytest.raises(AssertionError, match="something else"):
        odesolve(Broken(), torch.ones(2), torch.tensor([0.0, 1.0]), SolverConfig("euler"))


# -- vector fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "evals_per_step"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_nfe_counts_function_evaluations(method, evals_per_step):
    torch.manual_seed(0)
    field = MLPVectorField(3, hidden_dim=8)
    t = torch.linspace(0, 1, 6)
    odesolve(field, torch.randn(2, 3), t, SolverConfig(method))
    assert field.nfe == evals_per_step * (len(t) - 1)
    field.reset_nfe()
    assert field.nfe == 0
    odesolve(field, torch.randn(2, 3), t, SolverConfig("dopri5"))
    assert field.nfe > 0


def test_augment_appends_zeros():
    field = MLPVectorField(5, augment_dim=2)
    z = torch.randn(4, 3, 3)
    augmented = field.augment(z)
    assert augmented.shape == (4, 3, 5)
    assert torch.equal(augmented[..., :3], z)
    assert torch.equal(augmented[..., 3:], torch.zeros(4, 3, 2))
    assert field(torch.tensor(0.0), augmented).shape == (4, 3, 5)
    plain = MLPVectorField(3)
    assert plain.augment(z) is z


@pytest.mark.parametrize("augment_dim", [-1, 3, 4])
def test_augment_dim_out_of_range_raises(augment_dim):
    with pytest.raises(ValueError, match="augment_dim"):
        MLPVectorField(3, augment_dim=augment_dim)


def test_time_dependent_field_reads_time():
    torch.manual_seed(0)
    z = torch.randn(4, 3, dtype=torch.float64)
    field = MLPVectorField(3, hidden_dim=8, time_dependent=True).double()
    assert not torch.allclose(field(torch.tensor(0.0), z), field(torch.tensor(1.0), z))
    # Per-row times equal evaluating each row at its own scalar time.
    times = torch.tensor([0.0, 0.5, -1.0, 2.0], dtype=torch.float64)
    rows = torch.stack([field(times[i], z[i : i + 1])[0] for i in range(4)])
    assert torch.allclose(field(times, z), rows, atol=1e-12)
    # A python float works as well as a tensor.
    assert torch.allclose(field(0.5, z), field(torch.tensor(0.5, dtype=torch.float64), z))

    autonomous = MLPVectorField(3, hidden_dim=8).double()
    assert torch.equal(autonomous(torch.tensor(0.0), z), autonomous(torch.tensor(3.0), z))


def test_invalid_activation_raises():
    with pytest.raises(ValueError, match="Invalid activation"):
        MLPVectorField(3, activation="sigmoidish")
    with pytest.raises(ValueError, match="Invalid activation"):
        make_activation("nope")


def test_mlp_validates_sizes_and_depth():
    with pytest.raises(ValueError, match="n_layers"):
        mlp(3, 2, 8, -1, "tanh")
    with pytest.raises(ValueError, match="hidden_dim"):
        mlp(3, 2, 0, 1, "tanh")
    assert len(mlp(3, 2, 8, 0, "tanh")) == 1
    assert sum(isinstance(m, nn.Linear) for m in mlp(3, 2, 8, 3, "relu")) == 4


def test_exact_solutions_are_consistent():
    """Guard the test problems themselves: each closed form equals y0 expm(A t)^T."""
    for make in PROBLEMS.values():
        func, y0, t, exact = make(torch.float64)
        for k, s in enumerate(t.tolist()):
            expected = y0 @ torch.as_tensor(scipy.linalg.expm(func.matrix.numpy() * s)).T
            assert torch.allclose(exact[k], expected, atol=1e-12)


def test_solver_error_translates_only_torchdiffeq_assertions():
    assert "underflow" in str(solver_error(AssertionError("underflow in dt 1e-20")))
    assert "max_steps=7" in str(solver_error(AssertionError("max_num_steps exceeded (7)"), SolverConfig(max_steps=7)))
    assert solver_error(AssertionError("something else")) is None
    assert solver_error(ValueError("underflow in dt")) is None
