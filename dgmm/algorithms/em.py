"""The distributed EM loop and the initial pass, on an executor (:class:`~dgmm.algorithms.programs.PassRunner`).

Orchestration only: the maths is in :mod:`dgmm.kernels.stats`, :mod:`dgmm.kernels.mstep` and
:mod:`dgmm.kernels.init`. One iteration is one pass over the data::

    1. broadcast θ_t to every worker (once per worker)
    2. map      fused_chunk_stats(X_chunk, plan(θ_t)) -> Stats centred on μ_t
    3. reduce   Stats + Stats in a tree of fan-in split_every
    4. M-step   θ_{t+1} = params_from_stats(Stats, μ_t, reg_covar), on the client
    5. stop when |mean loglik_t − mean loglik_{t−1}| < tol
"""

from __future__ import annotations

import builtins
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import DataError, FitError, ReseedWarning
from ..kernels.arrays import on_host
from ..kernels.completion import FilledPlan, ObservedMoments, fill_missing, filled_kernel, observed_moments
from ..kernels.device.estep import xp_chunk_stats, xp_init_stats
from ..kernels.estep import ComputeDType, EStepPlan, fused_chunk_stats, plan_estep
from ..kernels.gaussian import CovarianceType
from ..kernels.init import InitMethod, InitPlan, init_chunk_stats
from ..kernels.missing import has_missing, marginal_stats
from ..kernels.moves import split_heaviest_components
from ..kernels.mstep import m_step
from ..kernels.params import MixtureParams
from ..kernels.row_weights import no_rows_left, split_weights
from ..kernels.stats import Stats
from .programs import Gather, Pass, PassRunner, Steps, run_steps
from .seeding import LONE_RESTART_REDUCTIONS, counting_kernel, initial_centres, lloyd_kernel, sampling_kernel


@dataclass(frozen=True)
class IterationReport:
    """What one EM iteration did: sent to progress callbacks."""

    n_iter: int
    lower_bound: float
    change: float
    seconds: float
    n_rows: int
    params: MixtureParams
    lower_bounds: tuple[float, ...]
    converged: bool
    n_zero_weight: int = 0  # rows of weight 0 in the pass (dropped for NaN, or of sample weight 0)


IterationCallback = Callable[[IterationReport], None]


@dataclass
class EMResult:
    """Outcome of one EM run.

    ``lower_bound`` is the mean log-likelihood computed in the last iteration's
    E-step, i.e. of the parameters *before* its M-step, as scikit-learn reports it.
    """

    params: MixtureParams
    converged: bool
    n_iter: int
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    weight: float = math.nan  # total row weight the last pass saw
    n_zero_weight: int = 0  # rows of weight 0 it saw: dropped for NaN, or of sample weight 0
    restart_bounds: tuple[float, ...] = ()  # of a fit's best run: every restart's final lower bound, by seed


def em_kernel(
    block: np.ndarray, plan: EStepPlan | MixtureParams, row_offset: int, map: Callable = builtins.map
) -> Stats:
    """E-step statistics of one chunk; ``plan`` from :func:`~dgmm.kernels.estep.plan_estep` (or raw parameters).

    ``map`` runs the chunk's row tiles (the in-process executor passes a thread pool's);
    the result does not depend on it.
    """
    if isinstance(plan, MixtureParams):
        plan = plan_estep(plan)
    X, weights = split_weights(block, plan.n_features)
    if not on_host(X):  # an array-API array on its device (CuPy, torch, ...)
        return xp_chunk_stats(X, plan, weights)
    if has_missing(X):  # nan_policy="marginalize": only chunks with a missing value leave the fused kernel
        return marginal_stats(X, plan.params, weights, map)
    return fused_chunk_stats(X, plan, map, weights)


em_kernel.maps_tiles = True  # the in-process executor may hand it a thread pool's map
em_kernel.skips_zero_weights = True  # fused_chunk_stats computes on the rows of weight > 0 only


def init_kernel(block: np.ndarray, plan: InitPlan, row_offset: int) -> Stats:
    X, weights = split_weights(block, plan.centres.shape[1])
    if not on_host(X):  # an array-API array on its device
        return xp_init_stats(X, plan.method, plan.centres, plan.covariance_type, plan.seed, row_offset, weights)
    return init_chunk_stats(X, plan, row_offset, weights)


def initial_params(executor: PassRunner, X, *, split_every: int, **kwargs) -> MixtureParams:
    """Starting parameters on ``executor``: :func:`start_steps` driven alone."""
    return run_steps(executor, X, split_every, start_steps(X.shape, **kwargs))


def start_steps(shape: tuple[int, int], *, marginalize: bool = False, **init: Any) -> Steps[MixtureParams]:
    """:func:`init_steps` with the keywords ``init``; with ``marginalize`` (data with missing values) after one
    pass more, for each feature's mean over its observed values, on filled rows (:func:`filled_steps`: k-means
    on the observed values); EM then marginalises."""
    if not marginalize:
        return (yield from init_steps(shape, **init))
    moments = yield Pass(observed_moments_kernel, init.get("n_features") or shape[1])
    empty = np.flatnonzero(moments.weights <= 0)
    if empty.size:
        raise DataError(
            f"feature {int(empty[0])} has no observed value (every row is missing it): leave that column out"
        )
    return (yield from filled_steps(init_steps(shape, **init), moments.fill))


def init_steps(
    shape: tuple[int, int],
    *,
    n_components: int,
    covariance_type: CovarianceType,
    method: InitMethod,
    reg_covar: float,
    seed: int,
    n_features: int | None = None,
    weights_init: np.ndarray | None = None,
    means_init: np.ndarray | None = None,
    precisions_init: np.ndarray | None = None,
    split_em: Mapping[str, Any] | None = None,
    reductions: int = LONE_RESTART_REDUCTIONS,
) -> Steps[MixtureParams]:
    """Starting parameters: user-given ones where present, the init method for the rest.

    Costs one gather and one pass for the sample-based methods, one small gather and
    ``rounds + 2`` passes for "k-means||", and up to 10 Lloyd passes more for "kmeans"
    (see :mod:`dgmm.algorithms.seeding`); nothing when all three of ``weights_init``, ``means_init``
    and ``precisions_init`` are given, and one pass when ``means_init`` is: every row goes to its
    nearest given mean, whatever the method, so a row of weight w counts exactly as w repeated rows. The data has ``shape``: ``n_features`` columns
    (default: all), plus a last one of row weights when weighted (:mod:`dgmm.kernels.row_weights`).
    "split" grows the mixture from one component (:func:`split_steps`, EM settings ``split_em``).
    ``reductions``: how many reductions of the k-means|| candidates a restart keeps the best of
    (:func:`~dgmm.algorithms.seeding.reductions_per_restart`). Data with missing values: :func:`start_steps`.
    """
    if weights_init is not None and means_init is not None and precisions_init is not None:
        return MixtureParams.from_precisions(weights_init, means_init, precisions_init, covariance_type)
    if means_init is None and method == "split":
        fitted = yield from split_steps(
            n_components=n_components,
            n_features=n_features or shape[1],
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            **(split_em or {}),
        )
    else:
        if means_init is not None:  # 1. the given means are the centres: no draw, so weights act as repetitions
            centres, method = np.asarray(means_init, dtype=np.float64), "k-means++"  # (any hard-assigning method)
        else:  # 1. K centres: from a uniform sample of rows, or k-means|| (+ Lloyd) passes over all rows
            centres = yield from initial_centres(
                shape,
                n_components=n_components,
                n_features=n_features or shape[1],
                method=method,
                seed=seed,
                reductions=reductions,
            )
        # 2. one statistics pass under the initial (hard or random) responsibilities -> ordinary M-step
        stats = yield Pass(init_kernel, InitPlan(method, centres, seed, covariance_type))
        fitted, reseeded = m_step(stats, centres, covariance_type, reg_covar)
        warn_reseeded(reseeded, "the initialisation")
    weights = fitted.weights if weights_init is None else weights_init
    means = fitted.means if means_init is None else means_init
    if precisions_init is None:
        return MixtureParams(weights, means, fitted.covariances, fitted.precisions_cholesky, covariance_type)
    return MixtureParams.from_precisions(weights, means, precisions_init, covariance_type)


def to_centres(request: Pass) -> np.ndarray | None:
    """The centres a pass measures rows against (k-means|| candidates, Lloyd's centres, the initial hard
    assignment's), None for the other passes (random responsibilities)."""
    if request.kernel is sampling_kernel:
        return request.payload.candidates
    if request.kernel in (counting_kernel, lloyd_kernel):
        return request.payload.centres
    if request.kernel is init_kernel and request.payload.method != "random":
        return request.payload.centres
    return None


def observed_moments_kernel(block: np.ndarray, n_features: int, row_offset: int) -> ObservedMoments:
    return observed_moments(block, n_features)


def filled_steps(program: Steps, fill: np.ndarray) -> Steps:
    """An initialisation ``program`` on data with missing values: every pass that measures rows against centres
    (k-means|| draws and weights, Lloyd, the hard assignment) sees each row completed from its nearest centre
    over the observed coordinates, so its distance is the observed part's (k-means on the observed values,
    :func:`~dgmm.kernels.completion.completed_by_nearest`); random responsibilities and gathers (a first centre, a
    row sample) see each missing value as its feature's mean ``fill`` (d,); EM passes (of "split") see the rows
    as they are."""
    answer = None
    try:
        while True:
            request = program.send(answer)
            if isinstance(request, Pass) and request.kernel is em_kernel:  # EM ("split" grows by it) marginalises
                answer = yield request
            elif isinstance(request, Pass):
                centres = to_centres(request)
                answer = yield Pass(filled_kernel, FilledPlan(request.kernel, request.payload, fill, centres))
            else:
                answer = fill_missing((yield request), fill)
    except StopIteration as stop:
        return stop.value


def split_steps(
    *,
    n_components: int,
    n_features: int,
    covariance_type: CovarianceType,
    reg_covar: float,
    tol: float = 1e-3,
    max_iter: int = 100,
    dtype: ComputeDType = "float64",
) -> Steps[MixtureParams]:
    """Binary splitting, as HTK and GaussianMixtures.jl grow a mixture.

    1. one component: the statistics of every row about the first row (one gather, one pass)
    2. split every component in two along its principal axis (the heaviest first when fewer
       splits are left than components: K = 6 grows 1, 2, 4, 6), then EM at that size
    3. the last split's parameters are the start of the fit's own EM
    """
    first = yield Gather(np.zeros(1, dtype=np.int64))
    centre = np.asarray(first[:, :n_features], dtype=np.float64)
    stats = yield Pass(init_kernel, InitPlan("k-means++", centre, 0, covariance_type))
    params, _ = m_step(stats, centre, covariance_type, reg_covar, reseed=False)
    while params.n_components < n_components:
        params = split_heaviest_components(params, min(params.n_components, n_components - params.n_components))
        if params.n_components < n_components:
            params = (yield from em_steps(params, tol=tol, max_iter=max_iter, reg_covar=reg_covar, dtype=dtype)).params
    return params


def fit_steps(shape: tuple[int, int], init: dict, **em_kwargs) -> Steps[EMResult]:
    """One restart: :func:`start_steps` with the keywords ``init``, then :func:`em_steps`."""
    params = yield from start_steps(shape, **init)
    return (yield from em_steps(params, **em_kwargs))


def score_steps(params: MixtureParams) -> Steps[tuple[float, float]]:
    """Mean log-likelihood of the (weighted) rows under ``params`` (NaN without rows) and their total weight, one pass."""
    stats = yield Pass(em_kernel, plan_estep(params))
    return (stats.loglik / stats.weight if stats.weight > 0 else math.nan), float(stats.weight)


def em_update(
    stats: Stats, params: MixtureParams, reg_covar: float, n_iter: int, warn_reseed: bool = True
) -> tuple[MixtureParams, float, bool]:
    """The M-step after the pass of iteration ``n_iter``: (new parameters, mean log-likelihood of
    ``params``, whether a component was re-seeded)."""
    if not stats.weight > 0:
        raise no_rows_left()
    lower_bound = stats.loglik / stats.weight
    if not np.isfinite(lower_bound):
        raise FitError(
            f"the log-likelihood became {lower_bound} at iteration {n_iter}; scale the input data or increase reg_covar"
        )
    new, reseeded = m_step(stats, params.means, params.covariance_type, reg_covar)
    if warn_reseed:
        warn_reseeded(reseeded, f"iteration {n_iter}")
    return new, lower_bound, bool(reseeded)


def best_run(runs: Sequence[EMResult]) -> EMResult:
    """The run with the highest lower bound; the earliest wins ties (as one-at-a-time restarts keep it)."""
    best = runs[0]
    for run in runs[1:]:
        if run.lower_bound > best.lower_bound:
            best = run
    return best


def warn_reseeded(reseeded: list[tuple[int, int]], when: str) -> None:
    for k, h in reseeded:
        warnings.warn(
            f"component {k} died or collapsed at {when}; re-seeded by splitting component {h} along its "
            "principal axis (fewer components or a larger reg_covar may suit the data better)",
            ReseedWarning,
            stacklevel=3,
        )


def run_em(executor: PassRunner, X, params: MixtureParams, *, split_every: int, **kwargs) -> EMResult:
    """EM on ``executor``: :func:`em_steps` driven alone."""
    return run_steps(executor, X, split_every, em_steps(params, **kwargs))


def em_steps(
    params: MixtureParams,
    *,
    tol: float,
    max_iter: int,
    reg_covar: float,
    lower_bound: float = -math.inf,
    history: Sequence[float] = (),
    on_iteration: IterationCallback | None = None,
    dtype: ComputeDType = "float64",
    warn_reseed: bool = True,
) -> Steps[EMResult]:
    """EM from ``params`` until the mean log-likelihood changes by less than ``tol``.

    ``history`` holds the lower bounds of iterations already done from the same
    start (when resuming), ``lower_bound`` the last of them; iterations continue
    from ``len(history) + 1`` to ``max_iter``. ``dtype`` is the compute dtype of the
    E-step (statistics are accumulated in float64 either way). ``warn_reseed=False``
    re-seeds dead components without a :class:`~dgmm.ReseedWarning`.

    Raises
    ------
    FitError
        The log-likelihood or a parameter became NaN or infinite, or a
        covariance stopped being positive definite.
    """
    lower_bounds = list(history)
    converged = False
    n_iter = len(lower_bounds)
    weight, n_zero_weight = math.nan, 0
    for n_iter in range(len(lower_bounds) + 1, max_iter + 1):
        started = time.perf_counter()
        previous = lower_bound
        stats = yield Pass(em_kernel, plan_estep(params, dtype))
        weight, n_zero_weight = stats.weight, stats.n_zero_weight
        params, lower_bound, reseeded = em_update(stats, params, reg_covar, n_iter, warn_reseed)
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        converged = abs(change) < tol and not reseeded
        if on_iteration is not None:
            seconds = time.perf_counter() - started
            on_iteration(
                IterationReport(
                    n_iter,
                    lower_bound,
                    change,
                    seconds,
                    stats.n_rows,
                    params,
                    tuple(lower_bounds),
                    converged,
                    stats.n_zero_weight,
                )
            )
        if converged:
            break
    return EMResult(params, converged, n_iter, lower_bound, lower_bounds, weight, n_zero_weight)
