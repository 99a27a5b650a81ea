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

from ..errors import FitError
from .gaussian import CovarianceType
from .moves import split_component
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
    if covariance_type in ("full", "tied"):
        if covariance_type == "full":
            cov = stats.s2 / nk[:, None, None] - shift[:, :, None] * shift[:, None, :]
        else:
            cov = (stats.s2 - np.einsum("k,ki,kj->ij", nk, shift, shift)) / nk.sum()
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        cov[..., np.arange(d), np.arange(d)] += reg_covar
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
    return m_step(stats, centres, covariance_type, reg_covar, reseed=False)[0]


DEAD_FRACTION = 1e-3  # a component holding less than this share of one average row is dead


def m_step(
    stats: Stats, centres: np.ndarray, covariance_type: CovarianceType, reg_covar: float, reseed: bool = True
) -> tuple[MixtureParams, list[tuple[int, int]]]:
    """The M-step, re-seeding dead or collapsed components when ``reseed``.

    A component is *dead* when its responsibility mass ``N_k`` is below
    :data:`DEAD_FRACTION` of an average row's weight, and *collapsed* when its covariance
    is not positive definite. Each such component k is re-seeded by splitting the
    heaviest healthy component h along its principal axis: both get half of h's weight
    and h's covariance, and means ``μ_h ± sqrt(λ_max) v_max``. No pass over the data is
    needed; EM then separates the two halves.

    Returns
    -------
    params : the new parameters
    reseeded : ``[(k, h), …]``, each re-seeded component and the one it was split from
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
    reseeded: list[tuple[int, int]] = []
    if reseed and covariance_type != "tied" and len(weights) > 1:
        row_weight = stats.weight / max(stats.n_rows, 1)
        dead = (stats.s0 < DEAD_FRACTION * row_weight) | ~positive_definite(covariances, covariance_type)
        if dead.any() and not dead.all():
            weights, means, covariances, reseeded = split_heaviest(weights, means, covariances, dead, covariance_type)
    return MixtureParams.from_covariances(weights, means, covariances, covariance_type), reseeded


def positive_definite(covariances: np.ndarray, covariance_type: CovarianceType) -> np.ndarray:
    """Per component: is the covariance symmetric positive definite? Shape (K,), bool."""
    if covariance_type == "full":
        ok = np.empty(len(covariances), dtype=bool)
        for k, cov in enumerate(covariances):
            try:
                np.linalg.cholesky(cov)
                ok[k] = True
            except np.linalg.LinAlgError:
                ok[k] = False
        return ok
    return np.all(covariances > 0, axis=-1) if covariance_type == "diag" else covariances > 0


def split_heaviest(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, dead: np.ndarray, covariance_type: CovarianceType
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Re-seed every ``dead`` component by splitting the heaviest healthy one (see :func:`m_step`)."""
    weights, means, covariances = weights.copy(), means.copy(), covariances.copy()
    alive = ~dead
    reseeded = []
    for k in np.flatnonzero(dead):
        h = int(np.argmax(np.where(alive, weights, -np.inf)))
        split_component(weights, means, covariances, h, int(k), covariance_type)
        alive[k] = True
        reseeded.append((int(k), h))
    return weights, means, covariances, reseeded
