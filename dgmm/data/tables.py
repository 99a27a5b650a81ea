"""Delta Lake and Apache Iceberg tables: the Parquet files of one snapshot, as the table's own reader lists them.

A table directory holds files the table no longer contains (overwritten, deleted, compacted away); read as
loose Parquet it gives rows that are not the table's. So a directory with a ``_delta_log/`` (Delta Lake) or a
``metadata/`` of ``*.metadata.json`` files (Iceberg, as a SQL, Hadoop or REST catalog writes it) is read
through its format's library only — ``deltalake`` (delta-rs) or ``pyiceberg``, the ``delta`` and ``iceberg``
extras — and refused in one line without it. The snapshot is the current one, or ``version`` (a Delta
version, an Iceberg snapshot id) or ``as_of`` (the snapshot current at that time). Features that change which
rows a file contributes, which a reader of whole Parquet files cannot honour (Delta deletion vectors and
column mapping, Iceberg positional and equality deletes), are refused in one line.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import unquote

from ..errors import DataError
from .sources import SourceFile, filesystem, is_remote, remote_call

_ICEBERG_METADATA = re.compile(r"^(?:v)?(\d+)(?:-[^/]*)?\.metadata\.json$")


@dataclass(frozen=True)
class TableSnapshot:
    """The files of one snapshot of a table, and what identifies the snapshot (recorded in model files and
    checkpoints): ``{"format": "delta", "version": 3}`` or ``{"format": "iceberg", "snapshot_id": ...}``."""

    files: tuple[SourceFile, ...]
    identity: dict


def table_format(path: str, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """ "delta", "iceberg" or None (not a table directory) for a path given as input."""
    if any(c in path for c in "*?["):
        return None
    if is_remote(path):
        fs, inner = filesystem(path, storage_options)
        exists, listing = (lambda p: remote_call(path, fs.isdir, p)), (lambda p: remote_call(path, fs.ls, p, False))
        join = lambda *parts: "/".join(p.rstrip("/") for p in parts)  # noqa: E731
    else:
        inner = path.removeprefix("file://")
        exists, listing, join = os.path.isdir, os.listdir, os.path.join
    if not exists(inner):
        return None
    if exists(join(inner, "_delta_log")):
        return "delta"
    if exists(join(inner, "metadata")):
        names = [os.path.basename(str(n)) for n in listing(join(inner, "metadata"))]
        if "version-hint.text" in names or any(_ICEBERG_METADATA.match(n) for n in names):
            return "iceberg"
    return None


def table_snapshot(
    path: str,
    kind: str,
    storage_options: Mapping[str, Any] | None = None,
    version: int | None = None,
    as_of: str | dt.datetime | None = None,
) -> TableSnapshot:
    """The live Parquet files of a table's snapshot (``kind`` from :func:`table_format`)."""
    if version is not None and as_of is not None:
        raise DataError(f"{path}: give a version or a time (as_of), not both")
    when = _instant(as_of) if as_of is not None else None
    return (_delta if kind == "delta" else _iceberg)(path, storage_options, version, when)


def _instant(value: str | dt.datetime) -> dt.datetime:
    """A time as an aware datetime (UTC when no zone is given): ISO 8601 text or a datetime."""
    try:
        when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise DataError(f"as_of={value!r} is not a time; give ISO 8601, e.g. 2026-12-05T23:00:00Z") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def _missing_extra(path: str, what: str, extra: str, module: str) -> DataError:
    return DataError(
        f"{path}: {'an' if what[0] in 'AEIOU' else 'a'} {what} table; reading it needs {module} (pip install 'dgmm[{extra}]'). It is never read as "
        "loose Parquet files: those include files the table has removed"
    )


def _delta(path: str, storage_options: Any, version: int | None, when: dt.datetime | None) -> TableSnapshot:
    try:
        import pyarrow as pa
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError
    except ImportError:
        raise _missing_extra(path, "Delta Lake", "delta", "deltalake") from None
    try:
        table = DeltaTable(path, version=version, storage_options=_delta_options(storage_options))
        if when is not None:
            table.load_as_version(when)
    except (DeltaError, ValueError, OSError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: cannot read this Delta table at the version asked for ({detail})") from None
    protocol, configuration = table.protocol(), table.metadata().configuration
    if configuration.get("delta.columnMapping.mode", "none") != "none":
        raise DataError(f"{path}: the table uses column mapping, whose file columns are not the table's; "
                        "dgmm cannot read it: rewrite the table without column mapping")  # fmt: skip
    if "deletionVectors" in (protocol.reader_features or []) and pa.table(table.deletion_vectors()).num_rows:
        raise DataError(
            f"{path}: version {table.version()} has deletion vectors (rows deleted inside files), which dgmm "
            "cannot honour; purge them first (OPTIMIZE ... / REORG TABLE ... APPLY (PURGE))"
        )
    # an add action's path is relative to the table (percent-encoded once more than the name on storage) or,
    # in a shallow clone, a URI of its own; local tables' files are named by their paths, as everywhere in dgmm
    root = table.table_uri.rstrip("/") + "/"
    root = root.removeprefix("file://") if root.startswith("file:///") else root
    files = []
    for action in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        path = unquote(action["path"])
        files.append(SourceFile(path if "://" in path else root + path, _partitions(action)))
    return TableSnapshot(tuple(files), {"format": "delta", "version": int(table.version())})


def _delta_options(storage_options: Mapping[str, Any] | None) -> dict[str, str] | None:
    """fsspec's S3 options (s3fs's names) as delta-rs's object store takes them."""
    if not storage_options:
        return None
    names = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN",
             "endpoint_url": "AWS_ENDPOINT_URL"}  # fmt: skip
    options = {names.get(k, k): str(v) for k, v in storage_options.items() if not isinstance(v, Mapping)}
    region = (storage_options.get("client_kwargs") or {}).get("region_name")
    options.setdefault("AWS_REGION", str(region or "us-east-1"))
    if str(storage_options.get("endpoint_url", "")).startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


def _partitions(action: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A Delta add action's partition values as hive keys (``partition.<key>`` columns when flattened)."""
    return tuple(
        (name.removeprefix("partition."), str(value))
        for name, value in action.items()
        if name.startswith("partition.") and value is not None
    )


def _iceberg(path: str, storage_options: Any, version: int | None, when: dt.datetime | None) -> TableSnapshot:
    try:
        from pyiceberg.table import StaticTable
    except ImportError:
        raise _missing_extra(path, "Apache Iceberg", "iceberg", "pyiceberg") from None
    location = _iceberg_metadata(path, storage_options)
    options = {_ICEBERG_OPTIONS.get(k, k): str(v) for k, v in (storage_options or {}).items()}
    table = StaticTable.from_metadata(location, properties=options)
    if when is not None:
        snapshot = table.snapshot_as_of_timestamp(int(when.timestamp() * 1000))
        if snapshot is None:
            raise DataError(f"{path}: the table has no snapshot at or before {when.isoformat()}")
        version = snapshot.snapshot_id
    if version is not None and table.snapshot_by_id(int(version)) is None:
        known = ", ".join(str(s.snapshot_id) for s in table.snapshots()[-5:])
        raise DataError(f"{path}: no snapshot {version}; the latest are {known}")
    current = table.current_snapshot() if version is None else table.snapshot_by_id(int(version))
    if current is None:
        raise DataError(f"{path}: the table has no snapshot yet (no rows were ever written)")
    files = []
    for task in table.scan(snapshot_id=current.snapshot_id).plan_files():
        if task.delete_files:
            raise DataError(
                f"{path}: snapshot {current.snapshot_id} has delete files ({task.file.file_path} has "
                f"{len(task.delete_files)}), which dgmm cannot honour; rewrite the data files first "
                "(CALL system.rewrite_data_files with delete-file-threshold=1)"
            )
        if str(task.file.file_format).split(".")[-1].upper() != "PARQUET":
            raise DataError(f"{path}: {task.file.file_path} is {task.file.file_format}, not Parquet")
        files.append(SourceFile(task.file.file_path))
    return TableSnapshot(tuple(files), {"format": "iceberg", "snapshot_id": int(current.snapshot_id)})


# fsspec's S3 options under pyiceberg's names (its FileIO reads the manifests)
_ICEBERG_OPTIONS = {"key": "s3.access-key-id", "secret": "s3.secret-access-key", "endpoint_url": "s3.endpoint"}


def _iceberg_metadata(path: str, storage_options: Any) -> str:
    """The table's current metadata file: the one ``version-hint.text`` names, else the highest numbered."""
    if is_remote(path):
        fs, inner = filesystem(path, storage_options)
        folder = inner.rstrip("/") + "/metadata"
        names = [os.path.basename(n) for n in remote_call(path, fs.ls, folder, False)]
        read = lambda name: remote_call(path, fs.cat, f"{folder}/{name}").decode()  # noqa: E731
        prefix = path.rstrip("/") + "/metadata/"
    else:
        folder = os.path.join(path.removeprefix("file://"), "metadata")
        names = os.listdir(folder)
        read = lambda name: open(os.path.join(folder, name)).read()  # noqa: E731
        prefix = os.path.abspath(folder) + os.sep
    if "version-hint.text" in names:
        hinted = f"v{read('version-hint.text').strip()}.metadata.json"
        if hinted in names:
            return prefix + hinted
    numbered = [(int(m.group(1)), n) for n in names if (m := _ICEBERG_METADATA.match(n))]
    if not numbered:
        raise DataError(f"{path}: an Iceberg metadata folder without metadata files")
    return prefix + max(numbered)[1]
