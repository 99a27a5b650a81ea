"""Compiled (numba) row loops of the fused EM kernel; pure numeric code, no Dask.

NumPy pays a call and a trip through memory for every elementwise step, and the
glue between the GEMMs of a tile (squares summed per component, log-sum-exp
over a handful of components, centred copies of the tile) is made of many small
steps. Each function here does one such stretch in a single pass over the rows.
The GEMMs stay with BLAS and ``exp``/``log`` with NumPy's vectorised versions
(numba's scalar ``math.exp`` is many times slower); see :mod:`dgmm.fused`.

Every function is specialised by numba for float64 and float32 tiles; sums that
leave a tile (``s0``, the log-likelihood) are accumulated in float64.
``fastmath`` is limited to reassociation and contraction (FMA), so infinities
and NaN keep their meaning, and a given machine always produces the same bits.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_FLAGS = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)
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


@njit(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)
def full_log_prob(Y, log_norm, floor, M, peak):  # pragma: no cover - compiled
    """``M[n, k] = log_norm_k − ½ Σ_j Y[n, k·d + j]² − peak_n`` for Y (T, K·d); M (T, K).

    peak : (T,) float64 output, the row maximum before shifting (0 where not finite).
    floor : entries below it become −inf (see :func:`_subtract_peak`).
    """
    T, K = M.shape
    d = Y.shape[1] // K
    for n in range(T):
        top = -np.inf
        for k in range(K):
            m = 0.0
            base = k * d
            for j in range(d):
                v = np.float64(Y[n, base + j])
                m += v * v
            v = log_norm[k] - 0.5 * m
            M[n, k] = v
            if v > top:
                top = v
        _subtract_peak(M, n, top, peak, floor)


@njit(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)
def _subtract_peak(M, n, top, peak, floor):  # pragma: no cover - compiled
    """Row n of M minus its maximum ``top`` (0 when not finite), which goes to ``peak[n]``.

    Shifted entries below ``floor`` become −inf, so their responsibility is exactly 0
    rather than a subnormal number: one subnormal operand slows a BLAS kernel by a
    large factor, and a share below ``exp(floor)`` of a row is far below rounding.
    """
    if not math.isfinite(top):
        top = 0.0
    peak[n] = top
    for k in range(M.shape[1]):
        v = M[n, k] - top
        M[n, k] = v if v >= floor else -np.inf


@njit(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)
def centred_blocks(Z, shift, resp, D, WD):  # pragma: no cover - compiled
    """Per component the centred tile and its weighted copy, for one batched GEMM.

    Z : (T, d + 1) centred rows with a trailing 1; shift : (K, d), ``a_k``; resp : (T, K)
    D, WD : (K, T, d + 1) outputs, ``[z_n − a_k, 1]`` and ``r_nk [z_n − a_k, 1]``, so that
    ``WD[k]ᵀ D[k]`` holds ``S2_k`` in its leading d×d block and ``S1_k`` in its last column.
    """
    T = Z.shape[0]
    K, d = shift.shape
    for k in range(K):
        for n in range(T):
            r = resp[n, k]
            for j in range(d):
                v = Z[n, j] - shift[k, j]
                D[k, n, j] = v
                WD[k, n, j] = r * v
            D[k, n, d] = 1.0
            WD[k, n, d] = r


@njit(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)
def tied_maha(Y, shift_u, out):  # pragma: no cover - compiled
    """``out[n, k] = ‖Y_n − b_k‖²`` for Y (T, d) = z U and b = a U (K, d); out (T, K)."""
    T, d = Y.shape
    K = shift_u.shape[0]
    for n in range(T):
        for k in range(K):
            m = 0.0
            for j in range(d):
                v = np.float64(Y[n, j]) - shift_u[k, j]
                m += v * v
            out[n, k] = m


@njit(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)
def shifted_log_prob(M, log_norm, floor, peak):  # pragma: no cover - compiled
    """In place: squared distances M (T, K) -> ``log_norm_k − ½ M_nk − peak_n``.

    peak : (T,) float64 output, the row maximum of ``log_norm_k − ½ M_nk`` (0 where
    that is not finite, so rows far from every component still normalise).
    floor : entries below it become −inf (see :func:`_subtract_peak`).
    """
    T, K = M.shape
    for n in range(T):
        top = -np.inf
        for k in range(K):
            v = log_norm[k] - 0.5 * np.float64(M[n, k])
            M[n, k] = v
            if v > top:
                top = v
        _subtract_peak(M, n, top, peak, floor)


@njit(cache=True, nogil=True, fastmath=_FLAGS, boundscheck=False)
def normalise_rows(E, s0, total, weights):  # pragma: no cover - compiled
    """In place: ``E = exp(shifted log-probabilities)`` (T, K) -> responsibilities × row weights.

    total : (T,) float64 output, the row sums before normalising; weights : (T,) float64;
    s0 (K,) float64 gets Σ_n w_n r_nk added.
    """
    T, K = E.shape
    for n in range(T):
        t = 0.0
        for k in range(K):
            t += np.float64(E[n, k])
        total[n] = t
        inv = weights[n] / t
        for k in range(K):
            r = E[n, k] * inv
            E[n, k] = r
            s0[k] += r
