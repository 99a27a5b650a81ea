"""dgmm.select: BIC over a grid shares passes and finds the generating K."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.algorithms.seeding import LLOYD_MAX_ITER, ROUNDS
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.errors import ParameterError
from dgmm.estimator.select import select


@pytest.fixture(scope="module")
def five():
    return sample_mixture(random_mixture(5, 2, seed=21, separation=6.0), 4000, seed=21)[0]


def test_bic_picks_five_among_one_to_ten_sharing_passes(five):
    result = select(five, n_components=range(1, 11), covariance_types=["full", "diag"], random_state=0)
    assert result.best.n_components == 5
    assert len(result.table) == 20 and {row["covariance_type"] for row in result.table} == {"full", "diag"}
    best_row = min(result.table, key=lambda row: row["bic"])
    assert (best_row["n_components"], best_row["covariance_type"]) == (5, result.best.covariance_type)
    assert all(np.isnan(row["heldout_log_likelihood"]) for row in result.table)  # none held out with bic
    frame = result.to_frame()
    assert frame.shape == (20, 8) and frame.loc[frame["bic"].idxmin(), "n_components"] == 5
    # the table and the model describe the same rows, all of them: the best row is what the model says
    assert best_row["bic"] == pytest.approx(result.best.bic(five), rel=1e-12)
    assert best_row["log_likelihood"] == pytest.approx(result.best.score(five), rel=1e-12)
    iterations = max(row["n_iter"] for row in result.table)
    # every cell's init (k-means|| rounds, candidate weights, Lloyd, statistics) and EM share each
    # pass: at most the longest init + the most EM iterations + one scoring pass, where 20 cells
    # one at a time would take 20x both
    assert result.passes <= ROUNDS + 2 + LLOYD_MAX_ITER + iterations + 1


def test_select_with_sample_based_init_costs_one_init_pass_for_all_cells(five):
    result = select(
        five, n_components=range(1, 11), covariance_types=["full", "diag"], random_state=0, init_params="k-means++"
    )
    assert result.best.n_components == 5
    iterations = max(row["n_iter"] for row in result.table)
    # one gather of the row samples of all cells, one statistics pass, the EM passes, one scoring pass
    assert result.passes == 1 + iterations + 1
    labels = result.best.predict(five)
    assert len(np.unique(labels)) == 5
    assert "*" in result.format()


def test_a_heldout_column_beside_bic_leaves_the_bic_fits_and_the_model_as_they_are(five):
    passes = []
    plain = select(five, n_components=[2, 5], random_state=0, init_params="k-means++")
    both = select(
        five, n_components=[2, 5], random_state=0, init_params="k-means++", heldout_fraction=0.2, on_pass=passes.append
    )
    for a, b in zip(plain.table, both.table):
        assert a["bic"] == b["bic"] and a["log_likelihood"] == b["log_likelihood"]
        assert np.isnan(a["heldout_log_likelihood"]) and np.isfinite(b["heldout_log_likelihood"])
    np.testing.assert_array_equal(both.best.means_, plain.best.means_)
    stages = [p.stage for p in passes]
    assert stages == sorted(stages, key=["grid on the training rows", "held-out rows", "grid", "all rows"].index)
    assert [p.n_pass for p in passes] == list(range(1, both.passes + 1)) and all(p.seconds >= 0 for p in passes)


def test_heldout_criterion_refits_the_chosen_cell_on_all_rows(five):
    passes = []
    result = select(five, n_components=[3, 5], criterion="heldout", random_state=0, on_pass=passes.append)
    assert result.best.n_components == 5 and result.best.converged_
    chosen = next(row for row in result.table if row["n_components"] == 5)
    # the refit from the training-rows model, on all rows, fits them at least as well
    assert result.best.score(five) >= chosen["log_likelihood"] - 1e-9
    assert passes[-1].stage == "refit on all rows"
    assert [p.stage for p in passes].count("refit on all rows") == result.best.n_iter_


def test_heldout_criterion_and_parquet(five, parquet_dir, cluster_client):
    path = parquet_dir(five, row_group_size=500)
    result = select(path, n_components=[3, 5], criterion="heldout", random_state=0, client=cluster_client)
    assert result.best.n_components == 5 and list(result.best.feature_names_in_) == ["x0", "x1"]
    in_memory = select(five, n_components=[3, 5], criterion="heldout", random_state=0)
    for a, b in zip(result.table, in_memory.table):
        assert a["heldout_log_likelihood"] == pytest.approx(b["heldout_log_likelihood"], rel=1e-9)


def test_bad_selection_parameters():
    X = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(ParameterError, match="criterion='best' is invalid"):
        select(X, [1, 2], criterion="best")
    with pytest.raises(ParameterError, match="covariance_type='banana' is invalid"):
        select(X, [1, 2], ["banana"])
    with pytest.raises(ParameterError, match="heldout_fraction=0.0 is invalid"):
        select(X, [1, 2], criterion="heldout", heldout_fraction=0.0)
    with pytest.raises(ParameterError, match="heldout_fraction=1.0 is invalid"):
        select(X, [1, 2], heldout_fraction=1.0)
    with pytest.raises(dgmm.DataError, match="n_samples >= max"):
        select(X[:3], [1, 5])


def test_select_command_prints_the_table_and_saves_the_best(five, parquet_dir, cluster_client, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    path = parquet_dir(five, row_group_size=1000)
    command = [
        str(Path(sys.executable).parent / "dgmm"),
        "select",
        path,
        "--n-components",
        "3-6",
        "--covariance-types",
        "full",
        "--scheduler",
        cluster_client.scheduler.address,
        "--model",
        str(tmp_path / "best.npz"),
        "--json",
        "--log-format",
        "json",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    names = [event["event"] for event in events]
    assert names[:2] == ["input", "cluster"] and names[-1] == "done" and events[-1]["passes"] == report["passes"]
    assert [e["number"] for e in events if e["event"] == "pass"] == list(range(1, report["passes"] + 1))
    assert {e["stage"] for e in events if e["event"] == "pass"} == {"grid", "all rows"}
    assert report["best"] == {"n_components": 5, "covariance_type": "full"} and len(report["table"]) == 4
    assert dgmm.load_model(tmp_path / "best.npz").n_components == 5
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "output exists; remove it or pass --overwrite" in again.stderr
    bad = subprocess.run(command[:4] + ["0-3"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "expected integers >= 1" in bad.stderr


def test_select_is_a_top_level_function(five):
    assert dgmm.select is select and dgmm.Selection is type(select(five[:500], [1, 2], max_iter=5))
