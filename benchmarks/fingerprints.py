"""Fingerprints of a fixed set of fits, to show a refactoring changed no result.

    python benchmarks/fingerprints.py OUT.json                 # record
    python benchmarks/fingerprints.py OUT.json --compare OLD.json   # record, then list what differs

Every fit uses the public API only (so the same script runs on the code before and after a
change: ``PYTHONPATH=/path/to/old/checkout python benchmarks/fingerprints.py old.json``), fixed
data, seeds and chunkings: the four covariance types with every initialisation, restarts with
split/merge moves, float32, sample weights, dropped NaN rows, an uneven Dask chunking and a model
selection. For each it records SHA-256 prefixes of the fitted arrays, of predict, predict_proba
and sample, and the exact (hex) lower bound, score and BIC. Equal files mean bit-identical results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings

import dask.array as da
import numpy as np

import dgmm


def fingerprint(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha256(a.tobytes() + str(a.dtype).encode() + str(a.shape).encode()).hexdigest()[:16]


def blobs(n: int = 3000, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6, size=(4, d))
    X = np.concatenate([rng.normal(size=(n // 4, d)) @ rng.normal(size=(d, d)) * 0.5 + c for c in centres])
    return X[rng.permutation(len(X))]


def record(model: dgmm.GaussianMixture, X: np.ndarray, sample: bool = True) -> dict:
    r = {k: fingerprint(getattr(model, k)) for k in ("weights_", "means_", "covariances_", "precisions_cholesky_")}
    r.update(
        n_iter=int(model.n_iter_),
        lb=float(model.lower_bound_).hex(),
        predict=fingerprint(model.predict(X)),
        score=float(model.score(X)).hex(),
        proba=fingerprint(model.predict_proba(X)),
        bic=float(model.bic(X)).hex(),
    )
    if sample:  # a selection's best model has random_state None: its sample is not reproducible
        rows, labels = model.sample(50)
        r["sample"] = fingerprint(rows) + fingerprint(labels)
    return r


def fits() -> dict:
    X, Xw = blobs(), blobs(1000, 2, 1)
    w = np.random.default_rng(3).integers(0, 4, len(Xw)).astype(float)
    Xn = X.copy()
    Xn[::97, 1] = np.nan
    out = {}
    for cov in ("full", "tied", "diag", "spherical"):
        for init in ("kmeans", "k-means++", "k-means||", "random_from_data", "random"):
            m = dgmm.GaussianMixture(
                4, covariance_type=cov, init_params=init, random_state=7, chunk_rows=700, max_iter=30
            )
            out[f"{cov}-{init}"] = record(m.fit(X), X)
    for cov in ("full", "diag"):
        m = dgmm.GaussianMixture(
            3, covariance_type=cov, n_init=3, random_state=1, chunk_rows=500, split_merge=3, max_iter=40
        )
        out[f"smem-{cov}"] = record(m.fit(X), X)
        m = dgmm.GaussianMixture(3, covariance_type=cov, random_state=2, chunk_rows=333, dtype="float32")
        out[f"f32-{cov}"] = record(m.fit(X), X)
        m = dgmm.GaussianMixture(3, covariance_type=cov, random_state=2, chunk_rows=250)
        out[f"weighted-{cov}"] = record(m.fit(Xw, sample_weight=w), Xw)
    m = dgmm.GaussianMixture(4, random_state=5, chunk_rows=600, nan_policy="drop")
    out["nan-drop"] = record(m.fit(Xn), Xn)
    m = dgmm.GaussianMixture(4, random_state=5)
    out["dask-uneven"] = record(m.fit(da.from_array(X, chunks=((1000, 7, 993, 1000), 3))), X)
    selection = dgmm.select(X, [2, 3, 4], ["full", "diag"], random_state=0, chunk_rows=800)
    out["select"] = {"table": repr(selection.table), "passes": selection.passes}
    out["select-best"] = record(selection.best, X, sample=False)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="JSON file to write")
    parser.add_argument("--compare", metavar="OLD", help="a file written before; list the fits that differ")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    out = fits()
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    if args.compare:
        with open(args.compare) as f:
            old = json.load(f)
        differ = sorted(k for k in old.keys() | out.keys() if old.get(k) != out.get(k))
        print(
            f"{len(out) - len(differ)} of {len(out)} results bit-identical"
            + (f"; differ: {', '.join(differ)}" if differ else "")
        )
        return 1 if differ else 0
    print(f"{len(out)} results recorded in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
