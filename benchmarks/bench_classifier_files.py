"""Save and load a classifier file of many classes (version 2: arrays stacked by kind).

A GaussianMixtureClassifier of ``--classes`` speakers, each a K-component diagonal mixture at d features (the
parameters drawn, not fitted: the file's size and checks are what is measured), saved and loaded back; prints the
file size, the median save and load times over ``--repeats`` runs, load seconds per 100 MB, and whether the
round trip is bit-exact. Default: the issue's 10,000 classes, K=64, d=60.

    python benchmarks/bench_classifier_files.py [--classes 10000] [--components 64] [--features 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import dgmm
from dgmm.kernels.params import MixtureParams
from dgmm.persist.fitted import FittedState


def speakers(n_classes: int, K: int, d: int, seed: int = 0) -> dgmm.GaussianMixtureClassifier:
    """A fitted-looking classifier: each class's weights, means and variances drawn at random."""
    rng = np.random.default_rng(seed)
    model = dgmm.GaussianMixtureClassifier(K, covariance_type="diag")
    model.estimators_ = []
    for _ in range(n_classes):
        weights = rng.dirichlet(np.ones(K))
        params = MixtureParams.from_covariances(weights, rng.normal(size=(K, d)), rng.uniform(0.5, 2.0, (K, d)), "diag")
        mixture = dgmm.GaussianMixture(K, covariance_type="diag")
        FittedState(params, True, 10, -50.0, tuple(np.linspace(-60, -50, 10)), d, None, 0).apply(mixture)
        model.estimators_.append(mixture)
    model.classes_ = np.asarray([f"spk{c:05d}" for c in range(n_classes)])
    model.class_prior_ = np.full(n_classes, 1.0 / n_classes)
    model.n_features_in_ = d
    model.n_iter_ = np.full(n_classes, 10)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = speakers(args.classes, args.components, args.features)
    saves, loads = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speakers.npz"
        for _ in range(args.repeats):
            path.unlink(missing_ok=True)
            start = time.perf_counter()
            model.save(path)
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            loaded = dgmm.load_model(path)
            loads.append(time.perf_counter() - start)
        size = path.stat().st_size
    exact = all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for a, b in zip(loaded.estimators_, model.estimators_)
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_")
    )
    load = statistics.median(loads)
    print(f"{args.classes} classes, K={args.components} diag, d={args.features}: file {size / 1e6:.1f} MB")
    print(f"save {statistics.median(saves):.2f} s, load {load:.2f} s (median of {args.repeats}), "
          f"load {load / (size / 1e8):.3f} s per 100 MB, bit-exact round trip: {exact}")  # fmt: skip


if __name__ == "__main__":
    main()
