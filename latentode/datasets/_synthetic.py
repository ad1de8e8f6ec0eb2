"""Synthetic irregularly sampled data sets: 2-D spirals and the Latent ODE paper's 1-D periodic toy set."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ._checks import check_positive_float, check_positive_int, check_random_state
from ._format import ID_COLUMN, TIME_COLUMN

# --------------------------------------------------------------------------------------
# Spirals

SPIRAL_FEATURES = ("x", "y")
"""Feature columns of :func:`make_spirals`."""

SPIRAL_ANGULAR_SPEED = 1.0
"""Radians the spiral turns per unit of time."""

SPIRAL_MIN_START_ANGLE = math.pi / 2
"""Smallest polar angle (radians) a spiral series may start at; keeps series off the centre."""

SPIRAL_MAX_START_ANGLE = 2 * math.pi
"""Largest polar angle (radians) a spiral series may start at."""

CLOCKWISE_LABEL = 1
"""Label of a clockwise spiral in the labels returned by :func:`make_spirals`."""

COUNTERCLOCKWISE_LABEL = 0
"""Label of a counter-clockwise spiral in the labels returned by :func:`make_spirals`."""

CLOCKWISE_PROBABILITY = 0.5
"""Probability that a spiral series turns clockwise."""


def make_spirals(
    n_series: int = 200,
    n_points: int = 100,
    n_observed: int = 30,
    noise_std: float = 0.05,
    t_max: float = 4 * math.pi,
    random_state: int | np.random.Generator | None = None,
    *,
    return_labels: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Make noisy, irregularly observed clockwise and counter-clockwise 2-D spirals.

    Each series follows an Archimedean spiral ``r = phi / phi_max`` (so every
    coordinate lies in ``[-1, 1]``), turning :data:`SPIRAL_ANGULAR_SPEED` radians
    per unit of time from a random start angle ``phi_0 ~ U[pi/2, 2 pi]``, so the
    radius grows over time. Counter-clockwise series are ``(r cos phi, r sin phi)``,
    clockwise series their mirror image ``(r cos phi, -r sin phi)``; each series is
    clockwise with probability 1/2. This follows the spirals of the Neural ODE
    paper (``generate_spiral2d`` in torchdiffeq's ``examples/latent_ode.py``), rescaled
    to ``O(1)`` values and with per-series irregular observation times.

    The clean trajectory of every series is evaluated on the same dense grid of
    ``n_points`` equally spaced times in ``[0, t_max]``. Each series is then observed
    at its own random subset of ``n_observed`` of those times (distinct, sorted, drawn
    independently per series), with independent Gaussian noise of standard deviation
    ``noise_std`` added to each coordinate.

    Parameters
    ----------
    n_series : int, default=200
        Number of series.
    n_points : int, default=100
        Number of points of the dense grid each series is evaluated on.
    n_observed : int, default=30
        Number of grid points at which each series is observed; at most ``n_points``.
    noise_std : float, default=0.05
        Standard deviation of the Gaussian observation noise; ``0`` for none.
    t_max : float, default=4*pi
        Length of the time window (two full turns at the default speed).
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator; the same int gives the same data.
    return_labels : bool, default=False
        Also return the rotation direction of each series.

    Returns
    -------
    observed : pandas.DataFrame
        Wide layout: columns ``id``, ``time``, ``x``, ``y``; ``n_series * n_observed``
        rows, sorted by ``(id, time)``.
    truth : pandas.DataFrame
        The noise-free trajectories on the dense grid, same layout,
        ``n_series * n_points`` rows.
    labels : pandas.Series
        Only if ``return_labels``: int labels indexed by ``id``,
        :data:`CLOCKWISE_LABEL` (1) for clockwise, :data:`COUNTERCLOCKWISE_LABEL` (0)
        for counter-clockwise.

    Raises
    ------
    ValueError
        If a size is not positive, ``n_observed > n_points``, ``noise_std < 0`` or
        ``t_max <= 0``.

    Examples
    --------
    >>> observed, truth = make_spirals(n_series=4, random_state=0)
    >>> observed.shape, truth.shape
    ((120, 4), (400, 4))
    """
    n_series = check_positive_int("n_series", n_series)
    n_points = check_positive_int("n_points", n_points)
    n_observed = check_positive_int("n_observed", n_observed)
    if n_observed > n_points:
        raise ValueError(
            f"n_observed ({n_observed}) cannot exceed n_points ({n_points}): each series is "
            "observed at a subset of its dense grid. Lower n_observed or raise n_points."
        )
    noise_std = check_positive_float("noise_std", noise_std, allow_zero=True)
    t_max = check_positive_float("t_max", t_max)
    rng = check_random_state(random_state)

    times = np.linspace(0.0, t_max, n_points)  # (time,)
    start_angle = rng.uniform(SPIRAL_MIN_START_ANGLE, SPIRAL_MAX_START_ANGLE, size=n_series)
    clockwise = rng.random(n_series) < CLOCKWISE_PROBABILITY  # (series,)
    max_angle = SPIRAL_MAX_START_ANGLE + SPIRAL_ANGULAR_SPEED * t_max
    angle = start_angle[:, None] + SPIRAL_ANGULAR_SPEED * times[None, :]  # (series, time)
    radius = angle / max_angle
    sign = np.where(clockwise, -1.0, 1.0)[:, None]
    clean = np.stack([radius * np.cos(angle), sign * radius * np.sin(angle)], axis=-1)
    # clean: (series, time, 2)

    # Per series, a sorted random subset of the grid indices: argsort of uniform keys.
    observed_index = np.sort(np.argsort(rng.random((n_series, n_points)), axis=1)[:, :n_observed], axis=1)
    observed_values = np.take_along_axis(clean, observed_index[:, :, None], axis=1)
    observed_values = observed_values + noise_std * rng.standard_normal(observed_values.shape)

    ids = np.arange(n_series)
    truth = _grid_frame(ids, np.broadcast_to(times, (n_series, n_points)), clean, SPIRAL_FEATURES)
    observed = _grid_frame(ids, times[observed_index], observed_values, SPIRAL_FEATURES)
    if not return_labels:
        return observed, truth
    labels = pd.Series(
        np.where(clockwise, CLOCKWISE_LABEL, COUNTERCLOCKWISE_LABEL),
        index=pd.Index(ids, name=ID_COLUMN),
        name="clockwise",
    )
    return observed, truth, labels


# --------------------------------------------------------------------------------------
# Periodic (Rubanova et al., 2019)

PERIODIC_FEATURE = "value"
"""Feature column of :func:`make_periodic`."""

PERIODIC_FREQUENCY_RANGE = (0.4, 0.8)
"""Interval the frequency of each periodic series is drawn from, uniformly."""

PERIODIC_AMPLITUDE = 1.0
"""Amplitude of every periodic series."""

PERIODIC_OFFSET_MEAN = 1.0
"""Mean of the vertical offset (``z0`` in the reference code) of a periodic series."""

PERIODIC_OFFSET_STD = 0.1
"""Standard deviation of the Gaussian vertical offset of a periodic series."""


def make_periodic(
    n_series: int = 1000,
    n_points: int = 100,
    t_max: float = 5.0,
    random_state: int | np.random.Generator | None = None,
    *,
    noise_weight: float = 0.01,
    return_params: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Make the 1-D periodic toy data set of the Latent ODE paper.

    Matches the reference implementation (YuliaRubanova/latent_ode,
    ``generate_timeseries.py`` ``Periodic_1d`` as configured by
    ``lib/parse_datasets.py`` for ``--dataset periodic``, defaults of
    ``run_models.py``) in distribution, not number for number:

    * one set of ``n_points`` sorted times **shared by all series**: ``0`` plus
      ``n_points - 1`` draws from ``U[0, t_max]``;
    * per series, frequency ``f ~ U[0.4, 0.8]``, amplitude ``1``, vertical offset
      ``z0 = 1 + N(0, 0.1^2)`` (``N`` with standard deviation 0.1), phase ``0`` at
      ``t = 0``: ``y(t) = sin(2 pi f t) + z0``;
    * noise ``noise_weight * U[0, 1)`` (one-sided, not zero-mean) added to every
      point except the one at ``t = 0``, as the reference does.

    The reference then drops points at random inside its training loop
    (``--sample-tp``); that is left to the caller here.

    Parameters
    ----------
    n_series : int, default=1000
        Number of series (``-n 1000`` in the paper's command line).
    n_points : int, default=100
        Number of time points per series (``--timepoints``).
    t_max : float, default=5.0
        Times are drawn in ``[0, t_max]`` (``--max-t``).
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator; the same int gives the same data.
    noise_weight : float, default=0.01
        Scale of the uniform noise (``--noise-weight``).
    return_params : bool, default=False
        Also return each series' frequency and offset.

    Returns
    -------
    data : pandas.DataFrame
        Wide layout: columns ``id``, ``time``, ``value``; ``n_series * n_points``
        rows sorted by ``(id, time)``.
    params : pandas.DataFrame
        Only if ``return_params``: columns ``frequency`` and ``offset``, indexed by
        ``id``.

    Raises
    ------
    ValueError
        If a size is not positive, ``t_max <= 0`` or ``noise_weight < 0``.

    Examples
    --------
    >>> data = make_periodic(n_series=3, random_state=0)
    >>> data.shape
    (300, 3)
    """
    n_series = check_positive_int("n_series", n_series)
    n_points = check_positive_int("n_points", n_points)
    t_max = check_positive_float("t_max", t_max)
    noise_weight = check_positive_float("noise_weight", noise_weight, allow_zero=True)
    rng = check_random_state(random_state)

    times = np.sort(np.concatenate([[0.0], rng.uniform(0.0, t_max, size=n_points - 1)]))  # (time,)
    frequency = rng.uniform(*PERIODIC_FREQUENCY_RANGE, size=n_series)  # (series,)
    offset = PERIODIC_OFFSET_MEAN + PERIODIC_OFFSET_STD * rng.standard_normal(n_series)
    values = PERIODIC_AMPLITUDE * np.sin(2 * np.pi * frequency[:, None] * times[None, :]) + offset[:, None]
    noise = noise_weight * rng.random((n_series, n_points))
    noise[:, 0] = 0.0  # the reference leaves the first point noise-free
    values = values + noise  # (series, time)

    ids = np.arange(n_series)
    data = _grid_frame(
        ids, np.broadcast_to(times, (n_series, n_points)), values[:, :, None], (PERIODIC_FEATURE,)
    )
    if not return_params:
        return data
    params = pd.DataFrame({"frequency": frequency, "offset": offset}, index=pd.Index(ids, name=ID_COLUMN))
    return data, params


def _grid_frame(
    ids: np.ndarray, times: np.ndarray, values: np.ndarray, features: tuple[str, ...]
) -> pd.DataFrame:
    """Build a wide table from per-series arrays.

    Parameters
    ----------
    ids : numpy.ndarray, shape (series,)
    times : numpy.ndarray, shape (series, time)
        Sorted along ``time`` within each series.
    values : numpy.ndarray, shape (series, time, features)
    features : tuple of str
        One name per entry of the last axis of ``values``.

    Returns
    -------
    frame : pandas.DataFrame
        Wide layout, sorted by ``(id, time)``.
    """
    n_times = times.shape[1]
    columns = {ID_COLUMN: np.repeat(ids, n_times), TIME_COLUMN: times.reshape(-1).astype(float)}
    for k, name in enumerate(features):
        columns[name] = values[:, :, k].reshape(-1).astype(float)
    return pd.DataFrame(columns)
