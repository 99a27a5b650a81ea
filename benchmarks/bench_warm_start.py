"""Nightly refits: passes to converge from yesterday's model file when new rows arrive, against a fresh fit.

    python benchmarks/bench_warm_start.py [--rows 1000000] [--new 0.05] [--seeds 5]

Yesterday's data set is drawn from a random mixture (K components, d features); today's is the same rows
and ``--new`` more, drawn from the same mixture with its weights perturbed (a day's drift). Yesterday's model
is fitted and saved; today is fitted afresh (k-means|| initialisation, whose passes count too) and from
yesterday's file (``init_model=``), with the same tolerance. Passes are what an out-of-core fit pays: each
one reads the data once. Printed per seed, then the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.testing import counted_in_process


def fit_counted(X: np.ndarray, **settings) -> tuple[dgmm.GaussianMixture, int, float]:
    started = time.perf_counter()
    with counted_in_process() as counter, warnings.catch_warnings():
        warnings.simplefilter("ignore", dgmm.ConvergenceWarning)
        model = dgmm.GaussianMixture(**settings).fit(X)
    return model, counter.passes, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="yesterday's rows")
    parser.add_argument("--new", type=float, default=0.05, help="today's new rows, as a share of yesterday's")
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--separation", type=float, default=1.5, help="mean distance of the components' means")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="dgmm-warm-"))
    for seed in range(args.seeds):
        truth = random_mixture(args.components, args.features, seed=seed, separation=args.separation)
        yesterday, _ = sample_mixture(truth, args.rows, seed=seed)
        drifted = replace(truth, weights=np.random.default_rng(seed).dirichlet(50 * truth.weights))
        new, _ = sample_mixture(drifted, int(args.rows * args.new), seed=seed + 1000)
        today = np.concatenate([yesterday, new])
        settings = dict(n_components=args.components, covariance_type=args.covariance_type, tol=args.tol,
                        max_iter=1000, random_state=seed)  # fmt: skip
        model, _, _ = fit_counted(yesterday, **settings)
        model.save(folder / f"yesterday-{seed}.npz", overwrite=True)
        fresh, fresh_passes, fresh_seconds = fit_counted(today, **settings)
        warm, warm_passes, warm_seconds = fit_counted(today, init_model=folder / f"yesterday-{seed}.npz", **settings)
        rows.append((fresh_passes, warm_passes, fresh_seconds, warm_seconds, fresh.lower_bound_, warm.lower_bound_))
        print(f"seed {seed}: fresh {fresh_passes} passes ({fresh.n_iter_} EM iterations) {fresh_seconds:.1f} s, "
              f"lower bound {fresh.lower_bound_:.6f}; from yesterday's file {warm_passes} passes "
              f"({warm.n_iter_} iterations) {warm_seconds:.1f} s, lower bound {warm.lower_bound_:.6f}", flush=True)  # fmt: skip
    median = [statistics.median(column) for column in zip(*rows)]
    print(f"\n{args.rows:,} rows + {args.new:.0%} new, K={args.components}, d={args.features}, "
          f"separation {args.separation:g}, "
          f"{args.covariance_type}, tol={args.tol:g}, median of {args.seeds} seeds: fresh fit {median[0]:.0f} passes "
          f"({median[2]:.1f} s), from yesterday's model {median[1]:.0f} passes ({median[3]:.1f} s): "
          f"{median[0] / median[1]:.1f}x fewer")  # fmt: skip


if __name__ == "__main__":
    main()
