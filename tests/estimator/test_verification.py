"""Speaker verification end to end: trials scored from one pass of group scores, normalised against cohorts,
measured; the raw scores equal the classifier's own likelihood ratios, the normalised ones the formulas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dgmm
from dgmm.data.synthetic import write_parquet
from dgmm.kernels.detection import equal_error_rate


def speech(rng, world, shifts, speakers, frames):
    """Frames of each of ``speakers`` (a row per frame): the world's components, shifted by the speaker."""
    codes = np.repeat(speakers, frames)
    X = world[rng.integers(0, len(world), codes.size)] + shifts[codes] + rng.normal(size=(codes.size, world.shape[1]))
    return X, codes


@pytest.fixture(scope="module")
def enrolled():
    rng = np.random.default_rng(21)
    world, shifts = rng.normal(scale=3.0, size=(16, 5)), rng.normal(scale=1.0, size=(60, 5))
    X, codes = speech(rng, world, shifts, np.arange(40), 300)  # speakers 0..39 enrolled, 40..59 the cohort
    model = dgmm.GaussianMixtureClassifier(16, covariance_type="diag", ubm="fit", random_state=0, max_iter=30)
    model.fit(X, np.asarray([f"s{c:02d}" for c in codes]))
    test, test_codes = speech(rng, world, shifts, np.repeat(np.arange(40), 3), 60)
    utterances = np.repeat(np.arange(120), 60)
    cohort, cohort_codes = speech(rng, world, shifts, np.arange(40, 60), 60)
    trials = pd.DataFrame(
        [(f"s{m:02d}", u, m == u // 3) for u in range(120) for m in {u // 3, *rng.choice(40, 6, replace=False)}],
        columns=["model", "test", "target"],
    )
    return model, test, utterances, cohort, cohort_codes, trials


def test_raw_scores_are_the_mean_likelihood_ratios_and_norms_follow(enrolled):
    model, test, utterances, cohort, cohort_codes, trials = enrolled
    scored = dgmm.score_trials(model, test, utterances, trials)
    ratio = model.score_ratio(test)  # (n, C) frame by frame
    for row in scored.sample(20, random_state=0).itertuples():
        c = list(model.classes_).index(row.model)
        assert row.raw_score == pytest.approx(ratio[utterances == row.test, c].mean(), rel=1e-10)
        assert row.score == row.raw_score
    report = dgmm.verification_report(scored)
    assert report["n_target"] == 120 and report["eer"] < 0.2 and (report["c_miss"], report["p_target"]) == (10, 0.01)
    assert report["eer"] == equal_error_rate(scored["score"].to_numpy(), scored["target"].to_numpy())
    z = dgmm.score_trials(model, test, utterances, trials, norm="z", cohort=cohort, cohort_groups=cohort_codes)
    impostors = dgmm.score_trials(model, cohort, cohort_codes, pd.DataFrame(
        [(m, u) for m in model.classes_ for u in range(40, 60)], columns=["model", "test"]))  # fmt: skip
    by_model = impostors.groupby("model")["raw_score"]
    expected = (z["raw_score"] - z["model"].map(by_model.mean())) / z["model"].map(by_model.std(ddof=0))
    np.testing.assert_allclose(z["score"], expected, rtol=1e-9)
    for norm in ("t", "s", "as"):
        normed = dgmm.score_trials(model, test, utterances, trials, norm=norm, cohort=cohort,
                                   cohort_groups=cohort_codes, top_n=10)  # fmt: skip
        assert np.isfinite(normed["score"]).all() and dgmm.verification_report(normed)["eer"] < 0.2


def test_identification_accuracy_and_the_det_curve(enrolled, tmp_path):
    model, test, utterances, *_, trials = enrolled
    truth = {u: f"s{u // 3:02d}" for u in range(120)}
    accuracy = dgmm.identification_accuracy(model, test, utterances, truth)
    assert 0.8 < accuracy["top_1"] <= accuracy["top_5"] <= 1.0
    scored = dgmm.score_trials(model, test, utterances, trials)
    dgmm.plot_det({"raw": scored}, tmp_path / "det.png")
    assert (tmp_path / "det.png").stat().st_size > 0


def test_trial_lists_naming_what_was_not_scored_are_refused(enrolled, tmp_path):
    model, test, utterances, cohort, cohort_codes, trials = enrolled
    with pytest.raises(dgmm.DataError, match="trial model 'nobody' is not among the models scored"):
        dgmm.score_trials(model, test, utterances, pd.DataFrame({"model": ["nobody"], "test": [0]}))
    with pytest.raises(dgmm.DataError, match="trial test 999 is not among the tests scored"):
        dgmm.score_trials(model, test, utterances, pd.DataFrame({"model": ["s01"], "test": [999]}))
    with pytest.raises(dgmm.ParameterError, match="needs a cohort"):
        dgmm.score_trials(model, test, utterances, trials, norm="s")
    with pytest.raises(dgmm.DataError, match="needs a 'target' column"):
        dgmm.verification_report(trials.drop(columns="target").assign(score=0.0))


@pytest.mark.slow  # a dgmm process
def test_the_command_line_scores_trials_out_of_core(enrolled, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    model, test, utterances, cohort, cohort_codes, trials = enrolled
    model.save(tmp_path / "speakers.npz")
    write_parquet(np.column_stack([test, utterances]), tmp_path / "test", row_group_size=1_000)
    names = [f"x{j}" for j in range(5)]
    pd.DataFrame(np.column_stack([cohort, cohort_codes]), columns=[*names, "x5"]).to_parquet(
        tmp_path / "cohort.parquet"
    )
    trials.to_parquet(tmp_path / "trials.parquet")
    dgmm_cli = str(Path(sys.executable).parent / "dgmm")
    proc = subprocess.run(
        [dgmm_cli, "score-trials", tmp_path / "speakers.npz", tmp_path / "test", "--trials", tmp_path / "trials.parquet",
         "--group-column", "x5", "-o", tmp_path / "scored.parquet", "--norm", "s", "--cohort",
         tmp_path / "cohort.parquet", "--det", tmp_path / "det.png"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    expected = dgmm.score_trials(model, test, utterances, trials, norm="s", cohort=cohort, cohort_groups=cohort_codes)
    np.testing.assert_allclose(scored["score"], expected["score"], rtol=1e-9)
    assert report["norm"] == "s" and report["eer"] == pytest.approx(dgmm.verification_report(expected)["eer"])
    assert (tmp_path / "det.png").stat().st_size > 0
