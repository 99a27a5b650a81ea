"""k-means|| initialisation: seconds against N (linear?) and final log-likelihood against scikit-learn.

    python benchmarks/bench_init.py [--sizes 250000,500000,1000000,2000000] [--d 16] [--k 8]
                                    [--repeats 3] [--quality-n 200000] [--seeds 5]

Part 1 times ``dgmm.algorithms.em.initial_params(method="k-means||")`` — one first-centre gather,
5 sampling rounds, the candidate-weight pass and the hard-assignment statistics pass,
i.e. everything before EM's first iteration — in-process on NumPy chunks of 65,536
rows (the kernels the cluster runs), and prints the time per million rows relative to
the smallest N. Part 2 fits dgmm with init_params="k-means||" and scikit-learn with
init_params="kmeans" (its default) on the same data for seeds 0..seeds-1 and prints
the median final ``lower_bound_`` of each.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np

import dgmm
from dgmm.algorithms.em import initial_params
from dgmm.data.inputs import IN_MEMORY_CHUNK_ROWS
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.execution import InProcessExecutor


def time_init(X: np.ndarray, k: int, repeats: int) -> float:
    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        initial_params(
            InProcessExecutor(IN_MEMORY_CHUNK_ROWS),
            X,
            n_components=k,
            covariance_type="full",
            method="k-means||",
            reg_covar=1e-6,
            seed=seed,
            split_every=8,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250000,500000,1000000,2000000")
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality-n", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from sklearn.mixture import GaussianMixture as SklearnGM

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, dgmm {dgmm.__version__}"
    )
    mixture = random_mixture(args.k, args.d, seed=0)
    sizes = [int(s) for s in args.sizes.split(",")]
    X_all, _ = sample_mixture(mixture, max(sizes), seed=0)
    print(f"\n1. k-means|| init (rounds + 2 passes), d={args.d}, K={args.k}, median of {args.repeats}")
    print(f"{'N':>9} | {'seconds':>8} | {'s / M rows':>10} | {'x time':>6} | {'x N':>5}")
    base = None
    for n in sizes:
        seconds = time_init(X_all[:n], args.k, args.repeats)
        base = base or (n, seconds)
        print(
            f"{n:>9} | {seconds:>8.3f} | {seconds / n * 1e6:>10.3f} | {seconds / base[1]:>6.2f} | {n / base[0]:>5.1f}"
        )

    X = X_all[: args.quality_n]
    print(
        f"\n2. final lower_bound_ (mean log-likelihood), N={len(X)}, d={args.d}, K={args.k}, seeds 0..{args.seeds - 1}"
    )
    ours, theirs = [], []
    for seed in range(args.seeds):
        ours.append(dgmm.GaussianMixture(args.k, init_params="k-means||", random_state=seed).fit(X).lower_bound_)
        theirs.append(SklearnGM(args.k, init_params="kmeans", random_state=seed).fit(X).lower_bound_)
    print(f"dgmm k-means||   : median {statistics.median(ours):.6f}  ({', '.join(f'{v:.4f}' for v in ours)})")
    print(f"sklearn kmeans   : median {statistics.median(theirs):.6f}  ({', '.join(f'{v:.4f}' for v in theirs)})")


if __name__ == "__main__":
    main()
