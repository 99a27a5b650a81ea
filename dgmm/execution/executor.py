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
Parquet input, no client               a LocalCluster of worker processes on
                                       127.0.0.1, closed when ``fit`` returns
NumPy / pandas input, no client        in this process, chunk by chunk, no
                                       Dask graph: small fits cost no start-up
Dask array / DataFrame, no client      Dask's configured default scheduler
=====================================  =========================================
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
import warnings
from typing import Any, Callable, Iterator, Literal

import numpy as np

from .deadlines import STALL_TIMEOUT, result, wait_all, workers_info
from ..kernels.stats import Stats, merge_stats

InputKind = Literal["numpy", "dask", "parquet"]
IN_MEMORY_CHUNK_ROWS = 65_536
CACHE_FRACTION = 0.25
# A task costs milliseconds of scheduler and worker time, as much as the kernel on ~100 kB of rows:
# passes over small chunks run whole subtrees of their merge tree to a task (fused_levels).
FUSE_CHUNK_BYTES = 4 * 2**20  # chunks smaller than this (on average) run several to a task
FUSE_TASK_BYTES = 16 * 2**20  # a task runs deeper subtrees of small chunks up to this much data...
MIN_FUSED_TASKS = 16  # ...while a pass keeps at least this many tasks
Kernel = Callable[[np.ndarray, Any, int], Stats]


def current_client():
    """The current ``distributed`` client, or None (never imports distributed itself)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


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
        if workers:
            X = self.client.persist(placed_in_row_ranges(X, workers), optimize_graph=False)  # optimised already
        else:
            X = self.client.persist(X)
        wait_all(self.client, futures_of(X), self.stall_timeout)
        return X

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
        """Rows ``X[indices]`` as NumPy, in the order given (one compute)."""
        order = np.argsort(indices, kind="stable")
        rows = np.asarray(self.compute(X[np.asarray(indices)[order]]))
        out = np.empty_like(rows)
        out[order] = rows
        return out


def placed_in_row_ranges(X, workers: list[str]):
    """``X`` with its graph optimised and its row chunks split into one contiguous range per worker.

    Persisted, consecutive chunks then live together and a pass's fused subtrees of
    consecutive chunks (:func:`pass_layer`) read local data instead of fetching it
    every pass. A preference (``allow_other_workers``), not a restriction.
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    keys = row_chunk_keys(X)
    where = {key: [workers[i * len(workers) // len(keys)]] for i, key in enumerate(keys)}
    graph = dict(X.__dask_optimize__(X.__dask_graph__(), X.__dask_keys__()))
    layer = MaterializedLayer(graph, annotations={"workers": where.get, "allow_other_workers": True})
    return da.Array(HighLevelGraph({X.name: layer}, {X.name: set()}), X.name, X.chunks, meta=X._meta)


def build_pass(X, kernel: Kernel, shared: Any, split_every: int):
    """The lazy graph of one pass; ``shared`` is the broadcast payload (a Delayed or a value).

    One raw graph layer of dask's task objects (``dask._task_spec``, hence dask >= 2024.12)
    next to X's (optimised) graph: no Delayed object per task, which cost over a second
    per pass at 1,000 chunks. Chunks smaller than
    ``FUSE_CHUNK_BYTES`` run a whole subtree to a task (see :func:`fused_levels`).

    Parameters
    ----------
    X : dask array of shape (N, d), chunked along rows only
    kernel : ``kernel(block, payload, row_offset) -> Stats``, block of shape (n_i, d)
    shared : what every kernel call gets as ``payload``; a Delayed is referenced by its one key

    Returns
    -------
    Delayed whose value is the merged Stats
    """
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    if X.numblocks[1] != 1:
        raise ValueError("a pass needs chunks that span all columns")
    x_graph, x_keys = pass_input_graph(X)
    payload, payload_graph = shared_reference(shared)
    offsets = [int(offset) for offset in np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]])]
    levels = fused_levels(len(x_keys), X.nbytes, split_every)
    token = uuid.uuid4().hex
    layer, final = pass_layer(token, x_keys, offsets, kernel, payload, split_every, levels)
    layer.update(payload_graph)
    name = f"pass-{token}"
    graph = HighLevelGraph({name: layer, X.name: x_graph}, {name: {X.name}, X.name: set()})
    return Delayed(final, graph, layer=name)


def row_chunk_keys(X) -> list:
    """The keys of X's row chunks, in order (X has a single column chunk)."""
    return [row[0] for row in X.__dask_keys__()]


def pass_input_graph(X) -> tuple[dict, list]:
    """X's graph (optimised, unless its chunks are already data, e.g. persisted futures) and row-chunk keys."""
    keys = row_chunk_keys(X)
    graph = X.__dask_graph__()
    if not all(is_data(graph[key]) for key in keys):
        graph = X.__dask_optimize__(graph, X.__dask_keys__())
    return dict(graph), keys


def is_data(value: Any) -> bool:
    """Whether a graph value is data (an array, a Future, a DataNode) rather than a task to run."""
    from dask._task_spec import DataNode, GraphNode
    from dask.core import istask

    return isinstance(value, DataNode) if isinstance(value, GraphNode) else not istask(value)


def shared_reference(shared: Any) -> tuple[Any, dict]:
    """The argument tasks pass for ``shared`` and the graph it needs.

    A Delayed is referenced by its key (its value is computed once); any other value is
    embedded in every task as it is.
    """
    from dask import is_dask_collection
    from dask._task_spec import TaskRef

    if is_dask_collection(shared):
        return TaskRef(shared.key), dict(shared.__dask_graph__())
    return shared, {}


def fused_levels(n_chunks: int, nbytes: int, split_every: int) -> int:
    """How many levels of a pass's merge tree run inside one task (0: every chunk is a task).

    Chunks under ``FUSE_CHUNK_BYTES`` on average fuse one level (``split_every`` chunks
    a task); deeper levels while a task holds at most ``FUSE_TASK_BYTES`` and the pass
    keeps ``MIN_FUSED_TASKS`` tasks. Per-task scheduling costs about as much as a few
    thousand rows of work, so 1,000 chunks of 1,000 rows want 64 to a task.
    """
    if n_chunks <= 1 or nbytes >= FUSE_CHUNK_BYTES * n_chunks:
        return 0
    levels, per_chunk = 1, nbytes / n_chunks
    while split_every**levels < n_chunks:
        size = split_every ** (levels + 1)
        if size * per_chunk > FUSE_TASK_BYTES or -(-n_chunks // size) < MIN_FUSED_TASKS:
            break
        levels += 1
    return levels


def pass_layer(
    token: str, x_keys: list, offsets: list[int], kernel: Kernel, payload: Any, split_every: int, levels: int
) -> tuple[dict, Any]:
    """The tasks of one pass and the key of its result: the :func:`tree_reduce` tree over the chunks.

    Leaves are ``("stats-<token>", i)`` = kernel(chunk i), merges ``("merge-<token>-<depth>", j)``.
    With ``levels`` ≥ 1 the leaves and the first ``levels`` levels of merges run inside one
    task per subtree (:func:`map_merge`): the same merges in the same order, so the same
    bits, with ``split_every ** levels`` times fewer tasks.
    """
    from dask._task_spec import List, Task, TaskRef

    layer: dict = {}

    def leaf(i: int):
        key = (f"stats-{token}", i)
        layer[key] = Task(key, kernel, TaskRef(x_keys[i]), payload, offsets[i])
        return key

    def merge(group: list, depth: int, j: int):
        key = (f"merge-{token}-{depth + max(levels, 1) - 1}", j)
        if levels and depth == 1:  # group holds chunk indices
            blocks = List(*(TaskRef(x_keys[i]) for i in group))
            layer[key] = Task(key, map_merge, kernel, blocks, payload, [offsets[i] for i in group], split_every)
        else:
            layer[key] = Task(key, merge_stats, List(*(TaskRef(k) for k in group)))
        return key

    if len(x_keys) == 1 or not levels:
        return layer, tree_reduce([leaf(i) for i in range(len(x_keys))], split_every, merge)
    return layer, tree_reduce(list(range(len(x_keys))), split_every, merge, first=split_every**levels)


def map_merge(kernel: Kernel, blocks: list[np.ndarray], payload: Any, offsets: list[int], split_every: int) -> Stats:
    """``kernel(block, payload, offset)`` over the blocks, merged by :func:`tree_reduce`: a subtree of a pass."""
    leaves = [kernel(block, payload, offset) for block, offset in zip(blocks, offsets)]
    return tree_reduce(leaves, split_every, lambda group, depth, j: merge_stats(group))


def tree_reduce(leaves: list, split_every: int, combine: Callable[[list, int, int], Any], first: int = 0) -> Any:
    """Merge ``leaves`` in groups of ``split_every``, level by level, until one is left.

    ``combine(group, depth, index)`` merges one group. Both executors use this one
    tree, so a fixed chunking gives bit-identical results everywhere. ``first``
    (a power of ``split_every``) takes the first level in groups of that size: a
    combine that runs those subtrees itself.
    """
    level, depth = list(leaves), 0
    while len(level) > 1:
        size = first if depth == 0 and first else split_every
        depth += 1
        level = [combine(level[i : i + size], depth, j) for j, i in enumerate(range(0, len(level), size))]
    return level[0]


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
        starts = list(range(0, X.shape[0], self.chunk_rows))
        pool = thread_pool(self.threads)
        if pool is None:
            leaves = [kernel(X[i : i + self.chunk_rows], payload, i) for i in starts]
        else:
            # one BLAS thread per pool thread: nested BLAS threads oversubscribe the cores badly
            with single_threaded_blas():
                if getattr(kernel, "maps_tiles", False) and len(starts) < 4 * self.threads:
                    leaves = [kernel(X[i : i + self.chunk_rows], payload, i, map=pool.map) for i in starts]
                else:
                    leaves = list(pool.map(lambda i: kernel(X[i : i + self.chunk_rows], payload, i), starts))
        return tree_reduce(leaves, split_every, lambda group, depth, j: merge_stats(group))

    def gather_rows(self, X: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return X[np.asarray(indices)]


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


class CountingExecutor:
    """Wraps an executor and counts its passes (each reads every chunk once) and row gathers."""

    def __init__(self, inner):
        self.inner, self.passes, self.gathers = inner, 0, 0

    @property
    def client(self):
        return self.inner.client

    def map_reduce(self, *args, **kwargs):
        self.passes += 1
        return self.inner.map_reduce(*args, **kwargs)

    def gather_rows(self, X, indices):
        self.gathers += 1
        return self.inner.gather_rows(X, indices)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def default_worker_count() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


@contextlib.contextmanager
def executor_for(
    client, kind: InputKind, chunk_rows: int = IN_MEMORY_CHUNK_ROWS, scheduler_address: str | None = None,
    stall_timeout: float = STALL_TIMEOUT,
) -> Iterator[Executor]:
    """The executor a fit runs on; a client or local cluster it starts is closed on exit."""
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
    with local_cluster() as local_client:
        yield Executor(local_client, stall_timeout=stall_timeout)


def connect(address: str, timeout: str = "10s", *, tls_ca_file: str | None = None, tls_cert: str | None = None,
            tls_key: str | None = None):
    """A client of the scheduler at ``address``.

    A ``tls://`` address uses the given CA file, client certificate and key, and Dask's
    ``distributed.comm.tls.*`` configuration for any not given; any other address is refused
    while TLS files are given or Dask's configuration asks for TLS (never plaintext instead). Bad
    TLS settings or files are a ConfigError; an unreachable scheduler or a failed TLS handshake
    is a DataError, raised within ``timeout``, with nothing left running.
    """
    from .tls import client_security, open_client

    return open_client(address, timeout, client_security(address, tls_ca_file, tls_cert, tls_key))


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, memory_limit: str | float | None = "auto",
                  log_level: int | None = None):
    """A client of a new LocalCluster of worker processes on 127.0.0.1, closed on exit.

    Scheduler, workers and dashboard listen on 127.0.0.1 only; one thread per worker.
    ``log_level``: what distributed may log in every process (default: errors).
    """
    import logging

    import dask
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=n_workers or default_worker_count(),
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit=memory_limit,
        silence_logs=logging.ERROR if log_level is None else log_level,
        # Ctrl-C and user-error logs (see that module), then any preloads of the user's Dask config
        preload=["dgmm.execution.worker_setup", *dask.config.get("distributed.worker.preload", [])],
    ) as cluster, Client(cluster, set_as_default=False) as client:
        yield client

