"""The fused EM kernel: E-step and centred statistics of a chunk in one pass, tile by tile.

No Dask here: each tile is one ``nogil`` call of a compiled kernel in
:mod:`dgmm.kernels._numba_tiles` (BLAS for the GEMMs, vectorised loops for the rest), so
threads sharing a chunk's tiles run in parallel. A chunk of ``n`` rows is cut into
row tiles of ``T`` rows that stay in cache; for each tile, in order:

1. ``Z = X_tile − c`` in float64, then cast to the compute dtype. ``c`` is one
   reference point for all components (the mean of the old means), so a large
   common offset in the data never meets the expansions below.
2. Squared Mahalanobis distances by one GEMM on ``Z``, with ``a_k = μ_k − c``:

   * full: ``Y = [Z, 1] [[U_1 … U_K], −[a_1 U_1 … a_K U_K]]``, (T, d+1) × (d+1, K·d)
     GEMMs, one per group of components about ``GROUP_COLUMNS`` wide and per block of
     ``gemm_rows`` rows (so Y stays in L2 whatever the tile height: OpenBLAS's rate
     halves once its output spills), then ``m_nk = ‖Y_nk‖²`` per block of d columns;
   * tied: ``Y = Z U``, then ``m_nk = ‖Y_n − a_k U‖²`` (a row loop);
   * diag / spherical: ``m_nk = [Z, Z∘Z] [−2 a∘P ; P]ᵀ + Σ_j a_kj² P_kj``,
     ``P = precisions`` (a row per component; the constant goes into ``log_norm``).

3. log-sum-exp responsibilities ``r`` (T, K) and the tile's log-likelihood; a
   component whose share of a row is below ``exp(plan.floor)`` (1e-19 in float32,
   1e-154 in float64) gets exactly 0, never a subnormal number.
4. Statistics about the old means, returned in float64:

   * full / tied: per component ``V_k = √r_k ∘ [Z − a_k, 1]`` (a (T, d+1) block
     that stays in cache), then ``V_kᵀ V_k`` (a GEMM; a SYRK, half the flops, from
     d = 23 where OpenBLAS's SYRK is the faster) gives ``S2_k`` and ``S1_k`` —
     exactly centred on the old means, no cancellation;
   * diag / spherical: ``G = rᵀ [Z, Z∘Z]`` (one GEMM), then
     ``S1_k = G¹_k − N_k a_k`` and ``S2_k = G²_k − 2 a_k∘G¹_k + N_k a_k²``.
     The expansion is about ``c``, not about zero, so its rounding is
     ``eps · (a_kj² + σ_kj²)`` per entry — relative to the spread of the
     components, never to the offset of the data. With ``dtype="float32"``, an
     iteration whose means lie so far apart that ``eps · max_k Σ_j a_kj² P_kj``
     exceeds ``EXPANSION_LIMIT`` (1e-3; components about 100 σ from ``c``) runs
     in float64 (components 1,000 σ apart lost a third of their variances).

Tile results are summed in tile order into float64 totals, so the result is a
pure function of the chunk and the tile size (whatever ``map`` runs the tiles).
With ``dtype="float32"`` steps 1–4 run in float32 inside a tile (a tile sums at
most ``T`` rows); everything across tiles, and the log-likelihood, is float64.
"""

from __future__ import annotations

import builtins
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import numpy as np

from .gaussian import CovarianceType, log_det_cholesky
from .params import MixtureParams
from .row_weights import live_rows
from .stats import Stats, s2_shape, weight_totals

ComputeDType = Literal["float64", "float32"]
COMPUTE_DTYPES: tuple[str, ...] = ("float64", "float32")
TILE_ELEMENTS = 1 << 18  # (T × width of a tile's intermediates) in elements, 2 MiB of float64: within L2
GEMM_ELEMENTS = 1 << 15  # full/tied: the Mahalanobis GEMM's output block in elements, 256 KiB of float64
GROUP_COLUMNS = 256  # full: the Mahalanobis GEMM takes groups of components about this many columns wide
MIN_TILE_ROWS, MAX_TILE_ROWS = 256, 8192
# diag/spherical: float32 is used while its relative rounding of the expanded distances and S2 stays below this
EXPANSION_LIMIT = 1e-3

TileParts = tuple[float, np.ndarray, np.ndarray, np.ndarray]
MapFn = Callable[..., Iterable]


def check_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype of a compute dtype name; ValueError for anything else."""
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype={dtype!r} is invalid; expected one of {', '.join(COMPUTE_DTYPES)}")
    return np.dtype(dtype)


def group_size(n_components: int, n_features: int, covariance_type: CovarianceType) -> int:
    """Components per Mahalanobis GEMM, K_g: ⌈K·d / GROUP_COLUMNS⌉ groups, as even as they can be.

    Their (T, K_g·d) product then stays in cache next to the rest of the tile, so tiles
    can be taller (the ``Vᵀ V`` products gain most from that). The last group is padded
    with zero columns. Tied has one d-wide product for all components.
    """
    if covariance_type != "full":
        return n_components
    groups = -(-n_components * n_features // GROUP_COLUMNS)
    return -(-n_components // groups)


def default_tile_rows(n_components: int, n_features: int, covariance_type: CovarianceType) -> int:
    """Rows per tile so the tile's intermediates stay near :data:`TILE_ELEMENTS` elements."""
    per_component = 4 * n_components  # log-probabilities, their exp, exponent bits, responsibilities
    if covariance_type in ("full", "tied"):
        # [Z, 1] and V (the Mahalanobis product goes in row blocks, :func:`default_gemm_rows`), in 3/4 of
        # the budget, since BLAS packs copies of Vᵀ V's operands too (taller tiles spill them out of cache)
        budget = 3 * TILE_ELEMENTS // 4
        width = 2 * (n_features + 1) + per_component
    else:
        budget, width = TILE_ELEMENTS, 2 * n_features + per_component  # [Z, Z∘Z]
    rows = budget // max(width, 1)
    return int(min(MAX_TILE_ROWS, max(MIN_TILE_ROWS, rows)))


def default_gemm_rows(gemm_columns: int) -> int:
    """Full/tied: rows per Mahalanobis GEMM, so its output stays near :data:`GEMM_ELEMENTS` elements."""
    return max(1, GEMM_ELEMENTS // max(gemm_columns, 1))


@dataclass(frozen=True)
class EStepPlan:
    """Everything a tile needs, derived once per iteration from the old parameters.

    Attributes
    ----------
    covariance_type : "full", "tied", "diag" or "spherical"
    dtype : compute dtype of the tile arithmetic (float64 where a float32 request would lose the
        diag/spherical variances, see :data:`EXPANSION_LIMIT`)
    tile_rows : rows per tile, ``T``
    centre : ndarray of shape (d,), float64, the reference ``c``
    shift : ndarray of shape (K, d), float64, ``a_k = μ_k − c``
    log_norm : ndarray of shape (K,), float64, ``log π_k + log det U_k − ½ d log 2π``
        (for diag/spherical also ``− ½ Σ_j a_kj² P_kj``)
    gemm : compute-dtype matrices the centred tile is multiplied by: (⌈K / K_g⌉, d + 1, K_g·d)
        full, one per group of :func:`group_size` components (``[U_k …]`` over
        ``−[a_k U_k …]``, the last group padded with zeros), (1, d + 1, d) tied (``U`` over 0),
        (2d, K) diag/spherical (``−2 (a∘P)ᵀ`` over ``Pᵀ``)
    shift_u : (K, d) compute dtype, ``a_k U`` for tied; empty otherwise
    shift_c : ``shift`` in the compute dtype
    floor : shifted log-probabilities below this give responsibility 0: ``½ log(tiny)`` of
        the compute dtype (−43.7 for float32, −354 for float64), so neither ``r`` nor
        ``r·z²`` is subnormal, which would slow the GEMMs many times over
    gemm_rows : full/tied, rows per Mahalanobis GEMM (:func:`default_gemm_rows`), at most ``T``
    params : the old parameters themselves, for chunks with missing values (:mod:`dgmm.kernels.missing`)
    """

    covariance_type: CovarianceType
    dtype: np.dtype
    tile_rows: int
    centre: np.ndarray
    shift: np.ndarray
    log_norm: np.ndarray
    gemm: np.ndarray
    shift_u: np.ndarray
    shift_c: np.ndarray
    floor: float
    gemm_rows: int
    params: MixtureParams | None = None

    @property
    def n_components(self) -> int:
        return int(self.shift.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.shift.shape[1])


def plan_estep(
    params: MixtureParams, dtype: ComputeDType = "float64", tile_rows: int | None = None, gemm_rows: int | None = None
) -> EStepPlan:
    """Precompute the per-iteration constants of :func:`fused_chunk_stats` (O(K·d²) work).

    Parameters
    ----------
    params : the old parameters; the statistics are centred on ``params.means``
    dtype : "float64" or "float32", the dtype of the tile arithmetic
    tile_rows : rows per tile; default from :func:`default_tile_rows`
    gemm_rows : full/tied, rows per Mahalanobis GEMM inside a tile; default from :func:`default_gemm_rows`
    """
    ctype = check_dtype(dtype)
    cov_type = params.covariance_type
    means = np.asarray(params.means, dtype=np.float64)
    K, d = means.shape
    prec_chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    centre = means.mean(axis=0)
    shift = means - centre
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(params.weights, dtype=np.float64))
    log_norm = log_weights + log_det_cholesky(prec_chol, cov_type, d) - 0.5 * d * np.log(2.0 * np.pi)
    shift_u = np.zeros((0, d))
    if cov_type == "full":
        stacked = np.transpose(prec_chol, (1, 0, 2)).reshape(d, K * d)
        offsets = np.einsum("ki,kij->kj", shift, prec_chol).reshape(1, K * d)
        group = group_size(K, d, cov_type)
        padded = -(-K // group) * group
        gemm = np.zeros((d + 1, padded * d))
        gemm[:, : K * d] = np.concatenate([stacked, -offsets], axis=0)
        gemm = gemm.reshape(d + 1, padded // group, group * d).transpose(1, 0, 2)
    elif cov_type == "tied":
        gemm = np.concatenate([prec_chol, np.zeros((1, d))], axis=0)[None]
        shift_u = shift @ prec_chol
    else:
        precisions = prec_chol**2 if cov_type == "diag" else np.repeat((prec_chol**2)[:, None], d, axis=1)
        gemm = np.concatenate([-2.0 * (shift * precisions).T, precisions.T], axis=0)
        spread = np.sum(shift**2 * precisions, axis=1)  # μ_k's squared Mahalanobis distance from c
        log_norm = log_norm - 0.5 * spread
        if np.finfo(ctype).eps * float(np.max(spread, initial=0.0)) > EXPANSION_LIMIT:
            ctype = np.dtype(np.float64)  # z² ≈ a_k² near μ_k: float32 would lose the variances
    rows = tile_rows if tile_rows is not None else default_tile_rows(K, d, cov_type)
    if cov_type in ("full", "tied"):
        gemm_rows = min(rows, gemm_rows if gemm_rows is not None else default_gemm_rows(gemm.shape[-1]))
    else:
        gemm_rows = rows
    return EStepPlan(
        cov_type,
        ctype,
        int(rows),
        centre,
        shift,
        np.ascontiguousarray(log_norm, dtype=np.float64),
        np.ascontiguousarray(gemm, dtype=ctype),
        np.ascontiguousarray(shift_u, dtype=ctype),
        np.ascontiguousarray(shift, dtype=ctype),
        float(0.5 * np.log(np.finfo(ctype).tiny)),
        int(gemm_rows),
        params,
    )


def component_chols(plan: EStepPlan) -> np.ndarray:
    """Full: the precision Cholesky factors ``U_k`` (K, d, d) in the compute dtype, unpacked from ``plan.gemm``."""
    K, d = plan.n_components, plan.n_features
    stacked = np.concatenate(list(plan.gemm[:, :d, :]), axis=1)[:, : K * d]  # (d, K·d): [U_1 … U_K]
    return np.ascontiguousarray(stacked.reshape(d, K, d).transpose(1, 0, 2))


def tile_stats(
    X: np.ndarray, plan: EStepPlan, weights: np.ndarray | None = None, s2_out: np.ndarray | None = None
) -> TileParts:
    """E-step and centred statistics of one tile (one call of a compiled kernel).

    Parameters
    ----------
    X : ndarray of shape (T, d), any float dtype
    weights : ndarray of shape (T,), float64, or None; row n counts ``weights[n]`` times
    s2_out : float64 (K, d, d) array the full/tied kernel writes its per-component ``S2_k``
        into, e.g. one a summed tile left (:func:`fused_chunk_stats`); None allocates one

    Returns
    -------
    loglik : float, Σ_n log p(x_n | θ)
    s0 : ndarray of shape (K,), float64
    s1 : ndarray of shape (K, d), float64
    s2 : ndarray, float64, (K, d, d) per component for full *and tied* (``s2_out`` when
        given; tied sums it over components), (K, d) for diag/spherical
    """
    from . import _numba_tiles as _k  # numba (~95 MiB) loads with the first tile, not with dgmm

    K, d = plan.n_components, plan.n_features
    s0, s1 = np.zeros(K), np.zeros((K, d))
    row_weights = _NO_WEIGHTS if weights is None else weights
    rows = max(X.shape[0], plan.tile_rows)
    fbuf = scratch("work", np.dtype(np.float64), rows * (3 * K + 3))
    if plan.covariance_type in ("diag", "spherical"):
        s2 = np.zeros((K, d))
        cbuf = scratch("tile", plan.dtype, rows * (2 * d + K))
        loglik = _k.diag_tile(
            X, plan.centre, plan.gemm, plan.log_norm, plan.floor, plan.shift, row_weights, s0, s1, s2, cbuf, fbuf
        )
        return loglik, s0, s1, s2
    s2 = np.empty((K, d, d)) if s2_out is None else s2_out
    cbuf = scratch("tile", plan.dtype, rows * (2 * (d + 1) + K) + plan.gemm_rows * plan.gemm.shape[2] + (d + 1) ** 2)
    loglik = _k.full_tile(
        X,
        plan.centre,
        plan.gemm,
        plan.gemm_rows,
        plan.log_norm,
        plan.floor,
        plan.shift_c,
        plan.shift_u,
        row_weights,
        s0,
        s1,
        s2,
        cbuf,
        fbuf,
    )
    return loglik, s0, s1, s2


_NO_WEIGHTS = np.zeros(0)
_SCRATCH = threading.local()


def scratch(name: str, dtype: np.dtype, size: int) -> np.ndarray:
    """This thread's 1-D scratch array ``name`` of ``dtype``, at least ``size`` elements, reused across tiles."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get((name, dtype))
    if buffer is None or buffer.size < size:
        buffer = buffers[(name, dtype)] = np.empty(size, dtype=dtype)
    return buffer


def tile_bounds(n_rows: int, tile_rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` of consecutive tiles covering ``n_rows``."""
    return [(i, min(i + tile_rows, n_rows)) for i in range(0, n_rows, max(1, tile_rows))]


def fused_chunk_stats(
    X: np.ndarray, plan: EStepPlan, map: MapFn = builtins.map, weights: np.ndarray | None = None
) -> Stats:
    """E-step and statistics of one chunk in one pass, centred on the old means.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    plan : from :func:`plan_estep`
    map : how tiles are run, e.g. a thread pool's ``map``; results are summed in tile
        order, so the value does not depend on it.
    weights : ndarray of shape (n,) or None; row n counts ``weights[n]`` times

    Returns
    -------
    Stats with float64 ``s0`` (K,), ``s1`` (K, d) and ``s2`` (``s2_shape``)
    """
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    n_rows, d = X.shape
    K = plan.n_components
    loglik, s0, s1 = 0.0, np.zeros(K), np.zeros((K, d))
    s2 = np.zeros(s2_shape(K, d, plan.covariance_type))
    totals = weight_totals(n_rows, weights)
    X, weights, _ = live_rows(X, weights)
    if weights is not None:
        weights = np.ascontiguousarray(weights)
    n = X.shape[0]

    # (K, d, d) outputs of tiles already summed, for later tiles: a large fresh array per tile
    # costs an mmap and its page faults where malloc's trim threshold is set (Dask's nanny)
    spare: list[np.ndarray] = []
    tied = plan.covariance_type == "tied"

    def run(bounds: tuple[int, int]) -> TileParts:
        start, stop = bounds
        try:
            out = spare.pop()  # atomic: threads never share a buffer
        except IndexError:
            out = None
        return tile_stats(X[start:stop], plan, None if weights is None else weights[start:stop], out)

    for part_loglik, p0, p1, p2 in map(run, tile_bounds(n, plan.tile_rows)):
        loglik += part_loglik
        s0 += p0
        s1 += p1
        s2 += p2.sum(axis=0) if tied else p2
        if p2.ndim == 3:
            spare.append(p2)
    return Stats(n_rows, loglik, s0, s1, s2, *totals)
