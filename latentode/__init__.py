"""latentode: Latent ODEs for irregularly sampled time series."""

from importlib.metadata import PackageNotFoundError, version

from .batch import IrregularBatch
from .data import FrameSpec, SeriesSet, TimeCodec, read_frame, to_frame
from .estimator import ODERNN, LatentODE
from .exceptions import DistributedError, LatentODEError, ModelFileError, NotFittedError, SolverError
from .plotting import plot_series
from .preprocessing import FeatureScaler, TimeScaler
from .splits import extrapolation_split, interpolation_split, train_test_split_series

try:
    __version__ = version("latentode")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ODERNN",
    "DistributedError",
    "FeatureScaler",
    "FrameSpec",
    "IrregularBatch",
    "LatentODE",
    "LatentODEError",
    "ModelFileError",
    "NotFittedError",
    "SeriesSet",
    "SolverError",
    "TimeCodec",
    "TimeScaler",
    "__version__",
    "extrapolation_split",
    "interpolation_split",
    "plot_series",
    "read_frame",
    "to_frame",
    "train_test_split_series",
]
