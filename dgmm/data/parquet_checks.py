"""Checks of Parquet input, each one line naming file, column, row group and row: the footers
(columns and their types, duplicate names, pandas index columns, null counts) and the values of a
row group as read (NaN, infinities, magnitudes beyond MAX_MAGNITUDE, 64-bit integers float64
cannot hold exactly). Pure pyarrow and NumPy; :mod:`dgmm.data.parquet` calls them.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import COLUMNS_HINT, DataError, spell
from .validation import MAX_MAGNITUDE, NanPolicy, too_large_message

if TYPE_CHECKING:
    from .sources import RowGroup, SourceFile

# float64 holds every integer of magnitude <= 2**53 exactly, and not all beyond it.
EXACT_INT_LIMIT = 2**53
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")
# Fewest rows for a column of distinct consecutive integers to be taken for a row id (not a small count).
ID_MIN_ROWS = 10


def is_number(field_type: pa.DataType) -> bool:
    return pa.types.is_integer(field_type) or pa.types.is_floating(field_type)


def is_wide_int(field_type: pa.DataType) -> bool:
    """64-bit integers: the only integer types float64 cannot always hold exactly."""
    return pa.types.is_int64(field_type) or pa.types.is_uint64(field_type)


def pandas_index_columns(metadata: pq.FileMetaData, schema: pa.Schema) -> frozenset[str]:
    """Columns pandas stored its index in: ``__index_level_N__``, or named in its ``index_columns`` metadata.

    A RangeIndex is recorded as a dict and not stored, so only string entries name columns.
    """
    names = {name for name in schema.names if _PANDAS_INDEX.fullmatch(name)}
    raw = (metadata.metadata or {}).get(b"pandas")
    try:
        index = json.loads(raw)["index_columns"] if raw else []
    except (ValueError, KeyError, TypeError):
        index = []  # metadata pandas did not write: nothing to learn from it
    if isinstance(index, list):
        names.update(name for name in index if isinstance(name, str) and name in schema.names)
    return frozenset(names)


class IdColumns:
    """Integer columns that look like row ids from the footer statistics alone: in every row group,
    ``max - min + 1`` equals its rows, and over all files ``max - min + 1`` equals all rows (e.g. 0..n-1)."""

    def __init__(self) -> None:
        self.spans: dict[str, list[int] | None] = {}  # name -> [rows, min, max]; None once it is not id-like

    def add(self, metadata: pq.FileMetaData, schema: pa.Schema, columns: list[str]) -> None:
        wanted = {name for name in columns if name in schema.names and pa.types.is_integer(schema.field(name).type)}
        for rg in range(metadata.num_row_groups) if wanted else ():
            row_group = metadata.row_group(rg)
            for j in range(row_group.num_columns):
                column = row_group.column(j)
                name, stats = column.path_in_schema, column.statistics
                if name not in wanted or row_group.num_rows == 0:
                    continue
                span = self.spans.setdefault(name, [0, stats.min, stats.max] if stats and stats.has_min_max else None)
                if span is None or not (
                    stats
                    and stats.has_min_max
                    and stats.null_count == 0
                    and stats.max - stats.min + 1 == row_group.num_rows
                ):
                    self.spans[name] = None
                    continue
                span[0], span[1], span[2] = (
                    span[0] + row_group.num_rows,
                    min(span[1], stats.min),
                    max(span[2], stats.max),
                )

    def found(self, min_rows: int) -> tuple[str, ...]:
        return tuple(
            name
            for name, span in self.spans.items()
            if span is not None and span[0] >= min_rows and span[2] - span[1] + 1 == span[0]
        )


def check_duplicates(path: str, schema: pa.Schema, wanted: list[str] | None) -> None:
    """No selected column (any column when ``wanted`` is None) appears twice in the file."""
    for name in dict.fromkeys(schema.names if wanted is None else wanted):
        count = schema.names.count(name)
        if count > 1:
            raise DataError(
                f"{path}: column {name!r} appears {count} times in the file; rename the duplicate column, "
                "e.g. with pyarrow: table.rename_columns([...]), and write the file again"
            )


def check_not_index(path: str, index: frozenset[str], selected: list[str], first: tuple[str, pa.Schema]) -> None:
    """A default feature taken from the first file is not the pandas index of a later file."""
    for name in selected:
        if name in index:
            raise DataError(
                f"{path}: column {name!r} is the pandas index in this file but a feature in {first[0]}; "
                f"name the feature columns with {spell(*COLUMNS_HINT)}"
            )


def check_columns(
    source: SourceFile, schema: pa.Schema, columns: list[str], first: tuple[str, pa.Schema] | None
) -> None:
    """Every selected column is a numeric column of the file or a numeric partition key."""
    partitions = dict(source.partitions)
    for name in columns:
        if name in schema.names:
            field_type = schema.field(name).type
            if not is_number(field_type):
                known = first is not None and name in first[1].names
                other = f" (it is {first[1].field(first[1].names.index(name)).type} in {first[0]})" if known else ""
                raise DataError(
                    f"{source.path}: column {name!r} has type {field_type}, not a number{other}; "
                    f"select numeric feature columns with {spell(*COLUMNS_HINT)}"
                )
        elif name in partitions:
            try:
                float(partitions[name])
            except ValueError:
                raise DataError(
                    f"{source.path}: partition key {name!r} has value {partitions[name]!r}, not a number; "
                    f"leave it out of {spell(*COLUMNS_HINT)}"
                ) from None
        elif first is not None and name in first[1].names:
            raise DataError(
                f"schemas disagree: column {name!r} is in {first[0]} but not in {source.path}; "
                "select columns every file has, or fix the data set"
            )
        else:
            raise DataError(f"{source.path}: column {name!r} not found; columns are {', '.join(schema.names)}")


def check_null_counts(path: str, metadata: pq.FileMetaData, columns: list[str], weight_column: str | None) -> None:
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
                raise DataError(null_message(path, name, stats.null_count, rg, name == weight_column))


def null_message(path: str, name: str, count: int, row_group: int, is_weight: bool) -> str:
    if is_weight:
        return (
            f"{path}: weight column {name!r} has {count} null values in row group {row_group}; "
            "give every row a weight, or pass nan_policy='drop' to skip those rows"
        )
    return (
        f"{path}: column {name!r} has {count} null values in row group {row_group}; "
        "drop or impute them before fitting, or pass nan_policy='drop' (--nan-policy drop) to skip those rows"
    )


def check_exact_integers(row_group: RowGroup, name: str, column: pa.ChunkedArray, is_weight: bool) -> None:
    """Refuse a 64-bit integer column holding values beyond 2**53 in magnitude, naming the first one.

    column : (n,) int64 or uint64. One min/max pass when the values fit; the row is looked for only when not.
    """
    bounds = pc.min_max(column).as_py()
    if bounds["min"] is None or (bounds["min"] >= -EXACT_INT_LIMIT and bounds["max"] <= EXACT_INT_LIMIT):
        return
    values = column.fill_null(0).to_numpy()
    bad = values > EXACT_INT_LIMIT
    if pa.types.is_int64(column.type):
        bad |= values < -EXACT_INT_LIMIT
    row = int(np.argmax(bad))
    what = "weight column" if is_weight else "column"
    fix = "" if is_weight else ", or leave it out of the feature columns (columns=[...], --columns)"
    raise DataError(
        f"{row_group.path}: {what} {name!r} ({column.type}) has {int(bad.sum())} integers beyond 2**53 in magnitude "
        f"in row group {row_group.index} (first: row {row} of the group, value {values[row]}); float64 cannot hold "
        f"them exactly: cast the column to float64 yourself if rounding is acceptable{fix}"
    )


def check_values(row_group: RowGroup, name: str, values: np.ndarray, nan_policy: NanPolicy, is_weight: bool) -> None:
    """Refuse infinities, negative weights, values beyond MAX_MAGNITUDE, and NaN unless they are dropped."""
    huge = np.isfinite(values) & (np.abs(values) > MAX_MAGNITUDE)
    if huge.any():
        row = int(np.argmax(huge))
        raise DataError(
            too_large_message(
                f"{row_group.path}: {'weight column' if is_weight else 'column'} {name!r} "
                f"in row group {row_group.index}, row {row} of the group,",
                values[row],
            )
        )
    bad = (
        np.isinf(values)
        if nan_policy == "drop" or (nan_policy == "marginalize" and not is_weight)
        else ~np.isfinite(values)
    )
    if is_weight:
        bad |= values < 0
    if not bad.any():
        return
    row = int(np.argmax(bad))
    where = f"{row_group.path}: {'weight column' if is_weight else 'column'} {name!r} has {int(bad.sum())}"
    first = f"in row group {row_group.index} (first: row {row} of the group, value {values[row]})"
    if is_weight:
        raise DataError(f"{where} negative, NaN or infinite weights {first}; weights must be finite and >= 0")
    if nan_policy in ("drop", "marginalize"):
        what = "skips only nulls and NaN" if nan_policy == "drop" else "treats only nulls and NaN as missing"
        raise DataError(
            f"{where} infinite values {first}; nan_policy={nan_policy!r} {what}: "
            "replace or remove infinities before fitting"
        )
    raise DataError(
        f"{where} NaN or infinite values {first}; drop or impute them before fitting, "
        "or pass nan_policy='drop' (--nan-policy drop) to skip rows with nulls or NaN"
    )


# Files users pass by mistake: what they are, and how pyarrow (a dependency) converts them to Parquet once
_CONVERTERS = {
    ".csv": ("CSV", "pyarrow.csv", "read_csv"),
    ".tsv": ("tab-separated text", "pyarrow.csv", "read_csv"),
    ".json": ("JSON", "pyarrow.json", "read_json"),
    ".jsonl": ("JSON lines", "pyarrow.json", "read_json"),
    ".ndjson": ("JSON lines", "pyarrow.json", "read_json"),
    ".feather": ("Feather", "pyarrow.feather", "read_table"),
    ".arrow": ("Arrow IPC", "pyarrow.feather", "read_table"),
    ".orc": ("ORC", "pyarrow.orc", "read_table"),
}


def not_parquet(path: str, exc: Exception) -> DataError:
    """The error for a file that is not Parquet: what it looks like, and the one line that converts it."""
    name = str(path).lower().removesuffix(".gz")
    suffix = next((s for s in _CONVERTERS if name.endswith(s)), None)
    if suffix is None and name.endswith((".txt", ".dat")) or suffix is None and _looks_like_text(path):
        suffix = ".csv"
    if suffix is None and _looks_unfinished(path):
        return DataError(
            f"{path}: not a complete Parquet file ({exc}): empty or cut short, perhaps still being written; run "
            "again once its writer is done, or move it out of the input"
        )
    if suffix is None:
        return DataError(
            f"{path}: not a readable Parquet file ({exc}); dgmm reads Parquet files: write the data "
            "as Parquet first (pandas: df.to_parquet(path))"
        )
    kind, module, reader = _CONVERTERS[suffix]
    stem = str(path)[: -len(suffix)] if str(path).lower().endswith(suffix) else str(path)
    options = ", parse_options=pyarrow.csv.ParseOptions(delimiter='\\t')" if suffix == ".tsv" else ""
    convert = (
        f'python -c "import pyarrow.parquet, {module}; '
        f"pyarrow.parquet.write_table({module}.{reader}('{path}'{options}), '{stem}.parquet')\""
    )
    return DataError(
        f"{path}: this is {kind}, not Parquet; dgmm reads Parquet: convert it once with {convert}, "
        f"then give {stem}.parquet"
    )


def _looks_unfinished(path: str) -> bool:
    """A local file that is empty or starts as Parquet does (``PAR1``) but has no footer: a write in progress."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in (b"", b"PAR1")
    except OSError:
        return False


def _looks_like_text(path: str) -> bool:
    """A local file whose first kilobyte is printable text with a comma, tab or semicolon in its first line."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        return False
    try:
        first = head.decode("utf-8").splitlines()[0] if head else ""
    except UnicodeDecodeError:
        return False
    return first.isprintable() and any(sep in first for sep in ",\t;")
