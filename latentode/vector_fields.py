"""Vector fields f(t, z) for Neural ODEs: MLPs, optionally time-dependent and augmented, that count NFE."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import Linear, Tanh

__all__ = ["ACTIVATIONS", "MLPVectorField", "make_activation", "mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
}
"""Activation names accepted wherever a network is configured."""


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f'Invalid activation "{name}". Must be one of {sorted(ACTIVATIONS)}.')
    return ACTIVATIONS[name]()


def mlp(in_dim: int, out_dim: int, hidden_dim: int, n_layers: int, activation: str) -> nn.Sequential:
    """An MLP with ``n_layers`` hidden layers of ``hidden_dim`` units (``n_layers=0`` is one linear map)."""
    if n_layers < 0 or hidden_dim < 1:
        raise ValueError(f"Need n_layers >= 0 and hidden_dim >= 1, got n_layers={n_layers}, hidden_dim={hidden_dim}.")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_layers):
        layers += [Linear(width, hidden_dim), make_activation(activation)]
        width = hidden_dim
    layers.append(Linear(width, out_dim))
    return nn.Sequential(*layers)


class MLPVectorField(nn.Module):
    """dz/dt = f(t, z), an MLP.

    Parameters
    ----------
    state_dim : int
        Dimension of the state the solver integrates, augmentation included.
    hidden_dim, n_layers : int
        Width and number of hidden layers.
    activation : str
        One of :data:`ACTIVATIONS`.
    time_dependent : bool
        When True, t is an extra input (autonomous otherwise).
    augment_dim : int
        Extra zero-initialised state dimensions (Augmented Neural ODE, Dupont et al. 2019); they are part of
        ``state_dim``. Use :meth:`augment` to append them to an initial state.

    Attributes
    ----------
    nfe : int
        Function evaluations since the last :meth:`reset_nfe`.
    """

    def __init__(
        self,
        state_dim: int,
        *,
        hidden_dim: int = 64,
        n_layers: int = 2,
        activation: str = "tanh",
        time_dependent: bool = False,
        augment_dim: int = 0,
    ) -> None:
        super().__init__()
        if augment_dim < 0 or augment_dim >= state_dim:
            raise ValueError(f"augment_dim must be in [0, state_dim), got {augment_dim} with state_dim={state_dim}.")
        self.state_dim = state_dim
        self.augment_dim = augment_dim
        self.time_dependent = time_dependent
        self.net = mlp(state_dim + int(time_dependent), state_dim, hidden_dim, n_layers, activation)
        self.nfe = 0

    def reset_nfe(self) -> None:
        self.nfe = 0

    def augment(self, z: Tensor) -> Tensor:
        """Append ``augment_dim`` zeros to the last axis of ``z``."""
        if self.augment_dim == 0:
            return z
        return torch.cat([z, z.new_zeros(*z.shape[:-1], self.augment_dim)], dim=-1)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """``t``: a scalar or a tensor broadcastable to ``z.shape[:-1]``; ``z``: (..., state_dim)."""
        self.nfe += 1
        if self.time_dependent:
            t = torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(z.shape[:-1])
            z = torch.cat([z, t[..., None]], dim=-1)
        return self.net(z)
