"""Rows with missing values made whole for the initialisation (``nan_policy="marginalize"``); pure NumPy.

The initialisation's passes are those of complete data (:mod:`dgmm.algorithms.seeding`, :mod:`dgmm.kernels.init`),
run on chunks filled here (:func:`dgmm.algorithms.em.filled_steps` decides which way): a pass that measures rows
against centres sees each row completed from its nearest centre over the observed coordinates (k-means on the
observed values); the others see each missing value as its feature's observed mean. EM itself never fills
anything: it marginalises (:mod:`dgmm.kernels.missing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .missing import nothing_observed
from .row_weights import split_weights, with_weight_column


@dataclass(frozen=True)
class ObservedMoments:
    """Per feature the weighted sum of its observed values and their weight, (d,) each; additive over chunks."""

    sums: np.ndarray
    weights: np.ndarray

    def __add__(self, other: "ObservedMoments") -> "ObservedMoments":
        return ObservedMoments(self.sums + other.sums, self.weights + other.weights)

    @property
    def fill(self) -> np.ndarray:
        """Each feature's mean over its observed values, rounded to float32: a chunking changes the sums' last
        bits, and the initialisation's draws, which compare distances to these values, must not see them."""
        return (self.sums / self.weights).astype(np.float32).astype(np.float64)


def observed_moments(block: np.ndarray, n_features: int) -> ObservedMoments:
    """:class:`ObservedMoments` of one chunk (n, d [+ 1])."""
    X, weights = split_weights(block, n_features)
    observed = ~np.isnan(X)
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    return ObservedMoments(w @ np.where(observed, X, 0.0), w @ observed)


@dataclass(frozen=True)
class FilledPlan:
    """A kernel and its payload, run on chunks whose missing values are filled: from the nearest of ``centres``
    (K, d) over the observed coordinates when given, otherwise by ``fill`` (d,), each feature's mean."""

    kernel: Callable
    payload: Any
    fill: np.ndarray
    centres: np.ndarray | None = None


def fill_missing(rows: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``rows`` (n, d [+ 1]) with NaN among the first d columns replaced by ``fill`` (d,); a copy when any is."""
    d = fill.shape[0]
    holes = np.isnan(rows[:, :d])
    if not holes.any():
        return rows
    rows = np.array(rows, dtype=np.float64)
    rows[:, :d] = np.where(holes, fill, rows[:, :d])
    return rows


def completed_by_nearest(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``X`` (n, d) with each row's missing values taken from the centre (K, d) nearest over its observed
    coordinates (k-POD's completion): over all coordinates, a completed row's nearest centre is then that same
    one, so Lloyd passes and hard assignments on completed rows are k-means on the observed values (their fixed
    point: each centre the mean of its rows' observed values, feature by feature)."""
    holes = np.isnan(X)
    if not holes.any():
        return X
    seen = (~holes).astype(np.float64)
    reference = centres.mean(axis=0)
    Z = np.where(holes, 0.0, X - reference)
    C = centres - reference
    out = np.array(X, dtype=np.float64)
    step = max(1, (1 << 21) // max(1, centres.shape[0]))
    for start in range(0, X.shape[0], step):
        rows = slice(start, start + step)
        d2 = -2.0 * (Z[rows] @ C.T) + seen[rows] @ (C * C).T  # + Σ_o z², the same for every centre
        labels = np.argmin(d2, axis=1)
        out[rows] = np.where(holes[rows], centres[labels], X[rows])
    return out


def filled_kernel(block: np.ndarray, plan: FilledPlan, row_offset: int) -> Any:
    """``plan.kernel`` on the chunk with its missing values filled; rows with nothing observed weigh 0 (a weight
    column is added for them when the chunk has none: kernels take either layout)."""
    d = plan.fill.shape[0]
    empty = nothing_observed(block[:, :d])
    if empty.any():
        X, weights = split_weights(block, d)
        block = with_weight_column(X, np.where(empty, 0.0, 1.0 if weights is None else weights))
    if plan.centres is None:
        return plan.kernel(fill_missing(block, plan.fill), plan.payload, row_offset)
    X, weights = split_weights(block, d)
    if empty.any():  # (weight 0 now) filled, so that the completion has an observed value to go by
        X = np.where(empty[:, None], plan.fill, X)
    X = completed_by_nearest(X, plan.centres)
    return plan.kernel(X if weights is None else with_weight_column(X, weights), plan.payload, row_offset)
