"""The example configs in configs/ are valid, and the quick start one runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dgmm import load_model
from dgmm.cli.config import FIT_SETTINGS, read_yaml, resolve
from dgmm.cli.demo import DEMO_SETTINGS
from dgmm.data.synthetic import write_mixture_parquet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "name",
    [
        "quickstart.yaml",
        "large-out-of-core.yaml",
        "remote-scheduler.yaml",
        "remote-scheduler-tls.yaml",
        "gpu-streamed.yaml",
    ],
)
def test_fit_configs_are_valid(name):
    settings = resolve(FIT_SETTINGS, read_yaml(CONFIGS / name), where=name)
    assert settings["data"] and settings["model"] and settings["n_components"] >= 1


def test_demo_config_is_valid():
    assert resolve(DEMO_SETTINGS, read_yaml(CONFIGS / "demo.yaml"))["n_components"] == 3


def test_quickstart_config_fits(tmp_path):
    write_mixture_parquet(tmp_path / "demo-data", 20_000, 2, 3, seed=0, row_group_size=5_000)
    dgmm_cmd = str(Path(sys.executable).parent / "dgmm")
    proc = subprocess.run(
        [dgmm_cmd, "fit", "--config", CONFIGS / "quickstart.yaml", "--n-workers", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    model = load_model(tmp_path / "demo-model.npz")
    assert model.converged_ and model.n_components == 3
