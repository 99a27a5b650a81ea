"""What a fitted :class:`~dgmm.GaussianMixtureClassifier` computes on data: posteriors over classes,
decisions, likelihood ratios against the background model, decisions per group of rows, its totals (mean
log-likelihood, accuracy); and the rows it draws.

NumPy input is scored eagerly by blocks of rows; Dask and Parquet input lazily, block by block,
with the kernels of :mod:`dgmm.kernels.posterior` and :mod:`dgmm.kernels.groups` (no scikit-learn on workers).
Array-API input (CuPy) is scored on its device; Dask and Parquet input marked for a GPU chunk by chunk
there, each chunk's scores back on the host (:mod:`dgmm.kernels.device.classes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.devices import is_device_array
from ..data.inputs import IN_MEMORY_CHUNK_ROWS
from ..data.labels import as_labels, label_positions, no_codes, with_codes
from ..errors import NotFittedError, ParameterError
from ..execution.blas import single_threaded_blas
from ..execution.local import in_process_threads, thread_pool
from ..execution.rows import map_block_rows, map_rows
from ..kernels.arrays import ByBackend, namespace, to_numpy
from ..kernels.device.classes import (
    host_class_scores,
    xp_class_scores,
    xp_group_sums,
    xp_most_probable,
    xp_score_totals,
)
from ..kernels.groups import ScoreTotals, group_kernel, score_totals
from ..kernels.posterior import Scorer, class_scores, most_probable, normalised_rows
from ..kernels.sampling import draw
from ..kernels.selection import plan_selection
from .normalisation import label_and_groups
from .parameters import TOP_C, check_random_state, param_error
from .runtime import runtime
from .scoring import device_chunks

GROUP_SUMS = ByBackend(group_kernel, xp_group_sums)  # a chunk on the host or, placed by the runtime, on a device
SCORE_TOTALS = ByBackend(score_totals, xp_score_totals)


class ClassScoringMixin:
    """Inference of a fitted classifier. The class using it has ``estimators_`` (one fitted
    GaussianMixture per class), ``classes_``, ``class_prior_``, ``ubm_`` when it has a background model,
    and the execution settings (``client``, ``chunk_rows``, ``split_every``, ...)."""

    def _joint_log_likelihood(self, X: Any):
        """``log prior_c + log p(x | c)``, shape (n, C): NumPy for in-memory input, else lazy Dask."""
        return self._log_likelihoods(X, self._scorer(), np.log(self.class_prior_))

    def _scorer(self, ratio: bool = False) -> Scorer:
        """The classes' mixtures, and with ``ratio`` the background model's last; with ``top_c``, their plan of
        Gaussian selection (:mod:`dgmm.kernels.selection`)."""
        classes = tuple(m.fitted_params() for m in self._fitted())
        ubm = self.ubm_.fitted_params() if hasattr(self, "ubm_") else None
        if self.top_c is None:
            return classes + ((ubm,) if ratio else ())
        TOP_C.validate(self.top_c)
        if ubm is None:
            raise ParameterError(
                f"top_c={self.top_c} needs a background model (fit with ubm=...): Gaussian selection scores each "
                "class on the background model's best components; leave top_c unset to score every component"
            )
        try:
            return plan_selection(ubm, classes, self.top_c, with_ubm=ratio)
        except ValueError as exc:
            raise ParameterError(f"top_c={self.top_c}: {exc}; leave top_c unset to score every component") from None

    def score_ratio(self, X: Any):
        """Log-likelihood ratio of every class against the background model, ``log p(x | c) − log p(x | UBM)``,
        shape (n, C): the verification score of Reynolds et al. (average it over an utterance's frames)."""
        mixtures = self._fitted()
        if not hasattr(self, "ubm_"):
            raise NotFittedError("score_ratio needs a background model: fit with ubm='fit', a fitted model or a file")
        return self._log_likelihoods(X, self._scorer(ratio=True), np.zeros(len(mixtures) + 1), against_last=True)

    def predict_groups(self, X: Any, groups: Any, *, reduce: str = "mean", ratio: bool = False):
        """One decision per group of rows (the frames of an utterance), out of core.

        Each class's score of a group is the ``reduce`` ("mean" or "sum") of its rows' log-likelihoods
        ``log p(x | c)`` (with ``ratio``: of ``score_ratio``, against the background model). The class is
        ``argmax_c Σ_rows log p(x | c) + log prior_c``, the posterior given all the group's rows. Partial
        sums per group are merged in the pass's tree: a group may span chunks and files, and memory
        holds the groups, not the rows.

        Parameters
        ----------
        X : any input ``predict`` takes
        groups : the group of every row, shape (n,), or the name of a group column of a DataFrame or
            of Parquet input (a file column or a hive key)

        Returns
        -------
        pandas.DataFrame, one row per group in sorted order: ``group``, ``n_rows``, ``class`` and one
        score column per class, ``score_<class>``
        """
        import pandas as pd

        mixtures = self._fitted()
        if reduce not in ("mean", "sum"):
            raise ParameterError(f"reduce={reduce!r} is invalid; expected 'mean' or 'sum'")
        if ratio and not hasattr(self, "ubm_"):
            raise NotFittedError("ratio scores need a background model: fit with ubm='fit', a fitted model or a file")
        X, groups, cmvn_groups = label_and_groups(X, groups, self.cmvn)  # a DataFrame's group columns
        data = mixtures[0]._scoring_input(
            X, keep_frame=False, nan_policy=self.nan_policy, device=self.device, cmvn_groups=cmvn_groups
        )
        grouping = as_labels(groups, data, what="groups")
        params = self._scorer(ratio)
        _on_the_host(params, data)
        coded = with_codes(data, grouping.codes)
        with runtime(self, coded) as where:
            sums = where.executor.map_reduce(where.array, GROUP_SUMS, (params, ratio, data.weighted), self.split_every)
        # the background model's term is the same for every class: the decision is the same with ratio
        decision = sums.sums + np.log(self.class_prior_)
        scores = sums.sums / sums.counts[:, None] if reduce == "mean" else sums.sums
        columns = {
            "group": grouping.classes[sums.codes],
            "n_rows": sums.counts,
            "class": self.classes_[np.argmax(decision, axis=1)],
        }
        columns.update({f"score_{label}": scores[:, c] for c, label in enumerate(self.classes_)})
        return pd.DataFrame(columns)

    def score_summary(self, X: Any, y: Any = None) -> dict[str, Any]:
        """The rows scored, their mean log-likelihood under the classifier (``log Σ_c π_c p(x | c)``) and, given
        their classes ``y`` (labels, or the name of a label column of a DataFrame or of Parquet input), the
        accuracy over the rows of a class the model knows; one pass over the data, out of core for Parquet."""
        mixtures = self._fitted()
        X, y, cmvn_groups = label_and_groups(X, y, self.cmvn)
        data = mixtures[0]._scoring_input(
            X, keep_frame=False, nan_policy=self.nan_policy, device=self.device, cmvn_groups=cmvn_groups
        )
        if y is None:
            codes = no_codes(data)
        else:
            labels = as_labels(y, data)
            lookup = label_positions(labels.classes, self.classes_).astype(np.float64)
            codes = lookup[labels.codes.astype(np.int64)] if isinstance(labels.codes, np.ndarray) else (
                labels.codes.map_blocks(lambda block: lookup[block.astype(np.int64)], dtype=np.float64))  # fmt: skip
        payload = (self._scorer(), np.log(self.class_prior_), data.weighted)
        _on_the_host(payload[0], data)
        with runtime(self, with_codes(data, codes)) as where:
            totals: ScoreTotals = where.executor.map_reduce(where.array, SCORE_TOTALS, payload, self.split_every)
        summary = {"n_samples": totals.n_rows, "n_classes": len(self.classes_),
                   "mean_log_likelihood": totals.loglik / totals.n_rows if totals.n_rows else float("nan")}  # fmt: skip
        if y is not None:
            summary["n_labelled"] = totals.labelled
            summary["accuracy"] = totals.correct / totals.labelled if totals.labelled else float("nan")
        return summary

    def sample(self, n_samples: int = 1, label: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` rows: classes by their priors and each row from its class's mixture, or all from
        the class ``label``.

        Returns
        -------
        X : ndarray of shape (n_samples, d)
        y : ndarray of shape (n_samples,), the class of each row
        """
        mixtures = self._fitted()
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
            raise param_error("n_samples", n_samples, "an int >= 1")
        rng = check_random_state(self.random_state)
        if label is None:
            counts = rng.multinomial(n_samples, self.class_prior_)
        else:
            c = int(label_positions([label], self.classes_)[0])
            if c < 0:
                raise ParameterError(f"label={label!r} is not a class of this model; its classes are "
                                     f"{', '.join(map(str, self.classes_[:10].tolist()))}"
                                     f"{', ...' if len(self.classes_) > 10 else ''}")  # fmt: skip
            counts = np.bincount([c], minlength=len(self.classes_)) * n_samples
        chosen = np.flatnonzero(counts)
        parts = [draw(mixtures[c].fitted_params(), int(counts[c]), rng)[0] for c in chosen]
        return np.vstack(parts), np.repeat(self.classes_[chosen], counts[chosen])

    def _fitted(self) -> list:
        if not hasattr(self, "estimators_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )
        return self.estimators_

    def _log_likelihoods(self, X: Any, params: tuple, offset: np.ndarray, against_last: bool = False):
        """``log p(x | params_c) + offset_c`` per row and mixture, (n, C); with ``against_last`` the last
        mixture's column is subtracted from the others and dropped, (n, C - 1)."""
        # checked as a fitted mixture checks them; a Dask DataFrame is scored as a Dask array
        data = self.estimators_[0]._scoring_input(X, keep_frame=False, nan_policy=self.nan_policy, device=self.device)
        payload = (params, (offset, against_last))
        n_out = len(self.estimators_)
        _on_the_host(params, data)
        if data.kind == "xp":  # on the array's device, in its library
            scores = xp_class_scores(data.values, payload)
            return to_numpy(scores) if data.host_output else scores
        if data.device is not None:  # Parquet or Dask chunks scored on a GPU, each chunk's scores back on the host
            return map_block_rows(device_chunks(data), host_class_scores, payload, n_out, np.float64)
        if data.kind == "numpy":  # the row tiles of each block on every core, BLAS on one thread in each
            step, pool = IN_MEMORY_CHUNK_ROWS, thread_pool(in_process_threads())
            with single_threaded_blas():
                return np.concatenate([
                    class_scores(data.values[i : i + step], payload, map if pool is None else pool.map)
                    for i in range(0, data.n_rows, step)
                ])  # fmt: skip
        return map_rows(data.array, class_scores, payload, n_out, np.float64)

    def decision_function(self, X: Any):
        """Joint log-likelihood per class, shape (n, C); for two classes the log-odds of ``classes_[1]``, (n,)."""
        joint = self._joint_log_likelihood(X)
        return joint[:, 1] - joint[:, 0] if len(self.classes_) == 2 else joint

    def predict_log_proba(self, X: Any):
        """Log posterior probability of each class, shape (n, C)."""
        joint = self._joint_log_likelihood(X)
        if isinstance(joint, np.ndarray) or is_device_array(joint):  # one definition for both
            return normalised_rows(joint)
        return joint.map_blocks(normalised_rows, dtype=np.float64)

    def predict_proba(self, X: Any):
        """Posterior probability of each class, shape (n, C); rows sum to 1."""
        log_proba = self.predict_log_proba(X)
        if is_device_array(log_proba):
            return namespace(log_proba).exp(log_proba)
        return np.exp(log_proba)

    def predict(self, X: Any):
        """The most probable class of each row, shape (n,) (lazy Dask for Dask or Parquet input; NumPy for input
        on a device, since class labels may be strings)."""
        joint = self._joint_log_likelihood(X)
        if isinstance(joint, np.ndarray):
            return most_probable(joint, self.classes_)
        if is_device_array(joint):
            return xp_most_probable(joint, self.classes_)
        return joint.map_blocks(most_probable, self.classes_, drop_axis=1, dtype=self.classes_.dtype)


def _on_the_host(scorer: Scorer, data: Any) -> None:
    """Refuse Gaussian selection (a plan, not mixtures) for data scored on a device: it runs on the CPU."""
    if not isinstance(scorer, tuple) and (data.kind == "xp" or data.device is not None):
        raise ParameterError("top_c (Gaussian selection) scores on the CPU; use device='cpu', or leave top_c unset")
