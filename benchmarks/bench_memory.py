"""Out-of-core EM: seconds per iteration against rows, and peak memory, on a LocalCluster.

    python benchmarks/bench_memory.py [--base-rows 500000] [--scales 1,4,16] [--features 8]
        [--components 4] [--iters 5] [--row-group-size 100000] [--memory-limit 512MiB]
        [--oversize | --no-oversize] [--cache none]

For every scale s a mixture of s * base-rows rows is streamed to Parquet (one row group at a
time, in a temporary directory deleted after its measurement) and fitted by dgmm with tol=0,
so every fit runs exactly ``--iters`` EM iterations (each one pass over the files) on a
LocalCluster of 2 worker processes (1 thread each, ``--memory-limit`` each). The fits use
``cache="none"`` (``--cache``) so every iteration streams the row groups from Parquet: with
dgmm's default ``cache="auto"`` the small data sets would be persisted in worker memory and
the large ones streamed, and the scales would not be comparable. Reported:

- seconds per iteration: the median of the ``IterationReport.seconds`` of the EM iterations
  (the initialisation passes are not iterations and are not timed);
- peak RSS sum: a background thread samples every 0.1 s the RSS of this process (client and,
  with LocalCluster, the scheduler and the nannies, which run in-process), of every worker
  process and of every other descendant process, and keeps the peak of the sum; also each
  worker's own peak RSS;
- workers restarted: worker addresses and pids before and after the fit differ;
- spilled bytes: bytes the workers wrote to their spill directories during the fit.

Out-of-core EM should show seconds per iteration linear in rows (16x rows -> ~16x time) and
flat peak memory (16x rows -> ~1x RSS). ``--oversize`` adds a data set whose float64 size is
at least 3x the workers' total memory limit, fitted with 2 iterations.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import dgmm
from dgmm.data.synthetic import write_mixture_parquet

MiB = 2**20
SAMPLE_SECONDS = 0.1
N_WORKERS = 2


# --------------------------------------------------------------------------- processes
def worker_pids(client) -> dict[str, int]:
    """{worker address: worker process id}."""
    return dict(client.run(os.getpid))


def worker_addresses(client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


def spilled_bytes(client) -> dict[str, float | None]:
    """{worker address: bytes written to its spill directory so far} (cumulative), None if unknown.

    With distributed's SpillBuffer, ``data.cumulative_metrics[("disk-write", "bytes")]`` counts
    every pickled byte spilled since the worker started (``data.spilled_total`` is only what is on
    disk right now, which is back to 0 once a fit has released its data).
    """

    def probe(dask_worker) -> float | None:
        data = dask_worker.data
        metrics = getattr(data, "cumulative_metrics", None)
        if metrics is not None:
            return float(metrics.get(("disk-write", "bytes"), 0.0))
        total = getattr(data, "spilled_total", None)
        if total is not None:
            return float(total.disk)
        return 0.0 if isinstance(data, dict) else None  # plain dict: spilling disabled

    return dict(client.run(probe))


def spilled_now(client) -> dict[str, float | None]:
    """{worker address: bytes on disk in its spill directory right now}."""

    def probe(dask_worker) -> float | None:
        total = getattr(dask_worker.data, "spilled_total", None)
        return None if total is None else float(total.disk)

    return dict(client.run(probe))


class RssSampler(threading.Thread):
    """Samples every ``SAMPLE_SECONDS`` the RSS of this process, the workers, their nannies and
    every descendant of this process; keeps the peak of the sum and each worker's peak."""

    def __init__(self, workers: dict[str, int]):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.workers = {address: psutil.Process(pid) for address, pid in workers.items()}
        self.nannies = {}
        for proc in self.workers.values():
            parent = proc.parent()
            if parent is not None and parent.pid != self.me.pid:
                self.nannies[parent.pid] = parent
        self.peak_sum = 0
        self.peak_client = 0
        self.peak_worker = {address: 0 for address in workers}
        self.later_iterations = False  # set after iteration 1: peaks of iterations 2.. kept apart
        self.peak_worker_later = 0
        self.samples = 0
        self.stop_event = threading.Event()

    @staticmethod
    def rss(proc) -> int:
        try:
            return proc.memory_info().rss
        except Exception:  # the process ended (e.g. a worker was restarted)
            return 0

    def processes(self) -> dict:
        procs = {self.me.pid: self.me}
        procs.update({p.pid: p for p in self.workers.values()})
        procs.update(self.nannies)
        try:
            procs.update({p.pid: p for p in self.me.children(recursive=True)})  # restarted workers, trackers
        except self.psutil.Error:
            pass
        return procs

    def cpu_seconds(self) -> tuple[float, float]:
        """(CPU seconds of the whole machine so far, of our processes so far)."""
        machine = self.psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0) - getattr(machine, "steal", 0.0)
        ours = 0.0
        for proc in self.processes().values():
            try:
                t = proc.cpu_times()
                ours += t.user + t.system
            except self.psutil.Error:
                pass
        return busy, ours

    def sample(self) -> int:
        procs = self.processes()
        sizes = {pid: self.rss(p) for pid, p in procs.items()}
        total = sum(sizes.values())
        self.peak_sum = max(self.peak_sum, total)
        self.peak_client = max(self.peak_client, sizes[self.me.pid])
        for address, proc in self.workers.items():
            self.peak_worker[address] = max(self.peak_worker[address], sizes.get(proc.pid, 0))
            if self.later_iterations:
                self.peak_worker_later = max(self.peak_worker_later, sizes.get(proc.pid, 0))
        self.samples += 1
        return total

    def run(self) -> None:
        self.cpu_start, self.wall_start = self.cpu_seconds(), time.perf_counter()
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()
        self.sample()
        (busy0, ours0), (busy1, ours1) = self.cpu_start, self.cpu_seconds()
        self.wall = time.perf_counter() - self.wall_start
        self.cpu_ours, self.cpu_others = ours1 - ours0, max(0.0, (busy1 - busy0) - (ours1 - ours0))

    def describe(self) -> str:
        nannies = (
            f"{len(self.nannies)} nanny process(es)"
            if self.nannies
            else "the nannies (in-process: each worker's parent is this process)"
        )
        return (
            f"this process (client + LocalCluster scheduler + {nannies}), "
            f"{len(self.workers)} worker processes and any other child processes"
        )


# --------------------------------------------------------------------------- one case
@dataclass
class Case:
    label: str
    n_rows: int
    n_features: int
    iteration_seconds: list[float] = field(default_factory=list)
    baseline_sum: int = 0
    peak_sum: int = 0
    peak_client: int = 0
    peak_workers: dict[str, int] = field(default_factory=dict)
    peak_worker_early: int = 0  # initialisation passes + iteration 1
    peak_worker_later: int = 0  # iterations 2..
    restarted: bool | None = None
    spilled: float | None = None
    generate_seconds: float = 0.0
    fit_seconds: float = 0.0
    cache_used: str = "n/a"
    cpu_ours: float = 0.0
    cpu_others: float = 0.0

    @property
    def mib(self) -> float:
        return self.n_rows * self.n_features * 8 / MiB

    @property
    def per_iteration(self) -> float:
        return statistics.median(self.iteration_seconds)


def measure(client, tmp: str, label: str, n_rows: int, args, max_iter: int, seed: int) -> Case:
    d, K = args.features, args.components
    case = Case(label, n_rows, d)
    path = os.path.join(tmp, f"{label}-{n_rows}")
    started = time.perf_counter()
    write_mixture_parquet(
        path, n_rows, d, K, seed=seed, row_group_size=args.row_group_size, n_files=max(1, n_rows // 2_000_000)
    )
    case.generate_seconds = time.perf_counter() - started
    try:
        client.wait_for_workers(N_WORKERS, timeout=120)  # a worker restarted by an earlier case is back
        addresses, pids = worker_addresses(client), worker_pids(client)
        spilled_before = spilled_bytes(client)
        sampler = RssSampler(pids)
        case.baseline_sum = sampler.sample()
        sampler.peak_sum = sampler.peak_client = 0
        sampler.peak_worker = dict.fromkeys(sampler.peak_worker, 0)
        extra = {"cache": args.cache} if "cache" in inspect.signature(dgmm.GaussianMixture).parameters else {}
        model = dgmm.GaussianMixture(
            K, covariance_type="full", tol=0.0, max_iter=max_iter, random_state=0, client=client, **extra
        )

        def on_iteration(report) -> None:
            case.iteration_seconds.append(report.seconds)
            if not sampler.later_iterations:
                case.peak_worker_early = max(sampler.peak_worker.values())
                sampler.later_iterations = True

        sampler.start()
        started = time.perf_counter()
        try:
            model.fit(path, on_iteration=on_iteration)
        finally:
            case.fit_seconds = time.perf_counter() - started
            sampler.stop()
        case.peak_sum, case.peak_client, case.peak_workers = sampler.peak_sum, sampler.peak_client, sampler.peak_worker
        case.peak_worker_later = sampler.peak_worker_later
        case.cpu_ours, case.cpu_others = sampler.cpu_ours, sampler.cpu_others
        case.cache_used = str(getattr(model, "cache_used_", "n/a (no cache option)"))
        case.restarted = worker_addresses(client) != addresses or worker_pids(client) != pids
        spilled_after = spilled_bytes(client)
        if case.restarted or any(v is None for v in (*spilled_before.values(), *spilled_after.values())):
            # a restarted worker's counter starts again at 0: report what is on disk now, if readable
            now = spilled_now(client)
            case.spilled = None if any(v is None for v in now.values()) else sum(now.values())
        else:
            case.spilled = sum(spilled_after[a] - spilled_before[a] for a in spilled_after)
        if len(case.iteration_seconds) != max_iter:
            raise RuntimeError(
                f"{label}: expected {max_iter} iterations, the callback saw {len(case.iteration_seconds)}"
            )
        return case
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- output
def machine() -> str:
    import dask
    import distributed
    import psutil
    import pyarrow

    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB memory, Python {platform.python_version()}, "
        f"numpy {np.__version__}, dask {dask.__version__}, distributed {distributed.__version__}, "
        f"pyarrow {pyarrow.__version__}, dgmm {dgmm.__version__}"
    )


HEADER = (
    f"{'case':>8} {'rows':>11} {'MiB f64':>8} {'s/iter':>8} {'s/Mrow':>7} {'peak RSS sum MiB':>16} "
    f"{'max worker MiB':>14} {'restarted':>9} {'spilled bytes':>13}"
)


def row(case: Case) -> str:
    spilled = "n/a" if case.spilled is None else f"{case.spilled:.0f}"
    restarted = "n/a" if case.restarted is None else ("yes" if case.restarted else "no")
    return (
        f"{case.label:>8} {case.n_rows:>11,} {case.mib:>8.0f} {case.per_iteration:>8.3f} "
        f"{case.per_iteration / (case.n_rows / 1e6):>7.3f} {case.peak_sum / MiB:>16.0f} "
        f"{max(case.peak_workers.values()) / MiB:>14.0f} {restarted:>9} {spilled:>13}"
    )


def detail(case: Case) -> str:
    workers = ", ".join(f"{v / MiB:.0f}" for v in case.peak_workers.values())
    return (
        f"  {case.label}: cache used {case.cache_used}; generate {case.generate_seconds:.1f} s, "
        f"fit {case.fit_seconds:.1f} s "
        f"(iterations: {', '.join(f'{s:.2f}' for s in case.iteration_seconds)} s); RSS sum before fit "
        f"{case.baseline_sum / MiB:.0f} MiB, peak of this process {case.peak_client / MiB:.0f} MiB, "
        f"worker peaks {workers} MiB (max during init passes + iteration 1: {case.peak_worker_early / MiB:.0f}, "
        f"during iterations 2..: {case.peak_worker_later / MiB:.0f}); CPU during the fit: ours {case.cpu_ours:.0f} s, "
        f"other processes {case.cpu_others:.0f} s of {case.fit_seconds * (os.cpu_count() or 1):.0f} available"
    )


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-rows", type=int, default=500_000)
    parser.add_argument("--scales", default="1,4,16", help="comma-separated multiples of --base-rows")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--components", type=int, default=4)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--row-group-size", type=int, default=100_000)
    parser.add_argument("--memory-limit", default="512MiB", help="per worker (2 workers)")
    parser.add_argument(
        "--oversize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a data set of at least 3x the workers' total memory limit (2 iterations)",
    )
    parser.add_argument(
        "--cache",
        default="none",
        choices=("none", "auto", "memory"),
        help="dgmm's cache policy (default none: stream from Parquet every iteration)",
    )
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    warnings.simplefilter("ignore")

    from dask.utils import format_bytes, parse_bytes
    from distributed import Client, LocalCluster

    print(machine(), flush=True)
    limit = parse_bytes(args.memory_limit)
    print(
        f"cluster: LocalCluster, 2 worker processes x 1 thread, memory_limit {format_bytes(limit)} each; "
        f"d={args.features}, K={args.components}, full covariance, row groups of {args.row_group_size:,} rows; "
        f"{args.iters} EM iterations (tol=0), s/iter = median over them; cache={args.cache}",
        flush=True,
    )

    cases: list[Case] = []
    with (
        LocalCluster(
            n_workers=N_WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=args.memory_limit,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        tempfile.TemporaryDirectory(prefix="dgmm-bench-memory-") as tmp,
    ):
        print(
            "RSS covers: " + RssSampler(worker_pids(client)).describe() + f"; sampled every {SAMPLE_SECONDS} s",
            flush=True,
        )
        print(HEADER, flush=True)
        for i, scale in enumerate(scales):
            cases.append(measure(client, tmp, f"{scale}x", scale * args.base_rows, args, args.iters, seed=1 + i))
            print(row(cases[-1]), flush=True)
        if args.oversize:
            n = math.ceil(3 * N_WORKERS * limit / (args.features * 8))
            cases.append(measure(client, tmp, "oversize", n, args, 2, seed=100))
            print(row(cases[-1]), flush=True)

    print("\nper case:")
    for case in cases:
        print(detail(case))
    if args.oversize:
        print(
            f"  oversize: {cases[-1].mib:.0f} MiB float64 = {cases[-1].mib * MiB / (N_WORKERS * limit):.2f}x the "
            f"workers' total memory limit ({format_bytes(N_WORKERS * limit)}); 2 EM iterations"
        )
    by_scale = {scale: case for scale, case in zip(scales, cases)}
    small, large = min(scales), max(scales)
    if large != small:
        r = large // small if large % small == 0 else large / small
        a, b = by_scale[small], by_scale[large]
        print(
            f"\nratios {large}x / {small}x: time/iter {b.per_iteration / a.per_iteration:.2f} (ideal {r}), "
            f"peak RSS sum {b.peak_sum / a.peak_sum:.2f} (ideal ~1), "
            f"max worker peak RSS {max(b.peak_workers.values()) / max(a.peak_workers.values()):.2f} (ideal ~1)"
        )


if __name__ == "__main__":
    main()
