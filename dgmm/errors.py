"""The errors and warnings dgmm raises on purpose.

Every user-facing problem is one of these, with a one-line message that names
what is wrong (file, column, parameter, value) and what to do about it.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_COMMAND_LINE = contextvars.ContextVar("dgmm_command_line", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Inside, messages name settings as the ``dgmm`` command spells them (:func:`spell`)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def spell(keyword: str, option: str) -> str:
    """How a message names a setting for whoever reads it: its Python keyword (``columns=[...]``), or
    inside :func:`command_line` its option (``--columns A,B``). Messages raised in Dask workers, where
    neither is known, name both."""
    return option if _COMMAND_LINE.get() else keyword


COLUMNS_HINT = ("columns=[...]", "--columns A,B,...")  # how a user names the feature columns


class DgmmError(Exception):
    """Base class of every error dgmm raises on purpose."""


class DataError(DgmmError, ValueError):
    """The input data cannot be used: missing file, bad column, null, NaN or inf."""


class InputTypeError(DataError, TypeError):
    """The input is of a kind dgmm cannot fit: sparse, complex, or holding values that are not numbers
    (a TypeError too, as scikit-learn raises for such input)."""


class ParameterError(DgmmError, ValueError):
    """An estimator parameter or an initial parameter has a bad value or shape."""


class FitError(DgmmError, ValueError):
    """EM could not continue: a covariance stopped being positive definite or a NaN appeared.

    A ValueError, as scikit-learn's estimators raise for data they cannot fit."""


class ClusterError(DgmmError, RuntimeError):
    """The cluster could not run the fit: no running worker for too long (paused at their memory
    limit, or none connected), workers killed again and again, or the scheduler lost. A checkpoint
    of the last finished iteration is kept, so the fit can resume."""


class InputChanged(DataError):
    """An input file changed while a run was reading it (rewritten, truncated, replaced or removed since the
    run started): the run reads the files as they were when it started, or stops."""


class OutputExists(DataError):
    """An output's destination is taken, and ``overwrite`` was not given."""


class ConfigError(DgmmError, ValueError):
    """A config file or option has an unknown key, a wrong type or a bad value."""


class CheckpointError(DgmmError, ValueError):
    """A checkpoint is corrupt, belongs to other input or settings, to another run, or is in use."""


class ModelFileError(DgmmError, ValueError):
    """A model or checkpoint file is missing, truncated, tampered with, of another version, or inconsistent."""


class IdColumnWarning(UserWarning):
    """A feature column looks like a row id: distinct consecutive integers, one per row (see
    :func:`dgmm.data.input_checks.id_like_columns`). Fitting it as a feature spreads every component along it."""


class ReseedWarning(UserWarning):
    """A component died or collapsed during EM and was re-seeded (see :func:`dgmm.kernels.mstep.m_step`)."""


def _sklearn_subclasses() -> dict[str, type]:
    """NotFittedError and ConvergenceWarning, subclasses of scikit-learn's, so that code catching or
    filtering scikit-learn's (``except sklearn.exceptions.NotFittedError``, ``check_is_fitted``,
    warning filters) catches dgmm's. Made on first use: importing scikit-learn costs ~80 MiB,
    which Dask workers, which only import the kernels, never pay."""
    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(DgmmError, SklearnNotFittedError):
        """A method that needs a fitted model was called before ``fit`` (also an AttributeError and a ValueError)."""

    class ConvergenceWarning(SklearnConvergenceWarning):
        """EM stopped at ``max_iter`` before the log-likelihood changed by less than ``tol``."""

    for cls in (NotFittedError, ConvergenceWarning):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {"NotFittedError": NotFittedError, "ConvergenceWarning": ConvergenceWarning}


def __getattr__(name: str) -> type:
    if name in ("NotFittedError", "ConvergenceWarning"):
        globals().update(_sklearn_subclasses())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
