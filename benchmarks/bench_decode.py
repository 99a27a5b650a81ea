"""The host side of streaming Parquet to a GPU, against ``pyarrow.parquet.read_table``: seconds to read
every row group of the same files, by the route each takes.

    python benchmarks/bench_decode.py [--rows 8000000] [--features 16] [--threads 2] [--repeats 5]

* read_table: ``pq.read_table(folder, use_threads=True)`` (the streamed target's yardstick);
* decode only: pyarrow's ``read_row_group`` on ``--threads`` threads, nothing else;
* column-major staging (the GPU path, :class:`dgmm.data.devices.DeviceRowGroupReader`): decode, then one
  contiguous copy per column into a buffer each thread reuses (pinned on a GPU machine);
* row-major block (the CPU path, :func:`dgmm.data.row_groups.read_row_group`): decode, transpose into a
  fresh (n, d) block, check the values.

Snappy files of 4 parts, row groups of 1,048,576 rows, written once to ``--folder``; medians of
``--repeats`` runs, interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dgmm.data.parquet import ParquetDataset
from dgmm.data.row_groups import column_values, read_row_group

ROW_GROUP = 1 << 20


def write(folder: str, rows: int, features: int) -> None:
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for part in range(4):
        X = rng.standard_normal((rows // 4, features))
        pq.write_table(
            pa.table({f"x{j}": X[:, j] for j in range(features)}),
            f"{folder}/part-{part}.parquet",
            row_group_size=ROW_GROUP,
            compression="snappy",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", default="/tmp/dgmm-bench-decode")
    args = parser.parse_args()
    folder = f"{args.folder}/{args.rows}x{args.features}"
    if not os.path.exists(folder):
        write(folder, args.rows, args.features)
    dataset = ParquetDataset.open(folder)
    local = threading.local()

    def over_row_groups(read) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(read, dataset.row_groups))
        return time.perf_counter() - started

    def staged(group) -> None:
        values = column_values(group, dataset.columns)
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = np.empty((len(values), ROW_GROUP))
        for j, value in enumerate(values):
            buffer[j, : group.n_rows] = value

    def read_table() -> float:
        started = time.perf_counter()
        pq.read_table(folder, use_threads=True)
        return time.perf_counter() - started

    routes = {
        "read_table": read_table,
        "decode only": lambda: over_row_groups(
            lambda g: pq.ParquetFile(g.path).read_row_group(g.index, columns=list(dataset.columns))
        ),
        "column-major staging (GPU path)": lambda: over_row_groups(staged),
        "row-major block (CPU path)": lambda: over_row_groups(lambda g: read_row_group(g, dataset.columns)),
    }
    read_table()  # the files in the page cache, for every route alike
    times: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(args.repeats):
        for name, route in routes.items():
            times[name].append(route())
    gib = args.rows * args.features * 8 / 2**30
    print(f"{args.rows:,} x {args.features} float64 ({gib:.2f} GiB), {args.threads} threads, {os.cpu_count()} CPUs")
    base = statistics.median(times["read_table"])
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:34s} {seconds:.3f} s  {seconds / base:.2f} x read_table  {gib / seconds:.2f} GiB/s")


if __name__ == "__main__":
    main()
