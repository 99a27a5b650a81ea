"""Parquet -> Dask array of float64, one chunk per row group, sizes from metadata.

Only file footers are read when the array is built: the row counts, the schema
and the null counts come from the Parquet metadata. The data is read inside the
tasks, where NaN and infinities are caught and reported with the file, the
column and the row.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError

PathLike = Union[str, os.PathLike]
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def is_path_input(data: object) -> bool:
    """True for a path or a list/tuple of paths."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(
        isinstance(p, (str, os.PathLike)) for p in data
    )


def _files_in_directory(directory: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith((".", "_")) and name.endswith(PARQUET_SUFFIXES):
                found.append(os.path.join(root, name))
    return found


def list_parquet_files(path: PathLike | Sequence[PathLike]) -> list[str]:
    """The Parquet files behind a file, a directory (searched recursively) or a list of those."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            inside = _files_in_directory(p)
            if not inside:
                raise DataError(f"{p}: directory holds no Parquet files (*.parquet, *.parq, *.pq)")
            files.extend(inside)
        elif p.is_file():
            files.append(str(p))
        else:
            raise DataError(f"{p}: no such file or directory")
    return files


@dataclass(frozen=True)
class RowGroup:
    """One row group of one file: the unit a chunk is read from."""

    path: str
    index: int
    n_rows: int


def _check_columns(path: str, schema: pa.Schema, columns: list[str]) -> None:
    for name in columns:
        if name not in schema.names:
            raise DataError(
                f"{path}: column {name!r} not found; columns are {', '.join(schema.names)}"
            )
        field_type = schema.field(name).type
        if not (pa.types.is_integer(field_type) or pa.types.is_floating(field_type)):
            raise DataError(
                f"{path}: column {name!r} has type {field_type}, not a number; "
                "select numeric feature columns with columns=[...]"
            )


def _check_null_counts(path: str, metadata: pq.FileMetaData, columns: list[str]) -> None:
    arrow_schema = metadata.schema.to_arrow_schema()
    for rg in range(metadata.num_row_groups):
        row_group = metadata.row_group(rg)
        for j in range(row_group.num_columns):
            column = row_group.column(j)
            name = column.path_in_schema
            if name not in columns or name not in arrow_schema.names:
                continue
            stats = column.statistics
            if stats is not None and stats.has_null_count and stats.null_count > 0:
                raise DataError(
                    f"{path}: column {name!r} has {stats.null_count} null values in row group {rg}; "
                    "drop or impute them before fitting"
                )


@dataclass(frozen=True)
class ParquetDataset:
    """Validated Parquet input: its files, row groups and selected feature columns."""

    files: tuple[str, ...]
    row_groups: tuple[RowGroup, ...]
    columns: tuple[str, ...]

    @property
    def n_rows(self) -> int:
        return sum(rg.n_rows for rg in self.row_groups)

    @classmethod
    def open(cls, path: PathLike | Sequence[PathLike], columns: Sequence[str] | None = None) -> "ParquetDataset":
        files = list_parquet_files(path)
        selected = [columns] if isinstance(columns, str) else (list(columns) if columns is not None else None)
        row_groups: list[RowGroup] = []
        for f in files:
            try:
                metadata = pq.read_metadata(f)
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"{f}: not a readable Parquet file ({exc})") from None
            schema = metadata.schema.to_arrow_schema()
            if selected is None:
                selected = list(schema.names)
            if not selected:
                raise DataError(f"{f}: no columns selected")
            _check_columns(f, schema, selected)
            _check_null_counts(f, metadata, selected)
            row_groups.extend(
                RowGroup(f, i, metadata.row_group(i).num_rows)
                for i in range(metadata.num_row_groups)
                if metadata.row_group(i).num_rows > 0
            )
        if not row_groups:
            raise DataError(f"{', '.join(files)}: no rows")
        return cls(tuple(files), tuple(row_groups), tuple(selected))

    def fingerprint(self) -> dict:
        """What identifies this input: files with sizes and row counts, and the columns."""
        rows: dict[str, int] = {}
        for rg in self.row_groups:
            rows[rg.path] = rows.get(rg.path, 0) + rg.n_rows
        return {
            "files": [
                {"path": os.path.abspath(f), "bytes": os.path.getsize(f), "rows": rows.get(f, 0), "footer_sha256": _footer_hash(f)}
                for f in self.files
            ],
            "columns": list(self.columns),
            "n_rows": self.n_rows,
        }

    def to_dask(self):
        """Dask array of shape (n_rows, n_columns), float64, one chunk per row group."""
        import dask.array as da
        from dask.base import tokenize

        stamps = [(f, os.path.getsize(f), os.path.getmtime(f)) for f in self.files]
        source = RowGroupReader(self.row_groups, self.columns)
        return da.from_array(
            source,
            chunks=(tuple(rg.n_rows for rg in self.row_groups), (len(self.columns),)),
            name="parquet-" + tokenize(stamps, self.row_groups, self.columns),
            meta=np.empty((0, 0), dtype=np.float64),
            asarray=False,
            lock=False,
            fancy=False,
            inline_array=False,
        )


def _footer_hash(path: str, size: int = 65_536) -> str:
    """SHA-256 of a file's last bytes: the Parquet footer, with per-column statistics."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - size))
        return hashlib.sha256(f.read()).hexdigest()


def read_row_group(row_group: RowGroup, columns: Sequence[str]) -> np.ndarray:
    """Read one row group as float64, refusing nulls, NaN and infinities.

    Returns
    -------
    ndarray of shape (row_group.n_rows, len(columns))
    """
    table = pq.ParquetFile(row_group.path).read_row_group(row_group.index, columns=list(columns))
    out = np.empty((table.num_rows, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        column = table.column(name)
        if column.null_count:
            raise DataError(
                f"{row_group.path}: column {name!r} has {column.null_count} null values in row group "
                f"{row_group.index}; drop or impute them before fitting"
            )
        out[:, j] = column.to_numpy()
        bad = ~np.isfinite(out[:, j])
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{row_group.path}: column {name!r} has {int(bad.sum())} NaN or infinite values "
                f"in row group {row_group.index} (first: row {row} of the group, value {out[row, j]}); "
                "drop or impute them before fitting"
            )
    return out


class RowGroupReader:
    """Array-like over row groups for ``dask.array.from_array``; slices align with chunks."""

    def __init__(self, row_groups: Sequence[RowGroup], columns: Sequence[str]):
        self.row_groups = tuple(row_groups)
        self.columns = tuple(columns)
        self.starts = np.cumsum([0] + [rg.n_rows for rg in self.row_groups])
        self.shape = (int(self.starts[-1]), len(self.columns))
        self.dtype = np.dtype(np.float64)
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        start, stop, _ = rows.indices(self.shape[0])
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        i = first
        while i < len(self.row_groups) and self.starts[i] < stop:
            block = read_row_group(self.row_groups[i], self.columns)
            lo = max(start - self.starts[i], 0)
            hi = min(stop, self.starts[i + 1]) - self.starts[i]
            pieces.append(block[lo:hi])
            i += 1
        data = np.concatenate(pieces) if len(pieces) != 1 else pieces[0]
        return data[:, cols]


def read_parquet(path: PathLike | Sequence[PathLike], columns: Sequence[str] | None = None):
    """Read Parquet data as a Dask array of float64 features.

    Parameters
    ----------
    path : a file, a directory of Parquet files (searched recursively), or a list of those
    columns : feature columns; all columns when None (all must then be numeric)

    Returns
    -------
    dask.array.Array of shape (n_rows, n_columns), one chunk per non-empty row group

    Raises
    ------
    DataError
        Missing file or column, non-numeric column, nulls recorded in the metadata.
        NaN and infinities raise the same error when the chunk is computed.
    """
    return ParquetDataset.open(path, columns).to_dask()
