"""Compiled (numba) kernels of one row tile of the fused EM step; pure numeric code, no Dask.

A whole tile — centring, the GEMMs (BLAS through numba's ``np.dot``), log-densities,
``exp``, normalising and the centred statistics — runs in one ``nogil`` call, so the
threads that share a chunk's tiles never wait on each other for the GIL between
steps, and nothing of the tile goes back through the interpreter. See
:mod:`dgmm.kernels.estep` for the formulas.

Every function is specialised by numba for float64 and float32 tiles; sums that
leave a tile (``s0``, ``s1``, ``s2``, the log-likelihood) are accumulated in float64.
``fastmath`` is limited to reassociation and contraction (FMA), so infinities and
NaN keep their meaning, and a given machine always produces the same bits.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import binding
from numba import njit, types
from numba.extending import get_cython_function_address

_FLAGS = {"reassoc", "contract"}
_JIT = dict(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)

_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 = HI + LO (fdlibm)

# BLAS ?syrk from SciPy's bundled library (the one numba's np.dot calls), every argument by pointer.
# Bound as named external symbols, not ctypes pointers, so the kernels calling them stay cacheable.
_SYRK_SIGNATURE = types.void(*[types.voidptr] * 10)
for _name in ("dsyrk", "ssyrk"):
    binding.add_symbol(f"dgmm_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name))
_DSYRK = types.ExternalFunction("dgmm_dsyrk", _SYRK_SIGNATURE)
_SSYRK = types.ExternalFunction("dgmm_ssyrk", _SYRK_SIGNATURE)
SYRK_MIN_WIDTH = 24  # below this width OpenBLAS's GEMM beats its SYRK for VᵀV (2.5x at 16; SYRK 1.1-1.5x at 24-65)
_UPPER_NOTRANS = np.array([ord("U"), ord("N")], dtype=np.uint8)


@njit(inline="always", **_JIT)
def _exp_parts(v):  # pragma: no cover - compiled
    """``exp(v) = 2^k · p`` for −700 ≤ v ≤ 0: returns ``(p, k)`` (see :func:`exp_above`)."""
    k = math.floor(v * _LOG2E + 0.5)
    f = v - k * _LN2_HI - k * _LN2_LO
    p = 1.6059043836821613e-10
    p = p * f + 2.08767569878681e-09
    p = p * f + 2.505210838544172e-08
    p = p * f + 2.755731922398589e-07
    p = p * f + 2.7557319223985893e-06
    p = p * f + 2.48015873015873e-05
    p = p * f + 1.984126984126984e-04
    p = p * f + 1.388888888888889e-03
    p = p * f + 8.333333333333333e-03
    p = p * f + 4.1666666666666664e-02
    p = p * f + 1.6666666666666666e-01
    p = p * f + 0.5
    p = p * f + 1.0
    p = p * f + 1.0
    return p, k


@njit(**_JIT)
def exp_above(x, floor, out, bits):  # pragma: no cover - compiled
    """``out[i] = exp(x[i])`` for ``floor ≤ x[i] ≤ 0``, and exactly 0 below ``floor`` (x, out 1-D).

    bits : int64 scratch of the same length.
    NaN stays NaN. ``floor`` must be at least −700. Written so the loop vectorises (numba's scalar
    ``math.exp`` does not, and costs about 10× NumPy's): ``exp(x) = 2^k · e^f`` with
    ``k = round(x / ln 2)``, ``|f| ≤ ½ ln 2``, and ``e^f`` by its Taylor series to
    ``f^13/13!`` (truncation below 5e-18, so within 2 ulp of the exact value).
    """
    n = x.shape[0]
    for i in range(n):
        p, k = _exp_parts(max(np.float64(x[i]), floor))
        bits[i] = (np.int64(k) + 1023) << 52
        out[i] = p
    scale = bits.view(np.float64)
    for i in range(n):
        v = x[i]
        out[i] = out[i] * scale[i] if v >= floor else (v if v != v else 0.0)  # NaN stays NaN


@njit(**_JIT)
def centre_rows(X, centre, out, with_squares):  # pragma: no cover - compiled
    """``out[:, :d] = X − centre``; then ``out[:, d] = 1`` (full/tied) or ``out[:, d:] = (X − c)²``.

    X : (T, d) any float; centre : (d,) float64; out : (T, d + 1) or (T, 2d), compute dtype.
    The subtraction is done in float64 before the cast.
    """
    T, d = X.shape
    for n in range(T):
        for j in range(d):
            v = np.float64(X[n, j]) - centre[j]
            out[n, j] = v
            if with_squares:
                out[n, d + j] = v * v
        if not with_squares:
            out[n, d] = 1.0


@njit(**_JIT)
def block(buf, start, rows, cols):  # pragma: no cover - compiled
    """A (rows, cols) C-ordered view of the 1-D scratch ``buf`` from element ``start``."""
    return buf[start : start + rows * cols].reshape(rows, cols)


@njit(**_JIT)
def gram_lower(V, G):  # pragma: no cover - compiled
    """``G = Vᵀ V`` for V (T, e) C-ordered; only the lower triangle ``G[i, j], j ≤ i`` is meaningful.

    One BLAS SYRK (half the flops) when ``e ≥ SYRK_MIN_WIDTH``, one GEMM otherwise.
    """
    T, e = V.shape
    if e < SYRK_MIN_WIDTH:
        np.dot(V.T, V, G)
        return
    sizes = np.array([e, T], dtype=np.int32)
    scalars = np.array([1.0, 0.0], dtype=V.dtype)
    flags = _UPPER_NOTRANS
    # V C-ordered is A = Vᵀ (e, T) to Fortran, so A Aᵀ in Fortran's upper triangle: G's lower one
    if V.itemsize == 4:
        _SSYRK(
            flags[0:].ctypes,
            flags[1:].ctypes,
            sizes[0:].ctypes,
            sizes[1:].ctypes,
            scalars[0:].ctypes,
            V.ctypes,
            sizes[0:].ctypes,
            scalars[1:].ctypes,
            G.ctypes,
            sizes[0:].ctypes,
        )
    else:
        _DSYRK(
            flags[0:].ctypes,
            flags[1:].ctypes,
            sizes[0:].ctypes,
            sizes[1:].ctypes,
            scalars[0:].ctypes,
            V.ctypes,
            sizes[0:].ctypes,
            scalars[1:].ctypes,
            G.ctypes,
            sizes[0:].ctypes,
        )


@njit(**_JIT)
def unpack_gram(G, k, s1, s2):  # pragma: no cover - compiled
    """From ``G = Vᵀ V`` (d + 1, d + 1), lower triangle, of ``V = √r [z, 1]``: s1[k] (d,) its last row and s2[k]
    (d, d) the rest, made symmetric."""
    d = s1.shape[1]
    for i in range(d):
        s1[k, i] = G[d, i]
        for j in range(i + 1):
            s2[k, i, j] = G[i, j]
            s2[k, j, i] = G[i, j]


@njit(**_JIT)
def log_of(x, out, bits):  # pragma: no cover - compiled
    """``out[i] = log(x[i])`` (x, out 1-D float64; bits int64 scratch of the same length).

    Vectorisable like :func:`exp_above` (numba's scalar ``math.log`` costs about 30 ns):
    ``x = 2^e · m`` with ``m`` in [√½, √2), then ``log m = 2 atanh(s)``, ``s = (m − 1)/(m + 1)``,
    ``|s| ≤ 0.172``, by its series to ``s^21`` (truncation below 5e-18). Zero, negative,
    subnormal, infinite and NaN inputs go through ``math.log``.
    """
    n = x.shape[0]
    xb = x.view(np.int64)
    for i in range(n):
        bits[i] = (xb[i] & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000  # the mantissa as a double in [1, 2)
    mantissa = bits.view(np.float64)
    for i in range(n):
        e = np.float64(((xb[i] >> 52) & 0x7FF) - 1023)
        m = mantissa[i]
        if m > 1.4142135623730951:
            m *= 0.5
            e += 1.0
        s = (m - 1.0) / (m + 1.0)
        z = s * s
        p = 1.0 / 21.0
        p = p * z + 1.0 / 19.0
        p = p * z + 1.0 / 17.0
        p = p * z + 1.0 / 15.0
        p = p * z + 1.0 / 13.0
        p = p * z + 1.0 / 11.0
        p = p * z + 1.0 / 9.0
        p = p * z + 1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z + 1.0 / 3.0
        out[i] = e * _LN2_HI + (e * _LN2_LO + 2.0 * s * (1.0 + z * p))
    for i in range(n):
        v = x[i]
        if not (v >= 2.2250738585072014e-308 and v <= 1.7976931348623157e308):
            out[i] = math.log(v) if v >= 0.0 else np.nan


@njit(**_JIT)
def responsibilities(L, floor, weights, s0, R, work):  # pragma: no cover - compiled
    """Log-probabilities L (T, K) float64 -> responsibilities × row weights R (T, K); returns Σ_n w_n log p(x_n).

    Each row is shifted by its maximum in float64 (0 when that is not finite, so rows
    far from every component still normalise); shifted entries below ``floor`` get
    exactly 0, never a subnormal number. L is overwritten. weights : (T,) float64, or
    empty for unit weights; s0 (K,) float64 gets Σ_n w_n r_nk added; R in the compute
    dtype; work : float64 scratch of at least T·(2K + 3) elements.
    """
    T, K = L.shape
    peak = work[:T]
    E = work[T : T + T * K]
    bits = work[T + T * K : T + 2 * T * K].view(np.int64)
    for n in range(T):
        top = -np.inf
        for k in range(K):
            top = max(top, L[n, k])
        peak[n] = top if math.isfinite(top) else 0.0
    for n in range(T):
        for k in range(K):
            L[n, k] = L[n, k] - peak[n]
    total = work[T + 2 * T * K : 2 * T + 2 * T * K]
    logs = work[2 * T + 2 * T * K : 3 * T + 2 * T * K]
    exp_above(L.reshape(-1), floor, E, bits)
    for n in range(T):
        acc = 0.0
        for k in range(K):
            acc += E[n * K + k]
        total[n] = acc
    log_of(total, logs, bits[:T])
    loglik = 0.0
    unit = weights.shape[0] == 0
    for n in range(T):
        w = 1.0 if unit else weights[n]
        loglik += w * (logs[n] + peak[n])
        total[n] = w / total[n]
    for n in range(T):
        scale = total[n]
        for k in range(K):
            r = E[n * K + k] * scale
            R[n, k] = r
            s0[k] += r
    return loglik


@njit(**_JIT)
def full_tile(
    X, centre, gemm, gemm_rows, log_norm, floor, shift, shift_u, weights, s0, s1, s2, cbuf, fbuf
):  # pragma: no cover
    """E-step and centred statistics of one tile, full or tied covariances (tied when ``shift_u`` has rows).

    X : (T, d); centre : (d,) float64; gemm : (⌈K / K_g⌉, d + 1, K_g·d) full, a block per group
    of K_g components (zero-padded), or (1, d + 1, d) tied, compute dtype; gemm_rows : rows per
    Mahalanobis GEMM (its (gemm_rows, K_g·d) product stays in L2 even when the tile, sized for
    the ``Vᵀ V`` products, is taller: OpenBLAS halves its rate once the output spills); log_norm : (K,)
    float64; shift : (K, d) ``a_k``; shift_u : (K, d) ``a_k U`` (tied) or (0, d); weights :
    (T,) float64 or empty. Adds to s0 (K,); *writes* s1 (K, d) and s2 (K, d, d) — for tied,
    every component's S2_k, summed by the caller. Returns the tile's log-likelihood.
    cbuf : compute-dtype scratch of at least ``T·(2(d + 1) + K) + gemm_rows·gemm.shape[2] + (d + 1)²``
    elements; fbuf : float64 scratch of at least ``T·(3K + 3)`` (scratch, not fresh arrays: a
    worker whose malloc returns large blocks to the system at once would page-fault through
    every tile otherwise).
    """
    T, d = X.shape
    K = shift.shape[0]
    e = d + 1
    groups, _, width = gemm.shape
    Z = block(cbuf, 0, T, e)
    M = block(cbuf, T * e, T, K)
    V = block(cbuf, T * (e + K), T, e)
    G = block(cbuf, T * (2 * e + K), e, e)
    Y = block(cbuf, T * (2 * e + K) + e * e, min(gemm_rows, T), width)
    L = block(fbuf, 0, T, K)
    centre_rows(X, centre, Z, False)
    tied = shift_u.shape[0] > 0
    per_group = -(-K // groups)
    for start in range(0, T, gemm_rows):
        stop = min(T, start + gemm_rows)
        for g in range(groups):
            np.dot(Z[start:stop], gemm[g], Y[: stop - start])
            for n in range(start, stop):
                for i in range(min(per_group, K - g * per_group)):
                    k = g * per_group + i
                    m = 0.0
                    for j in range(d):
                        if tied:
                            v = np.float64(Y[n - start, j]) - shift_u[k, j]
                        else:
                            v = np.float64(Y[n - start, i * d + j])
                        m += v * v
                    L[n, k] = log_norm[k] - 0.5 * m
    loglik = responsibilities(L, floor, weights, s0, M, fbuf[T * K :])
    # per component V = √r_k [z − a_k, 1]: Vᵀ V holds S2_k and S1_k, exactly centred
    for k in range(K):
        for n in range(T):
            root = math.sqrt(M[n, k])
            for j in range(d):
                V[n, j] = root * (Z[n, j] - shift[k, j])
            V[n, d] = root
        gram_lower(V, G)
        unpack_gram(G, k, s1, s2)
    return loglik


@njit(**_JIT)
def diag_tile(X, centre, gemm, log_norm, floor, shift, weights, s0, s1, s2, cbuf, fbuf):  # pragma: no cover
    """E-step and statistics of one tile, diagonal or spherical covariances.

    gemm : (2d, K) compute dtype, ``[−2 (a∘P)ᵀ ; Pᵀ]``; other arguments as :func:`full_tile`;
    adds to s0 (K,), s1 (K, d) and s2 (K, d), the per-feature second moments about ``μ_k``.
    cbuf : compute-dtype scratch of at least ``T·(2d + K)`` elements; fbuf as :func:`full_tile`.
    """
    T, d = X.shape
    K = shift.shape[0]
    pair = block(cbuf, 0, T, 2 * d)
    M = block(cbuf, T * 2 * d, T, K)
    L = block(fbuf, 0, T, K)
    centre_rows(X, centre, pair, True)
    np.dot(pair, gemm, M)
    for n in range(T):
        for k in range(K):
            L[n, k] = log_norm[k] - 0.5 * np.float64(M[n, k])
    t0 = np.zeros(K)
    loglik = responsibilities(L, floor, weights, t0, M, fbuf[T * K :])
    G = np.dot(M.T, pair)
    for k in range(K):
        s0[k] += t0[k]
        for j in range(d):
            a = shift[k, j]
            first = np.float64(G[k, j])
            s1[k, j] += first - t0[k] * a
            s2[k, j] += np.float64(G[k, d + j]) - 2.0 * a * first + t0[k] * a * a
    return loglik


@njit(**_JIT)
def _exp_sum(E, bits, m, floor):  # pragma: no cover - compiled
    """``Σ_{i<m} exp(E[i])`` for ``E[i] ≤ 0``, entries below ``floor`` counted as 0 (E overwritten; bits int64)."""
    for i in range(m):
        p, k = _exp_parts(max(E[i], floor))
        bits[i] = (np.int64(k) + 1023) << 52
        E[i] = p if E[i] >= floor else (E[i] if E[i] != E[i] else 0.0)  # NaN stays NaN
    scale = bits.view(np.float64)
    total = 0.0
    for i in range(m):
        total += E[i] * scale[i]
    return total


@njit(**_JIT)
def segment_logsumexp(L, K, floor, out, E, bits):  # pragma: no cover - compiled
    """``out[n, c] = log Σ_k exp(L[n, c·K + k])``: the log-sum-exp of each run of K columns, (T, C·K) -> (T, C).

    One read of L from memory: a pass for each run's maximum, then the entries within ``−floor`` of it
    are gathered while the run is still in cache and exponentiated together (as :func:`exp_above`); the
    rest, each below ``e^floor`` of the largest term, count as 0. The NumPy equivalent reads and writes
    the whole (T, C·K) block four times, more than its matrix product costs. A run with no finite maximum
    (every entry −inf, or an infinity, or NaN among −inf) is summed as it is, so −inf, inf and NaN keep
    their meaning; NaN beside finite entries gives NaN. E : float64, bits : int64 scratch of K elements.
    """
    T = L.shape[0]
    C = L.shape[1] // K
    for n in range(T):
        for c in range(C):
            base = c * K
            top = -np.inf
            for k in range(K):
                v = L[n, base + k]
                top = v if v > top else top
            if not math.isfinite(top):
                total = 0.0
                for k in range(K):
                    total += math.exp(L[n, base + k])
                out[n, c] = math.log(total)
                continue
            m = 0
            for k in range(K):
                v = L[n, base + k] - top
                E[m] = v
                m += not v < floor  # NaN is kept, and makes the sum NaN
            out[n, c] = top + math.log(_exp_sum(E, bits, m, floor))
