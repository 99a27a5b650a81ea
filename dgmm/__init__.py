"""dgmm: Gaussian mixture models fitted by exact EM on larger-than-memory data, on Dask."""

from .errors import (
    ClusterError,
    ConvergenceWarning,
    ReseedWarning,
    DataError,
    DgmmError,
    FitError,
    ModelFileError,
    NotFittedError,
    ParameterError,
)
from .data.parquet import read_parquet
from .estimator.mixture import GaussianMixture
from .persist.model_file import load_model, save_model
from .data.outputs import predict_to_parquet
from .kernels.params import MixtureParams
from .estimator.select import Selection, select  # the function shadows its module: dgmm.select(...)

__all__ = [
    "ClusterError",
    "ConvergenceWarning",
    "ReseedWarning",
    "DataError",
    "DgmmError",
    "FitError",
    "GaussianMixture",
    "load_model",
    "ModelFileError",
    "MixtureParams",
    "NotFittedError",
    "ParameterError",
    "predict_to_parquet",
    "read_parquet",
    "save_model",
    "select",
    "Selection",
]
__version__ = "0.1.0"
