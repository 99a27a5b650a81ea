"""dgmm: Gaussian mixture models fitted by exact EM on larger-than-memory data, on Dask.

The package shows the data flow of one EM iteration (see the README's "How it works"):
``kernels`` (the maths: E-step, M-step, densities) <- ``algorithms`` (programs of passes) and
``execution`` (the graph of a pass, executors, clusters) and ``data`` (inputs, outputs) <-
``persist`` (model files, checkpoints) <- ``estimator`` (GaussianMixture, select) <- ``cli``.
"""

from .algorithms.em import IterationReport
from .data.outputs import predict_to_parquet
from .data.parquet import ParquetDataset, read_parquet
from .errors import (
    CheckpointError,
    ClusterError,
    ConfigError,
    ConvergenceWarning,
    DataError,
    DgmmError,
    FitError,
    ModelFileError,
    NotFittedError,
    OutputExists,
    ParameterError,
    ReseedWarning,
)
from .estimator.mixture import GaussianMixture
from .estimator.select import Selection, select
from .kernels.params import MixtureParams
from .persist.checkpoint import Checkpoint
from .estimator.files import load_model
from .persist.model_file import save_model
from .version import __version__

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ClusterError",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "DgmmError",
    "FitError",
    "GaussianMixture",
    "IterationReport",
    "load_model",
    "MixtureParams",
    "ModelFileError",
    "NotFittedError",
    "OutputExists",
    "ParameterError",
    "ParquetDataset",
    "predict_to_parquet",
    "read_parquet",
    "ReseedWarning",
    "save_model",
    "select",
    "Selection",
]
