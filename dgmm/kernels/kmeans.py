"""k-means kernels for the scalable initialisations: pure NumPy, never Dask.

Each pass over the data maps one kernel over the row chunks and adds the
per-chunk results with ``+`` (associative; concatenations keep chunk order), so
the result is a function of the rows, not of the chunking:

- :func:`sample_candidates`: one k-means|| round (Bahmani et al. 2012). Each
  row is drawn independently with probability ``min(1, ℓ·w·d²(x)/φ)``, where
  ``d²(x)`` is the squared distance to the nearest current candidate and
  ``φ = Σ w·d²`` the cost of the *same* candidates. φ is only known once all
  chunks are summed, so the decision is made lazily: the row's uniform
  ``u = U(seed, round, global row index)`` is fixed, a chunk keeps the rows
  with ``u·φ_chunk < ℓ·w·d²`` (at most ℓ expected, as ``φ_chunk ≤ φ``), and
  every ``+`` re-applies the test with the larger partial cost. At the root
  the partial cost is φ itself, so exactly the rows with ``u·φ < ℓ·w·d²`` are
  left: the round is exact and costs one pass.
- :func:`count_nearest`: the weight of every candidate (rows closest to it).
- :func:`lloyd_chunk`: counts, sums centred on the old centres and per-cluster
  cost, plus the rows farthest from their centres (to re-seed empty clusters).

and, in memory on the client, :func:`recluster` (weighted k-means++ then
weighted Lloyd) of the ~ℓ·rounds candidates down to K centres. :func:`kmeans_plusplus`
also seeds the sample-based "k-means++" initialisation (:mod:`dgmm.kernels.init`).

``weights`` (shape (n,), sample weights) multiply every cost and count; a row
of weight 0 is ignored and never sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hashing import row_uniforms
from .row_weights import live_rows

BLOCK_ELEMENTS = 1 << 21  # rows × centres per distance block (16 MiB of float64)


def squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, shape (n, m), by BLAS about the first centre.

    ``‖x − c‖² = ‖x'‖² − 2 x'·c' + ‖c'‖²`` with ``x' = x − c_0``, ``c' = c − c_0``:
    shifting to a point inside the data keeps the cancellation at the scale of
    the data's spread, not of its offset from the origin. Clipped at 0.
    """
    ref = centres[0]
    Xs, Cs = X - ref, centres - ref
    d2 = np.einsum("ij,ij->i", Xs, Xs)[:, None] - 2.0 * (Xs @ Cs.T) + np.einsum("ij,ij->i", Cs, Cs)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def nearest(X: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and squared distance to the nearest centre, in row blocks of bounded memory.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centres : ndarray of shape (m, d)

    Returns
    -------
    labels : ndarray of shape (n,), int64 (the first of tied centres)
    d2 : ndarray of shape (n,)
    """
    n = X.shape[0]
    labels, d2 = np.empty(n, dtype=np.int64), np.empty(n)
    step = max(1, BLOCK_ELEMENTS // max(1, centres.shape[0]))
    for start in range(0, n, step):
        block = squared_distances(X[start : start + step], centres)
        labels[start : start + step] = np.argmin(block, axis=1)
        d2[start : start + step] = block[np.arange(block.shape[0]), labels[start : start + step]]
    return labels, d2


def _row_weights(X: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)


def _scores(X: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """``w·d²(x)``, shape (n,): each row's weighted squared distance to its nearest candidate."""
    return _row_weights(X, weights) * nearest(X, candidates)[1]


@dataclass(frozen=True)
class CandidateSample:
    """Rows drawn by one k-means|| round, pending the final cost.

    Attributes
    ----------
    oversampling : float, ℓ
    cost : float, φ of the rows seen, Σ w·d² to the round's candidates
    rows : ndarray of shape (m, d), the kept rows in global row order
    index : ndarray of shape (m,), their global row indices
    score : ndarray of shape (m,), their w·d²
    uniform : ndarray of shape (m,), their fixed uniforms
    """

    oversampling: float
    cost: float
    rows: np.ndarray
    index: np.ndarray
    score: np.ndarray
    uniform: np.ndarray

    def kept(self) -> "CandidateSample":
        """Only the rows still drawn at cost φ: ``u·φ < ℓ·w·d²``."""
        keep = self.uniform * self.cost < self.oversampling * self.score
        return CandidateSample(
            self.oversampling, self.cost, self.rows[keep], self.index[keep], self.score[keep], self.uniform[keep]
        )

    def __add__(self, other: "CandidateSample") -> "CandidateSample":
        return CandidateSample(
            self.oversampling,
            self.cost + other.cost,
            np.concatenate([self.rows, other.rows]),
            np.concatenate([self.index, other.index]),
            np.concatenate([self.score, other.score]),
            np.concatenate([self.uniform, other.uniform]),
        ).kept()


def sampling_probabilities(
    X: np.ndarray, candidates: np.ndarray, cost: float, oversampling: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """``min(1, ℓ·w·d²(x)/φ)``, shape (n,): what :func:`sample_candidates` draws with."""
    score = _scores(X, candidates, weights)
    if cost <= 0.0:
        return np.zeros_like(score)
    return np.minimum(1.0, oversampling * score / cost)


def sample_candidates(
    X: np.ndarray,
    candidates: np.ndarray,
    *,
    seed: int,
    round_: int,
    oversampling: float,
    row_offset: int = 0,
    weights: np.ndarray | None = None,
) -> CandidateSample:
    """One k-means|| round on one chunk: its cost and the rows it may draw.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    candidates : ndarray of shape (m, d), the candidates chosen so far
    row_offset : global index of the chunk's first row
    weights : ndarray of shape (n,) or None
    """
    X, weights, positions = live_rows(np.asarray(X, dtype=np.float64), weights)
    score = _scores(X, candidates, weights)
    uniform = row_uniforms(seed, round_, row_offset, positions[-1] + 1 if positions.size else 0)[positions]
    index = positions.astype(np.int64) + row_offset
    return CandidateSample(float(oversampling), float(score.sum()), X, index, score, uniform).kept()


@dataclass(frozen=True)
class CandidateCounts:
    """Weight of every candidate (Σ w of the rows nearest to it) and the total cost.

    Attributes
    ----------
    weights : ndarray of shape (m,)
    cost : float, Σ w·d² to the nearest candidate
    """

    weights: np.ndarray
    cost: float

    def __add__(self, other: "CandidateCounts") -> "CandidateCounts":
        return CandidateCounts(self.weights + other.weights, self.cost + other.cost)


def count_nearest(X: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None = None) -> CandidateCounts:
    """Candidate weights of one chunk; X (n, d), candidates (m, d), weights (n,) or None."""
    X, weights, _ = live_rows(np.asarray(X, dtype=np.float64), weights)
    w = _row_weights(X, weights)
    labels, d2 = nearest(X, candidates)
    return CandidateCounts(np.bincount(labels, weights=w, minlength=candidates.shape[0]), float(w @ d2))


@dataclass(frozen=True)
class LloydStats:
    """One Lloyd pass: additive per-cluster sums plus the farthest rows.

    Attributes
    ----------
    counts : ndarray of shape (K,), Σ w per cluster
    sums : ndarray of shape (K, d), Σ w·(x − c_k), centred on the old centres
    cost : ndarray of shape (K,), Σ w·‖x − c_k‖²
    far_dist, far_index : ndarray of shape (f,), the f ≤ K rows (w > 0) farthest from
        their centre, by decreasing distance then increasing row index
    far_rows : ndarray of shape (f, d)
    """

    counts: np.ndarray
    sums: np.ndarray
    cost: np.ndarray
    far_dist: np.ndarray
    far_index: np.ndarray
    far_rows: np.ndarray

    def __add__(self, other: "LloydStats") -> "LloydStats":
        dist = np.concatenate([self.far_dist, other.far_dist])
        index = np.concatenate([self.far_index, other.far_index])
        top = np.lexsort((index, -dist))[: self.counts.shape[0]]
        return LloydStats(
            self.counts + other.counts,
            self.sums + other.sums,
            self.cost + other.cost,
            dist[top],
            index[top],
            np.concatenate([self.far_rows, other.far_rows])[top],
        )


def lloyd_chunk(
    X: np.ndarray, centres: np.ndarray, row_offset: int = 0, weights: np.ndarray | None = None
) -> LloydStats:
    """Lloyd statistics of one chunk about ``centres`` (K, d); X (n, d), weights (n,) or None."""
    X, weights, positions = live_rows(np.asarray(X, dtype=np.float64), weights)
    K, d = centres.shape
    w = _row_weights(X, weights)
    labels, d2 = nearest(X, centres)
    weighted_diff = (X - centres[labels]) * w[:, None]
    sums = np.stack([np.bincount(labels, weights=weighted_diff[:, j], minlength=K) for j in range(d)], axis=1)
    live = np.flatnonzero(w > 0)
    top = live[np.lexsort((positions[live], -d2[live]))[:K]]
    return LloydStats(
        np.bincount(labels, weights=w, minlength=K),
        sums.reshape(K, d),
        np.bincount(labels, weights=w * d2, minlength=K),
        d2[top],
        positions[top].astype(np.int64) + row_offset,
        X[top],
    )


def lloyd_update(stats: LloydStats, centres: np.ndarray) -> np.ndarray:
    """New centres (K, d): the weighted means; an empty cluster moves to the next farthest row.

    Rows at distance 0 are never used, so an empty cluster keeps its centre when every
    row lies on a centre (or fewer rows than empty clusters are left).
    """
    new = centres.copy()
    filled = stats.counts > 0
    new[filled] += stats.sums[filled] / stats.counts[filled, None]
    empty = np.flatnonzero(~filled)
    spare = stats.far_rows[stats.far_dist > 0]
    n_moved = min(len(empty), len(spare))
    new[empty[:n_moved]] = spare[:n_moved]
    return new


def centre_shift(new: np.ndarray, old: np.ndarray) -> float:
    """``Σ_k ‖new_k − old_k‖²`` for centres (K, d)."""
    return float(((new - old) ** 2).sum())


def pick_weighted_row(rows: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of ``rows`` (m, d) drawn ∝ ``weights`` (m,); the first row when every weight is 0."""
    total = weights.sum()
    return rows[rng.choice(len(weights), p=weights / total)] if total > 0 else rows[0]


def mean_variance(stats: LloydStats, centres: np.ndarray) -> float:
    """Mean per-feature (weighted) variance of the data, from one Lloyd pass about ``centres``.

    Total scatter = within-cluster scatter about the cluster means + between-cluster
    scatter; the within part is ``cost_k − n_k‖δ_k‖²`` with ``δ_k = sums_k / n_k``.
    """
    filled = stats.counts > 0
    n_k = stats.counts[filled]
    shift = stats.sums[filled] / n_k[:, None]
    total = n_k.sum()
    if total <= 0:
        return 0.0
    means = centres[filled] + shift
    grand = n_k @ means / total
    within = stats.cost[filled].sum() - n_k @ np.einsum("ij,ij->i", shift, shift)
    between = n_k @ np.einsum("ij,ij->i", means - grand, means - grand)
    return float(max(within + between, 0.0) / (total * centres.shape[1]))


def kmeans_plusplus(
    points: np.ndarray, n_clusters: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii) of points, weighted or not, with 2 + log K
    local trials per centre.

    Parameters
    ----------
    points : ndarray of shape (m, d)
    weights : ndarray of shape (m,), > 0, or None (every weight 1; the first centre is then
        drawn by ``rng.integers``, so seeded starts stay as they were)

    Returns
    -------
    centres : ndarray of shape (n_clusters, d)
    """
    m = points.shape[0]
    n_trials = 2 + int(np.log(n_clusters))
    centres = np.empty((n_clusters, points.shape[1]))
    centres[0] = points[rng.integers(m) if weights is None else rng.choice(m, p=weights / weights.sum())]
    closest = nearest(points, centres[:1])[1]
    for c in range(1, n_clusters):
        potential = closest if weights is None else weights * closest
        if potential.sum() <= 0.0:
            centres[c] = points[rng.integers(m)]
            continue
        trials = np.minimum(np.searchsorted(np.cumsum(potential), rng.random(n_trials) * potential.sum()), m - 1)
        trial_dist = np.minimum(closest[:, None], squared_distances(points, points[trials]))
        best = int(np.argmin(trial_dist.sum(axis=0) if weights is None else weights @ trial_dist))
        centres[c] = points[trials[best]]
        closest = trial_dist[:, best]
    return centres


def weighted_lloyd(
    points: np.ndarray, weights: np.ndarray, centres: np.ndarray, max_iter: int = 100, tol: float = 1e-4
) -> np.ndarray:
    """Lloyd's algorithm on weighted points in memory (empty clusters as :func:`lloyd_update`).

    Stops when ``Σ_k ‖Δc_k‖² ≤ tol ×`` the mean per-feature variance of the points.
    """
    average = weights @ points / weights.sum()
    threshold = tol * float((weights @ (points - average) ** 2).sum()) / (weights.sum() * points.shape[1])
    for _ in range(max_iter):
        new = lloyd_update(lloyd_chunk(points, centres, weights=weights), centres)
        shift = centre_shift(new, centres)
        centres = new
        if shift <= threshold:
            break
    return centres


def recluster(
    candidates: np.ndarray, weights: np.ndarray, n_clusters: int, rng: np.random.Generator, n_init: int = 10
) -> np.ndarray:
    """K centres (K, d) from weighted candidates (m, d): the best of ``n_init`` weighted
    k-means++ + weighted Lloyd runs, by weighted cost (cheap: m ≈ ℓ·rounds).

    Candidates of weight 0 are dropped first.
    """
    live = weights > 0
    points, weights = candidates[live], weights[live]
    best, best_cost = None, np.inf
    for _ in range(n_init):
        centres = weighted_lloyd(points, weights, kmeans_plusplus(points, n_clusters, rng, weights))
        cost = float(weights @ nearest(points, centres)[1])
        if cost < best_cost:
            best, best_cost = centres, cost
    return best
