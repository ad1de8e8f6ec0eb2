"""The training loop: objectives, KL annealing, learning-rate schedule, callbacks, checkpoints and resume."""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from .batch import IrregularBatch
from .data import SeriesSet

__all__ = [
    "TrainConfig",
    "Callback",
    "EarlyStopping",
    "ProgressBar",
    "Checkpoint",
    "Trainer",
    "make_context_target",
    "OBJECTIVES",
    "MAX_GRAD_NORM",
]

OBJECTIVES = ("interpolation", "extrapolation")
"""Training objectives of the Latent ODE paper: reconstruct hidden points, or predict a series' later part."""

MAX_GRAD_NORM = 10.0
"""Gradients are clipped to this global norm, which keeps early ODE training from diverging."""

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout; bumped when it changes incompatibly."""


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the estimators build this from their own parameters)."""

    objective: Literal["interpolation", "extrapolation"] = "interpolation"
    context_fraction: float = 0.5
    n_samples: int = 3
    iwae: bool = False
    max_epochs: int = 100
    batch_size: int = 50
    learning_rate: float = 1e-2
    lr_decay: float = 0.98
    weight_decay: float = 0.0
    kl_warmup_epochs: int = 10
    early_stopping_patience: int | None = 15
    max_time: float | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f'Invalid objective "{self.objective}". Must be one of {set(OBJECTIVES)}.')
        if not 0 < self.context_fraction <= 1:
            raise ValueError(f"context_fraction must be in (0, 1], got {self.context_fraction}.")
        for name in ("n_samples", "max_epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.learning_rate > 0 or not 0 < self.lr_decay <= 1:
            raise ValueError(f"Need learning_rate > 0 and 0 < lr_decay <= 1, got {self.learning_rate}, {self.lr_decay}.")


def make_context_target(
    batch: IrregularBatch,
    objective: str,
    context_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[IrregularBatch, IrregularBatch]:
    """Split a batch into what the encoder reads and what the loss scores, per the objective.

    * ``interpolation``: a random ``context_fraction`` of each series' time points (at least one) is
      context; the target is every point (observed and hidden), as in the paper.
    * ``extrapolation``: the first ``ceil(context_fraction * length)`` points are context and the rest the
      target; a single-point series is its own target.
    """
    valid = batch.time_mask
    if objective == "interpolation":
        if context_fraction >= 1:
            return batch, batch
        keys = torch.rand(batch.times.shape, generator=generator, device=batch.times.device, dtype=batch.times.dtype)
        keys = torch.where(valid, keys, torch.full_like(keys, -1.0))
        keep = keys < context_fraction
        best = keys.argmax(1, keepdim=True)
        keep = keep.scatter(1, best, torch.ones_like(best, dtype=torch.bool)) & valid
        return batch.select_points(keep), batch
    step = torch.arange(batch.times.shape[1], device=batch.times.device)[None, :]
    n_context = torch.ceil(context_fraction * batch.lengths.to(batch.times.dtype) - 1e-6).long().clamp(min=1)
    n_context = torch.minimum(n_context, (batch.lengths - 1).clamp(min=1))
    context = valid & (step < n_context[:, None])
    future = valid & ((step >= n_context[:, None]) | ((batch.lengths[:, None] == 1) & (step == 0)))
    return batch.select_points(context), batch.select_points(future)


class Callback:
    """Hooks called by :class:`Trainer` (skorch-style). ``on_epoch_end`` may set ``trainer.stop = True``."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_batch_end(self, trainer: Trainer, loss: float) -> None: ...

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved for ``patience`` epochs; keep the best weights."""

    def __init__(self, patience: int, monitor: str = "valid_loss") -> None:
        self.patience, self.monitor = patience, monitor

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        value = record.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if trainer.best_loss is None or value < trainer.best_loss:
            trainer.best_loss, trainer.best_epoch = value, record["epoch"]
            trainer.best_state = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
        elif record["epoch"] - trainer.best_epoch >= self.patience:
            trainer.stop = True

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.best_state is not None:
            trainer.module.load_state_dict(trainer.best_state)


class ProgressBar(Callback):
    """A tqdm bar over epochs showing the latest losses; silent when ``verbose == 0``."""

    def __init__(self, verbose: int) -> None:
        self.verbose, self.bar = verbose, None

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=trainer.config.max_epochs, initial=trainer.epoch, desc="fit", unit="epoch")

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        if self.bar is not None:
            shown = {k: f"{record[k]:.4g}" for k in ("train_loss", "valid_loss", "valid_mse") if record.get(k) is not None}
            self.bar.set_postfix(shown)
            self.bar.update(1)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class Checkpoint(Callback):
    """Write everything needed to resume after every ``every`` epochs (atomically: write then rename)."""

    def __init__(self, path: str | os.PathLike, every: int = 1) -> None:
        self.path, self.every = Path(path), every

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        if record["epoch"] % self.every == 0:
            trainer.save_checkpoint(self.path)

    def on_train_end(self, trainer: Trainer) -> None:
        trainer.save_checkpoint(self.path)


@dataclass
class Trainer:
    """Runs epochs of minibatch training of a module exposing ``loss(context, target, ...)``.

    ``train`` and ``valid`` are scaled :class:`SeriesSet` objects; ``extra_state`` is stored in checkpoints
    (the estimator's fitted preprocessing) and compared on resume.
    """

    module: nn.Module
    config: TrainConfig
    train: SeriesSet
    valid: SeriesSet | None
    device: torch.device
    dtype: torch.dtype
    seed: int
    callbacks: list[Callback] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(
            self.module.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=self.config.lr_decay)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.epoch, self.step, self.history = 0, 0, []
        self.best_loss, self.best_epoch, self.best_state = None, 0, None
        self.stop = False

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, path: Path) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "generator": self.generator.get_state(),
            "rng": self.rng.bit_generator.state,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
            raise ValueError(
                f"Cannot resume from checkpoint {str(path)!r}: it is unreadable ({type(error).__name__}: {error}). "
                "Delete it to start afresh."
            ) from error
        if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"Checkpoint {str(path)!r} was written for different data or settings; delete it or point "
                "checkpoint_path elsewhere to start afresh."
            )
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.best_loss, self.best_epoch, self.best_state = state["best_loss"], state["best_epoch"], state["best_state"]
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]

    # -- loop ------------------------------------------------------------------------------------------
    def _batch(self, data: SeriesSet, positions: np.ndarray) -> IrregularBatch:
        return data.to_batch(positions, dtype=self.dtype, device=self.device)

    def _kl_weight(self, steps_per_epoch: int) -> float:
        warmup = self.config.kl_warmup_epochs * steps_per_epoch
        return 1.0 if warmup <= 0 else min(1.0, self.step / warmup)

    def evaluate(self, data: SeriesSet) -> tuple[float, float]:
        """Loss and MSE on ``data`` with a fixed seed (comparable across epochs), without gradients."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        total_loss = total_mse = 0.0
        total_n = 0
        self.module.eval()
        with torch.no_grad():
            for start in range(0, data.n_series, self.config.batch_size):
                positions = np.arange(start, min(start + self.config.batch_size, data.n_series))
                context, target = make_context_target(
                    self._batch(data, positions), self.config.objective, self.config.context_fraction, generator
                )
                terms = self.module.loss(context, target, n_samples=self.config.n_samples, iwae=self.config.iwae,
                                         generator=generator)
                total_loss += float(terms.loss) * terms.n_observed
                total_mse += float(terms.mse) * terms.n_observed
                total_n += terms.n_observed
        self.module.train()
        return total_loss / max(total_n, 1), total_mse / max(total_n, 1)

    def fit(self) -> list[dict]:
        config = self.config
        n = self.train.n_series
        steps_per_epoch = math.ceil(n / config.batch_size)
        started = time.perf_counter()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        try:
            while self.epoch < config.max_epochs and not self.stop:
                record = self._run_epoch(n, steps_per_epoch)
                for callback in self.callbacks:
                    callback.on_epoch_end(self, record)
                if config.max_time is not None and time.perf_counter() - started > config.max_time:
                    self.stop = True
        except KeyboardInterrupt:
            warnings.warn(
                f"Training interrupted after {self.epoch} epochs; keeping the best weights so far. Fit again with "
                "resume=True and the same checkpoint_path to continue.",
                RuntimeWarning,
                stacklevel=3,
            )
        finally:
            for callback in self.callbacks:
                callback.on_train_end(self)
        return self.history

    def _run_epoch(self, n: int, steps_per_epoch: int) -> dict:
        config = self.config
        began = time.perf_counter()
        order = self.rng.permutation(n)
        sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0, "nfe": 0.0}
        for start in range(0, n, config.batch_size):
            batch = self._batch(self.train, order[start : start + config.batch_size])
            context, target = make_context_target(batch, config.objective, config.context_fraction, self.generator)
            kl_weight = self._kl_weight(steps_per_epoch)
            self.module.reset_nfe()
            terms = self.module.loss(context, target, n_samples=config.n_samples, kl_weight=kl_weight,
                                     iwae=config.iwae, generator=self.generator)
            if not torch.isfinite(terms.loss):
                raise FloatingPointError(
                    f"The training loss became {float(terms.loss)} at epoch {self.epoch + 1}. Lower learning_rate, "
                    "use a fixed-step solver, or check the data for extreme values."
                )
            self.optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            nn.utils.clip_grad_norm_(self.module.parameters(), MAX_GRAD_NORM)
            self.optimizer.step()
            self.step += 1
            sums["loss"] += float(terms.loss.detach())
            sums["mse"] += float(terms.mse)
            sums["kl"] += float(terms.kl)
            sums["nfe"] += self.module.nfe
            for callback in self.callbacks:
                callback.on_batch_end(self, float(terms.loss))
        self.scheduler.step()
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "train_loss": sums["loss"] / steps_per_epoch,
            "train_mse": sums["mse"] / steps_per_epoch,
            "kl": sums["kl"] / steps_per_epoch,
            "kl_weight": self._kl_weight(steps_per_epoch),
            "nfe": sums["nfe"] / steps_per_epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if self.valid is not None:
            record["valid_loss"], record["valid_mse"] = self.evaluate(self.valid)
        else:
            record["valid_loss"], record["valid_mse"] = record["train_loss"], record["train_mse"]
        record["seconds"] = time.perf_counter() - began
        self.history.append(record)
        return record
