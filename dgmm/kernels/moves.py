"""Split and merge moves on mixture parameters, and the statistics that rank them (pure NumPy).

Ueda et al.'s SMEM (2000) escapes a local optimum where two components share one
cluster while one component spans two clusters: it *merges* the pair (i, j) and
*splits* k, so the mixture keeps K components, then lets EM refine the result.
Candidates are ranked from one pass of :class:`MoveStats`:

- merge (i, j): the cosine of their responsibility vectors over all rows,
  ``Σ_n w_n γ_ni γ_nj / sqrt(Σ_n w_n γ_ni² · Σ_n w_n γ_nj²)`` (Ueda's J_merge, normalised
  so that large components do not always win);
- split k: how far the rows of k are from Gaussian along its principal axis v_k,
  ``3 − kurtosis`` of ``v_kᵀ(x − μ_k)`` under the weights ``w_n γ_nk``. A Gaussian gives
  0, two separated clusters up to 2 (kurtosis 1), a heavy tail a negative score. (Ueda's
  J_split is a local KL divergence that needs a density estimate; the kurtosis needs
  only two more moments in the same pass.)

A merge matches the first two moments of the pair; a split puts two halves of k at
``μ_k ± sqrt(λ_max) v_max`` with k's covariance (as the re-seeding of dead components).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussian import CovarianceType, dense_covariances
from .params import MixtureParams
from .posterior import responsibilities

Move = tuple[int, int, int]  # (i, j, k): merge i and j into i, split k into k and j


@dataclass(frozen=True)
class MoveStats:
    """Additive statistics of a set of rows under fixed parameters.

    Attributes
    ----------
    overlap : (K, K), ``Σ_n w_n γ_ni γ_nj``
    s0 : (K,), ``Σ_n w_n γ_nk``
    m2, m4 : (K,), ``Σ_n w_n γ_nk t_nk^p`` with ``t_nk = v_kᵀ(x_n − μ_k)``
    """

    overlap: np.ndarray
    s0: np.ndarray
    m2: np.ndarray
    m4: np.ndarray

    def __add__(self, other: "MoveStats") -> "MoveStats":
        return MoveStats(self.overlap + other.overlap, self.s0 + other.s0, self.m2 + other.m2, self.m4 + other.m4)


def largest_eigenpairs(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest eigenvalue, at least 0, (K,) and its unit eigenvector (K, d) of covariances (K, d, d)."""
    eigenvalues, eigenvectors = np.linalg.eigh(dense)
    return np.maximum(eigenvalues[:, -1], 0.0), eigenvectors[:, :, -1]


def principal_axes(params: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """Largest eigenvalue (K,) and its unit eigenvector (K, d) of every component's covariance."""
    return largest_eigenpairs(params.dense_covariances)


def move_stats(X: np.ndarray, params: MixtureParams, axes: np.ndarray, weights: np.ndarray | None = None) -> MoveStats:
    """:class:`MoveStats` of rows ``X`` (n, d) with weights (n,) (default 1) and principal ``axes`` (K, d)."""
    resp = responsibilities(X, params)
    weighted = resp if weights is None else resp * weights[:, None]
    t = X @ axes.T - np.einsum("kd,kd->k", params.means, axes)  # (n, K) projections on each own axis
    t2 = t * t
    return MoveStats(
        resp.T @ weighted, weighted.sum(axis=0), (weighted * t2).sum(axis=0), (weighted * t2 * t2).sum(axis=0)
    )


def merge_scores(stats: MoveStats) -> np.ndarray:
    """Cosine of the responsibility vectors, (K, K); the diagonal is -inf."""
    norms = np.sqrt(np.clip(np.diag(stats.overlap), 1e-300, None))
    scores = stats.overlap / np.outer(norms, norms)
    np.fill_diagonal(scores, -np.inf)
    return scores


def split_scores(stats: MoveStats) -> np.ndarray:
    """``3 − kurtosis`` along each principal axis, (K,); -inf for a component without rows."""
    s0 = np.clip(stats.s0, 1e-300, None)
    variance = stats.m2 / s0
    with np.errstate(divide="ignore", invalid="ignore"):
        kurtosis = (stats.m4 / s0) / variance**2
    return np.where((stats.s0 > 1e-12) & (variance > 0) & np.isfinite(kurtosis), 3.0 - kurtosis, -np.inf)


def rank_moves(stats: MoveStats, n_candidates: int) -> list[Move]:
    """The ``n_candidates`` best moves (i, j, k), i < j, k ∉ {i, j}: by the sum of the merge
    pair's rank and the split's rank, ties to the better merge. Empty for K < 3."""
    K = len(stats.s0)
    merge, split = merge_scores(stats), split_scores(stats)
    pairs = sorted(((i, j) for i in range(K) for j in range(i + 1, K)), key=lambda p: -merge[p])
    splits = list(np.argsort(-split, kind="stable"))
    moves = [
        (pair_rank + split_rank, pair_rank, (i, j, int(k)))
        for pair_rank, (i, j) in enumerate(pairs)
        for split_rank, k in enumerate(splits)
        if k != i and k != j and np.isfinite(split[k])
    ]
    return [move for _, _, move in sorted(moves)[:n_candidates]]


def merge_components(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, i: int, j: int, covariance_type: CovarianceType
) -> None:
    """Merge component j into i in place, matching the pair's weight, mean and covariance.

    j is left as it was (the caller reuses its slot). A tied covariance stays as it is.
    """
    w = weights[[i, j]]
    total = w.sum()
    mean = (w[:, None] * means[[i, j]]).sum(axis=0) / total
    spread = means[[i, j]] - mean  # (2, d)
    if covariance_type == "full":
        covariances[i] = (
            sum(w[a] * (covariances[c] + np.outer(spread[a], spread[a])) for a, c in enumerate((i, j))) / total
        )
    elif covariance_type == "diag":
        covariances[i] = (w[:, None] * (covariances[[i, j]] + spread**2)).sum(axis=0) / total
    elif covariance_type == "spherical":
        covariances[i] = (w * (covariances[[i, j]] + (spread**2).mean(axis=1))).sum() / total
    weights[i], means[i] = total, mean


def split_component(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, h: int, into: int, covariance_type: CovarianceType
) -> None:
    """Split component h in place into h and ``into``: half of h's weight each, means
    ``μ_h ∓ sqrt(λ_max) v_max`` along h's principal axis, h's covariance."""
    d = means.shape[1]
    dense = dense_covariances(
        covariances if covariance_type == "tied" else covariances[h : h + 1], covariance_type, 1, d
    )
    eigenvalue, axis = largest_eigenpairs(dense)
    offset = np.sqrt(eigenvalue[0]) * axis[0]
    means[into], means[h] = means[h] + offset, means[h] - offset
    weights[into] = weights[h] = weights[h] / 2
    if covariance_type != "tied":
        covariances[into] = covariances[h]


def split_heaviest_components(params: MixtureParams, n_split: int) -> MixtureParams:
    """K + ``n_split`` components: each of the ``n_split`` heaviest split in two along its principal
    axis (:func:`split_component`), the new halves appended in order of weight."""
    K, d, kind = params.n_components, params.n_features, params.covariance_type
    heaviest = np.argsort(-params.weights, kind="stable")[:n_split]
    weights = np.concatenate([params.weights, np.zeros(n_split)])
    means = np.concatenate([params.means, np.zeros((n_split, d))])
    covariances = params.covariances.copy()
    if kind != "tied":
        covariances = np.concatenate([covariances, np.zeros((n_split,) + covariances.shape[1:])])
    for i, h in enumerate(heaviest):
        split_component(weights, means, covariances, int(h), K + i, kind)
    return MixtureParams.from_covariances(weights, means, covariances, kind)


def apply_move(params: MixtureParams, move: Move) -> MixtureParams:
    """Merge i and j into i, then split k into k and j; K stays the same."""
    i, j, k = move
    weights, means, covariances = params.weights.copy(), params.means.copy(), params.covariances.copy()
    merge_components(weights, means, covariances, i, j, params.covariance_type)
    split_component(weights, means, covariances, k, j, params.covariance_type)
    return MixtureParams.from_covariances(weights / weights.sum(), means, covariances, params.covariance_type)
