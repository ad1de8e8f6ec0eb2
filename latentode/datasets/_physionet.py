"""Reader of the PhysioNet/Computing in Cardiology Challenge 2012 ICU records (files you download yourself)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ._format import (
    ID_COLUMN,
    TIME_COLUMN,
    VALUE_COLUMN,
    VARIABLE_COLUMN,
    check_format,
    long_to_wide,
)

PHYSIONET_HEADER = ("Time", "Parameter", "Value")
"""Header line of every record file."""

PHYSIONET_RECORD_ID = "RecordID"
"""Parameter naming the record, first row of every record file."""

PHYSIONET_DESCRIPTORS = ("Age", "Gender", "Height", "ICUType", "Weight")
"""General descriptors recorded once, at time 00:00, at the top of each record file."""

PHYSIONET_MISSING = -1.0
"""Value the challenge uses for an unknown general descriptor or outcome."""

MINUTES_PER_HOUR = 60.0
"""Minutes in an hour, to turn ``HH:MM`` time stamps into hours."""

PHYSIONET_OUTCOME_COLUMNS = ("SAPS-I", "SOFA", "Length_of_stay", "Survival", "In-hospital_death")
"""Columns of ``Outcomes-a.txt`` besides ``RecordID``."""

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class PhysioNet2012(NamedTuple):
    """What :func:`load_physionet2012` returns; unpacks as ``timeseries, static, outcomes``.

    Attributes
    ----------
    timeseries : pandas.DataFrame
        The time-varying measurements, long (or wide) layout, time in hours since
        ICU admission.
    static : pandas.DataFrame
        General descriptors ``Age``, ``Gender``, ``Height``, ``ICUType``, ``Weight``,
        indexed by ``id``; ``NaN`` where the file has -1.
    outcomes : pandas.DataFrame or None
        Outcomes indexed by ``id`` if an outcomes file was given, else None.
    """

    timeseries: pd.DataFrame
    static: pd.DataFrame
    outcomes: pd.DataFrame | None


def load_physionet2012(
    path: str | os.PathLike[str],
    outcomes_path: str | os.PathLike[str] | None = None,
    *,
    format: str = "long",
) -> PhysioNet2012:
    """Read PhysioNet/CinC Challenge 2012 records (``set-a``, ``set-b``, ...).

    The data (https://physionet.org/content/challenge-2012/1.0.0/) are not
    distributed with latentode; download them yourself. Each record file
    ``<RecordID>.txt`` is a CSV with header ``Time,Parameter,Value``; ``Time`` is
    ``HH:MM`` since ICU admission (hours may exceed 24). Its first rows, at
    ``00:00``, are ``RecordID`` and the general descriptors :data:`PHYSIONET_DESCRIPTORS`
    (``-1`` = unknown); the remaining rows are time-varying measurements. ``Weight``
    is both a descriptor (its first row) and a time series (later rows).

    Time-varying values are returned as recorded; only descriptors and outcomes
    equal to ``-1`` are turned into ``NaN``. The Latent ODE reference
    implementation additionally rounds times to 6 minutes and averages within
    each bin; that is left to the caller.

    Parameters
    ----------
    path : str or os.PathLike
        A directory of record files (every ``*.txt`` in it is read), a single record
        file, or a ``.tar.gz``/``.tgz``/``.tar`` archive as downloaded
        (e.g. ``set-a.tar.gz``; every ``*.txt`` member is read).
    outcomes_path : str or os.PathLike, optional
        ``Outcomes-a.txt``: CSV with header
        ``RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death``.
    format : {"long", "wide"}, default="long"
        Layout of ``timeseries``. ``"long"`` keeps repeated measurements of one
        parameter at the same minute as separate rows (as recorded); ``"wide"``
        averages them.

    Returns
    -------
    PhysioNet2012
        Named tuple ``(timeseries, static, outcomes)``:

        * ``timeseries``: long layout, columns ``id`` (RecordID, int), ``time``
          (hours, float), ``variable`` (parameter name), ``value``; sorted by
          ``(id, time, variable)``. Or the wide layout if ``format="wide"``.
        * ``static``: one row per record, indexed by ``id``, columns
          :data:`PHYSIONET_DESCRIPTORS`.
        * ``outcomes``: indexed by ``id``, columns :data:`PHYSIONET_OUTCOME_COLUMNS`;
          ``-1`` becomes ``NaN`` (for ``Survival`` it means no recorded death);
          None if ``outcomes_path`` is None.

    Raises
    ------
    FileNotFoundError
        If ``path`` or ``outcomes_path`` does not exist, or ``path`` holds no record file.
    ValueError
        If a file is not in the format described above; the message names the file.
    """
    format = check_format(format)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No PhysioNet 2012 data at {str(path)!r}. Download set-a (or set-b) from "
            "https://physionet.org/content/challenge-2012/1.0.0/ and pass the extracted "
            "directory or the .tar.gz archive."
        )
    names: list[str] = []
    record_ids: list[int] = []
    static_rows: list[dict[str, float]] = []
    bodies: list[list[str]] = []
    for name, text in _record_texts(path):
        static, body = _split_record(name, text)
        names.append(name)
        record_ids.append(int(static[ID_COLUMN]))
        static_rows.append(static)
        bodies.append(body)
    if not names:
        raise FileNotFoundError(f"No record files (*.txt) found in {str(path)!r}.")
    timeseries = _parse_bodies(names, record_ids, bodies)
    if format == "wide":
        timeseries = long_to_wide(timeseries)
    static = pd.DataFrame(static_rows).set_index(ID_COLUMN).sort_index()
    static = static.reindex(columns=list(PHYSIONET_DESCRIPTORS))
    outcomes = None if outcomes_path is None else _read_outcomes(Path(outcomes_path))
    return PhysioNet2012(timeseries=timeseries, static=static, outcomes=outcomes)


def _record_texts(path: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(name, text)`` for every record file under ``path`` (directory, file or archive)."""
    if path.is_dir():
        for file in sorted(path.glob("*.txt")):
            yield str(file), file.read_text()
    elif path.name.endswith(_ARCHIVE_SUFFIXES):
        with tarfile.open(path) as archive:
            for member in sorted(archive.getmembers(), key=lambda m: m.name):
                if member.isfile() and member.name.endswith(".txt"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield f"{path}:{member.name}", handle.read().decode()
    else:
        yield str(path), path.read_text()


def _split_record(name: str, text: str) -> tuple[dict[str, float], list[str]]:
    """Split one record file into its descriptors and the lines of its time-varying rows.

    Returns
    -------
    static : dict
        ``id`` (the RecordID) and each descriptor found, ``NaN`` for -1.
    body : list of str
        The remaining ``Time,Parameter,Value`` lines, blank lines removed.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines or tuple(lines[0].split(",")) != PHYSIONET_HEADER:
        found = lines[0] if lines else ""
        raise ValueError(
            f"{name} has header {found!r}; a PhysioNet 2012 record file starts with "
            f"{','.join(PHYSIONET_HEADER)!r}. Is this the Outcomes file or another data set?"
        )
    rows = [line.split(",") for line in lines[1 : 2 + len(PHYSIONET_DESCRIPTORS)]]
    if not rows or len(rows[0]) != len(PHYSIONET_HEADER) or rows[0][1] != PHYSIONET_RECORD_ID:
        raise ValueError(f"{name}: the first row after the header must be the {PHYSIONET_RECORD_ID} row.")
    static: dict[str, float] = {ID_COLUMN: int(_number(name, rows[0][2]))}
    # Descriptor block: leading rows at time 0 naming each descriptor at most once.
    n_block = 1
    for row in rows[1:]:
        if len(row) != len(PHYSIONET_HEADER):
            break
        stamp, parameter, value = row
        if parameter not in PHYSIONET_DESCRIPTORS or parameter in static or _hours(name, stamp) != 0:
            break
        number = _number(name, value)
        static[parameter] = np.nan if number == PHYSIONET_MISSING else number
        n_block += 1
    body = lines[1 + n_block :]
    for line in body:
        if line.count(",") != len(PHYSIONET_HEADER) - 1:
            raise ValueError(f"{name}: line {line!r} does not have the 3 fields Time,Parameter,Value.")
        if line.count(":") != 1:
            raise ValueError(f"{name}: time stamps must be HH:MM, got line {line!r}.")
    return static, body


def _parse_bodies(names: list[str], record_ids: list[int], bodies: list[list[str]]) -> pd.DataFrame:
    """Parse the time-varying lines of all records at once into the long layout."""
    sizes = np.array([len(body) for body in bodies])
    if sizes.sum() == 0:
        columns = {ID_COLUMN: np.int64, TIME_COLUMN: float, VARIABLE_COLUMN: object, VALUE_COLUMN: float}
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in columns.items()})
    file_index = np.repeat(np.arange(len(names)), sizes)
    # Each line is "HH:MM,Parameter,Value" with exactly one ":" (checked in _split_record), so
    # turning ":" into "," lets the fast C parser split hours from minutes.
    text = "\n".join(line for body in bodies for line in body).replace(":", ",")
    table = pd.read_csv(
        io.StringIO(text),
        header=None,
        names=["hours", "minutes", "Parameter", "Value"],
        dtype={"Parameter": str},
        keep_default_na=False,
        low_memory=False,
    )
    numbers: dict[str, np.ndarray] = {}
    for column in ("hours", "minutes", "Value"):
        parsed = table[column]
        if not pd.api.types.is_numeric_dtype(parsed):
            parsed = pd.to_numeric(parsed, errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if bad.size:
            what = "time stamps must be HH:MM" if column != "Value" else "values must be numbers"
            raise ValueError(f"{names[file_index[bad[0]]]}: {what}, got {table[column].iloc[bad[0]]!r}.")
        numbers[column] = parsed.to_numpy(dtype=float)
    hours = numbers["hours"] + numbers["minutes"] / MINUTES_PER_HOUR
    values = numbers["Value"]
    timeseries = pd.DataFrame(
        {
            ID_COLUMN: np.asarray(record_ids, dtype=np.int64)[file_index],
            TIME_COLUMN: hours,
            VARIABLE_COLUMN: table["Parameter"].to_numpy(),
            VALUE_COLUMN: values,
        }
    )
    return timeseries.sort_values([ID_COLUMN, TIME_COLUMN, VARIABLE_COLUMN], kind="stable").reset_index(
        drop=True
    )


def _number(name: str, text: str) -> float:
    """Parse one numeric field of a record file."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}: non-numeric value {text!r} in the Value column.") from None


def _hours(name: str, stamp: str) -> float:
    """Turn one ``HH:MM`` string into hours."""
    hours, _, minutes = stamp.partition(":")
    try:
        return int(hours) + int(minutes) / MINUTES_PER_HOUR
    except ValueError:
        raise ValueError(f"{name}: time stamps must be HH:MM, got {stamp!r}.") from None


def _read_outcomes(path: Path) -> pd.DataFrame:
    """Read ``Outcomes-a.txt`` into a table indexed by ``id``."""
    if not path.is_file():
        raise FileNotFoundError(f"No outcomes file at {str(path)!r} (expected e.g. Outcomes-a.txt).")
    outcomes = pd.read_csv(path)
    expected = (PHYSIONET_RECORD_ID, *PHYSIONET_OUTCOME_COLUMNS)
    missing = [column for column in expected if column not in outcomes.columns]
    if missing:
        raise ValueError(
            f"{path} lacks the columns {missing}; a PhysioNet 2012 outcomes file has the header "
            f"{','.join(expected)!r}."
        )
    outcomes = outcomes[list(expected)].rename(columns={PHYSIONET_RECORD_ID: ID_COLUMN})
    outcomes = outcomes.set_index(ID_COLUMN).sort_index().astype(float)
    outcomes = outcomes.mask(outcomes == PHYSIONET_MISSING)
    outcomes["In-hospital_death"] = outcomes["In-hospital_death"].astype("Int64")
    return outcomes
