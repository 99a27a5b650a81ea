"""Bounded reading of dgmm's ``.npz`` archives (model files, checkpoints); pure numpy, zipfile, json, hashlib.

An archive holds ``metadata.npy``, UTF-8 JSON as a 1-D uint8 array, and one ``<name>.npy`` per array.
:func:`read_archive` never decompresses or allocates anything before knowing that its size is allowed:

1. the zip directory: at most ``MAX_MEMBERS`` entries in at most ``MAX_DIRECTORY_BYTES``, no duplicate names;
2. ``metadata.npy``, streamed, at most ``max_metadata_bytes`` of JSON;
3. the caller's :class:`Spec` of every array, decided from the metadata; any other member is refused;
4. per member: stored or deflated expanding at most ``MAX_COMPRESSION_RATIO``-fold, a ``.npy`` header of
   at most ``MAX_HEADER_BYTES`` whose dtype and shape match the spec, and ``ZipInfo.file_size`` equal to
   header plus data;
5. the data, read in blocks of ``BLOCK_BYTES`` into an array preallocated with the checked shape;
6. ``metadata["sha256"]``, the :func:`checksum` of the bytes actually read.

Any problem is an :class:`Invalid` (message without the path) or an exception of ``zipfile``, ``zlib`` or
numpy's header parser, which the caller turns into its own error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import zipfile
from typing import IO, Any, Callable, Mapping, NamedTuple, Sequence, Union

import numpy as np

MAX_MEMBERS = 64  # entries of the zip directory; dgmm writes at most 12
MAX_DIRECTORY_BYTES = 1 << 20  # size of the zip directory
MAX_HEADER_BYTES = 12 + 10_000  # magic, version, length and numpy's own bound on the header text
MAX_COMPRESSION_RATIO = 1000  # uncompressed / compressed size of a deflated member; np.savez stores (ratio 1)
MAX_METADATA_BYTES = 16 << 20  # default bound on the metadata JSON
BLOCK_BYTES = 1 << 20  # data is read (and hashed) in blocks of this size


class Invalid(Exception):
    """A problem with an archive's content; the message does not name the path."""


class Spec(NamedTuple):
    """The dtype and the shapes an array may have.

    ``dtype`` must match exactly (``dtype.str``), except that a unicode dtype is the widest allowed:
    ``<U256`` allows ``<U1`` to ``<U256``. ``context`` ends the message of a wrong shape, e.g.
    ``"for covariance_type 'diag' with n_components=3, n_features=4"``.
    """

    dtype: np.dtype
    shapes: tuple[tuple[int, ...], ...]
    context: str = ""


# A spec, or (dtype, shape): exactly that dtype and that one shape.
SpecLike = Union[Spec, tuple[Any, tuple[int, ...]]]
Expected = Union[Mapping[str, SpecLike], Callable[[dict[str, Any]], Mapping[str, SpecLike]]]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _array_line(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    return f"{name}:{dtype.str}:{shape}\n".encode()


def checksum(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], names: Sequence[str]) -> str:
    """SHA-256 (hex) of the arrays named in ``names`` and of ``metadata`` minus its ``sha256``.

    Each array adds ``name:dtype.str:shape`` and a newline, then its C-order bytes, in the order of
    ``names``; the metadata adds its canonical JSON.
    """
    digest = hashlib.sha256()
    for name in names:
        array = np.asarray(arrays[name])
        digest.update(_array_line(name, array.dtype, array.shape))
        digest.update(array.tobytes(order="C"))
    return _finish(digest, metadata)


def _finish(digest: Any, metadata: Mapping[str, Any]) -> str:
    digest.update(canonical_json({k: v for k, v in metadata.items() if k != "sha256"}).encode())
    return digest.hexdigest()


def check_spec(name: str, dtype: np.dtype, shape: tuple[int, ...], spec: Spec, fortran_order: bool = False) -> None:
    """Refuse an array whose dtype, order or shape the spec does not allow (its header, or an array in memory)."""
    if dtype.hasobject:
        raise Invalid(f"array {name!r} holds Python objects (pickled data), which dgmm never loads")
    if not _dtype_allowed(dtype, spec.dtype):
        raise Invalid(f"array {name!r} has dtype {dtype}, expected {_describe(spec.dtype)}")
    if fortran_order and len(shape) > 1:
        raise Invalid(f"array {name!r} is stored in Fortran order, expected C order; the file is not written by dgmm")
    if shape not in spec.shapes:
        expected = " or ".join(str(s) for s in spec.shapes)
        context = f" {spec.context}" if spec.context else ""
        raise Invalid(f"array {name!r} has shape {shape}, expected {expected}{context}; "
                      "the file is corrupt or not written by dgmm")  # fmt: skip


def _dtype_allowed(dtype: np.dtype, allowed: np.dtype) -> bool:
    if allowed.kind == "U":
        return dtype.str[:2] == allowed.str[:2] and 0 < dtype.itemsize <= allowed.itemsize
    return dtype.str == allowed.str


def _describe(dtype: np.dtype) -> str:
    if dtype.kind == "U":
        return f"unicode ({dtype.str[0]}U) of at most {dtype.itemsize // 4} characters"
    return str(dtype) if dtype.isnative or dtype.itemsize == 1 else dtype.str


def _as_spec(value: SpecLike) -> Spec:
    if isinstance(value, Spec):
        return Spec(np.dtype(value.dtype), tuple(tuple(s) for s in value.shapes), value.context)
    dtype, shape = value
    return Spec(np.dtype(dtype), (tuple(shape),))


def read_archive(path: str | IO[bytes], expected: Expected, *, max_metadata_bytes: int = MAX_METADATA_BYTES,
                 what: str = "dgmm file") -> tuple[dict[str, Any], dict[str, np.ndarray]]:  # fmt: skip
    """The metadata and the arrays of the archive at ``path`` (or in a seekable binary file), read within bounds.

    Parameters
    ----------
    expected : ``{name: Spec or (dtype, shape)}``, or a function of the decoded metadata returning it
        (raising :class:`Invalid` for metadata it refuses). Every array named must be present; the
        arrays are hashed in this order.
    max_metadata_bytes : the most bytes of metadata JSON read
    what : the kind of file, in messages ("dgmm model file")

    Returns
    -------
    metadata : dict, the decoded JSON object (``sha256`` included)
    arrays : ``{name: ndarray}`` in the order of ``expected``, each of a shape and dtype it allows
    """
    with open(path, "rb") if isinstance(path, str) else contextlib.nullcontext(path) as file:
        _check_directory(file)
        with zipfile.ZipFile(file) as archive:
            members = _members(archive)
            if "metadata.npy" not in members:
                raise Invalid(f"not a {what} (the archive has no 'metadata' array)")
            metadata = _read_metadata(archive, members["metadata.npy"], max_metadata_bytes)
            chosen = expected(metadata) if callable(expected) else expected
            specs = {name: _as_spec(spec) for name, spec in chosen.items()}
            unexpected = sorted(members.keys() - {f"{name}.npy" for name in specs} - {"metadata.npy"})
            if unexpected:
                raise Invalid(f"unexpected member {unexpected[0]!r:.80} in the archive; the file is not a {what}")
            digest = hashlib.sha256()
            arrays = {name: _read_array(archive, members, name, spec, digest) for name, spec in specs.items()}
    if metadata.get("sha256") != _finish(digest, metadata):
        raise Invalid("checksum mismatch: the file was modified after it was written; use an intact copy")
    return metadata, arrays


def _check_directory(file: IO[bytes]) -> None:
    """Bound the zip directory before zipfile reads it (a ZipInfo per entry)."""
    try:
        end = zipfile._EndRecData(file)  # the end record, zip64 included, as zipfile itself reads it
    except OSError:
        end = None
    if end is None:
        raise zipfile.BadZipFile("File is not a zip file")
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if entries > MAX_MEMBERS or size > MAX_DIRECTORY_BYTES:
        raise Invalid(f"the archive directory lists {entries} members in {size} bytes (at most {MAX_MEMBERS} in "
                      f"{MAX_DIRECTORY_BYTES}); the file is corrupt or not written by dgmm")  # fmt: skip
    file.seek(0)


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    members = {info.filename: info for info in infos}
    if len(members) != len(infos):
        names = [info.filename for info in infos]
        duplicate = next(name for name in names if names.count(name) > 1)
        raise Invalid(f"member {duplicate!r:.80} appears twice in the archive; the file is corrupt or forged")
    return members


def _read_metadata(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> dict[str, Any]:
    """The JSON object of ``metadata.npy``, at most ``max_bytes`` of it read."""
    with _open_member(archive, info) as member:
        dtype, shape, fortran_order, header_bytes = _read_header(member)
        if dtype.hasobject:
            raise Invalid("array 'metadata' holds Python objects (pickled data), which dgmm never loads")
        if dtype != np.uint8 or len(shape) != 1:
            raise Invalid(f"array 'metadata' has dtype {dtype} and shape {shape}, expected 1-D uint8")
        if shape[0] > max_bytes:
            raise Invalid(f"array 'metadata' holds {shape[0]} bytes, more than the {max_bytes} dgmm reads; "
                          "the file is corrupt or not written by dgmm")  # fmt: skip
        _check_size(info, header_bytes, shape[0])
        text = np.empty(shape, np.uint8)
        _fill(member, text, "metadata", hashlib.sha256())
    try:
        metadata = json.loads(text.tobytes().decode("utf-8"), parse_constant=_finite, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"metadata is not valid UTF-8 JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(metadata, dict):
        raise Invalid("metadata is not a JSON object")
    return metadata


def _finite(text: str) -> float:
    """JSON number parser refusing NaN, Infinity and overflowing literals such as 1e999."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _read_array(archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], name: str, spec: Spec,
                digest: Any) -> np.ndarray:  # fmt: skip
    """One array, its header checked against ``spec`` before anything is allocated; hashed into ``digest``."""
    info = members.get(f"{name}.npy")
    if info is None:
        raise Invalid(f"missing array {name!r}; the file is incomplete or not written by dgmm")
    with _open_member(archive, info) as member:
        dtype, shape, fortran_order, header_bytes = _read_header(member)
        check_spec(name, dtype, shape, spec, fortran_order)
        _check_size(info, header_bytes, math.prod(shape) * dtype.itemsize)
        digest.update(_array_line(name, dtype, shape))
        array = np.empty(shape, dtype)
        _fill(member, array, name, digest)
    return array


def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    """The member's stream, once its compression method and ratio are allowed."""
    name = f"{info.filename!r:.80}"
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise Invalid(f"member {name} is stored uncompressed but declares {info.file_size} bytes in "
                      f"{info.compress_size}; the file is corrupt or forged")  # fmt: skip
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise Invalid(f"member {name} uses compression method {info.compress_type}; dgmm reads only stored or "
                      "deflated members")  # fmt: skip
    if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise Invalid(f"member {name} expands {info.file_size / max(info.compress_size, 1):.0f}-fold, more than "
                      f"{MAX_COMPRESSION_RATIO}; the file is corrupt or a decompression bomb")  # fmt: skip
    return archive.open(info)


class _Capped:
    """A read-only stream that refuses to give more than ``limit`` bytes in all; counts what it gave."""

    def __init__(self, stream: IO[bytes], limit: int):
        self.stream, self.limit, self.count = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or self.count + size > self.limit:
            raise Invalid(f"an array header is longer than {self.limit} bytes; the file is corrupt or not "
                          "written by dgmm")  # fmt: skip
        data = self.stream.read(size)
        self.count += len(data)
        return data


def _read_header(member: IO[bytes]) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """dtype, shape, Fortran order and byte length of the ``.npy`` header at the start of ``member``."""
    capped = _Capped(member, MAX_HEADER_BYTES)
    version = np.lib.format.read_magic(capped)
    if version not in ((1, 0), (2, 0)):
        raise Invalid(f"array header version {version} is not one dgmm writes (1.0 or 2.0)")
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = reader(capped)
    return dtype, tuple(int(n) for n in shape), bool(fortran_order), capped.count


def _check_size(info: zipfile.ZipInfo, header_bytes: int, data_bytes: int) -> None:
    if info.file_size != header_bytes + data_bytes:
        raise Invalid(f"member {info.filename!r:.80} declares {info.file_size} bytes, but its header describes "
                      f"{header_bytes + data_bytes}; the file is corrupt or forged")  # fmt: skip


def _fill(member: IO[bytes], array: np.ndarray, name: str, digest: Any) -> None:
    """Read exactly ``array.nbytes`` into ``array`` (C order) in blocks, hashing them; then expect the end."""
    view = array.reshape(-1).view(np.uint8) if array.size else np.empty(0, np.uint8)
    filled = 0
    while filled < view.size:
        block = member.read(min(BLOCK_BYTES, view.size - filled))
        if not block:
            raise Invalid(f"truncated or corrupt file (array {name!r} is shorter than its header says)")
        view[filled : filled + len(block)] = np.frombuffer(block, np.uint8)
        digest.update(block)
        filled += len(block)
    if member.read(1):  # also makes zipfile check the member's CRC
        raise Invalid(f"array {name!r} is longer than its header says; the file is corrupt or forged")
