"""Synthetic Gaussian mixtures and writing them as Parquet (demos, tests, benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..kernels.params import MixtureParams
from .publish import published_directory


def random_mixture(n_components: int, n_features: int, *, seed: int = 0, separation: float = 6.0) -> MixtureParams:
    """A random full-covariance mixture whose means lie ``separation`` apart on average."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.normal(scale=separation / np.sqrt(2.0), size=(n_components, n_features))
    covariances = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        a = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
        covariances[k] = a @ a.T + 0.5 * np.eye(n_features)
    return MixtureParams.from_covariances(weights, means, covariances, "full")


def sample_mixture(params: MixtureParams, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn from a full-covariance mixture, in random order.

    Returns
    -------
    X : ndarray of shape (n_samples, d)
    y : ndarray of shape (n_samples,), the true component
    """
    rng = np.random.default_rng(seed)
    y = rng.choice(params.n_components, size=n_samples, p=params.weights)
    X = np.empty((n_samples, params.n_features))
    for k in range(params.n_components):
        rows = y == k
        chol = np.linalg.cholesky(params.covariances[k])
        X[rows] = params.means[k] + rng.standard_normal((int(rows.sum()), params.n_features)) @ chol.T
    return X, y


def write_parquet(
    X: np.ndarray,
    path: str | os.PathLike,
    *,
    columns: list[str] | None = None,
    row_group_size: int = 65_536,
    n_files: int = 1,
    overwrite: bool = True,
) -> list[str]:
    """Write ``X`` (n, d) as ``n_files`` Parquet files in directory ``path``, published whole.

    Columns are named ``x0, x1, …`` unless ``columns`` is given. An existing ``path`` is
    replaced only with ``overwrite`` (:func:`dgmm.data.publish.published_directory`).
    """
    columns = columns or [f"x{j}" for j in range(X.shape[1])]
    names = []
    with published_directory(path, overwrite) as staging:
        for i, rows in enumerate(np.array_split(np.arange(X.shape[0]), n_files)):
            table = pa.table({c: X[rows, j] for j, c in enumerate(columns)})
            names.append(f"part-{i:05d}.parquet")
            pq.write_table(table, staging / names[-1], row_group_size=row_group_size)
    return [str(Path(path) / n) for n in names]


def write_mixture_parquet(
    path: str | os.PathLike,
    n_samples: int,
    n_features: int,
    n_components: int,
    *,
    seed: int = 0,
    row_group_size: int = 65_536,
    n_files: int = 1,
    overwrite: bool = True,
) -> MixtureParams:
    """Sample a random mixture straight to Parquet, one row group at a time (memory: one group).

    The directory ``path`` is published whole; an existing one is replaced only with ``overwrite``.
    Returns the generating parameters.
    """
    truth = random_mixture(n_components, n_features, seed=seed)
    columns = [f"x{j}" for j in range(n_features)]
    schema = pa.schema([(c, pa.float64()) for c in columns])
    with published_directory(path, overwrite) as staging:
        for i, rows in enumerate(np.array_split(np.arange(n_samples), n_files)):
            with pq.ParquetWriter(staging / f"part-{i:05d}.parquet", schema) as writer:
                for j, start in enumerate(range(0, len(rows), row_group_size)):
                    m = min(row_group_size, len(rows) - start)
                    X, _ = sample_mixture(truth, m, seed=np.random.SeedSequence([seed, i, j]).generate_state(1)[0])
                    writer.write_table(pa.table({c: X[:, k] for k, c in enumerate(columns)}, schema=schema))
    return truth
