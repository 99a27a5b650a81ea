"""Device memory a fit of a device array needs beyond the array itself, per initialisation, with scoring.

    python benchmarks/bench_device_memory.py [--rows 4000000] [--features 16] [--components 8]
        [--inits kmeans,k-means++,random] [--xp strict|cupy] [--quarter-rule]

The array (a mixture of ``--components`` Gaussians) is one chunk on the device; each fit runs its
initialisation and 3 EM iterations, then ``score`` and ``predict_proba`` run on it. Reported: the peak
of what the fit allocated beyond the data, as a multiple of the data's size, and the same with the
scoring calls (whose output, (n, K), is itself K/d of the data).

* ``--xp strict``: array-api-strict's ``device1`` (NumPy underneath, on the CPU), peaks by ``tracemalloc``.
* ``--xp cupy``: a CuPy array on the GPU, peaks from CuPy's memory pool (it keeps the blocks it grew to).

``--quarter-rule`` lowers the tiles' floor (a million rows or 1 GiB) to one row, so the rule that tiles hold
at most a quarter of the chunk governs at sizes this machine holds (it does from ~30M rows at d=16, K=8).
"""

from __future__ import annotations

import argparse
import tracemalloc
import warnings

import dgmm
import dgmm.kernels.device.tiles as device_tiles
from dgmm.data.synthetic import random_mixture, sample_mixture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--inits", default="kmeans,k-means++,random")
    parser.add_argument("--xp", choices=("strict", "cupy"), default="strict")
    parser.add_argument("--quarter-rule", action="store_true")
    args = parser.parse_args()
    if args.quarter_rule:
        device_tiles.XP_MIN_TILE_ROWS, device_tiles.XP_MIN_TILE_BYTES = 1, 1
    X, _ = sample_mixture(random_mixture(args.components, args.features, seed=0), args.rows, seed=0)
    data_bytes = X.nbytes
    if args.xp == "cupy":
        import cupy

        device = cupy.asarray(X)
        pool = cupy.get_default_memory_pool()
    else:
        import array_api_strict as xps

        device = xps.asarray(X, device=xps.Device("device1"))
    del X
    print(f"{args.rows:,} x {args.features} x {args.components}, {args.xp}, quarter rule: {args.quarter_rule}")
    print("init | fit peak beyond the data / data | with score and predict_proba")
    for init in args.inits.split(","):
        model = dgmm.GaussianMixture(args.components, init_params=init, max_iter=3, random_state=0)
        if args.xp == "cupy":
            pool.free_all_blocks()
            base = pool.total_bytes()
        else:
            tracemalloc.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(device)
            fit_peak = (pool.total_bytes() - base) if args.xp == "cupy" else tracemalloc.get_traced_memory()[1]
            model.score(device)
            model.predict_proba(device)  # its (n, K) output counts while it lives
        peak = (pool.total_bytes() - base) if args.xp == "cupy" else tracemalloc.get_traced_memory()[1]
        if args.xp != "cupy":
            tracemalloc.stop()
        print(f"{init} | {fit_peak / data_bytes:.2f} | {peak / data_bytes:.2f}", flush=True)


if __name__ == "__main__":
    main()
