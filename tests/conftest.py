"""Shared fixtures: a real LocalCluster of worker processes, data sets, Parquet writers.

The helpers the tests and benchmarks share (starting parameters, assertions, counters, chunking
strategies, real `dask` processes) live in :mod:`dgmm.testing`; tests import them from there.
This folder is on ``sys.path`` (pytest's "prepend" import mode, for this conftest), so tests in
its subfolders import ``faults`` (tests/faults.py) as a top-level module.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from dgmm.data.synthetic import write_parquet
from dgmm.testing import dask_processes, mixture_parquet

TESTS = Path(__file__).parent  # on the PYTHONPATH of worker processes: plugins of tests/faults.py unpickle there


@pytest.fixture(scope="session")
def cluster_client():
    """A real distributed cluster: 2 worker processes on 127.0.0.1."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def scheduler_and_workers(tmp_path_factory):
    """`dask scheduler` plus two `dask worker` processes (each with its nanny) on 127.0.0.1, per test module."""
    with dask_processes(tmp_path_factory.mktemp("dask"), n_workers=2, pythonpath=[TESTS]) as address:
        yield address


@pytest.fixture
def parquet_dir(tmp_path):
    """Write an array as a Parquet data set with small row groups; returns the directory."""

    def write(X: np.ndarray, row_group_size: int = 97, n_files: int = 3, name: str = "data") -> str:
        path = tmp_path / name
        write_parquet(X, path, row_group_size=row_group_size, n_files=n_files)
        return str(path)

    return write


@pytest.fixture(scope="session")
def fit_data(tmp_path_factory) -> str:
    """60,000 rows x 3 features in 12 row groups of 2 files: the data the signal and nightly-run tests fit."""
    return mixture_parquet(tmp_path_factory.mktemp("fit-data"), 60_000, 3, 6, 5_000, 2)


# Tests that start clusters, processes, servers or notebooks: `make test-fast` leaves them out
# (`pytest -m "not slow"`); `make test` runs everything.
SLOW_FOLDERS = {"system", "cli"}
SLOW_FIXTURES = {"cluster_client", "scheduler_and_workers", "fit_data"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: starts clusters, processes, servers or notebooks (left out by make test-fast)"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in SLOW_FOLDERS or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
