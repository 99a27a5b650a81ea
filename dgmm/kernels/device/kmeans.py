"""The k-means|| and Lloyd chunk kernels of :mod:`dgmm.kernels.kmeans`, against the Python array API.

The same results (up to rounding) for an array of any array-API library on any device: distances
about the first centre as :func:`dgmm.kernels.kmeans.squared_distances` takes them, per-cluster sums by
one-hot matrix products (the array API has no ``bincount``), and only the drawn or farthest rows and
the (K, d)-sized sums come back to the host as NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import namespace, to_numpy
from ..hashing import row_uniforms
from ..kmeans import CandidateCounts, CandidateSample, LloydStats
from .tiles import row_tiles, rows_for_width


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


def _tiles(X: Any, m: int, tile_rows: int | None) -> list[tuple[int, int]]:
    """Row tiles of a chunk for distances to ``m`` centres: intermediates of 3d + 3m float64 values a row."""
    n, d = X.shape
    return row_tiles(n, tile_rows or rows_for_width(n, d, 3 * d + 3 * m))


def xp_sample_candidates(
    X: Any,
    candidates: np.ndarray,
    *,
    seed: int,
    round_: int,
    oversampling: float,
    row_offset: int = 0,
    weights: Any = None,
    tile_rows: int | None = None,
) -> CandidateSample:
    """:func:`dgmm.kernels.kmeans.sample_candidates` of an array-API chunk (the uniforms hashed on the host)."""
    xp = namespace(X)
    where = getattr(X, "device", None)
    w = _weights(xp, X, weights)
    parts = [w[a:b] * _nearest(xp, X[a:b, :], candidates)[1] for a, b in _tiles(X, candidates.shape[0], tile_rows)]
    score = parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
    cost = float(to_numpy(xp.sum(score)))
    uniform = xp.asarray(row_uniforms(seed, round_, row_offset, X.shape[0]), device=where)
    kept = xp.nonzero(uniform * cost < oversampling * score)[0]
    index = to_numpy(kept).astype(np.int64)
    return CandidateSample(
        float(oversampling),
        cost,
        to_numpy(xp.astype(xp.take(X, kept, axis=0), xp.float64)),
        index + row_offset,
        to_numpy(xp.take(score, kept, axis=0)),
        to_numpy(xp.take(uniform, kept, axis=0)),
    )


def xp_count_nearest(
    X: Any, candidates: np.ndarray, weights: Any = None, tile_rows: int | None = None
) -> CandidateCounts:
    """:func:`dgmm.kernels.kmeans.count_nearest` of an array-API chunk."""
    xp = namespace(X)
    w = _weights(xp, X, weights)
    m = candidates.shape[0]
    counts, cost = np.zeros(m), 0.0
    for a, b in _tiles(X, m, tile_rows):
        labels, d2 = _nearest(xp, X[a:b, :], candidates)
        counts += to_numpy(xp.matrix_transpose(_one_hot(xp, labels, m)) @ w[a:b])
        cost += float(to_numpy(xp.sum(w[a:b] * d2)))
    return CandidateCounts(counts, cost)


def xp_lloyd_chunk(
    X: Any, centres: np.ndarray, row_offset: int = 0, weights: Any = None, tile_rows: int | None = None
) -> LloydStats:
    """:func:`dgmm.kernels.kmeans.lloyd_chunk` of an array-API chunk: per-cluster sums, and the K rows of
    weight > 0 farthest from their centres (ties to the lower row index), the farthest of each tile merged."""
    xp = namespace(X)
    where = getattr(X, "device", None)
    K, d = centres.shape
    c = xp.asarray(centres, dtype=xp.float64, device=where)
    w_all = _weights(xp, X, weights)
    counts, sums, cost = np.zeros(K), np.zeros((K, d)), np.zeros(K)
    far_d2, far_index, far_rows = [], [], []
    for a, b in _tiles(X, K, tile_rows):
        rows, w = xp.astype(X[a:b, :], xp.float64), w_all[a:b]
        labels, d2 = _nearest(xp, rows, centres)
        hot = xp.matrix_transpose(_one_hot(xp, labels, K))  # (K, n)
        counts += to_numpy(hot @ w)
        sums += to_numpy(hot @ (w[:, None] * rows) - (hot @ w)[:, None] * c)  # Σ w (x − c_k), about the old centres
        cost += to_numpy(hot @ (w * d2))
        live = xp.nonzero(w > 0)[0]
        order = xp.argsort(-xp.take(d2, live, axis=0), stable=True)
        top = xp.take(live, order[: min(K, order.shape[0])], axis=0)
        far_d2.append(to_numpy(xp.take(d2, top, axis=0)))
        far_index.append(to_numpy(top).astype(np.int64) + a)
        far_rows.append(to_numpy(xp.take(rows, top, axis=0)))
    d2s, index = np.concatenate(far_d2), np.concatenate(far_index)
    best = np.lexsort((index, -d2s))[:K]  # farthest first, ties to the lower row index
    return LloydStats(counts, sums, cost, d2s[best], index[best] + row_offset, np.concatenate(far_rows)[best])
