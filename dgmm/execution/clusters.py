"""Dask clusters: the current client, a local cluster of worker processes, a remote (TLS) scheduler."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data.devices import DeviceTarget


def current_client():
    """The current ``distributed`` client, or None (never imports distributed itself)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def default_worker_count() -> int:
    """Worker processes of a local cluster: one per usable CPU, each with one thread."""
    from .local import usable_cpus

    return usable_cpus()


def connect(
    address: str,
    timeout: str = "10s",
    *,
    tls_ca_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
):
    """A client of the scheduler at ``address``.

    A ``tls://`` address uses the given CA file, client certificate and key, and Dask's
    ``distributed.comm.tls.*`` configuration for any not given; any other address is refused
    while TLS files are given or Dask's configuration asks for TLS (never plaintext instead). Bad
    TLS settings or files are a ConfigError; an unreachable scheduler or a failed TLS handshake
    is a DataError, raised within ``timeout``, with nothing left running.
    """
    from .tls import client_security, open_client

    return open_client(address, timeout, client_security(address, tls_ca_file, tls_cert, tls_key))


def check_main_guard() -> None:
    """Refuse, in one line, to start worker processes from a script's unguarded module-level code.

    Worker processes are started by ``spawn`` (distributed's default), which imports the ``__main__``
    script again in each of them: a fit at the script's top level then runs again in every worker, and
    multiprocessing refuses with hundreds of lines of tracebacks. The script's module-level line that
    led here is looked up in its source: inside ``if __name__ == "__main__":`` is fine.
    """
    import ast

    import dask

    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "fork":
        return
    main = sys.modules.get("__main__")
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == "<module>" and main is not None and frame.f_globals is vars(main)
    ):
        frame = frame.f_back
    path = getattr(main, "__file__", None)
    if frame is None or not path:
        return  # an interactive session or notebook: nothing imports it again
    try:
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    line = frame.f_lineno

    def is_guard(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and {ast.unparse(node.test.left), *(ast.unparse(c) for c in node.test.comparators)}
            >= {"__name__", "'__main__'"}
            and node.lineno <= line <= (node.end_lineno or node.lineno)
        )

    if not any(is_guard(node) for node in ast.walk(tree)):
        from ..errors import ConfigError

        raise ConfigError(
            f"{path}, line {line}: this starts a local Dask cluster, whose worker processes import the "
            'script again; put the code that fits under if __name__ == "__main__": (or pass a '
            "client of a cluster started elsewhere)"
        )


@contextlib.contextmanager
def local_cluster(
    n_workers: int | None = None,
    memory_limit: str | float | None = "auto",
    log_level: int | None = None,
    device: DeviceTarget | None = None,
):
    """A client of a new LocalCluster of worker processes on 127.0.0.1, closed on exit.

    Scheduler, workers and dashboard listen on 127.0.0.1 only; one thread per worker.
    ``log_level``: what distributed may log in every process (default: errors).

    With a ``device`` (a GPU): one worker per GPU (``n_workers`` of them sharing the GPUs in turn when
    given), each with a thread per core of its share (:func:`gpu_worker_threads`): streaming Parquet,
    decoding is the slow step, so chunks decode while others are copied or computed; dask-cuda's
    ``LocalCUDACluster`` when it is installed (it pins each worker
    to its GPU and CPUs), else a LocalCluster whose worker ``i`` sees only GPU ``i mod count``.
    """
    import logging

    import dask
    from distributed import Client, LocalCluster

    check_main_guard()
    options = dict(
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit=memory_limit,
        silence_logs=logging.ERROR if log_level is None else log_level,
        # Ctrl-C and user-error logs (see that module), then any preloads of the user's Dask config
        preload=["dgmm.execution.worker_setup", *dask.config.get("distributed.worker.preload", [])],
    )
    if device is None:
        cluster = LocalCluster(n_workers=n_workers or default_worker_count(), threads_per_worker=1, **options)
    elif device.library == "cupy" and not n_workers and importlib.util.find_spec("dask_cuda") is not None:
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(threads_per_worker=gpu_worker_threads(device.count()), **options)
    else:
        workers = n_workers or device.count()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=gpu_worker_threads(workers), **options)
    with cluster, Client(cluster, set_as_default=False) as client:
        if device is not None and type(cluster) is LocalCluster:
            from .worker_setup import OneGpuEach

            client.register_plugin(OneGpuEach(device, device.count()))
        yield client


def gpu_worker_threads(workers: int) -> int:
    """Threads of each of ``workers`` GPU workers: the usable cores shared out, at least 2 (one decodes
    while another's chunk is on the GPU)."""
    from .local import usable_cpus

    return max(2, usable_cpus() // max(1, workers))


def cluster_log_level(debug: bool) -> int:
    """What distributed may log in a command's processes: nothing but crashes (its tracebacks for
    a lost scheduler or worker, heartbeats and shutdown would bury the one-line error), or
    everything from warnings up when debugging."""
    return logging.WARNING if debug else logging.CRITICAL


def quiet_cluster_logs(debug: bool) -> None:
    """Apply :func:`cluster_log_level` to distributed's loggers in this process.

    After importing distributed: its import sets the levels of its own loggers from its config.
    """
    import distributed  # noqa: F401

    for name in [*logging.root.manager.loggerDict, "distributed", "tornado", "asyncio"]:
        if name.split(".")[0] in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(cluster_log_level(debug))
