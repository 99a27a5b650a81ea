"""Reading the rows of one Parquet row group: Arrow columns -> a float64 block, checked, for a chunk task.

:class:`RowGroupReader` is the array-like ``dask.array.from_array`` reads chunks from;
:func:`read_row_group` makes one (n, d [+ 1]) block, :func:`column_values` the columns it is made of.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, InputChanged
from .parquet_checks import check_exact_integers, check_values, is_wide_int, null_message
from .sources import RERUN, RowGroup, check_version, open_input, storage_error
from .validation import NanPolicy, dropped_rows, is_weighted, within_range


def column_values(
    row_group: RowGroup, columns: Sequence[str], weight_column: str | None = None, nan_policy: NanPolicy = "raise"
) -> list[np.ndarray | float]:
    """The feature columns (then the weight column) of one row group as float64 arrays of shape (n,),
    viewed in Arrow's buffers, or floats for hive keys; nulls are NaN (refused with ``"raise"``) and
    64-bit integers float64 cannot hold exactly are refused. Other values are not checked here."""
    partitions = dict(row_group.partitions)
    in_file = [c for c in columns if c not in partitions] + ([weight_column] if weight_column else [])
    table = read_table(row_group, in_file)
    d = len(columns)
    names = [*columns, weight_column] if weight_column else list(columns)
    values: list[np.ndarray | float] = []
    for j, name in enumerate(names):
        if name in partitions and j < d:
            values.append(float(partitions[name]))
            continue
        column = table.column(name)
        if column.null_count and nan_policy == "raise":
            raise DataError(null_message(row_group.path, name, column.null_count, row_group.index, j == d))
        if is_wide_int(column.type):
            check_exact_integers(row_group, name, column, is_weight=j == d)
        if column.type != pa.float64():
            column = column.cast(pa.float64())
        values.append(_as_numpy(column.fill_null(np.nan) if column.null_count else column))
    return values


def read_row_group(
    row_group: RowGroup,
    columns: Sequence[str],
    weight_column: str | None = None,
    nan_policy: NanPolicy = "raise",
) -> np.ndarray:
    """Read one row group as float64.

    Infinite values, negative weights, values beyond MAX_MAGNITUDE and 64-bit integers beyond
    2**53 in magnitude (float64 cannot hold them exactly) are always refused. Nulls and NaN are refused with
    ``nan_policy="raise"``; with ``"drop"`` their rows get weight 0 (and features 0); with ``"marginalize"``
    they are NaN (missing values), and with a weight column a row with no feature observed gets weight 0.

    Returns
    -------
    ndarray of shape (n, d), or (n, d + 1) when weighted (a ``weight_column`` or
    ``nan_policy="drop"``): the last column is the row weight (1 without a weight column).
    """
    d = len(columns)
    names = [*columns, weight_column] if weight_column else list(columns)
    values = column_values(row_group, columns, weight_column, nan_policy)
    weighted = is_weighted(weight_column is not None, nan_policy)
    out = np.empty((row_group.n_rows, d + weighted), dtype=np.float64)
    _fill_columns(out, values)
    if weighted and weight_column is None:
        out[:, d] = 1.0
    if within_range(out[:, : len(names)]) and (weight_column is None or (out[:, d] >= 0).all()):
        return out
    dropped = np.zeros(row_group.n_rows, dtype=bool)
    for j, name in enumerate(names):
        if not isinstance(values[j], float):
            check_values(row_group, name, out[:, j], nan_policy, is_weight=j == d)
            if nan_policy == "drop":
                dropped |= np.isnan(out[:, j])
    if nan_policy == "marginalize" and weighted:  # unweighted, such rows are the kernels' to leave out
        dropped = dropped_rows(out[:, :d], nan_policy)
    out[dropped] = 0.0
    return out


def read_table(row_group: RowGroup, names: list[str]) -> pa.Table:
    """The named file columns of one row group, as Arrow. The file's version is checked once the rows are read
    (:func:`~dgmm.data.sources.check_version`; a change before the read is still there after it) and the footer
    read against the snapshot's: a file changed, truncated, replaced or removed since the run started is
    :class:`~dgmm.errors.InputChanged`, never rows of another version."""
    try:
        with open_input(row_group.path, row_group.storage_options) as handle:
            parquet = pq.ParquetFile(handle)
            footer = footer_shape(parquet.metadata)
            if row_group.version is not None and row_group.version.footer not in ((), footer):
                raise InputChanged(
                    f"{row_group.path}: changed while in use: its footer is another (size, rows, row groups, "
                    f"columns {row_group.version.footer} when the run started, {footer} now); {RERUN}"
                )
            table = parquet.read_row_group(row_group.index, columns=names)
    except (OSError, pa.ArrowException, IndexError) as exc:
        check_version(row_group.path, row_group.version, row_group.storage_options)  # the reason, when it is that
        trouble = storage_error(row_group.path, exc)
        if trouble is not None:
            raise trouble from None
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise DataError(
            f"{row_group.path}: cannot read row group {row_group.index} ({reason}); the input was removed or "
            "changed while in use: restore it and run again (a fit with a checkpoint can --resume)"
        ) from None
    check_version(row_group.path, row_group.version, row_group.storage_options)
    if table.num_rows != row_group.n_rows:
        raise DataError(
            f"{row_group.path}: row group {row_group.index} now has {table.num_rows} rows, not "
            f"{row_group.n_rows}; the input changed while in use: restore it and run again"
        )
    return table


def footer_shape(metadata: pq.FileMetaData) -> tuple[int, ...]:
    """A Parquet footer's size in bytes, rows, row groups and columns (:attr:`FileVersion.footer`)."""
    return (metadata.serialized_size, metadata.num_rows, metadata.num_row_groups, metadata.num_columns)


def _as_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A float64 column without nulls as an ndarray of shape (n,), each chunk's buffer viewed, not copied.

    Not ``to_numpy()``: pyarrow imports pandas for it, ~65 MiB more in every worker process.
    """
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=np.float64, count=len(chunk), offset=8 * chunk.offset)
        if len(chunk)
        else np.empty(0)
        for chunk in column.chunks
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0)


def _fill_columns(out: np.ndarray, values: list[np.ndarray | float], block_rows: int = 4096) -> None:
    """``out[:, j] = values[j]`` for each column, a block of rows at a time so the rows written stay in cache.

    out : (n, ≥ len(values)) C-ordered; values : arrays of shape (n,) or scalars.
    """
    for start in range(0, out.shape[0], block_rows):
        stop = start + block_rows
        for j, value in enumerate(values):
            out[start:stop, j] = value if isinstance(value, float) else value[start:stop]


class RowGroupReader:
    """Array-like over row groups for ``dask.array.from_array``; slices align with chunks."""

    def __init__(
        self,
        row_groups: Sequence[RowGroup],
        columns: Sequence[str],
        weight_column: str | None = None,
        nan_policy: NanPolicy = "raise",
    ):
        self.row_groups = tuple(row_groups)
        self.columns = tuple(columns)
        self.weight_column = weight_column
        self.nan_policy = nan_policy
        self.starts = np.cumsum([0] + [rg.n_rows for rg in self.row_groups])
        weighted = is_weighted(weight_column is not None, nan_policy)
        self.shape = (int(self.starts[-1]), len(self.columns) + weighted)
        self.dtype = np.dtype(np.float64)
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        start, stop, _ = rows.indices(self.shape[0])
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        i = first
        while i < len(self.row_groups) and self.starts[i] < stop:
            block = read_row_group(self.row_groups[i], self.columns, self.weight_column, self.nan_policy)
            lo = max(start - self.starts[i], 0)
            hi = min(stop, self.starts[i + 1]) - self.starts[i]
            pieces.append(block[lo:hi])
            i += 1
        data = np.concatenate(pieces) if len(pieces) != 1 else pieces[0]
        return data[:, cols]
