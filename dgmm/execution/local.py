"""Passes over in-memory NumPy data in this process, on a thread pool of every core: no graph, no scheduler."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..kernels.arrays import take_rows
from ..kernels.stats import Stats, merge_stats
from .blas import single_threaded_blas
from .passes import Kernel, row_chunk_keys, tree_reduce


class InProcessExecutor:
    """Runs passes over an in-memory NumPy array in this process, on a thread pool of every core.

    No graph and no scheduler: a small fit costs what its arithmetic costs. Kernels
    release the GIL (BLAS, NumPy, nogil compiled loops), so ``threads`` threads run
    at once: over the chunks when there are many, else over the row tiles of each
    chunk for kernels that take a ``map`` (``kernel.maps_tiles``). Then up to
    ``CHUNKS_IN_FLIGHT`` chunks queue their tiles at once, so threads that finish a
    chunk's last tiles start the next chunk's instead of waiting (one chunk's last
    few tiles would leave most threads idle). Results are
    merged in chunk (and tile) order, so they do not depend on the thread count.
    """

    client = None

    def __init__(self, chunk_rows: int, threads: int | None = None):
        self.chunk_rows = chunk_rows
        self.threads = threads if threads is not None else in_process_threads()
        self.row_chunks: tuple[int, ...] | None = None  # the chunks of lazy input read by :meth:`cache`

    def __repr__(self) -> str:
        return f"InProcessExecutor(threads={self.threads})"

    def keep_in_memory(self, X):
        return X

    def cache(self, X, policy: str) -> tuple[np.ndarray, str]:
        """Lazy input (Parquet, a Dask array) read into this process once, as one NumPy array; its row chunks
        (row groups) stay the chunks of every pass, so the result has the bits a cluster gives it."""
        from dask.threaded import get  # not dask.compute, which imports distributed to look for a client

        keys = row_chunk_keys(X)
        blocks = get(X.__dask_optimize__(X.__dask_graph__(), X.__dask_keys__()), keys)
        values = np.concatenate(blocks) if len(blocks) > 1 else np.ascontiguousarray(blocks[0])
        self.row_chunks = tuple(int(c) for c in X.chunks[0])
        return values, "memory"

    def placed(self, X):
        return X

    def map_reduce(self, X: np.ndarray, kernel: Kernel, payload: Any, split_every: int = 8) -> Stats:
        n = X.shape[0]
        starts = self.chunk_bounds(n)
        ends = dict(zip(starts, [*starts[1:], n]))
        pool = thread_pool(self.threads) if isinstance(X, np.ndarray) else None  # a GPU runs one chunk at a time
        # BLAS on one thread, as every pass kernel runs (dgmm.execution.blas): the same bits as on a cluster's
        # workers, and no nested BLAS threads oversubscribing the pool's cores
        with single_threaded_blas():
            if pool is None:
                leaves = [kernel(X[i : ends[i], ...], payload, i) for i in starts]
            elif getattr(kernel, "maps_tiles", False) and len(starts) < 4 * self.threads:
                # driver threads only wait on the tile pool's futures: the tiles keep every core busy
                drivers = thread_pool(min(len(starts), CHUNKS_IN_FLIGHT), "dgmm-chunk")

                def tiled(i: int) -> Stats:
                    return kernel(X[i : ends[i], ...], payload, i, map=pool.map)

                leaves = list(drivers.map(tiled, starts)) if drivers is not None else [tiled(i) for i in starts]
            else:
                leaves = list(pool.map(lambda i: kernel(X[i : ends[i], ...], payload, i), starts))
        return tree_reduce(leaves, split_every, lambda group, depth, j: merge_stats(group))

    def chunk_bounds(self, n: int) -> list[int]:
        """The first row of each chunk of an array of ``n`` rows: the read input's chunks, else ``chunk_rows``."""
        if self.row_chunks is not None and sum(self.row_chunks) == n:
            return [int(b) for b in np.cumsum((0, *self.row_chunks[:-1]))]
        return list(range(0, n, self.chunk_rows))

    def gather_rows(self, X: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return take_rows(X, indices)

    def device_count(self, device) -> int:
        return device.count()


CHUNKS_IN_FLIGHT = 4  # chunks whose tiles are queued on the pool at once
_POOLS: dict[tuple[str, int], Any] = {}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as ``taskset`` or a container sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def in_process_threads() -> int:
    """Threads of the in-process executor: one per usable CPU."""
    return usable_cpus()


def thread_pool(threads: int, name: str = "dgmm"):
    """A process-wide pool of ``threads`` threads named ``name`` (None for one thread), created once."""
    if threads <= 1:
        return None
    if (name, threads) not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[name, threads] = ThreadPoolExecutor(threads, thread_name_prefix=name)
    return _POOLS[name, threads]
