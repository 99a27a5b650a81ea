"""The k-means|| and Lloyd chunk kernels of :mod:`dgmm.kernels.kmeans`, against the Python array API.

The same results (up to rounding) for an array of any array-API library on any device: distances
about the first centre as :func:`dgmm.kernels.kmeans.squared_distances` takes them, per-cluster sums by
one-hot matrix products (the array API has no ``bincount``), and only the drawn or farthest rows and
the (K, d)-sized sums come back to the host as NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .hashing import row_uniforms
from .kmeans import CandidateCounts, CandidateSample, LloydStats
from .xp_estep import namespace, to_numpy


def _nearest(xp, X: Any, centres: np.ndarray) -> tuple[Any, Any]:
    """Labels (n,) and squared distances (n,) to the nearest of ``centres`` (m, d), on X's device."""
    where = getattr(X, "device", None)
    c = xp.asarray(centres, dtype=xp.float64, device=where)
    Xs, Cs = xp.astype(X, xp.float64) - c[0, :], c - c[0, :]
    d2 = xp.sum(Xs * Xs, axis=1)[:, None] - 2.0 * (Xs @ xp.matrix_transpose(Cs)) + xp.sum(Cs * Cs, axis=1)[None, :]
    d2 = xp.maximum(d2, xp.zeros_like(d2))
    labels = xp.argmin(d2, axis=1)
    return labels, xp.min(d2, axis=1)


def _weights(xp, X: Any, weights: Any) -> Any:
    if weights is None:
        return xp.ones((X.shape[0],), dtype=xp.float64, device=getattr(X, "device", None))
    return xp.astype(weights, xp.float64)


def _one_hot(xp, labels: Any, m: int) -> Any:
    return xp.astype(labels[:, None] == xp.arange(m, device=getattr(labels, "device", None))[None, :], xp.float64)


def xp_sample_candidates(X: Any, candidates: np.ndarray, *, seed: int, round_: int, oversampling: float,
                         row_offset: int = 0, weights: Any = None) -> CandidateSample:
    """:func:`dgmm.kernels.kmeans.sample_candidates` of an array-API chunk (the uniforms hashed on the host)."""
    xp = namespace(X)
    where = getattr(X, "device", None)
    w = _weights(xp, X, weights)
    score = w * _nearest(xp, X, candidates)[1]
    cost = float(to_numpy(xp.sum(score)))
    uniform = xp.asarray(row_uniforms(seed, round_, row_offset, X.shape[0]), device=where)
    kept = xp.nonzero(uniform * cost < oversampling * score)[0]
    index = to_numpy(kept).astype(np.int64)
    return CandidateSample(float(oversampling), cost, to_numpy(xp.astype(xp.take(X, kept, axis=0), xp.float64)),
                           index + row_offset, to_numpy(xp.take(score, kept, axis=0)),
                           to_numpy(xp.take(uniform, kept, axis=0)))


def xp_count_nearest(X: Any, candidates: np.ndarray, weights: Any = None) -> CandidateCounts:
    """:func:`dgmm.kernels.kmeans.count_nearest` of an array-API chunk."""
    xp = namespace(X)
    w = _weights(xp, X, weights)
    labels, d2 = _nearest(xp, X, candidates)
    counts = xp.matrix_transpose(_one_hot(xp, labels, candidates.shape[0])) @ w
    return CandidateCounts(to_numpy(counts), float(to_numpy(xp.sum(w * d2))))


def xp_lloyd_chunk(X: Any, centres: np.ndarray, row_offset: int = 0, weights: Any = None) -> LloydStats:
    """:func:`dgmm.kernels.kmeans.lloyd_chunk` of an array-API chunk: per-cluster sums, and the K rows of
    weight > 0 farthest from their centres (ties to the lower row index)."""
    xp = namespace(X)
    where = getattr(X, "device", None)
    K = centres.shape[0]
    X = xp.astype(X, xp.float64)
    w = _weights(xp, X, weights)
    labels, d2 = _nearest(xp, X, centres)
    hot = xp.matrix_transpose(_one_hot(xp, labels, K))  # (K, n)
    c = xp.asarray(centres, dtype=xp.float64, device=where)
    sums = hot @ (w[:, None] * X) - (hot @ w)[:, None] * c  # Σ w (x − c_k), centred on the old centres
    live = xp.nonzero(w > 0)[0]
    order = xp.argsort(-xp.take(d2, live, axis=0), stable=True)[:K]
    top = xp.take(live, order, axis=0)
    return LloydStats(to_numpy(hot @ w), to_numpy(sums), to_numpy(hot @ (w * d2)),
                      to_numpy(xp.take(d2, top, axis=0)), to_numpy(top).astype(np.int64) + row_offset,
                      to_numpy(xp.take(X, top, axis=0)))
