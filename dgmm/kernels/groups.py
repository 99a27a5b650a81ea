"""Per-group sums of per-row scores, and a classifier's totals, mergeable across chunks (pure NumPy).

Rows belong to groups (the frames of an utterance); a group may span chunks and files. Each chunk
gives the sums of its rows' scores for the groups it holds, keyed by group code; partial sums merge
with ``+`` in the pass's tree, so memory holds the groups, never the rows.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .posterior import class_log_likelihoods, logsumexp_rows, n_features_of
from .row_weights import split_weights


@dataclass(frozen=True)
class GroupSums:
    """Sums of scores per group.

    Attributes
    ----------
    codes : (m,) int64, sorted group codes
    counts : (m,) rows of each group
    sums : (m, C) sums of each of C scores over the group's rows
    """

    codes: np.ndarray
    counts: np.ndarray
    sums: np.ndarray

    @classmethod
    def of_rows(cls, codes: np.ndarray, scores: np.ndarray) -> "GroupSums":
        """The sums of ``scores`` (n, C) over rows grouped by ``codes`` (n,)."""
        keys, inverse = np.unique(np.asarray(codes, dtype=np.int64), return_inverse=True)
        sums = np.zeros((len(keys), scores.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, scores)
        return cls(keys, np.bincount(inverse, minlength=len(keys)), sums)

    def __add__(self, other: "GroupSums") -> "GroupSums":
        codes = np.concatenate([self.codes, other.codes])
        keys, inverse = np.unique(codes, return_inverse=True)
        sums = np.zeros((len(keys), self.sums.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, np.concatenate([self.sums, other.sums]))
        counts = np.bincount(inverse, weights=np.concatenate([self.counts, other.counts]), minlength=len(keys))
        return GroupSums(keys, counts.astype(np.int64), sums)


def group_kernel(block: np.ndarray, payload: tuple, row_offset: int, map: Callable = builtins.map) -> GroupSums:
    """Per-group sums of every mixture's log-likelihoods (with ``ratio``: of the others' against the last)
    over a chunk (n, d [+ 1] + 1) whose last column is the group code; rows dropped by nan_policy
    are left out. ``payload`` is ``(mixtures, ratio, weighted)``; ``map`` runs the row tiles (a thread pool's)."""
    params, ratio, weighted = payload
    X, weights = split_weights(block[:, :-1], n_features_of(params)) if weighted else (block[:, :-1], None)
    scores = class_log_likelihoods(X, params, map)
    if ratio:
        scores = scores[:, :-1] - scores[:, -1:]
    codes = block[:, -1]
    if weights is not None:
        kept = weights > 0
        scores, codes = scores[kept], codes[kept]
    return GroupSums.of_rows(codes, scores)


@dataclass(frozen=True)
class ScoreTotals:
    """A classifier's totals over rows, mergeable across chunks with ``+``.

    Attributes
    ----------
    n_rows : rows scored (rows dropped by nan_policy are left out)
    loglik : Σ_n log Σ_c π_c p(x_n | c), the rows' log-likelihood under the classifier's mixture of classes
    labelled : rows with a known class (a class of the model)
    correct : rows whose most probable class is their class
    """

    n_rows: int
    loglik: float
    labelled: int
    correct: int

    @classmethod
    def of_rows(cls, joint: np.ndarray, truth: np.ndarray) -> "ScoreTotals":
        """From joint log-likelihoods ``log π_c + log p(x | c)`` (n, C) and the class index of each row (n,), -1
        where it has none."""
        known = truth >= 0
        correct = np.count_nonzero((np.argmax(joint, axis=1) == truth) & known) if joint.shape[0] else 0
        return cls(joint.shape[0], float(logsumexp_rows(joint).sum()), int(np.count_nonzero(known)), int(correct))

    def __add__(self, other: "ScoreTotals") -> "ScoreTotals":
        return ScoreTotals(self.n_rows + other.n_rows, self.loglik + other.loglik, self.labelled + other.labelled,
                           self.correct + other.correct)  # fmt: skip


def score_totals(block: np.ndarray, payload: tuple, row_offset: int, map: Callable = builtins.map) -> ScoreTotals:
    """:class:`ScoreTotals` of a chunk (n, d [+ 1] + 1) whose last column is the class index of each row (-1:
    none). ``payload`` is ``(mixtures, log priors, weighted)``; ``map`` as :func:`group_kernel`."""
    params, log_priors, weighted = payload
    X, weights = split_weights(block[:, :-1], n_features_of(params)) if weighted else (block[:, :-1], None)
    joint = class_log_likelihoods(X, params, map) + log_priors
    truth = block[:, -1]
    if weights is not None:
        kept = weights > 0
        joint, truth = joint[kept], truth[kept]
    return ScoreTotals.of_rows(joint, truth)


group_kernel.maps_tiles = True  # the in-process executor may hand them a thread pool's map
score_totals.maps_tiles = True
