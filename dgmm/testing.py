"""Helpers shared by the test suite (tests/) and the benchmarks (benchmarks/); nothing in dgmm imports this.

Deterministic starting parameters and random mixtures, closeness and bit-identity assertions,
counters of Dask computes and of passes, the scikit-learn parity data sets, Parquet data sets
real `dask scheduler`/`dask worker` processes, the fused CUDA kernels compiled for the host, and hypothesis strategies for chunkings.

Only the package's own dependencies are imported at module level; hypothesis (a test extra)
is imported inside the functions that build strategies.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
from dask.callbacks import Callback

from .data.synthetic import random_mixture, sample_mixture, write_parquet
from .kernels.device.cuda import Operands, kernel_source
from .kernels.gaussian import COVARIANCE_TYPES
from .kernels.params import MixtureParams
from .persist.fitted import ATTRIBUTES

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

# ---------------------------------------------------------------- parameters and assertions

FITTED = ATTRIBUTES  # every fitted attribute of a mixture (dgmm.persist.fitted)


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


def assert_identical(a, b) -> None:
    """Two fitted models with the same bits: every fitted attribute (parameters, log-likelihood history,
    iterations, feature names, dropped rows), and the same ones absent."""
    for attr in FITTED:
        assert hasattr(a, attr) == hasattr(b, attr), f"{attr} is set on only one of the models"
        if hasattr(a, attr):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


def assert_close(actual, desired, rtol: float, what: str = "") -> None:
    """Relative closeness with an absolute floor of rtol times the largest magnitude."""
    actual = np.asarray(actual, dtype=float)
    desired = np.asarray(desired, dtype=float)
    scale = max(float(np.max(np.abs(desired))), 1e-300) if desired.size else 1.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=what)


def assert_stats_match(got, ref, covariance_type: str, rtol: float) -> None:
    """Two chunks' Stats within ``rtol`` of each statistic's scale: |loglik|, the total weight, max |S2|, and for
    S1 a bound on Σ_k Σ r‖x − μ_k‖, Σ_k √(S0_k tr S2_k) (√(Σ S0 · tr S2) tied), since S1 itself nears 0."""
    assert (got.n_rows, got.weight, got.n_zero_weight) == (ref.n_rows, ref.weight, ref.n_zero_weight)
    assert abs(got.loglik - ref.loglik) <= rtol * abs(ref.loglik)
    np.testing.assert_allclose(got.s0, ref.s0, rtol=0, atol=rtol * ref.weight)
    if covariance_type == "tied":
        scale = np.sqrt(ref.weight * np.trace(ref.s2))
    else:
        trace = np.trace(ref.s2, axis1=1, axis2=2) if covariance_type == "full" else ref.s2.sum(axis=1)
        scale = np.sum(np.sqrt(ref.s0 * trace))
    np.testing.assert_allclose(got.s1, ref.s1, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(got.s2, ref.s2, rtol=0, atol=rtol * np.max(np.abs(ref.s2)))


# ---------------------------------------------------------------- the scikit-learn parity data sets

DATASETS = ["1d_separated", "single_component", "d20_separated", "2d_overlapping"]


def _blobs(rng, sizes, means, scales):
    return np.vstack([rng.normal(m, s, size=(n, len(np.atleast_1d(m)))) for n, m, s in zip(sizes, means, scales)])


def make_dataset(name: str):
    """(X, K) for the reference data sets (``DATASETS``) of the scikit-learn parity tests and benchmark."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "1d_separated":
        return _blobs(rng, [300, 200], [[0.0], [8.0]], [1.0, 2.0]), 2
    if name == "single_component":
        return rng.normal(size=(400, 3)) @ np.array([[2, 0, 0], [1, 1, 0], [0, 0.5, 0.3]]), 1
    if name == "d20_separated":
        return _blobs(
            rng,
            [250, 200, 150],
            [np.zeros(20), np.full(20, 3.0), np.r_[np.full(10, -3.0), np.zeros(10)]],
            [1.0, 1.5, 0.7],
        ), 3
    if name == "2d_overlapping":
        return _blobs(rng, [300, 300, 200], [[0.0, 0.0], [1.0, 0.5], [0.5, 1.5]], [1.0, 0.8, 1.2]), 3
    raise KeyError(name)


# ---------------------------------------------------------------- counting computes and passes


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
    from .execution import CountingExecutor, InProcessExecutor, executors

    counter = CountingExecutor(None)

    def in_process(kind, chunk_rows):
        counter.inner = InProcessExecutor(chunk_rows)
        return counter

    with executors(in_process):
        yield counter


@contextlib.contextmanager
def simulated_gpu() -> Iterator[Any]:
    """Inside the block, ``device="cuda"`` (and ``"auto"`` for Parquet) is array-api-strict's
    ``device1``: chunks reach it and are computed there as on a GPU, which it resembles in refusing
    conversion to NumPy. Yields the :class:`~dgmm.data.devices.DeviceTarget` (pickled into the tasks,
    so worker processes use it too)."""
    from .data.devices import DeviceTarget, simulated_device

    target = DeviceTarget("array_api_strict", "device1")
    with simulated_device(target):
        yield target


def device_cache_reports(client: Any) -> dict[str, dict]:
    """Every worker's :meth:`~dgmm.data.devices.DeviceCache.report`, by worker address."""
    from .data.devices import device_cache

    return client.run(lambda: device_cache().report())


# ---------------------------------------------------------------- the CUDA kernels on the host


class HostLauncher:
    """The same kernels compiled by the host's C compiler, each a loop over its thread indices (for tests)."""

    xp = np

    def __init__(self, compiler: str | None = None):
        self.compiler = compiler or shutil.which("cc") or shutil.which("gcc")
        if self.compiler is None:
            raise RuntimeError("no C compiler (cc or gcc) on PATH")
        self._dir = Path(tempfile.mkdtemp(prefix="dgmm-cuda-estep-"))
        self._libs: dict[tuple, ctypes.CDLL] = {}

    def _lib(self, key: tuple) -> ctypes.CDLL:
        lib = self._libs.get(key)
        if lib is None:
            source = kernel_source(*key)
            stem = hashlib.sha256(source.encode()).hexdigest()[:16]
            c_file, so_file = self._dir / f"{stem}.c", self._dir / f"{stem}.so"
            c_file.write_text(source)
            subprocess.run(
                [self.compiler, "-O2", "-shared", "-fPIC", "-DDGMM_HOST", "-o", str(so_file), str(c_file), "-lm"],
                check=True,
                capture_output=True,
                text=True,
            )
            lib = self._libs[key] = ctypes.CDLL(str(so_file))
        return lib

    def compile(self, key: tuple) -> None:
        self._lib(key)

    def resp(self, key, n, X, sr, sc, W, has_w, ops: Operands, R, LL) -> None:
        ll, p, i, f = ctypes.c_longlong, HostLauncher.pointer, ctypes.c_int, ctypes.c_double
        self._lib(key).dgmm_resp(
            ll(n),
            p(X),
            ll(sr),
            ll(sc),
            i(int(has_w)),
            p(W),
            p(ops.centre),
            p(ops.shift),
            p(ops.matrix),
            p(ops.shift_u),
            p(ops.log_norm),
            f(ops.floor),
            p(R),
            p(LL),
        )

    def stats(self, key, threads, n, rows, X, sr, sc, ops: Operands, R, S1P, S2P) -> None:
        ll, p = ctypes.c_longlong, HostLauncher.pointer
        self._lib(key).dgmm_stats(
            ll(threads), ll(n), ll(rows), p(X), ll(sr), ll(sc), p(ops.centre), p(ops.shift), p(R), p(S1P), p(S2P)
        )

    @staticmethod
    def pointer(a: np.ndarray) -> ctypes.c_void_p:
        return ctypes.c_void_p(a.ctypes.data)


# ---------------------------------------------------------------- chunkings (hypothesis strategies)


def chunk_cuts(n_rows: int, max_cuts: int) -> SearchStrategy[list[int]]:
    """A hypothesis strategy: sorted unique cut points in 1..n_rows-1 (at most ``max_cuts``), i.e.
    an uneven chunking of ``n_rows`` rows into non-empty blocks (none: one chunk)."""
    from hypothesis import strategies as st

    if n_rows < 2:
        return st.just([])
    return st.lists(st.integers(1, n_rows - 1), max_size=max_cuts, unique=True).map(sorted)


def chunks_of(X: np.ndarray, cuts: Iterable[int]) -> list[tuple[int, np.ndarray]]:
    """(row_offset, block) pairs for the chunking that cuts ``X`` at the positions ``cuts``
    (sorted and deduplicated here; empty blocks are left out)."""
    edges = [0, *sorted(set(cuts)), len(X)]
    return [(a, X[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a]


# ---------------------------------------------------------------- Parquet data sets and real clusters

BIN = Path(sys.executable).parent  # the `dgmm` and `dask` commands of this environment


def mixture_parquet(folder: Path, n_rows: int, n_features: int, seed: int, row_group_size: int, n_files: int) -> str:
    """Rows of a mixture of 3 components 3 σ apart written as Parquet to ``folder``/data; its path."""
    X, _ = sample_mixture(random_mixture(3, n_features, seed=seed, separation=3.0), n_rows, seed=seed)
    write_parquet(X, folder / "data", row_group_size=row_group_size, n_files=n_files)
    return str(folder / "data")


def client_of(address: str, tls: dict[str, str] | None = None) -> Any:
    """A plain ``distributed.Client`` of ``address`` (with the client side of ``tls``, if given)."""
    from distributed import Client, Security

    security = None
    if tls:
        security = Security(
            tls_ca_file=tls["ca"], tls_client_cert=tls["cert"], tls_client_key=tls["key"], require_encryption=True
        )
    return Client(address, set_as_default=False, security=security)


@contextlib.contextmanager
def dask_processes(
    folder: Path,
    n_workers: int = 2,
    tls: dict[str, str] | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    pythonpath: Sequence[str | os.PathLike] = (),
) -> Iterator[str]:
    """`dask scheduler` plus ``n_workers`` `dask worker` processes (with nannies) on 127.0.0.1.

    ``tls`` ({"ca": ..., "cert": ..., "key": ...}, PEM files) makes every process listen and
    connect over TLS with that CA and certificate. Yields the scheduler address once all workers
    have joined; terminates the processes on exit. ``env``: more environment variables for
    them (e.g. Dask settings such as ``DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE``). ``pythonpath``:
    folders put first on their PYTHONPATH (e.g. tests/, so that worker plugins of tests/faults.py
    unpickle in these processes).
    """
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, **(env or {})}
    if path := os.pathsep.join(filter(None, [*map(str, pythonpath), env.get("PYTHONPATH")])):
        env["PYTHONPATH"] = path
    tls_args = ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]] if tls else []
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    host = "tls://127.0.0.1" if tls else "127.0.0.1"
    procs = [
        subprocess.Popen(
            [
                BIN / "dask",
                "scheduler",
                "--host",
                host,
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                scheduler_file,
                *tls_args,
            ],
            **quiet,
        )
    ]
    try:
        deadline = time.monotonic() + timeout
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(n_workers):
            procs.append(
                subprocess.Popen(
                    [
                        BIN / "dask",
                        "worker",
                        "--scheduler-file",
                        scheduler_file,
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--memory-limit",
                        "2GiB",
                        *tls_args,
                    ],
                    **quiet,
                )
            )
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


__all__ = [
    "BIN",
    "COVARIANCE_TYPES",
    "ComputeCounter",
    "DATASETS",
    "FITTED",
    "assert_close",
    "assert_identical",
    "chunk_cuts",
    "chunks_of",
    "client_of",
    "counted_in_process",
    "dask_processes",
    "initial_params",
    "make_dataset",
    "mixture_parquet",
    "random_params",
]
