"""``make demo``: generate a sample mixture as Parquet and fit it on a local Dask cluster.

Run as ``python -m dgmm.demo --data DIR``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .datasets import random_mixture, sample_mixture, write_parquet
from .mixture import GaussianMixture


def _curve(values: list[float], width: int = 40) -> list[str]:
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return [f"{i + 1:>4}  {v:12.6f}  " + "#" * (1 + int((v - lo) / span * (width - 1))) for i, v in enumerate(values)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dgmm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data", help="directory for the generated Parquet files")
    parser.add_argument("--n-samples", type=int, default=300_000)
    parser.add_argument("--n-features", type=int, default=2)
    parser.add_argument("--n-components", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    truth = random_mixture(args.n_components, args.n_features, seed=args.seed)
    X, _ = sample_mixture(truth, args.n_samples, seed=args.seed)
    files = write_parquet(X, args.data, row_group_size=25_000, n_files=4)
    print(f"wrote {args.n_samples} rows x {args.n_features} features to {len(files)} Parquet files in {args.data}/")

    model = GaussianMixture(args.n_components, tol=1e-6, max_iter=200, random_state=args.seed)
    started = time.perf_counter()
    model.fit(args.data)
    seconds = time.perf_counter() - started
    print(f"fitted on a local Dask cluster in {seconds:.1f} s: {model.n_iter_} iterations, converged={model.converged_}")

    order = np.argsort(model.means_[:, 0])
    true_order = np.argsort(truth.means[:, 0])
    np.set_printoptions(precision=4, suppress=True)
    print("\ncomponent  weight (true)      mean (true)")
    for k, t in zip(order, true_order):
        print(f"{k:>9}  {model.weights_[k]:.4f} ({truth.weights[t]:.4f})  {model.means_[k]} ({truth.means[t]})")
    print("\nmean log-likelihood per iteration")
    print("\n".join(_curve(model.lower_bounds_)))


if __name__ == "__main__":
    main()
