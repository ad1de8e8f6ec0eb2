"""Latent ODE models and recurrent forecasters: invariances, masked losses, and that training learns."""

from __future__ import annotations

import math

import pytest
import torch

from latentode.batch import IrregularBatch
from latentode.latent_model import MIN_INTENSITY, LatentODEModel
from latentode.recurrent import RecurrentForecaster
from latentode.solve import SolverConfig

N_FEATURES = 2

LATENT_MODELS = {
    "latent_ode": {},
    "rnn_encoder": {"encoder": "rnn"},
    "residual": {"dynamics": "residual"},
    "rnn_vae": {"encoder": "rnn", "dynamics": "gru"},
    "poisson": {"poisson": True},
    "augmented": {"augment_dim": 2},
    "learned_noise": {"noise_std": "learned"},
    "iwae": {},
}
"""Keyword arguments of each LatentODEModel variant under test (``iwae`` changes the loss, not the model)."""

CELLS = ("ode", "gru_dt", "gru_d")
ALL_MODELS = sorted(LATENT_MODELS) + [f"recurrent_{cell}" for cell in CELLS]


def make_model(name: str, *, solver: SolverConfig | None = None, dtype=torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    if name.startswith("recurrent_"):
        model = RecurrentForecaster(
            N_FEATURES, cell=name.removeprefix("recurrent_"), hidden_dim=16, ode_hidden_dim=16
        )
    else:
        extra = {} if solver is None else {"solver": solver}
        model = LatentODEModel(N_FEATURES, 4, hidden_dim=16, encoder_dim=16, **LATENT_MODELS[name], **extra)
    return model.to(dtype)


def loss_kwargs(name: str, generator: torch.Generator | None = None) -> dict:
    if name.startswith("recurrent_"):
        return {}
    return {"iwae": name == "iwae", "generator": generator}


def sine_batch(n_series=32, n_points=40, *, seed=0, dtype=torch.float64) -> IrregularBatch:
    """Sines and cosines of random frequency and phase on each series' own irregular times in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(n_series, n_points, generator=generator, dtype=dtype), dim=1).values
    frequency = 0.5 + torch.rand(n_series, 1, generator=generator, dtype=dtype)
    phase = 2 * math.pi * torch.rand(n_series, 1, generator=generator, dtype=dtype)
    angle = 2 * math.pi * frequency * times + phase
    values = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)
    mask = torch.rand(values.shape, generator=generator) < 0.8
    mask[..., 0] |= ~mask.any(-1)
    values = torch.where(mask, values, torch.zeros((), dtype=dtype))
    return IrregularBatch(
        times=times, values=values, mask=mask, lengths=torch.full((n_series,), n_points, dtype=torch.int64)
    )


def split(batch: IrregularBatch, seed: int = 1, keep: float = 0.5) -> tuple[IrregularBatch, IrregularBatch]:
    """Context: a random ``keep`` fraction of each series' points (always its first); target: all of them."""
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(batch.times.shape, generator=generator) < keep
    keep[:, 0] = True
    return batch.select_points(keep), batch


def predict(model, context: IrregularBatch, queries: torch.Tensor) -> torch.Tensor:
    """Deterministic predictions (batch, queries, features)."""
    if isinstance(model, RecurrentForecaster):
        return model.predict(context, queries)
    return model.predict_means(context, queries, use_mean=True)[0]


def masked_mse(predicted: torch.Tensor, target: IrregularBatch) -> float:
    squared = torch.where(
        target.mask, (predicted - target.values) ** 2, torch.zeros((), dtype=predicted.dtype)
    )
    return float(squared.sum() / target.mask.sum())


# -- invariances -----------------------------------------------------------------------------------------

INVARIANCE_SOLVERS = {
    "rk4": (SolverConfig("rk4"), 1e-10),
    "dopri5": (SolverConfig("dopri5", rtol=1e-7, atol=1e-9), 1e-5),
}
"""Latent solver of the invariance tests, and the tolerance it keeps them to."""


def _invariance_cases():
    for name in ALL_MODELS:
        if name.startswith("recurrent_"):
            yield name, "rk4"
        else:
            for solver in sorted(INVARIANCE_SOLVERS):
                yield name, solver


@pytest.mark.parametrize(("name", "solver"), list(_invariance_cases()))
def test_query_time_invariance(name, solver):
    """Predictions at [a, b, c] equal those at [a] and at [b, c] asked separately."""
    config, atol = INVARIANCE_SOLVERS[solver]
    model = make_model(name, solver=config).eval()
    context, _ = split(sine_batch(4, 10))
    generator = torch.Generator().manual_seed(7)
    # Per series: one time before the context starts, one inside, one after it ends.
    queries = torch.stack(
        [
            context.first_times - 0.1 * torch.rand(4, generator=generator, dtype=torch.float64),
            context.first_times + 0.5 * torch.rand(4, generator=generator, dtype=torch.float64),
            context.last_times + 0.3 * torch.rand(4, generator=generator, dtype=torch.float64),
        ],
        dim=1,
    )
    with torch.no_grad():
        together = predict(model, context, queries)
        apart = torch.cat(
            [predict(model, context, queries[:, :1]), predict(model, context, queries[:, 1:])], 1
        )
        reversed_order = predict(model, context, queries.flip(1)).flip(1)
    assert together.shape == (4, 3, N_FEATURES)
    assert torch.allclose(together, apart, atol=atol, rtol=0), float((together - apart).abs().max())
    assert torch.allclose(together, reversed_order, atol=atol, rtol=0)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_permuting_series_permutes_predictions(name):
    model = make_model(name).eval()
    context, target = split(sine_batch(5, 8))
    order = torch.tensor([3, 0, 4, 2, 1])
    with torch.no_grad():
        out = predict(model, context, target.times)
        permuted = predict(model, context.index(order), target.times[order])
    assert torch.allclose(permuted, out[order], atol=1e-6, rtol=0)


@pytest.mark.parametrize("junk", ["large", "nan"])
@pytest.mark.parametrize("name", ALL_MODELS)
def test_loss_is_finite_and_uses_only_observed_targets(name, junk):
    model = make_model(name)
    context, target = split(sine_batch(6, 12))
    noise = 50 * torch.randn(target.values.shape, dtype=torch.float64)
    garbage = torch.where(target.mask, target.values, noise if junk == "large" else torch.full_like(noise, float("nan")))
    dirty = IrregularBatch(times=target.times, values=garbage, mask=target.mask, lengths=target.lengths)
    terms = model.loss(context, target, **loss_kwargs(name, torch.Generator().manual_seed(0)))
    dirty_terms = model.loss(context, dirty, **loss_kwargs(name, torch.Generator().manual_seed(0)))
    for field in ("loss", "log_likelihood", "kl", "mse"):
        value = getattr(terms, field)
        assert value.shape == () and bool(torch.isfinite(value)), field
        assert torch.equal(value, getattr(dirty_terms, field)), field
    assert terms.n_observed == int(target.mask.sum())
    terms.loss.backward()
    for parameter_name, parameter in model.named_parameters():
        if parameter.grad is not None:
            assert bool(torch.isfinite(parameter.grad).all()), parameter_name


@pytest.mark.parametrize("name", ["recurrent_ode", "recurrent_gru_dt", "recurrent_gru_d", "latent_ode"])
def test_context_time_points_with_nothing_observed_change_nothing(name):
    """An all-masked context time point (not the first) is ignored by the models' readers."""
    model = make_model(name, solver=SolverConfig("rk4")).eval()
    batch = sine_batch(3, 8)
    empty = torch.zeros(3, 8, dtype=torch.bool)
    empty[:, 4] = True  # interior
    empty[0, 7] = True  # trailing
    hollow_mask = batch.mask & ~empty[..., None]
    hollow = IrregularBatch(
        times=batch.times,
        values=torch.where(hollow_mask, batch.values, 0.0),
        mask=hollow_mask,
        lengths=batch.lengths,
    )
    dropped = batch.select_points(~empty)
    queries = torch.stack([batch.times[:, 2], batch.times[:, 4] + 0.01, batch.times[:, -1] + 0.2], 1)
    with torch.no_grad():
        assert torch.allclose(predict(model, hollow, queries), predict(model, dropped, queries), atol=1e-10)


# -- training learns ---------------------------------------------------------------------------------------


TRAINING_SIZES = {"latent_dim": 8, "hidden_dim": 32, "encoder_dim": 16}
"""Sizes of the latent models in the training test (small models plateau too long at the data's mean)."""


@pytest.mark.parametrize("name", ALL_MODELS)
def test_training_reduces_error(name):
    """50 Adam steps on 32 sines of 40 irregular points bring the error well below its starting value."""
    dtype = torch.float32
    batch = sine_batch(32, 40, dtype=dtype)
    context, target = split(batch, keep=0.3)
    torch.manual_seed(0)
    if name.startswith("recurrent_"):
        model = make_model(name, dtype=dtype)
    else:
        model = LatentODEModel(
            N_FEATURES, **TRAINING_SIZES, solver=SolverConfig("rk4"), grid_step=0.1, **LATENT_MODELS[name]
        )
    if name == "poisson":
        # Start the intensity at the data's event rate (about 32 observations per feature per unit time), as
        # one starts a bias at the data's mean; from softplus(0) the model inflates z0 to raise the intensity
        # before it learns the values.
        rate = (target.mask.sum(1) / (target.last_times - target.first_times)[:, None]).mean(0)
        with torch.no_grad():
            model.intensity.bias.copy_(torch.log(torch.expm1(rate)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        initial = masked_mse(predict(model, context, target.times), target)
    for _ in range(50):
        optimizer.zero_grad()
        terms = model.loss(context, target, **loss_kwargs(name, generator))
        terms.loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = masked_mse(predict(model, context, target.times), target)
    assert math.isfinite(final)
    assert final < 0.8 * initial, f"{name}: mse {initial:.3f} -> {final:.3f}"


# -- construction --------------------------------------------------------------------------------------------


def test_gru_d_decay_parameters_are_initialised():
    first, second = make_model("recurrent_gru_d", seed=3), make_model("recurrent_gru_d", seed=3)
    for name in ("input_decay_weight", "input_decay_bias", "hidden_decay.weight", "hidden_decay.bias"):
        a, b = first.get_parameter(name), second.get_parameter(name)
        assert bool(torch.isfinite(a).all()), name
        assert torch.equal(a, b), f"{name} is not deterministic given the seed"
    # Freshly built decays keep imputed inputs and the hidden state bounded: gamma in (0, 1].
    gaps = torch.rand(5, N_FEATURES, dtype=torch.float64) * 10
    gamma = first._hidden_decay(gaps)
    assert bool(((gamma > 0) & (gamma <= 1)).all())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoder": "cnn"}, "Invalid encoder"),
        ({"dynamics": "sde"}, "Invalid dynamics"),
        ({"dynamics": "gru", "poisson": True}, "poisson"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"noise_std": "fitted"}, "noise_std"),
    ],
)
def test_latent_model_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatentODEModel(N_FEATURES, 4, **kwargs)


def test_recurrent_rejects_unknown_cell():
    with pytest.raises(ValueError, match="Invalid cell"):
        RecurrentForecaster(N_FEATURES, cell="lstm")


def test_poisson_states_carry_nondecreasing_integrated_intensity():
    model = make_model("poisson", solver=SolverConfig("rk4"))
    context, _ = split(sine_batch(3, 10))
    queries = torch.sort(torch.rand(3, 6, dtype=torch.float64), dim=1).values + context.first_times[:, None]
    with torch.no_grad():
        mean, _ = model.encode(context)
        states = model.latent_states(mean[None], context.first_times, queries)
    integral = states[..., model.state_dim :]
    assert integral.shape == (1, 3, 6, N_FEATURES)
    assert bool((integral.diff(dim=2) >= 0).all()) and bool((integral >= 0).all())


@pytest.mark.parametrize("dynamics", ["ode", "residual"])
@pytest.mark.parametrize("grid_step", [0.02, 0.1])
def test_poisson_integral_of_a_constant_intensity_is_rate_times_time(dynamics, grid_step):
    # Zero intensity weights: lambda = softplus(0) = log 2 everywhere, so Lambda(1) - Lambda(0) = log 2,
    # whatever the dynamics and the grid.
    torch.manual_seed(0)
    model = LatentODEModel(1, 2, dynamics=dynamics, poisson=True, grid_step=grid_step,
                           solver=SolverConfig("rk4")).double()
    with torch.no_grad():
        model.intensity.weight.zero_()
        model.intensity.bias.zero_()
        states = model.latent_states(torch.zeros(1, 1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                                     torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    assert float(states[0, 0, 1, -1] - states[0, 0, 0, -1]) == pytest.approx(math.log(2) + MIN_INTENSITY, rel=1e-9)
