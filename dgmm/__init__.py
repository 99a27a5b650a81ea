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
from .io import read_parquet
from .mixture import GaussianMixture
from .model_io import load_model, save_model
from .outputs import predict_to_parquet
from .params import MixtureParams
from .select import Selection, select  # the function shadows its module: dgmm.select(...)

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
