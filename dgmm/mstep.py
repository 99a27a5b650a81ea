"""M-step: new parameters from reduced, centred statistics (pure NumPy).

With ``N_k = S0_k``, ``δ_k = S1_k / N_k`` the shift of the mean away from the
centre ``c_k`` the statistics were taken about::

    π_k = N_k / Σ_j N_j
    μ_k = c_k + δ_k
    Σ_k = S2_k / N_k − δ_k δ_kᵀ + reg_covar · I

As scikit-learn, ``N_k`` carries ``10·eps`` so an empty component keeps its mean
and falls back to ``reg_covar`` instead of dividing by zero.
"""

from __future__ import annotations

import numpy as np

from .errors import FitError
from .gaussian import CovarianceType
from .params import MixtureParams
from .stats import Stats


def covariances_from_stats(
    stats: Stats, nk: np.ndarray, shift: np.ndarray, covariance_type: CovarianceType, reg_covar: float
) -> np.ndarray:
    """Covariances about the new means.

    Parameters
    ----------
    nk : ndarray of shape (K,)
    shift : ndarray of shape (K, d), ``δ_k``

    Returns
    -------
    covariances : ndarray, shape by ``covariance_type``
    """
    d = shift.shape[1]
    if covariance_type == "full":
        cov = stats.s2 / nk[:, None, None] - shift[:, :, None] * shift[:, None, :]
        cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        cov[:, np.arange(d), np.arange(d)] += reg_covar
        return cov
    if covariance_type == "tied":
        scatter = stats.s2 - np.einsum("k,ki,kj->ij", nk, shift, shift)
        cov = scatter / nk.sum()
        cov = 0.5 * (cov + cov.T)
        cov[np.arange(d), np.arange(d)] += reg_covar
        return cov
    var = stats.s2 / nk[:, None] - shift**2 + reg_covar
    if covariance_type == "diag":
        return var
    return var.mean(axis=1)


def params_from_stats(
    stats: Stats, centres: np.ndarray, covariance_type: CovarianceType, reg_covar: float
) -> MixtureParams:
    """The M-step.

    Parameters
    ----------
    stats : statistics reduced over all rows, centred on ``centres``
    centres : ndarray of shape (K, d)

    Raises
    ------
    FitError
        A covariance is not positive definite or a parameter is not finite.
    """
    nk = stats.s0 + 10.0 * np.finfo(np.float64).eps
    shift = stats.s1 / nk[:, None]
    means = centres + shift
    covariances = covariances_from_stats(stats, nk, shift, covariance_type, reg_covar)
    weights = nk / nk.sum()
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(covariances))):
        raise FitError(
            "EM produced non-finite means or covariances; check the data for extreme values "
            "or scale it, and increase reg_covar."
        )
    return MixtureParams.from_covariances(weights, means, covariances, covariance_type)
