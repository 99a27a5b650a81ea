"""Verification measures and score normalisations against independent computations: scikit-learn's ROC curve
for the equal error rate, a direct sweep over every threshold for minDCF, direct formulas for the norms."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from dgmm.kernels.detection import detection_rates, equal_error_rate, min_dcf, normalise, top_k_accuracy


def trials(seed: int, n_target: int = 400, n_nontarget: int = 4000, ties: bool = False):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(2.0, 1.0, n_target), rng.normal(0.0, 1.0, n_nontarget)])
    if ties:
        scores = np.round(scores, 1)  # many equal scores
    return scores, np.concatenate([np.ones(n_target, bool), np.zeros(n_nontarget, bool)])


@pytest.mark.parametrize("ties", [False, True])
def test_equal_error_rate_agrees_with_scikit_learns_roc_curve(ties):
    scores, targets = trials(1, ties=ties)
    fpr, tpr, _ = roc_curve(targets, scores)
    fnr = 1.0 - tpr
    i = np.argmax(fnr <= fpr)  # the first ROC point past the crossing, and the one before
    a, b = (fpr[i - 1], fnr[i - 1]), (fpr[i], fnr[i])
    step = (a[0] - a[1]) / ((b[1] - a[1]) - (b[0] - a[0]))  # where the segment meets fnr = fpr
    assert equal_error_rate(scores, targets) == pytest.approx(a[1] + step * (b[1] - a[1]), abs=1e-12)
    assert 0.10 < equal_error_rate(scores, targets) < 0.22  # two unit normals 2 apart: about 16%


@pytest.mark.parametrize("costs", [dict(), dict(c_miss=1.0, c_fa=1.0, p_target=0.001), dict(p_target=0.5)])
def test_min_dcf_is_the_least_cost_of_a_direct_threshold_sweep(costs):
    scores, targets = trials(2, ties=True)
    point = {"c_miss": 10.0, "c_fa": 1.0, "p_target": 0.01, **costs}
    best = np.inf
    for threshold in [*np.unique(scores), np.inf]:
        accepted = scores >= threshold
        p_miss, p_fa = np.mean(~accepted[targets]), np.mean(accepted[~targets])
        cost = point["c_miss"] * point["p_target"] * p_miss + point["c_fa"] * (1 - point["p_target"]) * p_fa
        best = min(best, cost)
    norm = min(point["c_miss"] * point["p_target"], point["c_fa"] * (1 - point["p_target"]))
    assert min_dcf(scores, targets, **costs) == pytest.approx(best / norm, abs=1e-12)
    rates = detection_rates(scores, targets)
    assert rates.p_miss[0] == 0 and rates.p_fa[0] == 1 and rates.p_miss[-1] == 1 and rates.p_fa[-1] == 0
    assert np.all(np.diff(rates.p_miss) >= 0) and np.all(np.diff(rates.p_fa) <= 0)


def test_measures_refuse_a_list_without_both_kinds_of_trial():
    with pytest.raises(ValueError, match="0 target and 3 non-target"):
        equal_error_rate(np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="NaN"):
        min_dcf(np.array([0.0, np.nan]), np.array([True, False]))


def test_normalisations_are_the_direct_formulas():
    rng = np.random.default_rng(3)
    scores, model_cohort, test_cohort = rng.normal(size=50), rng.normal(size=(50, 30)), rng.normal(size=(50, 20))
    test_cohort[np.arange(50), np.arange(50) % 20] = np.nan  # each trial's own model left out
    z = (scores - model_cohort.mean(1)) / model_cohort.std(1)
    t = (scores - np.nanmean(test_cohort, 1)) / np.nanstd(test_cohort, 1)
    np.testing.assert_allclose(normalise(scores, model_cohort, test_cohort, "z"), z, rtol=1e-12)
    np.testing.assert_allclose(normalise(scores, model_cohort, test_cohort, "t"), t, rtol=1e-12)
    np.testing.assert_allclose(normalise(scores, model_cohort, test_cohort, "s"), (z + t) / 2, rtol=1e-12)
    top_z = np.sort(model_cohort, 1)[:, -10:]
    top_t = np.stack([np.sort(row[~np.isnan(row)])[-10:] for row in test_cohort])
    adaptive = ((scores - top_z.mean(1)) / top_z.std(1) + (scores - top_t.mean(1)) / top_t.std(1)) / 2
    np.testing.assert_allclose(normalise(scores, model_cohort, test_cohort, "as", top_n=10), adaptive, rtol=1e-12)
    with pytest.raises(ValueError, match="norm='q' is invalid"):
        normalise(scores, None, None, "q")


def test_top_k_accuracy_counts_the_true_class_among_the_k_best():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    truth = np.array([0, 2, 0, 1])
    assert top_k_accuracy(scores, truth, 1) == 0.25
    assert top_k_accuracy(scores, truth, 2) == 0.5
    assert top_k_accuracy(scores, truth, 3) == 1.0
