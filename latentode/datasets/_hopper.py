"""MuJoCo Hopper trajectories simulated with dm_control, as in the Latent ODE paper, with an on-disk cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._checks import check_positive_float, check_positive_int
from ._format import ID_COLUMN, TIME_COLUMN
from ._optional import import_optional

HOPPER_JOINTS = ("rootx", "rootz", "rooty", "waist", "hip", "knee", "ankle")
"""Joints of dm_control's hopper model, in the order of ``physics.data.qpos`` and ``qvel``."""

HOPPER_FEATURES = tuple(f"{joint}_pos" for joint in HOPPER_JOINTS) + tuple(
    f"{joint}_vel" for joint in HOPPER_JOINTS
)
"""Feature columns of :func:`make_hopper`: the 7 joint positions, then the 7 joint velocities."""

HOPPER_REFERENCE_SEED = 123
"""Seed the reference implementation uses for its 10,000 trajectories."""

HOPPER_ROOT_POSITION_RANGE = (0.0, 0.5)
"""Initial ``rootx`` and ``rootz`` are drawn uniformly from this range (``z > 0`` keeps the hopper above ground)."""

HOPPER_JOINT_POSITION_RANGE = (-2.0, 2.0)
"""Initial positions of the other 5 joints are drawn uniformly from this range."""

HOPPER_VELOCITY_RANGE = (-5.0, 5.0)
"""Initial velocities of all 7 joints are drawn uniformly from this range."""

N_ROOT_TRANSLATIONS = 2
"""Number of leading ``qpos`` entries (``rootx``, ``rootz``) drawn from :data:`HOPPER_ROOT_POSITION_RANGE`."""

DEFAULT_CACHE_DIR = Path("~/.cache/latentode")
"""Where :func:`make_hopper` caches simulated trajectories unless told otherwise."""

_CACHE_NAME = "hopper_n{n_series}_steps{n_steps}_seed{seed}.npy"
_CACHE_PATTERN = re.compile(r"hopper_n(\d+)_steps(\d+)_seed(\d+)\.npy")


def make_hopper(
    n_series: int = 10000,
    n_steps: int = 200,
    observed_fraction: float | None = None,
    random_state: int = HOPPER_REFERENCE_SEED,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    use_cache: bool = True,
) -> pd.DataFrame:
    """Simulate Hopper trajectories exactly as the Latent ODE paper's data set.

    Follows ``HopperPhysics._generate_random_trajectories`` of the reference
    implementation (YuliaRubanova/latent_ode, ``mujoco_physics.py``): the
    ``hopper``/``stand`` task of the DeepMind Control Suite, for each trajectory an
    initial state with ``rootx, rootz ~ U[0, 0.5]``, the other 5 joint positions
    ``~ U[-2, 2]`` and all 7 velocities ``~ U[-5, 5]``, then ``n_steps`` physics
    steps with no control, recording positions and velocities *before* each step.
    Random numbers come from ``numpy.random.RandomState(random_state)`` drawn in the
    reference's order, so ``random_state=123`` reproduces the reference's
    trajectories (up to differences between MuJoCo versions), and the first ``k``
    trajectories do not depend on ``n_series``.

    Values are the raw physical states; the reference additionally rescales every
    feature to ``[0, 1]`` by its minimum and maximum over the data set, which is
    left to the caller (fit such scaling on training data only). Time is
    ``step / n_steps``, as in the reference, so a series spans ``[0, 1)``.

    Parameters
    ----------
    n_series : int, default=10000
        Number of trajectories (the reference uses 10,000).
    n_steps : int, default=200
        Number of recorded states per trajectory (the reference uses 200).
    observed_fraction : float, optional
        If given, keep only this fraction of each trajectory's time points (at
        least one), chosen at random independently per series, to make the data
        irregularly sampled. ``None`` keeps all points.
    random_state : int, default=123
        Seed of the simulation's initial states, and of the choice of kept time
        points. Must be an int, because it names the cache file.
    cache_dir : str or os.PathLike, optional
        Directory for cached trajectories, default ``~/.cache/latentode``. A cache
        file holding at least ``n_series`` trajectories with the same ``n_steps`` and
        ``random_state`` is reused.
    use_cache : bool, default=True
        Read and write the cache. If False, always simulate and write nothing.

    Returns
    -------
    data : pandas.DataFrame
        Wide layout: columns ``id``, ``time``, then :data:`HOPPER_FEATURES`
        (``rootx_pos`` ... ``ankle_pos``, ``rootx_vel`` ... ``ankle_vel``); sorted by
        ``(id, time)``; ``n_series * n_steps`` rows when ``observed_fraction`` is None.

    Raises
    ------
    ImportError
        If dm_control (or MuJoCo) is not installed and the trajectories are not cached.
    ValueError
        If a size is not positive or ``observed_fraction`` is not in ``(0, 1]``.

    Examples
    --------
    >>> data = make_hopper(n_series=2, n_steps=50)  # doctest: +SKIP
    >>> data.shape  # doctest: +SKIP
    (100, 16)
    """
    trajectories = hopper_array(
        n_series, n_steps, random_state=random_state, cache_dir=cache_dir, use_cache=use_cache
    )
    n_series, n_steps, _ = trajectories.shape
    times = np.arange(n_steps) / n_steps  # (time,)
    if observed_fraction is None:
        kept = np.broadcast_to(np.arange(n_steps), (n_series, n_steps))
    else:
        observed_fraction = check_positive_float("observed_fraction", observed_fraction)
        if observed_fraction > 1:
            raise ValueError(
                f"observed_fraction must be in (0, 1], got {observed_fraction}. "
                "Pass None to keep every time point."
            )
        n_kept = max(1, round(observed_fraction * n_steps))
        rng = np.random.default_rng(random_state)
        kept = np.sort(np.argsort(rng.random((n_series, n_steps)), axis=1)[:, :n_kept], axis=1)
    values = np.take_along_axis(trajectories, kept[:, :, None], axis=1)  # (series, kept time, 14)
    columns = {
        ID_COLUMN: np.repeat(np.arange(n_series), kept.shape[1]),
        TIME_COLUMN: times[kept].reshape(-1),
    }
    for k, name in enumerate(HOPPER_FEATURES):
        columns[name] = values[:, :, k].reshape(-1)
    return pd.DataFrame(columns)


def hopper_array(
    n_series: int = 10000,
    n_steps: int = 200,
    *,
    random_state: int = HOPPER_REFERENCE_SEED,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Return Hopper trajectories as an array, from the cache or by simulating them.

    Parameters
    ----------
    n_series, n_steps, random_state, cache_dir, use_cache
        As in :func:`make_hopper`.

    Returns
    -------
    trajectories : numpy.ndarray, shape (series, time, 14)
        ``[..., :7]`` are joint positions and ``[..., 7:]`` joint velocities, in the
        order of :data:`HOPPER_JOINTS`.
    """
    n_series = check_positive_int("n_series", n_series)
    n_steps = check_positive_int("n_steps", n_steps)
    random_state = check_positive_int("random_state", random_state, minimum=0)
    if not use_cache:
        return _simulate(n_series, n_steps, random_state)
    directory = _cache_directory(cache_dir)
    cached = _find_cache(directory, n_series, n_steps, random_state)
    if cached is not None:
        return _read_cache(cached, n_series, n_steps)
    trajectories = _simulate(n_series, n_steps, random_state)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / _CACHE_NAME.format(n_series=n_series, n_steps=n_steps, seed=random_state)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial.npy")
    np.save(partial, trajectories)
    os.replace(partial, target)  # atomic: a reader never sees a half-written cache file
    return trajectories


def _read_cache(path: Path, n_series: int, n_steps: int) -> np.ndarray:
    """The first ``n_series`` trajectories of a cache file, checked against what its name promises."""
    size = int(_CACHE_PATTERN.fullmatch(path.name).group(1))
    try:
        # Memory-mapped, so taking a prefix of a large cache reads only that prefix.
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(
            f"The Hopper cache file {str(path)!r} is unreadable ({type(error).__name__}: {error}); delete it "
            "and call make_hopper again to regenerate it."
        ) from error
    if stored.shape != (size, n_steps, len(HOPPER_FEATURES)) or not np.issubdtype(stored.dtype, np.floating):
        raise ValueError(
            f"The Hopper cache file {str(path)!r} holds an array of shape {stored.shape} and dtype {stored.dtype}, "
            f"but its name promises ({size}, {n_steps}, {len(HOPPER_FEATURES)}) floats; delete it and call make_hopper again."
        )
    trajectories = np.array(stored[:n_series])
    if not np.isfinite(trajectories).all():
        raise ValueError(f"The Hopper cache file {str(path)!r} holds non-finite values; delete it and call make_hopper again.")
    return trajectories


def _cache_directory(cache_dir: str | os.PathLike[str] | None) -> Path:
    """Resolve the ``cache_dir`` argument to an absolute directory path."""
    if cache_dir is None:
        return DEFAULT_CACHE_DIR.expanduser()
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a str, an os.PathLike or None, got {type(cache_dir).__name__}.")
    return Path(cache_dir).expanduser()


def _find_cache(directory: Path, n_series: int, n_steps: int, seed: int) -> Path | None:
    """Return the smallest cache file with at least ``n_series`` matching trajectories, if any."""
    if not directory.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for path in directory.iterdir():
        match = _CACHE_PATTERN.fullmatch(path.name)
        if match is None:
            continue
        size, steps, file_seed = (int(group) for group in match.groups())
        if steps == n_steps and file_seed == seed and size >= n_series and (best is None or size < best[0]):
            best = (size, path)
    return None if best is None else best[1]


def _simulate(n_series: int, n_steps: int, seed: int) -> np.ndarray:
    """Simulate ``n_series`` Hopper trajectories of ``n_steps`` states (shape (series, time, 14))."""
    # Rendering is never used; "disable" stops dm_control probing for GLFW and warning.
    os.environ.setdefault("MUJOCO_GL", "disable")
    suite = import_optional("dm_control.suite", needed_for="make_hopper")
    physics = suite.load("hopper", "stand").physics
    n_position = physics.data.qpos.shape[0]
    n_velocity = physics.data.qvel.shape[0]
    if n_position + n_velocity != len(HOPPER_FEATURES):
        raise RuntimeError(
            f"dm_control's hopper has {n_position} positions and {n_velocity} velocities; "
            f"expected {len(HOPPER_JOINTS)} of each. This dm_control version is not supported."
        )
    rng = np.random.RandomState(seed)  # RandomState, not Generator: reproduces the reference stream
    trajectories = np.zeros((n_series, n_steps, n_position + n_velocity))
    for i in range(n_series):
        with physics.reset_context():
            physics.data.qpos[:N_ROOT_TRANSLATIONS] = rng.uniform(
                *HOPPER_ROOT_POSITION_RANGE, size=N_ROOT_TRANSLATIONS
            )
            physics.data.qpos[N_ROOT_TRANSLATIONS:] = rng.uniform(
                *HOPPER_JOINT_POSITION_RANGE, size=n_position - N_ROOT_TRANSLATIONS
            )
            physics.data.qvel[:] = rng.uniform(*HOPPER_VELOCITY_RANGE, size=n_velocity)
        for t in range(n_steps):
            trajectories[i, t, :n_position] = physics.data.qpos
            trajectories[i, t, n_position:] = physics.data.qvel
            physics.step()
    return trajectories
