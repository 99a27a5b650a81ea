"""Safe, versioned model files: one ``.npz`` archive, never pickled, fully checked on load.

A model file (format ``"dgmm-model"``, version 1) holds float64 arrays ``weights`` (K,), ``means``
(K, d), ``covariances`` and ``precisions_cholesky`` (full (K, d, d), tied (d, d), diag (K, d),
spherical (K,)), ``lower_bounds`` (n_iter,); unicode ``feature_names`` ((d,), or (0,) without names);
and ``metadata``, UTF-8 JSON as a 1-D uint8 array whose ``sha256`` covers every other array (name,
dtype, shape, bytes, in a fixed order) and the rest of the metadata, so any changed value is detected.
Writes are atomic (temporary file, fsync, rename); any problem on load is a ``ModelFileError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import stat
import struct
import tokenize
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from scipy import linalg

from .errors import ModelFileError, NotFittedError, ParameterError
from .gaussian import COVARIANCE_TYPES, precision_cholesky
from .params import MixtureParams
from .weights import NAN_POLICIES

if TYPE_CHECKING:
    from .mixture import GaussianMixture

FORMAT = "dgmm-model"
FORMAT_VERSION = 1

_NUMERIC = ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds")
_HASHED = _NUMERIC + ("feature_names",)
_INT, _STR, _REAL, _NONE = (int,), (str,), (int, float), (type(None),)
_PARAMS = {"n_components": _INT, "covariance_type": _STR, "tol": _REAL, "reg_covar": _REAL, "max_iter": _INT,
           "n_init": _INT, "init_params": _STR, "random_state": _INT + _NONE, "warm_start": (bool,),
           "verbose": _INT, "verbose_interval": _INT, "split_every": _INT, "nan_policy": _STR,
           "split_merge": _INT}  # fmt: skip
_OPTIONAL_PARAMS = ("random_state", "nan_policy", "split_merge")  # absent from files of dgmm <= 0.1
_METADATA = {"format": _STR, "format_version": _INT, "dgmm_version": _STR, "covariance_type": _STR,
             "n_components": _INT, "n_features": _INT, "converged": (bool,), "n_iter": _INT,
             "lower_bound": _REAL + _NONE, "params": (dict,), "extra": (dict,), "sha256": _STR}  # fmt: skip
# Everything numpy (its .npy header parser included), zipfile, zlib, struct and json raise on garbage input.
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, KeyError, IndexError, EOFError, TypeError,
            struct.error, zlib.error, NotImplementedError, RuntimeError, OverflowError, MemoryError, SyntaxError,
            tokenize.TokenError)  # fmt: skip


class _Invalid(Exception):
    """A problem with a model file's content; the message does not name the path."""


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that a bool is no int and a float must be finite."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) and not (isinstance(value, float) and not math.isfinite(value))


def _check_keys(where: str, mapping: Mapping[str, Any], spec: Mapping[str, tuple[type, ...]],
                optional: tuple[str, ...] = ()):
    """Every key of ``spec`` but the ``optional`` ones present, no other key, and each value of its types."""
    unknown = sorted(mapping.keys() - spec.keys())
    if unknown:
        raise _Invalid(f"{where} holds an unknown key {unknown[0]!r:.80}")
    for key, types in spec.items():
        if key not in mapping and key not in optional:
            raise _Invalid(f"{where} lacks key {key!r}")
        if key in mapping and not _has_type(mapping[key], types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise _Invalid(f"{where} {key}={mapping[key]!r:.80} is not {expected}")


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _checksum(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], names: Sequence[str] = _HASHED) -> str:
    """SHA-256 (hex) of the arrays named in ``names`` and of ``metadata`` minus its ``sha256``.

    Each array adds its name, dtype, shape and C-order bytes, in the order of ``_HASHED``; the
    metadata adds its canonical JSON. Tests use this to forge self-consistent files.
    """
    digest = hashlib.sha256()
    for name in names:
        array = np.asarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.tobytes(order="C"))
    digest.update(_canonical_json({k: v for k, v in metadata.items() if k != "sha256"}).encode())
    return digest.hexdigest()


def save_model(model: GaussianMixture, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> None:
    """Write a fitted model to ``path`` (used as given: no suffix is added), atomically.

    ``extra`` is a JSON-serialisable dict kept in the metadata (after a JSON round trip: tuples
    become lists; ``{}`` if None), read back by :func:`read_metadata`. The client, the init
    arrays and a RandomState ``random_state`` are not stored (the loaded model has the defaults).

    Raises NotFittedError, ParameterError (bad ``extra``), ModelFileError (an inconsistent model,
    which could not be loaded back) or OSError (the write failed; a file already at ``path`` is
    then left intact).
    """
    path = os.fspath(path)
    if not hasattr(model, "means_"):
        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet; call 'fit' before saving it")
    try:
        extra = json.loads(json.dumps(dict(extra or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"extra must be a JSON-serialisable dict (str keys, finite numbers): {exc}") from None
    try:
        arrays, metadata = _contents(model, extra)
        _validate(arrays, {**metadata, "sha256": ""})
        metadata["sha256"] = _checksum(arrays, metadata)
    except _Invalid as exc:
        raise ModelFileError(f"{path}: refusing to save an inconsistent model: {exc}") from None
    arrays["metadata"] = np.frombuffer(_canonical_json(metadata).encode("utf-8"), dtype=np.uint8)
    _write_atomically(path, arrays)


def _contents(model: GaussianMixture, extra: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata (without ``sha256``) of a fitted model."""
    from . import __version__

    arrays = {name: np.asarray(getattr(model, name + "_"), dtype=np.float64) for name in _NUMERIC}
    names = getattr(model, "feature_names_in_", None)
    arrays["feature_names"] = np.asarray([] if names is None else [str(n) for n in names], dtype=str)
    if names is not None and arrays["feature_names"].tolist() != list(names):
        raise _Invalid(f"feature names {list(names)!r:.80} cannot be stored exactly as a unicode array")
    lower_bound = float(model.lower_bound_)
    if math.isnan(lower_bound) or lower_bound == math.inf:  # null in the file stands for -inf
        raise _Invalid(f"lower_bound_ is {lower_bound}; only finite values or -inf can be stored")
    # JSON-safe parameters only: never the client or the init arrays, nor a RandomState.
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in model.get_params().items() if k in _PARAMS}
    if not _has_type(params.get("random_state"), _PARAMS["random_state"]):
        params.pop("random_state", None)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "dgmm_version": __version__,
                "covariance_type": params["covariance_type"], "n_components": params["n_components"],
                "n_features": int(model.n_features_in_), "converged": bool(model.converged_),
                "n_iter": int(model.n_iter_), "lower_bound": lower_bound if math.isfinite(lower_bound) else None,
                "params": params, "extra": extra}  # fmt: skip
    return arrays, metadata


def _write_atomically(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write into a temporary file beside ``path``, fsync it, then rename it onto ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)[:100]}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)  # a file object: numpy appends no ".npz" to the name
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where a directory can be synced
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_model(path: str | os.PathLike[str]) -> GaussianMixture:
    """Read a model written by :func:`save_model`; raises :class:`ModelFileError` on any problem."""
    return _build(*_load(os.fspath(path)))


def load_model_with_metadata(path: str | os.PathLike[str]) -> tuple[GaussianMixture, dict[str, Any]]:
    """The model and its metadata (``extra`` included), from one read of the file."""
    arrays, metadata = _load(os.fspath(path))
    return _build(arrays, metadata), metadata


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a model file (format, versions, params, ``extra``, ...), checked as by load_model."""
    return _load(os.fspath(path))[1]


def _load(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of a model file, fully checked; any problem is a ModelFileError."""
    try:
        arrays, metadata = _read(path)
        _validate(arrays, metadata)
    except _Invalid as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except PermissionError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror}); check its permissions") from None
    except _CORRUPT as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ModelFileError(f"{path}: truncated or corrupt model file ({detail}); save the model again") from None
    return arrays, metadata


def _read(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of the archive at ``path``, with format, version and checksum checked."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise _Invalid("no such model file; check the path") from None
    if not stat.S_ISREG(mode):
        what = "is a directory" if stat.S_ISDIR(mode) else "is not a regular file"
        raise _Invalid(f"{what}, not a model file; give the path of a file written by save_model")
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":
            raise _Invalid("not a dgmm model file (not an .npz archive)")
        file.seek(0)
        with np.load(file, allow_pickle=False) as npz:
            if "metadata" not in npz.files:
                raise _Invalid("not a dgmm model file (the archive has no 'metadata' array)")
            metadata = _metadata(_array(npz, "metadata"))
            arrays = {name: _array(npz, name) for name in _HASHED}
    if metadata.get("sha256") != _checksum(arrays, metadata):
        raise _Invalid("checksum mismatch: the file was modified after it was written; use an intact copy")
    return arrays, metadata


def _array(npz: Any, name: str) -> np.ndarray:
    """One array of the archive, its header checked before numpy allocates or unpickles anything."""
    if name not in npz.files:
        raise _Invalid(f"missing array {name!r}; the file is not a complete dgmm model")
    info = npz.zip.getinfo(name + ".npy")
    with npz.zip.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(member)
    if dtype.hasobject:
        raise _Invalid(f"array {name!r} holds Python objects (pickled data), which dgmm never loads")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise _Invalid(f"truncated or corrupt model file (array {name!r} is shorter than its header says)")
    return npz[name]


def _metadata(array: np.ndarray) -> dict[str, Any]:
    """The JSON object held by the ``metadata`` array, its format and version checked."""
    if array.dtype != np.uint8 or array.ndim != 1:
        raise _Invalid(f"array 'metadata' has dtype {array.dtype} and shape {array.shape}, expected 1-D uint8")
    try:
        metadata = json.loads(array.tobytes().decode("utf-8"), parse_constant=_finite, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise _Invalid(f"metadata is not valid UTF-8 JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(metadata, dict):
        raise _Invalid("metadata is not a JSON object")
    if metadata.get("format") != FORMAT:
        raise _Invalid(f"not a dgmm model file (format {metadata.get('format')!r:.80}, expected {FORMAT!r})")
    version = metadata.get("format_version")
    if not _has_type(version, _INT) or version < 1:
        raise _Invalid(f"unknown model format version {version!r:.80}")
    if version > FORMAT_VERSION:
        raise _Invalid(f"model format version {version} is newer than this dgmm supports ({FORMAT_VERSION}); "
                       "upgrade dgmm")  # fmt: skip
    return metadata


def _finite(text: str) -> float:
    """JSON number parser refusing NaN, Infinity and overflowing literals such as 1e999."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _validate(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    """Metadata keys and types, array dtypes and shapes, and the values of the parameters."""
    _check_keys("metadata", metadata, _METADATA)
    kind, K, d, params = (metadata[key] for key in ("covariance_type", "n_components", "n_features", "params"))
    if kind not in COVARIANCE_TYPES:
        raise _Invalid(f"unknown covariance_type {kind!r:.80}; expected one of {', '.join(COVARIANCE_TYPES)}")
    if K < 1 or d < 1 or metadata["n_iter"] < 0:
        raise _Invalid(f"metadata n_components={K}, n_features={d} or n_iter={metadata['n_iter']} is out of range")
    _check_keys("metadata params", params, _PARAMS, optional=_OPTIONAL_PARAMS)
    if params.get("nan_policy", "raise") not in NAN_POLICIES:
        raise _Invalid(f"metadata params nan_policy={params['nan_policy']!r:.80} is not one of {', '.join(NAN_POLICIES)}")
    if params["n_components"] != K or params["covariance_type"] != kind:
        raise _Invalid(f"metadata params n_components or covariance_type differ from n_components={K}, {kind!r}")
    _check_shapes(arrays, kind, K, d)
    _check_values(arrays, kind)


def _check_shapes(arrays: Mapping[str, np.ndarray], kind: str, K: int, d: int) -> None:
    for name in _NUMERIC:
        if arrays[name].dtype.kind != "f" or arrays[name].dtype.itemsize != 8:
            raise _Invalid(f"array {name!r} has dtype {arrays[name].dtype}, expected float64")
    cov = {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}[kind]
    for name, shape in {"weights": (K,), "means": (K, d), "covariances": cov, "precisions_cholesky": cov}.items():
        if arrays[name].shape != shape:
            raise _Invalid(f"array {name!r} has shape {arrays[name].shape}, expected {shape} for "
                           f"covariance_type {kind!r} with n_components={K}, n_features={d}")  # fmt: skip
    if arrays["lower_bounds"].ndim != 1:
        raise _Invalid(f"array 'lower_bounds' has shape {arrays['lower_bounds'].shape}, expected 1-D")
    names = arrays["feature_names"]
    if names.dtype.kind != "U" or names.shape not in ((0,), (d,)):
        raise _Invalid(f"array 'feature_names' has dtype {names.dtype}, shape {names.shape}; expected unicode, (0,) "
                       f"or ({d},)")  # fmt: skip


def _check_values(arrays: Mapping[str, np.ndarray], kind: str) -> None:
    for name in _NUMERIC:
        if not np.all(np.isfinite(arrays[name])):
            raise _Invalid(f"array {name!r} holds NaN or infinite values")
    weights, covariances = arrays["weights"], arrays["covariances"]
    if np.any(weights < 0):
        raise _Invalid(f"weights must be non-negative, but component {int(np.argmax(weights < 0))} has weight < 0")
    if abs(math.fsum(weights) - 1.0) > 1e-8:
        raise _Invalid(f"weights sum to {math.fsum(weights):.12g}, not 1")
    if kind in ("full", "tied"):
        for k, cov in enumerate(covariances if kind == "full" else covariances[None]):
            if not _is_spd(cov):
                what = f"covariance of component {k}" if kind == "full" else "the tied covariance"
                raise _Invalid(f"{what} is not symmetric positive definite")
    elif np.any(covariances <= 0):
        k = int(np.argmax(np.reshape(covariances <= 0, (len(covariances), -1)).any(axis=1)))
        raise _Invalid(f"covariance of component {k} is not positive")
    expected = precision_cholesky(covariances, kind)
    error, scale = np.max(np.abs(arrays["precisions_cholesky"] - expected)), np.max(np.abs(expected))
    if error > 1e-8 * scale:
        raise _Invalid(f"precisions_cholesky does not match the covariances (off by {error:.3g} at scale {scale:.3g})")


def _is_spd(cov: np.ndarray) -> bool:
    """Symmetric to 1e-10 relative to the largest entry, and with a Cholesky factor."""
    try:
        linalg.cholesky(cov, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return False
    return bool(np.max(np.abs(cov - cov.T)) <= 1e-10 * np.max(np.abs(cov)))


def _build(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> GaussianMixture:
    """A fitted estimator from validated arrays and metadata."""
    from .mixture import GaussianMixture

    model = GaussianMixture(**metadata["params"])
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        setattr(model, name + "_", arrays[name].astype(np.float64, copy=False))
    model.precisions_ = MixtureParams(
        model.weights_, model.means_, model.covariances_, model.precisions_cholesky_, metadata["covariance_type"]
    ).precisions
    model.converged_, model.n_iter_ = metadata["converged"], metadata["n_iter"]
    model.n_features_in_ = metadata["n_features"]
    model.lower_bound_ = -math.inf if metadata["lower_bound"] is None else float(metadata["lower_bound"])
    model.lower_bounds_ = [float(v) for v in arrays["lower_bounds"]]
    if arrays["feature_names"].size:
        model.feature_names_in_ = np.asarray(arrays["feature_names"].tolist(), dtype=object)
    return model
