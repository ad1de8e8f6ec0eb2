"""Checks of the arguments shared by the dataset builders and loaders."""

from __future__ import annotations

import numbers

import numpy as np


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` after checking it is an integer ``>= minimum``.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    value : object
        The value received.
    minimum : int, default=1
        Smallest allowed value.

    Returns
    -------
    value : int

    Raises
    ------
    TypeError
        If ``value`` is not an integer (``bool`` is rejected too).
    ValueError
        If ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def check_positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite ``float`` after checking it is positive.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    value : object
        The value received.
    allow_zero : bool, default=False
        Whether ``0`` is accepted.

    Returns
    -------
    value : float

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If ``value`` is not finite, negative, or zero when ``allow_zero`` is False.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return value


def check_random_state(random_state: object) -> np.random.Generator:
    """Turn a ``random_state`` argument into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
        ``None`` draws fresh entropy from the operating system, an ``int`` seeds a
        new generator (same seed, same data), a ``Generator`` is used as is (and
        advanced).

    Returns
    -------
    rng : numpy.random.Generator

    Raises
    ------
    TypeError
        For any other type.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}.")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        "random_state must be None, a non-negative int or a numpy.random.Generator, "
        f"got {type(random_state).__name__} ({random_state!r})."
    )
