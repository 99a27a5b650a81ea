"""Finding Parquet files as users have them: files, directories, hive partitions, globs, URLs.

- a file, or a directory searched recursively for ``*.parquet|*.parq|*.pq``, skipping
  names that start with ``.`` or ``_`` (Spark's ``_SUCCESS``, ``.crc`` files, staging dirs);
- ``key=value/`` folders (hive partitioning) give every file below them partition values;
- globs (``data/2024-*/*.parquet``, ``**``) and lists of any of these;
- fsspec URLs (``file://``, ``s3://`` when s3fs is installed, ``memory://``, ...).

Local files are named by their path; files on other filesystems by their full URL.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import IO, Any, Iterator, Mapping, Sequence, Union

from ..errors import DataError, InputChanged

PathLike = Union[str, os.PathLike]
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_MAGIC = ("*", "?", "[")


@dataclass(frozen=True)
class SourceFile:
    """One Parquet file and the hive partition values of the folders above it."""

    path: str
    partitions: tuple[tuple[str, str], ...] = ()


def is_path_input(data: object) -> bool:
    """True for a path or a non-empty list/tuple of paths."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(isinstance(p, (str, os.PathLike)) for p in data)


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def filesystem(path: str, storage_options: Mapping[str, Any] | None = None):
    """(fsspec filesystem, path within it) for a URL, opened with ``storage_options``."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    except (ImportError, ValueError, TypeError) as exc:
        raise DataError(
            f"{path}: cannot open this filesystem ({' '.join(str(exc).split())[:200]}); install its "
            "fsspec driver (e.g. s3fs) and check storage_options"
        ) from None


# What a storage service answers when it refuses a request, by the name of the exception
# (botocore's, aiohttp's, fsspec's), and what to do about it.
_STORAGE_PROBLEMS = {
    "NoCredentialsError": "no credentials found; set them (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, "
    "or storage_options key/secret)",
    "PartialCredentialsError": "incomplete credentials; set both the key and the secret",
    "EndpointConnectionError": "cannot reach the storage endpoint; check endpoint_url and the network",
    "ClientConnectorError": "cannot reach the storage endpoint; check endpoint_url and the network",
    "ConnectTimeoutError": "the storage endpoint did not answer in time; check endpoint_url and the network",
    "ReadTimeoutError": "the storage endpoint did not answer in time; check endpoint_url and the network",
    "InvalidAccessKeyId": "the access key is not known to the storage service; check the credentials",
    "SignatureDoesNotMatch": "the secret key does not match the access key; check the credentials",
}


def storage_error(url: str, exc: BaseException) -> DataError | None:
    """A one-line DataError naming ``url`` for a storage failure (credentials, endpoint, access), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) if hasattr(exc, "response") else ""
        for key in (code, name):
            if key in _STORAGE_PROBLEMS:
                return DataError(f"{url}: {_STORAGE_PROBLEMS[key]}")
        if isinstance(exc, PermissionError) or code in ("AccessDenied", "403", "Forbidden"):
            return DataError(f"{url}: access denied; check the credentials and the permissions on the bucket")
        if code == "NoSuchBucket" or "NoSuchBucket" in str(exc):
            return DataError(f"{url}: no such bucket; check the URL")
        exc = exc.__cause__ or exc.__context__
    return None


def remote_call(url: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` on a remote filesystem; storage failures as one-line DataErrors naming ``url``."""
    try:
        return function(*args, **kwargs)
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError):
        raise
    except Exception as exc:
        error = storage_error(url, exc)
        if error is None:
            raise
        raise error from None


@contextlib.contextmanager
def open_input(path: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[str | IO[bytes]]:
    """What pyarrow reads: the local path itself, or an open fsspec file."""
    if not is_remote(path):
        yield _local(path)
        return
    fs, inner = filesystem(path, storage_options)
    with remote_call(path, fs.open, inner, "rb") as f:
        yield f


def file_size(path: str, storage_options: Mapping[str, Any] | None = None) -> int:
    if not is_remote(path):
        return os.path.getsize(_local(path))
    fs, inner = filesystem(path, storage_options)
    return int(remote_call(path, fs.size, inner))


def read_tail(path: str, n_bytes: int, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The last ``n_bytes`` of a file (the Parquet footer lives there)."""
    with open_input(path, storage_options) as source:
        f = open(source, "rb") if isinstance(source, str) else contextlib.nullcontext(source)
        with f as handle:
            handle.seek(max(0, file_size(path, storage_options) - n_bytes))
            return handle.read()


def _wanted(name: str) -> bool:
    return not name.startswith((".", "_")) and name.endswith(PARQUET_SUFFIXES)


def _partitions(relative_dirs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(part.split("=", 1)) for part in relative_dirs if "=" in part and not part.startswith("="))


def _in_directory(root: str, remote: bool, storage_options: Mapping[str, Any] | None = None) -> list[SourceFile]:
    found = []
    if remote:
        fs, inner = filesystem(root, storage_options)
        for name in sorted(remote_call(root, fs.find, inner)):
            parts = os.path.relpath(name, inner).split("/")
            if all(not p.startswith((".", "_")) for p in parts[:-1]) and _wanted(parts[-1]):
                found.append(SourceFile(fs.unstrip_protocol(name), _partitions(parts[:-1])))
        return found
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        relative = os.path.relpath(folder, root)
        parts = [] if relative == "." else relative.split(os.sep)
        found.extend(SourceFile(os.path.join(folder, n), _partitions(parts)) for n in sorted(files) if _wanted(n))
    return found


def _expand(path: str, storage_options: Mapping[str, Any] | None = None) -> list[SourceFile]:
    remote = is_remote(path)
    if any(c in path for c in _MAGIC):
        fs, inner = filesystem(path, storage_options) if remote else filesystem(os.path.abspath(_local(path)))
        matches = sorted(remote_call(path, fs.glob, inner))
        if not matches:
            raise DataError(f"{path}: the pattern matches no files")
        files = []
        for match in matches:
            name = fs.unstrip_protocol(match) if remote else match
            is_dir = remote_call(path, fs.isdir, match)
            files.extend(_in_directory(name, remote, storage_options) if is_dir else [SourceFile(name)])
        return files
    if remote:
        fs, inner = filesystem(path, storage_options)
        if remote_call(path, fs.isdir, inner):
            return _in_directory(path, True, storage_options)
        if remote_call(path, fs.isfile, inner):
            return [SourceFile(path)]
    else:
        local = _local(path)
        if os.path.isdir(local):
            return _in_directory(local, False)
        if os.path.isfile(local):
            return [SourceFile(local)]
    raise DataError(f"{path}: no such file or directory")


def find_parquet_files(
    path: PathLike | Sequence[PathLike], storage_options: Mapping[str, Any] | None = None
) -> list[SourceFile]:
    """The Parquet files behind a path, a directory, a glob, a URL, or a list of those, in order."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files: list[SourceFile] = []
    for p in map(os.fspath, paths):
        found = _expand(p, storage_options)
        if not found:
            raise DataError(f"{p}: directory holds no Parquet files (*.parquet, *.parq, *.pq)")
        files.extend(found)
    return files


@dataclass(frozen=True)
class FileVersion:
    """What tells one version of a file's bytes from another, as its filesystem reports it.

    Locally the size, the inode (a file renamed over the old one is another file) and the modification time in
    nanoseconds; on an object store the size and whichever of the ETag, version id and modification time it
    gives (S3, GCS and Azure give an ETag that changes with every write). The footer's shape is compared
    on every read too, so even a rewrite that kept the size and the time is seen when its layout differs.
    """

    size: int
    stamp: tuple[tuple[str, str], ...]
    footer: tuple[int, ...] = ()  # the Parquet footer's size, rows, row groups and columns, when it was read

    def change_from(self, old: "FileVersion") -> str | None:
        """What changed since ``old``, in words; None when nothing did."""
        if self.size != old.size:
            return f"{old.size} bytes when the run started, {self.size} now"
        ours, theirs = dict(self.stamp), dict(old.stamp)
        for key in ("inode", "etag", "version_id", "modified"):
            if key in theirs and ours.get(key) != theirs[key]:
                what = {"inode": "replaced by another file", "modified": "modified"}.get(key, f"a new {key}")
                return f"{what} ({key} {theirs[key]} when the run started, {ours.get(key)} now)"
        return None


_REMOTE_STAMPS = {"ETag": "etag", "etag": "etag", "VersionId": "version_id", "version_id": "version_id",
                  "generation": "version_id", "LastModified": "modified", "mtime": "modified",
                  "last_modified": "modified", "updated": "modified"}  # fmt: skip


def file_version(path: str, storage_options: Mapping[str, Any] | None = None) -> FileVersion:
    """The version of ``path`` now: a removed file is :class:`InputChanged` (it was found when the run started)."""
    try:
        if not is_remote(path):
            info = os.stat(_local(path))
            return FileVersion(info.st_size, (("inode", str(info.st_ino)), ("modified", str(info.st_mtime_ns))))
        fs, inner = filesystem(path, storage_options)
        fs.invalidate_cache(inner)
        details = remote_call(path, fs.info, inner)
    except FileNotFoundError:
        raise InputChanged(f"{path}: removed while in use; {RERUN}") from None
    stamp = {_REMOTE_STAMPS[k]: str(v) for k, v in details.items() if k in _REMOTE_STAMPS and v is not None}
    return FileVersion(int(details.get("size") or 0), tuple(sorted(stamp.items())))


RERUN = (
    "the run reads its files as they were when it started: run again once the writer is done (a fit with a "
    "checkpoint can --resume)"
)


def check_version(path: str, version: "FileVersion | None", storage_options: Mapping[str, Any] | None = None) -> None:
    """Refuse (:class:`InputChanged`, one line) a file whose version is not ``version`` any more."""
    if version is None:
        return
    change = file_version(path, storage_options).change_from(version)
    if change is not None:
        raise InputChanged(f"{path}: changed while in use: {change}; {RERUN}")


@dataclass(frozen=True)
class RowGroup:
    """One row group of one file: the unit a chunk is read from; ``version`` is the file's when the run started
    (:class:`FileVersion`), checked around every read."""

    path: str
    index: int
    n_rows: int
    partitions: tuple[tuple[str, str], ...] = ()
    # fsspec options of a URL path (credentials: kept out of reprs and comparisons)
    storage_options: Mapping[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)
    version: FileVersion | None = field(default=None, compare=False, hash=False, repr=False)
