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
        h = values.new_zeros(n, self.hidden_dim)
        observed_any = mask.any(-1) & batch.time_mask  # (batch, time)
        inputs = torch.cat([values * mask, mask.to(values.dtype)], dim=-1)
        # Time of the observation read last (the next one forwards in time), and whether there was one: gaps
        # run between observations, so time points with nothing observed (and padding) do not count.
        last_time = times[:, -1]
        started = torch.zeros(n, dtype=torch.bool, device=times.device)
        for j in range(width - 1, -1, -1):
            observed = observed_any[:, j]
            delta = torch.where(observed & started, times[:, j] - last_time, torch.zeros_like(last_time))
            x = inputs[:, j]
            if self.gap == "ode":
                if bool((delta != 0).any()):
                    h = evolve(self.field, h, last_time, delta, self.solver)
            else:
                x = torch.cat([x, delta[:, None]], dim=-1)
            h = torch.where(observed[:, None], self.gru(x, h), h)
            last_time = torch.where(observed, times[:, j], last_time)
            started = started | observed
        if self.gap == "ode":
            # Move from the first observation back to the anchor when the first time point observed nothing.
            delta = torch.where(started, times[:, 0] - last_time, torch.zeros_like(last_time))
            if bool((delta != 0).any()):
                h = evolve(self.field, h, last_time, delta, self.solver)
        mean, raw_std = self.to_posterior(h).chunk(2, dim=-1)
        return mean, nn.functional.softplus(raw_std) + MIN_POSTERIOR_STD
