"""Row weights in the data itself: the layout of a *weighted* block (pure NumPy).

Sample weights, and rows left out by ``nan_policy="drop"``, travel with the data as
one more column, so every chunk carries its own weights and chunk sizes stay known
from the Parquet footers. A weighted block of ``n`` rows and ``d`` features has
shape (n, d + 1); its last column is the row weight (>= 0, finite). A dropped row
has weight 0 and features 0, so kernels may compute on it freely: it adds nothing.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .hashing import heldout_rows


def no_rows_left(where: str = "") -> DataError:
    """The error of a fit (or of its initialisation sample, ``where``) left with no row of weight > 0."""
    return DataError(
        f"no rows left to fit{where}: every row has weight zero (dropped for nulls or NaN, or sample "
        "weight 0); check the input or nan_policy"
    )


def block_row_offset(block_info: dict | None) -> int:
    """Global index of the first row of a ``map_blocks`` block, from its ``block_info`` (0 without one)."""
    return block_info[0]["array-location"][0][0] if block_info else 0


def with_weight_column(X: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """A new weighted block (n, d + 1), float64: ``X`` (n, d) and ``weights`` (n,) (every weight 1 when None)."""
    n, d = X.shape
    out = np.empty((n, d + 1), dtype=np.float64)
    out[:, :d] = X
    out[:, d] = 1.0 if weights is None else weights
    return out


def live_rows(X: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The rows of weight > 0, their weights, and their positions in the chunk (n_live,): rows of weight 0
    (another class's, dropped ones) add nothing to any statistic, so kernels do not compute on them.
    Without weights, or when none is 0, ``X`` and ``weights`` themselves."""
    if weights is None:
        return X, None, np.arange(X.shape[0])
    weights = np.asarray(weights, dtype=np.float64)
    positions = np.flatnonzero(weights > 0)
    if positions.size == X.shape[0]:
        return X, weights, positions
    return X[positions], weights[positions], positions


def split_weights(block: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (n, d) and weights (n,) of a block; weights None for an unweighted (n, d) block."""
    if block.shape[1] == n_features:
        return block, None
    return block[:, :n_features], block[:, n_features]


def class_rows(block: np.ndarray, n_features: int, weighted: bool, code: int) -> np.ndarray:
    """The weighted block (n, d + 1) one class's fit sees: rows of the other classes get weight 0.

    ``block`` has shape (n, d [+ 1] + 1): features, the row weight when ``weighted``, and last the
    class code of the row (a small integer as float64). Features and weights are copied unchanged,
    so the block equals what a fit given ``sample_weight = w * (code == c)`` sees.
    """
    weights = block[:, n_features] if weighted else 1.0
    return with_weight_column(block[:, :n_features], np.where(block[:, -1] == code, weights, 0.0))


def select_rows(
    block: np.ndarray, n_features: int, seed: int, fraction: float, held: bool, block_info: dict | None = None
) -> np.ndarray:
    """A weighted block (n, d + 1) keeping only the training rows (``held=False``) or the held-out ones.

    Rows of the other part get weight 0 (:func:`dgmm.kernels.hashing.heldout_rows` splits them);
    ``block`` may be weighted or not.
    """
    X, weights = split_weights(block, n_features)
    keep = heldout_rows(X.shape[0], block_row_offset(block_info), seed, fraction)
    out = with_weight_column(X, weights)
    out[keep != held, n_features] = 0.0
    return out
