"""Model selection: fit a grid of (n_components, covariance_type) sharing every pass over the data.

Orchestration only. With ``criterion="bic"`` or ``"aic"`` the table and the model describe the
same rows, all of them::

    1. each grid cell × restart is initialised and runs EM on all rows; all of them together
       (dgmm.algorithms.programs.run_together): each pass reads every chunk once for every
       initialisation or EM run still going
    2. one more pass scores every cell's model on all rows: log-likelihood, BIC and AIC
       (n = the total row weight), exactly what ``model.bic(X)`` gives
    3. only when ``heldout_fraction > 0`` is given: the grid again on the training rows (a hash of
       the global row index holds ``heldout_fraction`` of them out, dgmm.kernels.hashing.heldout_rows)
       and one pass scoring the held-out rows, for the held-out column

With ``criterion="heldout"`` (``heldout_fraction`` 0.1 unless given) the grid runs on the training
rows, one pass scores the held-out rows and one all rows (the table's log-likelihood, BIC, AIC),
and the best cell is then refit on all rows by EM from its training parameters: the returned model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from ..algorithms.em import EMResult, em_steps, score_steps
from ..algorithms.programs import run_steps, run_together
from ..algorithms.smem import best_fit_steps
from ..data.inputs import as_input, on_device, warn_id_like
from ..errors import ParameterError
from ..execution.executor import CountingExecutor
from ..kernels.arrays import ByBackend
from ..kernels.criteria import information_criteria
from ..kernels.device.classes import xp_select_rows
from ..kernels.gaussian import COVARIANCE_TYPES, CovarianceType
from ..kernels.row_weights import select_rows
from .fitting import init_settings
from .mixture import GaussianMixture
from .normalisation import cmvn_column, normalised, without_group_column
from .parameters import BY_NAME, Parameter, check_n_samples, check_random_state, passes_device, validate_params
from .runtime import runtime
from .tables import format_table

Criterion = Literal["bic", "aic", "heldout"]
CRITERIA: tuple[str, ...] = ("bic", "aic", "heldout")
COLUMNS = (
    "n_components",
    "covariance_type",
    "log_likelihood",
    "bic",
    "aic",
    "heldout_log_likelihood",
    "n_iter",
    "converged",
)


@dataclass
class Selection:
    """Result of :func:`select`: the best fitted model and the table of every cell.

    Attributes
    ----------
    best : the fitted GaussianMixture of the best cell by ``criterion``, fitted on all rows
    table : one dict per (n_components, covariance_type), keys :data:`COLUMNS`: ``log_likelihood``
        (mean per row), ``bic`` and ``aic`` of the cell's model on all rows; ``heldout_log_likelihood``
        of the cell fitted on the training rows, on the held-out rows (NaN without held-out rows)
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
        """The table as aligned text (one number format per column), the best row marked with ``*``; the
        held-out column only when the selection held rows out."""
        best = (self.best.n_components, self.best.covariance_type)
        held = any(math.isfinite(row["heldout_log_likelihood"]) for row in self.table)
        columns = [c for c in COLUMNS if held or c != "heldout_log_likelihood"]
        marks = ["*" if (row["n_components"], row["covariance_type"]) == best else "" for row in self.table]
        return format_table(columns, [[row[c] for c in columns] for row in self.table], marks)


def _score(row: dict[str, Any], criterion: str) -> float:
    """Lower is better."""
    return -row["heldout_log_likelihood"] if criterion == "heldout" else row[criterion]


SELECTION_PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "criterion",
        str,
        "bic",
        "what picks the best cell: bic, aic (lower is better) or heldout (higher held-out log-likelihood)",
        choices=CRITERIA,
    ),
    Parameter(
        "heldout_fraction",
        float,
        None,
        "share of rows held out by a hash of the row index for the "
        "held-out column (below 1; default 0.1 with criterion heldout, else 0: no held-out fits)",
        minimum=0,
    ),
)


@dataclass(frozen=True)
class SelectionPass:
    """One pass of a selection, for progress reports: which stage, its number, how long it took."""

    stage: str
    n_pass: int
    seconds: float


def select(
    X: Any,
    n_components: Sequence[int],
    covariance_types: Sequence[CovarianceType] = ("full",),
    *,
    criterion: Criterion = "bic",
    heldout_fraction: float | None = None,
    columns: Sequence[str] | None = None,
    sample_weight: Any = None,
    client: Any = None,
    on_pass: Callable[[SelectionPass], None] | None = None,
    **params: Any,
) -> Selection:
    """Fit every (n_components, covariance_type) of the grid, sharing passes; pick by ``criterion``.

    Parameters
    ----------
    X : any input ``GaussianMixture.fit`` takes (NumPy, pandas, Dask, Parquet paths)
    n_components : the K to try, e.g. ``range(1, 11)``
    covariance_types : any of "full", "tied", "diag", "spherical"
    criterion : "bic", "aic" (lower is better) or "heldout" (higher held-out log-likelihood)
    heldout_fraction : share of rows held out by a hash of the row index; default 0.1 for
        ``criterion="heldout"`` (where 0 is refused), else 0. With "bic" or "aic", a fraction
        above 0 fits the grid a second time, on the training rows, for the held-out column
    columns, sample_weight, client : as for ``GaussianMixture.fit`` and the constructor
    on_pass : called with a :class:`SelectionPass` after every pass (progress)
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
        raise ParameterError(
            f"select got {', '.join(map(repr, unknown))}; the grid sets n_components and "
            f"covariance_type, and the other parameters are: {allowed}"
        )
    if params.get("init_model") is not None:
        raise ParameterError("select fits a grid of K from scratch; init_model starts one fit (GaussianMixture.fit)")
    cells = [GaussianMixture(k, covariance_type=c, client=client, **params) for k, c in grid]
    for cell in cells:
        validate_params(cell)
    for parameter, value in zip(SELECTION_PARAMETERS, (criterion, heldout_fraction)):
        parameter.validate(value)
    fraction = (0.1 if criterion == "heldout" else 0.0) if heldout_fraction is None else float(heldout_fraction)
    if fraction >= 1.0 or (criterion == "heldout" and fraction == 0.0):
        raise ParameterError(
            f"heldout_fraction={heldout_fraction!r} is invalid; expected 0 <= f < 1 (and > 0 for criterion='heldout')"
        )
    model = cells[0]  # the settings every cell shares
    X, cmvn_groups = cmvn_column(X, model.cmvn)
    data = as_input(
        X,
        columns,
        model.chunk_rows,
        sample_weight,
        model.nan_policy,
        model.storage_options,
        exclude_columns=without_group_column(columns, model.cmvn),
    )
    data = normalised(model, on_device(data, passes_device(model)), cmvn_groups)
    warn_id_like(data, stacklevel=2)
    check_n_samples(data.n_rows, max(k for k, _ in grid))
    d = data.n_features
    rng = check_random_state(model.random_state)
    split_seed = int(rng.randint(np.iinfo(np.int32).max))
    seeds = [[int(rng.randint(np.iinfo(np.int32).max)) for _ in range(model.n_init)] for _ in grid]
    stage = [""]
    report = None if on_pass is None else (lambda n, seconds: on_pass(SelectionPass(stage[0], n, seconds)))
    with runtime(model, data) as where:  # as a fit runs and places it (model holds the shared settings)
        counted, array = CountingExecutor(where.executor, report), where.array

        def fit_grid(rows, name: str) -> list[EMResult]:
            """Every cell and restart on ``rows``: initialisation, then EM, all sharing each pass."""
            stage[0] = name
            programs = [
                best_fit_steps(
                    rows.shape,
                    cell_seeds,
                    init_settings(cell, d, (None, None, None)),
                    split_merge=cell.split_merge,
                    tol=cell.tol,
                    max_iter=cell.max_iter,
                    reg_covar=cell.reg_covar,
                    dtype=cell.dtype,
                )
                for cell, cell_seeds in zip(cells, seeds)
            ]
            return [run for run, _ in run_together(counted, rows, model.split_every, programs)]

        def score(rows, runs: list[EMResult], name: str) -> list[tuple[float, float]]:
            """(mean log-likelihood, total weight) of every run's model on ``rows``, one pass."""
            stage[0] = name
            return run_together(counted, rows, model.split_every, [score_steps(run.params) for run in runs])

        heldout = [math.nan] * len(grid)
        if fraction > 0:
            train, held = (_split(array, d, split_seed, fraction, part) for part in (False, True))
            trained = fit_grid(train, "grid on the training rows")
            heldout = [mean for mean, _ in score(held, trained, "held-out rows")]
        runs = trained if criterion == "heldout" else fit_grid(array, "grid")
        scores = score(array, runs, "all rows")
        table = []
        for (k, c), run, (mean, weight), held_out in zip(grid, runs, scores, heldout):
            bic, aic = information_criteria(mean * weight, run.params.n_free_parameters(), weight)
            table.append(
                {
                    "n_components": k,
                    "covariance_type": c,
                    "log_likelihood": mean,
                    "bic": bic,
                    "aic": aic,
                    "heldout_log_likelihood": held_out,
                    "n_iter": run.n_iter,
                    "converged": run.converged,
                }
            )
        chosen = min(range(len(grid)), key=lambda i: _score(table[i], criterion))
        best_run = runs[chosen]
        if criterion == "heldout":  # the chosen cell, refit on all rows from its training-rows parameters
            stage[0] = "refit on all rows"
            cell = cells[chosen]
            best_run = run_steps(
                counted,
                array,
                model.split_every,
                em_steps(
                    best_run.params, tol=cell.tol, max_iter=cell.max_iter, reg_covar=cell.reg_covar, dtype=cell.dtype
                ),
            )
    best = cells[chosen].set_params(client=None)
    best._set_fitted(best_run, data)
    return Selection(best, table, criterion, counted.passes)


SELECT_ROWS = ByBackend(select_rows, xp_select_rows)


def _split(array, n_features: int, seed: int, fraction: float, held: bool):
    """Training (``held=False``) or held-out rows of ``array`` as weighted data (others weight 0)."""
    if not hasattr(array, "map_blocks"):  # in memory, or on a device in this process
        return SELECT_ROWS(array, n_features, seed, fraction, held)
    return array.map_blocks(
        SELECT_ROWS, n_features, seed, fraction, held, dtype=np.float64, chunks=(array.chunks[0], (n_features + 1,))
    )


__all__ = ["COVARIANCE_TYPES", "CRITERIA", "Selection", "SelectionPass", "select"]
