"""Sufficient statistics of EM: Stats, their associative merge, and their accumulation from responsibilities.

Pure NumPy. The statistics of a chunk are centred on reference points ``c_k``
(the broadcast *old* means during EM)::

    S0_k = Σ_n r_nk
    S1_k = Σ_n r_nk (x_n − c_k)
    S2_k = Σ_n r_nk (x_n − c_k)(x_n − c_k)ᵀ      (full; summed over k for tied;
                                                  diagonal only for diag/spherical)

so a single pass per iteration suffices, chunks merge by addition, and no raw
``E[xxᵀ] − μμᵀ`` cancellation ever happens. Everything accumulates in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any, Sequence

import numpy as np

from .arrays import namespace, to_numpy
from .gaussian import CovarianceType, covariance_shape


@dataclass(frozen=True)
class Stats:
    """Additive EM statistics of a set of rows.

    Attributes
    ----------
    n_rows : int
        Rows seen.
    loglik : float
        Σ_n log p(x_n | θ), the log-likelihood of the rows under the parameters
        the responsibilities came from (0 where that is undefined, as in init passes).
    s0 : ndarray of shape (K,)
    s1 : ndarray of shape (K, d)
    s2 : ndarray of shape (K, d, d) for "full", (d, d) for "tied", (K, d) otherwise
    weight : float
        Σ_n w_n, the total row weight (``n_rows`` without sample weights); the mean
        log-likelihood is ``loglik / weight``.
    n_zero_weight : int
        Rows of weight 0 among them: dropped for nulls or NaN (``nan_policy="drop"``), or of sample weight 0.
    """

    n_rows: int
    loglik: float
    s0: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    weight: float
    n_zero_weight: int = 0

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(
            self.n_rows + other.n_rows,
            self.loglik + other.loglik,
            self.s0 + other.s0,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.weight + other.weight,
            self.n_zero_weight + other.n_zero_weight,
        )


def s2_shape(n_components: int, n_features: int, covariance_type: CovarianceType) -> tuple[int, ...]:
    """Shape of ``S2``: the covariances' shape, but per-feature (K, d) for "spherical" too."""
    return covariance_shape("diag" if covariance_type == "spherical" else covariance_type, n_components, n_features)


def zero_stats(n_components: int, n_features: int, covariance_type: CovarianceType) -> Stats:
    """The neutral element of :func:`merge_stats`."""
    return Stats(
        0,
        0.0,
        np.zeros(n_components),
        np.zeros((n_components, n_features)),
        np.zeros(s2_shape(n_components, n_features, covariance_type)),
        0.0,
    )


def merge_stats(parts: Sequence[Stats]) -> Stats:
    """Sum of statistics in the given order (the tree reduce's combine step)."""
    if not parts:
        raise ValueError("merge_stats needs at least one Stats")
    return reduce(lambda a, b: a + b, parts)


def accumulate(
    X: np.ndarray,
    resp: np.ndarray,
    centres: np.ndarray,
    covariance_type: CovarianceType,
    loglik: float = 0.0,
    weights: np.ndarray | None = None,
) -> Stats:
    """Statistics of rows ``X`` with responsibilities ``resp``, centred on ``centres``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    resp : ndarray of shape (n, K), not multiplied by the row weights
    centres : ndarray of shape (K, d)
    loglik : the rows' (weighted) log-likelihood, passed through
    weights : ndarray of shape (n,) or None; row n counts ``weights[n]`` times (total weight n when None)
    """
    n, d = X.shape
    K = resp.shape[1]
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        resp = resp * weights[:, None]
    s1 = np.empty((K, d))
    s2 = np.zeros(s2_shape(K, d, covariance_type))
    for k in range(K):
        diff = X - centres[k]
        r = resp[:, k]
        s1[k] = r @ diff
        if covariance_type in ("full", "tied"):
            scatter = (diff * r[:, None]).T @ diff
            if covariance_type == "full":
                s2[k] = scatter
            else:
                s2 += scatter
        else:
            s2[k] = r @ (diff * diff)
    return Stats(n, float(loglik), resp.sum(axis=0), s1, s2, *weight_totals(n, weights))


def accumulate_expanded(
    X: np.ndarray,
    resp: np.ndarray,
    centres: np.ndarray,
    covariance_type: CovarianceType,
    loglik: float = 0.0,
    weights: np.ndarray | None = None,
) -> Stats:
    """:func:`accumulate` for diagonal and spherical covariances by two matrix products instead of a loop over
    components: with ``Z = X − c`` and ``a_k = centre_k − c`` (``c`` the mean of the centres),
    ``S1_k = rᵀZ − S0_k a_k`` and ``S2_k = rᵀ(Z∘Z) − 2 a_k∘(rᵀZ) + S0_k a_k²``: the E-step's expansion, whose
    rounding is ``eps · (a_kj² + σ_kj²)`` per entry, relative to the spread of the components, never to an
    offset of the data."""
    n = X.shape[0]
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        resp = resp * weights[:, None]
    centre = centres.mean(axis=0)
    Z = X - centre
    shift = centres - centre
    s0 = resp.sum(axis=0)
    g1 = resp.T @ Z
    s2 = resp.T @ (Z * Z) - 2.0 * shift * g1 + s0[:, None] * shift**2
    return Stats(n, float(loglik), s0, g1 - s0[:, None] * shift, s2, *weight_totals(n, weights))


def weight_totals(n_rows: int, weights: Any) -> tuple[float, int]:
    """The total weight of ``n_rows`` rows and how many weigh 0, on the host (``weights`` (n,) of NumPy or any
    array-API library, or None: every weight 1)."""
    if weights is None:
        return float(n_rows), 0
    xp = namespace(weights)
    return float(to_numpy(xp.sum(weights))), n_rows - int(to_numpy(xp.count_nonzero(weights)))
