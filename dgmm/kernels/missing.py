"""EM over the observed coordinates of each row: missing values (NaN) marginalised out (Ghahramani & Jordan).

Pure NumPy, no Dask. For a row with observed coordinates o and missing ones m, and a component with mean μ
and precision Λ = Σ⁻¹, let ``z`` be the row minus μ with its missing entries set to 0 and ``q = Λ z``. Then::

    E[x_m | x_o] − μ_m = ẑ_m = −Λ_mm⁻¹ q_m            Cov[x_m | x_o] = Λ_mm⁻¹
    (x_o − μ_o)ᵀ Σ_oo⁻¹ (x_o − μ_o) = zᵀq + q_mᵀ ẑ_m     log det Σ_oo = log det Σ + log det Λ_mm

so only the |m| x |m| block of the precision is inverted, once per missingness pattern and component (the
Schur complement of Σ_oo in Σ is Λ_mm⁻¹), and every row still costs one d x d product per component, as a
complete row does. The expected statistics about the old means (the rows completed by ``ẑ``)::

    S1_k = Σ_n r_nk ẑ_nk          S2_k = Σ_n r_nk (ẑ_nk ẑ_nkᵀ + Λ_mm⁻¹ on the row's missing block)

go into the ordinary M-step. Diagonal and spherical precisions have a diagonal Λ_mm: a missing coordinate is
μ in expectation and adds σ² to S2 (closed forms, no patterns). Everything is float64.
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._numba_missing import (
    add_pattern_covariances,
    missing_index,
    normalise,
    pattern_inverses,
    tile_log_prob,
    tile_stats,
)
from .hashing import row_uniforms
from .params import MixtureParams
from .stats import Stats, s2_shape, weight_totals

LOG_2PI = math.log(2.0 * math.pi)
TILE_ELEMENTS = 1 << 18  # K x T x d completed deviations kept per tile, 2 MiB of float64: within L2
BLOCK_CACHE_ELEMENTS = 1 << 22  # a chunk's pattern blocks (P x K x s x s), 32 MiB of float64, at most


def has_missing(X: np.ndarray) -> bool:
    """Whether any entry of ``X`` is NaN: a sum first (no temporary; infinities are refused before any kernel),
    the elementwise test only when the sum is NaN."""
    return bool(np.isnan(np.sum(X))) and bool(np.isnan(X).any())


def _dense_precisions(params: MixtureParams) -> np.ndarray:
    """(K, d, d) C-contiguous precisions of a full or tied mixture."""
    K, d = params.n_components, params.n_features
    precisions = params.precisions
    if params.covariance_type == "tied":
        precisions = np.broadcast_to(precisions, (K, d, d))
    return np.ascontiguousarray(precisions, dtype=np.float64)


def _diagonal_precisions(params: MixtureParams) -> np.ndarray:
    """(K, d) per-feature precisions of a diag or spherical mixture."""
    K, d = params.n_components, params.n_features
    if params.covariance_type == "diag":
        return params.precisions_cholesky**2
    return np.broadcast_to((params.precisions_cholesky**2)[:, None], (K, d))


@dataclass(frozen=True)
class MissingBlocks:
    """Which values each row misses and its patterns' precision blocks (full and tied covariances).

    count : (n,) missing values per row; index : (n, d) their coordinates, ascending in the first ``count``;
    pattern : (n,) the row's pattern, -1 where its block is factorised row by row; inverse : (P, K, s, s)
    Λ_mm⁻¹ and log_det : (P, K) log det Λ_mm per pattern and component; pattern_count, pattern_index : (P,),
    (P, d) the patterns' missing coordinates.
    """

    count: np.ndarray
    index: np.ndarray
    pattern: np.ndarray
    inverse: np.ndarray
    log_det: np.ndarray
    pattern_count: np.ndarray
    pattern_index: np.ndarray

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.count[start:stop], self.index[start:stop], self.pattern[start:stop]


def missing_blocks(X: np.ndarray, precisions: np.ndarray) -> MissingBlocks:
    """:class:`MissingBlocks` of rows ``X`` (n, d) under precisions (K, d, d): each pattern of two or more missing
    values inverted once per component, unless their blocks would exceed :data:`BLOCK_CACHE_ELEMENTS` (then every
    row factorises its own)."""
    count, index, code = missing_index(X)
    K, d = precisions.shape[0], precisions.shape[1]
    pattern = np.full(X.shape[0], -1, dtype=np.int64)
    several = np.flatnonzero(count > 1)
    none = np.zeros((0, K, 0, 0)), np.zeros((0, K)), np.zeros(0, dtype=np.int64), np.zeros((0, d), dtype=np.int64)
    if several.size == 0:
        return MissingBlocks(count, index, pattern, *none)
    if d <= 62:  # the pattern's bits as one integer
        keys = code[several]
    else:
        packed = np.packbits(np.isnan(X[several]), axis=1)
        keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse_of_row = np.unique(keys, return_index=True, return_inverse=True)
    patterns = several[first]
    widest = int(count[patterns].max())
    if len(patterns) * K * widest * widest > BLOCK_CACHE_ELEMENTS:
        return MissingBlocks(count, index, pattern, *none)
    pattern[several] = inverse_of_row.reshape(-1)
    p_count, p_index = count[patterns], np.ascontiguousarray(index[patterns])
    inverse = np.empty((len(patterns), K, widest, widest))  # each pattern fills its top-left s x s
    log_det = np.empty((len(patterns), K))
    pattern_inverses(precisions, p_count, p_index, inverse, log_det)
    return MissingBlocks(count, index, pattern, inverse, log_det, p_count, p_index)


def dense_log_prob(
    X: np.ndarray, params: MixtureParams, blocks: MissingBlocks | None = None, rows: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Full or tied: ``log π_k + log N(x_o | μ_ko, Σ_k,oo)`` (n, K) and the completed deviations ẑ (K, n, d).

    ``blocks``: :func:`missing_blocks` of the rows ``X`` belongs to, and ``rows`` the (start, stop) of ``X`` among
    them (default: computed for ``X``)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    precisions = _dense_precisions(params)
    if blocks is None:
        blocks, rows = missing_blocks(X, precisions), (0, X.shape[0])
    count, index, pattern = blocks.rows(*rows)
    K = params.n_components
    completed = np.empty((K, *X.shape))
    log_prob = np.empty((X.shape[0], K))
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    tile_log_prob(
        X,
        count,
        index,
        pattern,
        blocks.inverse,
        blocks.log_det,
        np.ascontiguousarray(params.means),
        precisions,
        -2.0 * _log_det_cholesky_dense(params),
        log_weights,
        completed,
        log_prob,
    )
    return log_prob, completed


def _log_det_cholesky_dense(params: MixtureParams) -> np.ndarray:
    """(K,) ``log det U_k`` = −½ log det Σ_k for full or tied."""
    U = params.precisions_cholesky
    if params.covariance_type == "tied":
        return np.full(params.n_components, np.sum(np.log(np.diag(U))))
    return np.sum(np.log(np.diagonal(U, axis1=1, axis2=2)), axis=1)


def diagonal_log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """Diag or spherical: ``log π_k + log N(x_o | μ_ko, Σ_k,oo)``, shape (n, K), about the mean of the means."""
    observed = ~np.isnan(X)
    P = _diagonal_precisions(params)
    centre = params.means.mean(axis=0)
    Z = np.where(observed, X - centre, 0.0)
    shift = params.means - centre
    seen = observed.astype(np.float64)
    maha = (Z * Z) @ P.T - 2.0 * Z @ (shift * P).T + seen @ (shift**2 * P).T
    log_det = -(seen @ np.log(P).T)
    with np.errstate(divide="ignore"):
        return -0.5 * (seen.sum(axis=1)[:, None] * LOG_2PI + log_det + maha) + np.log(params.weights)


def marginal_log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log π_k + log N(x_o | μ_ko, Σ_k,oo)`` over each row's observed coordinates, shape (n, K); NaN for a row
    with nothing observed (left out, as a dropped row is)."""
    if params.covariance_type in ("diag", "spherical"):
        out = diagonal_log_prob(X, params)
    else:
        out = dense_log_prob(X, params)[0]
    out[nothing_observed(X)] = np.nan
    return out


def nothing_observed(X: np.ndarray) -> np.ndarray:
    """(n,) rows whose every feature is missing."""
    return np.isnan(X).all(axis=1)


def _responsibilities(log_prob: np.ndarray, w: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Σ_n w_n log p(x_n) and the responsibilities (n, K) times the row weights ``w`` (n,) (1 when None), from
    the log π_k + log-densities (n, K) (:func:`~dgmm.kernels._numba_missing.normalise`)."""
    resp = np.empty(log_prob.shape)
    weights = np.empty(0) if w is None else np.ascontiguousarray(w, dtype=np.float64)
    return normalise(np.ascontiguousarray(log_prob), weights, resp), resp


def marginal_stats(
    X: np.ndarray, params: MixtureParams, weights: np.ndarray | None = None, map: Callable = builtins.map
) -> Stats:
    """E-step over the observed coordinates and the expected statistics about the old means, one chunk.

    X : (n, d), NaN where missing; weights : (n,) or None. Rows of weight 0 are not computed on; rows with
    nothing observed count as rows of weight 0. ``map`` runs the row tiles (a thread pool's: the tiles are
    summed in order, so the result does not depend on it).
    Returns Stats with ``s0`` (K,), ``s1`` (K, d), ``s2`` (``s2_shape``), float64.
    """
    X = np.asarray(X, dtype=np.float64)
    n_rows, d = X.shape
    K, covariance_type = params.n_components, params.covariance_type
    empty = nothing_observed(X)
    if empty.any():  # left out and counted, as rows of weight 0
        weights = np.where(empty, 0.0, 1.0 if weights is None else np.asarray(weights, dtype=np.float64))
    totals = weight_totals(n_rows, weights)
    if weights is not None:
        live = np.asarray(weights, dtype=np.float64) > 0
        X, weights = X[live], np.asarray(weights, dtype=np.float64)[live]
    X = np.ascontiguousarray(X)
    s0, s1 = np.zeros(K), np.zeros((K, d))
    s2 = np.zeros(s2_shape(K, d, covariance_type))
    tile = min(8192, max(256, TILE_ELEMENTS // max(1, K * d)))
    bounds = [(i, min(i + tile, X.shape[0])) for i in range(0, X.shape[0], tile)]
    if covariance_type in ("diag", "spherical"):
        parts = map(
            lambda b: _diagonal_tile(X[b[0] : b[1]], params, None if weights is None else weights[b[0] : b[1]]), bounds
        )
        blocks = None
    else:
        blocks = missing_blocks(X, _dense_precisions(params))
        mass = np.zeros(blocks.log_det.shape)
        parts = map(
            lambda b: _dense_tile(X, params, None if weights is None else weights[b[0] : b[1]], blocks, b), bounds
        )
    loglik = 0.0
    for part in parts:  # in tile order, whatever ``map`` runs them
        loglik += part[0]
        s0 += part[1]
        s1 += part[2]
        s2 += part[3]
        if blocks is not None:
            mass += part[4]
    if blocks is not None and len(mass):
        full = np.zeros((K, d, d))
        add_pattern_covariances(blocks.pattern_count, blocks.pattern_index, blocks.inverse, mass, full)
        s2 += full.sum(axis=0) if covariance_type == "tied" else full
    return Stats(n_rows, loglik, s0, s1, s2, *totals)


def _dense_tile(
    X: np.ndarray, params: MixtureParams, w: np.ndarray | None, blocks: MissingBlocks, rows: tuple[int, int]
):
    """One tile (rows ``rows`` of ``X``): log-likelihood, s0, s1, s2 and the responsibility mass of each cached
    pattern (P, K)."""
    log_prob, completed = dense_log_prob(X[rows[0] : rows[1]], params, blocks, rows)
    loglik, resp = _responsibilities(log_prob, w)
    K, d = params.n_components, params.n_features
    s1, s2 = np.zeros((K, d)), np.zeros((K, d, d))
    mass = np.zeros(blocks.log_det.shape)
    count, index, pattern = blocks.rows(*rows)
    tile_stats(count, index, pattern, _dense_precisions(params), completed, np.ascontiguousarray(resp), s1, s2, mass)
    if params.covariance_type == "tied":
        s2 = s2.sum(axis=0)
    return loglik, resp.sum(axis=0), s1, s2, mass


def _diagonal_tile(X: np.ndarray, params: MixtureParams, w: np.ndarray | None):
    loglik, resp = _responsibilities(diagonal_log_prob(X, params), w)
    observed = ~np.isnan(X)
    seen = observed.astype(np.float64)
    centre = params.means.mean(axis=0)
    Z = np.where(observed, X - centre, 0.0)
    a = params.means - centre
    s0 = resp.sum(axis=0)
    g1, go, g2 = resp.T @ Z, resp.T @ seen, resp.T @ (Z * Z)
    variances = 1.0 / _diagonal_precisions(params)
    s1 = g1 - a * go
    s2 = g2 - 2.0 * a * g1 + a**2 * go + variances * (s0[:, None] - go)
    return loglik, s0, s1, s2


def conditional_means(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``E[x_m | x_o]`` under the mixture filled into each row's missing coordinates, shape (n, d): the
    responsibilities (of the observed margin) weigh each component's conditional mean. A row with nothing
    observed gets the mixture's mean."""
    X = np.asarray(X, dtype=np.float64)
    empty = nothing_observed(X)
    if empty.any():
        out = np.empty_like(X)
        out[empty] = params.weights @ params.means
        out[~empty] = conditional_means(X[~empty], params)
        return out
    mask = np.isnan(X)
    if params.covariance_type in ("diag", "spherical"):
        _, resp = _responsibilities(diagonal_log_prob(X, params))
        expected = resp @ params.means
    else:
        log_prob, completed = dense_log_prob(X, params)
        _, resp = _responsibilities(log_prob)
        expected = np.einsum("nk,knd->nd", resp, completed + params.means[:, None, :])
    return np.where(mask, expected, X)


def draw_normals(seed: int, stream: int, row_offset: int, shape: tuple[int, int]) -> np.ndarray:
    """Standard normals (n, d), a pure function of (seed, stream, global row index, column): Box-Muller on two
    hashed uniforms per entry."""
    n, d = shape
    u1 = np.stack([row_uniforms(seed, stream + 2 * j, row_offset, n) for j in range(d)], axis=1)
    u2 = np.stack([row_uniforms(seed, stream + 2 * j + 1, row_offset, n) for j in range(d)], axis=1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def sample_conditional(
    X: np.ndarray, params: MixtureParams, seed: int, imputation: int = 0, row_offset: int = 0
) -> np.ndarray:
    """Draw ``imputation`` of every missing value of ``X`` (n, d) from p(x_m | x_o) under the mixture: a component
    from the responsibilities of the observed margin, then its conditional Gaussian N(μ_m + ẑ_m, Λ_mm⁻¹). A row
    with nothing observed is drawn from the mixture. Observed values are kept; returns a new (n, d) array. The
    draws are functions of (seed, imputation, global row index: ``row_offset`` is X's first), so no chunking
    changes them."""
    X = np.asarray(X, dtype=np.float64)
    out = X.copy()
    mask = np.isnan(X)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return out
    n, d = X.shape
    stream = imputation * (2 * d + 1)  # one for the component, two per coordinate
    choice = row_uniforms(seed, stream, row_offset, n)[rows]
    normals = draw_normals(seed, stream + 1, row_offset, (n, d))[rows]
    holes = mask[rows]
    empty = nothing_observed(X[rows])
    dense = params.covariance_type not in ("diag", "spherical")
    if dense:  # empty rows' zeros are no observation: their scores and completions are replaced below
        log_prob, completed = dense_log_prob(np.where(empty[:, None], 0.0, X[rows]), params)
    else:
        log_prob = diagonal_log_prob(X[rows], params)
    log_prob[empty] = np.log(params.weights)
    _, resp = _responsibilities(log_prob)
    component = np.minimum((resp.cumsum(axis=1) < choice[:, None]).sum(axis=1), params.n_components - 1)
    if not dense:
        mean, sd = params.means[component], np.sqrt(1.0 / _diagonal_precisions(params))[component]
        out[rows] = np.where(holes, mean + sd * normals, X[rows])
        return out
    precisions = _dense_precisions(params)
    patterns, pattern = np.unique(holes, axis=0, return_inverse=True)
    pattern = pattern.reshape(-1)
    for p, k in sorted(set(zip(pattern.tolist(), component.tolist()))):
        members = np.flatnonzero((pattern == p) & (component == k))
        m = np.flatnonzero(patterns[p])
        if m.size == d:  # nothing observed: the component itself
            mean = np.broadcast_to(params.means[k], (members.size, m.size))
        else:
            mean = params.means[k, m] + completed[k][members][:, m]
        conditional = np.linalg.inv(precisions[k][np.ix_(m, m)])
        factor = np.linalg.cholesky(0.5 * (conditional + conditional.T))
        out[rows[members][:, None], m] = mean + normals[members][:, m] @ factor.T
    return out


def draw_imputations(
    block: np.ndarray, params: MixtureParams, seed: int, n_imputations: int, block_info: dict | None = None
) -> np.ndarray:
    """(n_imputations, n, d) draws of a block's missing values (:func:`sample_conditional`); ``block_info`` (Dask's)
    places the block among the rows."""
    offset = block_info[0]["array-location"][0][0] if block_info else 0
    return np.stack([sample_conditional(block, params, seed, i, offset) for i in range(n_imputations)])
