"""Publishing outputs: written whole under a temporary name, then made visible at once — and
never over a file this run did not create, unless ``overwrite`` says so.

The check that a destination is free runs twice: when a command starts (so that a long fit
does not end in a refusal it could have given at once) and again at the very moment of
publishing, as part of the publish itself, so that a file that appeared meanwhile — a second
run writing to the same path, say — is never replaced:

* local files: a hidden temporary file beside the destination, flushed and fsync'ed, then
  ``renameat2(RENAME_NOREPLACE)`` (Linux), else ``link`` + ``unlink`` (both fail when the
  destination exists), else an ``O_EXCL`` placeholder replaced by the rename; with
  ``overwrite`` a plain ``os.replace``;
* local directories (generated data sets): staged beside the destination, then renamed with
  ``RENAME_NOREPLACE`` where Linux has it, else ``os.rename``, which never replaces a
  directory that holds anything;
* fsspec URLs (``s3://…``): a multipart upload, invisible until it completes, completed with
  S3's conditional write (``If-None-Match: *``, fsspec's mode ``"xb"``) unless ``overwrite``;
  a failure aborts the upload. Filesystems without exclusive writes check for the object
  just before writing it.

A destination that is taken is :class:`OutputExists` (a DataError: exit code 2). A failure
after the temporary file was written removes it; nothing half-written is ever visible.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Any, Iterator

from ..errors import DataError, OutputExists
from .sources import PathLike, filesystem, is_remote, remote_call

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_NOT_SUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EXDEV}


def exists_message(dest: str, during: bool = False) -> str:
    when = " (it appeared while this run was working)" if during else ""
    return f"{dest}: output exists{when}; remove it or pass --overwrite"


def check_destination(dest: PathLike, overwrite: bool, storage_options: dict | None = None) -> str:
    """Refuse a taken destination (unless ``overwrite``) or one that cannot be written; returns it as str.

    The publish checks again: this early check only spares a long run that would be refused.
    """
    dest = os.fspath(dest)
    if is_remote(dest):
        fs, inner = filesystem(dest, storage_options)
        if not overwrite and _remote_call(dest, fs.exists, inner):
            raise OutputExists(exists_message(dest))
        return dest
    path = Path(dest.removeprefix("file://"))
    if path.is_dir():
        raise DataError(f"{dest}: output is a directory; give a file name such as {path / 'out.parquet'}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExists(exists_message(dest))
    if not path.parent.is_dir():
        raise DataError(f"{path.parent}: output directory does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise DataError(f"{path.parent}: output directory is not writable")
    return dest


@contextlib.contextmanager
def published(dest: PathLike, overwrite: bool = False, storage_options: dict | None = None) -> Iterator[IO[bytes]]:
    """A binary file to write ``dest``'s content to; ``dest`` appears, whole, when the block ends without error."""
    dest = check_destination(dest, overwrite, storage_options)
    if is_remote(dest):
        with _published_remote(dest, overwrite, storage_options) as file:
            yield file
        return
    path = Path(dest.removeprefix("file://"))
    temporary = path.parent / f".{path.name[:100]}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, unlike mkstemp
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        publish_path(temporary, path, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)


@contextlib.contextmanager
def published_directory(dest: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A staging directory whose content becomes the local directory ``dest`` when the block succeeds."""
    path = Path(os.fspath(dest).removeprefix("file://"))
    if path.exists() and not overwrite:
        raise OutputExists(exists_message(str(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name[:100]}.{secrets.token_hex(6)}.tmp"
    staging.mkdir()
    try:
        yield staging
        if overwrite and path.exists():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if not _rename_noreplace(staging, path):
            try:
                os.rename(staging, path)  # refuses a directory that holds anything
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise OutputExists(exists_message(str(path), during=True)) from None
                raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync_directory(path.parent)


def publish_path(source: Path, dest: Path, overwrite: bool) -> None:
    """Move the complete file ``source`` to ``dest`` in one step; refuse a taken ``dest`` unless ``overwrite``."""
    if overwrite:
        os.replace(source, dest)
        return
    if _rename_noreplace(source, dest):
        return
    try:
        os.link(source, dest)
    except FileExistsError:
        raise OutputExists(exists_message(str(dest), during=True)) from None
    except OSError as exc:
        if exc.errno not in _NOT_SUPPORTED:
            raise
        _placeholder_then_replace(source, dest)  # a filesystem without hard links
        return
    os.unlink(source)


def _placeholder_then_replace(source: Path, dest: Path) -> None:
    """Claim ``dest`` with an empty O_EXCL file, then rename onto it: no other run can claim it meanwhile."""
    try:
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise OutputExists(exists_message(str(dest), during=True)) from None
    os.replace(source, dest)


def _rename_noreplace(source: Path, dest: Path) -> bool:
    """``renameat2(source, dest, RENAME_NOREPLACE)``; False where the system or filesystem lacks it."""
    renameat2 = _libc_renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise OutputExists(exists_message(str(dest), during=True))
    if code in _NOT_SUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(dest))


@functools.cache
def _libc_renameat2() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):  # not Linux, or a C library before glibc 2.28
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    return function


def _sync_directory(directory: Path) -> None:
    """Make a rename durable where a directory can be synced."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _published_remote(dest: str, overwrite: bool, storage_options: dict | None) -> Iterator[IO[bytes]]:
    """An upload to ``dest`` completed only when the block succeeds (exclusively unless ``overwrite``)."""
    fs, inner = filesystem(dest, storage_options)
    mode = "wb" if overwrite else "xb"
    try:
        file = _remote_call(dest, fs.open, inner, mode, autocommit=False)
    except (ValueError, NotImplementedError, TypeError):  # no exclusive or deferred writes: check, then write
        if not overwrite and _remote_call(dest, fs.exists, inner):
            raise OutputExists(exists_message(dest, during=True)) from None
        file = _remote_call(dest, fs.open, inner, "wb")
    try:
        yield file
        _remote_call(dest, file.close)
        if not getattr(file, "autocommit", True):
            _remote_call(dest, file.commit)
    except BaseException:
        with contextlib.suppress(Exception):
            file.discard()  # aborts the multipart upload: nothing becomes visible
        raise


def _remote_call(url: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """:func:`dgmm.data.sources.remote_call`, with a conditional write that found ``url`` taken as OutputExists."""
    try:
        return remote_call(url, function, *args, **kwargs)
    except FileExistsError:
        raise OutputExists(exists_message(url, during=True)) from None
