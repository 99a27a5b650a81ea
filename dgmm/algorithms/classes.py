"""Fitting one mixture per class in shared passes: a program of one class sees only that class's rows.

The data carries a last column of class codes (:func:`dgmm.kernels.weights.class_rows`). Wrapping a
fitting program with :func:`for_class` gives each of its passes and row gathers the block the program
would see if the other classes' rows had weight 0; :func:`dgmm.algorithms.steps.together` then runs
every class in the same passes. So each class's result equals a fit of the same program on the same
chunks with ``sample_weight = w * (y == c)``, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..kernels.weights import class_rows
from .steps import Gather, Pass, Steps, T


@dataclass(frozen=True)
class ClassView:
    """How one class sees the rows: its ``code``, the feature count, whether the data has row weights."""

    code: int
    n_features: int
    weighted: bool

    def rows(self, block: np.ndarray) -> np.ndarray:
        return class_rows(block, self.n_features, self.weighted, self.code)


def class_kernel(block: np.ndarray, payload: tuple[ClassView, Callable, Any], row_offset: int) -> Any:
    """The wrapped kernel on the class's view of the chunk."""
    view, kernel, inner = payload
    return kernel(view.rows(block), inner, row_offset)


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
