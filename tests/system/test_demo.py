"""`make demo` end to end at a small size, and its config errors."""

from __future__ import annotations

from pathlib import Path

from dgmm.cli.demo import main

ROOT = Path(__file__).resolve().parents[2]  # the repository


def test_demo_generates_parquet_and_fits_on_a_local_cluster(tmp_path, capsys):
    data = tmp_path / "demo-data"
    code = main(["--config", str(ROOT / "configs" / "demo.yaml"), "--data", str(data), "--n-samples", "20000"])
    out = capsys.readouterr().out
    assert code == 0
    assert len(list(data.glob("part-*.parquet"))) == 4
    assert "fitted on a local Dask cluster of " in out and " worker processes" in out and "converged=True" in out
    assert "mean log-likelihood per iteration" in out


def test_demo_config_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_components: three\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dgmm demo: error: {bad}: key 'n_components' has value 'three'; expected an integer >= 1"
