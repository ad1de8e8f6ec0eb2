"""Observation models and loss terms: masked Gaussian likelihood, KL to the prior, Poisson process."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_NOISE_STD", "MIN_NOISE_STD", "GaussianLikelihood", "gaussian_kl"]

MIN_NOISE_STD = 1e-3
"""Floor on a learned observation noise standard deviation (in standardised feature units)."""

DEFAULT_NOISE_STD = 0.1
"""Default fixed observation noise standard deviation, in standardised feature units."""

_LOG_2PI = math.log(2 * math.pi)


class GaussianLikelihood(nn.Module):
    """Independent Gaussian noise per feature around the decoder's mean.

    ``noise_std`` a float: fixed standard deviation for every feature, as in the Latent ODE paper.
    ``noise_std="learned"``: one learned standard deviation per feature (floored at :data:`MIN_NOISE_STD`),
    initialised at :data:`DEFAULT_NOISE_STD`.
    """

    def __init__(self, n_features: int, noise_std: float | str = DEFAULT_NOISE_STD) -> None:
        super().__init__()
        if noise_std == "learned":
            self.raw_std = nn.Parameter(torch.full((n_features,), math.log(math.expm1(DEFAULT_NOISE_STD - MIN_NOISE_STD))))
            self.learned = True
        elif isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool) and noise_std > 0:
            self.register_buffer("fixed_std", torch.full((n_features,), float(noise_std)))
            self.learned = False
        else:
            raise ValueError(f'noise_std must be a positive number or "learned", got {noise_std!r}.')

    def std(self) -> Tensor:
        """Tensor (features,): the noise standard deviation."""
        if self.learned:
            return nn.functional.softplus(self.raw_std) + MIN_NOISE_STD
        return self.fixed_std

    def log_prob(self, values: Tensor, mean: Tensor, mask: Tensor) -> Tensor:
        """Sum of log N(values | mean, std) over observed entries.

        ``values``, ``mask`` (batch, time, features); ``mean`` (..., batch, time, features) with any leading
        sample axes. Returns (..., batch). Unobserved entries of ``values`` must be finite (they do not count,
        but a NaN there would reach the gradient); an :class:`~latentode.batch.IrregularBatch` holds zeros there.
        """
        std = self.std()
        z = (values - mean) / std
        log_density = -0.5 * (z * z + _LOG_2PI) - torch.log(std)
        return torch.where(mask, log_density, torch.zeros((), dtype=mean.dtype)).sum(dim=(-1, -2))


def gaussian_kl(mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, std^2) || N(0, I)) summed over the last axis; inputs (..., dim), output (...)."""
    var = std * std
    return 0.5 * (var + mean * mean - 1.0 - torch.log(var)).sum(-1)
