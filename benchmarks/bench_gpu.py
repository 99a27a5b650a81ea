"""Seconds per EM iteration on a GPU: dgmm on CuPy arrays against scikit-learn's array-API path on torch
CUDA tensors and dgmm on every CPU core, side by side in one run, with GPU memory peaks.

    python benchmarks/bench_gpu.py [--shapes 1000000x16x8:full,...] [--iters 5] [--repeats 3]
    python benchmarks/bench_gpu.py --xp strict --shapes 20000x16x8:full   # a CPU smoke run, no GPU

Every fit starts from the same weights/means/precisions (``dgmm.testing.initial_params`` on the
first 100,000 rows) with tol=0 and a fixed iteration count; medians of ``--repeats``.

* dgmm, GPU (cached): the data generated on the GPU as one CuPy array and fitted where it lies (the
  array-API kernels, ``dgmm.kernels.xp_estep``); s/iter is the median of ``on_iteration``'s times.
  GPU memory: the CuPy pool's peak over the fit, as a multiple of the data's size.
* scikit-learn 1.8+, array API on torch CUDA (``SCIPY_ARRAY_API=1``, ``array_api_dispatch``): the same
  data shared through DLPack; s/iter = (fit with 1 + iters iterations − fit with 1) / iters; its
  memory is torch's ``max_memory_allocated``.
* dgmm, CPU: NumPy in this process's thread pool (every core the affinity allows, at most 8 threads
  today), shapes up to 16M rows.
* dgmm, GPU streamed from Parquet: not built yet (issue 19); printed as "-".

With ``--xp strict`` the "GPU" is array-api-strict's device1 on the CPU: the script's logic runs
anywhere, the figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("SCIPY_ARRAY_API", "1")  # before scipy and scikit-learn are imported

import numpy as np  # noqa: E402

import dgmm  # noqa: E402
from dgmm.testing import initial_params  # noqa: E402

DEFAULT_SHAPES = "1000000x16x8:full,16000000x16x8:full,100000000x16x8:full,1000000x64x64:diag"
CPU_MAX_ROWS = 16_000_000


def parse_shapes(text: str) -> list[tuple[int, int, int, str]]:
    shapes = []
    for part in text.split(","):
        size, _, kind = part.partition(":")
        n, d, k = (int(v) for v in size.split("x"))
        shapes.append((n, d, k, kind or "full"))
    return shapes


class Library:
    """Where the "GPU" data lives: CuPy on a CUDA device, or array-api-strict's device1 for a smoke run."""

    def __init__(self, name: str):
        self.name = name
        if name == "cupy":
            import cupy

            self.cupy = cupy
        else:
            import array_api_strict

            self.strict = array_api_strict

    def data(self, n: int, d: int, k: int, seed: int = 0):
        """A mixture of k well-separated Gaussians, (n, d) float64, generated on the device."""
        rng = np.random.default_rng(seed)
        means = rng.normal(0.0, 5.0, (k, d))
        if self.name == "cupy":
            cp = self.cupy
            labels = cp.random.default_rng(seed).integers(0, k, n)
            X = cp.random.default_rng(seed + 1).standard_normal((n, d)) + cp.asarray(means)[labels]
            return X
        X = rng.standard_normal((n, d)) + means[rng.integers(0, k, n)]
        return self.strict.asarray(X, device=self.strict.Device("device1"))

    def head(self, X, rows: int) -> np.ndarray:
        from dgmm.kernels.xp_estep import to_numpy

        return to_numpy(X[: min(rows, X.shape[0]), ...])

    def reset_peak(self) -> None:
        if self.name == "cupy":
            pool = self.cupy.get_default_memory_pool()
            self.base = pool.used_bytes()
            self.peak = self.base

    def sample_peak(self) -> None:
        if self.name == "cupy":
            self.peak = max(self.peak, self.cupy.get_default_memory_pool().used_bytes())

    def synchronize(self) -> None:
        if self.name == "cupy":
            self.cupy.cuda.Device().synchronize()


def dgmm_per_iteration(X, start: dict, k: int, kind: str, iters: int, repeats: int, library: Library | None):
    """Median s/iter of dgmm fits of ``X``, and the peak of extra device memory (bytes) over them."""
    times = []
    peak = 0
    for _ in range(repeats):
        seconds: list[float] = []

        def record(report):
            if library is not None:
                library.sample_peak()
            seconds.append(report.seconds)

        if library is not None:
            library.reset_peak()
        model = dgmm.GaussianMixture(k, covariance_type=kind, tol=0.0, max_iter=iters, **start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, on_iteration=record)
        if library is not None:
            library.synchronize()
            peak = max(peak, library.peak - library.base) if library.name == "cupy" else 0
        times.append(statistics.median(seconds))
    return statistics.median(times), peak


def sklearn_torch_per_iteration(X, start: dict, k: int, kind: str, iters: int, repeats: int):
    """scikit-learn's array-API path on torch CUDA: differenced s/iter and torch's memory peak; None without it."""
    try:
        import sklearn
        import torch
        from sklearn.mixture import GaussianMixture
    except ImportError:
        return None, None
    if not torch.cuda.is_available() or type(X).__module__.split(".")[0] != "cupy":
        return None, None
    tensor = torch.from_dlpack(X)  # the same device memory, no copy
    init = {name: torch.as_tensor(value, device=tensor.device) for name, value in start.items()}

    def fit(max_iter: int) -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GaussianMixture(k, covariance_type=kind, tol=0.0, max_iter=max_iter, init_params="random_from_data",
                            **init).fit(tensor)
        torch.cuda.synchronize()
        return time.perf_counter() - started

    torch.cuda.reset_peak_memory_stats()
    per = [(fit(1 + iters) - fit(1)) / iters for _ in range(repeats)]
    return statistics.median(per), torch.cuda.max_memory_allocated()


def fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="NxDxK:covariance, comma-separated")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xp", choices=("cupy", "strict"), default="cupy", help="where the device data lives")
    parser.add_argument("--no-cpu", action="store_true", help="skip dgmm on the CPU cores")
    args = parser.parse_args()
    library = Library(args.xp)
    print(f"device data: {args.xp}; CPU cores: {len(os.sched_getaffinity(0))}; dgmm {dgmm.__version__}")
    header = ("N x d x K", "cov", "dgmm GPU cached", "GPU mem / data", "dgmm GPU streamed", "sklearn torch CUDA",
              "its mem / data", "dgmm CPU", "sklearn / dgmm GPU")
    print(" | ".join(header))
    for n, d, k, kind in parse_shapes(args.shapes):
        X = library.data(n, d, k)
        nbytes = n * d * 8
        start = initial_params(library.head(X, 100_000), k, kind)
        gpu, gpu_peak = dgmm_per_iteration(X, start, k, kind, args.iters, args.repeats, library)
        torch_s, torch_peak = sklearn_torch_per_iteration(X, start, k, kind, args.iters, args.repeats)
        cpu = None
        if not args.no_cpu and n <= CPU_MAX_ROWS:
            cpu, _ = dgmm_per_iteration(library.head(X, n), start, k, kind, args.iters, args.repeats, None)
        ratio = None if torch_s is None else torch_s / gpu
        print(" | ".join([f"{n:,} x {d} x {k}", kind, fmt(gpu), fmt(gpu_peak / nbytes if gpu_peak else None, ".2f"),
                          "-", fmt(torch_s), fmt(torch_peak / nbytes if torch_peak else None, ".2f"), fmt(cpu),
                          fmt(ratio, ".1f") + ("x" if ratio else "")]), flush=True)
        del X


if __name__ == "__main__":
    main()
