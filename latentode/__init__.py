"""latentode: Latent ODEs for irregularly sampled time series."""

from importlib.metadata import PackageNotFoundError, version

from .batch import IrregularBatch
from .data import FrameSpec, SeriesSet, TimeCodec, read_frame, to_frame
from .estimator import LatentODE, ODERNN
from .exceptions import LatentODEError, ModelFileError, NotFittedError, SolverError
from .plotting import plot_series
from .preprocessing import FeatureScaler, TimeScaler
from .splits import extrapolation_split, interpolation_split, train_test_split_series

try:
    __version__ = version("latentode")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LatentODE",
    "ODERNN",
    "plot_series",
    "IrregularBatch",
    "FrameSpec",
    "SeriesSet",
    "TimeCodec",
    "read_frame",
    "to_frame",
    "FeatureScaler",
    "TimeScaler",
    "train_test_split_series",
    "interpolation_split",
    "extrapolation_split",
    "LatentODEError",
    "ModelFileError",
    "NotFittedError",
    "SolverError",
    "__version__",
]
