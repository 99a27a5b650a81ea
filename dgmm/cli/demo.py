"""``make demo``: generate a sample mixture as Parquet and fit it on a local Dask cluster.

Run as ``python -m dgmm.cli.demo [--config configs/demo.yaml] [--data DIR] ...``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .config import Setting, read_yaml, resolve
from ..errors import DgmmError
from ..kernels.gaussian import COVARIANCE_TYPES
from ..data.synthetic import random_mixture, sample_mixture, write_parquet
from ..estimator.mixture import GaussianMixture


def _curve(values: list[float], width: int = 40) -> list[str]:
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return [f"{i + 1:>4}  {v:12.6f}  " + "#" * (1 + int((v - lo) / span * (width - 1))) for i, v in enumerate(values)]


DEMO_SETTINGS = (
    Setting("data", str, "demo-data", "directory for the generated Parquet files"),
    Setting("n_samples", int, 300_000, "rows generated", minimum=1),
    Setting("n_features", int, 2, "features generated", minimum=1),
    Setting("n_components", int, 3, "components generated and fitted", minimum=1),
    Setting("covariance_type", str, "full", "covariance of each component", choices=COVARIANCE_TYPES),
    Setting("max_iter", int, 200, "most EM iterations", minimum=0),
    Setting("tol", float, 1e-6, "stop when the mean log-likelihood changes by less", minimum=0),
    Setting("seed", int, 0, "random seed", minimum=0),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgmm.cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file with any of the keys below")
    for setting in DEMO_SETTINGS:
        parser.add_argument(setting.option, dest=setting.name, type=setting.type, help=setting.help)
    args = parser.parse_args(argv)
    try:
        config = read_yaml(args.config) if args.config else {}
        overrides = {s.name: getattr(args, s.name) for s in DEMO_SETTINGS}
        run(**resolve(DEMO_SETTINGS, config, overrides, where=args.config or "config"))
    except DgmmError as exc:
        print(f"dgmm demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run(data: str, n_samples: int, n_features: int, n_components: int, covariance_type: str,
        max_iter: int, tol: float, seed: int) -> None:
    """Generate, write, fit and report."""
    if n_samples < n_components:
        raise DgmmError(f"n_samples ({n_samples}) must be at least n_components ({n_components})")
    truth = random_mixture(n_components, n_features, seed=seed)
    X, _ = sample_mixture(truth, n_samples, seed=seed)
    files = write_parquet(X, data, row_group_size=25_000, n_files=4)
    print(f"wrote {n_samples} rows x {n_features} features to {len(files)} Parquet files in {data}/")

    model = GaussianMixture(n_components, covariance_type=covariance_type, tol=tol, max_iter=max_iter, random_state=seed)
    started = time.perf_counter()
    model.fit(data)
    seconds = time.perf_counter() - started
    print(f"fitted on a local Dask cluster in {seconds:.1f} s: {model.n_iter_} iterations, converged={model.converged_}")

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
