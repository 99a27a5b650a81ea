"""Algorithms as programs of pass requests (*steps*), so that many of them can share every pass over the data.

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
from typing import Any, Callable, Generator, Protocol, Sequence, TypeVar

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


class PassRunner(Protocol):
    """What programs need from an executor (:mod:`dgmm.execution` implements it, for a cluster or this process)."""

    def map_reduce(self, X: Any, kernel: Callable, payload: Any, split_every: int = 8) -> Any:
        """One pass over ``X``: ``kernel(chunk, payload, row_offset)`` for every row chunk, merged with ``+``."""

    def gather_rows(self, X: Any, indices: np.ndarray) -> np.ndarray:
        """Rows ``X[indices]`` as NumPy, in the order given."""


@dataclass(frozen=True)
class Bundle:
    """The results of several kernels on the same rows, by request number; bundles merge part by part, each
    part ``left + right`` in that order. A request with no part had nothing to compute on those rows (the
    neutral element of its merge), so a merge costs the parts present, not every request."""

    parts: dict[int, Any]

    def __add__(self, other: "Bundle") -> "Bundle":
        merged = dict(self.parts)
        for i, part in other.parts.items():
            merged[i] = merged[i] + part if i in merged else part
        return Bundle(merged)


def bundle_kernel(block: np.ndarray, requests: tuple[tuple[Callable, Any], ...], row_offset: int) -> Bundle:
    """Every ``(kernel, payload)`` request on one chunk (the chunk is read once).

    A kernel that sees only some rows (``kernel.rows_key(payload)``: a class's code) and can tell which keys a
    chunk holds (``kernel.keys_in(block)``, once per chunk for all such requests) is not called on a chunk
    without its key: it has no part there, which adds nothing. So a pass of C classes over many chunks calls
    each class's kernel only where the class has rows, not C times per chunk (and merges only those parts)."""
    held: dict[Callable, Any] = {}
    parts = {}
    for i, (kernel, payload) in enumerate(requests):
        key = kernel.rows_key(payload) if hasattr(kernel, "rows_key") else None
        if key is not None:
            keys_in = kernel.keys_in
            if keys_in not in held:
                held[keys_in] = keys_in(block)
            if held[keys_in] is not None and key not in held[keys_in]:
                continue
        parts[i] = kernel(block, payload, row_offset)
    return Bundle(parts)


def run_steps(executor: PassRunner, X, split_every: int, program: Steps[T]) -> T:
    """Drive one program to its result: each Pass is one ``map_reduce``, each Gather one ``gather_rows``."""
    answer = None
    try:
        while True:
            request = program.send(answer)
            if isinstance(request, Pass):
                answer = executor.map_reduce(X, request.kernel, request.payload, split_every)
            else:
                answer = executor.gather_rows(X, request.indices)
    except StopIteration as stop:
        return stop.value


def run_together(executor: PassRunner, X, split_every: int, programs: Sequence[Steps]) -> list:
    """Drive every program at once (see :func:`together`); their results in order."""
    return run_steps(executor, X, split_every, together(programs))


def together(programs: Sequence[Steps]) -> Steps[list]:
    """One program running ``programs`` in lockstep; its result is the list of theirs.

    Each round, the gathers the programs are waiting for become one Gather and their
    passes one Pass (a bundle; a lone pass is yielded as it is, so its kernel may still
    tile across the executor's threads). Programs may themselves use ``together``.
    """
    results: list = [None] * len(programs)
    pending: dict[int, Pass | Gather] = {}
    for i in range(len(programs)):
        _advance(programs, i, None, pending, results)
    while pending:
        gathers = [(i, np.asarray(r.indices)) for i, r in pending.items() if isinstance(r, Gather)]
        if gathers:
            rows = yield Gather(np.concatenate([indices for _, indices in gathers]))
            bounds = np.cumsum([0] + [len(indices) for _, indices in gathers])
            for j, (i, _) in enumerate(gathers):
                _advance(programs, i, rows[bounds[j] : bounds[j + 1]], pending, results)
        passes = [(i, r) for i, r in pending.items() if isinstance(r, Pass)]
        if len(passes) == 1:
            i, request = passes[0]
            _advance(programs, i, (yield request), pending, results)
        elif passes:
            bundle = yield Pass(bundle_kernel, tuple((r.kernel, r.payload) for _, r in passes))
            for j, (i, _) in enumerate(passes):
                _advance(programs, i, bundle.parts[j], pending, results)
    return results


def _advance(programs: Sequence[Steps], i: int, answer: Any, pending: dict, results: list) -> None:
    """Send program ``i`` its answer (None to start it); record its next request or its result."""
    try:
        pending[i] = programs[i].send(answer)
    except StopIteration as stop:
        pending.pop(i, None)
        results[i] = stop.value
