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
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._numba_missing import missing_tile, normalise, tile_margins
from ._numba_patterns import add_pattern_covariances, any_nan
from .estep import EStepPlan, default_gemm_rows, group_size, plan_estep, scratch, tile_bounds
from .hashing import row_uniforms
from .missing_patterns import MissingBlocks, missing_blocks, missing_index
from .params import MixtureParams
from .stats import Stats, s2_shape, weight_totals

LOG_2PI = math.log(2.0 * math.pi)
TILE_ELEMENTS = 1 << 18  # diag/spherical: a tile's intermediates, 2 MiB of float64: within L2


def has_missing(X: np.ndarray) -> bool:
    """Whether any entry of ``X`` (n, d) is NaN: a sum first (no temporary; infinities are refused before any
    kernel), a scan that stops at the first NaN only when the sum is NaN (finite values can overflow to it)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(X)
    return bool(np.isnan(total)) and bool(any_nan(X))


def _dense(matrices: np.ndarray, params: MixtureParams) -> np.ndarray:
    """(K, d, d) C-contiguous float64 per-component copies of a full or tied mixture's (K, d, d) or (d, d) matrices."""
    K, d = params.n_components, params.n_features
    return np.ascontiguousarray(np.broadcast_to(matrices, (K, d, d)), dtype=np.float64)


def _dense_precisions(params: MixtureParams) -> np.ndarray:
    """(K, d, d) precisions Λ_k of a full or tied mixture."""
    return _dense(params.precisions, params)


def _diagonal_precisions(params: MixtureParams) -> np.ndarray:
    """(K, d) per-feature precisions of a diag or spherical mixture."""
    K, d = params.n_components, params.n_features
    if params.covariance_type == "diag":
        return params.precisions_cholesky**2
    return np.broadcast_to((params.precisions_cholesky**2)[:, None], (K, d))


@dataclass(frozen=True)
class _Margins:
    """The per-iteration constants of the compiled tiles (:func:`tile_margins`), full or tied mixtures.

    plan : the float64 :class:`~dgmm.kernels.estep.EStepPlan` (centre c, a_k = μ_k − c, log_norm, floor, tile
    rows); gemm : (groups, d + 1, K_g·d) ``[[Λ_k]; [−a_k Λ_k]]`` side by side: ``[x − c (0 where missing), 1]``
    times it is ``(x − μ_k) Λ_k`` with x's missing entries c_m; gemm_rows : rows per GEMM; shift_t :
    (d, K) a_k; precisions (K, d, d) Λ_k and stacked (d, d, K) the same along the components; log_pivots (d, K)
    log Λ_k,jj.
    """

    plan: EStepPlan
    gemm: np.ndarray
    gemm_rows: int
    shift_t: np.ndarray
    precisions: np.ndarray
    stacked: np.ndarray
    log_pivots: np.ndarray

    @classmethod
    def of(cls, params: MixtureParams) -> "_Margins":
        plan = plan_estep(params)
        precisions = _dense_precisions(params)
        K, d = params.n_components, params.n_features
        group = group_size(K, d, "full")
        padded = -(-K // group) * group
        gemm = np.zeros((d + 1, padded, d))
        gemm[:d, :K] = precisions.transpose(1, 0, 2)
        gemm[d, :K] = -np.einsum("ki,kij->kj", plan.shift, precisions)
        gemm = np.ascontiguousarray(gemm.reshape(d + 1, padded // group, group * d).transpose(1, 0, 2))
        log_pivots = np.ascontiguousarray(np.log(np.diagonal(precisions, axis1=1, axis2=2)).T)
        shift_t, stacked = np.ascontiguousarray(plan.shift.T), np.ascontiguousarray(precisions.transpose(1, 2, 0))
        rows = default_gemm_rows(gemm.shape[2])
        return cls(plan, gemm, rows, shift_t, precisions, stacked, log_pivots)

    def arguments(self, X: np.ndarray, blocks: MissingBlocks, rows: tuple[int, int]) -> tuple:
        """:func:`tile_margins`'s arguments from ``X`` to ``log_pivots``, for rows ``rows``."""
        plan = self.plan
        return (
            X[rows[0] : rows[1]],
            *blocks.rows(*rows),
            plan.centre,
            self.gemm,
            self.gemm_rows,
            plan.log_norm,
            plan.shift,
            self.shift_t,
            self.stacked,
            self.log_pivots,
        )


_LAST: list = [None, None]  # weak reference to the last parameters, and their _Margins


def _margins_of(params: MixtureParams) -> _Margins:
    """:meth:`_Margins.of`, kept for the last parameters seen (O(K d²) to build: a UBM of 2,048 components
    adapted speaker by speaker, or a fit's chunks in one process, meet the same parameters again and again)."""
    ref, margins = _LAST
    if ref is None or ref() is not params:
        margins = _Margins.of(params)
        _LAST[:] = [weakref.ref(params), margins]
    return margins


def dense_log_prob(X: np.ndarray, params: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """Full or tied: ``log π_k + log N(x_o | μ_ko, Σ_k,oo)`` (n, K) and the rows minus μ_k completed by their
    conditional means, ẑ (K, n, d)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    margins = _margins_of(params)
    n, d = X.shape
    K = params.n_components
    blocks = missing_blocks(X, margins.precisions)
    A, L = np.empty((n, d + 1)), np.empty((n, K))
    fill, offset = np.empty((int(blocks.count.sum()), K)), np.empty(n, dtype=np.int64)
    if n:
        Q = np.empty((min(margins.gemm_rows, n), margins.gemm.shape[2]))
        tile_margins(*margins.arguments(X, blocks, (0, n)), A, Q, L, fill, offset)
    completed = A[None, :, :d] - margins.plan.shift[:, None, :]
    rows = np.repeat(np.arange(n), blocks.count)
    completed[:, rows, blocks.index[rows, np.arange(rows.size) - offset[rows]]] = fill.T
    return L, completed


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
    X = np.ascontiguousarray(X, dtype=np.float64)
    n_rows, d = X.shape
    K, covariance_type = params.n_components, params.covariance_type
    found = None if covariance_type in ("diag", "spherical") else missing_index(X, map)
    empty = nothing_observed(X) if found is None else found[0] == d
    if empty.any():  # left out and counted, as rows of weight 0
        weights = np.where(empty, 0.0, 1.0 if weights is None else weights)
    totals = weight_totals(n_rows, weights)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        live = weights > 0
        if not live.all():
            X, weights = X[live], weights[live]
            found = None if found is None else tuple(part[live] for part in found)
    s0, s1 = np.zeros(K), np.zeros((K, d))
    s2 = np.zeros(s2_shape(K, d, covariance_type))
    if covariance_type in ("diag", "spherical"):
        tile = min(8192, max(256, TILE_ELEMENTS // max(1, K * d)))
        parts = map(
            lambda b: _diagonal_tile(X[b[0] : b[1]], params, None if weights is None else weights[b[0] : b[1]]),
            tile_bounds(X.shape[0], tile),
        )
        blocks = None
    else:
        margins = _margins_of(params)
        blocks = missing_blocks(X, margins.precisions, found, map)
        parts = map(
            lambda b: _dense_tile(X, margins, None if weights is None else weights[b[0] : b[1]], blocks, b),
            tile_bounds(X.shape[0], margins.plan.tile_rows),
        )
    loglik = 0.0
    mass = None if blocks is None else np.zeros(blocks.log_det.shape)
    for part in parts:  # in tile order, whatever ``map`` runs them
        loglik += part[0]
        s0 += part[1]
        s1 += part[2]
        s2 += part[3]
        if mass is not None:
            mass += part[4]
    if blocks is not None and len(mass):
        full = np.zeros((K, d, d))
        add_pattern_covariances(blocks.pattern_count, blocks.pattern_index, blocks.start, blocks.inverse, mass, full)
        s2 += full.sum(axis=0) if covariance_type == "tied" else full
    return Stats(n_rows, loglik, s0, s1, s2, *totals)


_NO_WEIGHTS = np.zeros(0)


def _dense_tile(
    X: np.ndarray, margins: _Margins, w: np.ndarray | None, blocks: MissingBlocks, rows: tuple[int, int]
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One tile (rows ``rows`` of ``X``, one compiled call): log-likelihood, s0, s1, s2 and the responsibility
    mass of each cached pattern (P, K)."""
    plan = margins.plan
    K, d, e = plan.n_components, plan.n_features, plan.n_features + 1
    T, holes = rows[1] - rows[0], int(blocks.count[rows[0] : rows[1]].sum())
    size = T * (2 * d + 4 * K + 5) + e * e + margins.gemm_rows * margins.gemm.shape[2] + K * holes
    s0, s1, s2 = np.zeros(K), np.empty((K, d)), np.empty((K, d, d))
    mass = np.zeros(blocks.log_det.shape)
    loglik = missing_tile(
        *margins.arguments(X, blocks, rows),
        margins.precisions,
        plan.floor,
        _NO_WEIGHTS if w is None else np.ascontiguousarray(w, dtype=np.float64),
        s0,
        s1,
        s2,
        mass,
        scratch("missing", np.dtype(np.float64), size),
    )
    return loglik, s0, s1, s2.sum(axis=0) if plan.covariance_type == "tied" else s2, mass


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
