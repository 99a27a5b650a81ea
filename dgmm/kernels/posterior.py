"""Posterior quantities of a mixture for a block of rows (pure NumPy).

All functions take ``X`` of shape (n, d) and :class:`~dgmm.kernels.params.MixtureParams`.
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Callable, Union

import numpy as np

from ..errors import DataError
from ._numba_tiles import segment_logsumexp
from .arrays import namespace
from .gaussian import log_det_cholesky, log_gaussian_prob
from .missing import has_missing, marginal_log_prob
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
    """``log π_k + log N(x_n | μ_k, Σ_k)``, shape (n, K); over each row's observed coordinates where ``X`` has
    missing values (NaN, :func:`dgmm.kernels.missing.marginal_log_prob`)."""
    if has_missing(X):
        return marginal_log_prob(X, params)
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
    """Most probable component per row, shape (n,), int64; -1 for a row with nothing observed (NaN scores)."""
    weighted = weighted_log_prob(X, params)
    out = np.argmax(weighted, axis=1).astype(np.int64)
    out[np.isnan(weighted[:, 0])] = -1
    return out


Scorer = Union[tuple[MixtureParams, ...], Callable[[np.ndarray], np.ndarray]]  # the mixtures, or a scoring plan


def n_features_of(scorer: Scorer) -> int:
    """The features a scorer takes: its mixtures', or a plan's (:class:`dgmm.kernels.selection.SelectionPlan`)."""
    return scorer[0].n_features if isinstance(scorer, tuple) else scorer.n_features


def class_log_likelihoods(X: np.ndarray, class_params: Scorer, map: Callable = builtins.map) -> np.ndarray:
    """``log p(x_n | class c)`` under each class's mixture, shape (n, C): diagonal and spherical mixtures of one
    size all at once (:func:`stacked_log_likelihoods`), others one class at a time; a plan (Gaussian selection)
    scores the rows itself. ``map`` runs the row tiles of the first two (a thread pool's: the result does not
    depend on it). Rows with missing values (NaN) are scored on their observed values, one class at a time."""
    missing = has_missing(X)
    if not isinstance(class_params, tuple):
        if missing:
            raise DataError(
                "Gaussian selection (top_c) scores complete rows only, and this block has missing values: "
                "leave top_c unset to score them on their observed values"
            )
        return class_params(X, map)
    kinds = {(p.covariance_type, p.n_components) for p in class_params}
    if len(kinds) == 1 and next(iter(kinds))[0] in ("diag", "spherical") and not missing:
        return stacked_log_likelihoods(X, class_params, map)
    out = np.empty((X.shape[0], len(class_params)), dtype=np.float64)
    for c, params in enumerate(class_params):
        out[:, c] = log_density(X, params)
    return out


STACKED_TILE_ELEMENTS = 1 << 21  # rows x components of a tile's log-probabilities: 16 MiB of float64
# components per block of classes scored at once: the (2d, columns) slice of the matrix stays in cache however many
# classes there are (with every class at once, 1,000 classes of K=512 left 4 rows a tile, each reading 330 MB)
STACKED_BLOCK_COLUMNS = 4096


def expanded_components(params: MixtureParams, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A diagonal or spherical mixture's squared distances as one matrix product of ``[z∘z, z]`` (rows centred on
    ``centre``): the matrix ``[P ; −2 a∘P]`` (2d, K), ``a_k = μ_k − centre``, and the constants (K,)
    ``log π_k + log det U_k − ½ d log 2π − ½ a_k·(a_k∘P_k)`` (the E-step's expansion: no offset cancels)."""
    d = params.n_features
    factors = params.precisions_cholesky
    precisions = factors**2 if factors.ndim == 2 else np.repeat((factors**2)[:, None], d, axis=1)
    shift = params.means - centre
    scaled = shift * precisions
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    log_det = log_det_cholesky(factors, params.covariance_type, d)
    log_norm = log_weights + log_det - 0.5 * (d * np.log(2.0 * np.pi) + np.sum(shift * scaled, axis=1))
    return np.concatenate([precisions.T, -2.0 * scaled.T]), log_norm


def stacked_weighted_log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log π_k + log N(x_n | μ_k, Σ_k)`` (n, K) of a diagonal or spherical mixture by one matrix product of the
    rows centred on the mean of the means (:func:`expanded_components`)."""
    centre = params.means.mean(axis=0)
    gemm, log_norm = expanded_components(params, centre)
    Z = np.asarray(X, dtype=np.float64) - centre
    out = np.concatenate([Z * Z, Z], axis=1) @ gemm
    out *= -0.5
    out += log_norm
    return out


def stacked_log_likelihoods(
    X: np.ndarray, class_params: tuple[MixtureParams, ...], map: Callable = builtins.map
) -> np.ndarray:
    """``log p(x_n | class c)`` (n, C) of C diagonal or spherical mixtures of K components each, every class's
    components at once: per tile of rows and block of classes, the squared distances to their means are two matrix products of the
    rows centred on the mean of every mean (the E-step's expansion, so a common offset of the data cancels no
    digits: ``Σ_j (z_j − a_j)² P_j = (z∘z)·P − 2 z·(a∘P) + a·(a∘P)``), then each class's log-sum-exp over its K
    (:func:`~dgmm.kernels._numba_tiles.segment_logsumexp`). ``map`` runs the tiles of rows, whose bounds depend
    on the sizes only.
    """
    K = class_params[0].n_components
    centre = np.concatenate([p.means for p in class_params]).mean(axis=0)
    parts = [expanded_components(p, centre) for p in class_params]
    # one product gives the log-probabilities: [z∘z, z, 1] by [−½ P ; a∘P ; constants] (a weight of 0, whose
    # constant is −inf, as −1e300: BLAS need not meet an infinity, and its exp is 0 all the same)
    log_norm = np.maximum(np.concatenate([n for _, n in parts]), -1e300)
    gemm = np.concatenate([-0.5 * np.concatenate([g for g, _ in parts], axis=1), log_norm[None, :]])  # (2d+1, C·K)
    n, C = X.shape[0], len(class_params)
    out = np.empty((n, C), dtype=np.float64)
    # terms below eps / 8K of a class's largest count as 0: together less than an eighth of its last digit
    floor = math.log(np.finfo(np.float64).eps / (8 * K))
    per_block = max(1, STACKED_BLOCK_COLUMNS // K)  # classes per block: its slice of the matrix stays in cache
    step = max(1, STACKED_TILE_ELEMENTS // (per_block * K))

    def tile(start: int) -> None:
        scratch = np.empty(K), np.empty(K, dtype=np.int64)
        Z = np.asarray(X[start : start + step], dtype=np.float64) - centre
        expanded = np.concatenate([Z * Z, Z, np.ones((Z.shape[0], 1))], axis=1)
        for first in range(0, C, per_block):
            last = min(C, first + per_block)
            log_prob = expanded @ gemm[:, first * K : last * K]
            segment_logsumexp(log_prob, K, floor, out[start : start + step, first:last], *scratch)

    for _ in map(tile, range(0, n, step)):
        pass
    return out


def class_scores(block: np.ndarray, payload: tuple, map: Callable = builtins.map) -> np.ndarray:
    """``log p(x | mixture_c) + offset_c`` (n, C) of a block (n, d [+ 1]); with ``against_last`` the last
    mixture's column is subtracted from the others and dropped (n, C - 1). Rows of weight 0 (dropped
    by nan_policy) get NaN. ``payload`` is ``(mixtures, (offset, against_last))``."""
    params, (offset, against_last) = payload
    X, weights = split_weights(block, n_features_of(params))
    scores = class_log_likelihoods(X, params, map) + offset
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
            f"row {int(np.argmax(missing))} of this block holds nulls or NaN and was dropped by nan_policy ('drop'; "
            "with 'marginalize': nothing observed): it has no class; remove such rows before predict"
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
