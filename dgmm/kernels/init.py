"""Starting parameters: pure kernels (no Dask).

Every method picks K *centres*, then one pass over the data turns
responsibilities into the first (π, μ, Σ) through the ordinary M-step, so
initial covariances describe the data (scikit-learn's "random_from_data" and
"k-means++" start every covariance at ``reg_covar``):

- ``"kmeans"``: k-means|| seeding, then up to 10 Lloyd passes over all rows;
  hard assignment of every row to its nearest centre.
- ``"k-means||"``: scalable k-means++ (Bahmani et al. 2012) over all rows, out
  of core: ``rounds + 2`` passes in all (kernels in :mod:`dgmm.kernels.kmeans`,
  orchestration in :mod:`dgmm.algorithms.seeding`).
- ``"k-means++"``: greedy k-means++ seeding on a uniform sample of
  ``max(10_000, 100·K)`` rows (all rows when there are fewer), so on large data
  it is k-means++ *of a sample*; hard assignment of every row to its nearest centre.
- ``"random_from_data"``: K distinct random rows; hard assignment to the nearest.
- ``"random"``: responsibilities drawn uniformly and normalised per row, as
  scikit-learn, from a counter-based hash of (seed, global row index, k), so they
  do not depend on how the rows are chunked (:func:`dgmm.kernels.hashing.random_resp`).

With sample weights, the statistics pass multiplies every row's
responsibilities by its weight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from .gaussian import CovarianceType
from .hashing import random_resp
from .kmeans import kmeans_plusplus, nearest
from .row_weights import live_rows, no_rows_left
from .stats import Stats, accumulate, weight_totals

InitMethod = Literal["random", "random_from_data", "k-means++", "kmeans", "k-means||", "split"]
INIT_METHODS: tuple[str, ...] = ("random", "random_from_data", "k-means++", "kmeans", "k-means||", "split")


@dataclass(frozen=True)
class InitPlan:
    """What the initial statistics pass needs on every worker.

    Attributes
    ----------
    method : one of :data:`INIT_METHODS`
    centres : ndarray of shape (K, d); statistics are centred on them
    seed : int, for "random" responsibilities
    covariance_type : the model's covariance type
    """

    method: InitMethod
    centres: np.ndarray
    seed: int
    covariance_type: CovarianceType


def sample_size(n_rows: int, n_components: int, method: InitMethod) -> int:
    """How many rows the centre selection looks at."""
    if method == "random_from_data":
        return n_components
    return min(n_rows, max(10_000, 100 * n_components))


def choose_centres(
    sample: np.ndarray,
    n_components: int,
    method: InitMethod,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Centres (K, d) from a uniform sample of rows (m, d), in random order, with sample weights (m,) or None.

    "k-means++": (weighted) k-means++; "random_from_data": the first K rows, or with weights K rows
    drawn ∝ weight (without replacement while enough rows have weight > 0); "random": the
    (weighted) mean, K times. Rows of weight 0 are dropped first.
    """
    if weights is not None:
        live = weights > 0
        sample, weights = sample[live], weights[live]
        if weights.size == 0:
            raise no_rows_left(" in the initialisation sample")
    if method == "k-means++":
        return kmeans_plusplus(sample, n_components, rng, weights)
    if method == "random_from_data":
        if weights is None:
            return sample[:n_components].copy()
        replace = weights.size < n_components
        return sample[rng.choice(weights.size, size=n_components, replace=replace, p=weights / weights.sum())]
    if weights is None:
        return np.repeat(sample.mean(axis=0, keepdims=True), n_components, axis=0)
    return np.repeat((weights @ sample / weights.sum())[None, :], n_components, axis=0)


def init_chunk_stats(X: np.ndarray, plan: InitPlan, row_offset: int = 0, weights: np.ndarray | None = None) -> Stats:
    """Statistics of one chunk under the initial responsibilities of ``plan``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    row_offset : global index of the chunk's first row
    weights : ndarray of shape (n,) or None, sample weights multiplying the responsibilities
    """
    X = np.asarray(X, dtype=np.float64)
    n_rows, K = X.shape[0], plan.centres.shape[0]
    totals = weight_totals(n_rows, weights)
    X, weights, positions = live_rows(X, weights)
    if plan.method == "random":  # a hash of the global row index: drawn for every row, then kept
        resp = random_resp(n_rows, K, row_offset, plan.seed)
        resp = resp if positions.size == n_rows else resp[positions]
    else:
        labels = nearest(X, plan.centres)[0]
        resp = np.zeros((X.shape[0], K))
        resp[np.arange(X.shape[0]), labels] = 1.0
    stats = accumulate(X, resp, plan.centres, plan.covariance_type, weights=weights)
    return replace(stats, n_rows=n_rows, weight=totals[0], n_zero_weight=totals[1])
