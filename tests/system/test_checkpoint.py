"""Checkpoints: an interrupted fit resumes to exactly the uninterrupted result; mismatches are refused."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from faults import KillAt, passes_seen

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.errors import CheckpointError
from dgmm.persist.checkpoint import Checkpoint

DGMM = str(Path(sys.executable).parent / "dgmm")

ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_", "n_iter_", "converged_")


class Interrupt(Exception):
    pass


def stop_after(n_calls: int):
    calls = {"n": 0}

    def callback(report):
        calls["n"] += 1
        if calls["n"] == n_calls:
            raise Interrupt

    return callback


@pytest.fixture(scope="module")
def X():
    return sample_mixture(random_mixture(3, 2, seed=2, separation=3.0), 3000, seed=2)[0]


def assert_same_fit(a, b):
    for attr in ATTRS:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
    assert a.lower_bounds_ == b.lower_bounds_


@pytest.mark.parametrize("stop_at", [1, 4, 13])
def test_interrupted_fit_resumes_exactly(X, tmp_path, stop_at):
    kwargs = dict(tol=1e-8, max_iter=8, n_init=3, random_state=5)
    reference = dgmm.GaussianMixture(3, **kwargs).fit(X)
    with pytest.raises(Interrupt):
        dgmm.GaussianMixture(3, **kwargs).fit(X, on_iteration=stop_after(stop_at), checkpoint=Checkpoint(tmp_path))
    resumed = dgmm.GaussianMixture(3, **kwargs).fit(X, checkpoint=Checkpoint(tmp_path, resume=True))
    assert_same_fit(resumed, reference)
    # a finished checkpoint resumes to the same model without iterating
    again = dgmm.GaussianMixture(3, **kwargs).fit(
        X, on_iteration=stop_after(1), checkpoint=Checkpoint(tmp_path, resume=True)
    )
    assert_same_fit(again, reference)


def test_the_count_of_dropped_rows_survives_an_interruption(X, tmp_path):
    dirty = X.copy()
    dirty[::100, 1] = np.nan
    kwargs = dict(tol=1e-8, max_iter=6, n_init=2, random_state=5, nan_policy="drop")
    reference = dgmm.GaussianMixture(3, **kwargs).fit(dirty)
    assert reference.n_rows_dropped_ == 30
    with pytest.raises(Interrupt):
        dgmm.GaussianMixture(3, **kwargs).fit(dirty, on_iteration=stop_after(8), checkpoint=Checkpoint(tmp_path))
    for _ in range(2):  # resumed, then finished: from the checkpoint alone
        resumed = dgmm.GaussianMixture(3, **kwargs).fit(dirty, checkpoint=Checkpoint(tmp_path, resume=True))
        assert_same_fit(resumed, reference)
        assert resumed.n_rows_dropped_ == 30


def test_resume_without_a_checkpoint_starts_afresh(X, tmp_path):
    fresh = dgmm.GaussianMixture(3, random_state=0).fit(X, checkpoint=Checkpoint(tmp_path / "new", resume=True))
    assert_same_fit(fresh, dgmm.GaussianMixture(3, random_state=0).fit(X))
    assert (tmp_path / "new" / "checkpoint.npz").exists()


def test_resume_refuses_other_settings_or_data(X, tmp_path):
    dgmm.GaussianMixture(3, random_state=0, max_iter=3).fit(X, checkpoint=Checkpoint(tmp_path))
    with pytest.raises(CheckpointError, match=r"written for other settings \(n_components: 3 now 4\)"):
        dgmm.GaussianMixture(4, random_state=0, max_iter=3).fit(X, checkpoint=Checkpoint(tmp_path, resume=True))
    with pytest.raises(CheckpointError, match=r"written for other input \(sha256: "):
        dgmm.GaussianMixture(3, random_state=0, max_iter=3).fit(X + 1, checkpoint=Checkpoint(tmp_path, resume=True))
    (tmp_path / "checkpoint.npz").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        dgmm.GaussianMixture(3, random_state=0, max_iter=3).fit(X, checkpoint=Checkpoint(tmp_path, resume=True))


def counted_cli_fit(client, folder, args) -> int:
    """Run `dgmm fit` with ``args`` on ``client``'s cluster; the number of passes it made."""
    client.register_plugin(KillAt(folder, None), name="dgmm-count")
    try:
        subprocess.run([DGMM, *map(str, args)], check=True, capture_output=True, timeout=300)
    finally:
        client.unregister_worker_plugin("dgmm-count")
    return passes_seen(folder)


def test_kill_9_during_cli_fit_then_resume_equals_uninterrupted(tmp_path, parquet_dir, cluster_client):
    """A real `dgmm fit --checkpoint` process is killed with SIGKILL mid-fit (by a worker plugin, 10
    passes before the end), then resumed."""
    data = parquet_dir(
        sample_mixture(random_mixture(4, 3, seed=3, separation=2.0), 60_000, seed=3)[0], row_group_size=5000
    )
    common = [
        "fit",
        data,
        "--n-components",
        "4",
        "--seed",
        "1",
        "--tol",
        "0",
        "--max-iter",
        "30",
        "--scheduler",
        cluster_client.scheduler.address,
    ]
    passes = counted_cli_fit(cluster_client, tmp_path / "count", [*common, "--model", tmp_path / "reference.npz"])

    checkpoint_dir, pidfile = tmp_path / "ckpt", tmp_path / "fit.pid"
    cluster_client.register_plugin(
        KillAt(tmp_path / "kill", passes - 10, "task", ("pidfile", str(pidfile))), name="dgmm-fault"
    )
    try:
        proc = subprocess.Popen(
            [DGMM, *map(str, common), "--model", tmp_path / "model.npz", "--checkpoint", checkpoint_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pidfile.write_text(str(proc.pid))
        proc.communicate(timeout=300)
    finally:
        cluster_client.unregister_worker_plugin("dgmm-fault")
    assert proc.returncode == -signal.SIGKILL
    killed_at = Checkpoint(checkpoint_dir).peek_iteration()
    assert 1 <= killed_at < 30 and not (tmp_path / "model.npz").exists()

    resumed = subprocess.run(
        [DGMM, *map(str, common), "--model", tmp_path / "model.npz", "--checkpoint", checkpoint_dir, "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming=True" in resumed.stderr
    assert f"iteration {killed_at + 1:4d}" in resumed.stderr and "iteration    1 " not in resumed.stderr
    assert_same_fit(dgmm.load_model(tmp_path / "model.npz"), dgmm.load_model(tmp_path / "reference.npz"))


@pytest.mark.parametrize("change", ["removed", "rewritten"])
def test_input_file_changed_between_iterations_fails_clearly_and_keeps_the_checkpoint(
    tmp_path, parquet_dir, cluster_client, change
):
    """A Parquet file vanishes or is overwritten mid-fit (by a worker plugin, 5 passes before the end): exit 6
    naming it and what changed, the checkpoint survives, resume on the restored file ends as if nothing
    happened."""
    data = Path(
        parquet_dir(
            sample_mixture(random_mixture(3, 2, seed=4, separation=2.0), 40_000, seed=4)[0],
            row_group_size=4000,
            n_files=2,
        )
    )
    victim = sorted(data.glob("*.parquet"))[1]
    common = [
        "fit",
        data,
        "--n-components",
        "3",
        "--seed",
        "2",
        "--tol",
        "0",
        "--max-iter",
        "12",
        "--cache",
        "none",
        "--scheduler",
        cluster_client.scheduler.address,
    ]
    passes = counted_cli_fit(cluster_client, tmp_path / "count", [*common, "--model", tmp_path / "reference.npz"])

    checkpoint_dir = tmp_path / "ckpt"
    hidden = tmp_path / "hidden.parquet"
    original = victim.read_bytes()
    target = ("move", str(victim), str(hidden)) if change == "removed" else f"write:{victim}"
    cluster_client.register_plugin(KillAt(tmp_path / "move", passes - 5, "task", target), name="dgmm-fault")
    try:
        proc = subprocess.run(
            [DGMM, *map(str, common), "--model", tmp_path / "model.npz", "--checkpoint", checkpoint_dir],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        cluster_client.unregister_worker_plugin("dgmm-fault")
    assert proc.returncode == 6, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    what = "removed while in use" if change == "removed" else f"changed while in use: {len(original)} bytes when"
    assert error.startswith(f"dgmm fit: error: {victim}: {what}") and "Traceback" not in proc.stderr
    assert "run again once the writer is done" in error and "--resume" in error
    assert not (tmp_path / "model.npz").exists()
    stopped_at = Checkpoint(checkpoint_dir).peek_iteration()
    assert 1 <= stopped_at < 12

    victim.write_bytes(original)  # the same bytes again: the checkpoint's input
    resumed = subprocess.run(
        [DGMM, *map(str, common), "--model", tmp_path / "model.npz", "--checkpoint", checkpoint_dir, "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"iteration {stopped_at + 1:4d}" in resumed.stderr
    assert_same_fit(dgmm.load_model(tmp_path / "model.npz"), dgmm.load_model(tmp_path / "reference.npz"))
