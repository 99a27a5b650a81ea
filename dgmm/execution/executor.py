"""Where and how passes over the data run: broadcast -> map -> tree-reduce -> one compute.

No maths here. A *pass* applies a pure chunk kernel ``kernel(block, payload,
row_offset) -> Stats`` to every row chunk of a Dask array and merges the results
with :func:`dgmm.kernels.stats.merge_stats` in a tree of fan-in ``split_every``.

Which scheduler runs a pass, when ``fit`` is not handed a client:

=====================================  =========================================
situation                              executor
=====================================  =========================================
``client=`` given                      that ``distributed`` client
``scheduler_address=`` given           a client of that scheduler, closed on exit
a ``distributed`` client is current    that client
Parquet input, no client, small        read into this process once (its row
                                       groups kept as chunks), passes on a
                                       thread pool: no cluster to start
                                       (:func:`fits_in_process`)
Parquet input, no client, otherwise    a LocalCluster of worker processes on
                                       127.0.0.1 (one per core; one per GPU for
                                       a GPU fit), closed when ``fit`` returns
NumPy / pandas input, no client        in this process, chunk by chunk, no
                                       Dask graph: small fits cost no start-up
array-API input (CuPy, torch, ...)     in this process, on the array's device
Dask array / DataFrame, no client      Dask's configured default scheduler
=====================================  =========================================
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import uuid
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from ..data.devices import DeviceTarget
from ..data.inputs import IN_MEMORY_CHUNK_ROWS, InputKind
from ..kernels.arrays import take_rows
from ..kernels.stats import Stats
from .blas import single_threaded_blas
from .clusters import connect, current_client, local_cluster
from .deadlines import STALL_TIMEOUT, result, wait_all, workers_info
from .local import InProcessExecutor
from .passes import Kernel, build_pass, placed_in_row_ranges

CACHE_FRACTION = 0.25
# Parquet without a cluster is read into this process when its float64 size is at most this share of the
# memory available: reading it joins the row groups (twice the size for a moment), and a local cluster
# would cost seconds and ~1 GiB of processes before its first pass (8-12 s for a 272-row fit)
IN_PROCESS_FRACTION = 0.125


class Executor:
    """Runs passes over Dask arrays, on a ``distributed`` client or a local scheduler.

    Parameters
    ----------
    client : distributed.Client or None
    scheduler : local Dask scheduler name ("threads", "sync", ...) used without a client;
        None means Dask's configured default.
    stall_timeout : seconds without a running worker before a wait on the cluster ends with
        a ClusterError (see :mod:`dgmm.execution.deadlines`)
    """

    def __init__(self, client=None, scheduler: str | None = None, stall_timeout: float = STALL_TIMEOUT):
        self.client = client
        self.scheduler = scheduler
        self.stall_timeout = stall_timeout

    def __repr__(self) -> str:
        where = self.client.scheduler.address if self.client is not None else self.scheduler or "dask default"
        return f"Executor({where})"

    def keep_in_memory(self, X):
        """Persist ``X`` once (on the cluster, or in this process), so passes do not recompute it."""
        if self.client is None:
            return X.persist(scheduler=self.scheduler)
        from distributed import futures_of

        workers = sorted(workers_info(self.client))
        with warnings.catch_warnings():
            # in-memory input is sent to the cluster once, in its graph: that is the point of persisting it
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            if workers:
                X = self.client.persist(placed_in_row_ranges(X, workers), optimize_graph=False)  # optimised already
            else:
                X = self.client.persist(X)
        wait_all(self.client, futures_of(X), self.stall_timeout)
        return X

    def placed(self, X):
        """``X`` with each worker preferring one contiguous range of its chunks, in every pass: what a
        worker reads, it reads again, so each worker's device cache holds its own share of the chunks."""
        workers = sorted(workers_info(self.client)) if self.client is not None else []
        return placed_in_row_ranges(X, workers) if workers else X

    def free_memory(self) -> int:
        """Bytes the workers could still hold: limits minus process memory (this machine's without a client)."""
        if self.client is None:
            import psutil

            return int(psutil.virtual_memory().available)
        workers = workers_info(self.client).values()
        return int(sum(max(0, (w["memory_limit"] or 0) - w["metrics"]["memory"]) for w in workers))

    def cache(self, X, policy: str) -> tuple[Any, str]:
        """Apply a cache policy ("auto", "memory", "none"); returns the array and what was chosen.

        "auto" persists only when the data takes at most a quarter of the free memory.
        """
        chosen = policy
        if policy == "auto":
            chosen = "memory" if X.nbytes <= CACHE_FRACTION * self.free_memory() else "none"
        return (self.keep_in_memory(X) if chosen == "memory" else X), chosen

    def broadcast(self, payload: Any):
        """``payload`` as one key of the pass's graph (a Delayed), computed once and fetched by every worker.

        Not ``client.scatter(..., broadcast=True)``: scattered data has no task that makes it, so a
        worker lost while it is being replicated hung the scatter, and one lost afterwards could
        leave the pass with "lost dependencies". A key of the graph is rerun by the scheduler.
        """
        from dask import delayed

        return delayed(payload, name=f"payload-{uuid.uuid4().hex}", traverse=False)

    def map_reduce(self, X, kernel: Kernel, payload: Any, split_every: int = 8) -> Stats:
        """One pass: ``merge(kernel(chunk_i, payload, offset_i) for every row chunk)``, one compute."""
        return self.compute(build_pass(X, kernel, self.broadcast(payload), split_every))

    def compute(self, collection):
        """Compute one Dask collection (a single graph submission)."""
        if self.client is not None:
            with warnings.catch_warnings():
                # large parameters (K·d² of full covariances) are in the graph once, as that warning advises
                warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
                future = self.client.compute(collection)
            return result(self.client, future, self.stall_timeout)
        import dask

        return dask.compute(collection, scheduler=self.scheduler)[0]

    def gather_rows(self, X, indices: np.ndarray) -> np.ndarray:
        """Rows ``X[indices]`` as NumPy, in the order given (one compute); each chunk's rows are taken where
        the chunk lies (a GPU too) and only they are copied to the host."""
        from dask import delayed

        indices = np.asarray(indices, dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(X.chunks[0])])
        chunk_of = np.searchsorted(bounds, indices, side="right") - 1
        blocks = X.to_delayed().ravel()
        parts = [delayed(take_rows)(blocks[c], indices[chunk_of == c] - bounds[c]) for c in np.unique(chunk_of)]
        rows = self.compute(delayed(np.concatenate)(parts)) if parts else np.empty((0, X.shape[1]))
        out = np.empty_like(rows)
        out[np.argsort(chunk_of, kind="stable")] = rows
        return out

    def device_count(self, device) -> int:
        """The fewest GPUs of ``device``'s kind any worker sees (this process's without a client)."""
        if self.client is None:
            return device.count()
        return min(self.client.run(device.count).values(), default=0)


class CountingExecutor:
    """Wraps an executor and counts its passes (each reads every chunk once) and row gathers;
    ``on_pass(passes, seconds)``, if given, is called after every pass."""

    def __init__(self, inner, on_pass: Callable[[int, float], None] | None = None):
        self.inner, self.passes, self.gathers, self.on_pass = inner, 0, 0, on_pass

    @property
    def client(self):
        return self.inner.client

    def map_reduce(self, *args, **kwargs):
        self.passes += 1
        started = time.perf_counter()
        result = self.inner.map_reduce(*args, **kwargs)
        if self.on_pass is not None:
            self.on_pass(self.passes, time.perf_counter() - started)
        return result

    def gather_rows(self, X, indices):
        self.gathers += 1
        return self.inner.gather_rows(X, indices)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def fits_in_process(nbytes: int, cache: str = "auto") -> bool:
    """Whether Parquet input of ``nbytes`` (as float64) is fitted in this process rather than on a local
    cluster, when no cluster is given: it takes at most :data:`IN_PROCESS_FRACTION` of the memory available
    here, and ``cache`` is not "none" (which asks for streaming, memory bounded by the chunk)."""
    if cache == "none":
        return False
    import psutil

    return nbytes <= IN_PROCESS_FRACTION * psutil.virtual_memory().available


@contextlib.contextmanager
def executor_for(
    client,
    kind: InputKind,
    chunk_rows: int = IN_MEMORY_CHUNK_ROWS,
    scheduler_address: str | None = None,
    stall_timeout: float = STALL_TIMEOUT,
    device: DeviceTarget | None = None,
    nbytes: int | None = None,
    cache: str = "auto",
) -> Iterator[Executor]:
    """The executor a fit runs on; a client or local cluster it starts is closed on exit.

    Inside :func:`executors`, a fit given no client or address runs on the executor made there.
    This process's BLAS runs one thread meanwhile (:func:`~dgmm.execution.blas.single_threaded_blas`):
    the passes' threads or workers have the cores, and the M-step's small factorisations gain nothing.
    Parquet input on a ``device`` (a GPU), with no client, runs on a local cluster of one worker per GPU;
    on the CPU, Parquet of ``nbytes`` that :func:`fits_in_process` runs in this process.
    """
    with single_threaded_blas():
        yield from _executors_for(client, kind, chunk_rows, scheduler_address, stall_timeout, device, nbytes, cache)


def _executors_for(
    client,
    kind: InputKind,
    chunk_rows: int,
    scheduler_address: str | None,
    stall_timeout: float,
    device: DeviceTarget | None,
    nbytes: int | None,
    cache: str,
) -> Iterator[Executor]:
    """The body of :func:`executor_for` (a generator that yields one executor)."""
    factory = _FACTORY.get()
    if factory is not None and client is None and not scheduler_address:
        yield factory(kind, chunk_rows)
        return
    if kind == "xp":  # arrays on this process's device (a GPU) are fitted here
        yield InProcessExecutor(chunk_rows)
        return
    if client is None and scheduler_address:
        with connect(scheduler_address) as remote:
            yield Executor(remote, stall_timeout=stall_timeout)
        return
    client = client if client is not None else current_client()
    if client is not None:
        yield Executor(client, stall_timeout=stall_timeout)
        return
    if kind == "numpy":
        yield InProcessExecutor(chunk_rows)
        return
    if kind == "dask":
        yield Executor()
        return
    if device is None and nbytes is not None and fits_in_process(nbytes, cache):
        yield InProcessExecutor(chunk_rows)
        return
    with local_cluster(device=device) as local_client:
        yield Executor(local_client, stall_timeout=stall_timeout)


ExecutorFactory = Callable[[InputKind, int], Any]
_FACTORY: contextvars.ContextVar[ExecutorFactory | None] = contextvars.ContextVar("dgmm_executors", default=None)


@contextlib.contextmanager
def executors(factory: ExecutorFactory) -> Iterator[None]:
    """Run the fits and selections of the block, when given no client, on ``factory(kind, chunk_rows)``.

    For tests and benchmarks: e.g. a :class:`CountingExecutor` around an in-process executor counts
    every pass of the fits inside. ``kind`` is "numpy", "dask" or "parquet".
    """
    token = _FACTORY.set(factory)
    try:
        yield
    finally:
        _FACTORY.reset(token)
