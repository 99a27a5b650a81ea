"""Posterior quantities of a mixture for a block of rows (pure NumPy).

All functions take ``X`` of shape (n, d) and :class:`~dgmm.kernels.params.MixtureParams`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import DataError
from .arrays import namespace
from .gaussian import log_gaussian_prob
from .params import MixtureParams
from .row_weights import split_weights


def logsumexp_rows(a: Any) -> Any:
    """``log Σ_k exp(a_nk)`` per row, shape (n,), stable for any finite or -inf entries; one definition for
    NumPy and any array-API array (on its device, in its library)."""
    xp = namespace(a)
    peak = xp.max(a, axis=1, keepdims=True)
    peak = xp.where(xp.isfinite(peak), peak, xp.zeros_like(peak))
    with np.errstate(under="ignore", divide="ignore"):
        return xp.log(xp.sum(xp.exp(a - peak), axis=1)) + peak[:, 0]


def weighted_log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log π_k + log N(x_n | μ_k, Σ_k)``, shape (n, K)."""
    log_prob = log_gaussian_prob(X, params.means, params.precisions_cholesky, params.covariance_type)
    with np.errstate(divide="ignore"):
        return log_prob + np.log(params.weights)


def log_responsibilities(X: np.ndarray, params: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """Log-sum-exp normalised E-step.

    Returns
    -------
    log_prob_norm : ndarray of shape (n,), ``log p(x_n | θ)``
    log_resp : ndarray of shape (n, K), ``log γ_nk``
    """
    weighted = weighted_log_prob(X, params)
    log_prob_norm = logsumexp_rows(weighted)
    with np.errstate(under="ignore"):
        return log_prob_norm, weighted - log_prob_norm[:, None]


def log_density(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log p(x_n | θ)``, shape (n,)."""
    return logsumexp_rows(weighted_log_prob(X, params))


def responsibilities(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``γ_nk``, shape (n, K); rows sum to 1."""
    return np.exp(log_responsibilities(X, params)[1])


def labels(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """Most probable component per row, shape (n,), int64."""
    return np.argmax(weighted_log_prob(X, params), axis=1).astype(np.int64)


def class_log_likelihoods(X: np.ndarray, class_params: tuple[MixtureParams, ...]) -> np.ndarray:
    """``log p(x_n | class c)`` under each class's mixture, shape (n, C)."""
    out = np.empty((X.shape[0], len(class_params)), dtype=np.float64)
    for c, params in enumerate(class_params):
        out[:, c] = log_density(X, params)
    return out


def class_scores(block: np.ndarray, payload: tuple) -> np.ndarray:
    """``log p(x | mixture_c) + offset_c`` (n, C) of a block (n, d [+ 1]); with ``against_last`` the last
    mixture's column is subtracted from the others and dropped (n, C - 1). Rows of weight 0 (dropped
    by nan_policy) get NaN. ``payload`` is ``(mixtures, (offset, against_last))``."""
    params, (offset, against_last) = payload
    X, weights = split_weights(block, params[0].n_features)
    scores = class_log_likelihoods(X, params) + offset
    if against_last:
        scores = scores[:, :-1] - scores[:, -1:]
    if weights is not None:
        scores[weights == 0] = np.nan
    return scores


def normalised_rows(joint: Any) -> Any:
    """Log-probabilities from joint log-likelihoods (n, C): each row minus its log-sum-exp (any array library)."""
    return joint - logsumexp_rows(joint)[:, None]


def most_probable(joint: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The class of the highest joint log-likelihood per row, (n,); a row dropped for NaN has none."""
    missing = np.isnan(joint).any(axis=1)
    if missing.any():
        raise DataError(
            f"row {int(np.argmax(missing))} of this block holds nulls or NaN and was dropped "
            "(nan_policy='drop'): it has no class; remove such rows before predict"
        )
    return classes[np.argmax(joint, axis=1)]


def kept_rows_only(kernel: Callable, block: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``kernel`` on the features of a weighted block; rows of weight 0 give -1 (labels) or NaN."""
    X, weights = split_weights(block, params.n_features)
    out = kernel(X, params)
    dropped = weights == 0
    if dropped.any():
        out = out.astype(np.float64) if out.dtype.kind == "f" else out
        out[dropped] = -1 if out.dtype.kind in "iu" else np.nan
    return out
