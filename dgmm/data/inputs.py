"""Turn what users pass to ``fit``/``predict`` into a row-chunked Dask array of float64.

Accepted: NumPy arrays (and array-likes), pandas DataFrames, Dask arrays, Dask
DataFrames, and Parquet paths (a str / PathLike or a list of them).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence

import numpy as np

from ..errors import DataError, IdColumnWarning, InputTypeError
from ..kernels.arrays import namespace, to_numpy
from ..kernels.row_weights import block_row_offset
from .devices import DeviceTarget, check_device_values, device_target, is_device_array
from .input_checks import (
    check_2d,
    check_kind,
    check_numeric_frame,
    column_names,
    frame_array,
    frame_weights,
    id_like_columns,
    weight_vector,
)
from .parquet import ParquetDataset, is_path_input
from .validation import NanPolicy, attach_weights, check_finite_block, check_nan_policy, is_weighted

__all__ = ["IN_MEMORY_CHUNK_ROWS", "Input", "InputKind", "as_input", "is_device_array", "on_device", "warn_id_like"]


InputKind = Literal["numpy", "dask", "parquet", "xp"]
IN_MEMORY_CHUNK_ROWS = 65_536  # rows per chunk of in-memory input


@dataclass
class Input:
    """Validated input.

    Attributes
    ----------
    kind : "numpy" (in memory), "dask", "parquet", or "xp" (an array-API array on its device: CuPy,
        torch, array-api-strict; fitted in this process by the array-API kernels, never copied to NumPy)
    feature_names : column names, or None when the input has none
    values : the NumPy array (n, d [+ 1]) itself for in-memory input (the device array for "xp"), else None
    lazy : dask.array.Array (n, d [+ 1]), float64, chunked along rows only
    weighted : the last column holds row weights (sample weights, 0 for rows dropped by
        ``nan_policy="drop"``); kernels split it off with :func:`dgmm.kernels.row_weights.split_weights`
    frame : for scoring only (``as_input(..., keep_frame=True)``): the Dask DataFrame itself,
        numeric columns checked, so outputs keep its partitions and index; ``lazy`` is then None
        (its row count is never computed) and ``weighted`` says whether NaN rows are dropped
    id_like : feature columns that look like row ids (:func:`id_like_columns`); see :func:`warn_id_like`
    device : for Parquet and Dask input, the GPU its passes run on (a :class:`~dgmm.data.devices.DeviceTarget`,
        set by :func:`on_device`), or None for the CPU
    host_output : for scoring only: NumPy input placed on a device, whose outputs come back as NumPy
    """

    kind: InputKind
    feature_names: np.ndarray | None
    values: np.ndarray | None = None
    lazy: Any = None
    dataset: ParquetDataset | None = None
    chunk_rows: int = IN_MEMORY_CHUNK_ROWS
    weighted: bool = False
    frame: Any = None
    id_like: tuple[str, ...] = ()
    device: Any = None
    host_output: bool = False

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this input, for checkpoints: files, or a hash of in-memory data."""
        if self.dataset is not None:
            return self.dataset.fingerprint()
        if self.values is not None:
            values = self.values if self.kind != "xp" else to_numpy(self.values)
            digest = hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()
            return {"sha256": digest, "shape": list(self.values.shape)}
        return {"dask_name": self.lazy.name, "shape": list(self.lazy.shape)}

    @property
    def array(self):
        """The data as a Dask array (built on first use for in-memory input)."""
        if self.lazy is None:
            if self.kind == "xp":
                raise InputTypeError(
                    "array-API input on a device is fitted in this process; a Dask cluster needs "
                    "NumPy, Dask or Parquet input"
                )
            import dask.array as da

            self.lazy = da.from_array(self.values, chunks=(self.chunk_rows, self.values.shape[1]), name=False)
        return self.lazy

    @property
    def lazy_nbytes(self) -> int | None:
        """Bytes of the lazy array (Parquet, Dask input), from its metadata; None for in-memory input."""
        return None if self.lazy is None else int(self.lazy.nbytes)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape if self.values is not None else self.lazy.shape)

    @property
    def n_rows(self) -> int:
        return int(self.shape[0])

    @property
    def n_features(self) -> int:
        if self.frame is not None:
            return len(self.frame.columns)
        return int(self.shape[1]) - self.weighted


def _checked_block(block: np.ndarray, nan_policy: NanPolicy = "raise", block_info=None) -> np.ndarray:
    """A Dask block, refused if it holds NaN (but for "marginalize") or infinities (named by global row); a block
    on a GPU is checked there.

    Parquet chunks are checked by the reader and NumPy input up front, so passes and
    scoring never check again; a cached (persisted) array is checked once.
    """
    if is_device_array(block):
        check_device_values(block, block_row_offset(block_info))
    else:
        check_finite_block(block, block_row_offset(block_info), nan_policy)
    return block


def _weighted_block(
    block: np.ndarray, weights: np.ndarray | None = None, nan_policy: NanPolicy = "raise", block_info=None
) -> np.ndarray:
    """:func:`attach_weights` on one Dask block (``weights`` of shape (n, 1) or None)."""
    return attach_weights(block, None if weights is None else weights[:, 0], nan_policy, block_row_offset(block_info))


def as_input(
    X: Any,
    columns: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    sample_weight: Any = None,
    nan_policy: NanPolicy = "raise",
    storage_options: dict | None = None,
    keep_frame: bool = False,
    exclude_columns: Sequence[str] | None = None,
) -> Input:
    """Validate and convert ``X``.

    ``columns`` selects Parquet columns; ``chunk_rows`` caps chunk sizes; ``sample_weight``
    is an array of per-row weights or, for Parquet and DataFrames, the name of a weight
    column; ``nan_policy="drop"`` gives rows with nulls or NaN weight 0 instead of refusing them.
    ``storage_options`` are fsspec's options for Parquet paths given as URLs. ``keep_frame``
    (scoring, no weights) keeps a Dask DataFrame as it is (:attr:`Input.frame`) instead of
    computing its partitions' lengths. ``exclude_columns`` are never features of Parquet paths read without
    ``columns`` (a group column).
    """
    check_nan_policy(nan_policy)
    if isinstance(X, ParquetDataset) or is_path_input(X):
        column = sample_weight if isinstance(sample_weight, str) else None
        if isinstance(X, ParquetDataset):  # opened already: reopened only to change how rows are weighted
            column = column or (X.weight_column if sample_weight is None else None)
            dataset = X
            if (column, nan_policy) != (X.weight_column, X.nan_policy):
                dataset = X.reopened(column, nan_policy)
        else:
            dataset = ParquetDataset.open(X, columns, chunk_rows, column, nan_policy, storage_options, exclude_columns)
        data = Input(
            "parquet",
            np.asarray(dataset.columns, dtype=object),
            lazy=dataset.to_dask(),
            dataset=dataset,
            weighted=dataset.weighted,
            id_like=dataset.id_like_columns,
        )
        return data if column is not None or sample_weight is None else _with_weight_array(data, sample_weight)
    if columns is not None:
        raise DataError("columns= only applies to Parquet paths; select columns of in-memory data before fitting")
    if is_device_array(X):
        return device_input(X, sample_weight, nan_policy, chunk_rows)
    check_kind(X)
    X, sample_weight = frame_weights(X, sample_weight)
    weighted = is_weighted(sample_weight is not None, nan_policy)
    id_like: tuple[str, ...] = ()
    module = type(X).__module__.split(".")[0]
    if module == "pandas" and hasattr(X, "dtypes") and hasattr(X, "columns"):
        check_numeric_frame(X.dtypes, "DataFrame")
        values, names, id_like = X.to_numpy(dtype=np.float64), column_names(X.columns), id_like_columns(X)
    elif module in ("dask", "dask_expr"):
        if hasattr(X, "columns") and hasattr(X, "to_dask_array"):
            check_numeric_frame(X.dtypes, "Dask DataFrame")
            names = column_names(X.columns)
            if keep_frame and sample_weight is None:
                return Input("dask", names, frame=X, weighted=weighted)
            X = frame_array(X)
        else:
            names = None
        check_2d(X.shape, "Dask array")
        X = X.astype(np.float64).rechunk({0: chunk_rows, 1: -1} if chunk_rows else {1: -1})
        if not weighted:
            return Input("dask", names, lazy=X.map_blocks(_checked_block, nan_policy=nan_policy, dtype=np.float64))
        return _with_weight_array(Input("dask", names, lazy=X), sample_weight, nan_policy)
    else:
        try:
            values, names = np.asarray(X), None
            check_kind(values)  # a list of complex numbers has no dtype until now
            values = values.astype(np.float64, copy=False)
        except TypeError as exc:
            raise InputTypeError(f"input of type {type(X).__name__} is not a numeric array: {exc}") from None
        except ValueError as exc:
            raise DataError(f"input of type {type(X).__name__} is not a numeric array: {exc}") from None
    check_2d(values.shape, "array")
    for axis, what in ((0, "sample"), (1, "feature")):
        if values.shape[axis] == 0:
            raise DataError(
                f"Found array with 0 {what}(s) (shape={values.shape}) while a minimum of 1 is required; "
                "the input needs at least one row and one column"
            )
    if weighted:
        weights = None if sample_weight is None else np.asarray(weight_vector(sample_weight, values.shape[0]))
        values = attach_weights(values, weights, nan_policy)
    else:
        check_finite_block(values, 0, nan_policy)
    return Input(
        "numpy", names, values, chunk_rows=chunk_rows or IN_MEMORY_CHUNK_ROWS, weighted=weighted, id_like=id_like
    )


def warn_id_like(data: Input, stacklevel: int) -> None:
    """One IdColumnWarning naming the feature columns that look like row ids, and how to leave them out
    (``stacklevel`` of the user's call, as for ``warnings.warn``, counting this function as 1)."""
    if data.id_like:
        one = len(data.id_like) == 1
        quoted = ", ".join(map(repr, data.id_like))
        what = (
            ("column {} looks like a row id", "is fitted as a feature", "it")
            if one
            else ("columns {} look like row ids", "are fitted as features", "them")
        )
        warnings.warn(
            f"{what[0].format(quoted)} (distinct consecutive integers, one per row) but {what[1]}; leave "
            f"{what[2]} out with exclude_columns=[{quoted}] (--exclude-columns {','.join(data.id_like)}), "
            "or name the features with columns=[...] (--columns)",
            IdColumnWarning,
            stacklevel=stacklevel + 1,
        )


def device_input(X: Any, sample_weight: Any, nan_policy: NanPolicy, chunk_rows: int | None) -> Input:
    """Array-API input left on its device, checked there; row weights appended as a last column as for
    NumPy input."""
    xp = namespace(X)
    if nan_policy == "marginalize":
        raise InputTypeError(
            "nan_policy='marginalize' runs on the CPU: give NumPy, pandas, Dask or Parquet input (e.g. the "
            "array copied to the host), or nan_policy='drop'"
        )
    check_2d(tuple(X.shape), "array")
    if 0 in X.shape:
        raise DataError(f"Found array with shape {tuple(X.shape)}; the input needs at least one row and one column")
    if not xp.isdtype(X.dtype, "real floating"):
        if not xp.isdtype(X.dtype, ("integral", "bool")):
            raise InputTypeError(f"input has dtype {X.dtype}, not real numbers")
        X = xp.astype(X, xp.float64)
    where = getattr(X, "device", None)
    dropped = check_device_values(X, 0, nan_policy)
    weighted = is_weighted(sample_weight is not None, nan_policy)
    if weighted:
        X = xp.astype(X, xp.float64)
        if sample_weight is None:
            weights = xp.ones((X.shape[0],), dtype=xp.float64, device=where)
        else:
            host = None if is_device_array(sample_weight) else np.asarray(weight_vector(sample_weight, X.shape[0]))
            weights = xp.asarray(host if host is not None else sample_weight, dtype=xp.float64, device=where)
            if weights.shape != (X.shape[0],):
                raise DataError(f"sample_weight has shape {tuple(weights.shape)}; expected ({X.shape[0]},)")
            invalid = ~(weights >= 0) | ~xp.isfinite(weights)
            if bool(to_numpy(xp.any(invalid))):
                row = int(np.argmax(to_numpy(invalid)))
                raise DataError(
                    f"sample_weight[{row}] is {float(to_numpy(weights[row]))}; weights must be finite and >= 0"
                )
        if dropped is not None:
            weights = xp.where(dropped, xp.zeros_like(weights), weights)
            X = xp.where(dropped[:, None], xp.zeros_like(X), X)
        X = xp.concat([X, weights[:, None]], axis=1)
    # one chunk unless told: on a GPU, a chunk's tiles are as large as memory allows (xp_tile_rows)
    return Input("xp", None, X, chunk_rows=chunk_rows or X.shape[0], weighted=weighted)


def on_device(data: Input, device: str) -> Input:
    """The input where ``device`` says the passes run.

    - "auto": the data's device decides: array-API arrays and Dask arrays of CuPy chunks stay on their
      GPU, NumPy input and Dask arrays of NumPy chunks on the CPU; Parquet goes to the GPU when CuPy sees
      one (and, on a cluster, its workers do: checked when the fit places the data).
    - "cpu": an array-API array is copied to NumPy.
    - "cuda": NumPy input is copied to the GPU as one CuPy array; Parquet and Dask input are marked for
      it (:attr:`Input.device`). Without CuPy or a GPU it sees: InputTypeError, one line.
    """
    if data.kind == "xp":
        if device != "cpu":
            return data
        # chunks of NumPy input's size, unless chunk_rows was set (a device array is one chunk by default)
        chunk_rows = IN_MEMORY_CHUNK_ROWS if data.chunk_rows == data.values.shape[0] else data.chunk_rows
        return Input(
            "numpy",
            data.feature_names,
            to_numpy(data.values),
            chunk_rows=chunk_rows,
            weighted=data.weighted,
            id_like=data.id_like,
        )
    if data.kind == "numpy":
        if device != "cuda":
            return data
        target = device_target("cuda")
        # one chunk on the GPU, unless chunk_rows was set (xp_tile_rows sizes its tiles)
        chunk_rows = data.values.shape[0] if data.chunk_rows == IN_MEMORY_CHUNK_ROWS else data.chunk_rows
        if target.library != "cupy":  # a simulated GPU (tests): the array goes to its device
            return Input(
                "xp",
                data.feature_names,
                target.put(data.values),
                chunk_rows=chunk_rows,
                weighted=data.weighted,
                id_like=data.id_like,
            )
        import cupy

        return Input(
            "xp",
            data.feature_names,
            cupy.asarray(data.values),
            chunk_rows=chunk_rows,
            weighted=data.weighted,
            id_like=data.id_like,
        )
    if data.frame is not None:  # a Dask DataFrame kept for scoring: its partitions are scored on the CPU
        return data
    if data.lazy is not None and is_device_array(data.lazy._meta):  # a Dask array of CuPy chunks
        if device == "cpu":
            return replace(data, lazy=data.lazy.map_blocks(to_numpy, meta=np.empty((0, 0)), dtype=np.float64))
        return replace(data, device=DeviceTarget())  # their GPUs, whether or not this process sees one
    if data.kind == "dask" and device == "auto":  # NumPy chunks: the data lies on the CPU
        return data
    return replace(data, device=device_target(device))


def _with_weight_array(data: Input, sample_weight: Any, nan_policy: NanPolicy = "raise") -> Input:
    """Attach an array of weights to lazy input, chunk for chunk (features checked on the way)."""
    import dask.array as da

    X = data.lazy
    weights = None
    if sample_weight is not None:
        weights = da.asarray(weight_vector(sample_weight, X.shape[0])).astype(np.float64)
        weights = weights.rechunk((X.chunks[0],))[:, None]
    if data.weighted:  # Parquet read with nan_policy="drop": its rows of weight 0 stay dropped
        X, kept = X[:, :-1], X[:, -1:]
        weights = kept if weights is None else da.where(kept > 0, weights, 0.0)
    lazy = da.map_blocks(
        _weighted_block, X, weights, nan_policy=nan_policy, dtype=np.float64, chunks=(X.chunks[0], (X.shape[1] + 1,))
    )
    return Input(data.kind, data.feature_names, lazy=lazy, dataset=data.dataset, weighted=True)
