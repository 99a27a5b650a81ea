"""Per-group means and variances of the features, mergeable across chunks, and the normalisation they give
(cepstral mean and variance normalisation per utterance, CMVN); pure NumPy.

A chunk gives, for each group it holds, the count, mean and centred sum of squares of its rows; partial
moments merge in the pass's tree by Chan, Golub and LeVeque's pairwise update (no sum of squares about
zero, so a feature far from zero keeps its digits), and memory holds the groups, never the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .row_weights import split_weights


@dataclass(frozen=True)
class GroupMoments:
    """Moments of each group's rows.

    Attributes
    ----------
    codes : (m,) int64, sorted group codes
    counts : (m,) float64, rows of each group
    means : (m, d) float64
    m2 : (m, d) float64, sums of squared deviations from the group's mean
    """

    codes: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    m2: np.ndarray

    @classmethod
    def of_rows(cls, codes: np.ndarray, X: np.ndarray) -> "GroupMoments":
        """The moments of the rows of ``X`` (n, d) grouped by ``codes`` (n,): sums over runs of the rows
        sorted by group (stable, and a no-op for rows stored group by group, as utterances are)."""
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) == 0:
            return cls(codes, np.zeros(0), np.zeros((0, X.shape[1])), np.zeros((0, X.shape[1])))
        order = np.argsort(codes, kind="stable")
        X, codes = np.asarray(X, dtype=np.float64)[order], codes[order]
        starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
        counts = np.diff(np.append(starts, len(codes))).astype(np.float64)
        means = np.add.reduceat(X, starts, axis=0) / counts[:, None]
        m2 = np.add.reduceat((X - np.repeat(means, counts.astype(np.int64), axis=0)) ** 2, starts, axis=0)
        return cls(codes[starts], counts, means, m2)

    def __add__(self, other: "GroupMoments") -> "GroupMoments":
        keys, inverse = np.unique(np.concatenate([self.codes, other.codes]), return_inverse=True)
        mine, theirs = inverse[: len(self.codes)], inverse[len(self.codes) :]
        d = self.means.shape[1]
        counts = np.zeros(len(keys))
        means, m2 = np.zeros((len(keys), d)), np.zeros((len(keys), d))
        counts[mine], means[mine], m2[mine] = self.counts, self.means, self.m2
        both_n, both_mean = other.counts, other.means
        n_a = counts[theirs]
        total = n_a + both_n
        delta = both_mean - means[theirs]
        share = (both_n / np.maximum(total, 1.0))[:, None]
        means[theirs] = means[theirs] + delta * share
        m2[theirs] = m2[theirs] + other.m2 + delta**2 * (n_a[:, None] * share)
        counts[theirs] = total
        return GroupMoments(keys, counts, means, m2)

    def normaliser(self, n_groups: int, variance: bool = True) -> np.ndarray:
        """Per group code 0..n_groups-1, the mean and the scale that normalise its rows, (n_groups, 2, d):
        ``(x − mean) · scale``, scale ``1/σ`` (population σ) or 1 without ``variance``. A feature constant
        within a group (σ = 0, also a group of one row) is only centred."""
        d = self.means.shape[1]
        table = np.zeros((n_groups, 2, d))
        table[:, 1] = 1.0
        table[self.codes, 0] = self.means
        if variance:
            spread = np.sqrt(self.m2 / np.maximum(self.counts, 1.0)[:, None])
            table[self.codes, 1] = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 1.0)
        return table


def moments_kernel(block: np.ndarray, payload: tuple, row_offset: int) -> GroupMoments:
    """:class:`GroupMoments` of a chunk (n, d [+ 1] + 1) whose last column is each row's group code; rows of
    weight 0 (dropped by nan_policy) are left out, other weights count each row once. ``payload`` is
    ``(n_features, weighted)``."""
    n_features, weighted = payload
    X, weights = split_weights(block[:, :-1], n_features) if weighted else (block[:, :-1], None)
    codes = block[:, -1]
    if weights is not None:
        kept = weights > 0
        X, codes = X[kept], codes[kept]
    return GroupMoments.of_rows(codes, X)


def normalised_block(block: np.ndarray, table: np.ndarray, n_features: int) -> np.ndarray:
    """A chunk (n, d [+ 1] + 1) whose last column is each row's group code, without it (n, d [+ 1]): each row's
    features normalised by its group's mean and scale (``table`` from :meth:`GroupMoments.normaliser`); a
    weight column is kept as it is, and the features of a dropped row (weight 0) too."""
    codes = block[:, -1].astype(np.int64)
    out = np.array(block[:, :-1], dtype=np.float64)
    rows = slice(None) if out.shape[1] == n_features else out[:, n_features] > 0
    out[rows, :n_features] = (out[rows, :n_features] - table[codes[rows], 0]) * table[codes[rows], 1]
    return out
