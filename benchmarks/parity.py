"""Largest deviations of dgmm from scikit-learn, and across chunkings, on the reference data sets.

    python benchmarks/parity.py

Both fit from identical weights/means/precisions with tol=0 for 1, 10 and 50 iterations, on
the parity tests' data sets (dgmm.testing.DATASETS); the relative deviation of an attribute is
max|dgmm − sklearn| / max|sklearn|. Then the same dgmm fit on one chunk and on uneven Dask chunks.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
from sklearn.mixture import GaussianMixture as SklearnGM

import dgmm
from dgmm.testing import COVARIANCE_TYPES, DATASETS, initial_params, make_dataset

ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_")


def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main() -> None:
    warnings.simplefilter("ignore")
    worst = {a: 0.0 for a in ATTRS + ("predict_proba",)}
    for name in DATASETS:
        X, K = make_dataset(name)
        for covariance_type in COVARIANCE_TYPES:
            init = initial_params(X, K, covariance_type)
            for max_iter in (1, 10, 50):
                kwargs = dict(covariance_type=covariance_type, tol=0.0, max_iter=max_iter, **init)
                ref, ours = SklearnGM(K, **kwargs).fit(X), dgmm.GaussianMixture(K, **kwargs).fit(X)
                for attr in ATTRS:
                    worst[attr] = max(worst[attr], relative(getattr(ours, attr), getattr(ref, attr)))
                worst["predict_proba"] = max(
                    worst["predict_proba"], float(np.abs(ours.predict_proba(X) - ref.predict_proba(X)).max())
                )
    print(
        "largest deviation from scikit-learn over",
        len(DATASETS),
        "data sets x 4 covariance types x {1, 10, 50} iterations",
    )
    for attr, value in worst.items():
        print(f"  {attr:22s} {value:.1e}" + ("  (absolute)" if attr == "predict_proba" else "  (relative)"))
    X, K = make_dataset("2d_overlapping")
    chunks = ((37, 200, 13, 250, 100, 199, 1), 2)
    print("largest relative deviation, one chunk vs 7 uneven chunks (k-means++ init, 30 iterations)")
    for covariance_type in COVARIANCE_TYPES:
        kwargs = dict(covariance_type=covariance_type, tol=0.0, max_iter=30, random_state=0)
        whole = dgmm.GaussianMixture(K, **kwargs).fit(X)
        split = dgmm.GaussianMixture(K, split_every=3, **kwargs).fit(da.from_array(X, chunks=chunks))
        print(f"  {covariance_type:10s} {max(relative(getattr(split, a), getattr(whole, a)) for a in ATTRS):.1e}")


if __name__ == "__main__":
    main()
