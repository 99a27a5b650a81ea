"""Faults during a fit on real clusters, injected at deterministic points (tests/faults.py).

A worker or nanny killed at any moment of a pass — the parameters being made or fetched, a
chunk task running — costs a retry and changes no bit. Workers that stay paused, no workers, a
lost scheduler: one line, exit code 5, the checkpoint kept, and ``--resume`` gives the same bits.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from distributed import Client
from faults import FOLDER, KillAt, killed, passes_seen, resume

import dgmm
from dgmm.testing import BIN, assert_identical, dask_processes, mixture_parquet

FIT = dict(n_components=3, tol=0.0, max_iter=6, random_state=1)
CLI_FIT = ["--n-components", "3", "--tol", "0", "--max-iter", "6", "--seed", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return mixture_parquet(tmp_path_factory.mktemp("faults"), 120_000, 4, 8, 10_000, 3)


@pytest.fixture(scope="module")
def undisturbed(dataset, scheduler_and_workers, tmp_path_factory):
    """cache -> (the fit without faults, the number of passes it took)."""
    fits = {}
    with Client(scheduler_and_workers, set_as_default=False) as client:
        for cache in ("none", "memory"):
            folder = tmp_path_factory.mktemp(f"count-{cache}")
            client.register_plugin(KillAt(folder, None), name="dgmm-count")
            fits[cache] = dgmm.GaussianMixture(**FIT, cache=cache, client=client).fit(dataset), passes_seen(folder)
            client.unregister_worker_plugin("dgmm-count")
    return fits


def fit_with_fault(client, dataset, fault: KillAt, **kwargs):
    client.register_plugin(fault, name="dgmm-fault")
    try:
        return dgmm.GaussianMixture(**FIT, client=client, **kwargs).fit(dataset)
    finally:
        client.unregister_worker_plugin("dgmm-fault")


@pytest.mark.parametrize(
    "cache, moment", [("none", "task"), ("memory", "task"), ("none", "payload-made"), ("memory", "payload-fetch")]
)
def test_worker_killed_mid_pass_changes_nothing(dataset, scheduler_and_workers, undisturbed, tmp_path, cache, moment):
    expected, passes = undisturbed[cache]
    with Client(scheduler_and_workers, set_as_default=False) as client:
        disturbed = fit_with_fault(client, dataset, KillAt(tmp_path, passes - 2, moment), cache=cache)
        assert killed(tmp_path)
        client.wait_for_workers(2, timeout=120)  # the nanny started a new worker process
    assert_identical(disturbed, expected)


def test_nanny_and_worker_lost_mid_pass_finish_on_the_rest(dataset, undisturbed, tmp_path):
    expected, passes = undisturbed["none"]
    with (
        dask_processes(tmp_path / "dask", n_workers=2, pythonpath=[FOLDER]) as address,
        Client(address, set_as_default=False) as client,
    ):
        disturbed = fit_with_fault(client, dataset, KillAt(tmp_path, passes - 2, "task", "nanny"), cache="none")
        assert killed(tmp_path)
        assert len(client.scheduler_info()["workers"]) == 1
    assert_identical(disturbed, expected)


def run_fit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "dgmm", "fit", *map(str, args)], capture_output=True, text=True, timeout=600)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dgmm fit: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_paused_workers_end_the_fit_with_exit_5_and_resume_gives_the_same_bits(dataset, undisturbed, tmp_path):
    expected, passes = undisturbed["none"]
    no_auto_resume = {"DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "False"}  # only the fault pauses them
    common = [dataset, *CLI_FIT, "--cache", "none", "--model", tmp_path / "m.npz", "--checkpoint", tmp_path / "ck"]
    with (
        dask_processes(tmp_path / "dask", n_workers=2, env=no_auto_resume, pythonpath=[FOLDER]) as address,
        Client(address, set_as_default=False) as client,
    ):
        client.register_plugin(KillAt(tmp_path / "faults", passes - 2, target="pause"), name="dgmm-fault")
        proc = run_fit(*common, "--scheduler", address, "--stall-timeout", "3")
        assert proc.returncode == 5, proc.stderr
        line = one_line(proc)
        assert "no worker ran for 3 s: 2 of 2 workers are paused at their memory limit" in line
        assert "--memory-limit" in line and "--resume" in line
        assert (tmp_path / "ck" / "checkpoint.npz").exists() and not (tmp_path / "m.npz").exists()
        client.unregister_worker_plugin("dgmm-fault")
        client.run(resume)
        proc = run_fit(*common, "--scheduler", address, "--resume")
        assert proc.returncode == 0, proc.stderr
    assert_identical(dgmm.load_model(tmp_path / "m.npz"), expected)


def test_lost_scheduler_is_exit_5_and_resume_on_a_new_cluster_gives_the_same_bits(dataset, undisturbed, tmp_path):
    expected, passes = undisturbed["none"]
    common = [dataset, *CLI_FIT, "--cache", "none", "--model", tmp_path / "m.npz", "--checkpoint", tmp_path / "ck"]
    with (
        dask_processes(tmp_path / "first", n_workers=2, pythonpath=[FOLDER]) as address,
        Client(address, set_as_default=False) as client,
    ):
        scheduler = client.run_on_scheduler(os.getpid)
        client.register_plugin(KillAt(tmp_path / "faults", passes - 2, "task", scheduler), name="dgmm-fault")
        proc = run_fit(*common, "--scheduler", address)
        assert proc.returncode == 5, proc.stderr
        assert "lost the connection to the scheduler" in one_line(proc)
        client.close()
    assert (tmp_path / "ck" / "checkpoint.npz").exists() and not (tmp_path / "m.npz").exists()
    with dask_processes(tmp_path / "second", n_workers=2, pythonpath=[FOLDER]) as address:
        proc = run_fit(*common, "--scheduler", address, "--resume")
        assert proc.returncode == 0, proc.stderr
    assert_identical(dgmm.load_model(tmp_path / "m.npz"), expected)


def test_no_workers_ends_the_fit_with_a_cluster_error(dataset, tmp_path):
    with dask_processes(tmp_path / "dask", n_workers=0, pythonpath=[FOLDER]) as address:
        with pytest.raises(dgmm.ClusterError, match=r"no worker connected to scheduler tcp://.* for 2 s"):
            dgmm.GaussianMixture(**FIT, scheduler_address=address, stall_timeout=2).fit(dataset)


def test_stall_watch_forgives_brief_pauses_and_ends_long_ones():
    from dgmm.execution.deadlines import StallWatch

    watch = StallWatch(60.0)
    # paused 50 s, running again, paused 50 s more: never 60 s in a row
    assert [watch.stalled(t, running) for t, running in [(0, 0), (50, 0), (51, 1), (52, 0), (101, 0)]] == [False] * 5
    assert watch.stalled(112, 0)


def test_idle_workers_of_the_local_cluster_hold_at_most_250_mib(tmp_path):
    """Resident memory of every worker after start and before its first task (psutil, on the worker)."""
    code = (
        "import psutil\nfrom dgmm.execution import local_cluster\n"
        "def rss():\n    return psutil.Process().memory_info().rss\n"
        "if __name__ == '__main__':\n    with local_cluster(2) as client:\n"
        "        print(max(client.run(rss).values()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) <= 250 * 2**20
