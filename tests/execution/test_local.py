"""The in-process executor and the defaults that size it and the local cluster to the machine."""

import os

import numpy as np
from threadpoolctl import threadpool_info

import dgmm
from dgmm.execution.clusters import default_worker_count
from dgmm.execution.local import in_process_threads


def blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_defaults_use_every_core_this_process_may_use():
    cores = len(os.sched_getaffinity(0))
    assert in_process_threads() == cores
    assert default_worker_count() == cores


def test_a_fit_runs_blas_on_one_thread_and_restores_it():
    # the M-step's BLAS calls left OpenBLAS threads spinning on the cores the next pass needed
    X = np.random.default_rng(0).normal(size=(3000, 4))
    before, during = blas_threads(), []
    dgmm.GaussianMixture(2, max_iter=3, tol=0.0).fit(X, on_iteration=lambda report: during.append(blas_threads()))
    assert during and all(threads == [1] * len(before) for threads in during)
    assert blas_threads() == before


def test_overlapping_holds_of_single_threaded_blas_restore_the_limit_once_the_last_ends():
    from dgmm.execution.blas import single_threaded_blas

    before = blas_threads()
    first, second = single_threaded_blas(), single_threaded_blas()  # as two fits in two threads
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first fit ends while the second runs
    assert blas_threads() == [1] * len(before)
    second.__exit__(None, None, None)
    assert blas_threads() == before
