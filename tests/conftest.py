"""Shared fixtures: a real LocalCluster of worker processes, data sets, Parquet writers."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dgmm.datasets import write_parquet
from dgmm.params import MixtureParams


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


@pytest.fixture
def parquet_dir(tmp_path):
    """Write an array as a Parquet data set with small row groups; returns the directory."""

    def write(X: np.ndarray, row_group_size: int = 97, n_files: int = 3, name: str = "data") -> str:
        path = tmp_path / name
        write_parquet(X, path, row_group_size=row_group_size, n_files=n_files)
        return str(path)

    return write


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
