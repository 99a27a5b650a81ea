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
from dataclasses import dataclass
from typing import IO, Iterator, Sequence, Union

from .errors import DataError

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
    return path[len("file://"):] if path.startswith("file://") else path


def _filesystem(path: str):
    """(fsspec filesystem, path within it) for a URL."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as exc:
        raise DataError(f"{path}: cannot open this filesystem ({exc}); install its fsspec driver (e.g. s3fs)") from None


@contextlib.contextmanager
def open_input(path: str) -> Iterator[str | IO[bytes]]:
    """What pyarrow reads: the local path itself, or an open fsspec file."""
    if not is_remote(path):
        yield _local(path)
        return
    fs, inner = _filesystem(path)
    with fs.open(inner, "rb") as f:
        yield f


def file_size(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(_local(path))
    fs, inner = _filesystem(path)
    return int(fs.size(inner))


def read_tail(path: str, n_bytes: int) -> bytes:
    """The last ``n_bytes`` of a file (the Parquet footer lives there)."""
    with open_input(path) as source:
        f = open(source, "rb") if isinstance(source, str) else contextlib.nullcontext(source)
        with f as handle:
            handle.seek(max(0, file_size(path) - n_bytes))
            return handle.read()


def _wanted(name: str) -> bool:
    return not name.startswith((".", "_")) and name.endswith(PARQUET_SUFFIXES)


def _partitions(relative_dirs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(part.split("=", 1)) for part in relative_dirs if "=" in part and not part.startswith("="))


def _in_directory(root: str, remote: bool) -> list[SourceFile]:
    found = []
    if remote:
        fs, inner = _filesystem(root)
        for name in sorted(fs.find(inner)):
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


def _expand(path: str) -> list[SourceFile]:
    remote = is_remote(path)
    if any(c in path for c in _MAGIC):
        fs, inner = _filesystem(path) if remote else _filesystem(os.path.abspath(_local(path)))
        matches = sorted(fs.glob(inner))
        if not matches:
            raise DataError(f"{path}: the pattern matches no files")
        files = []
        for match in matches:
            name = fs.unstrip_protocol(match) if remote else match
            files.extend(_in_directory(name, remote) if fs.isdir(match) else [SourceFile(name)])
        return files
    if remote:
        fs, inner = _filesystem(path)
        if fs.isdir(inner):
            return _in_directory(path, True)
        if fs.isfile(inner):
            return [SourceFile(path)]
    else:
        local = _local(path)
        if os.path.isdir(local):
            return _in_directory(local, False)
        if os.path.isfile(local):
            return [SourceFile(local)]
    raise DataError(f"{path}: no such file or directory")


def find_parquet_files(path: PathLike | Sequence[PathLike]) -> list[SourceFile]:
    """The Parquet files behind a path, a directory, a glob, a URL, or a list of those, in order."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files: list[SourceFile] = []
    for p in map(os.fspath, paths):
        found = _expand(p)
        if not found:
            raise DataError(f"{p}: directory holds no Parquet files (*.parquet, *.parq, *.pq)")
        files.extend(found)
    return files
