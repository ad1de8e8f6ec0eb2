"""The ODE-RNN / RNN recognition network as properties: masks, padding, permutations, batching."""

from __future__ import annotations

import pytest
import torch

from latentode.batch import IrregularBatch
from latentode.encoders import ODERNNEncoder
from latentode.solve import SolverConfig

N_FEATURES = 3
LATENT = 4
GAPS = ("ode", "input")
SOLVERS = {"euler": SolverConfig("euler"), "rk4": SolverConfig("rk4", step_size=0.25)}


def make_batch(series, dtype=torch.float64) -> IrregularBatch:
    """Pad ``series``, a list of (times (L,), values (L, F), mask (L, F)), into a batch.

    Padding repeats each series' last time, with zero values and a False mask.
    """
    width = max(len(t) for t, _, _ in series)
    n_features = series[0][1].shape[1]
    times = torch.zeros(len(series), width, dtype=dtype)
    values = torch.zeros(len(series), width, n_features, dtype=dtype)
    mask = torch.zeros(len(series), width, n_features, dtype=torch.bool)
    for i, (t, v, m) in enumerate(series):
        n = len(t)
        times[i, :n], times[i, n:] = t, t[-1]
        values[i, :n] = torch.where(m, v, torch.zeros((), dtype=dtype))
        mask[i, :n] = m
    lengths = torch.tensor([len(t) for t, _, _ in series])
    return IrregularBatch(times=times, values=values, mask=mask, lengths=lengths)


def random_series(lengths, *, seed=0, dtype=torch.float64):
    """Series of the given lengths on their own sorted times in [0, 1]; each point observes >= 1 feature."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        t = torch.sort(torch.rand(n, generator=generator, dtype=dtype)).values
        v = torch.randn(n, N_FEATURES, generator=generator, dtype=dtype)
        m = torch.rand(n, N_FEATURES, generator=generator) < 0.5
        m[torch.arange(n), torch.randint(0, N_FEATURES, (n,), generator=generator)] = True
        out.append((t, v, m))
    return out


def make_encoder(gap: str, solver: SolverConfig = SOLVERS["euler"], **kwargs) -> ODERNNEncoder:
    torch.manual_seed(0)
    encoder = ODERNNEncoder(
        N_FEATURES, LATENT, hidden_dim=8, ode_hidden_dim=16, gap=gap, solver=solver, **kwargs
    )
    return encoder.double()


def assert_close(a, b, atol=1e-10):
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, atol=atol, rtol=0), float((x - y).abs().max())


@pytest.mark.parametrize("gap", GAPS)
def test_output_shapes_and_positive_std(gap):
    batch = make_batch(random_series([5, 3, 7]))
    mean, std = make_encoder(gap)(batch)
    assert mean.shape == std.shape == (3, LATENT)
    assert mean.dtype == torch.float64
    assert bool((std > 0).all()) and bool(torch.isfinite(mean).all())


def test_invalid_gap_raises():
    with pytest.raises(ValueError, match="Invalid gap"):
        ODERNNEncoder(N_FEATURES, LATENT, gap="jump")


@pytest.mark.parametrize("junk", ["large", "nan", "inf"])
@pytest.mark.parametrize("gap", GAPS)
def test_masked_out_values_do_not_matter(gap, junk):
    batch = make_batch(random_series([5, 3, 7]))
    generator = torch.Generator().manual_seed(3)
    garbage = 1e3 * torch.randn(batch.values.shape, generator=generator, dtype=torch.float64)
    if junk != "large":
        garbage = torch.full_like(garbage, float(junk))
    dirty = IrregularBatch(
        times=batch.times,
        values=torch.where(batch.mask, batch.values, garbage),
        mask=batch.mask,
        lengths=batch.lengths,
    )
    encoder = make_encoder(gap)
    clean_out, dirty_out = encoder(batch), encoder(dirty)
    assert torch.equal(clean_out[0], dirty_out[0]) and torch.equal(clean_out[1], dirty_out[1])


@pytest.mark.parametrize("gap", GAPS)
def test_permuting_series_permutes_outputs(gap):
    series = random_series([5, 3, 7, 4])
    encoder = make_encoder(gap)
    mean, std = encoder(make_batch(series))
    order = [2, 0, 3, 1]
    permuted_mean, permuted_std = encoder(make_batch([series[i] for i in order]))
    assert_close((permuted_mean, permuted_std), (mean[order], std[order]), atol=1e-12)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("gap", GAPS)
def test_batched_equals_one_series_at_a_time(gap, solver):
    """Putting a series in a batch with longer ones (so it gets padded) changes nothing."""
    series = random_series([5, 1, 8, 3])
    encoder = make_encoder(gap, SOLVERS[solver])
    mean, std = encoder(make_batch(series))
    for i, one in enumerate(series):
        alone_mean, alone_std = encoder(make_batch([one]))
        assert_close((mean[i], std[i]), (alone_mean[0], alone_std[0]))


@pytest.mark.parametrize("gap", GAPS)
def test_appended_padding_changes_nothing(gap):
    batch = make_batch(random_series([5, 3]))
    extra = 4
    padded = IrregularBatch(
        times=torch.cat([batch.times, batch.last_times[:, None].expand(-1, extra)], dim=1),
        values=torch.cat([batch.values, torch.zeros(2, extra, N_FEATURES, dtype=torch.float64)], dim=1),
        mask=torch.cat([batch.mask, torch.zeros(2, extra, N_FEATURES, dtype=torch.bool)], dim=1),
        lengths=batch.lengths,
    )
    encoder = make_encoder(gap)
    assert_close(encoder(batch), encoder(padded), atol=0)


@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize("where", ["interior", "trailing"])
def test_time_points_with_nothing_observed_change_nothing(gap, where):
    """A valid time point whose mask is all False (e.g. every feature hidden in a split) is ignored."""
    t, v, m = random_series([6], seed=5)[0]
    if where == "interior":
        new_t = torch.cat([t[:3], ((t[2] + t[3]) / 2)[None], t[3:]])
        position = 3
    else:
        new_t = torch.cat([t, (t[-1] + 0.3)[None]])
        position = 6
    new_v = torch.cat([v[:position], torch.randn(1, N_FEATURES, dtype=torch.float64), v[position:]])
    new_m = torch.cat([m[:position], torch.zeros(1, N_FEATURES, dtype=torch.bool), m[position:]])
    encoder = make_encoder(gap)
    assert_close(encoder(make_batch([(t, v, m)])), encoder(make_batch([(new_t, new_v, new_m)])), atol=1e-12)


def test_leading_empty_time_point_moves_only_the_ode_anchor():
    """An empty first time point is z0's anchor: the ODE encoder evolves back to it, the RNN ignores it."""
    t, v, m = random_series([5], seed=2)[0]
    lead = (
        torch.cat([(t[0] - 0.2)[None], t]),
        torch.cat([torch.zeros(1, N_FEATURES, dtype=torch.float64), v]),
        torch.cat([torch.zeros(1, N_FEATURES, dtype=torch.bool), m]),
    )
    rnn = make_encoder("input")
    assert_close(rnn(make_batch([(t, v, m)])), rnn(make_batch([lead])), atol=1e-12)
    ode = make_encoder("ode")
    assert not torch.allclose(ode(make_batch([(t, v, m)]))[0], ode(make_batch([lead]))[0])


def test_autonomous_ode_encoder_is_invariant_to_time_shift():
    series = random_series([5, 3])
    shifted = [(t + 7.5, v, m) for t, v, m in series]
    encoder = make_encoder("ode", SOLVERS["rk4"])
    assert_close(encoder(make_batch(series)), encoder(make_batch(shifted)), atol=1e-9)


@pytest.mark.parametrize("gap", GAPS)
def test_encoder_reads_time_gaps(gap):
    series = random_series([5])
    stretched = [(2 * t, v, m) for t, v, m in series]
    encoder = make_encoder(gap)
    assert not torch.allclose(encoder(make_batch(series))[0], encoder(make_batch(stretched))[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_gradients_flow_to_all_parameters(dtype):
    encoder = make_encoder("ode").to(dtype)
    mean, std = encoder(make_batch(random_series([4, 6]), dtype=dtype))
    (mean.sum() + std.sum()).backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and bool(torch.isfinite(parameter.grad).all()), name


def test_batch_refuses_non_finite_observed_values_and_bad_lengths():
    batch = make_batch(random_series([5, 3]))
    poisoned = batch.values.clone()
    poisoned[0, 0, batch.mask[0, 0].nonzero()[0, 0]] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite entries where mask is True"):
        IrregularBatch(times=batch.times, values=poisoned, mask=batch.mask, lengths=batch.lengths)
    with pytest.raises(ValueError, match="lengths must lie in"):
        IrregularBatch(times=batch.times, values=batch.values, mask=batch.mask, lengths=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        IrregularBatch(times=batch.times, values=batch.values, mask=batch.mask, lengths=torch.tensor([6, 3]))
    with pytest.raises(TypeError, match="integer tensor"):
        IrregularBatch(times=batch.times, values=batch.values, mask=batch.mask, lengths=torch.tensor([5.0, 3.0]))


def test_posterior_head_uses_the_configured_activation():
    encoder = ODERNNEncoder(N_FEATURES, LATENT, activation="relu")
    assert isinstance(encoder.to_posterior[1], torch.nn.ReLU)
