"""The E-step and centred statistics of a chunk, written once against the Python array API.

The same statistics as :func:`dgmm.kernels.estep.fused_chunk_stats` (the numba kernel, which stays
the CPU path) for any array-API array: NumPy, CuPy on a GPU, torch, array-api-strict on any of its
devices. Nothing is converted to NumPy but the (K, d, d)-sized results. Per tile of ``tile_rows``
rows, in the compute dtype:

1. ``Z = X − c`` (``c`` the mean of the old means), ``a_k = μ_k − c``;
2. squared Mahalanobis distances: full ``‖(Z − a_k) U_k‖²`` (one matmul per component), tied
   ``‖Z U − a_k U‖²``, diag/spherical ``[Z, Z∘Z] [−2 (a∘P)ᵀ ; Pᵀ] + Σ_j a_kj² P_kj`` (one matmul);
3. log-sum-exp responsibilities; a share below ``exp(floor)`` is exactly 0, as in the numba kernel;
4. statistics about the old means: full/tied ``(√r_k (Z − a_k))ᵀ (√r_k (Z − a_k))``, diag/spherical
   ``G = rᵀ [Z, Z∘Z]`` expanded about ``c`` (the numba kernel's forms, so both round alike).

Tile results are added in tile order into float64 totals on the array's device; the plan's
constants come from :func:`dgmm.kernels.estep.plan_estep` (same centre, log-normalisers, floor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import namespace, to_numpy
from ..estep import EStepPlan, component_chols, plan_estep
from ..hashing import random_resp
from ..params import MixtureParams
from ..posterior import logsumexp_rows
from ..stats import Stats, merge_stats, s2_shape, weight_totals
from .cuda import fused_chunk_stats_on, gpu_launcher
from .tiles import row_tiles, rows_for_width, xp_tile_rows


def xp_chunk_stats(
    X: Any,
    params: MixtureParams | EStepPlan,
    weights: Any = None,
    dtype: str = "float64",
    tile_rows: int | None = None,
    fused: bool = True,
) -> Stats:
    """E-step statistics of one chunk ``X`` (n, d) of any array-API library, centred on the old means.

    A CuPy array goes to the fused CUDA kernels (:mod:`dgmm.kernels.device.cuda`) unless ``fused`` is
    False or they fail to compile; everything else to the array-API tiles below.

    Parameters
    ----------
    X : array of shape (n, d), float32 or float64, on any device
    params : the old parameters (NumPy), or a plan from :func:`plan_estep` (its dtype is used)
    weights : array of shape (n,) on X's device, or None; row n counts ``weights[n]`` times
    dtype : compute dtype, "float64" or "float32" (statistics are accumulated in float64)
    tile_rows : rows per tile; default :func:`xp_tile_rows` (:func:`~dgmm.kernels.device.cuda.fused_tile_rows` fused)
    fused : whether a CuPy array may take the fused CUDA kernels

    Returns
    -------
    Stats (NumPy, float64), as :func:`dgmm.kernels.estep.fused_chunk_stats` gives
    """
    plan = params if isinstance(params, EStepPlan) else plan_estep(params, dtype)
    if fused:
        launcher = gpu_launcher(X, plan)
        if launcher is not None:
            return fused_chunk_stats_on(launcher, X, plan, weights, tile_rows)
    xp = namespace(X)
    where = getattr(X, "device", None)
    compute = xp.float32 if plan.dtype == np.float32 else xp.float64
    constants = _Constants(xp, plan, where, compute)
    n, d = X.shape
    K = plan.n_components
    loglik = xp.zeros((), dtype=xp.float64, device=where)
    s0 = xp.zeros((K,), dtype=xp.float64, device=where)
    s1 = xp.zeros((K, d), dtype=xp.float64, device=where)
    s2 = xp.zeros(s2_shape(K, d, plan.covariance_type), dtype=xp.float64, device=where)
    tile_rows = tile_rows or xp_tile_rows(n, d, K, plan.covariance_type)
    for start in range(0, n, max(1, tile_rows)):
        stop = min(start + tile_rows, n)
        w = None if weights is None else xp.astype(weights[start:stop], xp.float64)
        part = _tile(xp, constants, X[start:stop, :], w)
        loglik, s0, s1, s2 = loglik + part[0], s0 + part[1], s1 + part[2], s2 + part[3]
    total, zero = weight_totals(n, weights)
    return Stats(n, float(to_numpy(loglik)), to_numpy(s0), to_numpy(s1), to_numpy(s2), total, zero)


class _Constants:
    """The plan's constants as arrays of the data's namespace, on its device, in the compute dtype."""

    def __init__(self, xp, plan: EStepPlan, where: Any, compute: Any):
        def put(a: np.ndarray, dtype=compute):
            return xp.asarray(np.ascontiguousarray(a), dtype=dtype, device=where)

        self.plan, self.compute = plan, compute
        self.centre = put(plan.centre, xp.float64)
        self.shift = put(plan.shift)
        self.log_norm = put(plan.log_norm, xp.float64)
        K, d = plan.shift.shape
        if plan.covariance_type in ("diag", "spherical"):
            self.gemm = put(plan.gemm)  # (2d, K)
        elif plan.covariance_type == "tied":
            self.chol = put(plan.gemm[0, :d, :])  # U, (d, d)
            self.shift_u = put(plan.shift_u)
        else:
            self.chols = [put(chol) for chol in component_chols(plan)]


def _log_prob(xp, c: _Constants, Z: Any) -> Any:
    """``log π_k + log N(x | μ_k, Σ_k)`` (n, K), float64, from the centred rows ``Z = X − c`` (compute dtype)."""
    K = c.plan.n_components
    if c.plan.covariance_type in ("diag", "spherical"):
        distances = xp.concat([Z, Z * Z], axis=1) @ c.gemm
    elif c.plan.covariance_type == "tied":
        Y = Z @ c.chol
        distances = xp.stack([xp.sum((Y - c.shift_u[k, :]) ** 2, axis=1) for k in range(K)], axis=1)
    else:
        distances = xp.stack([xp.sum(((Z - c.shift[k, :]) @ c.chols[k]) ** 2, axis=1) for k in range(K)], axis=1)
    return -0.5 * xp.astype(distances, xp.float64) + c.log_norm


def _tile(xp, c: _Constants, X: Any, w: Any) -> tuple[Any, Any, Any, Any]:
    """(loglik, s0, s1, s2) of one tile, float64 on the tile's device."""
    plan = c.plan
    K, d = plan.n_components, plan.n_features
    Z = xp.astype(xp.astype(X, xp.float64) - c.centre, c.compute)
    kind = plan.covariance_type
    log_prob = _log_prob(xp, c, Z)
    lse = logsumexp_rows(log_prob)
    log_resp = log_prob - lse[:, None]
    resp = xp.where(log_resp < plan.floor, xp.zeros_like(log_resp), xp.exp(log_resp))
    if w is not None:
        resp = resp * w[:, None]
        loglik = xp.sum(w * lse)
    else:
        loglik = xp.sum(lse)
    r = xp.astype(resp, c.compute)
    s0 = xp.sum(resp, axis=0)
    shift64 = xp.astype(c.shift, xp.float64)
    if kind in ("diag", "spherical"):
        G = xp.astype(xp.matrix_transpose(r) @ xp.concat([Z, Z * Z], axis=1), xp.float64)
        g1, g2 = G[:, :d], G[:, d:]
        s1 = g1 - s0[:, None] * shift64
        s2 = g2 - 2.0 * shift64 * g1 + s0[:, None] * shift64**2  # per feature for spherical too, as numba's
        return loglik, s0, s1, s2
    s1_rows, s2_blocks = [], []
    for k in range(K):
        centred = Z - c.shift[k, :]
        scaled = centred * xp.sqrt(r[:, k])[:, None]
        s1_rows.append(xp.astype(xp.sum(centred * r[:, k][:, None], axis=0), xp.float64))
        s2_blocks.append(xp.astype(xp.matrix_transpose(scaled) @ scaled, xp.float64))
    s1 = xp.stack(s1_rows, axis=0)
    s2 = xp.stack(s2_blocks, axis=0)
    if kind == "tied":
        s2 = xp.sum(s2, axis=0)
    return loglik, s0, s1, s2


def xp_init_stats(
    X: Any,
    method: str,
    centres: np.ndarray,
    covariance_type: str,
    seed: int,
    row_offset: int,
    weights: Any = None,
    tile_rows: int | None = None,
) -> Stats:
    """:func:`dgmm.kernels.init.init_chunk_stats` for any array-API chunk: statistics about ``centres`` (K, d)
    under hard assignments to the nearest centre, or for "random" the hashed responsibilities of
    :func:`dgmm.kernels.hashing.random_resp` (drawn on the host from the global row index). By tiles of
    ``tile_rows`` (default: intermediates of 3d + 3K values a row within :data:`XP_TILE_SHARE` of the chunk)."""
    n, d = X.shape
    K = centres.shape[0]
    tile_rows = tile_rows or rows_for_width(n, d, 3 * d + 3 * K)
    parts = [
        _init_tile(
            X[a:b, :], method, centres, covariance_type, seed, row_offset + a, None if weights is None else weights[a:b]
        )
        for a, b in row_tiles(n, tile_rows)
    ]
    return merge_stats(parts)


def _init_tile(
    X: Any, method: str, centres: np.ndarray, covariance_type: str, seed: int, row_offset: int, weights: Any
) -> Stats:
    xp = namespace(X)
    where = getattr(X, "device", None)
    n, d = X.shape
    K = centres.shape[0]
    X = xp.astype(X, xp.float64)
    c = xp.asarray(centres, dtype=xp.float64, device=where)
    if method == "random":
        resp = xp.asarray(random_resp(n, K, row_offset, seed), device=where)
    else:
        distances = xp.sum(X * X, axis=1)[:, None] - 2.0 * (X @ xp.matrix_transpose(c)) + xp.sum(c * c, axis=1)[None, :]
        labels = xp.argmin(distances, axis=1)
        resp = xp.astype(labels[:, None] == xp.arange(K, device=where)[None, :], xp.float64)
    if weights is not None:
        resp = resp * xp.astype(weights, xp.float64)[:, None]
    return xp_accumulate(X, resp, c, covariance_type, 0.0, weight_totals(n, weights))


def xp_accumulate(
    X: Any, resp: Any, centres: Any, covariance_type: str, loglik: float, totals: tuple[float, int]
) -> Stats:
    """:func:`dgmm.kernels.stats.accumulate` on X's device: statistics of float64 rows ``X`` (n, d) with
    responsibilities ``resp`` (n, K) already multiplied by the row weights, centred on ``centres`` (K, d) there;
    ``totals`` is (total weight, rows of weight 0)."""
    xp = namespace(X)
    s0 = xp.sum(resp, axis=0)
    s1_rows, s2_parts = [], []
    for k in range(resp.shape[1]):
        centred = X - centres[k, :]
        r = resp[:, k][:, None]
        s1_rows.append(xp.sum(r * centred, axis=0))
        s2_parts.append(
            xp.matrix_transpose(centred * r) @ centred
            if covariance_type in ("full", "tied")
            else xp.sum(r * centred * centred, axis=0)
        )
    s2 = xp.stack(s2_parts, axis=0)
    if covariance_type == "tied":
        s2 = xp.sum(s2, axis=0)
    return Stats(X.shape[0], loglik, to_numpy(s0), to_numpy(xp.stack(s1_rows, axis=0)), to_numpy(s2), *totals)
