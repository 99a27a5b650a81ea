"""Model selection: fit a grid of (n_components, covariance_type) sharing every pass over the data.

Orchestration only::

    1. rows are split by a hash of their global index (dgmm.kernels.hashing.heldout_rows):
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
from typing import Any, Literal, Sequence

import numpy as np

from ..algorithms.em import score_steps
from ..algorithms.smem import best_fit_steps
from ..algorithms.steps import run_together
from ..data.inputs import as_input, warn_id_like
from ..errors import ParameterError
from ..execution.executor import CountingExecutor, executor_for
from ..kernels.criteria import information_criteria
from ..kernels.gaussian import COVARIANCE_TYPES, CovarianceType
from ..kernels.weights import select_rows
from .fitting import place_data
from .mixture import GaussianMixture
from .parameters import BY_NAME, Parameter, check_n_samples, check_random_state, validate_params

Criterion = Literal["bic", "aic", "heldout"]
CRITERIA: tuple[str, ...] = ("bic", "aic", "heldout")
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

    def to_frame(self):
        """The table as a pandas DataFrame, one row per (n_components, covariance_type), columns :data:`COLUMNS`."""
        import pandas as pd

        return pd.DataFrame(self.table, columns=list(COLUMNS))

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


SELECTION_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("criterion", str, "bic", "what picks the best cell: bic, aic (lower is better) or heldout "
              "(higher held-out log-likelihood)", choices=CRITERIA),
    Parameter("heldout_fraction", float, 0.1, "share of rows held out by a hash of the row index (0: none; "
              "below 1)", minimum=0),
)


def select(
    X: Any,
    n_components: Sequence[int],
    covariance_types: Sequence[CovarianceType] = ("full",),
    *,
    criterion: Criterion = "bic",
    heldout_fraction: float = 0.1,
    columns: Sequence[str] | None = None,
    sample_weight: Any = None,
    client: Any = None,
    **params: Any,
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
    columns, sample_weight, client : as for ``GaussianMixture.fit`` and the constructor
    **params : any other parameter of :class:`~dgmm.GaussianMixture` (its table,
        :data:`dgmm.estimator.parameters.MIXTURE_PARAMETERS`), applied to every cell: ``n_init``,
        ``init_params``, ``tol``, ``max_iter``, ``split_merge``, ``random_state``, ``dtype``, ``cache``, ...

    Returns
    -------
    :class:`Selection`
    """
    grid = [(int(k), str(c)) for c in covariance_types for k in n_components]
    if not grid:
        raise ParameterError("select needs at least one n_components and one covariance_type")
    unknown = sorted(set(params) - set(BY_NAME) | set(params) & {"n_components", "covariance_type"})
    if unknown:
        allowed = ", ".join(n for n in BY_NAME if n not in ("n_components", "covariance_type"))
        raise ParameterError(f"select got {', '.join(map(repr, unknown))}; the grid sets n_components and "
                             f"covariance_type, and the other parameters are: {allowed}")
    cells = [GaussianMixture(k, covariance_type=c, client=client, **params) for k, c in grid]
    for cell in cells:
        validate_params(cell)
    for parameter, value in zip(SELECTION_PARAMETERS, (criterion, heldout_fraction)):
        parameter.validate(value)
    if heldout_fraction >= 1.0 or (criterion == "heldout" and heldout_fraction == 0.0):
        raise ParameterError(f"heldout_fraction={heldout_fraction!r} is invalid; expected 0 <= f < 1 "
                             "(and > 0 for criterion='heldout')")
    model = cells[0]  # the settings every cell shares
    data = as_input(X, columns, model.chunk_rows, sample_weight, model.nan_policy, model.storage_options)
    warn_id_like(data, stacklevel=2)
    check_n_samples(data.n_rows, max(k for k, _ in grid))
    d = data.n_features
    rng = check_random_state(model.random_state)
    split_seed = int(rng.randint(np.iinfo(np.int32).max))
    seeds = [[int(rng.randint(np.iinfo(np.int32).max)) for _ in range(model.n_init)] for _ in grid]
    with executor_for(client, data.kind, data.chunk_rows, model.scheduler_address, model.stall_timeout) as executor:
        counted = CountingExecutor(executor)
        array, _ = place_data(model, executor, data)  # as a fit places it: cached per ``cache``
        # 1. the hash split: training rows and held-out rows, as weighted data
        train, held = (_split(array, d, split_seed, heldout_fraction, part) for part in (False, True))
        # 2-3. every cell and restart: initialisation, then EM, all sharing each pass
        programs = [
            best_fit_steps(train.shape, cell_seeds, dict(n_components=cell.n_components, n_features=d,
                                                         covariance_type=cell.covariance_type,
                                                         method=cell.init_params, reg_covar=cell.reg_covar),
                           split_merge=cell.split_merge, tol=cell.tol, max_iter=cell.max_iter,
                           reg_covar=cell.reg_covar, dtype=cell.dtype)
            for cell, cell_seeds in zip(cells, seeds)
        ]
        best_runs = [run for run, _ in run_together(counted, train, model.split_every, programs)]
        # 4. held-out log-likelihood of every cell, one pass
        heldout = [math.nan] * len(grid)
        if heldout_fraction > 0:
            heldout = run_together(counted, held, model.split_every, [score_steps(run.params) for run in best_runs])
    train_weight = best_runs[0].weight
    table = []
    for (k, c), run in zip(grid, best_runs):
        bic, aic = information_criteria(run.lower_bound * train_weight, run.params.n_free_parameters(), train_weight)
        table.append({"n_components": k, "covariance_type": c, "log_likelihood": run.lower_bound,
                      "bic": bic, "aic": aic, "heldout_log_likelihood": heldout[len(table)], "n_iter": run.n_iter,
                      "converged": run.converged})
    chosen = min(range(len(grid)), key=lambda i: _score(table[i], criterion))
    best = cells[chosen].set_params(client=None)
    best._set_fitted(best_runs[chosen], data)
    return Selection(best, table, criterion, counted.passes)


def _split(array, n_features: int, seed: int, fraction: float, held: bool):
    """Training (``held=False``) or held-out rows of ``array`` as weighted data (others weight 0)."""
    if isinstance(array, np.ndarray):
        return select_rows(array, n_features, seed, fraction, held)
    return array.map_blocks(select_rows, n_features, seed, fraction, held, dtype=np.float64,
                            chunks=(array.chunks[0], (n_features + 1,)))


__all__ = ["COVARIANCE_TYPES", "CRITERIA", "Selection", "select"]
