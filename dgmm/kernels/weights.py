"""Row weights in the data itself: the layout of a *weighted* block (pure NumPy).

Sample weights, and rows left out by ``nan_policy="drop"``, travel with the data as
one more column, so every chunk carries its own weights and chunk sizes stay known
from the Parquet footers. A weighted block of ``n`` rows and ``d`` features has
shape (n, d + 1); its last column is the row weight (>= 0, finite). A dropped row
has weight 0 and features 0, so kernels may compute on it freely: it adds nothing.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import DataError
from .hashing import heldout_rows

NanPolicy = Literal["raise", "drop"]
NAN_POLICIES: tuple[str, ...] = ("raise", "drop")
# Largest magnitude of a feature or weight: squares summed over billions of rows stay finite
# (centred second moments of larger values overflow float64 and end a fit with NaN).
MAX_MAGNITUDE = 1e100


def within_range(values: np.ndarray) -> bool:
    """Every value finite and of magnitude at most MAX_MAGNITUDE (two reductions, no temporary arrays)."""
    return bool(values.size == 0 or (-MAX_MAGNITUDE <= np.min(values) and np.max(values) <= MAX_MAGNITUDE))


def too_large_message(where: str, value: float) -> str:
    return (f"{where} is {value:.6g}, beyond {MAX_MAGNITUDE:g} in magnitude, where the second moments overflow; "
            "scale the data (e.g. divide the column by a power of ten) before fitting")


def check_nan_policy(nan_policy: str) -> None:
    """Refuse (DataError) a ``nan_policy`` that is not one of :data:`NAN_POLICIES`."""
    if nan_policy not in NAN_POLICIES:
        raise DataError(f"nan_policy={nan_policy!r} is invalid; expected one of {', '.join(NAN_POLICIES)}")


def no_rows_left(where: str = "") -> DataError:
    """The error of a fit (or of its initialisation sample, ``where``) left with no row of weight > 0."""
    return DataError(f"no rows left to fit{where}: every row has weight zero (dropped for nulls or NaN, or sample "
                     "weight 0); check the input or nan_policy")


def is_weighted(has_weights: bool, nan_policy: str) -> bool:
    """Whether data carries a last column of row weights: it has sample weights, or rows may be dropped."""
    return has_weights or nan_policy == "drop"


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


def check_finite_block(block: np.ndarray, row_offset: int, nan_policy: str = "raise") -> None:
    """Refuse a chunk holding NaN, infinities or values beyond MAX_MAGNITUDE, naming the first bad row."""
    if within_range(block):
        return
    finite = np.isfinite(block)
    if finite.all():
        row, col = np.argwhere(np.abs(block) > MAX_MAGNITUDE)[0]
        raise DataError(too_large_message(f"input row {row_offset + int(row)}, column {int(col)}", block[row, col]))
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        fix = ("nan_policy='drop' skips only NaN: replace or remove infinities before fitting" if nan_policy == "drop"
               else "drop or impute NaN and infinite values before fitting, or pass nan_policy='drop' to skip NaN rows")
        raise DataError(f"input row {row_offset + int(row)}, column {int(col)} is {block[row, col]}; {fix}")


def attach_weights(X: np.ndarray, weights: np.ndarray | None, nan_policy: str, row_offset: int = 0) -> np.ndarray:
    """Features and row weights as one weighted block, checked.

    Infinite features and negative, infinite (or, unless dropped, NaN) weights are refused,
    naming the global row. With ``nan_policy="drop"`` rows holding NaN get weight 0 and
    features 0; with ``"raise"`` NaN is refused.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    weights : ndarray of shape (n,) or None (every weight 1)
    row_offset : global index of the first row, for messages

    Returns
    -------
    ndarray of shape (n, d + 1), float64
    """
    n, d = X.shape
    out = with_weight_column(X, weights)
    dropped = np.isnan(out).any(axis=1) if nan_policy == "drop" else np.zeros(n, dtype=bool)
    bad_weight = (~(out[:, d] >= 0) & ~dropped) | np.isinf(out[:, d])
    if bad_weight.any():
        row = int(np.argmax(bad_weight))
        raise DataError(f"sample_weight[{row_offset + row}] is {out[row, d]}; weights must be finite and >= 0")
    check_finite_block(np.where(dropped[:, None], 0.0, out[:, :d]), row_offset, nan_policy)
    out[dropped] = 0.0
    return out


def class_rows(block: np.ndarray, n_features: int, weighted: bool, code: int) -> np.ndarray:
    """The weighted block (n, d + 1) one class's fit sees: rows of the other classes get weight 0.

    ``block`` has shape (n, d [+ 1] + 1): features, the row weight when ``weighted``, and last the
    class code of the row (a small integer as float64). Features and weights are copied unchanged,
    so the block equals what a fit given ``sample_weight = w * (code == c)`` sees.
    """
    if not isinstance(block, np.ndarray):  # an array-API block on its device
        from .xp_classes import xp_class_rows

        return xp_class_rows(block, n_features, weighted, code)
    weights = block[:, n_features] if weighted else 1.0
    return with_weight_column(block[:, :n_features], np.where(block[:, -1] == code, weights, 0.0))


def select_rows(block: np.ndarray, n_features: int, seed: int, fraction: float, held: bool,
                block_info: dict | None = None) -> np.ndarray:
    """A weighted block (n, d + 1) keeping only the training rows (``held=False``) or the held-out ones.

    Rows of the other part get weight 0 (:func:`dgmm.kernels.hashing.heldout_rows` splits them);
    ``block`` may be weighted or not.
    """
    X, weights = split_weights(block, n_features)
    keep = heldout_rows(X.shape[0], block_row_offset(block_info), seed, fraction)
    if not isinstance(X, np.ndarray):  # an array-API block on its device: the part's mask goes there
        from .xp_estep import namespace

        xp = namespace(X)
        part = xp.asarray((keep == held).astype(np.float64), device=X.device)
        weights = part if weights is None else xp.astype(weights, xp.float64) * part
        return xp.concat([xp.astype(X, xp.float64), weights[:, None]], axis=1)
    out = with_weight_column(X, weights)
    out[keep != held, n_features] = 0.0
    return out
