"""Reader of the UCI "Localization Data for Person Activity" recordings (a file you download yourself)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ._checks import check_positive_float
from ._format import ID_COLUMN, TIME_COLUMN, VALUE_COLUMN, VARIABLE_COLUMN, long_to_wide

ACTIVITY_TAGS = {
    "010-000-024-033": "ankle_left",
    "010-000-030-096": "ankle_right",
    "020-000-033-111": "chest",
    "020-000-032-221": "belt",
}
"""Tag identifier of each of the four sensors, and the name used for its feature columns."""

ACTIVITY_FEATURES = tuple(f"{tag}_{axis}" for tag in ACTIVITY_TAGS.values() for axis in ("x", "y", "z"))
"""Feature columns of :func:`load_person_activity`: x, y, z of each tag."""

ACTIVITY_LABELS = (
    "walking",
    "falling",
    "lying down",
    "lying",
    "sitting down",
    "sitting",
    "standing up from lying",
    "on all fours",
    "sitting on the ground",
    "standing up from sitting",
    "standing up from sitting on the ground",
)
"""Activities listed by the UCI description. Labels are returned as written in the file, which
may abbreviate the last one (the Latent ODE reference code expects "standing up from sit on grnd")."""

ACTIVITY_COLUMNS = ("sequence", "tag", "timestamp", "date", "x", "y", "z", "activity")
"""Columns of ``ConfLongDemo_JSI.txt``, which has no header line."""

TICKS_PER_SECOND = 10_000_000
"""The file's time stamps are .NET ticks: units of 100 ns since 0001-01-01."""

ACTIVITY_LABEL_COLUMN = "activity"
"""Name of the label column of the labels table."""


class PersonActivity(NamedTuple):
    """What :func:`load_person_activity` returns; unpacks as ``data, labels``.

    Attributes
    ----------
    data : pandas.DataFrame
        Tag positions, wide layout.
    labels : pandas.DataFrame
        Columns ``id``, ``time``, ``activity``; one row per row of ``data``, same order.
    """

    data: pd.DataFrame
    labels: pd.DataFrame


def load_person_activity(path: str | os.PathLike[str], *, resolution: float | None = None) -> PersonActivity:
    """Read ``ConfLongDemo_JSI.txt`` of the UCI "Localization Data for Person Activity" set.

    The data (https://archive.ics.uci.edu/dataset/196, CC BY 4.0) are not
    distributed with latentode; download the file yourself. Five people (A to E)
    each performed the same scenario five times (sequences ``A01`` ... ``E05``)
    wearing four location tags (:data:`ACTIVITY_TAGS`). Each line of the file is
    one reading of one tag: ``sequence, tag, timestamp, date, x, y, z, activity``,
    no header; the timestamp counts 100 ns ticks (:data:`TICKS_PER_SECOND`).

    Parameters
    ----------
    path : str or os.PathLike
        The file ``ConfLongDemo_JSI.txt``.
    resolution : float, optional
        If given, round times to multiples of this many seconds and average the
        readings of a tag that fall in the same bin. ``None`` keeps every reading
        at its own time (each row then holds one tag's reading). The Latent ODE
        reference code rounds to 1e5 ticks, i.e. ``resolution=0.01`` (its comment
        says 100 ms, its code does 10 ms).

    Returns
    -------
    PersonActivity
        Named tuple ``(data, labels)``:

        * ``data``: wide layout, columns ``id`` (sequence name), ``time`` (seconds
          since the sequence's first reading), then :data:`ACTIVITY_FEATURES`
          (``ankle_left_x`` ... ``belt_z``), ``NaN`` where a tag has no reading at
          that time; sorted by ``(id, time)``.
        * ``labels``: columns ``id``, ``time``, ``activity`` (string, as in the file),
          one row per row of ``data``. When readings are binned, the label of the
          bin's first reading.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file does not have the 8 columns described above, or names a tag
        not in :data:`ACTIVITY_TAGS`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No file at {str(path)!r}. Download ConfLongDemo_JSI.txt from "
            "https://archive.ics.uci.edu/dataset/196 and pass its path."
        )
    if resolution is not None:
        resolution = check_positive_float("resolution", resolution)
    try:
        raw = pd.read_csv(
            path,
            header=None,
            names=list(ACTIVITY_COLUMNS),
            dtype={"sequence": str, "tag": str, "timestamp": np.int64, "date": str, "activity": str},
            skipinitialspace=True,
        )
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(
            f"{path} is not in the ConfLongDemo_JSI.txt format (8 comma-separated columns: "
            f"{', '.join(ACTIVITY_COLUMNS)}; no header): {error}"
        ) from error
    if raw[list(ACTIVITY_COLUMNS)].isna().any().any():
        raise ValueError(
            f"{path} has empty fields or lines with fewer than 8 columns; expected "
            f"{', '.join(ACTIVITY_COLUMNS)} on every line."
        )
    unknown = sorted(set(raw["tag"]) - set(ACTIVITY_TAGS))
    if unknown:
        raise ValueError(f"{path} names unknown tags {unknown}; known tags are {sorted(ACTIVITY_TAGS)}.")

    first_tick = raw.groupby("sequence")["timestamp"].transform("min")
    seconds = (raw["timestamp"] - first_tick).to_numpy() / TICKS_PER_SECOND
    if resolution is not None:
        seconds = np.round(seconds / resolution) * resolution
    raw[TIME_COLUMN] = seconds
    raw[ID_COLUMN] = raw["sequence"]
    tag_name = raw["tag"].map(ACTIVITY_TAGS)

    long = pd.concat(
        [
            pd.DataFrame(
                {
                    ID_COLUMN: raw[ID_COLUMN],
                    TIME_COLUMN: raw[TIME_COLUMN],
                    VARIABLE_COLUMN: tag_name + f"_{axis}",
                    VALUE_COLUMN: raw[axis].astype(float),
                }
            )
            for axis in ("x", "y", "z")
        ],
        ignore_index=True,
    )
    data = long_to_wide(long, variables=ACTIVITY_FEATURES)

    ordered = raw.sort_values([ID_COLUMN, TIME_COLUMN, "timestamp"], kind="stable")
    first_label = ordered.groupby([ID_COLUMN, TIME_COLUMN], sort=False)[ACTIVITY_LABEL_COLUMN].first()
    labels = data[[ID_COLUMN, TIME_COLUMN]].merge(
        first_label.reset_index(), on=[ID_COLUMN, TIME_COLUMN], how="left", validate="one_to_one"
    )
    return PersonActivity(data=data, labels=labels)
