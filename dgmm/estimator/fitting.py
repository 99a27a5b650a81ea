"""The program of a fit: which executor, where the data lives, initialisations, EM runs, split/merge rounds.

Functions of a :class:`~dgmm.GaussianMixture` ``model`` whose parameters they read; they set nothing on it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from typing import Any

import numpy as np

from ..algorithms.em import EMResult, IterationCallback, IterationReport, initial_params, run_em
from ..algorithms.programs import run_steps
from ..algorithms.seeding import reductions_per_restart
from ..algorithms.smem import best_fit_steps, split_merge_steps
from ..data.inputs import Input
from ..errors import DataError, ParameterError
from ..execution.executor import CountingExecutor
from ..persist.checkpoint import Checkpoint, FitState, saving_callback
from .runtime import EVENT, runtime

logger = logging.getLogger("dgmm")


def run_fit(
    model: Any,
    data: Input,
    inits: tuple,
    state: FitState,
    do_init: bool,
    on_iteration: IterationCallback | None,
    checkpoint: Checkpoint | None,
) -> tuple[EMResult, list, str]:
    """Initialisations, EM and split/merge rounds on the executor the fit runs on.

    Returns the best result, the accepted split/merge moves and the cache policy used.
    """
    with runtime(model, data) as where:
        array, cache_used = where.array, where.cache_used
        stage = ["restarts"]
        executor = reporting_passes(where.executor, stage)
        em = dict(tol=model.tol, max_iter=model.max_iter, reg_covar=model.reg_covar, dtype=model.dtype)
        if len(state.seeds) > 1 and do_init and checkpoint is None and on_iteration is None and not model.verbose:
            # every restart, initialisation and EM alike, shares each pass
            program = best_fit_steps(
                array.shape,
                state.seeds,
                init_settings(model, data.n_features, inits),
                split_merge=model.split_merge,
                **em,
            )
        else:
            bounds = []  # of the restarts run here (a resumed fit's earlier ones are not known)
            for init in range(state.init_index, len(state.seeds)):
                result = run_init(
                    model,
                    executor,
                    array,
                    data.n_features,
                    state,
                    init,
                    inits,
                    do_init,
                    on_iteration,
                    checkpoint,
                    stage,
                )
                bounds.append(result.lower_bound)
                best = state.best if state.best is not None and state.best.lower_bound >= result.lower_bound else result
                state = FitState(state.seeds, init + 1, None, best)
                if checkpoint is not None:
                    checkpoint.save(state, model.covariance_type)
            program = with_bounds(split_merge_steps(state.best, n_candidates=model.split_merge, **em), bounds)
            stage[0] = "split/merge"
        return (*run_steps(executor, array, model.split_every, program), cache_used)


def distinct_optima(bounds, tol: float = 0.0) -> int:
    """How many different optima final lower bounds show: runs that stopped when the mean log-likelihood changed by
    less than ``tol`` may end that far apart on one optimum, so only gaps wider than ``tol`` (and than 1e-6 of the
    value, at least 1e-6) separate optima."""
    ordered = sorted(float(b) for b in bounds)
    gap = lambda b: max(tol, 1e-6 * max(1.0, abs(b)))  # noqa: E731
    return len(ordered) and 1 + sum(b - a > gap(b) for a, b in zip(ordered, ordered[1:]))


def restarts_reached(model: Any, bounds: tuple[float, ...]) -> tuple[np.ndarray, int | None]:
    """The restarts' final lower bounds (by seed; empty when none ran here) and how many distinct optima they
    reached (None for fewer than two), logged and, when verbose, printed."""
    if len(bounds) < 2:
        return np.asarray(bounds, dtype=np.float64), None
    optima = distinct_optima(bounds, model.tol)
    message = (
        f"restarts: {len(bounds)} reached {optima} distinct optim{'um' if optima == 1 else 'a'} "
        f"(final mean log-likelihoods {', '.join(f'{b:.6f}' for b in bounds)})"
    )
    logger.info(message, extra={EVENT: ("restarts", {"restarts": len(bounds), "distinct_optima": optima})})
    if model.verbose:
        print(message)
    return np.asarray(bounds, dtype=np.float64), optima


def with_bounds(program, bounds: list[float]):
    """``program`` (a fit's last steps), its result carrying the restarts' final lower bounds."""
    result, moves = yield from program
    return replace(result, restart_bounds=tuple(bounds)), moves


def reporting_passes(executor, stage: list[str]) -> CountingExecutor:
    """``executor``, logging every pass but EM iterations (they have their own report) as a "pass" event
    of the stage ``stage[0]`` names: the initialisation's passes are otherwise seconds of silence."""

    def report(number: int, seconds: float) -> None:
        if stage[0] != "EM":
            logger.info(
                "%s: pass %d over the data, %.3f s",
                stage[0],
                number,
                seconds,
                extra={EVENT: ("pass", {"stage": stage[0], "number": number, "seconds": round(seconds, 3)})},
            )

    return CountingExecutor(executor, report)


def run_init(
    model: Any,
    executor,
    array,
    n_features: int,
    state: FitState,
    init: int,
    inits,
    do_init: bool,
    on_iteration: IterationCallback | None,
    checkpoint: Checkpoint | None,
    stage: list[str] | None = None,
) -> EMResult:
    """One initialisation and its EM run, or the rest of it when resuming."""
    if model.verbose:
        print(f"Initialization {init}")
    current = state.current if state.init_index == init else None
    if current is not None and (current.converged or current.n_iter >= model.max_iter):
        return current
    if current is not None:
        params, start, history = current.params, current.lower_bound, current.lower_bounds
    elif do_init:
        if stage is not None:
            stage[0] = f"initialisation {init}" if model.n_init > 1 else "initialisation"
        params = initial_params(
            executor,
            array,
            split_every=model.split_every,
            seed=state.seeds[init],
            **init_settings(model, n_features, inits),
        )
        start, history = -math.inf, []
    else:
        params, start, history = model.fitted_params(), model.lower_bound_, []
    if model.max_iter == 0:
        return EMResult(params, False, 0, -math.inf, [])
    if stage is not None:
        stage[0] = "EM"
    callback = iteration_callback(model, on_iteration)
    if checkpoint is not None:
        callback = saving_callback(callback, checkpoint, state, init, model.covariance_type)
    result = run_em(
        executor,
        array,
        params,
        tol=model.tol,
        max_iter=model.max_iter,
        reg_covar=model.reg_covar,
        split_every=model.split_every,
        lower_bound=start,
        history=history,
        on_iteration=callback,
        dtype=model.dtype,
    )
    if model.verbose:
        outcome = "converged" if result.converged else "did not converge"
        print(f"Initialization {outcome}. lower bound {result.lower_bound:.5f}")
    return result


def init_settings(model: Any, n_features: int, inits: tuple) -> dict[str, Any]:
    """:func:`~dgmm.algorithms.em.init_steps` keywords but the seed."""
    weights_init, means_init, precisions_init = inits
    return dict(
        n_components=model.n_components,
        n_features=n_features,
        covariance_type=model.covariance_type,
        method=model.init_params,
        reg_covar=model.reg_covar,
        weights_init=weights_init,
        means_init=means_init,
        precisions_init=precisions_init,
        split_em=dict(tol=model.tol, max_iter=model.max_iter, dtype=model.dtype),
        reductions=reductions_per_restart(model.n_init),
        marginalize=getattr(model, "nan_policy", "raise") == "marginalize",
    )


def iteration_callback(model: Any, extra: IterationCallback | None) -> IterationCallback | None:
    if model.verbose < 2:
        return extra

    def report(it: IterationReport) -> None:
        if it.n_iter % model.verbose_interval == 0 or it.n_iter == 1:
            print(f"  Iteration {it.n_iter}\t time lapse {it.seconds:.5f}s\t ll change {it.change:.5f}")
        if extra is not None:
            extra(it)

    return report


def starting_model(model: Any, data: Input) -> Any:
    """The mixture ``model.init_model`` names (read from its file), checked against ``model`` and ``data``; or
    None."""
    source = model.init_model
    if source is None:
        return None
    where = f"init_model {os.fspath(source)!r}" if isinstance(source, (str, os.PathLike)) else "init_model"
    if isinstance(source, (str, os.PathLike)):
        source = type(model).load(source, storage_options=model.storage_options)
    elif not hasattr(source, "converged_"):
        raise ParameterError(f"{where} is not fitted; give a fitted mixture or a model file")
    theirs = (int(source.n_components), source.covariance_type)
    if theirs != (model.n_components, model.covariance_type):
        raise ParameterError(
            f"{where} has {theirs[0]} {theirs[1]} components; this model has n_components={model.n_components}, "
            f"covariance_type={model.covariance_type!r}: set them to the file's, or leave init_model out"
        )
    if int(source.n_features_in_) != data.n_features:
        raise DataError(f"X has {data.n_features} features, but {where} has {source.n_features_in_}")
    names = getattr(source, "feature_names_in_", None)
    if names is not None and data.feature_names is not None and list(names) != list(data.feature_names):
        raise DataError(f"feature names {list(data.feature_names)} differ from those of {where}: {list(names)}")
    return source
