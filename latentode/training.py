"""The training loop: objectives, KL annealing, learning-rate schedule, callbacks, checkpoints and resume."""

from __future__ import annotations

import contextlib
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

from . import distributed
from .batch import IrregularBatch
from .data import SeriesSet
from .exceptions import DistributedError
from .solve import solver_errors

__all__ = [
    "DEFAULT_EMA_DECAY",
    "MAX_GRAD_NORM",
    "OBJECTIVES",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "ProgressBar",
    "TrainConfig",
    "Trainer",
    "make_context_target",
    "read_checkpoint",
]

OBJECTIVES = ("interpolation", "extrapolation")
"""Training objectives of the Latent ODE paper: reconstruct hidden points, or predict a series' later part."""

MAX_GRAD_NORM = 10.0
"""Gradients are clipped to this global norm, which keeps early ODE training from diverging."""

DISTRIBUTED_SEED_STRIDE = 1_000_003
"""Under torchrun, rank r seeds its sampling generator with seed + r * this + epoch."""

CONTEXT_ROUNDING = 1e-6
"""Extrapolation context ``ceil(fraction * length)``: products within this of a whole number round down to it."""

CHECKPOINT_FORMAT = 3
"""Version of the checkpoint layout; bumped when it changes incompatibly (2: records early stopping; 3: the
weight average)."""

DEFAULT_EMA_DECAY = 0.99
"""The estimators' default decay of the weight average per training step (an average over about 100 steps)."""

EMA_WARMUP_STEPS = 10
"""The weight average's decay after ``n`` steps is ``min(ema_decay, (1 + n) / (EMA_WARMUP_STEPS + n))``, so that
early on it follows the weights closely instead of holding on to their random initial values."""


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the estimators build this from their own parameters)."""

    objective: Literal["interpolation", "extrapolation"] = "interpolation"
    context_fraction: float = 0.5
    score_context: bool = False
    n_samples: int = 3
    iwae: bool = False
    max_epochs: int = 100
    batch_size: int = 50
    learning_rate: float = 1e-2
    lr_decay: float = 0.98
    min_learning_rate: float = 0.0
    weight_decay: float = 0.0
    ema_decay: float | None = None
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
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(
                f"min_learning_rate must be in [0, learning_rate={self.learning_rate}], got {self.min_learning_rate}."
            )
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {self.ema_decay}.")


def make_context_target(
    batch: IrregularBatch,
    objective: str,
    context_fraction: float,
    generator: torch.Generator | None = None,
    *,
    hidden_only: bool = False,
    keys: torch.Tensor | None = None,
    score_context: bool = False,
) -> tuple[IrregularBatch, IrregularBatch]:
    """Split a batch into what the encoder reads and what the loss scores, per the objective.

    * ``interpolation``: a random ``context_fraction`` of each series' time points (at least one) is
      context; the target is every point (observed and hidden), as in the paper, or with ``hidden_only``
      only the hidden points, as scoring needs (a series of two or more points then hides at least one;
      a single-point series is its own target). ``keys`` (batch, time), uniform in [0, 1), replaces the
      draw from ``generator``: a point is context where its key is below ``context_fraction``, so keys
      drawn per series make the split independent of how series are batched.
    * ``extrapolation``: the first ``ceil(context_fraction * length)`` points are context and the rest the
      target (with ``score_context``, every point: the context's reconstruction is scored too, as
      interpolation's target holds the context); a single-point series is its own target.
    """
    valid = batch.time_mask
    if objective == "interpolation":
        if context_fraction >= 1:
            return batch, batch
        if keys is None:
            keys = torch.rand(batch.times.shape, generator=generator, device=batch.times.device, dtype=batch.times.dtype)
        elif keys.shape != batch.times.shape:
            raise ValueError(f"keys has shape {tuple(keys.shape)}, expected {tuple(batch.times.shape)} (batch, time).")
        keys = torch.where(valid, keys, torch.full_like(keys, -1.0))
        keep = keys < context_fraction
        best = keys.argmax(1, keepdim=True)
        keep = keep.scatter(1, best, torch.ones_like(best, dtype=torch.bool)) & valid
        if not hidden_only:
            return batch.select_points(keep), batch
        # Every series of two or more points hides at least one (the one with the smallest key).
        nothing_hidden = ~(valid & ~keep).any(1, keepdim=True) & (batch.lengths[:, None] > 1)
        smallest = torch.where(valid, keys, torch.full_like(keys, 2.0)).argmin(1, keepdim=True)
        drop = torch.zeros_like(keep).scatter(1, smallest, nothing_hidden)
        keep = keep & ~drop
        hidden = valid & ~keep
        single = batch.lengths[:, None] == 1
        return batch.select_points(keep), batch.select_points(hidden | (single & valid))
    step = torch.arange(batch.times.shape[1], device=batch.times.device)[None, :]
    n_context = torch.ceil(context_fraction * batch.lengths.to(batch.times.dtype) - CONTEXT_ROUNDING).long().clamp(min=1)
    n_context = torch.minimum(n_context, (batch.lengths - 1).clamp(min=1))
    context = valid & (step < n_context[:, None])
    if score_context:
        return batch.select_points(context), batch
    future = valid & ((step >= n_context[:, None]) | ((batch.lengths[:, None] == 1) & (step == 0)))
    return batch.select_points(context), batch.select_points(future)


class Callback:
    """Hooks called by :class:`Trainer` (skorch-style). ``on_epoch_end`` may set ``trainer.stop = True``.

    ``on_train_begin``, ``on_batch_end`` and ``on_epoch_end`` run in the order the callbacks are listed;
    ``on_train_end`` runs in the reverse order (teardown unwinds setup), so that, e.g., a checkpoint listed
    after :class:`EarlyStopping` is written before early stopping restores the best weights.
    """

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
            trainer.stop = trainer.stopped_early = True

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
    """Write everything needed to resume (atomically: write then rename).

    A checkpoint is written when training begins (so that one exists even if the first epoch is
    interrupted), after every ``every`` epochs, and when training ends if the last completed epoch was not
    written yet. It always holds the state at the end of a completed epoch, with the latest weights (not
    the best ones): an epoch that was interrupted half-way is not saved, and resuming repeats it.
    """

    def __init__(self, path: str | os.PathLike, every: int = 1) -> None:
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.path, self.every = Path(path), int(every)
        self.saved_epoch: int | None = None

    def _save(self, trainer: Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self.saved_epoch = trainer.epoch

    def on_train_begin(self, trainer: Trainer) -> None:
        self._save(trainer)

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        if record["epoch"] % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        if not trainer.in_epoch and self.saved_epoch != trainer.epoch:
            self._save(trainer)


_CHECKPOINT_KEYS = ("format", "fingerprint", "module", "average", "optimizer", "scheduler", "epoch", "step", "history",
                    "best_loss", "best_epoch", "best_state", "generator", "rng", "seed", "stopped_early")


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by :class:`Trainer` (tensors only: ``weights_only=True``), onto ``device``.

    Raises ``ValueError`` when the file is unreadable, incomplete or of another checkpoint format.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        raise ValueError(
            f"Cannot resume from checkpoint {str(path)!r}: it is unreadable ({type(error).__name__}: {error}). "
            "Delete it to start afresh."
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"Checkpoint {str(path)!r} is not a checkpoint of format {CHECKPOINT_FORMAT}; delete it to start afresh."
        )
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"Checkpoint {str(path)!r} lacks {missing}; delete it to start afresh.")
    return state


@dataclass
class Trainer:
    """Runs epochs of minibatch training of a module exposing ``loss(context, target, ...)``.

    ``train`` and ``valid`` are scaled :class:`SeriesSet` objects; ``fingerprint`` is stored in checkpoints
    (the estimator's settings and data digest) and compared on resume.

    With ``config.ema_decay`` the trainer keeps an exponential moving average of the parameters over
    training steps (``average``). The average, not the latest step's weights, is what validation, the
    ``on_epoch_end`` callbacks (early stopping, a callback that predicts) and the trained model see: the
    weights of late training wander around a minimum, and their average lies closer to it. Checkpoints hold
    both, so that a resumed fit continues the same average.
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
        self.rng = np.random.default_rng(self.seed)  # identical on every rank: the same permutation to shard
        self.network = self.module
        if distributed.is_distributed():
            # Gradients are averaged across processes by PyTorch's DistributedDataParallel; the module's
            # forward is its loss. A parameter a batch does not use (e.g. the encoder ODE when every series in
            # it has one point) still takes part in the backward pass with weight zero (see _run_epoch), so
            # DDP need not search the graph for unused parameters every step (nor warn about it on every rank).
            self.network = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=False,
            )
        self.epoch, self.step, self.history = 0, 0, []
        self.best_loss, self.best_epoch, self.best_state = None, 0, None
        self.stop = False
        self.stopped_early = False  # early stopping ended training: a resumed fit then trains no further
        self.in_epoch = False  # True while an epoch runs: its state is then half-updated
        self.average = ([p.detach().clone() for p in self.module.parameters()]
                        if self.config.ema_decay is not None else None)
        self._training_weights = None  # the latest step's weights while the module holds the average

    # -- weight average --------------------------------------------------------------------------------
    def _update_average(self) -> None:
        """Move the average towards the parameters after a step (``self.step`` steps taken so far)."""
        if self.average is None:
            return
        decay = min(self.config.ema_decay, (1 + self.step) / (EMA_WARMUP_STEPS + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(self.average, [p.detach() for p in self.module.parameters()], 1.0 - decay)

    def _hold_average(self) -> None:
        """Put the average into the module's parameters, keeping the latest step's weights aside."""
        if self.average is None or self._training_weights is not None:
            return
        parameters = [p.detach() for p in self.module.parameters()]
        self._training_weights = [p.clone() for p in parameters]
        with torch.no_grad():
            torch._foreach_copy_(parameters, self.average)

    def _release_average(self) -> None:
        """Give the module back the latest step's weights, to train on."""
        if self._training_weights is None:
            return
        with torch.no_grad():
            torch._foreach_copy_([p.detach() for p in self.module.parameters()], self._training_weights)
        self._training_weights = None

    @contextlib.contextmanager
    def averaged_weights(self):
        """Inside, the module holds the weight average (no-op without ``ema_decay``)."""
        already_held = self._training_weights is not None
        self._hold_average()
        try:
            yield
        finally:
            if not already_held:
                self._release_average()

    def _training_state_dict(self) -> dict:
        """The module's state with the latest step's weights, also while it holds the average."""
        state = self.module.state_dict()
        if self._training_weights is not None:
            names = [name for name, _ in self.module.named_parameters()]
            state.update(zip(names, self._training_weights))
        return state

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, path: Path) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "module": self._training_state_dict(),
            "average": self.average,
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
            "seed": self.seed,
            "stopped_early": self.stopped_early,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, checkpoint: Path | dict) -> None:
        """Continue from a checkpoint: a path, or the dict :func:`read_checkpoint` returned.

        Raises ``ValueError`` when it was written for other data or settings (another fingerprint or seed).
        """
        state = read_checkpoint(checkpoint, self.device) if not isinstance(checkpoint, dict) else checkpoint
        if state["fingerprint"] != self.fingerprint or state["seed"] != self.seed:
            where = f" {str(checkpoint)!r}" if not isinstance(checkpoint, dict) else ""
            raise ValueError(
                f"Checkpoint{where} was written for different data or settings; delete it or point "
                "checkpoint_path elsewhere to start afresh."
            )
        self.module.load_state_dict(state["module"])
        self._training_weights = None
        if self.average is not None:
            if state["average"] is None or len(state["average"]) != len(self.average):
                raise ValueError("Checkpoint holds no matching weight average; delete it to start afresh.")
            self.average = [a.to(device=self.device, dtype=p.dtype) for a, p in zip(state["average"], self.average)]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.best_loss, self.best_epoch, self.best_state = state["best_loss"], state["best_epoch"], state["best_state"]
        self.generator.set_state(state["generator"].cpu())  # generator states are CPU byte tensors
        self.rng.bit_generator.state = state["rng"]
        # A fit that early stopping ended is finished, not interrupted: resuming it reproduces its result.
        self.stopped_early = self.stop = bool(state["stopped_early"])

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
        mine = np.arange(data.n_series)[distributed.rank() :: distributed.world_size()]
        with torch.no_grad():
            for start in range(0, len(mine), self.config.batch_size):
                positions = mine[start : start + self.config.batch_size]
                context, target = make_context_target(
                    self._batch(data, positions), self.config.objective, self.config.context_fraction, generator,
                    score_context=self.config.score_context,
                )
                terms = self.module.loss(context, target, n_samples=self.config.n_samples, iwae=self.config.iwae,
                                         generator=generator)
                total_loss += float(terms.loss) * terms.n_observed
                total_mse += float(terms.mse) * terms.n_observed
                total_n += terms.n_observed
        self.module.train()
        total_loss, total_mse, total_n = distributed.all_reduce_sum([total_loss, total_mse, total_n], self.device)
        return total_loss / max(total_n, 1), total_mse / max(total_n, 1)

    def fit(self) -> list[dict]:
        config = self.config
        n = self.train.n_series
        steps_per_epoch = math.ceil(math.ceil(n / distributed.world_size()) / config.batch_size)
        started = time.perf_counter()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        try:
            while self.epoch < config.max_epochs and not self.stop:
                record = self._run_epoch(n, steps_per_epoch)
                with self.averaged_weights():
                    for callback in self.callbacks:
                        callback.on_epoch_end(self, record)
                if config.max_time is not None and time.perf_counter() - started > config.max_time:
                    self.stop = True
                # Every rank stops together when any of them wants to (early stopping, max_time).
                self.stop = distributed.all_reduce_sum([float(self.stop)], self.device)[0] > 0
        except KeyboardInterrupt:
            warnings.warn(
                f"Training interrupted after {self.epoch} completed epochs; keeping the best weights so far. "
                "Fit again with resume=True and the same checkpoint_path to continue.",
                RuntimeWarning,
                stacklevel=3,
            )
        finally:
            # The trained model is the average (early stopping may then restore the best epoch's average).
            self._hold_average()
            for callback in reversed(self.callbacks):
                callback.on_train_end(self)
        return self.history

    def _run_epoch(self, n: int, steps_per_epoch: int) -> dict:
        config = self.config
        began = time.perf_counter()
        self.in_epoch = True
        order = distributed.shard(self.rng.permutation(n))
        if distributed.is_distributed():
            # Each rank draws its own contexts and z0 samples, reproducibly per (seed, rank, epoch).
            self.generator.manual_seed(self.seed + DISTRIBUTED_SEED_STRIDE * distributed.rank() + self.epoch)
        sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0, "nfe": 0.0, "kl_weight": 0.0}
        for start in range(0, len(order), config.batch_size):
            batch = self._batch(self.train, order[start : start + config.batch_size])
            context, target = make_context_target(batch, config.objective, config.context_fraction, self.generator,
                                                  score_context=config.score_context)
            kl_weight = self._kl_weight(steps_per_epoch)
            self.module.reset_nfe()
            failure = None
            try:
                terms = self.network(context, target, n_samples=config.n_samples, kl_weight=kl_weight,
                                     iwae=config.iwae, generator=self.generator)
                if not torch.isfinite(terms.loss):
                    raise FloatingPointError(
                        f"The training loss became {float(terms.loss.detach())} at epoch {self.epoch + 1}. Lower "
                        "learning_rate, use a fixed-step solver, or check the data for extreme values."
                    )
            except Exception as error:  # noqa: BLE001 (re-raised below, once every rank knows)
                failure = error
            # A failure on any rank stops every rank here; otherwise the others would wait forever for its
            # gradients in DistributedDataParallel's exchange.
            any_failed = distributed.all_reduce_sum([float(failure is not None)], self.device)[0] > 0
            if any_failed and failure is None:
                failure = DistributedError(
                    f"Another process of this distributed fit failed at epoch {self.epoch + 1} (its own error is in "
                    "its output); this one stops with it."
                )
            if failure is not None:
                raise failure
            self.optimizer.zero_grad(set_to_none=True)
            nfe = self.module.nfe  # forward evaluations only, read before the backward pass adds adjoint ones
            loss_to_minimise = terms.loss
            if self.network is not self.module:
                loss_to_minimise = loss_to_minimise + 0.0 * sum(
                    p.sum() for p in self.module.parameters() if p.requires_grad
                )
            with solver_errors():  # an adjoint solve in the backward pass can underflow too
                loss_to_minimise.backward()
            nn.utils.clip_grad_norm_(self.module.parameters(), MAX_GRAD_NORM)
            self.optimizer.step()
            self._update_average()
            self.step += 1
            loss = float(terms.loss.detach())
            sums["loss"] += loss
            sums["mse"] += float(terms.mse)
            sums["kl"] += float(terms.kl)
            sums["nfe"] += nfe
            sums["kl_weight"] += kl_weight
            for callback in self.callbacks:
                callback.on_batch_end(self, loss)
        totals = distributed.all_reduce_sum(list(sums.values()), self.device)
        sums = {key: total / distributed.world_size() for key, total in zip(sums, totals)}
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        for group in self.optimizer.param_groups:  # the decay stops at the floor (the reference's ``lowest``)
            group["lr"] = max(group["lr"], self.config.min_learning_rate)
        self.epoch += 1
        self.in_epoch = False
        record = {
            "epoch": self.epoch,
            "train_loss": sums["loss"] / steps_per_epoch,
            "train_mse": sums["mse"] / steps_per_epoch,
            "kl": sums["kl"] / steps_per_epoch,
            "kl_weight": sums["kl_weight"] / steps_per_epoch,
            "nfe": sums["nfe"] / steps_per_epoch,
            "lr": lr,
        }
        if self.valid is not None:
            with self.averaged_weights():
                record["valid_loss"], record["valid_mse"] = self.evaluate(self.valid)
        else:
            record["valid_loss"], record["valid_mse"] = record["train_loss"], record["train_mse"]
        record["seconds"] = time.perf_counter() - began
        self.history.append(record)
        return record
