"""Split-and-merge moves: how often they raise the final log-likelihood, by how much, at what cost.

    python benchmarks/bench_smem.py [--n 50000] [--d 4] [--k 8] [--separation 3] [--seeds 10]
                                    [--inits random_from_data,kmeans]

For each seed, data is drawn from a random K-component mixture, then dgmm fits it from
the same start with ``split_merge=0`` and ``split_merge=5``, counting passes over the data
(in-process executor, chunks of 65,536 rows). Prints, per init method: how many seeds
the moves improved, the median and largest gain in mean log-likelihood, the median
passes of both, and the median log-likelihood of scikit-learn (same init method name
where it has one, n_init=1) on the same data for reference.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.testing import counted_in_process  # the pass counter the restart tests use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--separation", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--inits", default="random_from_data,kmeans")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    try:
        from sklearn.mixture import GaussianMixture as SklearnGM
    except ImportError:
        SklearnGM = None
        print("scikit-learn not installed: its column is skipped")
    print(f"N={args.n}, d={args.d}, K={args.k}, separation={args.separation}, seeds 0..{args.seeds - 1}, full")
    print(
        f"{'init':>17} | {'improved':>8} | {'median gain':>11} | {'max gain':>9} | {'passes 0':>8} | "
        f"{'passes 5':>8} | {'LL plain':>9} | {'LL moves':>9} | {'LL sklearn':>10}"
    )
    for init in args.inits.split(","):
        gains, passes_plain, passes_moves, plain_ll, moved_ll, sk_ll = [], [], [], [], [], []
        for seed in range(args.seeds):
            X = sample_mixture(
                random_mixture(args.k, args.d, seed=seed, separation=args.separation), args.n, seed=seed
            )[0]
            fits = {}
            with counted_in_process() as counter:
                for smem in (0, 5):
                    counter.passes = 0
                    fits[smem] = dgmm.GaussianMixture(
                        args.k, init_params=init, random_state=seed, tol=1e-4, max_iter=500, split_merge=smem
                    ).fit(X)
                    (passes_plain if smem == 0 else passes_moves).append(counter.passes)
            plain_ll.append(fits[0].lower_bound_)
            moved_ll.append(fits[5].lower_bound_)
            gains.append(fits[5].lower_bound_ - fits[0].lower_bound_)
            if SklearnGM is not None:
                sk_ll.append(
                    SklearnGM(args.k, init_params=init, random_state=seed, tol=1e-4, max_iter=500).fit(X).lower_bound_
                )
        improved = sum(g > 1e-4 for g in gains)
        sk = f"{statistics.median(sk_ll):>10.5f}" if sk_ll else f"{'-':>10}"
        print(
            f"{init:>17} | {improved:>4}/{args.seeds:<3} | {statistics.median(gains):>11.5f} | {max(gains):>9.5f} | "
            f"{statistics.median(passes_plain):>8.0f} | {statistics.median(passes_moves):>8.0f} | "
            f"{statistics.median(plain_ll):>9.5f} | {statistics.median(moved_ll):>9.5f} | {sk}"
        )


if __name__ == "__main__":
    main()
