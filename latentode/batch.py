"""The typed batch: padded per-series timestamps, values and observation masks as tensors."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

__all__ = ["IrregularBatch"]


@dataclass(frozen=True)
class IrregularBatch:
    """A batch of irregularly sampled series, each on its own timestamps.

    Series are right-padded to the longest one. Padding is explicit: padded time points repeat
    the series' last valid timestamp (so every gap into padding has length zero), their values are
    zero and their mask is all ``False``.

    Attributes
    ----------
    times : Tensor, shape (batch, time)
        Scaled timestamps, strictly increasing over each series' valid points.
    values : Tensor, shape (batch, time, features)
        Scaled values; zero wherever ``mask`` is ``False`` (never NaN).
    mask : Tensor of bool, shape (batch, time, features)
        ``True`` where a value was observed.
    lengths : Tensor of int64, shape (batch,)
        Number of valid time points of each series (at least one).
    """

    times: Tensor
    values: Tensor
    mask: Tensor
    lengths: Tensor

    def __post_init__(self) -> None:
        b, t = self.times.shape
        if self.values.shape[:2] != (b, t) or self.mask.shape != self.values.shape:
            raise ValueError(
                f"Inconsistent batch shapes: times {tuple(self.times.shape)}, values "
                f"{tuple(self.values.shape)}, mask {tuple(self.mask.shape)}; expected times (batch, time) "
                "and values, mask (batch, time, features)."
            )
        if self.lengths.shape != (b,):
            raise ValueError(f"lengths has shape {tuple(self.lengths.shape)}, expected ({b},).")
        if self.mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got {self.mask.dtype}.")
        if self.lengths.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"lengths must be an integer tensor, got {self.lengths.dtype}.")
        if b and (bool((self.lengths < 1).any()) or bool((self.lengths > t).any())):
            raise ValueError(
                f"lengths must lie in [1, {t}] (every series has at least one time point and no more than the "
                f"batch width); got {self.lengths.tolist()[:10]}."
            )
        # Unobserved entries are zeroed, whatever they held: a NaN there would otherwise leak through the
        # products that mask it (NaN * 0 is NaN) into outputs and gradients.
        clean = torch.where(self.mask, self.values, torch.zeros((), dtype=self.values.dtype, device=self.values.device))
        if not bool(torch.isfinite(clean).all()):
            raise ValueError(
                "values holds NaN or infinite entries where mask is True; mark them unobserved (mask False) or "
                "replace them with finite numbers."
            )
        object.__setattr__(self, "values", clean)

    @property
    def batch_size(self) -> int:
        return self.times.shape[0]

    @property
    def n_features(self) -> int:
        return self.values.shape[-1]

    @property
    def time_mask(self) -> Tensor:
        """Bool tensor (batch, time): ``True`` at each series' valid (non-padding) time points."""
        steps = torch.arange(self.times.shape[1], device=self.times.device)
        return steps[None, :] < self.lengths[:, None]

    @property
    def first_times(self) -> Tensor:
        """Tensor (batch,): each series' first timestamp, where its latent state z0 is anchored."""
        return self.times[:, 0]

    @property
    def last_times(self) -> Tensor:
        """Tensor (batch,): each series' last valid timestamp."""
        return self.times.gather(1, (self.lengths - 1).clamp(min=0)[:, None]).squeeze(1)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> IrregularBatch:
        """Move to ``device`` and cast floating tensors to ``dtype``."""
        return IrregularBatch(
            times=self.times.to(device=device, dtype=dtype),
            values=self.values.to(device=device, dtype=dtype),
            mask=self.mask.to(device=device),
            lengths=self.lengths.to(device=device),
        )

    def index(self, rows: Tensor | slice) -> IrregularBatch:
        """The sub-batch of the series selected by ``rows`` (trimmed to its own longest series)."""
        lengths = self.lengths[rows]
        width = max(int(lengths.max()), 1) if lengths.numel() else 1
        return IrregularBatch(
            times=self.times[rows][:, :width],
            values=self.values[rows][:, :width],
            mask=self.mask[rows][:, :width],
            lengths=lengths,
        )

    def select_points(self, keep: Tensor) -> IrregularBatch:
        """Keep, per series, the valid time points where ``keep`` (batch, time) is ``True``.

        Kept points are moved to the front in time order and the rest becomes padding.
        Every series must keep at least one point.
        """
        keep = keep & self.time_mask
        lengths = keep.sum(1)
        if bool((lengths == 0).any()):
            raise ValueError("select_points would leave a series with no time points.")
        # Stable sort that puts kept points first, in their original (time) order.
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
        width = int(lengths.max())
        order = order[:, :width]
        times = self.times.gather(1, order)
        valid = torch.arange(width, device=times.device)[None, :] < lengths[:, None]
        last = times.gather(1, (lengths - 1)[:, None])
        times = torch.where(valid, times, last)
        gather3 = order[:, :, None].expand(-1, -1, self.values.shape[-1])
        mask = self.mask.gather(1, gather3) & valid[:, :, None]
        # Entries the new mask leaves unobserved are zeroed by the constructor.
        return IrregularBatch(times=times, values=self.values.gather(1, gather3), mask=mask, lengths=lengths)

    def __iter__(self):
        return iter(getattr(self, f.name) for f in fields(self))
