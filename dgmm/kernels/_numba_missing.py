"""Compiled (numba) row tiles of the marginalised E-step for full and tied covariances; no Dask.

The formulas are :mod:`dgmm.kernels.missing`'s. Per component, the tile's deviations ``z`` (missing entries 0) go
through one GEMM, ``q = z Λ``; each row with ``s`` missing values then needs ``Λ_mm⁻¹`` of its s x s block to get
``ẑ_m = −Λ_mm⁻¹ q_m``, the Mahalanobis distance of its observed margin and ``log det Λ_mm``: inverted once per
missingness pattern of the chunk and component (:func:`pattern_inverses`), or, where a chunk has too many
patterns to keep their blocks, factorised row by row (Cholesky, s³/6 flops beside the d² of the product).
Statistics: one GEMM per component on the completed deviations weighted by the responsibilities, plus
``r Λ_mm⁻¹`` on each row's missing block (summed per pattern first). Sums leave a tile in float64; the same
flags as :mod:`dgmm.kernels._numba_tiles`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"}, boundscheck=False)


@njit(**_JIT)
def missing_index(X):  # pragma: no cover - compiled
    """(T,) how many values each row misses, (T, d) which, ascending in the first ``count`` columns, and (T,) a
    code of the pattern (bit j set where feature j is missing; meaningful for d <= 62)."""
    T, d = X.shape
    count = np.zeros(T, dtype=np.int64)
    index = np.zeros((T, d), dtype=np.int64)
    code = np.zeros(T, dtype=np.int64)
    for i in range(T):
        c = 0
        bits = 0
        for j in range(d):
            if math.isnan(X[i, j]):
                index[i, c] = j
                c += 1
                if j < 62:
                    bits |= 1 << j
        count[i] = c
        code[i] = bits
    return count, index, code


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


@njit(inline="always", **_JIT)
def _block_cholesky(precision, index, i, s, L):  # pragma: no cover - compiled
    """L (lower, in place of the first s x s entries) of Λ_mm for row i's missing coordinates; log det Λ_mm."""
    log_det = 0.0
    for a in range(s):
        for b in range(a + 1):
            v = precision[index[i, a], index[i, b]]
            for c in range(b):
                v -= L[a, c] * L[b, c]
            if a == b:
                v = math.sqrt(v)
                log_det += 2.0 * math.log(v)
                L[a, a] = v
            else:
                L[a, b] = v / L[b, b]
    return log_det


@njit(inline="always", **_JIT)
def _invert_lower(L, s, M):  # pragma: no cover - compiled
    """M (first s x s, lower) = L⁻¹ of the lower-triangular L; (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹, entry (a, b) = Σ_c M[c,a] M[c,b]."""
    for b in range(s):
        M[b, b] = 1.0 / L[b, b]
        for a in range(b + 1, s):
            v = 0.0
            for c in range(b, a):
                v -= L[a, c] * M[c, b]
            M[a, b] = v / L[a, a]


@njit(inline="always", **_JIT)
def _solve(L, s, y):  # pragma: no cover - compiled
    """y <- (L Lᵀ)⁻¹ y for the first s entries."""
    for a in range(s):
        v = y[a]
        for c in range(a):
            v -= L[a, c] * y[c]
        y[a] = v / L[a, a]
    for a in range(s - 1, -1, -1):
        v = y[a]
        for c in range(a + 1, s):
            v -= L[c, a] * y[c]
        y[a] = v / L[a, a]


@njit(inline="always", **_JIT)
def _block_inverse(precision, index, i, s, L, M, out):  # pragma: no cover - compiled
    """out (first s x s) = Λ_mm⁻¹ for row (or pattern) i's missing coordinates, as L⁻ᵀ L⁻¹ from the Cholesky
    factor L (entry (a, b) = Σ_c M[c, a] M[c, b], M = L⁻¹); returns log det Λ_mm."""
    log_det = _block_cholesky(precision, index, i, s, L)
    _invert_lower(L, s, M)
    for a in range(s):
        for b in range(a + 1):
            v = 0.0
            for c in range(a, s):
                v += M[c, a] * M[c, b]
            out[a, b] = v
            out[b, a] = v
    return log_det


@njit(**_JIT)
def pattern_inverses(precisions, count, index, inverse, log_det):  # pragma: no cover - compiled
    """For each pattern p (``count[p]`` missing coordinates ``index[p, :count[p]]``) and component k:
    ``inverse[p, k]`` (top-left s x s) = Λ_mm⁻¹ and ``log_det[p, k]`` = log det Λ_mm."""
    P = count.shape[0]
    K, d = precisions.shape[0], precisions.shape[1]
    L = np.empty((d, d))
    M = np.empty((d, d))
    for p in range(P):
        for k in range(K):
            log_det[p, k] = _block_inverse(precisions[k], index, p, count[p], L, M, inverse[p, k])


@njit(**_JIT)
def tile_log_prob(
    X, count, index, pattern, inverse, block_log_det, means, precisions, log_det_sigma, log_weights, completed, log_prob
):  # pragma: no cover - compiled
    """Per component k: ``completed[k]`` (T, d) the rows minus μ_k completed by ẑ_m, and ``log_prob[:, k]`` the
    log π_k + log-density of each row's observed margin.

    X (T, d) with NaN; count, index, pattern: each row's missing values and pattern (-1: factorise the row);
    inverse (P, K, s, s), block_log_det (P, K) of the patterns; means (K, d); precisions (K, d, d);
    log_det_sigma (K,) log det Σ_k; log_weights (K,).
    """
    T, d = X.shape
    K = means.shape[0]
    L = np.empty((d, d))
    y = np.empty(d)
    log_2pi = math.log(2.0 * math.pi)
    for k in range(K):
        z = completed[k]
        for i in range(T):
            for j in range(d):
                z[i, j] = X[i, j] - means[k, j]
            for a in range(count[i]):
                z[i, index[i, a]] = 0.0
        q = np.dot(z, precisions[k])
        for i in range(T):
            maha = 0.0
            for j in range(d):
                maha += z[i, j] * q[i, j]
            s = count[i]
            log_det = log_det_sigma[k]
            p = pattern[i]
            if s == 1:  # Λ_mm is one number
                m = index[i, 0]
                pivot = precisions[k, m, m]
                log_det += math.log(pivot)
                maha -= q[i, m] * q[i, m] / pivot
                z[i, m] = -q[i, m] / pivot
            elif s > 1 and p >= 0:
                log_det += block_log_det[p, k]
                for a in range(s):
                    v = 0.0
                    for b in range(s):
                        v += inverse[p, k, a, b] * q[i, index[i, b]]
                    y[a] = v
                for a in range(s):
                    maha -= q[i, index[i, a]] * y[a]
                for a in range(s):
                    z[i, index[i, a]] = -y[a]
            elif s > 1:
                log_det += _block_cholesky(precisions[k], index, i, s, L)
                for a in range(s):
                    y[a] = q[i, index[i, a]]
                _solve(L, s, y)
                for a in range(s):  # ẑ_m = −y; the margin's distance is zᵀq − q_mᵀ Λ_mm⁻¹ q_m
                    maha -= q[i, index[i, a]] * y[a]
                    z[i, index[i, a]] = -y[a]
            log_prob[i, k] = log_weights[k] - 0.5 * ((d - s) * log_2pi + log_det + maha)


@njit(**_JIT)
def tile_stats(count, index, pattern, precisions, completed, resp, s1, s2, mass):  # pragma: no cover - compiled
    """Adds ``Σ r ẑ`` to s1 (K, d) and ``Σ r (ẑ ẑᵀ + Λ_mm⁻¹ on the missing block)`` to s2 (K, d, d), but for rows
    of a cached pattern p, whose ``r`` goes to ``mass[p, k]`` (:func:`add_pattern_covariances` adds them)."""
    K, T, d = completed.shape
    L = np.empty((d, d))
    M = np.empty((d, d))
    block = np.empty((d, d))
    weighted = np.empty((T, d))
    for k in range(K):
        z = completed[k]
        for i in range(T):
            r = resp[i, k]
            for j in range(d):
                weighted[i, j] = r * z[i, j]
                s1[k, j] += weighted[i, j]
        s2[k] += np.dot(weighted.T, z)
        for i in range(T):
            s = count[i]
            r = resp[i, k]
            if s == 0 or r == 0.0:
                continue
            if s == 1:
                m = index[i, 0]
                s2[k, m, m] += r / precisions[k, m, m]
                continue
            if pattern[i] >= 0:
                mass[pattern[i], k] += r
                continue
            _block_inverse(precisions[k], index, i, s, L, M, block)
            for a in range(s):
                for b in range(s):
                    s2[k, index[i, a], index[i, b]] += r * block[a, b]


@njit(**_JIT)
def add_pattern_covariances(count, index, inverse, mass, s2):  # pragma: no cover - compiled
    """s2[k] (K, d, d) += ``mass[p, k] Λ_mm⁻¹`` on each pattern p's missing block."""
    P, K = mass.shape
    for p in range(P):
        s = count[p]
        for k in range(K):
            r = mass[p, k]
            if r == 0.0:
                continue
            for a in range(s):
                for b in range(s):
                    s2[k, index[p, a], index[p, b]] += r * inverse[p, k, a, b]
