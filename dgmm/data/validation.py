"""Checks of the values a fit reads, and the row weights they become (pure NumPy).

Every chunk is checked as it is read, naming the global row and column of the first bad value:
NaN (refused; with ``nan_policy="drop"`` its row gets weight 0; with ``"marginalize"`` it marks a missing value
and only a row with nothing observed gets weight 0), infinities, and magnitudes beyond
:data:`MAX_MAGNITUDE`; sample weights must be finite and >= 0. The weighted block's layout is
:mod:`dgmm.kernels.row_weights`'.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import DataError
from ..kernels.row_weights import with_weight_column

NanPolicy = Literal["raise", "drop", "marginalize"]
NAN_POLICIES: tuple[str, ...] = ("raise", "drop", "marginalize")
# Largest magnitude of a feature or weight: squares summed over billions of rows stay finite
# (centred second moments of larger values overflow float64 and end a fit with NaN).
MAX_MAGNITUDE = 1e100


def within_range(values: np.ndarray) -> bool:
    """Every value finite and of magnitude at most MAX_MAGNITUDE (two reductions, no temporary arrays)."""
    return bool(values.size == 0 or (-MAX_MAGNITUDE <= np.min(values) and np.max(values) <= MAX_MAGNITUDE))


def too_large_message(where: str, value: float) -> str:
    return (
        f"{where} is {value:.6g}, beyond {MAX_MAGNITUDE:g} in magnitude, where the second moments overflow; "
        "scale the data (e.g. divide the column by a power of ten) before fitting"
    )


def check_nan_policy(nan_policy: str) -> None:
    """Refuse (DataError) a ``nan_policy`` that is not one of :data:`NAN_POLICIES`."""
    if nan_policy not in NAN_POLICIES:
        raise DataError(f"nan_policy={nan_policy!r} is invalid; expected one of {', '.join(NAN_POLICIES)}")


def is_weighted(has_weights: bool, nan_policy: str) -> bool:
    """Whether data carries a last column of row weights: it has sample weights, or rows may be dropped (under
    "marginalize" a row with nothing observed is left out by the kernels, so no column is needed for it)."""
    return has_weights or nan_policy == "drop"


def dropped_rows(features: np.ndarray, nan_policy: str) -> np.ndarray:
    """(n,) the rows a policy leaves out: any NaN for "drop", NaN everywhere (nothing observed) for "marginalize"."""
    if nan_policy == "drop":
        return np.isnan(features).any(axis=1)
    if nan_policy == "marginalize":
        return np.isnan(features).all(axis=1)
    return np.zeros(features.shape[0], dtype=bool)


def nan_fix(nan_policy: str) -> str:
    """What to do about a value a policy refuses (NaN under "raise", infinities under the others)."""
    if nan_policy == "drop":
        return "nan_policy='drop' skips only NaN: replace or remove infinities before fitting"
    if nan_policy == "marginalize":
        return "nan_policy='marginalize' treats only NaN and nulls as missing: replace or remove infinities"
    return (
        "drop or impute NaN and infinite values before fitting, or pass nan_policy='drop' to skip NaN rows "
        "(or 'marginalize' to fit on the observed values)"
    )


def check_finite_block(block: np.ndarray, row_offset: int, nan_policy: str = "raise") -> None:
    """Refuse a chunk holding NaN (but for "marginalize": missing values), infinities or values beyond
    MAX_MAGNITUDE, naming the first bad row."""
    if within_range(block):
        return
    if nan_policy == "marginalize":
        block = np.where(np.isnan(block), 0.0, block)
        if within_range(block):
            return
    finite = np.isfinite(block)
    if finite.all():
        row, col = np.argwhere(np.abs(block) > MAX_MAGNITUDE)[0]
        raise DataError(too_large_message(f"input row {row_offset + int(row)}, column {int(col)}", block[row, col]))
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise DataError(
            f"input row {row_offset + int(row)}, column {int(col)} is {block[row, col]}; {nan_fix(nan_policy)}"
        )


def attach_weights(X: np.ndarray, weights: np.ndarray | None, nan_policy: str, row_offset: int = 0) -> np.ndarray:
    """Features and row weights as one weighted block, checked.

    Infinite features and negative, infinite (or, unless dropped, NaN) weights are refused,
    naming the global row. With ``nan_policy="drop"`` rows holding NaN get weight 0 and
    features 0; with ``"marginalize"`` NaN stays (a missing value) and only rows with nothing observed get
    weight 0 and features 0; with ``"raise"`` NaN is refused.

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
    dropped = np.isnan(out).any(axis=1) if nan_policy == "drop" else dropped_rows(out[:, :d], nan_policy)
    bad_weight = (~(out[:, d] >= 0) & ~dropped) | np.isinf(out[:, d])
    if bad_weight.any():
        row = int(np.argmax(bad_weight))
        raise DataError(f"sample_weight[{row_offset + row}] is {out[row, d]}; weights must be finite and >= 0")
    check_finite_block(np.where(dropped[:, None], 0.0, out[:, :d]), row_offset, nan_policy)
    out[dropped] = 0.0
    return out
