"""plot_series: a matplotlib Figure with observations, posterior mean and the predictive band."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import TINY
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import latentode
from latentode import ODERNN, LatentODE, NotFittedError


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def bands(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_plot_series_returns_figure(fitted, sines_test):
    series_id = sines_test["id"].iloc[0]
    fig = latentode.plot_series(fitted, sines_test, series_id, coverage=0.9)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(bands(ax)) == 1
    assert ax.get_ylabel() == "y"
    assert str(series_id) in ax.get_title()
    mean_line = ax.get_lines()[0]
    observed = sines_test[sines_test["id"] == series_id]
    # The dense grid covers every observation and extends beyond the last one.
    x = np.asarray(mean_line.get_xdata(), dtype=float)
    assert x.min() <= observed["time"].min() and x.max() > observed["time"].max()
    assert len(x) == latentode.plotting.DENSE_GRID_POINTS


def test_one_axis_per_feature_and_no_band_without_coverage(tiny_fitted, small):
    fig = latentode.plot_series(tiny_fitted, small, 3, coverage=None)
    assert [ax.get_ylabel() for ax in fig.axes] == ["a", "b"]
    assert all(not bands(ax) for ax in fig.axes)
    fig = latentode.plot_series(tiny_fitted, small, 3, features=["b"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["b"]


def test_custom_times_truth_and_figure(tiny_fitted, small):
    truth = pd.DataFrame({"id": 3, "time": np.linspace(0, 10, 30), "a": 0.0, "b": 1.0})
    fig = plt.figure()
    out = latentode.plot_series(tiny_fitted, small, 3, times=[0.0, 5.0, 10.0], truth=truth, fig=fig, n_samples=20)
    assert out is fig
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2  # mean and truth
    assert list(lines[0].get_xdata()) == [0.0, 5.0, 10.0]


def test_datetime_series(small):
    frame = small.assign(time=pd.Timestamp("2024-05-01", tz="UTC") + pd.to_timedelta(small["time"], "D"))
    model = LatentODE(**TINY).fit(frame)
    fig = latentode.plot_series(model, frame, 0, n_samples=20)
    assert isinstance(fig, Figure)
    fig.canvas.draw()


def test_timedelta_series_draws_in_a_readable_unit(small):
    frame = small.assign(time=pd.to_timedelta(small["time"], unit="h"))
    model = LatentODE(**TINY).fit(frame)
    fig = latentode.plot_series(model, frame, 0, n_samples=20)
    fig.canvas.draw()
    (ax_a, ax_b) = fig.axes
    assert ax_b.get_xlabel() == "time (hours)"
    observed = small[small["id"] == 0]["time"]
    x = np.asarray(ax_a.get_lines()[0].get_xdata(), dtype=float)
    assert x.min() <= observed.min() and x.max() > observed.max()  # hours on the axis, as observed


def test_odernn_has_no_band(small):
    model = ODERNN(hidden_dim=8, ode_hidden_dim=8, max_epochs=1, random_state=0, verbose=0).fit(small)
    fig = latentode.plot_series(model, small, 0)
    assert all(not bands(ax) for ax in fig.axes)


def test_bad_arguments(tiny_fitted, small):
    with pytest.raises(ValueError, match="12345"):
        latentode.plot_series(tiny_fitted, small, 12345)
    with pytest.raises(ValueError, match="nope"):
        latentode.plot_series(tiny_fitted, small, 0, features=["nope"])
    with pytest.raises(NotFittedError):
        latentode.plot_series(LatentODE(**TINY), small, 0)
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        latentode.plot_series(tiny_fitted, small.iloc[:0], 0)
    with pytest.raises(TypeError, match="pandas DataFrame"):
        latentode.plot_series(tiny_fitted, small.to_numpy(), 0)
    with pytest.raises(ValueError, match="features is empty"):
        latentode.plot_series(tiny_fitted, small, 0, features=[])
    with pytest.raises(TypeError, match="one-dimensional array"):
        latentode.plot_series(tiny_fitted, small, 0, times=small[["id", "time"]])
    long_truth = small.melt(id_vars=["id", "time"], var_name="variable", value_name="value")
    with pytest.raises(ValueError, match="wide format"):
        latentode.plot_series(tiny_fitted, small, 0, truth=long_truth)
