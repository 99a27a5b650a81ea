"""Fitting one mixture per class in shared passes: a program of one class sees only that class's rows;
and adapting a background mixture to every class in one pass.

The data carries a last column of class codes (:func:`dgmm.kernels.row_weights.class_rows`). Wrapping a
fitting program with :func:`for_class` gives each of its passes and row gathers the block the program
would see if the other classes' rows had weight 0; :func:`dgmm.algorithms.programs.together` then runs
every class in the same passes. So each class's result equals a fit of the same program on the same
chunks with ``sample_weight = w * (y == c)``, bit for bit. A view of code None sees the data as it is,
every row (the background model's fit: bit-identical to a GaussianMixture fit on the data).

:func:`adapt_steps` is MAP adaptation (:mod:`dgmm.kernels.adapt`): one pass computes the E-step of the
background model once per chunk and the statistics of every class from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..kernels.adapt import ClassStats, class_stats, map_adapt
from ..kernels.arrays import ByBackend, on_host
from ..kernels.device.classes import xp_class_rows, xp_class_stats
from ..kernels.params import MixtureParams
from ..kernels.row_weights import class_rows, with_weight_column
from ..kernels.stats import Stats
from .programs import Gather, Pass, Steps, T

CLASS_ROWS = ByBackend(class_rows, xp_class_rows)
CLASS_STATS = ByBackend(class_stats, xp_class_stats)


@dataclass(frozen=True)
class ClassView:
    """How one class sees the rows: its ``code`` (None: every class), the feature count, whether the
    data has row weights."""

    code: int | None
    n_features: int
    weighted: bool

    def rows(self, block: np.ndarray) -> np.ndarray:
        if self.code is None:  # the data as it is, without the codes
            return block[:, : self.n_features + self.weighted]
        return CLASS_ROWS(block, self.n_features, self.weighted, self.code)

    def class_only(self, block: np.ndarray) -> np.ndarray:
        """Only the class's rows, weighted (m, d + 1): :meth:`rows` without the rows of weight 0."""
        mine = block[:, -1] == self.code
        return with_weight_column(
            block[mine, : self.n_features], block[mine, self.n_features] if self.weighted else None
        )


def class_kernel(block: np.ndarray, payload: tuple[ClassView, Callable, Any], row_offset: int) -> Any:
    """The wrapped kernel on the class's view of the chunk.

    A kernel that leaves rows of weight 0 out anyway (``skips_zero_weights``: the E-step) gets only
    the class's rows, which is what it would compute on: the same result, without copying the
    chunk once per class. Others (which hash global row indices), and blocks on a device, get the whole
    chunk, reweighted.
    """
    view, kernel, inner = payload
    if getattr(kernel, "skips_zero_weights", False) and view.code is not None and on_host(block):
        return kernel(view.class_only(block), inner, row_offset)
    return kernel(view.rows(block), inner, row_offset)


def class_codes_in(block: np.ndarray) -> frozenset | None:
    """The class codes a chunk holds (its last column), None for a block on a device (every class computes)."""
    return frozenset(np.unique(block[:, -1]).astype(np.int64).tolist()) if on_host(block) else None


class_kernel.rows_key = lambda payload: payload[0].code  # (None: every row, the background model's view)
class_kernel.keys_in = class_codes_in


def for_class(program: Steps[T], view: ClassView) -> Steps[T]:
    """``program`` run on the class's rows only (other rows weigh 0); its result unchanged."""
    answer = None
    try:
        while True:
            request = program.send(answer)
            if isinstance(request, Pass):
                answer = yield Pass(class_kernel, (view, request.kernel, request.payload))
            else:
                answer = view.rows((yield Gather(request.indices)))
    except StopIteration as stop:
        return stop.value


@dataclass(frozen=True)
class AdaptPlan:
    """What the adaptation pass needs on every chunk."""

    ubm: MixtureParams
    n_classes: int
    weighted: bool


def adapt_kernel(block: np.ndarray, plan: AdaptPlan, row_offset: int) -> ClassStats:
    """The statistics of the classes in the chunk under the background model: one E-step for the chunk."""
    return CLASS_STATS(block, plan.ubm, plan.weighted)


def adapt_steps(
    ubm: MixtureParams,
    n_classes: int,
    weighted: bool,
    *,
    relevance_factor: float,
    adapt: frozenset[str],
    reg_covar: float,
) -> Steps[list[tuple[MixtureParams, Stats]]]:
    """One pass: every class's MAP-adapted parameters and the statistics they came from."""
    sparse = yield Pass(adapt_kernel, AdaptPlan(ubm, n_classes, weighted))
    every = sparse.dense(n_classes, ubm.n_components, ubm.n_features, ubm.covariance_type)
    return [(map_adapt(stats, ubm, relevance_factor, adapt, reg_covar), stats) for stats in every]
