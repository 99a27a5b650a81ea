"""Dask clusters: the current client, a local cluster of worker processes, a remote (TLS) scheduler."""

from __future__ import annotations

import contextlib
import logging
import sys


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
