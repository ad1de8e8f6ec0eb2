"""One ODE solve layer over torchdiffeq: solver configuration, validation and clear errors."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS as _TORCHDIFFEQ_SOLVERS

from .exceptions import SolverError

__all__ = ["ADAPTIVE_METHODS", "FIXED_STEP_METHODS", "SolverConfig", "odesolve", "solver_error", "solver_errors"]

FIXED_STEP_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "implicit_adams")
"""torchdiffeq methods that step on a fixed grid (need ``step_size``). torchdiffeq's ``explicit_adams`` is
left out: in torchdiffeq 0.2.5 it returns 165.5 for y' = -0.7 y, y(0) = 1 at t = 2 (exact: 0.247)."""

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
"""torchdiffeq methods with adaptive step size control (use ``rtol``/``atol``). ``fehlberg2`` is second
order: at the default rtol=1e-3 its error can be 10x larger than the tolerance."""

METHODS = FIXED_STEP_METHODS + ADAPTIVE_METHODS
assert set(METHODS) <= set(_TORCHDIFFEQ_SOLVERS)

DEFAULT_MAX_STEPS = 10_000
"""Cap on adaptive solver steps per solve; beyond it the solve fails with a SolverError."""


@dataclass(frozen=True)
class SolverConfig:
    """How an ODE is integrated.

    Parameters
    ----------
    method : str
        A torchdiffeq method name, one of :data:`FIXED_STEP_METHODS` or :data:`ADAPTIVE_METHODS`.
    rtol, atol : float
        Tolerances of adaptive methods.
    step_size : float or None
        Step of fixed-grid methods, in the units of the integration variable. ``None`` steps once between
        consecutive output times.
    adjoint : bool
        Backpropagate with the adjoint method (``odeint_adjoint``): memory constant in the number of steps,
        at the price of a second solve backwards.
    max_steps : int
        Cap on the number of adaptive steps.
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-4
    step_size: float | None = None
    adjoint: bool = False
    max_steps: int = DEFAULT_MAX_STEPS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f'Invalid method "{self.method}". Must be one of {set(METHODS)}.')
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError(f"rtol and atol must be positive, got rtol={self.rtol}, atol={self.atol}.")
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size must be positive or None, got {self.step_size}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}.")

    @property
    def is_fixed_step(self) -> bool:
        return self.method in FIXED_STEP_METHODS

    def options(self) -> dict:
        if self.is_fixed_step:
            return {} if self.step_size is None else {"step_size": self.step_size}
        return {"max_num_steps": self.max_steps}


_UNDERFLOW_ADVICE = (
    "The adaptive solver's step size underflowed: the dynamics became too stiff for method={method!r} "
    "with rtol={rtol}, atol={atol}. Loosen the tolerances, use a fixed-step method (e.g. method='rk4' with "
    "step_size), lower the learning rate, or check that times are scaled to O(1) (the estimators do this "
    "automatically)."
)


def odesolve(func: nn.Module, y0: Tensor, t: Tensor, config: SolverConfig | None = None) -> Tensor:
    """Integrate dy/dt = func(t, y) from ``y0`` at ``t[0]``; returns the states at ``t``, shape (len(t), *y0.shape).

    Raises
    ------
    SolverError
        On step size underflow or when ``config.max_steps`` is exceeded, with advice on what to change.
    """
    config = SolverConfig() if config is None else config
    solver = odeint_adjoint if config.adjoint else odeint
    kwargs = {}
    if config.adjoint:
        kwargs["adjoint_params"] = tuple(func.parameters())
    with solver_errors(config):
        return solver(func, y0, t, rtol=config.rtol, atol=config.atol, method=config.method,
                      options=config.options(), **kwargs)


@contextlib.contextmanager
def solver_errors(config: SolverConfig | None = None):
    """Inside: torchdiffeq's step-size underflow and step-cap assertions become :func:`solver_error`'s
    :class:`SolverError`; other errors pass unchanged. Around forward solves, and around a backward pass,
    where an adjoint solve can fail the same way."""
    try:
        yield
    except AssertionError as error:
        translated = solver_error(error, config)
        if translated is None:
            raise
        raise translated from error


def solver_error(error: BaseException, config: SolverConfig | None = None) -> SolverError | None:
    """The :class:`SolverError` with advice for torchdiffeq's step-size underflow or step-cap assertion, else None."""
    if not isinstance(error, AssertionError):
        return None
    message = str(error)
    method = config.method if config else "the latent ODE's solver"
    rtol = config.rtol if config else "rtol"
    atol = config.atol if config else "atol"
    if "underflow in dt" in message:
        return SolverError(_UNDERFLOW_ADVICE.format(method=method, rtol=rtol, atol=atol))
    if "max_num_steps exceeded" in message:
        cap = config.max_steps if config else "max_steps"
        return SolverError(
            f"The solver took more than max_steps={cap} steps ({method}, rtol={rtol}, atol={atol}). Raise max_steps, "
            "loosen the tolerances or use a fixed-step method."
        )
    return None
