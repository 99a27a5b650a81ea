"""Per-group sums of per-row scores, mergeable across chunks (pure NumPy).

Rows belong to groups (the frames of an utterance); a group may span chunks and files. Each chunk
gives the sums of its rows' scores for the groups it holds, keyed by group code; partial sums merge
with ``+`` in the pass's tree, so memory holds the groups, never the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
