"""Speaker verification with a fitted :class:`~dgmm.GaussianMixtureClassifier`: trials scored out of core,
normalised, measured (EER, minDCF, DET curve), and identification accuracy per utterance.

A trial's raw score is the mean over its test utterance's frames of ``log p(x | model) − log p(x | UBM)``
(:meth:`~dgmm.GaussianMixtureClassifier.predict_groups` with ``ratio=True``: one pass over the data scores every
utterance against every enrolled model). Normalisations and measures are :mod:`dgmm.kernels.detection`'s.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data.labels import label_positions
from ..errors import DataError, ParameterError
from ..kernels.detection import NORMS, SRE_COSTS, detection_rates, equal_error_rate, min_dcf, normalise, top_k_accuracy


def group_scores(model: Any, X: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """The utterances (groups) of ``X`` and their scores (G, C) against every class, as :func:`score_trials`
    scores them: mean log-likelihood ratios to the background model."""
    frame = model.predict_groups(X, groups, reduce="mean", ratio=True)
    return frame["group"].to_numpy(), frame[[f"score_{label}" for label in model.classes_]].to_numpy()


def _positions(wanted: np.ndarray, known: np.ndarray, what: str) -> np.ndarray:
    """The index in ``known`` of each of ``wanted``; DataError naming the first one missing."""
    wanted = np.asarray(wanted)
    found = label_positions(wanted, known)
    if np.any(found < 0):
        missing = np.asarray(wanted)[np.argmax(found < 0)]
        missing = missing.item() if isinstance(missing, np.generic) else missing
        raise DataError(f"trial {what} {missing!r} is not among the {what}s scored; check the trial list")
    return found


def score_trials(
    model: Any,
    X: Any,
    groups: Any,
    trials: Any,
    *,
    norm: str = "none",
    cohort: Any = None,
    cohort_groups: Any = None,
    cohort_models: Sequence[Any] | None = None,
    top_n: int = 200,
) -> Any:
    """Every trial's score, normalised by ``norm``.

    Parameters
    ----------
    model : a fitted GaussianMixtureClassifier with a background model
    X, groups : the test data and each row's utterance, as :meth:`~dgmm.GaussianMixtureClassifier.predict_groups`
        takes them (Parquet and a group column, out of core)
    trials : a pandas DataFrame with columns ``model`` (a class label) and ``test`` (an utterance of ``groups``),
        optionally ``target`` (bool), kept in the output
    norm : "none", "z", "t", "s" or "as" (adaptive S-norm over the ``top_n`` highest cohort scores of each side)
    cohort, cohort_groups : impostor utterances (data and groups) for Z-norm (and S-norms): every model is
        scored against them
    cohort_models : class labels of the impostor models for T-norm (and S-norms); default every class, each
        trial leaving out its own model

    Returns
    -------
    pandas.DataFrame: the trials with ``score`` (normalised) and ``raw_score``
    """
    if norm not in NORMS:
        raise ParameterError(f"norm={norm!r} is invalid; expected one of {', '.join(NORMS)}")
    if not {"model", "test"} <= set(getattr(trials, "columns", ())):
        raise DataError("the trial list needs columns 'model' (a class label) and 'test' (an utterance)")
    if norm in ("z", "s", "as") and cohort is None:
        raise ParameterError(f"norm={norm!r} needs a cohort of impostor utterances (cohort=, --cohort) for Z-norm")
    utterances, scores = group_scores(model, X, groups)
    test = _positions(trials["test"].to_numpy(), utterances, "test")
    own = _positions(trials["model"].to_numpy(), model.classes_, "model")
    raw = scores[test, own]
    model_cohort = test_cohort = None
    if norm in ("z", "s", "as"):
        model_cohort = group_scores(model, cohort, cohort_groups)[1].T[own]  # (n, U)
    if norm in ("t", "s", "as"):
        chosen = (np.arange(len(model.classes_)) if cohort_models is None
                  else _positions(np.asarray(cohort_models), model.classes_, "cohort model"))  # fmt: skip
        test_cohort = scores[test][:, chosen]
        test_cohort[chosen[None, :] == own[:, None]] = np.nan  # a trial's own model is no impostor
    out = trials.copy()
    out["raw_score"] = raw
    out["score"] = normalise(raw, model_cohort, test_cohort, norm, top_n)
    return out


def verification_report(scored: Any, **costs: float) -> dict[str, Any]:
    """EER and minDCF of scored trials with a ``target`` column (costs: ``c_miss``, ``c_fa``, ``p_target``,
    default NIST SRE 2008's), the numbers of target and non-target trials, and the operating point used."""
    if "target" not in scored.columns:
        raise DataError("measuring needs a 'target' column in the trial list (true for the model's own speaker)")
    point = {**SRE_COSTS, **costs}
    values, targets = scored["score"].to_numpy(dtype=np.float64), scored["target"].to_numpy(dtype=bool)
    try:
        eer, dcf = equal_error_rate(values, targets), min_dcf(values, targets, **point)
    except ValueError as exc:
        raise DataError(f"the trial list cannot be measured: {exc}") from None
    return {"n_target": int(targets.sum()), "n_nontarget": int((~targets).sum()), "eer": eer, "min_dcf": dcf,
            **point}  # fmt: skip


def identification_accuracy(model: Any, X: Any, groups: Any, truth: Any, ks: Sequence[int] = (1, 5)) -> dict:
    """Top-k identification accuracy per utterance: ``truth`` maps each utterance (group) to its speaker (a dict
    or a pandas Series indexed by group); the utterance's scores are its mean log-likelihoods (the decision of
    :meth:`~dgmm.GaussianMixtureClassifier.predict_groups`, priors left out)."""
    frame = model.predict_groups(X, groups, reduce="mean")
    scores = frame[[f"score_{label}" for label in model.classes_]].to_numpy()
    speakers = np.asarray([truth[g] for g in frame["group"].tolist()])
    index = _positions(speakers, model.classes_, "speaker")
    return {f"top_{k}": top_k_accuracy(scores, index, k) for k in ks}


def plot_det(curves: dict[str, Any], path: Any = None, overwrite: bool = False, storage_options: dict | None = None):
    """DET curves, ``{name: scored trials}``, on normal-deviate axes (miss against false-alarm probability);
    a PNG at ``path``. Returns the matplotlib Figure (needs the ``plot`` extra)."""
    from scipy.stats import norm as normal

    from .plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    for name, scored in curves.items():
        rates = detection_rates(scored["score"].to_numpy(dtype=np.float64), scored["target"].to_numpy(dtype=bool))
        clip = lambda p: np.clip(p, 1e-4, 1 - 1e-4)  # noqa: E731
        eer = equal_error_rate(scored["score"].to_numpy(dtype=np.float64), scored["target"].to_numpy(dtype=bool))
        ax.plot(normal.ppf(clip(rates.p_fa)), normal.ppf(clip(rates.p_miss)), label=f"{name} (EER {100 * eer:.2f}%)")
    ax.set_xticks(normal.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(normal.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlim(normal.ppf(ticks[0]), normal.ppf(ticks[-1]))
    ax.set_ylim(normal.ppf(ticks[0]), normal.ppf(ticks[-1]))
    ax.plot(ax.get_xlim(), ax.get_ylim(), color="0.8", linewidth=0.8)
    ax.set_xlabel("false-alarm probability (%)")
    ax.set_ylabel("miss probability (%)")
    ax.set_title("DET curve")
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right", fontsize="small")
    return save_figure(fig, path, overwrite, storage_options)
