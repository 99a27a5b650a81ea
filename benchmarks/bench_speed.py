"""Seconds per EM iteration: dgmm against scikit-learn and Spark MLlib, side by side in one run.

    python benchmarks/bench_speed.py [--shapes 1000000x16x8:full,...] [--iters 5] [--repeats 3]
                                     [--no-spark] [--no-sklearn] [--no-cluster] [--no-overhead]

Every dgmm and scikit-learn fit starts from the same weights/means/precisions
(``dgmm.testing.initial_params``) with tol=0 and a fixed iteration count.

* scikit-learn, Spark: s/iter = (fit time with 1 + iters iterations − fit time with 1) / iters,
  which cancels start-up and initialisation (Spark cannot take initial parameters; its
  own initialisation is in both fits). Spark runs in ``local[2]`` on a cached DataFrame
  read from the same Parquet files; it has full covariances only.
* dgmm: the median of the per-iteration wall times reported by ``on_iteration``
  (in-memory NumPy on this process's thread pool, float64 and float32; the Parquet
  files cached on a LocalCluster of 2 worker processes × 1 thread; and streamed from
  Parquet every iteration with cache="none", next to one plain pyarrow scan of the files).
* GEMM %: model flops per iteration / s/iter / the float64 GEMM rate (2048², all BLAS
  threads) measured right before and right after that shape's dgmm fits (their mean,
  printed as "GF/s"): the machine's speed drifts by ±25% over minutes
  (3·N·K·d² for full, the issue's model; 8·N·K·d for diag, its two GEMMs each way).
* overhead: 1,000 chunks × 1,000 rows on the cluster vs the same chunks in-process.

A peer that is not installed (``pip install dgmm[bench]``) is skipped with a note.
Medians of ``--repeats`` repeats throughout.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings

import numpy as np

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture, write_parquet
from dgmm.testing import initial_params  # the starting parameters the parity tests use


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """float64 GEMM flops per second on this machine, now (all BLAS threads)."""
    a, b = np.random.default_rng(0).random((2, n, n))
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times)


def dgmm_per_iteration(make, X, repeats: int) -> tuple[float, float]:
    """Median per-iteration seconds over repeats (each the median of its iterations), final lower bound."""
    medians, bound = [], float("nan")
    for _ in range(repeats):
        seconds = []
        model = make().fit(X, on_iteration=lambda it: seconds.append(it.seconds))
        medians.append(statistics.median(seconds[1:] or seconds))  # the first one warms caches
        bound = model.lower_bound_
    return statistics.median(medians), bound


def differenced(fit, iters: int, repeats: int) -> float:
    """(t(1 + iters iterations) − t(1 iteration)) / iters, median over repeats."""
    values = []
    for _ in range(repeats):
        started = time.perf_counter()
        fit(1)
        one = time.perf_counter() - started
        started = time.perf_counter()
        fit(1 + iters)
        values.append((time.perf_counter() - started - one) / iters)
    return statistics.median(values)


def spark_session():
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    logging.getLogger("py4j").setLevel(logging.ERROR)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("dgmm-bench")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def spark_per_iteration(spark, path: str, K: int, iters: int, repeats: int) -> float:
    from pyspark.ml.clustering import GaussianMixture as SparkGM
    from pyspark.ml.feature import VectorAssembler

    frame = spark.read.parquet(path)
    data = VectorAssembler(inputCols=frame.columns, outputCol="features").transform(frame).select("features")
    data = data.repartition(4).cache()
    data.count()

    def fit(max_iter: int) -> None:
        SparkGM(k=K, maxIter=max_iter, tol=0.0, seed=0).fit(data)

    fit(1)  # JIT warm-up
    result = differenced(fit, iters, repeats)
    data.unpersist()
    return result


def pyarrow_scan(path: str, repeats: int) -> float:
    import pyarrow.parquet as pq

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        table = pq.read_table(path)
        np.column_stack([c.to_numpy() for c in table.columns])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1000000x16x8:full,200000x64x16:full,1000000x64x64:diag")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--no-overhead", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    try:
        from sklearn.mixture import GaussianMixture as SklearnGM
    except ImportError:
        SklearnGM = None
        print("scikit-learn not installed: its column is skipped (pip install dgmm[bench])")
    spark = None if args.no_spark else spark_session()
    if spark is None and not args.no_spark:
        print("pyspark not installed: the Spark column is skipped (pip install dgmm[bench])")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, dgmm {dgmm.__version__}; load average {os.getloadavg()[0]:.1f}"
    )

    from distributed import Client, LocalCluster

    cluster = client = None
    if not args.no_cluster:
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR
        )
        client = Client(cluster, set_as_default=False)
    rows = []
    header = (
        f"{'N':>8} {'d':>3} {'K':>3} {'cov':>5} | {'sklearn':>8} {'spark':>8} | {'dgmm f64':>8} {'x skl':>6} "
        f"{'x spark':>7} {'GF/s':>5} {'GEMM%':>6} | {'f32':>7} {'f64/f32':>7} {'rel dLL':>8} | {'cached':>7} "
        f"{'stream':>7} {'scan':>7} {'strm/max':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.shapes.split(","):
            size, cov = spec.split(":")
            N, d, K = (int(v) for v in size.split("x"))
            X, _ = sample_mixture(random_mixture(K, d, seed=1), N, seed=1)
            path = os.path.join(tmp, f"{N}x{d}")
            write_parquet(X, path, row_group_size=65_536, n_files=2)
            init = initial_params(X, K, cov)
            kwargs = dict(covariance_type=cov, tol=0.0, max_iter=args.iters, **init)
            sk = sp = cached = streamed = scan = None
            if SklearnGM is not None and not args.no_sklearn:
                sk = differenced(
                    lambda m: SklearnGM(K, covariance_type=cov, tol=0.0, max_iter=m, **init).fit(X),
                    args.iters,
                    args.repeats,
                )
            if spark is not None and cov == "full":
                sp = spark_per_iteration(spark, path, K, args.iters, args.repeats)
            rate_before = gemm_rate()
            ours, ll64 = dgmm_per_iteration(lambda: dgmm.GaussianMixture(K, **kwargs), X, args.repeats)
            ours32, ll32 = dgmm_per_iteration(
                lambda: dgmm.GaussianMixture(K, dtype="float32", **kwargs), X, args.repeats
            )
            rate = (rate_before + gemm_rate()) / 2
            if client is not None:
                cached, _ = dgmm_per_iteration(
                    lambda: dgmm.GaussianMixture(K, client=client, cache="memory", **kwargs), path, args.repeats
                )
                streamed, _ = dgmm_per_iteration(
                    lambda: dgmm.GaussianMixture(K, client=client, cache="none", **kwargs), path, args.repeats
                )
                scan = pyarrow_scan(path, args.repeats)
            flops = 3 * N * K * d * d if cov in ("full", "tied") else 8 * N * K * d
            rows.append(
                f"{N:>8} {d:>3} {K:>3} {cov:>5} | {fmt(sk):>8} {fmt(sp):>8} | {ours:>8.3f} "
                f"{fmt(sk / ours if sk else None, '.1f'):>6} {fmt(sp / ours if sp else None, '.1f'):>7} "
                f"{rate / 1e9:>5.0f} {100 * flops / ours / rate:>5.0f}% | {ours32:>7.3f} {ours / ours32:>7.2f} "
                f"{abs(ll32 - ll64) / abs(ll64):>8.1e} | {fmt(cached):>7} {fmt(streamed):>7} {fmt(scan):>7} "
                f"{fmt(streamed / max(scan, cached) if streamed else None, '.2f'):>8}"
            )
            print(header if len(rows) == 1 else "", rows[-1], sep="\n" if len(rows) == 1 else "", flush=True)
        if client is not None and not args.no_overhead:
            overhead(client, args.repeats)
    if client is not None:
        client.close()
        cluster.close()
    if spark is not None:
        spark.stop()


def overhead(client, repeats: int) -> None:
    """1,000 chunks of 1,000 rows: a cached cluster iteration against the same chunks in-process."""
    import dask.array as da

    N, d, K = 1_000_000, 16, 8
    X, _ = sample_mixture(random_mixture(K, d, seed=2), N, seed=2)
    kwargs = dict(tol=0.0, max_iter=5, **initial_params(X, K, "full"))
    local, _ = dgmm_per_iteration(lambda: dgmm.GaussianMixture(K, chunk_rows=1_000, **kwargs), X, repeats)
    array = da.from_array(X, chunks=(1_000, d))
    remote, _ = dgmm_per_iteration(
        lambda: dgmm.GaussianMixture(K, client=client, cache="memory", **kwargs), array, repeats
    )
    print(
        f"orchestration, 1000 chunks x 1000 rows (d={d}, K={K}, full): cluster {remote:.3f} s/iter, "
        f"in-process {local:.3f} s/iter, overhead {remote - local:+.3f} s/iter"
    )


if __name__ == "__main__":
    main()
