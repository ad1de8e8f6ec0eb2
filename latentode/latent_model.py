"""The Latent ODE (a VAE over latent initial states) and its latent-variable baselines, as torch modules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .batch import IrregularBatch
from .dynamics import DEFAULT_GRID_STEP, grid_cells, solve_at_times
from .encoders import DEFAULT_ENCODER_SOLVER, ODERNNEncoder
from .likelihood import DEFAULT_NOISE_STD, GaussianLikelihood, gaussian_kl
from .solve import SolverConfig
from .vector_fields import MLPVectorField, mlp

__all__ = ["DYNAMICS", "ENCODERS", "MIN_INTENSITY", "LatentODEModel", "LossTerms"]

ENCODERS = ("ode_rnn", "rnn")
"""Recognition networks: ODE-RNN (the paper's), or a GRU that reads time gaps as inputs."""

DYNAMICS = ("ode", "residual", "gru")
"""Latent dynamics: a Neural ODE; discrete residual steps z_{n+1} = z_n + f(z_n); a GRU over time gaps (RNN-VAE)."""

DEFAULT_LATENT_SOLVER = SolverConfig(method="dopri5", rtol=1e-3, atol=1e-4)
"""The latent ODE's default solver: adaptive Dormand-Prince with the reference implementation's tolerances."""

MIN_INTENSITY = 1e-6
"""Floor on the Poisson process intensity, so its log stays finite."""


@dataclass(frozen=True)
class LossTerms:
    """One evaluation of the training objective on a batch (all tensors are scalars).

    ``loss`` is the negative ELBO (or IWAE bound) per observed value; ``log_likelihood`` and ``kl`` are per
    observed value and per series respectively; ``mse`` is over observed target values in standardised units.
    """

    loss: Tensor
    log_likelihood: Tensor
    kl: Tensor
    mse: Tensor
    n_observed: int


class _PoissonField(nn.Module):
    """Augments latent dynamics with the integrated intensity: d[z, Lambda]/dt = [f(z), lambda(z)].

    ``rate_step`` multiplies the intensity: 1 for an ODE; the grid step for discrete residual dynamics, whose
    update ``y + field(y)`` folds the step into ``f`` but must still add ``lambda * step`` to the integral.
    """

    def __init__(self, func: nn.Module, intensity: nn.Module, state_dim: int, rate_step: float = 1.0) -> None:
        super().__init__()
        self.func, self.intensity, self.state_dim, self.rate_step = func, intensity, state_dim, rate_step

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        z = y[..., : self.state_dim]
        rate = nn.functional.softplus(self.intensity(z)) + MIN_INTENSITY
        return torch.cat([self.func(t, z), self.rate_step * rate], dim=-1)


class LatentODEModel(nn.Module):
    """Encoder -> q(z0) -> samples of z0 -> latent dynamics -> decoder -> Gaussian observations.

    z0 is anchored at each series' **first observed time** (``context.first_times``), never at a requested
    prediction time, so the prediction at a time does not depend on the other times asked for.

    Parameters
    ----------
    n_features : int
    latent_dim : int
    encoder : {"ode_rnn", "rnn"}
    dynamics : {"ode", "residual", "gru"}
        ``"gru"`` with ``encoder="rnn"`` is the RNN-VAE baseline (its GRU steps on the shared grid of
        ``grid_step``, reading the signed step as input).
    hidden_dim : int
        Width of the latent vector field and decoder.
    encoder_dim : int
        GRU hidden size of the encoder.
    n_layers : int
        Hidden layers of the vector fields.
    activation : str
    augment_dim : int
        Zero-initialised extra latent dimensions (Augmented Neural ODE).
    time_dependent : bool
        Vector fields take time as an input.
    solver, encoder_solver : SolverConfig
        How the latent path and the encoder's gaps are integrated.
    grid_step : float
        Shared output grid of the latent solve, in scaled time (see :mod:`latentode.dynamics`).
    noise_std : float or "learned"
    poisson : bool
        Also model observation times as a Poisson process with a latent, per-feature intensity.
    """

    def __init__(
        self,
        n_features: int,
        latent_dim: int = 10,
        *,
        encoder: Literal["ode_rnn", "rnn"] = "ode_rnn",
        dynamics: Literal["ode", "residual", "gru"] = "ode",
        hidden_dim: int = 64,
        encoder_dim: int = 40,
        n_layers: int = 2,
        activation: str = "tanh",
        augment_dim: int = 0,
        time_dependent: bool = False,
        solver: SolverConfig = DEFAULT_LATENT_SOLVER,
        encoder_solver: SolverConfig = DEFAULT_ENCODER_SOLVER,
        grid_step: float = DEFAULT_GRID_STEP,
        noise_std: float | str = DEFAULT_NOISE_STD,
        poisson: bool = False,
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f'Invalid encoder "{encoder}". Must be one of {set(ENCODERS)}.')
        if dynamics not in DYNAMICS:
            raise ValueError(f'Invalid dynamics "{dynamics}". Must be one of {set(DYNAMICS)}.')
        if poisson and dynamics == "gru":
            raise ValueError('poisson=True needs continuous latent dynamics; use dynamics="ode" or "residual".')
        self.latent_dim, self.dynamics, self.solver, self.grid_step = latent_dim, dynamics, solver, grid_step
        self.poisson, self.n_features = poisson, n_features
        self.encoder = ODERNNEncoder(
            n_features, latent_dim, hidden_dim=encoder_dim, ode_hidden_dim=hidden_dim, n_layers=1,
            activation=activation, gap="ode" if encoder == "ode_rnn" else "input", solver=encoder_solver,
            time_dependent=time_dependent,
        )
        self.state_dim = latent_dim + augment_dim
        if dynamics == "gru":
            self.field = None
            self.gru = nn.GRUCell(1, self.state_dim)
        else:
            self.field = MLPVectorField(
                self.state_dim, hidden_dim=hidden_dim, n_layers=n_layers, activation=activation,
                time_dependent=time_dependent, augment_dim=augment_dim,
            )
        self.intensity = nn.Linear(self.state_dim, n_features) if poisson else None
        self.decoder = mlp(self.state_dim, n_features, hidden_dim, 1, activation)
        self.likelihood = GaussianLikelihood(n_features, noise_std)
        # Observation noise for predictive draws, set by calibration after training; NaN = the likelihood's.
        self.register_buffer("calibrated_noise_std", torch.full((n_features,), float("nan")))

    # -- pieces -----------------------------------------------------------------------------------------
    @property
    def nfe(self) -> int:
        """Function evaluations of the latent and encoder vector fields since the last reset."""
        return sum(f.nfe for f in (self.field, self.encoder.field) if f is not None)

    def reset_nfe(self) -> None:
        for f in (self.field, self.encoder.field):
            if f is not None:
                f.reset_nfe()

    def encode(self, context: IrregularBatch) -> tuple[Tensor, Tensor]:
        """Mean and std of q(z0), each (batch, latent_dim)."""
        return self.encoder(context)

    def latent_states(self, z0: Tensor, anchor: Tensor, queries: Tensor) -> Tensor:
        """States at per-series query times.

        ``z0`` (samples, batch, latent_dim); ``anchor`` (batch,); ``queries`` (batch, queries).
        Returns (samples, batch, queries, state) where state is the (augmented) latent state, followed by
        the integrated intensities when ``poisson``.
        """
        samples, batch, _ = z0.shape
        flat = z0.reshape(samples * batch, -1)
        anchors, flat_queries = anchor.repeat(samples), queries.repeat(samples, 1)
        if self.dynamics == "gru":
            states = self._gru_states(flat, anchors, flat_queries)
        else:
            y0 = self.field.augment(flat)
            func = self.field
            if self.poisson:
                rate_step = self.grid_step if self.dynamics == "residual" else 1.0
                func = _PoissonField(self.field, self.intensity, self.state_dim, rate_step)
                y0 = torch.cat([y0, y0.new_zeros(y0.shape[0], self.n_features)], dim=-1)
            states = solve_at_times(
                func, y0, anchors, flat_queries, self.solver, grid_step=self.grid_step,
                residual=self.dynamics == "residual",
            )
        return states.reshape(samples, batch, queries.shape[1], -1)

    def _gru_states(self, h0: Tensor, anchor: Tensor, queries: Tensor) -> Tensor:
        """RNN-VAE decoder: a GRU stepping on the shared grid ``anchor +- n * grid_step`` of each row.

        Each step reads its signed length (``+grid_step`` moving forwards in time, ``-grid_step`` backwards) and
        query times are read off the grid by linear interpolation, so, as for the ODE dynamics, a prediction
        does not depend on which other times were asked for. ``h0`` (rows, latent_dim); ``anchor`` (rows,);
        ``queries`` (rows, queries). Returns (rows, queries, state).
        """
        h = torch.nn.functional.pad(h0, (0, self.state_dim - h0.shape[-1]))
        rows = h.shape[0]
        rel = queries - anchor[:, None]
        dist = rel.abs()
        n_cells = grid_cells(dist, self.grid_step, what="GRU steps")
        step = h.new_full((rows, 1), self.grid_step)
        backwards = bool((rel < 0).any())
        if backwards:
            h, step = torch.cat([h, h]), torch.cat([step, -step])
        states = [h]
        for _ in range(n_cells):
            states.append(self.gru(step, states[-1]))
        path = torch.stack(states)  # (grid, rows', state)
        row = torch.arange(rows, device=h.device)[:, None].expand_as(rel)
        if backwards:
            row = torch.where(rel < 0, row + rows, row)
        cell = torch.clamp((dist / self.grid_step).floor().long(), max=n_cells - 1)
        u = ((dist - cell.to(dist.dtype) * self.grid_step) / self.grid_step)[..., None]
        left, right = path[cell, row], path[cell + 1, row]
        return left + u * (right - left)

    def predictive_noise_std(self) -> Tensor:
        """Per-feature observation noise std of predictive draws: the calibrated one where set, else the model's."""
        own = self.likelihood.std().detach()
        return torch.where(torch.isnan(self.calibrated_noise_std), own, self.calibrated_noise_std)

    @torch.no_grad()
    def calibrate_noise(self, batches, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Set :meth:`predictive_noise_std` from held-out points, so predictive variance matches squared error.

        ``batches`` yields (context, target) pairs of held-out points. Per feature, with the squared error of
        the mean over ``n_samples`` posterior draws and the variance across those draws, both averaged over
        observed target entries, the noise variance is ``error - spread``, never below the model's own noise
        variance (a feature with no target entries keeps the model's). Returns the new std.
        """
        own = self.likelihood.std().detach()
        error = torch.zeros_like(own)
        spread = torch.zeros_like(own)
        count = torch.zeros_like(own)
        for context, target in batches:
            means = self.predict_means(context, target.times, n_samples=n_samples, generator=generator)
            mask = target.mask.to(means.dtype)
            centre = means.mean(0)
            error += (((centre - target.values) ** 2) * mask).sum((0, 1))
            spread += (means.var(0, unbiased=False) * mask).sum((0, 1))
            count += mask.sum((0, 1))
        residual = (error - spread) / count.clamp(min=1)
        calibrated = torch.where(count > 0, torch.maximum(own**2, residual).sqrt(), own)
        self.calibrated_noise_std.copy_(calibrated)
        return calibrated

    def decode(self, states: Tensor) -> Tensor:
        """Observation means (..., features) from latent states (..., state)."""
        return self.decoder(states[..., : self.state_dim])

    def sample_z0(self, mean: Tensor, std: Tensor, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Reparametrised samples (samples, batch, latent_dim)."""
        eps = torch.randn((n_samples, *mean.shape), dtype=mean.dtype, device=mean.device, generator=generator)
        return mean + std * eps

    def predict_means(
        self, context: IrregularBatch, queries: Tensor, *, n_samples: int = 1, use_mean: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Decoded means (samples, batch, queries, features); ``use_mean`` decodes the posterior mean of z0."""
        mean, std = self.encode(context)
        z0 = mean[None] if use_mean else self.sample_z0(mean, std, n_samples, generator)
        return self.decode(self.latent_states(z0, context.first_times, queries))

    # -- objective --------------------------------------------------------------------------------------
    def forward(self, context: IrregularBatch, target: IrregularBatch, **kwargs) -> LossTerms:
        """The training objective, :meth:`loss` (so that DistributedDataParallel can wrap the module)."""
        return self.loss(context, target, **kwargs)

    def loss(
        self, context: IrregularBatch, target: IrregularBatch, *, n_samples: int = 3, kl_weight: float = 1.0,
        iwae: bool = False, generator: torch.Generator | None = None,
    ) -> LossTerms:
        """Negative ELBO (or IWAE bound over ``n_samples``) of ``target`` given ``context``, per observed value.

        ``context`` and ``target`` hold the same series in the same order. The likelihood is summed over the
        observed target entries only, vectorised over samples, series, times and features.
        """
        mean, std = self.encode(context)
        z0 = self.sample_z0(mean, std, n_samples, generator)
        states = self.latent_states(z0, context.first_times, target.times)
        predicted = self.decode(states)
        log_lik = self.likelihood.log_prob(target.values, predicted, target.mask)  # (samples, batch)
        if self.poisson:
            log_lik = log_lik + self._poisson_log_lik(states, target)
        kl = gaussian_kl(mean, std)  # (batch,)
        n_observed = int(target.mask.sum())
        if iwae:
            prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(std))
            posterior = torch.distributions.Normal(mean, std)
            log_ratio = (prior.log_prob(z0) - posterior.log_prob(z0)).sum(-1)  # (samples, batch)
            bound = torch.logsumexp(log_lik + kl_weight * log_ratio, dim=0) - math.log(n_samples)
        else:
            bound = log_lik.mean(0) - kl_weight * kl
        squared = torch.where(target.mask, (predicted.mean(0) - target.values) ** 2, torch.zeros((), dtype=predicted.dtype))
        denominator = max(n_observed, 1)
        return LossTerms(
            loss=-bound.sum() / denominator,
            log_likelihood=log_lik.mean(0).sum().detach() / denominator,
            kl=kl.mean().detach(),
            mse=squared.sum().detach() / denominator,
            n_observed=n_observed,
        )

    def _poisson_log_lik(self, states: Tensor, target: IrregularBatch) -> Tensor:
        """log-likelihood of the observation times: sum of log intensity at observations minus its integral."""
        z, integral = states[..., : self.state_dim], states[..., self.state_dim :]
        log_rate = torch.log(nn.functional.softplus(self.intensity(z)) + MIN_INTENSITY)
        at_events = torch.where(target.mask, log_rate, torch.zeros((), dtype=log_rate.dtype)).sum(dim=(-1, -2))
        last = (target.lengths - 1)[None, :, None, None].expand(integral.shape[0], -1, 1, integral.shape[-1])
        window = (integral.gather(2, last) - integral[:, :, :1]).squeeze(2).sum(-1)
        return at_events - window
