"""What a scheduled (cron, Airflow) `dgmm fit` relies on: outputs never replaced behind its back,
a model that could not be published kept and published by --resume without refitting, and a
checkpoint that belongs to one run — refused for other input with the real difference, before
any cluster starts, and removed once its model is published."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from faults import preload_env

import dgmm
from dgmm.data.synthetic import write_parquet
from dgmm.persist.checkpoint import Checkpoint
from dgmm.testing import BIN, assert_identical

FIT = ["--n-components", "3", "--tol", "0", "--max-iter", "8", "--seed", "1", "--n-workers", "2"]
LATE_PASS = 17  # of the 21 passes of this fit (13 initialisation passes, then 8 EM iterations)


@pytest.fixture(scope="module")
def dataset(fit_data):
    return Path(fit_data)


@pytest.fixture(scope="module")
def expected(dataset, cluster_client):
    return dgmm.GaussianMixture(3, tol=0.0, max_iter=8, random_state=1, client=cluster_client).fit(str(dataset))


def fit(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "dgmm", "fit", *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("dgmm fit: error: "), proc.stderr
    return lines[-1]


def test_a_model_file_appearing_during_the_fit_is_kept_and_resume_publishes_without_refitting(
    dataset, expected, tmp_path
):
    model, checkpoint = tmp_path / "m.npz", tmp_path / "ck"
    env = preload_env(tmp_path / "faults", n=LATE_PASS, moment="task", target=f"write:{model}")
    proc = fit(dataset, *FIT, "--model", model, "--checkpoint", checkpoint, env=env)
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert line.startswith(
        f"dgmm fit: error: {model}: appeared while this fit ran (another run writing there?) and "
        "is not replaced without --overwrite; the fitted model is kept in the checkpoint "
        f"{checkpoint / 'checkpoint.npz'}: fix that, then run the same command with --resume"
    )
    assert model.read_bytes() == b"another run's model"  # not replaced

    model.unlink()
    proc = fit(dataset, *FIT, "--model", model, "--checkpoint", checkpoint, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "iteration    " not in proc.stderr and "local cluster" not in proc.stderr  # no pass, no cluster
    assert_identical(dgmm.load_model(model), expected)
    assert not checkpoint.exists()


def test_without_a_checkpoint_the_unpublished_model_is_kept_in_a_file(dataset, expected, tmp_path):
    model = tmp_path / "m.npz"
    env = preload_env(tmp_path / "faults", n=LATE_PASS, moment="task", target=f"write:{model}")
    proc = fit(dataset, *FIT, "--model", model, env=env)
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    kept = line.split("the fitted model is kept at ")[1].split(":")[0]
    assert f"move it into place (mv {kept} {model}); no refit needed" in line
    assert_identical(dgmm.load_model(kept), expected)
    assert model.read_bytes() == b"another run's model"


def test_a_stale_checkpoint_is_refused_with_the_difference_before_any_cluster_starts(dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    checkpoint = tmp_path / "ck"
    env = preload_env(tmp_path / "faults", n=LATE_PASS, moment="task", target="nanny", signal="SIGTERM")
    assert fit(data, *FIT, "--model", tmp_path / "m.npz", "--checkpoint", checkpoint, env=env).returncode == 143
    assert (checkpoint / "checkpoint.npz").exists()

    write_parquet(np.ones((4, 3)), tmp_path / "more")
    (tmp_path / "more" / "part-00000.parquet").rename(data / "part-00002.parquet")  # the next night's new file
    proc = fit(data, *FIT, "--model", tmp_path / "m.npz", "--checkpoint", checkpoint, "--resume")
    assert proc.returncode == 2
    assert error_line(proc) == (
        f"dgmm fit: error: {checkpoint / 'checkpoint.npz'}: written for other input (1 file added: "
        f"{data / 'part-00002.parquet'}; n_rows: 60000 now 60004); delete the checkpoint or run without resuming"
    )
    assert "local cluster" not in proc.stderr

    proc = fit(data, *FIT, "--model", tmp_path / "m.npz", "--checkpoint", checkpoint)
    assert proc.returncode == 2
    assert "a checkpoint of an earlier run is there; continue it with --resume" in error_line(proc)
    assert "local cluster" not in proc.stderr


def test_a_checkpoint_in_use_by_another_run_is_refused(dataset, tmp_path):
    checkpoint = Checkpoint(tmp_path / "ck")
    with checkpoint.claimed():
        proc = fit(dataset, *FIT, "--model", tmp_path / "m.npz", "--checkpoint", tmp_path / "ck")
    assert proc.returncode == 2
    assert "in use by another run; wait for it to end, or give this run its own --checkpoint directory" in error_line(
        proc
    )
    assert not (tmp_path / "m.npz").exists()
