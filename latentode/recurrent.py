"""Deterministic recurrent forecasters: ODE-RNN, GRU with time-gap input, and GRU-D, as torch modules.

Each reads a series forwards in time and predicts the value at a query time ``q`` from its state after the
last context observation strictly before ``q``, moved across the remaining gap: by a Neural ODE (ODE-RNN),
by a GRU step that reads only the gap (GRU-dt), or by GRU-D's learned exponential decay. Queries at or
before the first observation start from the initial (zero) state at the first observation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .batch import IrregularBatch
from .dynamics import evolve
from .latent_model import LossTerms
from .solve import SolverConfig
from .vector_fields import MLPVectorField, mlp

__all__ = ["CELLS", "DEFAULT_GAP_SOLVER", "RecurrentForecaster"]

CELLS = ("ode", "gru_dt", "gru_d")
"""Recurrent cells: ODE-RNN, GRU with the time gap as input, GRU-D with decay (Che et al. 2018)."""

DEFAULT_GAP_SOLVER = SolverConfig(method="euler", step_size=None)
"""Default solver of the ODE-RNN's gaps: one Euler step per gap, as the reference implementation."""


class RecurrentForecaster(nn.Module):
    """A recurrent model of irregular series with a per-cell rule for moving across time gaps.

    Parameters
    ----------
    n_features : int
    cell : {"ode", "gru_dt", "gru_d"}
    hidden_dim : int
        GRU state size.
    ode_hidden_dim, n_layers, activation :
        The ODE-RNN's vector field (``cell="ode"`` only).
    solver : SolverConfig
        How the ODE-RNN crosses a gap (``step_size`` in units of one gap).
    """

    def __init__(
        self,
        n_features: int,
        *,
        cell: Literal["ode", "gru_dt", "gru_d"] = "ode",
        hidden_dim: int = 40,
        ode_hidden_dim: int = 64,
        n_layers: int = 1,
        activation: str = "tanh",
        solver: SolverConfig = DEFAULT_GAP_SOLVER,
        time_dependent: bool = False,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f'Invalid cell "{cell}". Must be one of {set(CELLS)}.')
        self.cell, self.hidden_dim, self.solver, self.n_features = cell, hidden_dim, solver, n_features
        extra = {"ode": 0, "gru_dt": 1, "gru_d": n_features}[cell]
        self.gru = nn.GRUCell(2 * n_features + extra, hidden_dim)
        self.field = (
            MLPVectorField(hidden_dim, hidden_dim=ode_hidden_dim, n_layers=n_layers, activation=activation,
                           time_dependent=time_dependent)
            if cell == "ode" else None
        )
        if cell == "gru_d":
            # Input decay is per feature (diagonal), hidden decay reads all features' gaps (Che et al. 2018).
            self.input_decay_weight = nn.Parameter(torch.zeros(n_features))
            self.input_decay_bias = nn.Parameter(torch.zeros(n_features))
            self.hidden_decay = nn.Linear(n_features, hidden_dim)
            nn.init.zeros_(self.hidden_decay.bias)
        self.decoder = mlp(hidden_dim, n_features, hidden_dim, 1, activation)

    @property
    def nfe(self) -> int:
        return 0 if self.field is None else self.field.nfe

    def reset_nfe(self) -> None:
        if self.field is not None:
            self.field.reset_nfe()

    def _hidden_decay(self, gaps: Tensor) -> Tensor:
        return torch.exp(-torch.relu(self.hidden_decay(gaps)))

    def filter(self, context: IrregularBatch) -> tuple[Tensor, Tensor, Tensor]:
        """States after each context time point, with the initial state first.

        The state changes only at time points where something was observed; between observations the ODE-RNN
        crosses the whole gap from the previous observation in one solve.

        Returns ``hidden`` (batch, time + 1, hidden_dim), and for GRU-D the last observed values and the
        per-feature time since they were observed, each (batch, time + 1, features) (zeros otherwise).
        """
        times, values, mask = context.times, context.values, context.mask
        n, width = times.shape
        h = values.new_zeros(n, self.hidden_dim)
        last_value = values.new_zeros(n, self.n_features)
        since = values.new_zeros(n, self.n_features)
        last_update = times[:, 0]
        update = mask.any(-1) & context.time_mask
        maskf = mask.to(values.dtype)
        hiddens, last_values, sinces = [h], [last_value], [since]
        for j in range(width):
            x, m = values[:, j], maskf[:, j]
            if self.cell == "ode":
                # Cross the gap from the last observation (time points with nothing observed do not count).
                delta = torch.where(update[:, j], times[:, j] - last_update, torch.zeros_like(last_update))
                if bool((delta != 0).any()):
                    h = evolve(self.field, h, last_update, delta, self.solver)
                new_h = self.gru(torch.cat([x * m, m], -1), h)
            elif self.cell == "gru_dt":
                new_h = self.gru(torch.cat([x * m, m, (times[:, j] - last_update)[:, None]], -1), h)
            else:
                gap = since + (times[:, j] - last_update)[:, None]
                gamma_x = torch.exp(-torch.relu(self.input_decay_weight * gap + self.input_decay_bias))
                imputed = m * x + (1 - m) * gamma_x * last_value
                new_h = self.gru(torch.cat([imputed, m, gap], -1), self._hidden_decay(gap) * h)
                observed = update[:, j, None]
                since = torch.where(observed, torch.where(m > 0, torch.zeros_like(gap), gap), since)
                last_value = torch.where(observed & (m > 0), x, last_value)
            h = torch.where(update[:, j, None], new_h, h)
            last_update = torch.where(update[:, j], times[:, j], last_update)
            hiddens.append(h)
            last_values.append(last_value)
            sinces.append(since)
        return torch.stack(hiddens, 1), torch.stack(last_values, 1), torch.stack(sinces, 1)

    def predict(self, context: IrregularBatch, queries: Tensor) -> Tensor:
        """Predicted means (batch, queries, features) at per-series ``queries`` (batch, queries)."""
        hidden, _, since = self.filter(context)
        times = context.times.contiguous()
        # Number of context time points strictly before each query, clamped to the valid ones.
        before = torch.searchsorted(times, queries.contiguous(), right=False)
        before = torch.minimum(before, context.lengths[:, None])
        # Time of the last observation among the first k time points (the first time point when none), k = 0..T:
        # the time at which hidden[:, k] holds.
        update = context.mask.any(-1) & context.time_mask
        seen = torch.where(update, times, torch.full_like(times, -torch.inf)).cummax(dim=1).values
        state_time = torch.cat([times[:, :1], torch.maximum(seen, times[:, :1])], dim=1)
        base_time = state_time.gather(1, before)
        n, m = queries.shape
        rows = torch.arange(n, device=queries.device)[:, None].expand(n, m)
        h = hidden[rows, before]  # (batch, queries, hidden)
        delta = (queries - base_time).reshape(-1)
        flat = h.reshape(n * m, -1)
        if self.cell == "ode":
            moved = evolve(self.field, flat, base_time.reshape(-1), delta, self.solver)
        elif self.cell == "gru_dt":
            gap_input = torch.cat([flat.new_zeros(n * m, 2 * self.n_features), delta[:, None]], -1)
            moved = self.gru(gap_input, flat)
        else:
            gap = since[rows, before].reshape(n * m, -1) + delta[:, None]
            moved = self._hidden_decay(gap) * flat
        return self.decoder(moved).reshape(n, m, -1)

    def forward(self, context: IrregularBatch, target: IrregularBatch, **kwargs) -> LossTerms:
        """The training objective, :meth:`loss` (so that DistributedDataParallel can wrap the module)."""
        return self.loss(context, target, **kwargs)

    def loss(self, context: IrregularBatch, target: IrregularBatch, **_: object) -> LossTerms:
        """Mean squared error over the observed target values."""
        predicted = self.predict(context, target.times)
        squared = torch.where(target.mask, (predicted - target.values) ** 2, torch.zeros((), dtype=predicted.dtype))
        n_observed = int(target.mask.sum())
        mse = squared.sum() / max(n_observed, 1)
        zero = mse.new_zeros(())
        return LossTerms(loss=mse, log_likelihood=-mse.detach(), kl=zero, mse=mse.detach(), n_observed=n_observed)
