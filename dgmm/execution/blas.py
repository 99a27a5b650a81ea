"""BLAS held to one thread while dgmm's numeric work runs, whatever process runs it.

OpenBLAS's result bits can depend on its thread count: with some CPUs' kernel sets (measured with
``OPENBLAS_CORETYPE=Sandybridge`` or ``Nehalem``, as a VM that hides AVX2 from ``cpuid`` gets) a
(10, 257) x (257, 256) GEMM splits its work differently on 2 threads than on 1, and a chunk's
statistics differed in the 13th digit between a client process (BLAS on every core) and a Dask
worker (one thread, from the nanny's environment). Every pass kernel therefore runs with BLAS on
one thread (:func:`pinned`), so a fixed chunking gives the same bits in every process.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator

_BLAS_LOCK = threading.Lock()
_BLAS_HOLD: dict[str, Any] = {"holders": 0, "limiter": None, "controller": None}


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS (OpenBLAS, MKL, ...) to one thread while inside, via threadpoolctl.

    Held for a whole fit (:func:`~dgmm.execution.executor.executor_for`), not only in passes:
    after a threaded BLAS call (the M-step's Cholesky factors), OpenBLAS's threads spin on
    every core for a while and slow the next pass's threads (docs/benchmarks.md has the figures).
    Counted: the first holder sets the limit and the last one out restores the user's, so fits
    in several threads at once leave it as they found it.
    """
    with _BLAS_LOCK:
        if _BLAS_HOLD["holders"] == 0:
            if _BLAS_HOLD["controller"] is None:
                import scipy.linalg.cython_blas  # noqa: F401  the BLAS numba's kernels call: loaded before the
                from threadpoolctl import ThreadpoolController  # controller lists the libraries it limits

                _BLAS_HOLD["controller"] = ThreadpoolController()
            _release_blas_control()
            _BLAS_HOLD["limiter"] = _BLAS_HOLD["controller"].limit(limits=1, user_api="blas")
        _BLAS_HOLD["holders"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_HOLD["holders"] -= 1
            if _BLAS_HOLD["holders"] == 0:
                _release_blas_control()  # the last holder out may not be the thread that set the limit
                _BLAS_HOLD["limiter"].restore_original_limits()
                _BLAS_HOLD["limiter"] = None
                _release_blas_control()


def _release_blas_control() -> None:
    """Let this thread change OpenBLAS's thread count next.

    threadpoolctl 3.8 lets only one thread (the first to set a limit) change OpenBLAS's process-wide
    thread count and silently ignores the others; dgmm's holds are counted under a lock of their own, in
    whatever threads run the kernels (Dask's threaded scheduler, a worker's executor), so the thread
    that takes or ends the hold is given control for that step.
    """
    import threadpoolctl

    controller = getattr(threadpoolctl, "OpenBLASController", None)
    if controller is not None and hasattr(controller, "clear_controlling_thread"):
        controller.clear_controlling_thread(force=True)


def pinned(kernel: Callable) -> Callable:
    """``kernel`` called with BLAS on one thread (a picklable callable, for tasks that run anywhere)."""
    return functools.partial(_call_pinned, kernel)


def _call_pinned(kernel: Callable, *args: Any, **kwargs: Any) -> Any:
    with single_threaded_blas():
        return kernel(*args, **kwargs)
