"""Compiled (numba) missingness patterns of a chunk: which values each row misses, the patterns numbered, and
each pattern's block of the precisions inverted along the components; no Dask. The flags of
:mod:`dgmm.kernels._numba_tiles`. Used by :mod:`dgmm.kernels.missing_patterns` and the tiles of
:mod:`dgmm.kernels._numba_missing`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# log det Λ_mm = Σ_a log D_a is taken as one log of the product Π_a D_a (a log costs 10-30 ns, a product
# nothing) unless the product leaves this range; then term by term
PRODUCT_LOW, PRODUCT_HIGH = 1e-300, 1e300
_JIT = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"}, boundscheck=False)


@njit(**_JIT)
def any_nan(X):  # pragma: no cover - compiled
    """Whether X (n, d) holds a NaN, stopping at the first one."""
    n, d = X.shape
    for i in range(n):
        for j in range(d):
            if math.isnan(X[i, j]):
                return True
    return False


@njit(**_JIT)
def find_missing(X, count, index, code):  # pragma: no cover - compiled
    """Writes count (T,) how many values each row of X (T, d) misses, index (T, d) which, ascending in the first
    ``count`` columns (the rest undefined), and code (T,) the pattern's bits (j set where feature j is missing;
    meaningful for d <= 62)."""
    T, d = X.shape
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


@njit(**_JIT)
def first_seen(keys, bits):  # pragma: no cover - compiled
    """Distinct values of ``keys`` (m,), each below 2**bits, numbered by first appearance: (P,) the position of
    each one's first appearance and (m,) each key's number. One pass over a 2**bits table (no sort)."""
    table = np.full(1 << bits, -1, dtype=np.int64)
    firsts = np.empty(keys.shape[0], dtype=np.int64)
    ids = np.empty(keys.shape[0], dtype=np.int64)
    P = 0
    for r in range(keys.shape[0]):
        t = table[keys[r]]
        if t < 0:
            t = P
            table[keys[r]] = P
            firsts[P] = r
            P += 1
        ids[r] = t
    return firsts[:P].copy(), ids


@njit(**_JIT)
def pattern_inverses(precisions, count, index, start, inverse, log_det):  # pragma: no cover - compiled
    """For each pattern p (``count[p]`` = s missing coordinates ``index[p, :s]``) and component k: Λ_mm⁻¹ entry
    (a, b) in ``inverse[start[p] + (a s + b) K + k]`` (components innermost, so a row's work runs along them) and
    ``log_det[p, k]`` = log det Λ_mm (none where log_det has no rows). Cholesky L of Λ_mm, then L⁻ᵀ L⁻¹, every
    loop along the components."""
    P = count.shape[0]
    K, d = precisions.shape[0], precisions.shape[1]
    L = np.empty((d, d, K))
    M = np.empty((d, d, K))
    v = np.empty(K)
    logs = log_det.shape[0] > 0
    for p in range(P):
        s = count[p]
        if logs:
            for k in range(K):
                log_det[p, k] = 1.0  # the product of the pivots, till its log below
        for a in range(s):
            for b in range(a + 1):
                for k in range(K):
                    v[k] = precisions[k, index[p, a], index[p, b]]
                for c in range(b):
                    for k in range(K):
                        v[k] -= L[a, c, k] * L[b, c, k]
                if a == b:
                    for k in range(K):
                        L[a, a, k] = math.sqrt(v[k])
                    if logs:
                        for k in range(K):
                            log_det[p, k] *= v[k]
                else:
                    for k in range(K):
                        L[a, b, k] = v[k] / L[b, b, k]
        if logs:
            for k in range(K):
                product = log_det[p, k]
                if PRODUCT_LOW < product < PRODUCT_HIGH:
                    log_det[p, k] = math.log(product)
                else:
                    log_det[p, k] = 0.0
                    for a in range(s):
                        log_det[p, k] += 2.0 * math.log(L[a, a, k])
        for b in range(s):  # M = L⁻¹, lower
            for k in range(K):
                M[b, b, k] = 1.0 / L[b, b, k]
            for a in range(b + 1, s):
                for k in range(K):
                    v[k] = 0.0
                for c in range(b, a):
                    for k in range(K):
                        v[k] -= L[a, c, k] * M[c, b, k]
                for k in range(K):
                    M[a, b, k] = v[k] / L[a, a, k]
        for a in range(s):  # (L Lᵀ)⁻¹ entry (a, b) = Σ_c M[c, a] M[c, b], c ≥ a ≥ b
            for b in range(a + 1):
                for k in range(K):
                    v[k] = 0.0
                for c in range(a, s):
                    for k in range(K):
                        v[k] += M[c, a, k] * M[c, b, k]
                ab, ba = start[p] + (a * s + b) * K, start[p] + (b * s + a) * K
                for k in range(K):
                    inverse[ab + k] = v[k]
                    inverse[ba + k] = v[k]


@njit(**_JIT)
def add_pattern_covariances(count, index, start, inverse, mass, s2):  # pragma: no cover - compiled
    """s2[k] (K, d, d) += ``mass[p, k] Λ_mm⁻¹`` on each pattern p's missing block (:func:`pattern_inverses`)."""
    P, K = mass.shape
    for p in range(P):
        s = count[p]
        for k in range(K):
            r = mass[p, k]
            if r == 0.0:
                continue
            for a in range(s):
                for b in range(s):
                    s2[k, index[p, a], index[p, b]] += r * inverse[start[p] + (a * s + b) * K + k]
