"""Split-and-merge rounds after EM has converged: orchestration only (maths in :mod:`dgmm.kernels.moves`).

One round, as a program of :mod:`dgmm.algorithms.programs`::

    1. one pass: MoveStats of the converged model -> the C best (merge i+j, split k) moves
    2. ``TRIAL_ITER`` EM iterations at most, from each moved model AND from the model
       itself (the control), all sharing each pass
    3. the best trial is kept only if its log-likelihood beats the control's by more
       than ``tol``; EM then runs from it to convergence, and another round starts
    4. otherwise the model is returned as it was

Ueda et al. refine a moved model by partial EM on the three components first; here
every trial runs full EM, which needs no other kernel and costs the same passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..kernels.arrays import on_host
from ..kernels.device.moves import xp_move_stats
from ..kernels.estep import ComputeDType
from ..kernels.missing import conditional_means, has_missing, nothing_observed
from ..kernels.moves import Move, MoveStats, apply_move, move_stats, principal_axes, rank_moves
from ..kernels.params import MixtureParams
from ..kernels.row_weights import split_weights
from .em import EMResult, best_run, em_steps, fit_steps
from .programs import Pass, Steps, together

TRIAL_ITER = 10


@dataclass(frozen=True)
class MovePlan:
    """The converged parameters and their principal axes (K, d), for one ranking pass."""

    params: MixtureParams
    axes: np.ndarray


@dataclass(frozen=True)
class AcceptedMove:
    """A kept move: components i and j merged, k split; mean log-likelihood before and after."""

    move: Move
    before: float
    after: float


def move_kernel(block: np.ndarray, plan: MovePlan, row_offset: int) -> MoveStats:
    X, weights = split_weights(block, plan.params.n_features)
    if not on_host(X):  # an array-API array on its device
        return xp_move_stats(X, plan.params, plan.axes, weights)
    if has_missing(X):  # ranked on the rows completed by their conditional means; the trials' EM marginalises
        keep = ~nothing_observed(X)
        X, weights = conditional_means(X[keep], plan.params), None if weights is None else weights[keep]
    return move_stats(X, plan.params, plan.axes, weights)


def split_merge_steps(
    result: EMResult,
    *,
    n_candidates: int,
    tol: float,
    max_iter: int,
    reg_covar: float,
    dtype: ComputeDType = "float64",
    trial_iter: int = TRIAL_ITER,
) -> Steps[tuple[EMResult, list[AcceptedMove]]]:
    """Split-and-merge rounds from a converged EM ``result`` until no move helps (at most K rounds).

    Returns the final run (its ``n_iter`` and ``lower_bounds`` include the kept trials and
    the EM after them) and the moves kept. Needs K >= 3 (a move touches three components).
    """
    moves: list[AcceptedMove] = []
    if n_candidates < 1 or max_iter < 1 or result.params.n_components < 3:
        return result, moves
    em = dict(tol=tol, reg_covar=reg_covar, dtype=dtype, warn_reseed=False)
    for _ in range(result.params.n_components):
        stats = yield Pass(move_kernel, MovePlan(result.params, principal_axes(result.params)[1]))
        candidates = rank_moves(stats, n_candidates)
        if not candidates:
            break
        starts = [result.params] + [apply_move(result.params, move) for move in candidates]
        control, *trials = yield from together([em_steps(start, max_iter=trial_iter, **em) for start in starts])
        best = best_run(trials)
        if not best.lower_bound > control.lower_bound + tol:
            break
        rest = yield from em_steps(best.params, max_iter=max_iter, lower_bound=best.lower_bound, **em)
        kept = candidates[next(i for i, trial in enumerate(trials) if trial is best)]
        moves.append(AcceptedMove(kept, control.lower_bound, rest.lower_bound))
        result = EMResult(
            rest.params,
            rest.converged,
            result.n_iter + best.n_iter + rest.n_iter,
            rest.lower_bound,
            result.lower_bounds + best.lower_bounds + rest.lower_bounds,
            rest.weight,
            rest.n_zero_weight,
        )
    return result, moves


def best_fit_steps(
    shape: tuple[int, int], seeds: Sequence[int], init: dict, *, split_merge: int, **em
) -> Steps[tuple[EMResult, list[AcceptedMove]]]:
    """Restarts from every seed together (:func:`~dgmm.algorithms.em.fit_steps` with the keywords ``init``
    and ``em``), the best by lower bound, then ``split_merge`` candidates per round on it."""
    runs = yield from together([fit_steps(shape, {**init, "seed": seed}, **em) for seed in seeds])
    result, moves = yield from split_merge_steps(best_run(runs), n_candidates=split_merge, **em)
    return replace(result, restart_bounds=tuple(run.lower_bound for run in runs)), moves
