"""The scikit-learn style estimators: ``LatentODE`` and ``ODERNN``, fitted on pandas records."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._set_output import _get_output_config

from . import distributed
from .batch import IrregularBatch
from .data import SAMPLE_COLUMN, FrameSpec, SeriesSet, TimeCodec, read_frame, read_queries, to_frame
from .dynamics import DEFAULT_GRID_STEP
from .exceptions import NotFittedError
from .latent_model import LatentODEModel
from .likelihood import DEFAULT_NOISE_STD
from .preprocessing import FeatureScaler, TimeScaler
from .recurrent import RecurrentForecaster
from .solve import SolverConfig
from .training import (
    DEFAULT_EMA_DECAY,
    Callback,
    Checkpoint,
    EarlyStopping,
    ProgressBar,
    TrainConfig,
    Trainer,
    make_context_target,
    read_checkpoint,
)

__all__ = ["MIN_SERIES_FOR_VALIDATION", "ODERNN", "SCORE_CONTEXT_FRACTION", "SCORE_SEED", "LatentODE"]

SCORE_SEED = 12345
"""Seed of the hidden-point draw in ``score``, so that scores of different models compare."""

SCORE_CONTEXT_FRACTION = 0.5
"""Fraction of each series' time points ``score`` shows the model under the interpolation objective."""

MIN_SERIES_FOR_VALIDATION = 10
"""With fewer training series than this, no validation split is made (early stopping watches the training loss)."""

CALIBRATION_SAMPLES = 20
"""Posterior draws per validation series when ``calibrate_intervals`` sets the predictive noise."""

CALIBRATION_SEED = 2024
"""Seed of the hidden-point split and the draws of that calibration, so that fits are reproducible."""

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

_RESUMABLE_PARAMS = frozenset(
    {"verbose", "max_epochs", "max_time", "early_stopping_patience", "checkpoint_path", "resume", "device", "callbacks",
     "calibrate_intervals"}
)
"""Parameters that may differ between the fit that wrote a checkpoint and the fit that resumes from it."""


def _resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"Invalid device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'auto' or 'cpu'.")
    return resolved


def _scale_series(series: SeriesSet, time_scaler: TimeScaler, feature_scaler: FeatureScaler, *,
                  relative: bool) -> tuple[SeriesSet, np.ndarray]:
    """Scaled copy of ``series``, and per series the scaled time subtracted from its times.

    With ``relative`` each series is moved to start at 0, in float64, before its times become tensors: models
    that do not read time itself see only time differences, and the gaps then keep their precision in float32
    however far the series lies from the training data's time origin (Unix-time data a year after training,
    say). Without it (time-dependent models read absolute scaled time) the shifts are zero. Query times must
    be shifted by the same amounts.
    """
    times = time_scaler.transform(series.times)
    shifts = times[series.offsets[:-1]] if relative else np.zeros(series.n_series)
    times = times - np.repeat(shifts, np.diff(series.offsets))
    return dataclasses.replace(series, times=times, values=feature_scaler.transform(series.values)), shifts


def _seed_from(random_state) -> int:
    """An int seed from ``random_state``: an int, None (fresh entropy), a numpy RandomState or Generator."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    raise TypeError(
        "random_state must be an int, None, a numpy RandomState or a numpy Generator, got "
        f"{type(random_state).__name__}."
    )


def _data_digest(series: SeriesSet) -> str:
    """SHA-256 of a series set's ids, times and values: a checkpoint resumes only on the data it was written for."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(repr, series.ids.tolist())).encode())
    for array in (series.offsets, series.times, series.values):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _check_int(name: str, value, minimum: int, alternative: str = "") -> None:
    """Raise TypeError unless ``value`` is an integer (not a bool), ValueError unless it is >= ``minimum``."""
    message = f"{name} must be an integer >= {minimum}{' ' + alternative if alternative else ''}, got {value!r}."
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(message)
    if value < minimum:
        raise ValueError(message)


def _check_real(name: str, value, *, lower: float | None = None, upper: float | None = None,
                lower_open: bool = False, upper_open: bool = False, what: str | None = None) -> None:
    """Raise unless ``value`` is a finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    low_ok = lower is None or (value > lower if lower_open else value >= lower)
    high_ok = upper is None or (value < upper if upper_open else value <= upper)
    if not (np.isfinite(value) and low_ok and high_ok):
        low = "(-inf" if lower is None else f"{'(' if lower_open else '['}{lower}"
        high = "inf)" if upper is None else f"{upper}{')' if upper_open else ']'}"
        raise ValueError(f"{name} must be {what or f'a finite number in {low}, {high}'}, got {value!r}.")


class _SeriesEstimator(BaseEstimator):
    """Shared machinery: reading frames, scaling, training, prediction and scoring. Not public."""

    # -- helpers ---------------------------------------------------------------------------------------
    def _spec(self) -> FrameSpec:
        return FrameSpec(
            id_col=self.id_col, time_col=self.time_col, variable_col=self.variable_col, value_col=self.value_col,
            duplicates=self.duplicates,
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator."
            )

    def _dtype(self) -> torch.dtype:
        if self.dtype not in _DTYPES:
            raise ValueError(f'Invalid dtype "{self.dtype}". Must be one of {set(_DTYPES)}.')
        return _DTYPES[self.dtype]

    def _scaled(self, series: SeriesSet) -> tuple[SeriesSet, np.ndarray]:
        """``series`` in the model's units, and the per-series time shifts (see :func:`_scale_series`)."""
        return _scale_series(series, self.time_scaler_, self.feature_scaler_, relative=not self.time_dependent)

    def _read(self, X: pd.DataFrame) -> SeriesSet:
        self._check_fitted()
        return read_frame(
            X, self._spec(), feature_names=list(self.feature_names_in_), codec=self.time_codec_,
            require_all_features=False,
        )

    def _user_callbacks(self) -> list:
        callbacks = list(self.callbacks or [])
        bad = [type(c).__name__ for c in callbacks if not isinstance(c, Callback)]
        if bad:
            raise TypeError(f"callbacks must be latentode.training.Callback instances; got {bad}.")
        return callbacks

    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            objective=self.objective, context_fraction=self.context_fraction,
            score_context=getattr(self, "score_context", False), n_samples=getattr(self, "n_samples", 1),
            iwae=getattr(self, "iwae", False), max_epochs=self.max_epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, lr_decay=self.lr_decay,
            min_learning_rate=self.min_learning_rate, weight_decay=self.weight_decay, ema_decay=self.ema_decay,
            kl_warmup_epochs=getattr(self, "kl_warmup_epochs", 0),
            early_stopping_patience=self.early_stopping_patience, max_time=self.max_time,
        )

    def _build_module(self, n_features: int) -> torch.nn.Module:
        raise NotImplementedError

    def _seed(self) -> int:
        return _seed_from(self.random_state)

    _INT_PARAMS: ClassVar[dict[str, int]] = {"max_epochs": 1, "batch_size": 1, "verbose": 0}
    """Integer parameters and their smallest allowed value (subclasses add their own)."""

    _POSITIVE_PARAMS: ClassVar[tuple[str, ...]] = ("learning_rate",)
    """Real parameters that must be finite and > 0."""

    def _check_params(self) -> None:
        """Validate the constructor parameters before any work, naming the parameter and the value received."""
        for name, minimum in self._INT_PARAMS.items():
            _check_int(name, getattr(self, name), minimum)
        for name in self._POSITIVE_PARAMS:
            _check_real(name, getattr(self, name), lower=0.0, lower_open=True)
        _check_real("lr_decay", self.lr_decay, lower=0.0, lower_open=True, upper=1.0)
        _check_real("min_learning_rate", self.min_learning_rate, lower=0.0, upper=self.learning_rate,
                    what=f"a number in [0, learning_rate={self.learning_rate}]")
        _check_real("weight_decay", self.weight_decay, lower=0.0)
        if self.ema_decay is not None:
            _check_real("ema_decay", self.ema_decay, lower=0.0, upper=1.0, upper_open=True,
                        what="a number in [0, 1) or None")
        _check_real("context_fraction", self.context_fraction, lower=0.0, lower_open=True, upper=1.0)
        _check_real("validation_fraction", self.validation_fraction, lower=0.0, upper=1.0, upper_open=True)
        if self.early_stopping_patience is not None:
            _check_int("early_stopping_patience", self.early_stopping_patience, 1, "or None")
        if self.max_time is not None:
            _check_real("max_time", self.max_time, lower=0.0, what="a number of seconds >= 0 or None")
        if self.callbacks is not None and not isinstance(self.callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of latentode.training.Callback or None, got {self.callbacks!r}.")
        if self.resume and self.checkpoint_path is None:
            raise ValueError("resume=True needs checkpoint_path: the checkpoint to resume from.")

    def _make_module(self, n_features: int, seed: int, device: torch.device) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._build_module(n_features)
        return module.to(device=device, dtype=self._dtype())

    # -- fit -------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y=None) -> _SeriesEstimator:
        """Fit on a wide or long DataFrame of series. ``y`` is ignored (accepted for pipelines).

        Fitting starts afresh (a refit forgets the previous one), unless ``resume=True`` and a checkpoint
        of the same settings and data exists at ``checkpoint_path``: then training continues from it. A
        ``KeyboardInterrupt`` during training stops it with a warning and keeps the best weights so far.

        Returns
        -------
        self
        """
        self._check_params()
        config = self._train_config()
        dtype = self._dtype()
        device = _resolve_device(self.device)
        # Under torchrun, join the process group (gloo on CPU, nccl on GPU) and train data-parallel.
        distributed.setup(device)
        device = distributed.local_device(device)
        series = read_frame(X, self._spec())
        checkpoint = None
        if self.resume and Path(self.checkpoint_path).exists():
            checkpoint = read_checkpoint(self.checkpoint_path, device)
        # On resume the checkpoint's seed rules, so that random_state=None still continues the same split.
        seed = checkpoint["seed"] if checkpoint is not None else self._seed()
        # Every rank must split and shard with the same seed, also when random_state=None drew it from entropy.
        seed = distributed.broadcast_int(seed, device)
        rng = np.random.default_rng(seed)
        order = rng.permutation(series.n_series)
        n_valid = round(self.validation_fraction * series.n_series)
        if self.validation_fraction > 0 and series.n_series >= MIN_SERIES_FOR_VALIDATION and n_valid >= 1:
            valid_raw, train_raw = series.subset(np.sort(order[:n_valid])), series.subset(np.sort(order[n_valid:]))
        else:
            valid_raw, train_raw = None, series
        # Scalers are fitted on the training series only; the validation series are scaled with them. A feature
        # that only the validation series observe leaves nothing to fit it on, so then all series are used.
        fit_on = train_raw if (~np.isnan(train_raw.values)).any(0).all() else series
        time_scaler = TimeScaler().fit(fit_on.times, fit_on.offsets)
        feature_scaler = FeatureScaler().fit(fit_on.values)

        relative = not self.time_dependent
        train, _ = _scale_series(train_raw, time_scaler, feature_scaler, relative=relative)
        valid = (_scale_series(valid_raw, time_scaler, feature_scaler, relative=relative)[0]
                 if valid_raw is not None else None)
        module = self._make_module(len(series.feature_names), seed, device)
        fingerprint = {
            "estimator": type(self).__name__,
            "params": {k: repr(v) for k, v in sorted(self.get_params().items()) if k not in _RESUMABLE_PARAMS},
            "features": list(series.feature_names),
            "n_series": int(series.n_series),
            "n_rows": len(series.times),
            "data_sha256": _data_digest(series),
        }
        callbacks = []
        if config.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(config.early_stopping_patience))
        callbacks.extend(self._user_callbacks())
        if distributed.is_main_process():  # one progress bar and one checkpoint writer
            callbacks.append(ProgressBar(self.verbose))
            if self.checkpoint_path is not None:
                callbacks.append(Checkpoint(self.checkpoint_path))
        trainer = Trainer(module, config, train, valid, device, dtype, seed, callbacks, fingerprint)
        if checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        previous = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}
        # Fitted state is in place during training, so that callbacks can predict with the model; if
        # training fails, the previous state (or none) is restored, so a failed fit leaves nothing behind.
        self.device_ = device
        self.time_codec_ = series.codec
        self.feature_names_in_ = np.array(series.feature_names, dtype=object)
        self.n_features_in_ = len(series.feature_names)
        self.time_scaler_ = time_scaler
        self.feature_scaler_ = feature_scaler
        self.module_ = module
        self.history_ = trainer.history
        try:
            trainer.fit()
        except BaseException:
            for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
                delattr(self, key)
            vars(self).update(previous)
            raise
        finally:
            module.eval()
        self.history_ = trainer.history
        self.n_epochs_ = trainer.epoch
        # Without early stopping the last epoch's weights are kept, so that is the epoch the model holds.
        self.best_epoch_ = trainer.best_epoch if trainer.best_state is not None else trainer.epoch
        self._after_fit(valid)
        return self

    def _after_fit(self, valid: SeriesSet | None) -> None:
        """Work on the trained model with the validation series (scaled; None without a split)."""

    # -- prediction ------------------------------------------------------------------------------------
    def _query_batches(self, X: pd.DataFrame, times) -> tuple[SeriesSet, SeriesSet, list[np.ndarray], list[pd.Series]]:
        """The context series as read and as scaled, and per series the query times in the model's units
        (scaled, and shifted as the series' own times are) and as the user gave them."""
        series = self._read(X)
        encoded, raw = read_queries(times, series, self._spec())
        scaled, shifts = self._scaled(series)
        queries = [self.time_scaler_.transform(t) - shift for t, shift in zip(encoded, shifts)]
        return series, scaled, queries, raw

    def _iterate(self, scaled: SeriesSet, queries: list[np.ndarray]):
        """Yield (positions, context batch, query tensor (batch, queries), query counts) per batch.

        Rows with fewer queries than the widest are padded by repeating their last query (ignored later).
        """
        dtype = self._dtype()
        for start in range(0, scaled.n_series, self.batch_size):
            positions = np.arange(start, min(start + self.batch_size, scaled.n_series))
            context = scaled.to_batch(positions, dtype=dtype, device=self.device_)
            counts = [len(queries[p]) for p in positions]
            width = max(max(counts), 1)
            q = np.zeros((len(positions), width))
            for row, p in enumerate(positions):
                t = queries[p]
                q[row, : len(t)] = t
                q[row, len(t):] = t[-1] if len(t) else float(context.times[row, 0])
            yield positions, context, torch.as_tensor(q, dtype=dtype, device=self.device_), counts

    def _means(self, context: IrregularBatch, queries: torch.Tensor) -> torch.Tensor:
        """Standardised predicted means (batch, queries, features)."""
        raise NotImplementedError

    def predict(self, X: pd.DataFrame, times) -> pd.DataFrame:
        """Predicted values at the query ``times`` of each series in ``X``.

        Parameters
        ----------
        X : DataFrame
            Context observations (wide or long, as in ``fit``); series need not have been seen in ``fit``.
        times : array-like, dict or DataFrame
            One array of times for every series, a dict ``{id: times}``, or a DataFrame of (id, time) query
            rows. Times before, between and after the observations all work, in the user's time type.

        Returns
        -------
        DataFrame
            Columns id, time, then one per feature, in original units; rows grouped by series in sorted id
            order, each series' queries in the order given.
        """
        series, raw, means = self._per_series(X, times, self._means)
        values = [self.feature_scaler_.inverse_transform(m) for m in means]
        return to_frame(series.ids, raw, values, self.feature_names_in_.tolist(), self._spec(), long=False)

    def _per_series(self, X: pd.DataFrame, times, compute) -> tuple[SeriesSet, list[pd.Series], list[np.ndarray]]:
        """``compute(context, queries)`` -> (batch, queries, k) over every batch, without gradients.

        Returns the series read, their raw query times, and per series its (queries, k) float64 rows.
        """
        series, scaled, encoded, raw = self._query_batches(X, times)
        rows = [None] * series.n_series
        with torch.no_grad():
            for positions, context, queries, counts in self._iterate(scaled, encoded):
                out = compute(context, queries).cpu().numpy().astype(np.float64)
                for row, p in enumerate(positions):
                    rows[p] = out[row, : counts[row]]
        return series, raw, rows

    def score(self, X: pd.DataFrame, y=None) -> float:
        """Negative mean squared error (standardised units, features weighted equally); higher is better.

        The protocol follows ``objective``: with ``"interpolation"`` a seeded random half of each series' time
        points (:data:`SCORE_CONTEXT_FRACTION`) is kept as context and only the hidden rest is scored; with
        ``"extrapolation"`` the later part of each series is predicted from its first ``context_fraction``.
        Series with one time point are scored on reconstructing it. The draw is seeded
        (:data:`SCORE_SEED`), so models scored on the same ``X`` are compared on the same points. ``y`` is
        ignored.
        """
        series = self._read(X)
        scaled, _ = self._scaled(series)
        generator = torch.Generator(device=self.device_).manual_seed(SCORE_SEED)
        fraction = self.context_fraction if self.objective == "extrapolation" else SCORE_CONTEXT_FRACTION
        # One key per (series, time point), drawn for the whole frame: the hidden points do not depend on batch_size.
        keys = torch.rand((scaled.n_series, int(np.diff(scaled.offsets).max())), generator=generator,
                          device=self.device_, dtype=self._dtype())
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, scaled.n_series, self.batch_size):
                positions = np.arange(start, min(start + self.batch_size, scaled.n_series))
                batch = scaled.to_batch(positions, dtype=self._dtype(), device=self.device_)
                context, target = make_context_target(batch, self.objective, fraction, hidden_only=True,
                                                      keys=keys[start : start + len(positions), : batch.times.shape[1]])
                means = self._means(context, target.times)
                squared = torch.where(target.mask, (means - target.values) ** 2, torch.zeros((), dtype=means.dtype))
                total += float(squared.sum())
                count += int(target.mask.sum())
        return -total / max(count, 1)

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Save to a single file that loading cannot execute code from (see :mod:`latentode.serialization`).

        Under torchrun only rank 0 writes (every rank holds the same parameters); the others wait for it.
        """
        from .serialization import save_estimator

        self._check_fitted()
        if distributed.is_main_process():
            save_estimator(self, path)
        distributed.barrier()

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto"):
        """Load a model saved with :meth:`save`; raises ``ModelFileError`` for a truncated or tampered file."""
        from .serialization import load_estimator

        model = load_estimator(path, device=device)
        if not isinstance(model, cls):
            from .exceptions import ModelFileError

            raise ModelFileError(f"{str(path)!r} holds a {type(model).__name__}, not a {cls.__name__}; load it with that class.")
        return model

    def _restore(self, state: dict, module_state: dict, device: str) -> None:
        """Rebuild fitted attributes from ``state`` (see serialization); internal."""
        self.device_ = _resolve_device(device)
        self.time_codec_ = TimeCodec(**state["time_codec"])
        self.feature_names_in_ = np.array(state["feature_names"], dtype=object)
        self.n_features_in_ = len(state["feature_names"])
        self.time_scaler_ = TimeScaler.from_state(state["time_scaler"])
        self.feature_scaler_ = FeatureScaler.from_state(state["feature_scaler"])
        self.history_ = state["history"]
        self.n_epochs_ = state["n_epochs"]
        self.best_epoch_ = state["best_epoch"]
        self.module_ = self._make_module(self.n_features_in_, 0, self.device_)
        self.module_.load_state_dict(module_state)
        self.module_.eval()


class LatentODE(TransformerMixin, _SeriesEstimator):
    """Latent ODE (Rubanova, Chen & Duvenaud, 2019) for irregularly sampled series in pandas DataFrames.

    An ODE-RNN encoder reads each series backwards and infers q(z0), the latent state at the series' first
    observed time; a Neural ODE evolves z0; a decoder maps the latent path to observations. Times and
    features are scaled automatically from the training data.

    Parameters
    ----------
    latent_dim : int, default=10
        Dimension of z0.
    hidden_dim : int, default=64
        Width of the vector fields and decoder.
    encoder_dim : int, default=40
        GRU hidden size of the encoder.
    n_layers : int, default=2
        Hidden layers of the latent vector field.
    activation : str, default="tanh"
    encoder : {"ode_rnn", "rnn"}, default="ode_rnn"
        ``"rnn"`` reads gaps as GRU inputs instead of an ODE (the paper's "RNN encoder" baseline).
    dynamics : {"ode", "residual", "gru"}, default="ode"
        ``"residual"``: discrete residual latent steps z_{n+1} = z_n + f(z_n) (the Euler view);
        ``"gru"`` with ``encoder="rnn"``: the RNN-VAE baseline.
    augment_dim : int, default=0
        Extra zero-initialised latent dimensions (Augmented Neural ODE).
    time_dependent : bool, default=False
        The vector fields also read (scaled) time.
    solver : str, default="dopri5"
        torchdiffeq method of the latent ODE; ``rtol``, ``atol`` for adaptive methods; ``step_size`` (scaled
        time; the median training series spans 1) for fixed-step ones (default ``grid_step``).
    encoder_solver : str, default="euler"
        Method for the encoder's gaps (one step per gap).
    adjoint : bool, default=False
        Adjoint backpropagation through the latent ODE (constant memory in solver steps).
    grid_step : float, default=0.02
        Spacing of the shared latent output grid in scaled time.
    noise_std : float or "learned", default=0.1
        Observation noise std in standardised units, fixed (as in the paper) or learned per feature.
    calibrate_intervals : bool, default=True
        After training, set the observation noise that :meth:`sample` and :meth:`predict_interval` add from
        the validation series: per feature, held-out points are predicted as :meth:`score` does, and the
        noise variance becomes their squared error minus the spread of the posterior draws, never less than
        the model's own noise. Without it, intervals use the training noise, which on real data is usually
        too small (on pbcseq, "90%" intervals covered 36-42% of held-out labs). Needs a validation split
        (``validation_fraction > 0`` and at least 10 series); it changes no prediction mean.
    poisson : bool, default=False
        Also model observation times with a latent Poisson process intensity.
    objective : {"interpolation", "extrapolation"}, default="interpolation"
    context_fraction : float, default=0.5
        Interpolation: fraction of each series' points the encoder sees in training (the loss scores all).
        Extrapolation: the first fraction is context, the rest is predicted.
    score_context : bool, default=True
        Extrapolation: the training loss also scores the context points (the encoder's input decoded back
        from z0), not only the later points; the model then leaves the series' mean far sooner (on the
        periodic benchmark after about 200 iterations instead of 560). Interpolation always scores every point.
        ``score`` and interval calibration judge the later points only, either way.
    n_samples : int, default=3
        Samples of z0 per series in training. ``iwae=True`` uses the importance-weighted bound over them.
    kl_warmup_epochs : int, default=10
        The KL weight rises linearly from 0 to 1 over these epochs.
    max_epochs, batch_size, learning_rate, lr_decay, weight_decay :
        Adam with learning rate multiplied by ``lr_decay`` after every epoch.
    ema_decay : float or None, default=0.99
        The model keeps an exponential moving average of its weights over training steps, with this decay
        (after a short warm-up); validation, early stopping, callbacks and the fitted model use the average.
        Late in training the weights of each step scatter around a minimum, and their average predicts
        better (``benchmarks/README.md``). ``None`` uses the last step's weights.
    min_learning_rate : float, default=0.0
        The decay stops at this learning rate (the reference implementation stops at ``learning_rate / 10``).
    validation_fraction : float, default=0.1
        Fraction of series held out for validation and early stopping (none below 10 series).
    early_stopping_patience : int or None, default=15
        Stop after this many epochs without validation improvement and keep the best weights.
    max_time : float or None
        Stop after this many seconds of training.
    checkpoint_path : str or None
        Save a checkpoint there after every epoch; with ``resume=True``, ``fit`` continues from it.
    id_col, time_col, variable_col, value_col :
        Column names; give ``variable_col`` and ``value_col`` for long-format data.
    duplicates : {"mean", "error"}, default="mean"
        Duplicate (id, time) rows are averaged (with a warning) or refused.
    device : str, default="auto"
        "auto" uses CUDA when available.
    dtype : {"float32", "float64"}
    random_state : int or None
        Seeds initialisation, batching and sampling; training on CPU is deterministic for a given value.
    verbose : int, default=1
        0 silences the progress bar.
    callbacks : list of latentode.training.Callback, optional
        Extra training hooks (``on_train_begin``, ``on_batch_end``, ``on_epoch_end``, ``on_train_end``); an
        ``on_epoch_end`` may set ``trainer.stop = True``. The model can predict from inside them.

    Attributes
    ----------
    module_ : LatentODEModel
    feature_names_in_, n_features_in_, time_codec_, time_scaler_, feature_scaler_ :
        Fitted preprocessing.
    history_ : list of dict
        Per epoch: train_loss, train_mse, kl, kl_weight, nfe, lr, valid_loss, valid_mse, seconds.
    n_epochs_, best_epoch_ : int
        Epochs trained, and the epoch whose weights the model holds (the best validation epoch under early
        stopping, else the last).
    interval_noise_std_ : pandas.Series
        Observation noise std per feature, in original units, that :meth:`sample` and
        :meth:`predict_interval` add (see ``calibrate_intervals``).

    Examples
    --------
    >>> from latentode import LatentODE
    >>> from latentode.datasets import make_spirals
    >>> observed, truth = make_spirals(n_series=50, random_state=0)
    >>> model = LatentODE(max_epochs=2, verbose=0, random_state=0).fit(observed)
    >>> model.predict(observed, [0.0, 1.0, 2.0]).shape[1]
    4
    """

    _INT_PARAMS: ClassVar[dict[str, int]] = {**_SeriesEstimator._INT_PARAMS, "latent_dim": 1, "hidden_dim": 1, "encoder_dim": 1, "n_layers": 0,
                   "augment_dim": 0, "n_samples": 1, "kl_warmup_epochs": 0}
    _POSITIVE_PARAMS: ClassVar[tuple[str, ...]] = ("learning_rate", "grid_step", "rtol", "atol")

    def _check_params(self) -> None:
        super()._check_params()
        if self.step_size is not None:
            _check_real("step_size", self.step_size, lower=0.0, lower_open=True, what="a number > 0 or None")
        if not (isinstance(self.noise_std, str) and self.noise_std == "learned"):
            _check_real("noise_std", self.noise_std, lower=0.0, lower_open=True, what='a number > 0 or "learned"')
        if not isinstance(self.score_context, (bool, np.bool_)):
            raise TypeError(f"score_context must be True or False, got {self.score_context!r}.")

    def __init__(
        self,
        latent_dim: int = 10,
        *,
        hidden_dim: int = 64,
        encoder_dim: int = 40,
        n_layers: int = 2,
        activation: str = "tanh",
        encoder: str = "ode_rnn",
        dynamics: str = "ode",
        augment_dim: int = 0,
        time_dependent: bool = False,
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        step_size: float | None = None,
        encoder_solver: str = "euler",
        adjoint: bool = False,
        grid_step: float = DEFAULT_GRID_STEP,
        noise_std: float | str = DEFAULT_NOISE_STD,
        calibrate_intervals: bool = True,
        poisson: bool = False,
        objective: str = "interpolation",
        context_fraction: float = 0.5,
        score_context: bool = True,
        n_samples: int = 3,
        iwae: bool = False,
        kl_warmup_epochs: int = 10,
        max_epochs: int = 100,
        batch_size: int = 50,
        learning_rate: float = 1e-2,
        lr_decay: float = 0.98,
        min_learning_rate: float = 0.0,
        weight_decay: float = 0.0,
        ema_decay: float | None = DEFAULT_EMA_DECAY,
        validation_fraction: float = 0.1,
        early_stopping_patience: int | None = 15,
        max_time: float | None = None,
        checkpoint_path: str | None = None,
        resume: bool = False,
        id_col: str = "id",
        time_col: str = "time",
        variable_col: str | None = None,
        value_col: str | None = None,
        duplicates: str = "mean",
        device: str = "auto",
        dtype: str = "float32",
        random_state: int | None = None,
        verbose: int = 1,
        callbacks: list | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.encoder_dim = encoder_dim
        self.n_layers = n_layers
        self.activation = activation
        self.encoder = encoder
        self.dynamics = dynamics
        self.augment_dim = augment_dim
        self.time_dependent = time_dependent
        self.solver = solver
        self.rtol = rtol
        self.atol = atol
        self.step_size = step_size
        self.encoder_solver = encoder_solver
        self.adjoint = adjoint
        self.grid_step = grid_step
        self.noise_std = noise_std
        self.calibrate_intervals = calibrate_intervals
        self.poisson = poisson
        self.objective = objective
        self.context_fraction = context_fraction
        self.score_context = score_context
        self.n_samples = n_samples
        self.iwae = iwae
        self.kl_warmup_epochs = kl_warmup_epochs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.min_learning_rate = min_learning_rate
        self.weight_decay = weight_decay
        self.ema_decay = ema_decay
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.max_time = max_time
        self.checkpoint_path = checkpoint_path
        self.resume = resume
        self.id_col = id_col
        self.time_col = time_col
        self.variable_col = variable_col
        self.value_col = value_col
        self.duplicates = duplicates
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _build_module(self, n_features: int) -> LatentODEModel:
        return LatentODEModel(
            n_features, self.latent_dim, encoder=self.encoder, dynamics=self.dynamics, hidden_dim=self.hidden_dim,
            encoder_dim=self.encoder_dim, n_layers=self.n_layers, activation=self.activation,
            augment_dim=self.augment_dim, time_dependent=self.time_dependent,
            solver=SolverConfig(self.solver, rtol=self.rtol, atol=self.atol, step_size=self.step_size,
                                adjoint=self.adjoint),
            encoder_solver=SolverConfig(self.encoder_solver), grid_step=self.grid_step,
            noise_std=self.noise_std, poisson=self.poisson,
        )

    def _means(self, context: IrregularBatch, queries: torch.Tensor) -> torch.Tensor:
        return self.module_.predict_means(context, queries, use_mean=True)[0]

    def _after_fit(self, valid: SeriesSet | None) -> None:
        if self.calibrate_intervals and valid is not None:
            generator = torch.Generator(device=self.device_).manual_seed(CALIBRATION_SEED)
            fraction = self.context_fraction if self.objective == "extrapolation" else SCORE_CONTEXT_FRACTION
            batches = (
                make_context_target(valid.to_batch(np.arange(start, min(start + self.batch_size, valid.n_series)),
                                                   dtype=self._dtype(), device=self.device_),
                                    self.objective, fraction, generator, hidden_only=True)
                for start in range(0, valid.n_series, self.batch_size)
            )
            self.module_.calibrate_noise(batches, CALIBRATION_SAMPLES, generator)
        self._set_interval_noise()

    def _set_interval_noise(self) -> None:
        std = self.module_.predictive_noise_std().cpu().numpy().astype(np.float64)
        self.interval_noise_std_ = pd.Series(std * self.feature_scaler_.scale_, index=self.feature_names_in_.tolist())

    def _restore(self, state: dict, module_state: dict, device: str) -> None:
        super()._restore(state, module_state, device)
        self._set_interval_noise()

    def _draws(self, X, times, n_samples: int, random_state, include_noise: bool):
        """Per-series arrays (samples, queries, features) of posterior predictive draws, original units."""
        _check_int("n_samples", n_samples, 1)
        seed = _seed_from(random_state)
        series, scaled, encoded, raw = self._query_batches(X, times)
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        draws = [None] * series.n_series
        noise_std = self.module_.predictive_noise_std()
        with torch.no_grad():
            for positions, context, queries, counts in self._iterate(scaled, encoded):
                means = self.module_.predict_means(context, queries, n_samples=int(n_samples), generator=generator)
                if include_noise:
                    means = means + noise_std * torch.randn(means.shape, generator=generator, device=means.device,
                                                            dtype=means.dtype)
                means = means.cpu().numpy().astype(np.float64)
                for row, p in enumerate(positions):
                    draws[p] = self.feature_scaler_.inverse_transform(means[:, row, : counts[row]])
        return series, raw, draws

    def sample(self, X: pd.DataFrame, times, n_samples: int = 100, *, include_noise: bool = True,
               random_state: int | None = None) -> pd.DataFrame:
        """Posterior predictive draws: z0 ~ q(z0 | X), decoded at ``times``, plus observation noise.

        Returns a DataFrame with columns id, time, ``sample`` (0 .. n_samples-1), then one per feature.
        ``include_noise=False`` gives draws of the noise-free latent trajectory instead.
        """
        series, raw, draws = self._draws(X, times, n_samples, random_state, include_noise)
        n = int(n_samples)
        raw_rep = [pd.concat([r] * n, ignore_index=True) for r in raw]
        values = [d.reshape(-1, d.shape[-1]) for d in draws]
        sample_ids = [np.repeat(np.arange(n), len(r)) for r in raw]
        return to_frame(series.ids, raw_rep, values, self.feature_names_in_.tolist(), self._spec(), long=False,
                        extra={SAMPLE_COLUMN: sample_ids})

    def predict_interval(self, X: pd.DataFrame, times, coverage: float = 0.9, *, n_samples: int = 200,
                         random_state: int | None = None) -> pd.DataFrame:
        """Central posterior predictive interval with the given ``coverage`` at each query time.

        Returns columns id, time, then ``<feature>_lower`` and ``<feature>_upper`` for every feature, from
        quantiles of ``n_samples`` draws of :meth:`sample` (observation noise included).
        """
        _check_real("coverage", coverage, lower=0.0, upper=1.0, lower_open=True, upper_open=True)
        series, raw, draws = self._draws(X, times, n_samples, random_state, True)
        alpha = (1 - coverage) / 2
        names = self.feature_names_in_.tolist()
        lower = [np.quantile(d, alpha, axis=0) for d in draws]
        upper = [np.quantile(d, 1 - alpha, axis=0) for d in draws]
        frame = to_frame(series.ids, raw, [np.concatenate([lo, up], axis=1) for lo, up in zip(lower, upper)],
                         [f"{n}_lower" for n in names] + [f"{n}_upper" for n in names], self._spec(), long=False)
        order = [self.id_col, self.time_col] + [f"{n}_{side}" for n in names for side in ("lower", "upper")]
        return frame[order]

    def transform(self, X: pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """Posterior mean of z0 per series: array (n_series, latent_dim), rows in sorted id order.

        With ``set_output(transform="pandas")`` it is a DataFrame indexed by the series ids instead (one row
        per series, so the index of ``X``, one entry per observation row, cannot be kept).
        """
        series = self._read(X)
        scaled, _ = self._scaled(series)
        out = []
        with torch.no_grad():
            for start in range(0, scaled.n_series, self.batch_size):
                positions = np.arange(start, min(start + self.batch_size, scaled.n_series))
                mean, _ = self.module_.encode(scaled.to_batch(positions, dtype=self._dtype(), device=self.device_))
                out.append(mean.cpu().numpy().astype(np.float64))
        Z = np.concatenate(out, axis=0)
        if _get_output_config("transform", self)["dense"] == "pandas":
            return pd.DataFrame(Z, index=series.ids, columns=self.get_feature_names_out())
        return Z

    def latent_trajectories(self, X: pd.DataFrame, times) -> pd.DataFrame:
        """The latent path z(t) from the posterior mean of z0, at the query ``times`` of each series in ``X``.

        ``times`` takes the forms :meth:`predict` takes. Returns columns id, time, then ``latent0`` ...
        ``latent{d-1}`` (the first ``latent_dim`` state dimensions; augmented ones are left out), rows as in
        :meth:`predict`. At each series' first observed time this is :meth:`transform`'s z0.
        """
        def path(context: IrregularBatch, queries: torch.Tensor) -> torch.Tensor:
            mean, _ = self.module_.encode(context)
            return self.module_.latent_states(mean[None], context.first_times, queries)[0][..., : self.latent_dim]

        series, raw, paths = self._per_series(X, times, path)
        return to_frame(series.ids, raw, paths, self.get_feature_names_out().tolist(), self._spec(), long=False)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        self._check_fitted()
        return np.array([f"latent{i}" for i in range(self.latent_dim)], dtype=object)


class ODERNN(_SeriesEstimator):
    """Deterministic ODE-RNN (and recurrent baselines) with the same DataFrame interface as LatentODE.

    Reads each series forwards; predicts a query time from the state after the last observation strictly
    before it, moved across the gap by a Neural ODE (``cell="ode"``), a GRU step reading the gap
    (``cell="gru_dt"``, "GRU with time gaps") or GRU-D's decay (``cell="gru_d"``). Trained on masked MSE.
    Parameters are those of :class:`LatentODE` that apply, plus ``cell`` and ``hidden_dim`` (GRU state).
    """

    _INT_PARAMS: ClassVar[dict[str, int]] = {**_SeriesEstimator._INT_PARAMS, "hidden_dim": 1, "ode_hidden_dim": 1, "n_layers": 0}

    def __init__(
        self,
        hidden_dim: int = 40,
        *,
        cell: str = "ode",
        ode_hidden_dim: int = 64,
        n_layers: int = 1,
        activation: str = "tanh",
        time_dependent: bool = False,
        solver: str = "euler",
        objective: str = "interpolation",
        context_fraction: float = 0.5,
        max_epochs: int = 100,
        batch_size: int = 50,
        learning_rate: float = 1e-2,
        lr_decay: float = 0.98,
        min_learning_rate: float = 0.0,
        weight_decay: float = 0.0,
        ema_decay: float | None = DEFAULT_EMA_DECAY,
        validation_fraction: float = 0.1,
        early_stopping_patience: int | None = 15,
        max_time: float | None = None,
        checkpoint_path: str | None = None,
        resume: bool = False,
        id_col: str = "id",
        time_col: str = "time",
        variable_col: str | None = None,
        value_col: str | None = None,
        duplicates: str = "mean",
        device: str = "auto",
        dtype: str = "float32",
        random_state: int | None = None,
        verbose: int = 1,
        callbacks: list | None = None,
    ) -> None:
        self.hidden_dim = hidden_dim
        self.cell = cell
        self.ode_hidden_dim = ode_hidden_dim
        self.n_layers = n_layers
        self.activation = activation
        self.time_dependent = time_dependent
        self.solver = solver
        self.objective = objective
        self.context_fraction = context_fraction
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.min_learning_rate = min_learning_rate
        self.weight_decay = weight_decay
        self.ema_decay = ema_decay
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.max_time = max_time
        self.checkpoint_path = checkpoint_path
        self.resume = resume
        self.id_col = id_col
        self.time_col = time_col
        self.variable_col = variable_col
        self.value_col = value_col
        self.duplicates = duplicates
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _build_module(self, n_features: int) -> RecurrentForecaster:
        return RecurrentForecaster(
            n_features, cell=self.cell, hidden_dim=self.hidden_dim, ode_hidden_dim=self.ode_hidden_dim,
            n_layers=self.n_layers, activation=self.activation, solver=SolverConfig(self.solver),
            time_dependent=self.time_dependent,
        )

    def _means(self, context: IrregularBatch, queries: torch.Tensor) -> torch.Tensor:
        return self.module_.predict(context, queries)
