"""The only users of dask and distributed: the graph of a pass, its tree reduce, the executors that run
passes (a cluster's or this process's), local and remote clusters, TLS, deadlines."""

from .clusters import connect, current_client, local_cluster
from .executor import CountingExecutor, Executor, executor_for, executors
from .local import InProcessExecutor
from .passes import build_pass, tree_reduce

__all__ = [
    "connect",
    "CountingExecutor",
    "current_client",
    "Executor",
    "executor_for",
    "executors",
    "InProcessExecutor",
    "build_pass",
    "local_cluster",
    "tree_reduce",
]
