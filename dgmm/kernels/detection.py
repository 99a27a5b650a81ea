"""Speaker verification's measures and score normalisations (pure NumPy).

A *trial* pairs an enrolled model with a test utterance; its score is a log-likelihood ratio, and it is a
*target* trial when the utterance is the model's speaker. A threshold accepts the scores at or above it:

* miss rate ``P_miss(θ)``: targets below θ; false-alarm rate ``P_fa(θ)``: non-targets at or above θ;
* equal error rate (EER): where the two meet, interpolated linearly between the thresholds that straddle it;
* detection cost ``C = C_miss P_target P_miss + C_fa (1 − P_target) P_fa``, normalised by the cost of
  accepting or rejecting everything, ``min(C_miss P_target, C_fa (1 − P_target))``; minDCF is its minimum
  over thresholds. Defaults: NIST SRE 2008's (and SRE 2010's old) operating point, ``C_miss = 10``,
  ``C_fa = 1``, ``P_target = 0.01``;
* the DET curve: ``(P_fa, P_miss)`` at every threshold (plotted on normal-deviate axes).

Normalisations (Auckenthaler et al. 2000; Matějka et al. 2017 for the adaptive S-norm) rescale a trial's score
by statistics of impostor scores: Z-norm by the model's scores against a cohort of impostor utterances, T-norm
by the test utterance's scores against a cohort of impostor models, S-norm the mean of the two, adaptive
S-norm the same with each side's statistics from its ``top_n`` highest cohort scores only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SRE_COSTS = {"c_miss": 10.0, "c_fa": 1.0, "p_target": 0.01}
NORMS = ("none", "z", "t", "s", "as")


@dataclass(frozen=True)
class DetectionRates:
    """Miss and false-alarm rates (m,) at every distinct threshold, from rejecting nothing to rejecting all.

    ``thresholds[i]`` accepts the scores >= it (the last, +inf, accepts none).
    """

    thresholds: np.ndarray
    p_miss: np.ndarray
    p_fa: np.ndarray


def detection_rates(scores: np.ndarray, targets: np.ndarray) -> DetectionRates:
    """:class:`DetectionRates` of trial ``scores`` (n,) with ``targets`` (n,) booleans; ValueError unless there
    are both target and non-target trials, and every score is finite."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=bool)
    if scores.shape != targets.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be two vectors of one length")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores hold NaN or infinite values")
    n_target = int(targets.sum())
    n_nontarget = targets.size - n_target
    if n_target == 0 or n_nontarget == 0:
        raise ValueError(f"{n_target} target and {n_nontarget} non-target trials; both kinds are needed")
    order = np.argsort(scores, kind="stable")
    ordered, is_target = scores[order], targets[order]
    below_target = np.concatenate([[0], np.cumsum(is_target)])  # targets among the i lowest scores
    below_nontarget = np.concatenate([[0], np.cumsum(~is_target)])
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(ordered) > 0) + 1, [ordered.size]])  # between distinct scores
    thresholds = np.append(ordered[cuts[:-1]], np.inf)
    return DetectionRates(thresholds, below_target[cuts] / n_target, 1.0 - below_nontarget[cuts] / n_nontarget)


def equal_error_rate(scores: np.ndarray, targets: np.ndarray) -> float:
    """The EER: where the miss and false-alarm rates meet, linearly interpolated between the two thresholds
    that straddle it."""
    rates = detection_rates(scores, targets)
    miss, fa = rates.p_miss, rates.p_fa
    i = int(np.argmax(miss >= fa))  # miss rises from 0 and fa falls to 0: they meet at or before the last
    if i == 0:
        return float(miss[0] + fa[0]) / 2.0
    rise, fall = miss[i] - miss[i - 1], fa[i] - fa[i - 1]
    step = (fa[i - 1] - miss[i - 1]) / (rise - fall) if rise != fall else 0.0
    return float(miss[i - 1] + step * rise)


def min_dcf(scores: np.ndarray, targets: np.ndarray, c_miss: float = 10.0, c_fa: float = 1.0,
            p_target: float = 0.01) -> float:  # fmt: skip
    """The minimum normalised detection cost over thresholds (see the module docstring; defaults SRE 2008's)."""
    rates = detection_rates(scores, targets)
    cost = c_miss * p_target * rates.p_miss + c_fa * (1.0 - p_target) * rates.p_fa
    return float(cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def top_k_accuracy(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Identification accuracy: the share of rows (utterances) of ``scores`` (n, C) whose true class index
    ``truth`` (n,) is among their ``k`` highest scores."""
    k = min(int(k), scores.shape[1])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(best == np.asarray(truth)[:, None], axis=1)))


def _mean_std(cohort: np.ndarray, top_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each row's cohort scores (m, N), or of its ``top_n`` highest; NaN entries
    (left out) are ignored."""
    if top_n is not None and top_n < cohort.shape[1]:
        filled = np.where(np.isnan(cohort), -np.inf, cohort)
        top = -np.partition(-filled, top_n - 1, axis=1)[:, :top_n]
        cohort = np.where(np.isinf(top), np.nan, top)
    mean = np.nanmean(cohort, axis=1)
    return mean, np.nanstd(cohort, axis=1)


def normalise(scores: np.ndarray, model_cohort: np.ndarray | None, test_cohort: np.ndarray | None,
              norm: str, top_n: int | None = None) -> np.ndarray:  # fmt: skip
    """Trial ``scores`` (n,) normalised by ``norm`` ("none", "z", "t", "s", or "as": adaptive S-norm over the
    ``top_n`` highest cohort scores of each side).

    Parameters
    ----------
    model_cohort : (n, U) each trial's model scored against the U cohort (impostor) utterances (Z-norm)
    test_cohort : (n, M) each trial's test utterance scored against the M cohort models (T-norm); NaN where a
        cohort model is left out (the trial's own model)
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is invalid; expected one of {', '.join(NORMS)}")
    if norm == "none":
        return np.asarray(scores, dtype=np.float64)
    top = top_n if norm == "as" else None
    parts = []
    if norm in ("z", "s", "as"):
        mean, std = _mean_std(model_cohort, top)
        parts.append((scores - mean) / std)
    if norm in ("t", "s", "as"):
        mean, std = _mean_std(test_cohort, top)
        parts.append((scores - mean) / std)
    return parts[0] if len(parts) == 1 else 0.5 * (parts[0] + parts[1])
