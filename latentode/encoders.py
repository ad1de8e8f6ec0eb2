"""Recognition networks: read a batch backwards in time and return q(z0) at each series' first observation."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .batch import IrregularBatch
from .dynamics import evolve
from .solve import SolverConfig
from .vector_fields import MLPVectorField, make_activation

__all__ = ["DEFAULT_ENCODER_SOLVER", "MIN_POSTERIOR_STD", "ODERNNEncoder"]

MIN_POSTERIOR_STD = 1e-4
"""Floor on the posterior standard deviation of z0, for numerical safety of the KL and reparametrisation."""

DEFAULT_ENCODER_SOLVER = SolverConfig(method="euler", step_size=None)
"""Between observations the encoder takes one Euler step per gap, as the reference implementation does
(gaps are small once time is scaled); pass e.g. ``SolverConfig("rk4")`` for more accuracy."""


class ODERNNEncoder(nn.Module):
    """ODE-RNN recognition network, run backwards from each series' last observation to its first.

    Between observations the hidden state evolves by a Neural ODE (``gap="ode"``), or, for the RNN-encoder
    baseline (``gap="input"``), it stays put and the time gap is an extra GRU input. At an observation a
    GRU cell reads the values (zero where unobserved) and the mask, so only observed features count; a
    time point with nothing observed, and padding, leave the state unchanged, and gaps run from one
    observation to the next, so such points change nothing at all.

    Each backwards step k moves *every* series observed at its k-th time point across *its own* gap back from
    its previous observation, in one batched solve
    (:func:`latentode.dynamics.evolve`), so the number of sequential solver calls equals the longest
    series in the batch, whatever the union of timestamps.

    Returns the mean and standard deviation of q(z0), each (batch, latent_dim), anchored at each series'
    first time point ``batch.first_times``.
    """

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        *,
        hidden_dim: int = 40,
        ode_hidden_dim: int = 64,
        n_layers: int = 1,
        activation: str = "tanh",
        gap: Literal["ode", "input"] = "ode",
        solver: SolverConfig = DEFAULT_ENCODER_SOLVER,
        time_dependent: bool = False,
    ) -> None:
        super().__init__()
        if gap not in ("ode", "input"):
            raise ValueError(f'Invalid gap "{gap}". Must be one of {{"ode", "input"}}.')
        self.gap, self.solver, self.hidden_dim = gap, solver, hidden_dim
        self.gru = nn.GRUCell(2 * n_features + int(gap == "input"), hidden_dim)
        self.field = (
            MLPVectorField(hidden_dim, hidden_dim=ode_hidden_dim, n_layers=n_layers, activation=activation,
                           time_dependent=time_dependent)
            if gap == "ode" else None
        )
        self.to_posterior = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), make_activation(activation), nn.Linear(hidden_dim, 2 * latent_dim)
        )

    def forward(self, batch: IrregularBatch) -> tuple[Tensor, Tensor]:
        times, values, mask = batch.times, batch.values, batch.mask
        n, width = times.shape
        observed = mask.any(-1) & batch.time_mask  # (batch, time)
        inputs = torch.cat([values * mask, mask.to(values.dtype)], dim=-1)
        start, delta = _backward_gaps(times, observed)
        if self.gap == "input":
            inputs = torch.cat([inputs, delta[:, :width, None]], dim=-1)
        # One host sync for the whole loop: which steps move any series at all.
        moves = (delta != 0).any(0).tolist()
        h = values.new_zeros(n, self.hidden_dim)
        for j in range(width - 1, -1, -1):
            if self.gap == "ode" and moves[j]:
                h = evolve(self.field, h, start[:, j], delta[:, j], self.solver)
            h = torch.where(observed[:, j, None], self.gru(inputs[:, j], h), h)
        if self.gap == "ode" and moves[width]:
            # Move from the first observation back to the anchor when the first time point observed nothing.
            h = evolve(self.field, h, start[:, width], delta[:, width], self.solver)
        mean, raw_std = self.to_posterior(h).chunk(2, dim=-1)
        return mean, nn.functional.softplus(raw_std) + MIN_POSTERIOR_STD


def _backward_gaps(times: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    """Where each backwards step starts and the (negative) gap it crosses, for all steps at once.

    Reading backwards, step ``j`` moves a series from its next observation after time point ``j`` (the one
    read last) to time point ``j``, if ``j`` is observed and a later point was; otherwise the gap is 0.
    Column ``width`` is the final move from the first observation back to the first time point (the
    anchor). Both results are (batch, width + 1); ``start`` is the last time point where nothing later
    was observed.
    """
    n, width = times.shape
    positions = torch.arange(width, device=times.device).expand(n, width)
    observed_at = torch.where(observed, positions, torch.full_like(positions, width))
    # Index of the nearest observation at or after each time point (``width`` when none): a reversed cummin.
    at_or_after = observed_at.flip(1).cummin(1).values.flip(1)
    after = torch.cat([at_or_after[:, 1:], at_or_after.new_full((n, 1), width)], dim=1)
    nearest = torch.cat([after, at_or_after[:, :1]], dim=1)  # (batch, width + 1)
    started = nearest < width
    start = torch.where(started, times.gather(1, nearest.clamp(max=width - 1)), times[:, -1:].expand(n, width + 1))
    target = torch.cat([times, times[:, :1]], dim=1)
    moving = started & torch.cat([observed, torch.ones_like(observed[:, :1])], dim=1)
    delta = torch.where(moving, target - start, torch.zeros_like(start))
    return start, delta
