"""Signals sent to the `dgmm` command at deterministic points (from a worker plugin, or when the
command reads its n-th row group): SIGTERM as Airflow, Kubernetes and systemd send it, Ctrl-C
as a terminal sends it to the whole process group."""

from __future__ import annotations

import os
import subprocess

import psutil
import pytest
from faults import HOOKS, preload_env, worker_pids

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.testing import BIN, assert_identical

FIT = ["--n-components", "3", "--tol", "0", "--max-iter", "8", "--seed", "1", "--n-workers", "2"]


@pytest.fixture(scope="module")
def dataset(fit_data):
    return fit_data


def hidden_files(*folders) -> list[str]:
    return [
        name
        for folder in folders
        if os.path.isdir(folder)
        for name in os.listdir(folder)
        if name.startswith(".") and not name.endswith(".lock")
    ]


def assert_gone(pids: list[int]) -> None:
    """Every worker process ended with the command (none is left running)."""
    alive = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
    _, still = psutil.wait_procs(alive, timeout=30)
    assert not [p for p in still if p.status() != psutil.STATUS_ZOMBIE], still


def test_sigterm_mid_fit_is_one_line_exit_143_and_resume_gives_the_same_bits(dataset, tmp_path, cluster_client):
    common = [BIN / "dgmm", "fit", dataset, *FIT, "--model", tmp_path / "m.npz", "--checkpoint", tmp_path / "ck"]
    # pass 17 of 21 (13 initialisation passes, then EM); the nanny lives in the `dgmm fit` process itself
    env = preload_env(tmp_path / "faults", n=17, moment="task", target="nanny", signal="SIGTERM")
    proc = subprocess.run(common, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "dgmm fit: terminated (SIGTERM)"
    assert "Traceback" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr
    assert (tmp_path / "ck" / "checkpoint.npz").exists() and not (tmp_path / "m.npz").exists()
    assert hidden_files(tmp_path, tmp_path / "ck") == []
    assert len(worker_pids(tmp_path / "faults")) >= 2
    assert_gone(worker_pids(tmp_path / "faults"))

    resumed = subprocess.run([*common, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "ck").exists()  # removed once the model is published
    expected = dgmm.GaussianMixture(3, tol=0.0, max_iter=8, random_state=1, client=cluster_client).fit(dataset)
    assert_identical(dgmm.load_model(tmp_path / "m.npz"), expected)


def test_ctrl_c_to_the_process_group_prints_one_line_and_no_worker_traceback(dataset, tmp_path):
    env = preload_env(tmp_path / "faults", n=10, moment="task", target="group", signal="SIGINT")
    proc = subprocess.run(
        [BIN / "dgmm", "fit", dataset, *FIT, "--model", tmp_path / "m.npz"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        start_new_session=True,
    )  # its own group, as in a terminal
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "dgmm fit: interrupted"
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    assert not (tmp_path / "m.npz").exists() and hidden_files(tmp_path) == []
    assert_gone(worker_pids(tmp_path / "faults"))


def test_sigterm_during_predict_leaves_no_temporary_file(dataset, tmp_path):
    X, _ = sample_mixture(random_mixture(3, 3, seed=6, separation=3.0), 3_000, seed=6)
    dgmm.GaussianMixture(3, random_state=0, max_iter=5).fit(X).save(tmp_path / "m.npz")
    env = {**os.environ, "PYTHONPATH": str(HOOKS), "DGMM_SIGNAL_AT": "SIGTERM:3"}
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [BIN / "dgmm", "predict", tmp_path / "m.npz", dataset, "--output", out / "labels.parquet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines() == ["dgmm predict: terminated (SIGTERM)"]
    assert os.listdir(out) == []
