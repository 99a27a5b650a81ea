"""Passes over in-memory NumPy data in this process, on a small thread pool: no graph, no scheduler."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..kernels.stats import Stats, merge_stats
from .passes import Kernel, tree_reduce


class InProcessExecutor:
    """Runs passes over an in-memory NumPy array in this process, on a small thread pool.

    No graph and no scheduler: a small fit costs what its arithmetic costs. Kernels
    release the GIL (BLAS, NumPy, nogil compiled loops), so ``threads`` threads run
    at once: over the chunks when there are many, else over the row tiles of each
    chunk for kernels that take a ``map`` (``kernel.maps_tiles``). Results are
    merged in chunk (and tile) order, so they do not depend on the thread count.
    """

    client = None

    def __init__(self, chunk_rows: int, threads: int | None = None):
        self.chunk_rows = chunk_rows
        self.threads = threads if threads is not None else in_process_threads()

    def __repr__(self) -> str:
        return f"InProcessExecutor(threads={self.threads})"

    def keep_in_memory(self, X):
        return X

    def map_reduce(self, X: np.ndarray, kernel: Kernel, payload: Any, split_every: int = 8) -> Stats:
        n = X.shape[0]
        starts = list(range(0, n, self.chunk_rows))
        pool = thread_pool(self.threads)
        if pool is None:
            leaves = [kernel(X[i : min(i + self.chunk_rows, n), ...], payload, i) for i in starts]
        else:
            # one BLAS thread per pool thread: nested BLAS threads oversubscribe the cores badly
            with single_threaded_blas():
                if getattr(kernel, "maps_tiles", False) and len(starts) < 4 * self.threads:
                    leaves = [kernel(X[i : min(i + self.chunk_rows, n), ...], payload, i, map=pool.map) for i in starts]
                else:
                    leaves = list(pool.map(lambda i: kernel(X[i : min(i + self.chunk_rows, n), ...], payload, i), starts))
        return tree_reduce(leaves, split_every, lambda group, depth, j: merge_stats(group))

    def gather_rows(self, X: np.ndarray, indices: np.ndarray) -> np.ndarray:
        if isinstance(X, np.ndarray):
            return X[np.asarray(indices)]
        from ..kernels.xp_estep import namespace, to_numpy  # an array-API array on its device

        xp = namespace(X)
        return to_numpy(xp.take(X, xp.asarray(np.asarray(indices, dtype=np.int64), device=X.device), axis=0))


_POOLS: dict[int, Any] = {}


def in_process_threads() -> int:
    """Threads of the in-process executor: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


_BLAS_CONTROLLER: list = []


def single_threaded_blas():
    """Context manager limiting BLAS (OpenBLAS, MKL, ...) to one thread, via threadpoolctl."""
    if not _BLAS_CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def thread_pool(threads: int):
    """A process-wide pool of ``threads`` threads (None for one thread), created once."""
    if threads <= 1:
        return None
    if threads not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="dgmm")
    return _POOLS[threads]


