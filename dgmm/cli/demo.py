"""``make demo``: generate a sample mixture as Parquet and fit it on a local Dask cluster.

Run as ``python -m dgmm.cli.demo [--config configs/demo.yaml] [--data DIR] ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np

from ..data.synthetic import random_mixture, sample_mixture, write_parquet
from ..errors import DgmmError
from ..estimator.mixture import GaussianMixture
from ..estimator.parameters import BY_NAME, Parameter
from ..execution.clusters import cluster_log_level, local_cluster
from ..execution.deadlines import workers_info
from .config import read_yaml, resolve


def _curve(values: list[float], width: int = 40) -> list[str]:
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return [f"{i + 1:>4}  {v:12.6f}  " + "#" * (1 + int((v - lo) / span * (width - 1))) for i, v in enumerate(values)]


DEMO_SETTINGS = (
    Parameter("data", str, "demo-data", "directory for the generated Parquet files"),
    Parameter("n_samples", int, 300_000, "rows generated", minimum=1),
    Parameter("n_features", int, 2, "features generated", minimum=1),
    replace(BY_NAME["n_components"], default=3, help="components generated and fitted"),
    BY_NAME["covariance_type"],
    replace(BY_NAME["max_iter"], default=200),
    replace(BY_NAME["tol"], default=1e-6),
    replace(BY_NAME["random_state"], default=0, help="random seed of the data and the fit"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgmm.cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file with any of the keys below")
    for setting in DEMO_SETTINGS:
        parser.add_argument(setting.option, dest=setting.key, type=setting.type, help=setting.help)
    args = parser.parse_args(argv)
    try:
        config = read_yaml(args.config) if args.config else {}
        overrides = {s.key: getattr(args, s.key) for s in DEMO_SETTINGS}
        run(**resolve(DEMO_SETTINGS, config, overrides, where=args.config or "config"))
    except DgmmError as exc:
        print(f"dgmm demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run(
    data: str,
    n_samples: int,
    n_features: int,
    n_components: int,
    covariance_type: str,
    max_iter: int,
    tol: float,
    seed: int,
) -> None:
    """Generate, write, fit and report."""
    if n_samples < n_components:
        raise DgmmError(f"n_samples ({n_samples}) must be at least n_components ({n_components})")
    truth = random_mixture(n_components, n_features, seed=seed)
    X, _ = sample_mixture(truth, n_samples, seed=seed)
    files = write_parquet(X, data, row_group_size=25_000, n_files=4)
    print(f"wrote {n_samples} rows x {n_features} features to {len(files)} Parquet files in {data}/")

    model = GaussianMixture(
        n_components, covariance_type=covariance_type, tol=tol, max_iter=max_iter, random_state=seed
    )
    # the main job's way: worker processes of a local cluster (this much data alone would fit in this process)
    with local_cluster(log_level=cluster_log_level(False)) as client:
        workers = len(workers_info(client))
        started = time.perf_counter()
        model.set_params(client=client).fit(data)
        seconds = time.perf_counter() - started
    model.set_params(client=None)
    print(
        f"fitted on a local Dask cluster of {workers} worker processes in {seconds:.1f} s: {model.n_iter_} "
        f"iterations, converged={model.converged_}"
    )

    order = np.argsort(model.means_[:, 0])
    true_order = np.argsort(truth.means[:, 0])
    np.set_printoptions(precision=4, suppress=True)
    print(f"fitted weights and means, with the generating ones in brackets ({covariance_type} covariances)")
    print("\ncomponent  weight (true)      mean (true)")
    for k, t in zip(order, true_order):
        print(f"{k:>9}  {model.weights_[k]:.4f} ({truth.weights[t]:.4f})  {model.means_[k]} ({truth.means[t]})")
    print("\nmean log-likelihood per iteration")
    print("\n".join(_curve(model.lower_bounds_)))


if __name__ == "__main__":
    sys.exit(main())
