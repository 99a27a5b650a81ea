"""``make demo``: generate a sample mixture as Parquet and fit it on a local Dask cluster.

Run as ``python -m dgmm.demo [--config configs/demo.yaml] [--data DIR] ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from .errors import DgmmError
from .datasets import random_mixture, sample_mixture, write_parquet
from .mixture import GaussianMixture


def _curve(values: list[float], width: int = 40) -> list[str]:
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return [f"{i + 1:>4}  {v:12.6f}  " + "#" * (1 + int((v - lo) / span * (width - 1))) for i, v in enumerate(values)]


DEFAULTS = {
    "data": "demo-data",
    "n_samples": 300_000,
    "n_features": 2,
    "n_components": 3,
    "covariance_type": "full",
    "max_iter": 200,
    "tol": 1e-6,
    "seed": 0,
}


def load_config(path: str | None) -> dict:
    """Settings from a YAML file over the defaults; unknown keys and wrong types are errors."""
    settings = dict(DEFAULTS)
    if path is None:
        return settings
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DgmmError(f"{path}: cannot read the config ({exc})") from None
    if not isinstance(loaded, dict):
        raise DgmmError(f"{path}: the config must be a mapping of key: value")
    for key, value in loaded.items():
        if key not in DEFAULTS:
            raise DgmmError(f"{path}: unknown key {key!r}; allowed keys: {', '.join(DEFAULTS)}")
        expected = type(DEFAULTS[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise DgmmError(f"{path}: key {key!r} has value {value!r}; expected a {expected.__name__}")
        settings[key] = value
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgmm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file with any of the keys below")
    for key, value in DEFAULTS.items():
        parser.add_argument("--" + key.replace("_", "-"), dest=key, type=type(value), default=None)
    args = parser.parse_args(argv)
    try:
        settings = load_config(args.config)
        settings.update({k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None})
        run(**settings)
    except DgmmError as exc:
        print(f"dgmm demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run(data: str, n_samples: int, n_features: int, n_components: int, covariance_type: str,
        max_iter: int, tol: float, seed: int) -> None:
    """Generate, write, fit and report."""
    for key, value in (("n_samples", n_samples), ("n_features", n_features), ("n_components", n_components)):
        if value < 1:
            raise DgmmError(f"{key} is {value}; it must be at least 1")
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
