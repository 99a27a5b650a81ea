"""The errors and warnings dgmm raises on purpose.

Every user-facing problem is one of these, with a one-line message that names
what is wrong (file, column, parameter, value) and what to do about it.
"""

from __future__ import annotations


class DgmmError(Exception):
    """Base class of every error dgmm raises on purpose."""


class DataError(DgmmError, ValueError):
    """The input data cannot be used: missing file, bad column, null, NaN or inf."""


class ParameterError(DgmmError, ValueError):
    """An estimator parameter or an initial parameter has a bad value or shape."""


class FitError(DgmmError, RuntimeError):
    """EM could not continue: a covariance stopped being positive definite or a NaN appeared."""


class ClusterError(DgmmError, RuntimeError):
    """The cluster could not run the fit: no running worker for too long (paused at their memory
    limit, or none connected), workers killed again and again, or the scheduler lost. A checkpoint
    of the last finished iteration is kept, so the fit can resume."""


class OutputExists(DataError):
    """An output's destination is taken, and ``overwrite`` was not given."""


class ConfigError(DgmmError, ValueError):
    """A config file or option has an unknown key, a wrong type or a bad value."""


class CheckpointError(DgmmError, ValueError):
    """A checkpoint is corrupt, belongs to other input or settings, to another run, or is in use."""


class ModelFileError(DgmmError, ValueError):
    """A model or checkpoint file is missing, truncated, tampered with, of another version, or inconsistent."""


class NotFittedError(DgmmError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the log-likelihood changed by less than ``tol``."""


class ReseedWarning(UserWarning):
    """A component died or collapsed during EM and was re-seeded (see :func:`dgmm.kernels.mstep.m_step`)."""
