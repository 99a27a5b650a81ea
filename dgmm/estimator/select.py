"""Model selection: fit a grid of (n_components, covariance_type) sharing every pass over the data.

Orchestration only::

    1. rows are split by a hash of their global index (dgmm.kernels.weights.heldout_rows):
       ``heldout_fraction`` of them are held out, the rest train every model
    2. each grid cell × restart is initialised on the training rows, and
    3. runs EM there; all of them together (dgmm.algorithms.steps.run_together): each pass reads
       every chunk once for every initialisation or EM run still going
    4. one more pass scores every cell's best run on the held-out rows
    5. the table: log-likelihood (training rows), BIC and AIC (on the training rows,
       n = their total weight), held-out log-likelihood, iterations, converged

The best cell by ``criterion`` is returned as a fitted :class:`~dgmm.GaussianMixture`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..algorithms.em import score_steps
from ..errors import ParameterError
from ..execution.executor import CountingExecutor, executor_for
from ..kernels.gaussian import COVARIANCE_TYPES
from ..data.inputs import as_input
from .mixture import GaussianMixture
from ..algorithms.smem import best_fit_steps
from ..algorithms.steps import run_together
from .validation import check_n_samples, check_random_state, validate_params
from ..kernels.weights import select_rows

CRITERIA = ("bic", "aic", "heldout")
COLUMNS = ("n_components", "covariance_type", "log_likelihood", "bic", "aic", "heldout_log_likelihood",
           "n_iter", "converged")


@dataclass
class Selection:
    """Result of :func:`select`: the best fitted model and the table of every cell.

    Attributes
    ----------
    best : the fitted GaussianMixture of the best cell by ``criterion``
    table : one dict per (n_components, covariance_type), keys :data:`COLUMNS`
    criterion : "bic", "aic" or "heldout"
    passes : passes over the data the whole selection took
    """

    best: GaussianMixture
    table: list[dict[str, Any]] = field(default_factory=list)
    criterion: str = "bic"
    passes: int = 0

    def format(self) -> str:
        """The table as aligned text, the best row marked with ``*``."""
        best = (self.best.n_components, self.best.covariance_type)
        lines = ["  " + " ".join(f"{c:>14}" for c in COLUMNS)]
        for row in self.table:
            mark = "* " if (row["n_components"], row["covariance_type"]) == best else "  "
            cells = [f"{row[c]:>14.6g}" if isinstance(row[c], float) else f"{row[c]!s:>14}" for c in COLUMNS]
            lines.append(mark + " ".join(cells))
        return "\n".join(lines)


def _score(row: dict[str, Any], criterion: str) -> float:
    """Lower is better."""
    return -row["heldout_log_likelihood"] if criterion == "heldout" else row[criterion]


def select(
    X: Any,
    n_components: Sequence[int],
    covariance_types: Sequence[str] = ("full",),
    *,
    criterion: str = "bic",
    heldout_fraction: float = 0.1,
    n_init: int = 1,
    init_params: str = "kmeans",
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    split_merge: int = 0,
    random_state: Any = None,
    columns: Sequence[str] | None = None,
    sample_weight: Any = None,
    nan_policy: str = "raise",
    client: Any = None,
    scheduler_address: str | None = None,
    split_every: int = 8,
    chunk_rows: int | None = None,
) -> Selection:
    """Fit every (n_components, covariance_type) of the grid, sharing passes; pick by ``criterion``.

    Parameters
    ----------
    X : any input ``GaussianMixture.fit`` takes (NumPy, pandas, Dask, Parquet paths)
    n_components : the K to try, e.g. ``range(1, 11)``
    covariance_types : any of "full", "tied", "diag", "spherical"
    criterion : "bic", "aic" (lower is better) or "heldout" (higher held-out log-likelihood)
    heldout_fraction : share of rows held out by a hash of the row index (0 disables; then
        ``criterion="heldout"`` is refused)
    split_merge : split-and-merge candidates per round for every cell after its EM
        (:class:`~dgmm.GaussianMixture`'s ``split_merge``; 0: none)

    Returns
    -------
    :class:`Selection`
    """
    grid = [(int(k), str(c)) for c in covariance_types for k in n_components]
    if not grid:
        raise ParameterError("select needs at least one n_components and one covariance_type")
    for k, c in grid:
        validate_params(GaussianMixture(k, covariance_type=c, init_params=init_params, tol=tol, reg_covar=reg_covar,
                                        max_iter=max_iter, n_init=n_init, nan_policy=nan_policy,
                                        split_merge=split_merge))
    if criterion not in CRITERIA:
        raise ParameterError(f"criterion={criterion!r} is invalid; expected one of {', '.join(CRITERIA)}")
    if not 0.0 <= heldout_fraction < 1.0 or (criterion == "heldout" and heldout_fraction == 0.0):
        raise ParameterError(f"heldout_fraction={heldout_fraction!r} is invalid; expected 0 <= f < 1 "
                             "(and > 0 for criterion='heldout')")
    data = as_input(X, columns, chunk_rows, sample_weight, nan_policy)
    check_n_samples(data.n_rows, max(k for k, _ in grid))
    d = data.n_features
    rng = check_random_state(random_state)
    split_seed = int(rng.randint(np.iinfo(np.int32).max))
    seeds = [[int(rng.randint(np.iinfo(np.int32).max)) for _ in range(n_init)] for _ in grid]
    with executor_for(client, data.kind, data.chunk_rows, scheduler_address) as executor:
        counted = CountingExecutor(executor)
        array = data.values if data.kind == "numpy" and executor.client is None else data.array
        # 1. the hash split: training rows and held-out rows, as weighted data
        train, held = (_split(array, d, split_seed, heldout_fraction, part) for part in (False, True))
        # 2-3. every cell and restart: initialisation, then EM, all sharing each pass
        programs = [
            best_fit_steps(train.shape, cell_seeds, dict(n_components=k, n_features=d, covariance_type=c,
                                                         method=init_params, reg_covar=reg_covar),
                           split_merge=split_merge, tol=tol, max_iter=max_iter, reg_covar=reg_covar)
            for (k, c), cell_seeds in zip(grid, seeds)
        ]
        best_runs = [run for run, _ in run_together(counted, train, split_every, programs)]
        # 4. held-out log-likelihood of every cell, one pass
        heldout = [math.nan] * len(grid)
        if heldout_fraction > 0:
            heldout = run_together(counted, held, split_every, [score_steps(run.params) for run in best_runs])
    train_weight = best_runs[0].weight
    table = []
    for (k, c), run in zip(grid, best_runs):
        n_params = run.params.n_free_parameters()
        total = run.lower_bound * train_weight
        table.append({"n_components": k, "covariance_type": c, "log_likelihood": run.lower_bound,
                      "bic": -2 * total + n_params * math.log(train_weight), "aic": -2 * total + 2 * n_params,
                      "heldout_log_likelihood": heldout[len(table)], "n_iter": run.n_iter,
                      "converged": run.converged})
    chosen = min(range(len(grid)), key=lambda i: _score(table[i], criterion))
    k, c = grid[chosen]
    best = GaussianMixture(k, covariance_type=c, tol=tol, reg_covar=reg_covar, max_iter=max_iter, n_init=n_init,
                           init_params=init_params, nan_policy=nan_policy, split_every=split_every,
                           chunk_rows=chunk_rows, split_merge=split_merge)
    best._set_fitted(best_runs[chosen], data)
    return Selection(best, table, criterion, counted.passes)


def _split(array, n_features: int, seed: int, fraction: float, held: bool):
    """Training (``held=False``) or held-out rows of ``array`` as weighted data (others weight 0)."""
    if isinstance(array, np.ndarray):
        return select_rows(array, n_features, seed, fraction, held)
    return array.map_blocks(select_rows, n_features, seed, fraction, held, dtype=np.float64,
                            chunks=(array.chunks[0], (n_features + 1,)))


__all__ = ["COVARIANCE_TYPES", "CRITERIA", "Selection", "select"]
