"""Seconds per EM iteration of the in-process pool on NumPy input, by the number of cores the process may use.

    python benchmarks/bench_cores.py [--shapes 1000000x16x8:full,16000000x16x8:full] [--cores 1,2,4,8,16]

Each core count runs in a fresh process whose affinity (``os.sched_setaffinity``, as ``taskset``) is the
first ``c`` usable CPUs, so the pool's default size and BLAS see ``c`` cores. Every fit starts from the
same parameters (``dgmm.testing.initial_params`` on the first 100,000 rows), tol=0 and a fixed
iteration count; s/iter is the median over iterations 2.., then over ``--repeats`` fits. Parallel
efficiency is ``t(c0)·c0 / (t(c)·c)`` against the smallest core count ``c0`` given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import warnings


def measure(n: int, d: int, k: int, kind: str, iters: int, repeats: int) -> float:
    """Median s/iter of dgmm fits in this process (its affinity decides the threads)."""
    import numpy as np

    import dgmm
    from dgmm.testing import initial_params

    rng = np.random.default_rng(0)
    means = rng.normal(0.0, 5.0, (k, d))
    X = rng.standard_normal((n, d)) + means[rng.integers(0, k, n)]
    start = initial_params(X[:100_000], k, kind)
    medians = []
    for _ in range(repeats):
        seconds: list[float] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dgmm.GaussianMixture(k, covariance_type=kind, tol=0.0, max_iter=iters, **start).fit(
                X, on_iteration=lambda report: seconds.append(report.seconds)
            )
        medians.append(statistics.median(seconds[1:] or seconds))
    return statistics.median(medians)


def child(args: argparse.Namespace) -> None:
    cpus = sorted(os.sched_getaffinity(0))[: args.child_cores]
    os.sched_setaffinity(0, cpus)
    n, d, k, kind = parse_shape(args.child_shape)
    print(json.dumps({"seconds": measure(n, d, k, kind, args.iters, args.repeats)}))


def parse_shape(text: str) -> tuple[int, int, int, str]:
    size, _, kind = text.partition(":")
    n, d, k = (int(v) for v in size.split("x"))
    return n, d, k, kind or "full"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1000000x16x8:full,16000000x16x8:full")
    parser.add_argument("--cores", default="1,2,4,8,16")
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-shape", help=argparse.SUPPRESS)
    parser.add_argument("--child-cores", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_shape:
        child(args)
        return
    usable = len(os.sched_getaffinity(0))
    cores = [c for c in (int(v) for v in args.cores.split(",")) if c <= usable]
    print(f"usable cores: {usable}; measuring {cores}")
    print("N x d x K | cov | cores | s/iter | speed-up | parallel efficiency")
    for shape in args.shapes.split(","):
        n, d, k, kind = parse_shape(shape)
        base = None
        for c in cores:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child-shape",
                    shape,
                    "--child-cores",
                    str(c),
                    "--iters",
                    str(args.iters),
                    "--repeats",
                    str(args.repeats),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
            base = base or (seconds, c)
            speedup = base[0] / seconds
            print(
                f"{n:,} x {d} x {k} | {kind} | {c} | {seconds:.4f} | {speedup:.2f} | {speedup * base[1] / c:.0%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
