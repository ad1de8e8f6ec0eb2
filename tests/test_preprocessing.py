"""Tests of latentode.preprocessing: the feature and time scalers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn.exceptions
import torch

from latentode.data import FrameSpec, read_frame
from latentode.exceptions import NotFittedError
from latentode.preprocessing import MIN_FEATURE_SCALE, TARGET_SERIES_SPAN, FeatureScaler, TimeScaler


def values_with_gaps(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(loc=[3.0, -50.0, 0.0], scale=[2.0, 10.0, 1e-3], size=(40, 3))
    values[rng.random(values.shape) < 0.4] = np.nan
    values[0] = [1.0, 2.0, 3.0]  # every feature observed at least once
    return values


# ----------------------------------------------------------------------------------------- FeatureScaler


def test_feature_scaler_uses_observed_values_only():
    values = values_with_gaps()
    scaler = FeatureScaler().fit(values)
    for j in range(values.shape[1]):
        observed = values[~np.isnan(values[:, j]), j]
        assert scaler.mean_[j] == pytest.approx(observed.mean(), rel=1e-12)
        assert scaler.scale_[j] == pytest.approx(observed.std(), rel=1e-12)


@pytest.mark.parametrize("placeholder", [0.0, 1e6, -3.0])
def test_feature_scaler_ignores_what_masked_entries_hold(placeholder):
    values = values_with_gaps()
    mask = ~np.isnan(values)
    reference = FeatureScaler().fit(values)
    filled = np.where(mask, values, placeholder)
    scaler = FeatureScaler().fit(filled, mask=mask)
    np.testing.assert_array_equal(scaler.mean_, reference.mean_)
    np.testing.assert_array_equal(scaler.scale_, reference.scale_)


def test_feature_scaler_ignores_a_changed_unobserved_entry_in_a_batch():
    """Changing the placeholder under a False mask entry of a batch does not move the fitted statistics."""
    df = pd.DataFrame(
        {"id": [1, 1, 2], "time": [0.0, 1.0, 0.0], "x": [1.0, np.nan, 4.0], "y": [2.0, 5.0, np.nan]}
    )
    batch = read_frame(df, FrameSpec()).to_batch(dtype=torch.float64)
    values, mask = batch.values.reshape(-1, 2).numpy(), batch.mask.reshape(-1, 2).numpy()
    reference = FeatureScaler().fit(values, mask=mask)
    changed = values.copy()
    changed[~mask] = 123.0
    scaler = FeatureScaler().fit(changed, mask=mask)
    np.testing.assert_array_equal(scaler.mean_, reference.mean_)
    np.testing.assert_array_equal(scaler.scale_, reference.scale_)
    assert reference.mean_.tolist() == [2.5, 3.5]


def test_feature_scaler_standardises_and_inverts():
    values = values_with_gaps()
    scaler = FeatureScaler().fit(values)
    scaled = scaler.transform(values)
    np.testing.assert_array_equal(np.isnan(scaled), np.isnan(values))
    np.testing.assert_allclose(np.nanmean(scaled, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.nanstd(scaled, axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), values, rtol=1e-12)
    three_d = scaler.transform(values.reshape(4, 10, 3))
    np.testing.assert_array_equal(three_d.reshape(40, 3), scaled)


def test_feature_scaler_leaves_constant_features_unscaled():
    values = np.array([[5.0, 1.0], [5.0, 2.0], [np.nan, 3.0]])
    scaler = FeatureScaler().fit(values)
    assert scaler.scale_[0] == 1.0 and scaler.mean_[0] == 5.0
    assert MIN_FEATURE_SCALE < 1e-6


def test_feature_scaler_refit_starts_fresh_and_state_round_trips():
    scaler = FeatureScaler().fit(values_with_gaps(0))
    scaler.fit(values_with_gaps(1))
    fresh = FeatureScaler().fit(values_with_gaps(1))
    np.testing.assert_array_equal(scaler.mean_, fresh.mean_)
    restored = FeatureScaler.from_state(scaler.get_state())
    np.testing.assert_array_equal(
        restored.transform(values_with_gaps()), scaler.transform(values_with_gaps())
    )


def test_feature_scaler_refuses_bad_input():
    with pytest.raises(ValueError, match=r"Feature\(s\) at positions \[1\] have no observed value"):
        FeatureScaler().fit(np.array([[1.0, np.nan], [2.0, np.nan]]))
    with pytest.raises(ValueError, match=r"must have shape \(n_rows, n_features\), got shape \(3,\)"):
        FeatureScaler().fit(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="mask has shape"):
        FeatureScaler().fit(np.ones((2, 2)), mask=np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="infinite"):
        FeatureScaler().fit(np.array([[1.0], [np.inf]]))
    scaler = FeatureScaler().fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"fitted on 2 features; expected shape \(\.\.\., 2\)"):
        scaler.transform(np.ones((3, 3)))


@pytest.mark.parametrize("scaler", [FeatureScaler(), TimeScaler()])
@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_unfitted_scalers_say_so(scaler, method):
    with pytest.raises(NotFittedError, match=f"This {type(scaler).__name__} instance is not fitted yet"):
        getattr(scaler, method)(np.ones((2, 1)))
    with pytest.raises(sklearn.exceptions.NotFittedError):
        scaler.get_state()


# -------------------------------------------------------------------------------------------- TimeScaler


@pytest.mark.parametrize("unit_seconds", [1.0, 86400.0, 3.15e7])
def test_time_scaler_makes_the_median_series_span_one_unit(unit_seconds):
    rng = np.random.default_rng(0)
    series = [np.sort(rng.uniform(0, span, size=5)) for span in rng.uniform(1, 20, size=11)]
    series = [(s + 1e9) * unit_seconds for s in series]  # far from 0, as datetimes in seconds are
    times = np.concatenate(series)
    offsets = np.cumsum([0] + [len(s) for s in series])
    scaler = TimeScaler().fit(times, offsets)
    scaled = scaler.transform(times)
    spans = [scaled[offsets[i + 1] - 1] - scaled[offsets[i]] for i in range(len(series))]
    assert np.median(spans) == pytest.approx(TARGET_SERIES_SPAN, rel=1e-6)
    assert scaled.min() == 0.0
    np.testing.assert_allclose(scaler.inverse_transform(scaled), times, rtol=1e-12)
    restored = TimeScaler.from_state(scaler.get_state())
    np.testing.assert_array_equal(restored.transform(times), scaled)


def test_time_scaler_ignores_single_point_series_when_others_span():
    times = np.array([0.0, 4.0, 100.0, 7.0, 8.0])
    scaler = TimeScaler().fit(times, [0, 2, 3, 5])
    assert scaler.scale_ == pytest.approx(2.5)  # median of spans 4 and 1


def test_time_scaler_falls_back_to_gaps_then_one():
    assert TimeScaler().fit(np.array([0.0, 2.0, 10.0]), [0, 1, 2, 3]).scale_ == pytest.approx(5.0)
    assert TimeScaler().fit(np.array([3.0, 3.0]), [0, 1, 2]).scale_ == 1.0


@pytest.mark.parametrize(
    "times, offsets, match",
    [
        ([0.0, 1.0], [0, 1], "offsets must rise strictly from 0 to len"),
        ([0.0, 1.0], [0, 2, 2], "offsets must rise strictly"),
        ([0.0, 1.0], [1, 2], "offsets must rise strictly"),
        ([], [0], "non-empty array of finite numbers"),
        ([0.0, np.nan], [0, 2], "non-empty array of finite numbers"),
    ],
)
def test_time_scaler_refuses_bad_input(times, offsets, match):
    with pytest.raises(ValueError, match=match):
        TimeScaler().fit(np.array(times), np.array(offsets))


def test_scalers_fitted_on_training_data_apply_to_a_batch():
    df = pd.DataFrame(
        {"id": [1, 1, 1, 2, 2], "time": [0.0, 10.0, 20.0, 5.0, 15.0], "x": [1.0, 3.0, np.nan, 5.0, np.nan]}
    )
    s = read_frame(df, FrameSpec())
    features = FeatureScaler().fit(s.values)
    time = TimeScaler().fit(s.times, s.offsets)
    batch = s.to_batch(time_transform=time.transform, value_transform=features.transform, dtype=torch.float64)
    assert batch.times.tolist() == [[0.0, 2 / 3, 4 / 3], [1 / 3, 1.0, 1.0]]
    assert torch.all(batch.values[~batch.mask] == 0)
    observed = batch.values[batch.mask]
    assert observed.mean().item() == pytest.approx(0.0, abs=1e-12)
