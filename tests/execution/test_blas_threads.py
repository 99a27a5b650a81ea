"""A pass's bits do not depend on how many threads BLAS may use in the process that runs it.

OpenBLAS's kernel sets for some CPUs split a GEMM differently on 2 threads than on 1 (the 13th
digit of a chunk's statistics moved between a client process, BLAS on every core, and a worker,
one thread). ``OPENBLAS_CORETYPE`` forces such a kernel set on any x86-64 CPU, so this test
fails on every machine where the passes leave BLAS's thread count to the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import dask.array as da
    import numpy as np
    from threadpoolctl import threadpool_limits

    from dgmm.algorithms.em import em_kernel
    from dgmm.execution import Executor, InProcessExecutor
    from dgmm.kernels.posterior import log_density
    from dgmm.execution.rows import map_rows
    from dgmm.testing import random_params

    params = random_params(np.random.default_rng(0), 32, 256, "full")
    X = da.zeros((200, 256), chunks=(10, 256))
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(400, 256))
    results = {}
    for threads in (1, 4):
        with threadpool_limits(threads, user_api="blas"):
            sync = Executor(scheduler="sync").map_reduce(X, em_kernel, params)
            threaded = Executor(scheduler="threads").map_reduce(X, em_kernel, params)
            local = InProcessExecutor(10, threads=1).map_reduce(np.zeros((200, 256)), em_kernel, params)
            scores = map_rows(da.from_array(Y, chunks=(50, 256)), log_density, params, None, np.float64)
            results[threads] = (sync, threaded, local, scores.compute(scheduler="sync"))
    for one, many in zip(results[1], results[4]):
        if isinstance(one, np.ndarray):
            assert np.array_equal(one, many), "scores"
            continue
        for field in ("loglik", "s0", "s1", "s2"):
            assert np.array_equal(getattr(one, field), getattr(many, field)), field
    print("same bits")
""")


@pytest.mark.parametrize("coretype", ["Sandybridge", "Nehalem"])
def test_pass_bits_do_not_depend_on_the_blas_thread_count(coretype):
    if os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("OPENBLAS_CORETYPE names x86-64 kernel sets")
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype, "OPENBLAS_NUM_THREADS": "4"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "same bits" in run.stdout
