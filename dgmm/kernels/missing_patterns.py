"""A chunk's missingness patterns (full and tied covariances, ``nan_policy="marginalize"``); pure NumPy, no Dask.

Which values each row misses, found tile by tile; the rows with two or more numbered by pattern; and each
pattern's s x s block of every component's precision inverted once per chunk (:class:`MissingBlocks`), for the
compiled tiles of :mod:`dgmm.kernels.missing`.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._numba_patterns import find_missing, first_seen, pattern_inverses

TILE_ELEMENTS = 1 << 18  # rows x features scanned per job of the chunk's ``map``
TABLE_BITS = 18  # patterns of up to this many features are numbered through a 2**d table, wider ones by a sort
PATTERN_BATCH = 256  # patterns inverted per job of the chunk's ``map``
BLOCK_CACHE_ELEMENTS = 1 << 22  # a chunk's pattern blocks (P x K x s x s), 32 MiB of float64, at most


@dataclass(frozen=True)
class MissingBlocks:
    """Which values each row misses and its patterns' precision blocks (full and tied covariances).

    count : (n,) missing values per row; index : (n, d) their coordinates, ascending in the first ``count``;
    pattern : (n,) the row's pattern, -1 where its block is factorised row by row; start : (P,) and inverse
    (Σ_p s_p² K,): pattern p's Λ_mm⁻¹ entry (a, b) of component k at ``start[p] + (a s + b) K + k``; log_det :
    (P, K) log det Λ_mm; pattern_count, pattern_index : (P,), (P, d) the patterns' missing coordinates.
    """

    count: np.ndarray
    index: np.ndarray
    pattern: np.ndarray
    start: np.ndarray
    inverse: np.ndarray
    log_det: np.ndarray
    pattern_count: np.ndarray
    pattern_index: np.ndarray

    def rows(self, first: int, stop: int) -> tuple[np.ndarray, ...]:
        """count, index and pattern of rows first … stop − 1, then log_det."""
        return self.count[first:stop], self.index[first:stop], self.pattern[first:stop], self.log_det


def missing_index(X: np.ndarray, map: Callable = builtins.map) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) how many values each row of X (n, d) misses, (n, d) which (int32, ascending in the first ``count``
    columns), and (n,) the pattern's bits (:func:`~dgmm.kernels._numba_missing.find_missing`), row tiles through
    ``map``."""
    n, d = X.shape
    count, index, code = np.empty(n, dtype=np.int64), np.empty((n, d), dtype=np.int32), np.empty(n, dtype=np.int64)
    step = max(1, TILE_ELEMENTS // max(d, 1))
    rows = [slice(i, i + step) for i in range(0, n, step)]
    list(map(lambda r: find_missing(X[r], count[r], index[r], code[r]), rows))
    return count, index, code


def missing_blocks(
    X: np.ndarray, precisions: np.ndarray, found: tuple | None = None, map: Callable = builtins.map
) -> MissingBlocks:
    """:class:`MissingBlocks` of rows ``X`` (n, d) under precisions (K, d, d): each pattern of two or more missing
    values inverted once per component (batches of patterns through ``map``), unless their blocks would exceed
    :data:`BLOCK_CACHE_ELEMENTS` (then every row factorises its own). ``found``: X's :func:`missing_index`, if
    known."""
    count, index, code = missing_index(X, map) if found is None else found
    K, d = precisions.shape[0], precisions.shape[1]
    pattern = np.full(X.shape[0], -1, dtype=np.int64)
    several = np.flatnonzero(count > 1)
    none = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, K)), np.zeros(0, dtype=np.int64))
    none = (*none, np.zeros((0, d), dtype=index.dtype))
    if several.size == 0:
        return MissingBlocks(count, index, pattern, *none)
    if d <= TABLE_BITS:
        first, inverse_of_row = first_seen(code[several], d)
    else:
        if d <= 62:  # the pattern's bits as one integer
            keys = code[several]
        else:
            packed = np.packbits(np.isnan(X[several]), axis=1)
            keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, inverse_of_row = np.unique(keys, return_index=True, return_inverse=True)
    patterns = several[first]
    p_count, p_index = count[patterns], np.ascontiguousarray(index[patterns])
    sizes = p_count**2 * K
    if sizes.sum() > BLOCK_CACHE_ELEMENTS:
        return MissingBlocks(count, index, pattern, *none)
    pattern[several] = inverse_of_row.reshape(-1)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    inverse, log_det = np.empty(int(sizes.sum())), np.empty((len(patterns), K))

    def invert(first: int) -> None:
        batch = slice(first, first + PATTERN_BATCH)
        pattern_inverses(precisions, p_count[batch], p_index[batch], start[batch], inverse, log_det[batch])

    list(map(invert, range(0, len(patterns), PATTERN_BATCH)))
    return MissingBlocks(count, index, pattern, start, inverse, log_det, p_count, p_index)
