"""The training loop: history, KL annealing, learning-rate schedule, validation and early stopping,
checkpoints with resume and interruption, progress bar, determinism, context/target splits."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, make_small
from torch import nn

import latentode.estimator as estimator_module
from latentode import LatentODE, NotFittedError
from latentode.data import FrameSpec, read_frame
from latentode.exceptions import SolverError
from latentode.latent_model import LatentODEModel, LossTerms
from latentode.training import (
    CHECKPOINT_FORMAT,
    EMA_WARMUP_STEPS,
    Callback,
    Checkpoint,
    EarlyStopping,
    TrainConfig,
    Trainer,
    make_context_target,
)

HISTORY_KEYS = {"epoch", "train_loss", "train_mse", "kl", "kl_weight", "nfe", "lr", "valid_loss", "valid_mse", "seconds"}


def losses(history):
    """Every number of a history except the wall-clock seconds."""
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# ---------------------------------------------------------------------------------------------------------
# history, KL annealing, learning-rate schedule


def test_history_records_every_epoch(small):
    model = LatentODE(**{**TINY, "max_epochs": 3}).fit(small)
    assert len(model.history_) == model.n_epochs_ == 3
    assert [h["epoch"] for h in model.history_] == [1, 2, 3]
    for record in model.history_:
        assert set(record) == HISTORY_KEYS
        assert all(math.isfinite(v) for v in record.values())
        assert record["seconds"] > 0 and record["nfe"] > 0 and record["kl"] >= 0
    assert 1 <= model.best_epoch_ <= 3


def test_kl_annealing(small):
    model = LatentODE(**{**TINY, "max_epochs": 5, "kl_warmup_epochs": 3, "batch_size": 4}).fit(small)
    weights = [h["kl_weight"] for h in model.history_]
    assert weights[0] < weights[1] < weights[2] < 1.0
    assert weights[3] == weights[4] == 1.0
    no_warmup = LatentODE(**{**TINY, "kl_warmup_epochs": 0}).fit(small)
    assert [h["kl_weight"] for h in no_warmup.history_] == [1.0, 1.0]


def test_learning_rate_schedule(small):
    model = LatentODE(**{**TINY, "max_epochs": 4, "learning_rate": 0.01, "lr_decay": 0.5}).fit(small)
    np.testing.assert_allclose([h["lr"] for h in model.history_], [0.01, 0.005, 0.0025, 0.00125])


def test_learning_rate_decay_stops_at_its_floor(small):
    params = {**TINY, "max_epochs": 5, "learning_rate": 0.01, "lr_decay": 0.5, "min_learning_rate": 0.002}
    model = LatentODE(**params).fit(small)
    np.testing.assert_allclose([h["lr"] for h in model.history_], [0.01, 0.005, 0.0025, 0.002, 0.002])


def test_odernn_history(small):
    model = estimator_module.ODERNN(hidden_dim=8, cell="gru_dt", max_epochs=2, random_state=0, verbose=0).fit(small)
    assert [h["nfe"] for h in model.history_] == [0, 0]
    assert set(model.history_[0]) == HISTORY_KEYS


# ---------------------------------------------------------------------------------------------------------
# validation split and early stopping


@pytest.fixture
def captured_trainers(monkeypatch):
    """Records every Trainer the estimators build."""
    made = []

    class Recording(Trainer):
        def __post_init__(self):
            super().__post_init__()
            made.append(self)

    monkeypatch.setattr(estimator_module, "Trainer", Recording)
    return made


def test_validation_split_is_by_series(small, captured_trainers):
    frame = make_small(30, seed=1)
    LatentODE(**{**TINY, "validation_fraction": 0.2}).fit(frame)
    trainer = captured_trainers[-1]
    train_ids, valid_ids = set(trainer.train.ids), set(trainer.valid.ids)
    assert len(valid_ids) == 6 and len(train_ids) == 24
    assert not train_ids & valid_ids
    assert train_ids | valid_ids == set(frame["id"])
    # Whole series: every row of a validation series is in the validation set.
    assert len(trainer.valid.times) == frame["id"].isin(valid_ids).sum()


def test_no_validation_split_for_few_series(captured_trainers):
    frame = make_small(estimator_module.MIN_SERIES_FOR_VALIDATION - 1)
    model = LatentODE(**TINY).fit(frame)
    assert captured_trainers[-1].valid is None
    assert [h["valid_loss"] for h in model.history_] == [h["train_loss"] for h in model.history_]
    LatentODE(**{**TINY, "validation_fraction": 0.0}).fit(make_small(20))
    assert captured_trainers[-1].valid is None


def test_early_stopping_stops_when_validation_stalls(small):
    # A learning rate far below float32 resolution leaves the weights, hence the validation loss, unchanged.
    model = LatentODE(**{**TINY, "max_epochs": 20, "learning_rate": 1e-12, "early_stopping_patience": 2}).fit(small)
    assert model.n_epochs_ == 3
    assert model.best_epoch_ == 1
    assert len(model.history_) == 3


def test_without_early_stopping_the_model_holds_the_last_epoch(small):
    model = LatentODE(**{**TINY, "max_epochs": 3, "early_stopping_patience": None}).fit(small)
    assert model.n_epochs_ == model.best_epoch_ == 3


def test_early_stopping_restores_best_weights():
    module = nn.Linear(2, 1)
    trainer = SimpleNamespace(module=module, best_loss=None, best_epoch=0, best_state=None, stop=False)
    callback = EarlyStopping(patience=2)
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.6], start=1):
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        callback.on_epoch_end(trainer, {"epoch": epoch, "valid_loss": loss})
        assert trainer.stop == (epoch == 4)
    callback.on_epoch_end(trainer, {"epoch": 5, "valid_loss": float("nan")})  # ignored
    assert (trainer.best_epoch, trainer.best_loss) == (2, 2.0)
    callback.on_train_end(trainer)
    assert torch.all(module.weight == 2.0)


def test_max_time_stops_training(small):
    model = LatentODE(**{**TINY, "max_epochs": 50, "max_time": 0.0}).fit(small)
    assert model.n_epochs_ == 1


# ---------------------------------------------------------------------------------------------------------
# weight average


class RecordWeights(Callback):
    """The parameters at the start of training, after every step, and as the epoch-end callbacks see them."""

    def __init__(self):
        self.initial, self.steps, self.at_epoch_end = None, [], []

    def on_train_begin(self, trainer):
        self.initial = [p.detach().clone() for p in trainer.module.parameters()]

    def on_batch_end(self, trainer, loss):
        self.steps.append([p.detach().clone() for p in trainer.module.parameters()])

    def on_epoch_end(self, trainer, record):
        self.at_epoch_end.append([p.detach().clone() for p in trainer.module.parameters()])


def moving_average(initial, steps, decay):
    average = [p.clone() for p in initial]
    for n, weights in enumerate(steps):
        d = min(decay, (1 + n) / (EMA_WARMUP_STEPS + n))
        average = [d * a + (1 - d) * w for a, w in zip(average, weights)]
    return average


def test_the_fitted_model_is_the_moving_average_of_the_steps(small):
    record = RecordWeights()
    params = {**TINY, "max_epochs": 4, "batch_size": 8, "early_stopping_patience": None, "ema_decay": 0.8}
    model = LatentODE(**{**params, "callbacks": [record]}).fit(small)
    steps_per_epoch = len(record.steps) // 4
    fitted = [p.detach() for p in model.module_.parameters()]
    for got, expected in zip(fitted, moving_average(record.initial, record.steps, 0.8)):
        torch.testing.assert_close(got, expected)
    assert any(not torch.equal(got, last) for got, last in zip(fitted, record.steps[-1]))
    # Epoch-end callbacks (and validation) see the average of the steps so far; training goes on from the
    # steps' own weights, so the average changes nothing in the training losses.
    for epoch, seen in enumerate(record.at_epoch_end, start=1):
        expected = moving_average(record.initial, record.steps[: epoch * steps_per_epoch], 0.8)
        for got, want in zip(seen, expected):
            torch.testing.assert_close(got, want)
    plain = LatentODE(**{**params, "ema_decay": None}).fit(small)
    assert [h["train_loss"] for h in plain.history_] == [h["train_loss"] for h in model.history_]


def test_without_weight_average_the_model_holds_the_last_step(small):
    record = RecordWeights()
    model = LatentODE(**{**TINY, "ema_decay": None, "early_stopping_patience": None, "callbacks": [record]}).fit(small)
    for got, last in zip(model.module_.parameters(), record.steps[-1]):
        assert torch.equal(got.detach(), last)


def test_checkpoint_holds_the_steps_weights_and_their_average(small, tmp_path):
    record = RecordWeights()
    path = tmp_path / "checkpoint.pt"
    model = LatentODE(**{**TINY, "max_epochs": 3, "early_stopping_patience": None, "checkpoint_path": str(path),
                         "callbacks": [record]}).fit(small)
    state = torch.load(path, weights_only=True)
    names = [name for name, _ in model.module_.named_parameters()]
    for name, last, average, fitted in zip(names, record.steps[-1], state["average"], model.module_.parameters()):
        assert torch.equal(state["module"][name], last)
        assert torch.equal(average, fitted.detach())


# ---------------------------------------------------------------------------------------------------------
# determinism, device, progress bar


def test_fit_is_deterministic_on_cpu(small):
    params = {**TINY, "device": "cpu", "max_epochs": 3}
    first = LatentODE(**params).fit(small)
    second = LatentODE(**params).fit(small)
    times = [-1.0, 0.3, 4.2, 12.0]
    pd.testing.assert_frame_equal(first.predict(small, times), second.predict(small, times))
    assert losses(first.history_) == losses(second.history_)
    other = LatentODE(**{**params, "random_state": 1}).fit(small)
    assert not np.allclose(other.predict(small, times)[["a", "b"]], first.predict(small, times)[["a", "b"]])


def test_fit_does_not_touch_global_torch_rng(small):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    LatentODE(**TINY).fit(small)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda_is_refused(small):
    with pytest.raises(ValueError, match="CUDA is not available"):
        LatentODE(**{**TINY, "device": "cuda"}).fit(small)


def test_verbose_zero_is_silent(small, capfd):
    LatentODE(**TINY).fit(small)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_verbose_shows_progress_bar(small, capfd):
    LatentODE(**{**TINY, "verbose": 1}).fit(small)
    _, err = capfd.readouterr()
    assert "epoch" in err


# ---------------------------------------------------------------------------------------------------------
# checkpoints, resume, interruption


def test_resume_continues_from_checkpoint(small, tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    first = LatentODE(**{**TINY, "max_epochs": 2, "checkpoint_path": str(path)}).fit(small)
    assert path.exists()
    resumed = LatentODE(**{**TINY, "max_epochs": 4, "checkpoint_path": str(path), "resume": True}).fit(small)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    assert losses(resumed.history_[:2]) == losses(first.history_)
    # Continuing is the same as never having stopped.
    straight = LatentODE(**{**TINY, "max_epochs": 4}).fit(small)
    assert losses(resumed.history_) == losses(straight.history_)
    pd.testing.assert_frame_equal(resumed.predict(small, [0.5, 7.0]), straight.predict(small, [0.5, 7.0]))


def test_resume_without_random_state_keeps_the_split(small, tmp_path, captured_trainers):
    path = str(tmp_path / "checkpoint.pt")
    params = {**TINY, "random_state": None, "checkpoint_path": path}
    first = LatentODE(**{**params, "max_epochs": 2}).fit(small)
    resumed = LatentODE(**{**params, "max_epochs": 3, "resume": True}).fit(small)
    before, after = captured_trainers
    assert before.seed == after.seed
    assert list(before.valid.ids) == list(after.valid.ids)
    assert losses(resumed.history_[:2]) == losses(first.history_)


def test_resume_without_checkpoint_starts_fresh(small, tmp_path):
    path = tmp_path / "missing.pt"
    model = LatentODE(**{**TINY, "checkpoint_path": str(path), "resume": True}).fit(small)
    assert len(model.history_) == TINY["max_epochs"]
    assert path.exists()


def test_resume_refuses_checkpoint_of_other_settings(small, tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    LatentODE(**{**TINY, "checkpoint_path": path}).fit(small)
    with pytest.raises(ValueError, match="different data or settings"):
        LatentODE(**{**TINY, "latent_dim": 3, "checkpoint_path": path, "resume": True}).fit(small)
    with pytest.raises(ValueError, match="different data or settings"):
        LatentODE(**{**TINY, "checkpoint_path": path, "resume": True}).fit(make_small(12, seed=9))


@pytest.mark.parametrize(
    "change",
    [
        lambda df: df.assign(a=df["a"] * 100 + 5),  # same shape, other values
        lambda df: df.assign(time=df["time"] * 60),  # same shape, other times
        lambda df: df.assign(id=df["id"] + 1000),  # same shape, other ids
    ],
    ids=["values", "times", "ids"],
)
def test_resume_refuses_a_checkpoint_written_for_other_data_of_the_same_shape(small, tmp_path, change):
    path = str(tmp_path / "checkpoint.pt")
    LatentODE(**{**TINY, "checkpoint_path": path}).fit(small)
    with pytest.raises(ValueError, match="different data or settings"):
        LatentODE(**{**TINY, "checkpoint_path": path, "resume": True}).fit(change(small))


def test_resuming_a_fit_that_early_stopping_ended_changes_nothing(small, tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    params = {**TINY, "learning_rate": 1e-12, "early_stopping_patience": 2, "max_epochs": 20, "checkpoint_path": path}
    stopped = LatentODE(**params).fit(small)
    assert stopped.n_epochs_ < 20
    resumed = LatentODE(**{**params, "resume": True}).fit(small)
    assert resumed.n_epochs_ == stopped.n_epochs_ and resumed.best_epoch_ == stopped.best_epoch_
    pd.testing.assert_frame_equal(resumed.predict(small, [0.5, 7.0]), stopped.predict(small, [0.5, 7.0]))


def test_scalers_are_fitted_on_the_training_series_only(small, captured_trainers):
    model = LatentODE(**{**TINY, "validation_fraction": 0.3}).fit(small)
    (trainer,) = captured_trainers
    train_ids = set(trainer.train.ids)
    rows = small[small["id"].isin(train_ids)]
    np.testing.assert_allclose(model.feature_scaler_.mean_, rows[["a", "b"]].mean().to_numpy())
    assert not np.allclose(model.feature_scaler_.mean_, small[["a", "b"]].mean().to_numpy())


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a checkpoint", "unreadable"),
        ({"format": 99}, "format"),
        ({"format": CHECKPOINT_FORMAT, "epoch": 3}, "lacks"),
        ({"format": 2, "epoch": 3}, "format"),  # before the weight average
        ({"format": 1, "epoch": 3}, "format"),
    ],
)
def test_resume_refuses_unusable_checkpoint(small, tmp_path, content, match):
    path = tmp_path / "checkpoint.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError, match=match):
        LatentODE(**{**TINY, "checkpoint_path": str(path), "resume": True}).fit(small)


def interrupt_training_step(monkeypatch, at_call: int) -> None:
    """Make the ``at_call``-th training step (gradient-enabled loss evaluation) raise KeyboardInterrupt."""
    original = LatentODEModel.loss
    calls = {"n": 0}

    def loss(self, *args, **kwargs):
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == at_call:
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LatentODEModel, "loss", loss)


@pytest.mark.parametrize("interrupted_epoch", [1, 3])
def test_interrupted_fit_leaves_checkpoint_and_resumes(small, tmp_path, monkeypatch, interrupted_epoch):
    path = str(tmp_path / "checkpoint.pt")
    params = {**TINY, "batch_size": 32, "checkpoint_path": path}  # one training step per epoch
    interrupt_training_step(monkeypatch, at_call=interrupted_epoch)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        model = LatentODE(**{**params, "max_epochs": 5}).fit(small)
    monkeypatch.undo()
    assert model.n_epochs_ == interrupted_epoch - 1
    assert torch.load(path, weights_only=True)["epoch"] == interrupted_epoch - 1
    if interrupted_epoch > 1:
        assert np.isfinite(model.predict(small, [1.0])[["a", "b"]].to_numpy()).all()
    else:
        assert model.history_ == []
    resumed = LatentODE(**{**params, "max_epochs": 4, "resume": True}).fit(small)
    straight = LatentODE(**{**params, "max_epochs": 4, "checkpoint_path": None}).fit(small)
    assert losses(resumed.history_) == losses(straight.history_)
    # The weight average continues too: the resumed model is the uninterrupted one.
    pd.testing.assert_frame_equal(resumed.predict(small, [0.5, 3.0]), straight.predict(small, [0.5, 3.0]))


def test_interrupt_from_a_callback_keeps_completed_epoch(small, tmp_path):
    """A KeyboardInterrupt raised in a callback after an epoch ends still checkpoints that epoch."""

    class Interrupt(Checkpoint):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                raise KeyboardInterrupt

    series = read_frame(small, FrameSpec())
    module = LatentODEModel(2, 2, hidden_dim=8, encoder_dim=8, n_layers=1)
    path = tmp_path / "checkpoint.pt"
    callbacks = [Interrupt(tmp_path / "unused.pt", every=100), Checkpoint(path, every=100)]
    trainer = Trainer(module, TrainConfig(max_epochs=5), series, None, torch.device("cpu"), torch.float32, 0,
                      callbacks)
    with pytest.warns(RuntimeWarning, match="interrupted after 2 completed epochs"):
        trainer.fit()
    assert torch.load(path, weights_only=True)["epoch"] == 2


def test_failed_fit_leaves_estimator_unfitted(small, monkeypatch):
    original = LatentODEModel.loss

    def nan_loss(self, *args, **kwargs):
        terms = original(self, *args, **kwargs)
        return LossTerms(terms.loss * float("nan"), terms.log_likelihood, terms.kl, terms.mse, terms.n_observed)

    monkeypatch.setattr(LatentODEModel, "loss", nan_loss)
    model = LatentODE(**TINY)
    with pytest.raises(FloatingPointError, match="learning_rate"):
        model.fit(small)
    with pytest.raises(NotFittedError):
        model.predict(small, [1.0])


# ---------------------------------------------------------------------------------------------------------
# configuration and context / target splits


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"objective": "forecast"}, "objective"),
        ({"context_fraction": 0.0}, "context_fraction"),
        ({"context_fraction": 1.5}, "context_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_samples": 0}, "n_samples"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"lr_decay": 1.5}, "lr_decay"),
        ({"min_learning_rate": -1e-3}, "min_learning_rate"),
        ({"learning_rate": 1e-3, "min_learning_rate": 1e-2}, "min_learning_rate"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": -0.5}, "ema_decay"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_checkpoint_every_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="every"):
        Checkpoint(tmp_path / "c.pt", every=0)


@pytest.fixture(scope="module")
def batch():
    frame = pd.concat([make_small(6, seed=2), pd.DataFrame({"id": [99], "time": [1.0], "a": [0.1], "b": [0.2]})])
    return read_frame(frame, FrameSpec()).to_batch()


def point_sets(b):
    """Per series, the set of its valid times."""
    return [set(b.times[i, : b.lengths[i]].tolist()) for i in range(b.batch_size)]


def test_interpolation_context_target(batch):
    generator = torch.Generator().manual_seed(0)
    context, target = make_context_target(batch, "interpolation", 0.5, generator)
    assert target is batch
    assert (context.lengths >= 1).all() and (context.lengths <= batch.lengths).all()
    for kept, full in zip(point_sets(context), point_sets(batch)):
        assert kept <= full
    assert make_context_target(batch, "interpolation", 1.0) == (batch, batch)


def test_interpolation_hidden_only_targets(batch):
    generator = torch.Generator().manual_seed(0)
    context, target = make_context_target(batch, "interpolation", 0.5, generator, hidden_only=True)
    for kept, hidden, full, n in zip(point_sets(context), point_sets(target), point_sets(batch), batch.lengths):
        if n > 1:
            assert not kept & hidden and kept | hidden == full
        else:
            assert kept == hidden == full


def test_extrapolation_context_target(batch):
    context, target = make_context_target(batch, "extrapolation", 0.5)
    for i, n in enumerate(batch.lengths.tolist()):
        kept, future = sorted(point_sets(context)[i]), sorted(point_sets(target)[i])
        if n > 1:
            assert len(kept) == math.ceil(0.5 * n) and kept[-1] < future[0]
            assert set(kept) | set(future) == point_sets(batch)[i]
        else:
            assert kept == future


def test_extrapolation_can_score_the_context_too(batch):
    context, target = make_context_target(batch, "extrapolation", 0.5, score_context=True)
    plain_context, _ = make_context_target(batch, "extrapolation", 0.5)
    assert point_sets(context) == point_sets(plain_context)
    assert point_sets(target) == point_sets(batch)
    # Interpolation's target already holds every point; scoring, with hidden_only, never the context.
    assert point_sets(make_context_target(batch, "interpolation", 0.5, score_context=True)[1]) == point_sets(batch)


def test_estimator_trains_on_the_context_when_extrapolating(small, monkeypatch):
    seen = []
    original = LatentODEModel.loss

    def loss(self, context, target, **kwargs):
        if torch.is_grad_enabled():
            seen.append(int(target.lengths.sum()) - int(context.lengths.sum()))
        return original(self, context, target, **kwargs)

    monkeypatch.setattr(LatentODEModel, "loss", loss)
    params = {**TINY, "objective": "extrapolation", "max_epochs": 1, "batch_size": 32}
    LatentODE(**params).fit(small)
    with_context = seen.pop()
    LatentODE(**{**params, "score_context": False}).fit(small)
    future_only = seen.pop()
    # With the context scored, the target holds every point: more than the context by the future's count.
    assert with_context > 0 >= future_only


def test_solver_failure_in_the_backward_pass_is_a_solver_error(small, monkeypatch):
    # An adjoint solve runs in the backward pass; torchdiffeq's step-size assertion there must come out as a
    # SolverError with advice, as it does from a forward solve.
    class FailsBackwards(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            raise AssertionError("underflow in dt 1e-20")

    original = LatentODEModel.loss

    def loss(self, *args, **kwargs):
        terms = original(self, *args, **kwargs)
        return dataclasses.replace(terms, loss=FailsBackwards.apply(terms.loss))

    monkeypatch.setattr(LatentODEModel, "loss", loss)
    with pytest.raises(SolverError, match="underflow"):
        LatentODE(**TINY).fit(small)
