"""Where the starting centres come from: orchestration of the initialisation passes, no maths.

The maths is in :mod:`dgmm.kernels.kmeans` and :mod:`dgmm.kernels.init`. Every function here is a
program of :mod:`dgmm.algorithms.programs` (it yields the passes and gathers it needs), so many
initialisations can share each pass; every pass applies a pure kernel whose
per-chunk results add with ``+``.

"k-means||" and "kmeans" look at every row::

    0. first centre: one row drawn with the seed (∝ weight among 64 drawn rows
       when weighted)                                           one small gather
    1. ``rounds`` k-means|| rounds, each one pass that computes the cost φ of the
       current candidates AND draws rows with probability min(1, ℓ·w·d²/φ) of
       that same φ (exact: see dgmm.kernels.kmeans); ℓ = 2K by default    ``rounds`` passes
    2. weight every candidate by the rows nearest to it           one pass
    3. recluster the ~1 + ℓ·rounds candidates to K centres on the client
       (weighted k-means++ then weighted Lloyd, in memory): the best of 10 such
       reductions for a lone restart, one for each of several (see
       :func:`reductions_per_restart`)
    4. "kmeans" only: Lloyd passes until Σ‖Δc‖² ≤ 1e-4 × the mean per-feature
       variance (scikit-learn's KMeans tolerance), at most 10    ≤ 10 passes

"k-means++", "random_from_data" and "random" choose from a uniform row sample
(:func:`dgmm.kernels.init.sample_size` rows; one gather). The caller then makes one
hard-assignment statistics pass (dgmm.algorithms.em.initial_params).

Weighted data (sample weights, rows dropped by ``nan_policy``) carries the weight as
one extra column of every chunk (:mod:`dgmm.kernels.row_weights`), so each kernel sees its
chunk's rows and weights together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.arrays import on_host
from ..kernels.device.kmeans import xp_count_nearest, xp_lloyd_chunk, xp_sample_candidates
from ..kernels.init import InitMethod, choose_centres, sample_size
from ..kernels.kmeans import (
    CandidateCounts,
    CandidateSample,
    LloydStats,
    centre_shift,
    count_nearest,
    lloyd_chunk,
    lloyd_update,
    mean_variance,
    pick_weighted_row,
    recluster,
    sample_candidates,
)
from ..kernels.row_weights import no_rows_left, split_weights
from .programs import Gather, Pass, Steps

DISTRIBUTED_INITS: tuple[str, ...] = ("kmeans", "k-means||")
ROUNDS = 5
LLOYD_MAX_ITER = 10
LLOYD_TOL = 1e-4
FIRST_CENTRE_DRAWS = 64
LONE_RESTART_REDUCTIONS = 10


def reductions_per_restart(n_restarts: int) -> int:
    """How many k-means++ + Lloyd reductions of the k-means|| candidates each of ``n_restarts`` restarts keeps
    the best of: 10 for a lone restart (its most robust start), one each for several.

    The best of 10 lands every restart in the one lowest-cost k-means optimum, which on unscaled data is
    seldom the mixture's best: restarts were copies (issue 31: all 10 seeds of n_init=5 in one optimum on
    8 of 10 public data sets). One distance-weighted draw each makes them explore. Measured in
    ``benchmarks/bench_optima.py``, also against keeping the best of 10 for the first restart only (worse).
    """
    return LONE_RESTART_REDUCTIONS if n_restarts == 1 else 1


@dataclass(frozen=True)
class RoundPlan:
    """What a k-means|| round needs on every worker: candidates (m, d) and the draw's key."""

    candidates: np.ndarray
    seed: int
    round: int
    oversampling: float


@dataclass(frozen=True)
class CentresPlan:
    """Centres (m, d) for a counting or Lloyd pass."""

    centres: np.ndarray


def sampling_kernel(block: np.ndarray, plan: RoundPlan, row_offset: int) -> CandidateSample:
    X, w = split_weights(block, plan.candidates.shape[1])
    if not on_host(X):  # an array-API array on its device
        return xp_sample_candidates(
            X,
            plan.candidates,
            seed=plan.seed,
            round_=plan.round,
            oversampling=plan.oversampling,
            row_offset=row_offset,
            weights=w,
        )
    return sample_candidates(
        X,
        plan.candidates,
        seed=plan.seed,
        round_=plan.round,
        oversampling=plan.oversampling,
        row_offset=row_offset,
        weights=w,
    )


def counting_kernel(block: np.ndarray, plan: CentresPlan, row_offset: int) -> CandidateCounts:
    X, w = split_weights(block, plan.centres.shape[1])
    if not on_host(X):
        return xp_count_nearest(X, plan.centres, w)
    return count_nearest(X, plan.centres, w)


def lloyd_kernel(block: np.ndarray, plan: CentresPlan, row_offset: int) -> LloydStats:
    X, w = split_weights(block, plan.centres.shape[1])
    if not on_host(X):
        return xp_lloyd_chunk(X, plan.centres, row_offset, w)
    return lloyd_chunk(X, plan.centres, row_offset, w)


def first_centre(shape: tuple[int, int], rng: np.random.Generator, n_features: int) -> Steps[np.ndarray]:
    """One row (d,) drawn uniformly; weighted: ∝ weight among up to 64 uniformly drawn rows.

    A zero-weight first centre is harmless: it only seeds the distances of round 1,
    and step 2 gives it weight 0 unless rows lie nearest to it.
    """
    n = shape[0]
    if shape[1] == n_features:
        return (yield Gather(rng.integers(n, size=1)))[0]
    drawn = yield Gather(rng.choice(n, size=min(n, FIRST_CENTRE_DRAWS), replace=False))
    rows, w = split_weights(drawn, n_features)
    return pick_weighted_row(rows, w, rng)


def kmeans_parallel(
    shape: tuple[int, int],
    n_components: int,
    seed: int,
    *,
    n_features: int,
    rounds: int = ROUNDS,
    oversampling: float | None = None,
    reductions: int = LONE_RESTART_REDUCTIONS,
) -> Steps[np.ndarray]:
    """k-means|| centres (K, d): one small gather, then ``rounds + 1`` passes over data of ``shape``.

    The data has ``n_features`` columns, plus one of row weights when weighted. Rounds stop
    early once the candidates cost nothing (every row lies on one). The candidates become K centres
    by the best of ``reductions`` weighted k-means++ + Lloyd runs.
    """
    rng = np.random.default_rng(seed)
    ell = float(oversampling if oversampling is not None else 2 * n_components)
    # 0. a first candidate
    candidates = (yield from first_centre(shape, rng, n_features))[None, :]
    # 1. rounds of exact oversampling, one pass each
    for r in range(1, rounds + 1):
        drawn = yield Pass(sampling_kernel, RoundPlan(candidates, seed, r, ell))
        candidates = np.concatenate([candidates, drawn.rows])
        if drawn.cost <= 0.0:
            break
    # 2. candidate weights, one pass
    counts = yield Pass(counting_kernel, CentresPlan(candidates))
    if not counts.weights.sum() > 0:
        raise no_rows_left()
    # 3. recluster in memory
    return recluster(candidates, counts.weights, n_components, rng, reductions)


def lloyd(
    centres: np.ndarray, *, max_iter: int = LLOYD_MAX_ITER, tol: float = LLOYD_TOL
) -> Steps[tuple[np.ndarray, int]]:
    """Distributed Lloyd iterations from ``centres`` (K, d), one pass each; returns (centres, passes).

    Stops when ``Σ_k ‖Δc_k‖² ≤ tol ×`` the mean per-feature variance of the data (from
    the first pass). An empty cluster moves to the row farthest from its centre.
    """
    threshold = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        stats = yield Pass(lloyd_kernel, CentresPlan(centres))
        if threshold is None:
            threshold = tol * mean_variance(stats, centres)
        new = lloyd_update(stats, centres)
        shift = centre_shift(new, centres)
        centres = new
        if shift <= threshold:
            break
    return centres, n_iter


def initial_centres(
    shape: tuple[int, int],
    *,
    n_components: int,
    n_features: int,
    method: InitMethod,
    seed: int,
    reductions: int = LONE_RESTART_REDUCTIONS,
) -> Steps[np.ndarray]:
    """K starting centres (K, d) by ``method``; see the module docstring for the passes.

    The data has ``shape``: ``n_features`` columns, plus one of row weights when weighted. ``reductions``:
    see :func:`kmeans_parallel` (k-means|| and kmeans only).
    """
    if method in DISTRIBUTED_INITS:
        centres = yield from kmeans_parallel(shape, n_components, seed, n_features=n_features, reductions=reductions)
        if method == "kmeans":
            centres = (yield from lloyd(centres))[0]
        return centres
    rng = np.random.default_rng(seed)
    # weighted data samples as many rows for every method: some may have weight 0
    size = sample_size(shape[0], n_components, method if shape[1] == n_features else "k-means++")
    rows, weights = split_weights((yield Gather(rng.choice(shape[0], size=size, replace=False))), n_features)
    return choose_centres(rows, n_components, method, rng, weights)
