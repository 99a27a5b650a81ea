"""Compiled (numba) row tiles of the marginalised E-step for full and tied covariances; no Dask.

The formulas are :mod:`dgmm.kernels.missing`'s. Per component, the tile's deviations ``z`` (missing entries 0) go
through one GEMM, ``q = z Λ``; each row with ``s`` missing values then factorises its s x s block ``Λ_mm``
(Cholesky, s³/6 flops beside the d² of the product: no pattern bookkeeping, whatever the missingness) to get
``ẑ_m = −Λ_mm⁻¹ q_m``, the Mahalanobis distance of its observed margin and ``log det Λ_mm``. Statistics: one GEMM
per component on the completed deviations weighted by the responsibilities, plus ``r Λ_mm⁻¹`` on each row's
missing block. Sums leave a tile in float64; the same flags as :mod:`dgmm.kernels._numba_tiles`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"}, boundscheck=False)


@njit(**_JIT)
def missing_index(X):  # pragma: no cover - compiled
    """(T,) how many values each row misses and (T, d) which, ascending in the first ``count`` columns."""
    T, d = X.shape
    count = np.zeros(T, dtype=np.int64)
    index = np.zeros((T, d), dtype=np.int64)
    for i in range(T):
        c = 0
        for j in range(d):
            if math.isnan(X[i, j]):
                index[i, c] = j
                c += 1
        count[i] = c
    return count, index


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


@njit(**_JIT)
def tile_log_prob(
    X, count, index, means, precisions, log_det_sigma, log_weights, completed, log_prob
):  # pragma: no cover
    """Per component k: ``completed[k]`` (T, d) the rows minus μ_k completed by ẑ_m, and ``log_prob[:, k]`` the
    log π_k + log-density of each row's observed margin.

    X (T, d) with NaN; means (K, d); precisions (K, d, d); log_det_sigma (K,) log det Σ_k; log_weights (K,).
    """
    T, d = X.shape
    K = means.shape[0]
    L = np.empty((d, d))
    y = np.empty(d)
    log_2pi = math.log(2.0 * math.pi)
    filled = np.empty((T, d))
    observed = np.empty((T, d))
    for i in range(T):
        for j in range(d):
            v = X[i, j]
            missing = math.isnan(v)
            filled[i, j] = 0.0 if missing else v
            observed[i, j] = 0.0 if missing else 1.0
    for k in range(K):
        z = completed[k]
        for i in range(T):
            for j in range(d):
                z[i, j] = (filled[i, j] - means[k, j]) * observed[i, j]
        q = np.dot(z, precisions[k])
        for i in range(T):
            maha = 0.0
            for j in range(d):
                maha += z[i, j] * q[i, j]
            s = count[i]
            log_det = log_det_sigma[k]
            if s == 1:  # Λ_mm is one number
                m = index[i, 0]
                pivot = precisions[k, m, m]
                log_det += math.log(pivot)
                maha -= q[i, m] * q[i, m] / pivot
                z[i, m] = -q[i, m] / pivot
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
def tile_stats(count, index, precisions, completed, resp, s1, s2):  # pragma: no cover - compiled
    """Adds ``Σ r ẑ`` to s1 (K, d) and ``Σ r (ẑ ẑᵀ + Λ_mm⁻¹ on the missing block)`` to s2 (K, d, d)."""
    K, T, d = completed.shape
    L = np.empty((d, d))
    e = np.empty(d)
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
            _block_cholesky(precisions[k], index, i, s, L)
            for b in range(s):  # column b of Λ_mm⁻¹, times r, onto the missing block
                for a in range(s):
                    e[a] = 1.0 if a == b else 0.0
                _solve(L, s, e)
                for a in range(s):
                    s2[k, index[i, a], index[i, b]] += r * e[a]
