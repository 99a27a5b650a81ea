"""Seconds per EM iteration: scikit-learn against dgmm, measured side by side in one run.

    python benchmarks/bench_em.py [--shapes 200000x16x8:full,...] [--iters 5] [--repeats 3]

Every fit starts from the same weights/means/precisions and runs a fixed number of
iterations (tol=0), so both do identical work. dgmm is timed in-process on a NumPy
array and from Parquet on a LocalCluster of 2 worker processes (1 thread each,
data streamed from disk every iteration). Medians of the repeats are reported.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings

import numpy as np

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture, write_parquet
from dgmm.testing import initial_params  # the starting parameters the parity tests use


def per_iteration(fit, iters: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fit()
        times.append((time.perf_counter() - started) / iters)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="200000x16x8:full,200000x16x8:diag,1000000x16x8:full")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from distributed import Client, LocalCluster
    from sklearn.mixture import GaussianMixture as SklearnGM

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, dgmm {dgmm.__version__}"
    )
    header = f"{'N':>9} {'d':>3} {'K':>3} {'cov':>9} | {'sklearn s/it':>12} {'dgmm s/it':>10} {'x sklearn':>9} | {'dgmm parquet s/it':>17} {'x sklearn':>9}"
    rows = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for spec in args.shapes.split(","):
            size, covariance_type = spec.split(":")
            N, d, K = (int(v) for v in size.split("x"))
            X, _ = sample_mixture(random_mixture(K, d, seed=1), N, seed=1)
            path = os.path.join(tmp, f"{N}x{d}")
            write_parquet(X, path, row_group_size=50_000, n_files=2)
            kwargs = dict(
                covariance_type=covariance_type, tol=0.0, max_iter=args.iters, **initial_params(X, K, covariance_type)
            )
            sk = per_iteration(lambda: SklearnGM(K, **kwargs).fit(X), args.iters, args.repeats)
            ours = per_iteration(lambda: dgmm.GaussianMixture(K, **kwargs).fit(X), args.iters, args.repeats)
            parquet = per_iteration(
                lambda: dgmm.GaussianMixture(K, client=client, **kwargs).fit(path), args.iters, args.repeats
            )
            rows.append(
                f"{N:>9} {d:>3} {K:>3} {covariance_type:>9} | {sk:>12.3f} {ours:>10.3f} {sk / ours:>9.2f} | {parquet:>17.3f} {sk / parquet:>9.2f}"
            )
            print(rows[-1] if len(rows) > 1 else header + "\n" + rows[-1], flush=True)


if __name__ == "__main__":
    main()
