"""The estimator contract: sklearn rules, time types, query forms, new series, sampling, intervals, accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn.exceptions
from conftest import FITTED, TINY, make_small
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

import latentode
from latentode import ODERNN, LatentODE, NotFittedError

TINY_RNN = {"hidden_dim": 8, "ode_hidden_dim": 8, "max_epochs": 2, "batch_size": 16, "random_state": 0, "verbose": 0}
"""ODERNN parameters that fit in a fraction of a second."""

QUERY_BEFORE, QUERY_BETWEEN, QUERY_AFTER = -0.5, 2.3, 5.6
"""Query times, in the sine data's units, before, between and after each series' observations."""

INVARIANCE_TOLERANCE = 1e-4
"""Largest change of a prediction when other query times are added or removed."""


def long_format(df: pd.DataFrame) -> pd.DataFrame:
    """The wide frame ``df`` as one (id, time, variable, value) row per observed value."""
    melted = df.melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
    return melted.sample(frac=1.0, random_state=0).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# scikit-learn rules


@pytest.mark.parametrize("cls", [LatentODE, ODERNN])
def test_init_stores_parameters_only(cls):
    params = {"random_state": 3, "verbose": 0, "id_col": "sid", "time_col": "t", "max_epochs": 7}
    model = cls(**params)
    assert {k: model.get_params()[k] for k in params} == params
    assert not [k for k in vars(model) if k.endswith("_")]
    # Invalid values are stored unchanged and only refused by fit.
    cls(dtype="float16", device="nonsense", objective="nope")


@pytest.mark.parametrize("cls", [LatentODE, ODERNN])
def test_clone_and_set_params_keep_long_format_options(cls):
    model = cls(variable_col="variable", value_col="value", id_col="patient", time_col="hours", max_epochs=3)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(max_epochs=5, value_col="v")
    assert (copy.max_epochs, copy.value_col) == (5, "v")
    assert model.max_epochs == 3


def test_fit_returns_self_and_is_fitted(small):
    model = LatentODE(**TINY)
    assert model.fit(small) is model
    check_is_fitted(model)
    assert model.n_features_in_ == 2
    assert model.feature_names_in_.tolist() == ["a", "b"]
    assert model.get_feature_names_out().tolist() == ["latent0", "latent1"]


@pytest.mark.parametrize(
    "method, args",
    [
        ("predict", ([1.0],)),
        ("sample", ([1.0],)),
        ("predict_interval", ([1.0],)),
        ("transform", ()),
        ("score", ()),
        ("get_feature_names_out", None),
    ],
)
def test_not_fitted_error(small, method, args):
    model = LatentODE(**TINY)
    call = getattr(model, method)
    with pytest.raises(NotFittedError, match="not fitted yet") as info:
        call() if args is None else call(small, *args)
    assert isinstance(info.value, sklearn.exceptions.NotFittedError)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(model)


def test_not_fitted_error_odernn(small):
    with pytest.raises(NotFittedError):
        ODERNN(**TINY_RNN).predict(small, [1.0])


def test_clone_of_fitted_is_unfitted(tiny_fitted, small):
    copy = clone(tiny_fitted)
    with pytest.raises(NotFittedError):
        copy.predict(small, [1.0])


def test_refit_starts_fresh(small):
    model = LatentODE(**TINY).fit(small)
    first = model.predict(small, [1.0, 4.0])
    other = make_small(10, seed=5)
    model.fit(other)
    model.fit(small)
    pd.testing.assert_frame_equal(model.predict(small, [1.0, 4.0]), first)


def test_pandas_output_is_indexed_by_series(small, tiny_fitted):
    model = LatentODE(**TINY).set_output(transform="pandas")
    Z = model.fit_transform(small)
    assert isinstance(Z, pd.DataFrame)
    assert Z.index.tolist() == sorted(small["id"].unique()) and Z.index.name == "id"
    assert Z.columns.tolist() == ["latent0", "latent1"]
    np.testing.assert_array_equal(Z.to_numpy(), tiny_fitted.transform(small))


def test_pickle_round_trip(tiny_fitted, small):
    import pickle

    copy = pickle.loads(pickle.dumps(tiny_fitted))
    pd.testing.assert_frame_equal(copy.predict(small, [0.5, 3.0]), tiny_fitted.predict(small, [0.5, 3.0]))


def test_grid_search_with_group_kfold(small):
    grid = GridSearchCV(LatentODE(**TINY), {"latent_dim": [2, 3]}, cv=GroupKFold(3))
    grid.fit(small, groups=small["id"])
    assert grid.best_params_["latent_dim"] in (2, 3)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.best_estimator_.predict(small, [1.0]).shape == (small["id"].nunique(), 4)


def test_pipeline_with_classifier(small):
    ids = np.sort(small["id"].unique())
    labels = (ids % 2 == 0).astype(int)  # one label per series, in sorted-id order
    pipe = Pipeline([("latent", LatentODE(**TINY)), ("clf", LogisticRegression())]).fit(small, labels)
    assert pipe.predict(small).shape == (len(ids),)
    assert pipe.predict_proba(small).shape == (len(ids), 2)
    # The classifier saw one latent row per series, in sorted-id order, aligned with the labels.
    Z = pipe.named_steps["latent"].transform(small)
    manual = LogisticRegression().fit(Z, labels)
    np.testing.assert_allclose(pipe.predict_proba(small), manual.predict_proba(Z))
    assert pipe.score(small, labels) == manual.score(Z, labels)
    # New series at predict time: rows follow the sorted ids of the frame given.
    subset = small[small["id"].isin(ids[[5, 1, 3]])]
    np.testing.assert_allclose(pipe.predict_proba(subset), manual.predict_proba(Z[[1, 3, 5]]), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# parameters refused at fit


@pytest.mark.parametrize(
    "params, match",
    [
        ({"encoder": "lstm"}, "encoder"),
        ({"dynamics": "sde"}, "dynamics"),
        ({"solver": "rk45"}, "method"),
        ({"objective": "forecast"}, "objective"),
        ({"dtype": "float16"}, "dtype"),
        ({"device": "not-a-device"}, "device"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"context_fraction": 0.0}, "context_fraction"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"resume": True}, "checkpoint_path"),
        ({"variable_col": "variable"}, "value_col"),
    ],
)
def test_invalid_parameters_raise_value_error_at_fit(small, params, match):
    model = LatentODE(**{**TINY, **params})
    with pytest.raises(ValueError, match=match):
        model.fit(small)
    with pytest.raises(NotFittedError):
        model.predict(small, [1.0])


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"latent_dim": 0}, ValueError, "latent_dim must be an integer >= 1"),
        ({"latent_dim": 2.5}, TypeError, "latent_dim must be an integer"),
        ({"batch_size": 16.0}, TypeError, "batch_size must be an integer"),
        ({"max_epochs": 2.5}, TypeError, "max_epochs must be an integer"),
        ({"n_samples": True}, TypeError, "n_samples must be an integer"),
        ({"grid_step": 0.0}, ValueError, "grid_step must be"),
        ({"grid_step": -0.1}, ValueError, "grid_step must be"),
        ({"grid_step": float("nan")}, ValueError, "grid_step must be"),
        ({"early_stopping_patience": -1}, ValueError, "early_stopping_patience must be an integer >= 1 or None"),
        ({"kl_warmup_epochs": -3}, ValueError, "kl_warmup_epochs"),
        ({"max_time": -1.0}, ValueError, "max_time must be a number of seconds"),
        ({"learning_rate": "fast"}, TypeError, "learning_rate must be a number"),
        ({"lr_decay": 1.5}, ValueError, "lr_decay"),
        ({"min_learning_rate": 0.5}, ValueError, r"min_learning_rate must be a number in \[0, learning_rate=0.01\]"),
        ({"min_learning_rate": "low"}, TypeError, "min_learning_rate must be a number"),
        ({"ema_decay": 1.0}, ValueError, r"ema_decay must be a number in \[0, 1\) or None"),
        ({"ema_decay": "slow"}, TypeError, "ema_decay must be a number"),
        ({"score_context": "yes"}, TypeError, "score_context must be True or False"),
        ({"callbacks": 5}, TypeError, "callbacks must be a list"),
        ({"verbose": "yes"}, TypeError, "verbose must be an integer"),
        ({"step_size": 0.0}, ValueError, "step_size"),
    ],
)
def test_parameters_of_the_wrong_type_or_range_are_named_at_fit(small, params, error, match):
    with pytest.raises(error, match=match):
        LatentODE(**{**TINY, **params}).fit(small)


@pytest.mark.parametrize(("params", "match"), [({"hidden_dim": 0}, "hidden_dim"), ({"ode_hidden_dim": 1.5}, "ode_hidden_dim")])
def test_odernn_parameters_are_named_at_fit(small, params, match):
    with pytest.raises((TypeError, ValueError), match=match):
        ODERNN(**{**TINY_RNN, **params}).fit(small)


def test_invalid_random_state_type(small):
    with pytest.raises(TypeError, match="random_state"):
        LatentODE(**{**TINY, "random_state": "seed"}).fit(small)


def test_numpy_random_state_accepted(small):
    model = LatentODE(**{**TINY, "random_state": np.random.RandomState(0)}).fit(small)
    assert np.isfinite(model.predict(small, [1.0])[["a", "b"]].to_numpy()).all()


def test_unknown_fit_keyword_is_refused(small):
    with pytest.raises(TypeError):
        LatentODE(**TINY).fit(small, epochs=3)


def test_device_auto_resolves(tiny_fitted):
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert tiny_fitted.device_.type == expected


# ---------------------------------------------------------------------------------------------------------
# prediction: layout, query forms, new series


def test_predict_layout(tiny_fitted, small):
    times = [0.0, 2.5, 11.0]
    pred = tiny_fitted.predict(small, times)
    ids = np.sort(small["id"].unique())
    assert pred.columns.tolist() == ["id", "time", "a", "b"]
    assert pred["id"].tolist() == np.repeat(ids, len(times)).tolist()
    assert pred["time"].tolist() == times * len(ids)
    assert pred["id"].dtype == small["id"].dtype
    assert np.isfinite(pred[["a", "b"]].to_numpy()).all()


def test_query_forms_agree(tiny_fitted, small):
    times = np.array([-1.0, 0.3, 4.2, 12.0])
    ids = np.sort(small["id"].unique())
    shared = tiny_fitted.predict(small, times)
    as_list = tiny_fitted.predict(small, times.tolist())
    as_series = tiny_fitted.predict(small, pd.Series(times))
    as_dict = tiny_fitted.predict(small, {i: times for i in ids})
    rows = pd.DataFrame({"id": np.repeat(ids, len(times)), "time": np.tile(times, len(ids))})
    as_rows = tiny_fitted.predict(small, rows.sample(frac=1.0, random_state=0))
    for other in (as_list, as_series, as_dict):
        pd.testing.assert_frame_equal(other, shared)
    merged = shared.merge(as_rows, on=["id", "time"], suffixes=("", "_rows"))
    assert len(merged) == len(shared)
    np.testing.assert_allclose(merged["a"], merged["a_rows"], rtol=0, atol=1e-6)


def test_dict_queries_may_skip_series_and_differ_per_series(tiny_fitted, small):
    pred = tiny_fitted.predict(small, {0: [1.0, 2.0], 3: [7.5]})
    assert pred["id"].tolist() == [0, 0, 3]
    assert pred["time"].tolist() == [1.0, 2.0, 7.5]


@pytest.mark.parametrize(
    "times, error, match",
    [
        ({999: [1.0]}, ValueError, "999"),
        (pd.DataFrame({"id": [999], "time": [1.0]}), ValueError, "999"),
        ([], ValueError, "No query times"),
        ([1.0, np.nan], ValueError, "NaN"),
        (3.0, TypeError, "array-like"),
        ("1.0", TypeError, "array-like"),
        (pd.DataFrame({"id": [0], "when": [1.0]}), ValueError, "time"),
    ],
)
def test_bad_queries(tiny_fitted, small, times, error, match):
    with pytest.raises(error, match=match):
        tiny_fitted.predict(small, times)


def test_unknown_feature_columns_raise(tiny_fitted, small):
    with pytest.raises(ValueError, match="mystery"):
        tiny_fitted.predict(small.assign(mystery=1.0), [1.0])
    with pytest.raises(ValueError, match="'b'"):
        tiny_fitted.predict(small.drop(columns="b"), [1.0])


def test_unknown_variable_in_long_format_raises(small):
    long = long_format(small)
    model = LatentODE(**TINY, variable_col="variable", value_col="value").fit(long)
    bad = pd.concat([long, pd.DataFrame({"id": [0], "time": [0.0], "variable": ["mystery"], "value": [1.0]})])
    with pytest.raises(ValueError, match="mystery"):
        model.predict(bad, [1.0])


def test_long_format_matches_wide(small, tiny_fitted):
    long = long_format(small)
    model = LatentODE(**TINY, variable_col="variable", value_col="value").fit(long)
    assert clone(model).get_params()["variable_col"] == "variable"
    pred = model.predict(long, [0.5, 3.0])
    assert pred.columns.tolist() == ["id", "time", "a", "b"]
    expected = tiny_fitted.predict(small, [0.5, 3.0])
    np.testing.assert_allclose(pred[["a", "b"]], expected[["a", "b"]], rtol=0, atol=1e-6)


def test_custom_column_names(small):
    renamed = small.rename(columns={"id": "patient", "time": "hours"})
    model = LatentODE(**TINY, id_col="patient", time_col="hours").fit(renamed)
    pred = model.predict(renamed, [1.0])
    assert pred.columns.tolist() == ["patient", "hours", "a", "b"]


def test_new_series_at_predict_time(fitted, sines_train, sines_test):
    assert not set(sines_test["id"]) & set(sines_train["id"])
    pred = fitted.predict(sines_test, [QUERY_BEFORE, QUERY_BETWEEN, QUERY_AFTER])
    assert len(pred) == 3 * sines_test["id"].nunique()
    assert np.isfinite(pred["y"]).all()
    # Ids are labels only: renaming them (even to another dtype) changes nothing else.
    renamed = sines_test.assign(id="series-" + sines_test["id"].astype(str))
    other = fitted.predict(renamed, [QUERY_BEFORE, QUERY_BETWEEN, QUERY_AFTER])
    np.testing.assert_array_equal(other["y"].to_numpy(), pred["y"].to_numpy())


def test_prediction_of_a_series_ignores_its_batch_mates(fitted, sines_test):
    """With a fixed-step solver each series' prediction is the same alone or among others."""
    times = [QUERY_BEFORE, QUERY_BETWEEN, QUERY_AFTER]
    together = fitted.predict(sines_test, times)
    some_id = sines_test["id"].iloc[-1]
    alone = fitted.predict(sines_test[sines_test["id"] == some_id], times)
    np.testing.assert_allclose(alone["y"], together.loc[together["id"] == some_id, "y"], rtol=0, atol=1e-5)


def check_query_invariance(model, context):
    a, b, c = QUERY_BEFORE, QUERY_BETWEEN, QUERY_AFTER
    full = model.predict(context, [a, b, c])
    only_a = model.predict(context, [a])
    only_bc = model.predict(context, [b, c])
    feature = model.feature_names_in_[0]
    grid = full[feature].to_numpy().reshape(-1, 3)
    np.testing.assert_allclose(grid[:, 0], only_a[feature], rtol=0, atol=INVARIANCE_TOLERANCE)
    np.testing.assert_allclose(grid[:, 1:].ravel(), only_bc[feature], rtol=0, atol=INVARIANCE_TOLERANCE)


def test_query_time_invariance(fitted, sines_test):
    check_query_invariance(fitted, sines_test)


@pytest.mark.parametrize(
    "params",
    [{"solver": "dopri5", "step_size": None}, {"dynamics": "residual"}, {"encoder": "rnn", "dynamics": "gru"}],
)
def test_query_time_invariance_other_dynamics(sines_train, sines_test, params):
    model = LatentODE(**{**FITTED, **params, "max_epochs": 2}).fit(sines_train[sines_train["id"] < 40])
    check_query_invariance(model, sines_test)


def test_query_time_invariance_odernn(sines_train, sines_test):
    model = ODERNN(**TINY_RNN).fit(sines_train[sines_train["id"] < 30])
    check_query_invariance(model, sines_test)


def test_predictions_do_not_depend_on_query_order(fitted, sines_test):
    times = np.array([QUERY_AFTER, QUERY_BEFORE, 1.7, QUERY_BETWEEN, 0.1])
    order = np.argsort(times)
    shuffled = fitted.predict(sines_test, times)
    sorted_ = fitted.predict(sines_test, times[order])
    assert shuffled["time"].tolist()[: len(times)] == times.tolist()  # rows in the order asked for
    a = shuffled["y"].to_numpy().reshape(-1, len(times))[:, order]
    b = sorted_["y"].to_numpy().reshape(-1, len(times))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_predict_at_observed_times_reconstructs_them(fitted, sines_test):
    """Predicting at the context's own timestamps gives the fitted values, close to the observations."""
    pred = fitted.predict(sines_test, sines_test[["id", "time"]])
    merged = sines_test.merge(pred, on=["id", "time"], suffixes=("", "_pred"))
    assert len(merged) == len(sines_test)
    assert np.mean((merged["y"] - merged["y_pred"]) ** 2) < 0.2 * np.var(sines_test["y"])


# ---------------------------------------------------------------------------------------------------------
# time types

BASE = pd.Timestamp("2024-03-01 08:00")


def as_datetimes(hours, tz=None):
    out = BASE + pd.to_timedelta(np.asarray(hours, dtype=float), unit="h")
    return out.tz_localize(tz) if tz is not None else out


TIME_TYPES = {
    "datetime": lambda h: pd.Series(as_datetimes(h)),
    "datetime-tz": lambda h: pd.Series(as_datetimes(h, "Europe/Berlin")),
    "timedelta": lambda h: pd.Series(pd.to_timedelta(np.asarray(h, dtype=float), unit="h")),
}


@pytest.mark.parametrize("kind", sorted(TIME_TYPES))
def test_time_types_in_and_out(small, tiny_fitted, kind):
    convert = TIME_TYPES[kind]
    frame = small.assign(time=convert(small["time"]).set_axis(small.index))
    model = LatentODE(**TINY).fit(frame)
    hours = [-1.0, 0.4, 3.3, 12.0]  # before, between and after the observations
    queries = convert(hours)
    ids = np.sort(small["id"].unique())
    rows = pd.DataFrame({"id": np.repeat(ids, len(hours)), "time": pd.concat([queries] * len(ids), ignore_index=True)})
    for times in (queries, list(queries), {i: queries for i in ids}, rows):
        pred = model.predict(frame, times)
        assert pred["time"].dtype == queries.dtype
        pd.testing.assert_series_equal(
            pred["time"], pd.concat([queries] * len(ids), ignore_index=True), check_names=False
        )
    # The same data in plain hours gives the same model and predictions: time is only rescaled.
    expected = tiny_fitted.predict(small, hours)
    np.testing.assert_allclose(pred[["a", "b"]], expected[["a", "b"]], rtol=0, atol=1e-4)
    band = model.predict_interval(frame, queries, random_state=0)
    draws = model.sample(frame, queries, n_samples=3, random_state=0)
    assert band["time"].dtype == draws["time"].dtype == queries.dtype


def test_timezone_of_queries_may_differ(small):
    frame = small.assign(time=as_datetimes(small["time"], "Europe/Berlin"))
    model = LatentODE(**TINY).fit(frame)
    berlin = pd.Series(as_datetimes([0.5, 4.0], "Europe/Berlin"))
    tokyo = berlin.dt.tz_convert("Asia/Tokyo")
    a, b = model.predict(frame, berlin), model.predict(frame, tokyo)
    np.testing.assert_array_equal(a[["a", "b"]].to_numpy(), b[["a", "b"]].to_numpy())
    assert str(b["time"].dt.tz) == "Asia/Tokyo"


@pytest.mark.parametrize(
    "fit_kind, query, match",
    [
        ("datetime", [1.0, 2.0], "numeric"),
        ("datetime", pd.Series(as_datetimes([1.0], "UTC")), "timezone"),
        ("numeric", pd.Series(as_datetimes([1.0])), "datetime"),
        ("timedelta", pd.Series(as_datetimes([1.0])), "datetime"),
    ],
)
def test_query_time_type_must_match_fit(small, fit_kind, query, match):
    frame = small if fit_kind == "numeric" else small.assign(
        time=as_datetimes(small["time"]) if fit_kind == "datetime" else pd.to_timedelta(small["time"], unit="h")
    )
    model = LatentODE(**TINY).fit(frame)
    with pytest.raises(TypeError, match=match):
        model.predict(frame, query)


# ---------------------------------------------------------------------------------------------------------
# sampling and intervals


def test_sample_layout(fitted, sines_test):
    times = [QUERY_BEFORE, QUERY_BETWEEN, QUERY_AFTER]
    draws = fitted.sample(sines_test, times, n_samples=7, random_state=0)
    n_series = sines_test["id"].nunique()
    assert draws.columns.tolist() == ["id", "time", "sample", "y"]
    assert len(draws) == 7 * 3 * n_series
    counts = draws.groupby(["id", "time"]).size()
    assert (counts == 7).all() and len(counts) == 3 * n_series
    assert sorted(draws["sample"].unique()) == list(range(7))
    again = fitted.sample(sines_test, times, n_samples=7, random_state=0)
    pd.testing.assert_frame_equal(draws, again)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(sines_test, times, n_samples=0)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        fitted.sample(sines_test, times, n_samples=2.5)
    with pytest.raises(TypeError, match="random_state must be"):
        fitted.sample(sines_test, times, n_samples=2, random_state="zero")
    generated = fitted.sample(sines_test, times, n_samples=2, random_state=np.random.default_rng(0))
    assert len(generated) == 2 * len(times) * sines_test["id"].nunique()


@pytest.mark.parametrize("include_noise", [True, False])
def test_sample_mean_approaches_predict(fitted, sines_test, include_noise):
    times = [QUERY_BEFORE, 0.9, QUERY_BETWEEN, 4.4]
    pred = fitted.predict(sines_test, times)["y"].to_numpy()

    def error(n_samples):
        draws = fitted.sample(sines_test, times, n_samples=n_samples, random_state=1, include_noise=include_noise)
        mean = draws.groupby(["id", "time"], sort=False)["y"].mean().to_numpy()
        return np.abs(mean - pred).mean(), draws.groupby(["id", "time"])["y"].std().mean()

    few, _ = error(3)
    many, spread = error(300)
    assert many < few
    assert many < 0.2 * spread + 0.01


def test_predict_interval(fitted, sines_test):
    times = [QUERY_BEFORE, QUERY_BETWEEN, QUERY_AFTER]
    wide = fitted.predict_interval(sines_test, times, coverage=0.9, random_state=0)
    narrow = fitted.predict_interval(sines_test, times, coverage=0.5, random_state=0)
    assert wide.columns.tolist() == ["id", "time", "y_lower", "y_upper"]
    assert (wide["y_lower"] <= wide["y_upper"]).all()
    assert (wide["y_lower"] <= narrow["y_lower"]).all() and (narrow["y_upper"] <= wide["y_upper"]).all()
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="coverage"):
            fitted.predict_interval(sines_test, times, coverage=bad)
    for bad in ("0.9", None):
        with pytest.raises(TypeError, match="coverage must be a number"):
            fitted.predict_interval(sines_test, times, coverage=bad)


def test_two_dimensional_times_are_refused_with_the_alternatives(fitted, sines_test):
    with pytest.raises(ValueError, match="one-dimensional.*dict"):
        fitted.predict(sines_test, np.ones((2, 2)))


def test_interval_covers_held_out_points(fitted, sines_test):
    context, hidden = latentode.interpolation_split(sines_test, random_state=0)
    band = fitted.predict_interval(context, hidden[["id", "time"]], coverage=0.9, random_state=0)
    merged = hidden.merge(band, on=["id", "time"])
    assert len(merged) == len(hidden)
    inside = (merged["y_lower"] <= merged["y"]) & (merged["y"] <= merged["y_upper"])
    assert inside.mean() > 0.5


# ---------------------------------------------------------------------------------------------------------
# transform and score


def test_transform_rows_follow_sorted_ids(fitted, sines_test):
    named = sines_test.assign(id=sines_test["id"].map(lambda i: f"s{(i * 7) % 31:02d}-{i}"))
    shuffled = named.sample(frac=1.0, random_state=0)
    Z = fitted.transform(shuffled)
    ids = sorted(named["id"].unique())
    assert Z.shape == (len(ids), fitted.latent_dim)
    for row in (0, 5, len(ids) - 1):
        alone = fitted.transform(named[named["id"] == ids[row]])
        np.testing.assert_allclose(Z[row], alone[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(Z, fitted.transform(named), rtol=0, atol=0)


def test_score_does_not_depend_on_batch_size(sines_test):
    model = LatentODE(**{**TINY, "solver": "rk4"}).fit(sines_test)
    before = model.score(sines_test)
    model.set_params(batch_size=7)
    assert model.score(sines_test) == pytest.approx(before, rel=1e-5)


def test_score_prefers_the_trained_model(fitted, sines_train, sines_test):
    untrained = LatentODE(**{**FITTED, "max_epochs": 1}).fit(sines_train)
    trained_score, untrained_score = fitted.score(sines_test), untrained.score(sines_test)
    assert isinstance(trained_score, float)
    assert trained_score <= 0 and untrained_score <= 0
    assert trained_score > untrained_score
    assert fitted.score(sines_test) == trained_score  # seeded: the same points every time


def test_training_learns(fitted):
    history = fitted.history_
    assert history[-1]["train_mse"] < 0.5 * history[0]["train_mse"]
    assert min(h["valid_mse"] for h in history) < 0.5 * history[0]["valid_mse"]


def locf_mse(context: pd.DataFrame, hidden: pd.DataFrame) -> float:
    """Mean squared error of carrying each series' last observation forward (the first one backward)."""
    both = pd.concat([context.assign(hidden=False), hidden.assign(hidden=True)]).sort_values(["id", "time"])
    carried = both["y"].where(~both["hidden"]).groupby(both["id"]).ffill().groupby(both["id"]).bfill()
    return float(np.mean((carried[both["hidden"]] - both.loc[both["hidden"], "y"]) ** 2))


def test_interpolation_beats_last_observation_carried_forward(fitted, sines_test):
    context, hidden = latentode.interpolation_split(sines_test, random_state=0)
    pred = fitted.predict(context, hidden[["id", "time"]])
    merged = hidden.merge(pred, on=["id", "time"], suffixes=("", "_pred"))
    mse = float(np.mean((merged["y"] - merged["y_pred"]) ** 2))
    assert mse < 0.7 * locf_mse(context, hidden)


# ---------------------------------------------------------------------------------------------------------
# baselines and ODERNN


@pytest.mark.parametrize(
    "params",
    [
        {"encoder": "rnn", "dynamics": "gru"},  # RNN-VAE
        {"encoder": "rnn"},  # Latent ODE with RNN encoder
        {"dynamics": "residual"},
        {"solver": "dopri5", "step_size": None},
        {"noise_std": "learned", "augment_dim": 1, "time_dependent": True},
        {"poisson": True},
        {"objective": "extrapolation", "iwae": True},
        {"dtype": "float64"},
    ],
)
def test_latent_variants_fit_and_predict(small, params):
    model = LatentODE(**{**TINY, **params}).fit(small)
    pred = model.predict(small, [-1.0, 0.3, 4.2, 12.0])
    assert pred.shape == (4 * small["id"].nunique(), 4)
    assert np.isfinite(pred[["a", "b"]].to_numpy()).all()
    assert len(model.history_) == TINY["max_epochs"]
    assert np.isfinite(model.score(small))
    assert model.transform(small).shape == (small["id"].nunique(), TINY["latent_dim"])


@pytest.mark.parametrize("cell", ["ode", "gru_dt", "gru_d"])
def test_odernn_cells(small, cell):
    model = ODERNN(**TINY_RNN, cell=cell)
    assert model.fit(small) is model
    pred = model.predict(small, {0: [-1.0, 0.3, 4.2, 12.0], 5: [2.0]})
    assert pred.columns.tolist() == ["id", "time", "a", "b"]
    assert pred["id"].tolist() == [0, 0, 0, 0, 5]
    assert np.isfinite(pred[["a", "b"]].to_numpy()).all()
    assert np.isfinite(model.score(small))
    assert {"train_loss", "valid_loss", "seconds"} <= set(model.history_[0])


def test_odernn_invalid_cell(small):
    with pytest.raises(ValueError, match="cell"):
        ODERNN(**TINY_RNN, cell="lstm").fit(small)


def noisy_sines(n_series: int, seed: int, noise: float = 0.4) -> pd.DataFrame:
    """Sines at irregular times with much more noise than the model's fixed noise_std assumes."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        t = np.sort(rng.choice(np.arange(0.0, 10.0, 0.25), size=12, replace=False))
        phase = rng.uniform(0, 2 * np.pi)
        frames.append(pd.DataFrame({"id": i, "time": t, "a": np.sin(t / 2 + phase) + rng.normal(0, noise, 12)}))
    return pd.concat(frames, ignore_index=True)


def interval_coverage(model: LatentODE, test: pd.DataFrame) -> float:
    context, hidden = latentode.interpolation_split(test, hide_fraction=0.5, random_state=1)
    band = model.predict_interval(context, hidden[["id", "time"]], coverage=0.9, n_samples=100, random_state=0)
    scored = hidden.merge(band, on=["id", "time"])
    return float(((scored["a_lower"] <= scored["a"]) & (scored["a"] <= scored["a_upper"])).mean())


def test_calibrated_intervals_cover_what_they_claim_and_leave_the_means_alone():
    train, test = noisy_sines(80, seed=0), noisy_sines(40, seed=1)
    settings = {**TINY, "max_epochs": 6, "noise_std": 0.01, "validation_fraction": 0.25}
    calibrated = LatentODE(**settings).fit(train)
    plain = LatentODE(**settings, calibrate_intervals=False).fit(train)
    pd.testing.assert_frame_equal(calibrated.predict(test, [1.0, 5.0]), plain.predict(test, [1.0, 5.0]))
    assert plain.interval_noise_std_["a"] == pytest.approx(0.01 * plain.feature_scaler_.scale_[0])
    assert calibrated.interval_noise_std_["a"] > 0.2  # the data's noise is 0.4
    covered, uncovered = interval_coverage(calibrated, test), interval_coverage(plain, test)
    assert covered >= 0.75, covered
    assert uncovered < covered - 0.2, (uncovered, covered)


def test_calibrated_noise_survives_save_and_load(tmp_path):
    model = LatentODE(**{**TINY, "noise_std": 0.01}).fit(noisy_sines(40, seed=0))
    model.save(tmp_path / "m.lode")
    loaded = LatentODE.load(tmp_path / "m.lode")
    pd.testing.assert_series_equal(loaded.interval_noise_std_, model.interval_noise_std_)
    test = noisy_sines(5, seed=2)
    pd.testing.assert_frame_equal(loaded.predict_interval(test, [1.0, 2.0], random_state=0),
                                  model.predict_interval(test, [1.0, 2.0], random_state=0))


def test_autonomous_predictions_do_not_move_with_the_clock(small):
    # Minute-long series timed in datetimes; the same series a year later must get the same predictions
    # (an autonomous model sees only time differences), which needs gaps that keep their float32 precision.
    start = pd.Timestamp("2024-01-01")
    frame = small.assign(time=start + pd.to_timedelta(small["time"] * 6, unit="s"))
    model = LatentODE(**TINY).fit(frame)
    later = pd.Timedelta(days=365)
    queries = frame.groupby("id")["time"].agg(["min", "max"])
    times = {i: [row["min"], row["min"] + (row["max"] - row["min"]) / 3, row["max"] + pd.Timedelta(seconds=5)]
             for i, row in queries.iterrows()}
    now = model.predict(frame, times)
    moved = model.predict(frame.assign(time=frame["time"] + later), {i: [t + later for t in ts] for i, ts in times.items()})
    np.testing.assert_allclose(moved[["a", "b"]].to_numpy(), now[["a", "b"]].to_numpy(), rtol=0, atol=1e-5)
    assert (moved["time"] - now["time"] == later).all()


def test_latent_trajectories_start_at_the_posterior_mean_of_z0(fitted, sines_test):
    first = sines_test.groupby("id")["time"].min()
    paths = fitted.latent_trajectories(sines_test, {i: [t, t + 1.0] for i, t in first.items()})
    columns = [f"latent{k}" for k in range(fitted.latent_dim)]
    assert paths.columns.tolist() == ["id", "time", *columns]
    at_start = paths.groupby("id").head(1)[columns].to_numpy()
    np.testing.assert_allclose(at_start, fitted.transform(sines_test), atol=1e-5)
    assert not np.allclose(paths.groupby("id").tail(1)[columns].to_numpy(), at_start)
