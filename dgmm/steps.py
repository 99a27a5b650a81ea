"""Algorithms as *steps*, so that many of them can share every pass over the data.

An initialisation, an EM run or a scoring pass is written as a generator that
yields what it needs from the data and receives the answer::

    def steps():
        rows = yield Gather(indices)             # rows X[indices], (m, columns)
        stats = yield Pass(kernel, payload)     # merge(kernel(chunk, payload, offset))
        return result

:func:`run_steps` drives one such program on an executor; :func:`run_together`
drives many at once: in each round, every program still running states its next
request, all pending passes become ONE pass whose kernel applies each request to
the chunk (a :class:`Bundle` of results), and all pending gathers ONE gather. So
``n_init`` restarts or a grid of models read each chunk once per round, and every
program gets exactly what it would get alone (same kernel, chunks and merge tree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Pass:
    """Request one pass: ``kernel(block, payload, row_offset)`` per chunk, merged with ``+``."""

    kernel: Callable
    payload: Any


@dataclass(frozen=True)
class Gather:
    """Request the rows ``X[indices]`` as NumPy, in the order given."""

    indices: np.ndarray


Steps = Generator["Pass | Gather", Any, T]


@dataclass(frozen=True)
class Bundle:
    """The results of several kernels on the same rows; bundles merge part by part."""

    parts: tuple

    def __add__(self, other: "Bundle") -> "Bundle":
        return Bundle(tuple(a + b for a, b in zip(self.parts, other.parts)))


def bundle_kernel(block: np.ndarray, requests: tuple[tuple[Callable, Any], ...], row_offset: int) -> Bundle:
    """Every ``(kernel, payload)`` request on one chunk (the chunk is read once)."""
    return Bundle(tuple(kernel(block, payload, row_offset) for kernel, payload in requests))


def run_steps(executor, X, split_every: int, program: Steps[T]) -> T:
    """Drive one program to its result."""
    return run_together(executor, X, split_every, [program])[0]


def run_together(executor, X, split_every: int, programs: Sequence[Steps]) -> list:
    """Drive every program at once, one pass and at most one gather per round; their results in order."""
    results: list = [None] * len(programs)
    pending: dict[int, Pass | Gather] = {}
    for i, program in enumerate(programs):
        _advance(programs, i, None, pending, results, first=True)
    while pending:
        answers = {**_passes(executor, X, split_every, pending), **_gathers(executor, X, pending)}
        for i, answer in answers.items():
            _advance(programs, i, answer, pending, results)
    return results


def _advance(programs, i: int, answer: Any, pending: dict, results: list, first: bool = False) -> None:
    try:
        pending[i] = next(programs[i]) if first else programs[i].send(answer)
    except StopIteration as stop:
        pending.pop(i, None)
        results[i] = stop.value


def _passes(executor, X, split_every: int, pending: dict) -> dict[int, Any]:
    wanted = [(i, r) for i, r in pending.items() if isinstance(r, Pass)]
    if len(wanted) == 1:  # alone: the kernel itself (it may tile across the executor's threads)
        i, request = wanted[0]
        return {i: executor.map_reduce(X, request.kernel, request.payload, split_every)}
    if not wanted:
        return {}
    bundle = executor.map_reduce(X, bundle_kernel, tuple((r.kernel, r.payload) for _, r in wanted), split_every)
    return {i: part for (i, _), part in zip(wanted, bundle.parts)}


def _gathers(executor, X, pending: dict) -> dict[int, np.ndarray]:
    wanted = [(i, np.asarray(r.indices)) for i, r in pending.items() if isinstance(r, Gather)]
    if not wanted:
        return {}
    rows = executor.gather_rows(X, np.concatenate([indices for _, indices in wanted]))
    bounds = np.cumsum([0] + [len(indices) for _, indices in wanted])
    return {i: rows[bounds[j] : bounds[j + 1]] for j, (i, _) in enumerate(wanted)}
