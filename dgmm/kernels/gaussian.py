"""Gaussian densities parameterised by precision Cholesky factors (pure NumPy/SciPy).

Shapes by covariance type, for ``K`` components and ``d`` features:

============  ==================  ==========================================
type          covariances          precisions_cholesky
============  ==================  ==========================================
"full"        (K, d, d)            (K, d, d), upper triangular, P = U Uᵀ
"tied"        (d, d)               (d, d)
"diag"        (K, d)               (K, d), 1 / sqrt(variance)
"spherical"   (K,)                 (K,), 1 / sqrt(variance)
============  ==================  ==========================================

The conventions are scikit-learn's, so fitted attributes can be compared and
exchanged directly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import linalg

from ..errors import FitError, ParameterError

CovarianceType = Literal["full", "tied", "diag", "spherical"]
COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the input data."
)


def covariance_shape(covariance_type: CovarianceType, n_components: int, n_features: int) -> tuple[int, ...]:
    """Shape of ``covariances`` (and ``precisions_cholesky``) for ``K`` components and ``d`` features.

    (K, d, d) "full", (d, d) "tied", (K, d) "diag", (K,) "spherical"; ValueError for another type.
    """
    K, d = n_components, n_features
    shapes = {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}
    if covariance_type not in shapes:
        raise ValueError(
            f"covariance_type={covariance_type!r} is invalid; expected one of {', '.join(COVARIANCE_TYPES)}"
        )
    return shapes[covariance_type]


def precision_cholesky(covariances: np.ndarray, covariance_type: CovarianceType) -> np.ndarray:
    """Cholesky factors of the precision matrices.

    Parameters
    ----------
    covariances : ndarray, shape given in the module table for ``covariance_type``

    Returns
    -------
    precisions_cholesky : ndarray of the same shape, float64

    Raises
    ------
    FitError
        A covariance is not positive definite.
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        stack = covariances if covariance_type == "full" else covariances[None]
        out = np.empty_like(stack)
        eye = np.eye(stack.shape[-1])
        for k, cov in enumerate(stack):
            try:
                cov_chol = linalg.cholesky(cov, lower=True)
            except linalg.LinAlgError:
                raise FitError(_ILL_DEFINED) from None
            out[k] = linalg.solve_triangular(cov_chol, eye, lower=True).T
        return out if covariance_type == "full" else out[0]
    if np.any(~(covariances > 0.0)):
        raise FitError(_ILL_DEFINED)
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: CovarianceType) -> np.ndarray:
    """Precision Cholesky factors from precision matrices (``P = U Uᵀ``, U upper).

    Parameters
    ----------
    precisions : ndarray, the covariance shape of ``covariance_type``

    Returns
    -------
    precisions_cholesky : ndarray of the same shape
    """
    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        stack = precisions if covariance_type == "full" else precisions[None]
        out = np.empty_like(stack)
        for k, prec in enumerate(stack):
            try:
                # Flipping rows and columns turns a lower factor of the flipped matrix
                # into the upper factor U with P = U Uᵀ that the densities use.
                lower = linalg.cholesky(prec[::-1, ::-1], lower=True)
            except linalg.LinAlgError:
                raise ParameterError(
                    f"precisions_init: precision matrix {k} is not symmetric positive definite"
                ) from None
            out[k] = lower[::-1, ::-1]
        return out if covariance_type == "full" else out[0]
    return np.sqrt(precisions)


def precisions_from_cholesky(precisions_cholesky: np.ndarray, covariance_type: CovarianceType) -> np.ndarray:
    """Precision matrices ``U Uᵀ`` (full, tied) or ``u²`` (diag, spherical)."""
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", precisions_cholesky, precisions_cholesky)
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def covariances_from_precisions(precisions: np.ndarray, covariance_type: CovarianceType) -> np.ndarray:
    """Covariances as inverses of precisions, same shape."""
    if covariance_type == "full":
        return np.linalg.inv(precisions)
    if covariance_type == "tied":
        return np.linalg.inv(precisions)
    return 1.0 / precisions


def dense_covariances(
    covariances: np.ndarray, covariance_type: CovarianceType, n_components: int, n_features: int
) -> np.ndarray:
    """Every component's covariance as a dense matrix, shape (K, d, d), for any covariance type."""
    cov, K, d = np.asarray(covariances, dtype=np.float64), n_components, n_features
    if covariance_type == "full":
        return cov.reshape(K, d, d)
    if covariance_type == "tied":
        return np.broadcast_to(cov.reshape(d, d), (K, d, d)).copy()
    if covariance_type == "diag":
        return cov[:, :, None] * np.eye(d)
    return cov[:, None, None] * np.eye(d)  # spherical: (K,)


def log_det_cholesky(
    precisions_cholesky: np.ndarray, covariance_type: CovarianceType, n_features: int
) -> np.ndarray | float:
    """``log det(U)`` per component, i.e. ``-0.5 log det(Σ_k)``.

    Returns
    -------
    log_det : ndarray of shape (K,), or a float for "tied"
    """
    if covariance_type == "full":
        diag = np.diagonal(precisions_cholesky, axis1=1, axis2=2)
        return np.sum(np.log(diag), axis=1)
    if covariance_type == "tied":
        return float(np.sum(np.log(np.diag(precisions_cholesky))))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_cholesky), axis=1)
    return n_features * np.log(precisions_cholesky)


def scaled_deviation_sq(
    diff: np.ndarray, precisions_cholesky: np.ndarray, k: int, covariance_type: CovarianceType
) -> np.ndarray:
    """Squared Mahalanobis distance of ``diff = X - μ_k`` under component ``k``.

    Parameters
    ----------
    diff : ndarray of shape (n, d)

    Returns
    -------
    maha : ndarray of shape (n,)
    """
    if covariance_type == "full":
        y = diff @ precisions_cholesky[k]
    elif covariance_type == "tied":
        y = diff @ precisions_cholesky
    elif covariance_type == "diag":
        y = diff * precisions_cholesky[k]
    else:
        return np.einsum("ij,ij->i", diff, diff) * precisions_cholesky[k] ** 2
    return np.einsum("ij,ij->i", y, y)


def log_gaussian_prob(
    X: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: CovarianceType,
) -> np.ndarray:
    """Log-density of every row of ``X`` under every component.

    Deviations are taken from each mean before the precision factor is applied,
    so a large common offset in the data does not cancel digits away.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    means : ndarray of shape (K, d)
    precisions_cholesky : ndarray, see the module table

    Returns
    -------
    log_prob : ndarray of shape (n, K), float64
    """
    n, d = X.shape
    K = means.shape[0]
    log_det = log_det_cholesky(precisions_cholesky, covariance_type, d)
    # Column-major: each component writes a contiguous column, and the per-row
    # reductions over components that follow run as vector operations.
    out = np.empty((n, K), dtype=np.float64, order="F")
    for k in range(K):
        out[:, k] = scaled_deviation_sq(X - means[k], precisions_cholesky, k, covariance_type)
    return -0.5 * (d * np.log(2.0 * np.pi) + out) + log_det
