"""dgmm: Gaussian mixture models fitted by exact EM on larger-than-memory data, on Dask.

The package shows the data flow of one EM iteration (see the README's "How it works"):
``kernels`` (the maths: E-step, M-step, densities) <- ``algorithms`` (programs of passes) and
``execution`` (the graph of a pass, executors, clusters) and ``data`` (inputs, outputs) <-
``persist`` (model files, checkpoints) <- ``estimator`` (GaussianMixture, select) <- ``cli``.

The public names below load on first use: a Dask worker that unpickles a kernel imports this
package, and must not pay for the estimator layer (scikit-learn: ~80 MiB per worker).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CheckpointError,
    ClusterError,
    ConfigError,
    DataError,
    DgmmError,
    FitError,
    InputChanged,
    InputTypeError,
    ModelFileError,
    OutputExists,
    ParameterError,
    ReseedWarning,
)
from .version import __version__

_LAZY = {
    "GaussianMixture": "dgmm.estimator.mixture",
    "GaussianMixtureClassifier": "dgmm.estimator.classifier",
    "select": "dgmm.estimator.select",
    "Selection": "dgmm.estimator.select",
    "load_model": "dgmm.estimator.files",
    "save_model": "dgmm.persist.formats",
    "score_trials": "dgmm.estimator.verification",
    "verification_report": "dgmm.estimator.verification",
    "identification_accuracy": "dgmm.estimator.verification",
    "plot_det": "dgmm.estimator.verification",
    "read_parquet": "dgmm.data.parquet",
    "ParquetDataset": "dgmm.data.parquet",
    "predict_to_parquet": "dgmm.data.outputs",
    "impute_to_parquet": "dgmm.data.outputs",
    "Checkpoint": "dgmm.persist.checkpoint",
    "IterationReport": "dgmm.algorithms.em",
    "MixtureParams": "dgmm.kernels.params",
    "NotFittedError": "dgmm.errors",  # subclasses of scikit-learn's, made on first use
    "ConvergenceWarning": "dgmm.errors",
}

if TYPE_CHECKING:
    from .algorithms.em import IterationReport
    from .data.outputs import impute_to_parquet, predict_to_parquet
    from .data.parquet import ParquetDataset, read_parquet
    from .errors import ConvergenceWarning, NotFittedError
    from .estimator.classifier import GaussianMixtureClassifier
    from .estimator.files import load_model
    from .estimator.mixture import GaussianMixture
    from .estimator.select import Selection, select
    from .estimator.verification import identification_accuracy, plot_det, score_trials, verification_report
    from .kernels.params import MixtureParams
    from .persist.checkpoint import Checkpoint
    from .persist.formats import save_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dgmm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(
    [
        "CheckpointError",
        "ClusterError",
        "ConfigError",
        "DataError",
        "DgmmError",
        "FitError",
        "InputChanged",
        "InputTypeError",
        "ModelFileError",
        "OutputExists",
        "ParameterError",
        "ReseedWarning",
        "__version__",
        *_LAZY,
    ]
)
