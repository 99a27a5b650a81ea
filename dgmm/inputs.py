"""Turn what users pass to ``fit``/``predict`` into a row-chunked Dask array of float64.

Accepted: NumPy arrays (and array-likes), pandas DataFrames, Dask arrays, Dask
DataFrames, and Parquet paths (a str / PathLike or a list of them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import DataError
from .execution import IN_MEMORY_CHUNK_ROWS, InputKind, check_finite_block
from .io import ParquetDataset, is_path_input


@dataclass
class Input:
    """Validated input.

    Attributes
    ----------
    kind : "numpy" (in memory), "dask" or "parquet"
    feature_names : column names, or None when the input has none
    values : the NumPy array (n, d) itself for in-memory input, else None
    lazy : dask.array.Array (n, d), float64, chunked along rows only
    """

    kind: InputKind
    feature_names: np.ndarray | None
    values: np.ndarray | None = None
    lazy: Any = None
    dataset: ParquetDataset | None = None
    chunk_rows: int = IN_MEMORY_CHUNK_ROWS

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this input, for checkpoints: files, or a hash of in-memory data."""
        if self.dataset is not None:
            return self.dataset.fingerprint()
        if self.values is not None:
            digest = hashlib.sha256(np.ascontiguousarray(self.values).tobytes()).hexdigest()
            return {"sha256": digest, "shape": list(self.values.shape)}
        return {"dask_name": self.lazy.name, "shape": list(self.lazy.shape)}

    @property
    def array(self):
        """The data as a Dask array (built on first use for in-memory input)."""
        if self.lazy is None:
            import dask.array as da

            self.lazy = da.from_array(self.values, chunks=(self.chunk_rows, self.values.shape[1]), name=False)
        return self.lazy

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape if self.values is not None else self.lazy.shape)

    @property
    def n_rows(self) -> int:
        return int(self.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.shape[1])


def _names(columns) -> np.ndarray | None:
    names = list(columns)
    if names and all(isinstance(c, str) for c in names):
        return np.asarray(names, dtype=object)
    return None


def _is_number(dtype) -> bool:
    try:
        return np.dtype(dtype).kind in "iuf"
    except TypeError:  # pandas extension dtypes (strings, categories, nullable)
        return False


def _check_numeric_frame(dtypes, where: str) -> None:
    for name, dtype in dtypes.items():
        if not _is_number(dtype):
            raise DataError(f"{where}: column {name!r} has dtype {dtype}, not a number; select numeric columns")


def _check_2d(shape: tuple, what: str) -> None:
    if len(shape) != 2:
        raise DataError(
            f"expected a 2-D {what} of shape (n_samples, n_features), got shape {shape}; "
            "reshape 1-D data with X.reshape(-1, 1)"
        )


def _from_numpy(values: np.ndarray, names: np.ndarray | None, chunk_rows: int | None) -> Input:
    _check_2d(values.shape, "array")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise DataError(f"input has shape {values.shape}; it needs at least one row and one column")
    check_finite_block(values, 0)
    return Input("numpy", names, values, chunk_rows=chunk_rows or IN_MEMORY_CHUNK_ROWS)


def _checked_block(block: np.ndarray, block_info=None) -> np.ndarray:
    """A Dask block, refused if it holds NaN or infinities (named by global row).

    Parquet chunks are checked by the reader and NumPy input up front, so passes and
    scoring never check again; a cached (persisted) array is checked once.
    """
    check_finite_block(block, block_info[0]["array-location"][0][0] if block_info else 0)
    return block


def as_input(X: Any, columns: Sequence[str] | None = None, chunk_rows: int | None = None) -> Input:
    """Validate and convert ``X``; ``columns`` selects Parquet columns; ``chunk_rows`` caps chunk sizes."""
    if isinstance(X, ParquetDataset) or is_path_input(X):
        dataset = X if isinstance(X, ParquetDataset) else ParquetDataset.open(X, columns, chunk_rows)
        return Input("parquet", np.asarray(dataset.columns, dtype=object), lazy=dataset.to_dask(), dataset=dataset)
    if columns is not None:
        raise DataError("columns= only applies to Parquet paths; select columns of in-memory data before fitting")
    module = type(X).__module__.split(".")[0]
    if module == "pandas" and hasattr(X, "dtypes") and hasattr(X, "columns"):
        _check_numeric_frame(X.dtypes, "DataFrame")
        return _from_numpy(X.to_numpy(dtype=np.float64), _names(X.columns), chunk_rows)
    if module in ("dask", "dask_expr"):
        if hasattr(X, "columns") and hasattr(X, "to_dask_array"):
            _check_numeric_frame(X.dtypes, "Dask DataFrame")
            names = _names(X.columns)
            X = X.to_dask_array(lengths=True)
        else:
            names = None
        _check_2d(X.shape, "Dask array")
        X = X.astype(np.float64).rechunk({0: chunk_rows, 1: -1} if chunk_rows else {1: -1})
        return Input("dask", names, lazy=X.map_blocks(_checked_block, dtype=np.float64))
    try:
        values = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"input of type {type(X).__name__} is not a numeric array: {exc}") from None
    return _from_numpy(values, None, chunk_rows)
