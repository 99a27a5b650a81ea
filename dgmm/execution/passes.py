"""The graph of one pass: map a chunk kernel over the row chunks, merge the results in a tree.

A pass applies a pure kernel ``kernel(block, payload, row_offset) -> Stats`` to every row chunk
of a Dask array and merges the results with ``+`` in a tree of fan-in ``split_every``; the
payload (the broadcast parameters) is one key of the same graph. The plan of a pass:

1. take the (optimised) graph of the input array and the key of every row chunk;
2. put the payload into the graph once (:func:`shared_reference`);
3. group consecutive chunks into fused tasks when they are small (:func:`fused_levels`): each
   such task runs the kernel on its chunks and merges them itself (:func:`map_merge`);
4. merge the tasks' results in a tree of fan-in ``split_every`` (:func:`tree_reduce`);
5. the root is the pass's one output key: one ``compute`` per pass (the executor's).
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import numpy as np

from ..kernels.stats import Stats, merge_stats
from .blas import pinned, single_threaded_blas

# A task costs milliseconds of scheduler and worker time, as much as the kernel on ~100 kB of rows:
# passes over small chunks run whole subtrees of their merge tree to a task (fused_levels).
FUSE_CHUNK_BYTES = 4 * 2**20  # chunks smaller than this (on average) run several to a task
FUSE_TASK_BYTES = 16 * 2**20  # a task runs deeper subtrees of small chunks up to this much data...
MIN_FUSED_TASKS = 16  # ...while a pass keeps at least this many tasks
Kernel = Callable[[np.ndarray, Any, int], Stats]


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
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

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
    placement = getattr(X.__dask_graph__().layers.get(X.name), "annotations", None)  # placed_in_row_ranges'
    x_layer = MaterializedLayer(x_graph, annotations=placement) if placement else x_graph
    graph = HighLevelGraph({name: layer, X.name: x_layer}, {name: {X.name}, X.name: set()})
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
        layer[key] = Task(key, pinned(kernel), TaskRef(x_keys[i]), payload, offsets[i])
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
    """``kernel(block, payload, offset)`` over the blocks, merged by :func:`tree_reduce`: a subtree of a pass
    (BLAS on one thread, as every pass kernel runs: :mod:`dgmm.execution.blas`)."""
    with single_threaded_blas():
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
