"""Shared fixtures: a real LocalCluster of worker processes, data sets, Parquet writers."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from dask.callbacks import Callback

from dgmm.data.synthetic import write_parquet
from dgmm.kernels.params import MixtureParams


@pytest.fixture(scope="session")
def cluster_client():
    """A real distributed cluster: 2 worker processes on 127.0.0.1."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent


@contextlib.contextmanager
def dask_processes(folder: Path, n_workers: int = 2, tls: dict[str, str] | None = None,
                   timeout: float = 60, env: dict[str, str] | None = None) -> Iterator[str]:
    """`dask scheduler` plus ``n_workers`` `dask worker` processes (with nannies) on 127.0.0.1.

    ``tls`` ({"ca": ..., "cert": ..., "key": ...}, PEM files) makes every process listen and
    connect over TLS with that CA and certificate. Yields the scheduler address once all workers
    have joined; terminates the processes on exit. ``env``: more environment variables for
    them (e.g. Dask settings such as ``DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    # the tests folder on the path: worker plugins of tests/faults.py unpickle in these processes
    env = {**os.environ, **(env or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    tls_args = ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]] if tls else []
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    host = "tls://127.0.0.1" if tls else "127.0.0.1"
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", host, "--port", "0", "--no-dashboard",
                               "--scheduler-file", scheduler_file, *tls_args], **quiet)]
    try:
        deadline = time.monotonic() + timeout
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(n_workers):
            procs.append(subprocess.Popen([BIN / "dask", "worker", "--scheduler-file", scheduler_file, "--nthreads",
                                           "1", "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "2GiB",
                                           *tls_args], **quiet))
        address = json.loads(scheduler_file.read_text())["address"]
        if n_workers:
            with client_of(address, tls) as client:
                client.wait_for_workers(n_workers, timeout=timeout)
        yield address
    finally:  # workers first: a worker outliving its scheduler spends seconds trying to reconnect
        for group in (procs[1:], procs[:1]):
            for proc in group:
                proc.terminate()
            for proc in group:
                proc.wait(timeout=30)


@pytest.fixture(scope="module")
def scheduler_and_workers(tmp_path_factory):
    """`dask scheduler` plus two `dask worker` processes (each with its nanny) on 127.0.0.1, per test module."""
    with dask_processes(tmp_path_factory.mktemp("dask"), n_workers=2) as address:
        yield address


def client_of(address: str, tls: dict[str, str] | None = None) -> Any:
    """A plain ``distributed.Client`` of ``address`` (with the client side of ``tls``, if given)."""
    from distributed import Client, Security

    security = None
    if tls:
        security = Security(tls_ca_file=tls["ca"], tls_client_cert=tls["cert"], tls_client_key=tls["key"],
                            require_encryption=True)
    return Client(address, set_as_default=False, security=security)


@pytest.fixture
def parquet_dir(tmp_path):
    """Write an array as a Parquet data set with small row groups; returns the directory."""

    def write(X: np.ndarray, row_group_size: int = 97, n_files: int = 3, name: str = "data") -> str:
        path = tmp_path / name
        write_parquet(X, path, row_group_size=row_group_size, n_files=n_files)
        return str(path)

    return write


def mixture_parquet(folder: Path, n_rows: int, n_features: int, seed: int, row_group_size: int, n_files: int) -> str:
    """Rows of a mixture of 3 components 3 σ apart written as Parquet to ``folder``/data; its path."""
    from dgmm.data.synthetic import random_mixture, sample_mixture

    X, _ = sample_mixture(random_mixture(3, n_features, seed=seed, separation=3.0), n_rows, seed=seed)
    write_parquet(X, folder / "data", row_group_size=row_group_size, n_files=n_files)
    return str(folder / "data")


@pytest.fixture(scope="session")
def fit_data(tmp_path_factory) -> str:
    """60,000 rows x 3 features in 12 row groups of 2 files: the data the signal and nightly-run tests fit."""
    return mixture_parquet(tmp_path_factory.mktemp("fit-data"), 60_000, 3, 6, 5_000, 2)


def initial_params(X: np.ndarray, n_components: int, covariance_type: str, seed: int = 0) -> dict:
    """Deterministic weights_init / means_init / precisions_init for parity tests."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), n_components, replace=False)]
    weights = np.full(n_components, 1.0 / n_components)
    cov = np.atleast_2d(np.cov(X.T))
    prec = np.linalg.inv(cov)
    precisions = {
        "full": np.repeat(prec[None], n_components, axis=0),
        "tied": prec,
        "diag": np.repeat(1.0 / np.diag(cov)[None], n_components, axis=0),
        "spherical": np.full(n_components, 1.0 / np.diag(cov).mean()),
    }[covariance_type]
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}


FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_", "lower_bounds_", "n_iter_")


def assert_identical(a, b) -> None:
    """Two fitted models with the same bits (parameters, log-likelihood history, iterations)."""
    for attr in FITTED:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


def assert_close(actual, desired, rtol: float, what: str = "") -> None:
    """Relative closeness with an absolute floor of rtol times the largest magnitude."""
    actual = np.asarray(actual, dtype=float)
    desired = np.asarray(desired, dtype=float)
    scale = max(float(np.max(np.abs(desired))), 1e-300) if desired.size else 1.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=what)


def random_params(rng: np.random.Generator, K: int, d: int, covariance_type: str) -> MixtureParams:
    """Random valid mixture parameters of any covariance type."""
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(size=(K, d)) * 3
    if covariance_type == "full":
        a = rng.normal(size=(K, d, d))
        cov = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.5, 2.0, size=(K, d))
    else:
        cov = rng.uniform(0.5, 2.0, size=K)
    return MixtureParams.from_covariances(weights, means, cov, covariance_type)


COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


class ComputeCounter(Callback):
    """Counts computes (graph executions) on Dask's local schedulers."""

    def __init__(self):
        super().__init__()
        self.computes = 0

    def _start(self, dsk):
        self.computes += 1


@contextlib.contextmanager
def counted_in_process() -> Iterator[Any]:
    """Every in-memory ``GaussianMixture.fit`` inside runs on one in-process executor whose
    passes and gathers are counted (a :class:`~dgmm.execution.CountingExecutor`)."""
    from dgmm.execution import CountingExecutor, InProcessExecutor, executors

    counter = CountingExecutor(None)

    def in_process(kind, chunk_rows):
        counter.inner = InProcessExecutor(chunk_rows)
        return counter

    with executors(in_process):
        yield counter
