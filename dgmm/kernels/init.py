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
  do not depend on how the rows are chunked.

With sample weights, the statistics pass multiplies every row's
responsibilities by its weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .gaussian import CovarianceType
from .stats import Stats, accumulate

InitMethod = Literal["random", "random_from_data", "k-means++", "kmeans", "k-means||"]
INIT_METHODS: tuple[str, ...] = ("random", "random_from_data", "k-means++", "kmeans", "k-means||")


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


def squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, shape (n, K), computed from differences (no cancellation)."""
    out = np.empty((X.shape[0], centres.shape[0]))
    for k, c in enumerate(centres):
        diff = X - c
        out[:, k] = np.einsum("ij,ij->i", diff, diff)
    return out


def kmeans_plusplus(X: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, with 2 + log K local trials).

    Parameters
    ----------
    X : ndarray of shape (m, d), the sample
    Returns
    -------
    centres : ndarray of shape (n_clusters, d)
    """
    m = X.shape[0]
    n_trials = 2 + int(np.log(n_clusters))
    centres = np.empty((n_clusters, X.shape[1]))
    centres[0] = X[rng.integers(m)]
    closest = squared_distances(X, centres[:1])[:, 0]
    for c in range(1, n_clusters):
        potential = closest.sum()
        if potential <= 0.0:
            centres[c] = X[rng.integers(m)]
            continue
        candidates = np.searchsorted(np.cumsum(closest), rng.random(n_trials) * potential)
        candidates = np.minimum(candidates, m - 1)
        cand_dist = np.minimum(closest[:, None], squared_distances(X, X[candidates]))
        best = int(np.argmin(cand_dist.sum(axis=0)))
        centres[c] = X[candidates[best]]
        closest = cand_dist[:, best]
    return centres


def choose_centres(
    sample: np.ndarray, n_components: int, method: InitMethod, rng: np.random.Generator
) -> np.ndarray:
    """Centres (K, d) from a uniform sample of rows (in random order for "random_from_data")."""
    if method == "k-means++":
        return kmeans_plusplus(sample, n_components, rng)
    if method == "random_from_data":
        return sample[:n_components].copy()
    return np.repeat(sample.mean(axis=0, keepdims=True), n_components, axis=0)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def random_resp(n_rows: int, n_components: int, row_offset: int, seed: int) -> np.ndarray:
    """Uniform random responsibilities normalised per row, a pure function of global row index.

    Returns
    -------
    resp : ndarray of shape (n_rows, n_components)
    """
    rows = np.arange(row_offset, row_offset + n_rows, dtype=np.uint64)[:, None]
    cols = np.arange(n_components, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        key = _splitmix64(np.full(1, seed, dtype=np.uint64))[0]
        bits = _splitmix64(rows * np.uint64(n_components) + cols + key)
    uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return uniform / uniform.sum(axis=1, keepdims=True)


def init_chunk_stats(
    X: np.ndarray, plan: InitPlan, row_offset: int = 0, weights: np.ndarray | None = None
) -> Stats:
    """Statistics of one chunk under the initial responsibilities of ``plan``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    row_offset : global index of the chunk's first row
    weights : ndarray of shape (n,) or None, sample weights multiplying the responsibilities
    """
    X = np.asarray(X, dtype=np.float64)
    K = plan.centres.shape[0]
    if plan.method == "random":
        resp = random_resp(X.shape[0], K, row_offset, plan.seed)
    else:
        labels = np.argmin(squared_distances(X, plan.centres), axis=1)
        resp = np.zeros((X.shape[0], K))
        resp[np.arange(X.shape[0]), labels] = 1.0
    if weights is None:
        return accumulate(X, resp, plan.centres, plan.covariance_type)
    resp *= np.asarray(weights, dtype=np.float64)[:, None]
    return accumulate(X, resp, plan.centres, plan.covariance_type, weight=float(np.sum(weights)))
