"""What any input must be before it becomes an :class:`~dgmm.data.inputs.Input`: 2-D, dense, real, of
numeric columns, with one sample weight per row; DataFrame helpers (a weight column, Dask arrays of known
chunk sizes) and the row-id columns a fit should not take as features."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError, InputTypeError
from .parquet_checks import ID_MIN_ROWS


def column_names(columns) -> np.ndarray | None:
    """Column names as an object array when every one is a string, else None."""
    names = list(columns)
    if names and all(isinstance(c, str) for c in names):
        return np.asarray(names, dtype=object)
    return None


def dtype_kind(dtype) -> str | None:
    """NumPy's kind letter of a dtype; None for pandas extension dtypes (strings, categories, nullable)."""
    try:
        return np.dtype(dtype).kind
    except TypeError:
        return None


def is_number(dtype) -> bool:
    return dtype_kind(dtype) in ("i", "u", "f")


def check_numeric_frame(dtypes, where: str) -> None:
    for name, dtype in dtypes.items():
        if not is_number(dtype):
            raise DataError(f"{where}: column {name!r} has dtype {dtype}, not a number; select numeric columns")


def check_2d(shape: tuple, what: str) -> None:
    if len(shape) != 2:
        raise DataError(
            f"expected a 2-D {what} of shape (n_samples, n_features), got shape {shape}; "
            "Reshape your data with X.reshape(-1, 1) (one feature) or X.reshape(1, -1) (one row)"
        )


def check_kind(X: Any) -> None:
    """Refuse sparse and complex input, which would otherwise be densified or lose its imaginary part."""
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise InputTypeError(
            f"a sparse matrix ({type(X).__name__}) was passed, but dense data is required; "
            "use X.toarray() to convert it to a dense numpy array"
        )
    dtype = getattr(X, "dtype", None)
    if dtype is not None and dtype_kind(dtype) == "c":
        raise InputTypeError(
            f"Complex data not supported: input has dtype {dtype}; fit the real and imaginary parts as separate columns"
        )


def weight_vector(sample_weight: Any, n_rows: int):
    """A 1-D NumPy or Dask array of ``n_rows`` weights."""
    if type(sample_weight).__module__.split(".")[0] in ("dask", "dask_expr"):
        weights = frame_array(sample_weight) if hasattr(sample_weight, "to_dask_array") else sample_weight
    else:
        try:
            weights = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"sample_weight is not numeric: {exc}") from None
    if weights.ndim != 1 or weights.shape[0] != n_rows:
        raise DataError(f"sample_weight has shape {weights.shape}; expected ({n_rows},), one weight per row")
    return weights


def frame_array(frame: Any):
    """A Dask DataFrame or Series as a Dask array with known chunk sizes, in one pass over its partitions.

    The lengths are computed from the array's own graph: ``to_dask_array(lengths=True)`` computes
    them from the frame's optimised graph, which may fuse partitions (``read_parquet`` of a column
    subset does) and then no longer matches the array ("1 != 2" lengths).
    """
    return frame.to_dask_array().compute_chunk_sizes()


def frame_weights(X: Any, sample_weight: Any) -> tuple[Any, Any]:
    """A column name as ``sample_weight`` of a DataFrame: that column, removed from the features."""
    if isinstance(sample_weight, str) and hasattr(X, "columns"):
        if sample_weight not in X.columns:
            raise DataError(f"weight column {sample_weight!r} not found; columns are {', '.join(map(str, X.columns))}")
        return X.drop(columns=[sample_weight]), X[sample_weight]
    if isinstance(sample_weight, str):
        raise DataError("sample_weight as a column name needs Parquet or DataFrame input; give an array of weights")
    return X, sample_weight


def id_like_columns(frame: Any) -> tuple[str, ...]:
    """Integer columns of a pandas DataFrame holding distinct consecutive integers, one per row (e.g. 0..n-1,
    or 1..n as R's row names): row ids, not features. Frames of fewer than ID_MIN_ROWS rows have none."""
    if len(frame) < ID_MIN_ROWS:
        return ()
    return tuple(
        str(name)
        for name, dtype in frame.dtypes.items()
        if dtype_kind(dtype) in ("i", "u")
        and int(frame[name].max()) - int(frame[name].min()) + 1 == len(frame)
        and frame[name].is_unique
    )
