"""Parquet -> Dask array of float64, one chunk per row group, sizes from metadata.

Only file footers are read when the array is built: the row counts, the schema
and the null counts come from the Parquet metadata. The data is read inside the
tasks (:mod:`dgmm.data.row_groups`), where NaN and infinities are caught and reported
with the file, the column and the row.

Files written by other tools are read as written or refused: pandas index columns are
never default features, duplicate column names are refused, and 64-bit integers that
float64 cannot hold exactly and values beyond MAX_MAGNITUDE (1e100) are refused (from the
footer statistics when present, else when the row group is read): see :mod:`dgmm.data.parquet_checks`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import COLUMNS_HINT, DataError, spell
from .parquet_checks import (
    EXACT_INT_LIMIT,
    ID_MIN_ROWS,
    IdColumns,
    check_columns,
    check_duplicates,
    check_exact_integers,
    check_not_index,
    check_null_counts,
    check_values,
    is_wide_int,
    not_parquet,  # fmt: skip
    pandas_index_columns,
)
from .row_groups import RowGroupReader, footer_shape, read_row_group, read_table
from .sources import (
    FileVersion,
    PathLike,
    RowGroup,
    SourceFile,
    check_version,
    file_size,
    file_version,
    find_parquet_files,
    is_path_input,
    open_input,
    read_tail,
    storage_error,
)
from .tables import TableSnapshot, table_format, table_snapshot
from .validation import MAX_MAGNITUDE, NanPolicy, check_nan_policy, is_weighted

__all__ = [
    "ParquetDataset",
    "RowGroup",
    "RowGroupReader",
    "is_path_input",
    "read_parquet",
    "read_row_group",
    "read_table",
]


def _snapshot(path: Any, storage_options: Any, version: Any, as_of: Any) -> TableSnapshot:
    """The files behind ``path``: a table's snapshot (``version``, ``as_of``), or the Parquet files found there."""
    single = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    kind = table_format(single, storage_options) if single is not None else None
    if kind is not None:
        return table_snapshot(single, kind, storage_options, version, as_of)
    if single is None:
        for element in map(os.fspath, path):
            if table_format(element, storage_options) is not None:
                raise DataError(f"{element}: a table directory; give a table alone, not in a list of paths")
    if version is not None or as_of is not None:
        raise DataError(
            f"{single or 'these paths'}: version and as_of apply to Delta Lake and Iceberg tables; this input is "
            "Parquet files, read as they are"
        )
    return TableSnapshot(tuple(find_parquet_files(path, storage_options)), {})


def _check_value_ranges(
    source: SourceFile,
    metadata: pq.FileMetaData,
    schema: pa.Schema,
    columns: list[str],
    weight_column: str | None,
    storage_options: Mapping[str, Any] | None = None,
    version: FileVersion | None = None,
) -> None:
    """Refuse, from the footer statistics, what reading would refuse later on a worker: 64-bit integers
    float64 cannot hold exactly, and values beyond MAX_MAGNITUDE.

    Only when the statistics show such a value is that column of that row group read, to name the first row.
    """
    wanted = {name for name in columns if name in schema.names}
    for rg in range(metadata.num_row_groups) if wanted else ():
        row_group = metadata.row_group(rg)
        for j in range(row_group.num_columns):
            column = row_group.column(j)
            name, stats = column.path_in_schema, column.statistics
            if name not in wanted or stats is None or not stats.has_min_max:
                continue
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (stats.min, stats.max)):
                continue  # e.g. float16 statistics come as bytes: checked on read
            field_type = schema.field(name).type
            limit = EXACT_INT_LIMIT if is_wide_int(field_type) else MAX_MAGNITUDE
            if not (-limit <= stats.min and stats.max <= limit):  # NaN statistics say nothing: checked on read
                if isinstance(stats.min, float) and not (np.isfinite(stats.min) and np.isfinite(stats.max)):
                    continue
                group = RowGroup(source.path, rg, row_group.num_rows, source.partitions, storage_options, version)
                if is_wide_int(field_type):
                    check_exact_integers(group, name, read_table(group, [name]).column(name), name == weight_column)
                else:
                    check_values(
                        group, name, read_table(group, [name]).column(name).to_numpy(), "drop", name == weight_column
                    )


@dataclass(frozen=True)
class ParquetDataset:
    """Validated Parquet input: its files, row groups, selected feature columns and how rows are weighted.

    With a ``weight_column`` or ``nan_policy="drop"`` the data is *weighted*: chunks carry
    one more column, the row weight (see :func:`read_row_group`).
    """

    files: tuple[str, ...]
    row_groups: tuple[RowGroup, ...]
    columns: tuple[str, ...]

    @property
    def n_rows(self) -> int:
        return sum(rg.n_rows for rg in self.row_groups)

    chunk_rows: int | None = None
    weight_column: str | None = None
    nan_policy: NanPolicy = "raise"
    storage_options: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    id_like_columns: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # the files as found (with their hive keys) and, for a Delta or Iceberg table, its snapshot's identity
    snapshot: TableSnapshot | None = field(default=None, compare=False, repr=False)

    @property
    def table(self) -> dict | None:
        """``{"format": "delta", "version": ...}`` or ``{"format": "iceberg", "snapshot_id": ...}``; None for files."""
        return None if self.snapshot is None or not self.snapshot.identity else dict(self.snapshot.identity)

    def reopened(self, weight_column: str | None, nan_policy: NanPolicy) -> "ParquetDataset":
        """The same files (the same table snapshot) and columns, rows weighted another way."""
        return ParquetDataset.open(
            list(self.files), list(self.columns), self.chunk_rows, weight_column, nan_policy, self.storage_options,
            snapshot=self.snapshot,
        )  # fmt: skip

    @property
    def float64_bytes(self) -> int:
        """Bytes of the rows as the float64 array the passes read (features and a weight column, if any)."""
        return 8 * self.n_rows * (len(self.columns) + self.weighted)

    @property
    def weighted(self) -> bool:
        """Whether chunks carry a last column of row weights."""
        return is_weighted(self.weight_column is not None, self.nan_policy)

    @classmethod
    def open(
        cls,
        path: PathLike | Sequence[PathLike],
        columns: Sequence[str] | None = None,
        chunk_rows: int | None = None,
        weight_column: str | None = None,
        nan_policy: NanPolicy = "raise",
        storage_options: Mapping[str, Any] | None = None,
        exclude_columns: Sequence[str] | None = None,
        *,
        version: int | None = None,
        as_of: Any = None,
        snapshot: TableSnapshot | None = None,
    ) -> "ParquetDataset":
        """Find the files, read their footers and check the selected columns.

        Without ``columns`` every column of the first file is a feature (but pandas index columns and
        the weight column), except those named in ``exclude_columns`` (ids, timestamps, labels...).

        ``chunk_rows`` splits row groups larger than it into several chunks (each
        chunk task still decodes its whole row group, then keeps its slice).
        ``weight_column`` names a numeric column of per-row weights (never a feature);
        ``nan_policy="drop"`` skips rows with nulls or NaN instead of refusing them.
        ``storage_options`` are fsspec's options for URL paths (credentials, ``endpoint_url``),
        used for every read, on the workers too.

        A Delta Lake or Iceberg table directory is read as its table: the files of its current snapshot, or of
        ``version`` (a Delta version, an Iceberg snapshot id) or ``as_of`` (a time), through ``deltalake`` or
        ``pyiceberg`` (:mod:`dgmm.data.tables`); ``snapshot`` reuses the files another dataset found.
        """
        if snapshot is None:
            snapshot = _snapshot(path, storage_options, version, as_of)
        sources = list(snapshot.files)
        selected = [columns] if isinstance(columns, str) else (list(columns) if columns is not None else None)
        if chunk_rows is not None and chunk_rows < 1:
            raise DataError(f"chunk_rows={chunk_rows} is invalid; expected an int >= 1")
        check_nan_policy(nan_policy)
        excluded = [exclude_columns] if isinstance(exclude_columns, str) else list(exclude_columns or ())
        if excluded and selected is not None:
            raise DataError("give columns or exclude_columns, not both: columns already names every feature")
        if weight_column is not None and selected is not None and weight_column in selected:
            raise DataError(
                f"weight column {weight_column!r} is also a feature column; leave it out of {spell(*COLUMNS_HINT)}"
            )
        row_groups: list[RowGroup] = []
        first: tuple[str, pa.Schema] | None = None
        ids = IdColumns()
        for source in sources:
            try:
                version = file_version(source.path, storage_options)  # the run's snapshot of the file
                with open_input(source.path, storage_options) as handle:
                    metadata = pq.read_metadata(handle)
            except (OSError, pa.ArrowException) as exc:
                raise storage_error(source.path, exc) or not_parquet(source.path, exc) from None
            check_version(source.path, version, storage_options)  # not written to while its footer was read
            version = replace(version, footer=footer_shape(metadata))
            schema = metadata.schema.to_arrow_schema()
            index = pandas_index_columns(metadata, schema)
            if selected is None:
                keys = dict(source.partitions)  # hive keys are no features unless named: excluding one is fine
                missing = [name for name in excluded if name not in schema.names and name not in keys]
                if missing:
                    raise DataError(
                        f"{source.path}: column {missing[0]!r} (from exclude_columns) not found; columns "
                        f"are {', '.join(schema.names)}"
                    )
                selected = [
                    name
                    for name in schema.names
                    if name != weight_column and name not in index and name not in excluded
                ]
            if not selected:
                raise DataError(f"{source.path}: no columns selected")
            wanted = selected + ([weight_column] if weight_column else [])
            check_duplicates(source.path, schema, None if columns is None else wanted)
            check_columns(source, schema, wanted, first)
            if columns is None and first is not None:
                check_not_index(source.path, index, selected, first)
            if nan_policy == "raise":
                check_null_counts(source.path, metadata, wanted, weight_column)
            _check_value_ranges(source, metadata, schema, wanted, weight_column, storage_options, version)
            ids.add(metadata, schema, selected)
            first = first or (source.path, schema)
            row_groups.extend(
                RowGroup(source.path, i, metadata.row_group(i).num_rows, source.partitions, storage_options, version)
                for i in range(metadata.num_row_groups)
                if metadata.row_group(i).num_rows > 0
            )
        if not row_groups:
            raise DataError(f"{', '.join(s.path for s in sources)}: no rows")
        return cls(
            tuple(s.path for s in sources),
            tuple(row_groups),
            tuple(selected),
            chunk_rows,
            weight_column,
            nan_policy,
            storage_options,
            ids.found(ID_MIN_ROWS),
            snapshot,
        )

    @property
    def chunks(self) -> tuple[int, ...]:
        """Rows per chunk: one chunk per row group, split at ``chunk_rows``."""
        sizes = []
        for rg in self.row_groups:
            step = self.chunk_rows or rg.n_rows
            sizes.extend(min(step, rg.n_rows - start) for start in range(0, rg.n_rows, step))
        return tuple(sizes)

    def fingerprint(self) -> dict:
        """What identifies this input: files with sizes, row counts and footer hashes, and the columns."""
        return copy.deepcopy(self._fingerprint)

    @functools.cached_property
    def _fingerprint(self) -> dict:
        # Reads each file's tail once per dataset; to_dask, checkpoints and model files share it.
        rows: dict[str, int] = {}
        for rg in self.row_groups:
            rows[rg.path] = rows.get(rg.path, 0) + rg.n_rows
        return {
            "files": [
                {
                    "path": f if "://" in f else os.path.abspath(f),
                    "bytes": file_size(f, self.storage_options),
                    "rows": rows.get(f, 0),
                    "footer_sha256": hashlib.sha256(read_tail(f, 65_536, self.storage_options)).hexdigest(),
                }
                for f in self.files
            ],
            "columns": list(self.columns),
            "n_rows": self.n_rows,
            **({"weight_column": self.weight_column} if self.weight_column else {}),
            **({"table": self.table} if self.table else {}),
        }

    def summary(self) -> dict:
        """What model files record of their input: counts, columns and one digest of every file's fingerprint."""
        fingerprint = self._fingerprint
        files = fingerprint["files"]
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        return {
            "n_files": len(files),
            "first_file": files[0]["path"],
            "files_sha256": digest,
            "n_rows": fingerprint["n_rows"],
            "columns": list(fingerprint["columns"]),
            **({"weight_column": self.weight_column} if self.weight_column else {}),
            **({"table": self.table} if self.table else {}),
        }

    def to_dask(self, device: Any = None, cache_bytes: int | None = 0):
        """Dask array of shape (n_rows, n_columns [+ 1 weight column]), float64, one chunk per row group; on a
        ``device`` (:class:`~dgmm.data.devices.DeviceTarget`), each process caching ``cache_bytes`` there."""
        import dask.array as da
        from dask.base import tokenize

        stamps = self._fingerprint
        source = RowGroupReader(self.row_groups, self.columns, self.weight_column, self.nan_policy)
        token = tokenize(stamps, self.row_groups, self.columns, self.chunks, self.weight_column, self.nan_policy)
        name, meta = "parquet-" + token, np.empty((0, 0), dtype=np.float64)
        if device is not None:
            from .devices import DeviceRowGroupReader

            source = DeviceRowGroupReader(source, device, token, cache_bytes)
            name, meta = f"parquet-{device.library}-" + tokenize(token, device, cache_bytes), device.meta()
        return da.from_array(
            source,
            chunks=(self.chunks, (source.shape[1],)),
            name=name,
            meta=meta,
            asarray=False,
            lock=False,
            fancy=False,
            inline_array=False,
        )


def read_parquet(
    path: PathLike | Sequence[PathLike],
    columns: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    exclude_columns: Sequence[str] | None = None,
):
    """Read Parquet data as a Dask array of float64 features.

    Parameters
    ----------
    path : a file, a directory (searched recursively; ``key=value`` folders are hive
        partitions), a glob, an fsspec URL, or a list of those
    columns : feature columns (partition keys only when named here); all file columns when None
    chunk_rows : split row groups larger than this into several chunks
    storage_options : fsspec options for URL paths (credentials, ``endpoint_url``, ...)
    exclude_columns : with ``columns`` None, the columns that are not features (ids, labels, ...)

    Returns
    -------
    dask.array.Array of shape (n_rows, n_columns), one chunk per non-empty row group (or per
    ``chunk_rows`` slice of it)

    Raises
    ------
    DataError
        Missing file or column, non-numeric column, nulls recorded in the metadata.
        NaN and infinities raise the same error when the chunk is computed.
    """
    return ParquetDataset.open(
        path, columns, chunk_rows, storage_options=storage_options, exclude_columns=exclude_columns
    ).to_dask()
