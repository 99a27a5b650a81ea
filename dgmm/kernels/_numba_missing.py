"""Compiled (numba) row tiles of the marginalised E-step for full and tied covariances; no Dask.

The formulas are :mod:`dgmm.kernels.missing`'s. A tile's rows minus c (the mean of the means), 0 where missing, go
through one GEMM per group of components, as complete rows do in :mod:`dgmm.kernels._numba_tiles`, giving ``Q'_k =
(x − μ_k) Λ_k`` with x's missing entries c; for z = x − μ_k with its missing entries 0, ``Λ_k z`` on the missing
coordinates is ``q_m = Q'_m + Σ_m' a_km' Λ_k[m', m]`` and ``zᵀ Λ_k z = Σ_j (A_j − a_kj) Q'_j + Σ_m a_km (Q'_m +
q_m)`` (A: the row minus c, 0 where missing). Each row with s missing values then factorises its s x s block ``Λ_mm
= L D Lᵀ`` (in registers for s ≤ 3, the usual case; a loop beyond) for ``ẑ_m = −Λ_mm⁻¹ q_m``, the Mahalanobis
distance of its observed margin (``zᵀ Λ_k z − q_mᵀ Λ_mm⁻¹ q_m``) and ``log det Λ_mm`` (from its pattern's, inverted
once per chunk and component by :func:`~dgmm.kernels._numba_patterns.pattern_inverses`, where the chunk keeps them).
Statistics: ``Vᵀ V`` per component on the completed deviations ``V = √r [ẑ, 1]``, as complete rows, plus ``r
Λ_mm⁻¹`` on each row's missing block (summed per pattern first). Loops run along the components where they can, and
the per-row work is written out in the tile functions: a call passing arrays costs two atomic reference counts per
array. Sums leave a tile in float64; the same flags as :mod:`dgmm.kernels._numba_tiles`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._numba_patterns import PRODUCT_HIGH, PRODUCT_LOW, pattern_inverses
from ._numba_tiles import block, gram_lower, responsibilities, unpack_gram

OWN_BLOCK_ELEMENTS = 1 << 17  # rows of no cached pattern: their blocks inverted per batch of at most this many
_JIT = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"}, boundscheck=False)


@njit(**_JIT)
def normalise(log_prob, weights, resp):  # pragma: no cover - compiled
    """Responsibilities ``resp`` (T, K) from log π_k + log-densities (T, K), times the row weights (T,) (or 1
    when empty); returns Σ_n w_n log p(x_n)."""
    T, K = log_prob.shape
    total = 0.0
    for i in range(T):
        peak = log_prob[i, 0]
        for k in range(1, K):
            if log_prob[i, k] > peak:
                peak = log_prob[i, k]
        acc = 0.0
        for k in range(K):
            e = math.exp(log_prob[i, k] - peak)
            resp[i, k] = e
            acc += e
        w = weights[i] if weights.shape[0] else 1.0
        scale = w / acc
        for k in range(K):
            resp[i, k] *= scale
        total += w * (math.log(acc) + peak)
    return total


@njit(**_JIT)
def tile_margins(
    X,
    count,
    index,
    pattern,
    block_log_det,
    centre,
    gemm,
    gemm_rows,
    log_norm,
    shift,
    shift_t,
    stacked,
    log_pivots,
    A,
    Q,
    L,
    fill,
    offset,
):  # pragma: no cover - compiled
    """E-step of one tile over each row's observed margin (see the module's formulas).

    X (T, d) with NaN; count, index, pattern (T,), (T, d), (T,): each row's missing values and pattern (-1: none
    cached); block_log_det (P, K): the patterns' log det Λ_mm
    (:func:`~dgmm.kernels._numba_patterns.pattern_inverses`); centre (d,) c; gemm (groups, d + 1, K_g·d) ``[[Λ_k];
    [−a_k Λ_k]]`` side by side for the K_g components of a group; gemm_rows: rows per GEMM; log_norm (K,) log π_k −
    ½ log det Σ_k − ½ d log 2π; shift (K, d) and shift_t (d, K) a_k = μ_k − c; stacked (d, d, K) Λ_k[i, j] at [i, j,
    k]; log_pivots (d, K) log Λ_k,jj. Writes A (T, d + 1) = [x − c (0 where missing), 1], L (T, K) log π_k + log
    N(x_o | μ_ko, Σ_k,oo), offset (T,) where each row's missing values start in fill (Σ count, K): ẑ_m per
    component. Q: (gemm_rows, gemm.shape[2]) scratch.
    """
    T, d = X.shape
    K = shift.shape[0]
    groups, _, width = gemm.shape
    total = 0
    for n in range(T):
        offset[n] = total
        total += count[n]
        for j in range(d):
            A[n, j] = X[n, j] - centre[j]
        A[n, d] = 1.0
        for a in range(count[n]):
            A[n, index[n, a]] = 0.0
    per_group = -(-K // groups)
    F = np.empty((d, d, per_group))
    w = np.empty((d, per_group))
    extra = np.empty(per_group)
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    for first in range(0, T, gemm_rows):
        stop = min(T, first + gemm_rows)
        for g in range(groups):
            np.dot(A[first:stop], gemm[g], Q[: stop - first])
            k0 = g * per_group
            members = min(per_group, K - k0)
            for n in range(first, stop):
                for i in range(members):
                    m = 0.0
                    for j in range(d):
                        m += (A[n, j] - shift[k0 + i, j]) * Q[n - first, i * d + j]
                    L[n, k0 + i] = log_norm[k0 + i] - 0.5 * m
            for n in range(first, stop):
                s = count[n]
                if s == 0:
                    continue
                p = pattern[n]
                # along the components, what the margin adds to the complete row's log det Σ + Σ_j (A_j − a_kj) Q'_j:
                # Σ_m a_km (Q'_m + q_m) + log det Λ_mm − q_mᵀ Λ_mm⁻¹ q_m (see the module docstring)
                if s == 1:  # the most common case: Λ_mm is one number
                    m = index[n, 0]
                    for i in range(members):
                        v, pivot, a0 = Q[n - first, i * d + m], stacked[m, m, k0 + i], shift_t[m, k0 + i]
                        q0 = v + a0 * pivot
                        fill[offset[n], k0 + i] = -q0 / pivot
                        more = a0 * (v + q0) + log_pivots[m, k0 + i] - q0 * q0 / pivot
                        L[n, k0 + i] += half_log_2pi - 0.5 * more
                    continue
                if s == 2:  # Λ_mm = L D Lᵀ in registers
                    m0, m1 = index[n, 0], index[n, 1]
                    for i in range(members):
                        k = k0 + i
                        v0, v1 = Q[n - first, i * d + m0], Q[n - first, i * d + m1]
                        a0, a1 = shift_t[m0, k], shift_t[m1, k]
                        d0, e10, f11 = stacked[m0, m0, k], stacked[m1, m0, k], stacked[m1, m1, k]
                        q0, q1 = v0 + a0 * d0 + a1 * e10, v1 + a0 * e10 + a1 * f11
                        l10 = e10 / d0
                        d1 = f11 - e10 * l10
                        w1 = q1 - l10 * q0
                        y1 = w1 / d1
                        fill[offset[n], k] = l10 * y1 - q0 / d0
                        fill[offset[n] + 1, k] = -y1
                        log_det = block_log_det[p, k] if p >= 0 else d0 * d1
                        if p < 0:
                            log_det = (
                                math.log(log_det)
                                if PRODUCT_LOW < log_det < PRODUCT_HIGH
                                else math.log(d0) + math.log(d1)
                            )
                        more = a0 * (v0 + q0) + a1 * (v1 + q1) + log_det - q0 * q0 / d0 - w1 * y1
                        L[n, k] += 2.0 * half_log_2pi - 0.5 * more
                    continue
                if s == 3:
                    m0, m1, m2 = index[n, 0], index[n, 1], index[n, 2]
                    for i in range(members):
                        k = k0 + i
                        v0, v1, v2 = Q[n - first, i * d + m0], Q[n - first, i * d + m1], Q[n - first, i * d + m2]
                        a0, a1, a2 = shift_t[m0, k], shift_t[m1, k], shift_t[m2, k]
                        d0, e10, e20 = stacked[m0, m0, k], stacked[m1, m0, k], stacked[m2, m0, k]
                        f11, f21, f22 = stacked[m1, m1, k], stacked[m2, m1, k], stacked[m2, m2, k]
                        q0 = v0 + a0 * d0 + a1 * e10 + a2 * e20
                        q1 = v1 + a0 * e10 + a1 * f11 + a2 * f21
                        q2 = v2 + a0 * e20 + a1 * f21 + a2 * f22
                        l10, l20 = e10 / d0, e20 / d0
                        d1 = f11 - e10 * l10
                        e21 = f21 - e20 * l10
                        l21 = e21 / d1
                        d2 = f22 - e20 * l20 - e21 * l21
                        w1 = q1 - l10 * q0
                        w2 = q2 - l20 * q0 - l21 * w1
                        y2 = w2 / d2
                        y1 = w1 / d1 - l21 * y2
                        fill[offset[n], k] = l10 * y1 + l20 * y2 - q0 / d0
                        fill[offset[n] + 1, k] = -y1
                        fill[offset[n] + 2, k] = -y2
                        log_det = block_log_det[p, k] if p >= 0 else d0 * d1 * d2
                        if p < 0 and PRODUCT_LOW < log_det < PRODUCT_HIGH:
                            log_det = math.log(log_det)
                        elif p < 0:
                            log_det = math.log(d0) + math.log(d1) + math.log(d2)
                        more = a0 * (v0 + q0) + a1 * (v1 + q1) + a2 * (v2 + q2) + log_det
                        more -= q0 * q0 / d0 + w1 * w1 / d1 + w2 * y2
                        L[n, k] += 3.0 * half_log_2pi - 0.5 * more
                    continue
                for i in range(members):
                    extra[i] = 0.0
                for a in range(s):  # q_m = Q'_m + Σ_b a_kb Λ_k[m_b, m]
                    m = index[n, a]
                    for i in range(members):
                        v = Q[n - first, i * d + m]
                        q = v
                        for b in range(s):
                            q += shift_t[index[n, b], k0 + i] * stacked[index[n, b], m, k0 + i]
                        w[a, i] = q
                        extra[i] += shift_t[m, k0 + i] * (v + q)
                for a in range(s):  # Λ_mm = L D Lᵀ: F[a, b] = L_ab (b < a), F[a, a] = D_a
                    ma = index[n, a]
                    for b in range(a + 1):
                        mb = index[n, b]
                        for i in range(members):
                            v = stacked[ma, mb, k0 + i]
                            for c in range(b):
                                v -= F[a, c, i] * F[b, c, i] * F[c, c, i]
                            F[a, b, i] = v if a == b else v / F[b, b, i]
                for a in range(s):  # w = L⁻¹ q_m, and q_mᵀ Λ_mm⁻¹ q_m = Σ w² / D
                    for i in range(members):
                        v = w[a, i]
                        for c in range(a):
                            v -= F[a, c, i] * w[c, i]
                        w[a, i] = v
                        extra[i] -= v * v / F[a, a, i]
                for a in range(s - 1, -1, -1):  # ẑ_m = −Λ_mm⁻¹ q_m = −L⁻ᵀ D⁻¹ w
                    for i in range(members):
                        v = w[a, i] / F[a, a, i]
                        for c in range(a + 1, s):
                            v -= F[c, a, i] * w[c, i]
                        w[a, i] = v
                        fill[offset[n] + a, k0 + i] = -v
                for i in range(members):
                    product = 1.0
                    for a in range(s):
                        product *= F[a, a, i]
                    if p >= 0:
                        extra[i] += block_log_det[p, k0 + i]
                    elif PRODUCT_LOW < product < PRODUCT_HIGH:
                        extra[i] += math.log(product)
                    else:
                        for a in range(s):
                            extra[i] += math.log(F[a, a, i])
                    L[n, k0 + i] += s * half_log_2pi - 0.5 * extra[i]


@njit(**_JIT)
def missing_tile(
    X,
    count,
    index,
    pattern,
    block_log_det,
    centre,
    gemm,
    gemm_rows,
    log_norm,
    shift,
    shift_t,
    stacked,
    log_pivots,
    precisions,
    floor,
    weights,
    s0,
    s1,
    s2,
    mass,
    buf,
):  # pragma: no cover - compiled
    """E-step and centred expected statistics of one tile with missing values, full or tied covariances.

    Arguments as :func:`tile_margins`'s, then precisions (K, d, d) Λ_k, and floor, weights, s0, s1, s2 as
    :func:`dgmm.kernels._numba_tiles.full_tile`'s (s1, s2 written; tied: every component's S2_k). Per component
    ``V = √r [ẑ, 1]`` (ẑ: the row minus μ_k completed by its conditional mean) and ``Vᵀ V``, plus ``r Λ_mm⁻¹``
    on each row's missing block, but for rows of a cached pattern p, whose ``r`` goes to ``mass[p, k]`` (P, K)
    (:func:`~dgmm.kernels._numba_patterns.add_pattern_covariances`). buf: float64 scratch of at least
    ``T·(2d + 4K + 5) + gemm_rows·gemm.shape[2] + (d + 1)² + K·Σ count`` elements. Returns the tile's
    log-likelihood.
    """
    T, d = X.shape
    K = shift.shape[0]
    e = d + 1
    holes = 0
    for n in range(T):
        holes += count[n]
    A = block(buf, 0, T, e)
    at = T * e
    V = block(buf, at, T, e)
    at += T * e
    R = block(buf, at, T, K)
    L = block(buf, at + T * K, T, K)
    at += 2 * T * K
    G = block(buf, at, e, e)
    at += e * e
    Q = block(buf, at, min(gemm_rows, T), gemm.shape[2])
    at += min(gemm_rows, T) * gemm.shape[2]
    fill = block(buf, at, holes, K)
    at += K * holes
    offset = np.empty(T, dtype=np.int64)
    tile_margins(
        X,
        count,
        index,
        pattern,
        block_log_det,
        centre,
        gemm,
        gemm_rows,
        log_norm,
        shift,
        shift_t,
        stacked,
        log_pivots,
        A,
        Q,
        L,
        fill,
        offset,
    )
    loglik = responsibilities(L, floor, weights, s0, R, buf[at:])
    holed = np.flatnonzero(count)
    for k in range(K):
        for n in range(T):
            root = math.sqrt(R[n, k])
            for j in range(d):
                V[n, j] = root * (A[n, j] - shift[k, j])
            V[n, d] = root
        for n in holed:
            root = math.sqrt(R[n, k])
            for a in range(count[n]):
                V[n, index[n, a]] = root * fill[offset[n] + a, k]
        gram_lower(V, G)
        unpack_gram(G, k, s1, s2)
    # r Λ_mm⁻¹ of each row's missing block: summed per coordinate (one missing value) or per cached pattern
    single = np.zeros((d, K))
    alone = np.empty(holed.shape[0], dtype=np.int64)  # rows of no cached pattern
    n_alone = 0
    for n in holed:
        s, p = count[n], pattern[n]
        if s == 1:
            m = index[n, 0]
            for k in range(K):
                single[m, k] += R[n, k]
        elif p >= 0:
            for k in range(K):
                mass[p, k] += R[n, k]
        else:
            alone[n_alone] = n
            n_alone += 1
    # those rows' own blocks, inverted in batches (one call each: a call passing arrays costs atomic refcounts)
    batch = max(1, OWN_BLOCK_ELEMENTS // (d * d * K))
    own, no_logs = np.empty(batch * d * d * K), np.empty((0, K))
    starts = np.empty(batch, dtype=np.int64)
    for first in range(0, n_alone, batch):
        rows = alone[first : min(n_alone, first + batch)]
        at = 0
        for r in range(rows.shape[0]):
            starts[r] = at
            at += count[rows[r]] ** 2 * K
        pattern_inverses(precisions, count[rows], index[rows], starts[: rows.shape[0]], own, no_logs)
        for r in range(rows.shape[0]):
            n = rows[r]
            s = count[n]
            for a in range(s):
                for b in range(s):
                    ma, mb, at = index[n, a], index[n, b], starts[r] + (a * s + b) * K
                    for k in range(K):
                        s2[k, ma, mb] += R[n, k] * own[at + k]
    for k in range(K):
        for m in range(d):
            s2[k, m, m] += single[m, k] / precisions[k, m, m]
    return loglik
