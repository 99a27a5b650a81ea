"""dgmm: Gaussian mixture models fitted by exact EM on larger-than-memory data, on Dask."""

from .errors import ConvergenceWarning, DataError, DgmmError, FitError, NotFittedError, ParameterError
from .io import read_parquet
from .mixture import GaussianMixture
from .params import MixtureParams

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DgmmError",
    "FitError",
    "GaussianMixture",
    "MixtureParams",
    "NotFittedError",
    "ParameterError",
    "read_parquet",
]
__version__ = "0.1.0"
