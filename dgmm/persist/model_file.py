"""Safe, versioned model files: one ``.npz`` archive, never pickled, fully checked on load.

A model file (format ``"dgmm-model"``, version 1) holds float64 arrays ``weights`` (K,), ``means``
(K, d), ``covariances`` and ``precisions_cholesky`` (full (K, d, d), tied (d, d), diag (K, d),
spherical (K,)), ``lower_bounds`` (n_iter,); unicode ``feature_names`` ((d,), or (0,) without names);
and ``metadata``, UTF-8 JSON as a 1-D uint8 array whose ``sha256`` covers every other array (name,
dtype, shape, bytes, in a fixed order) and the rest of the metadata, so any changed value is detected.
Writes are atomic (temporary file, fsync, rename); any problem on load is a ``ModelFileError``.

Loading is bounded (see :mod:`dgmm.persist.archive`): the metadata is read first, at most ``MAX_METADATA_BYTES``
(16 MiB), then every array's ``.npy`` header must declare exactly the dtype (``<f8``, C order) and shape
that the metadata's covariance_type, n_components, n_features and n_iter give before anything is
decompressed or allocated, and no other member may be present. The limits, also enforced on save so
that nothing writes a file dgmm refuses to read:

* ``MAX_FEATURES`` = 100,000 features d;
* ``MAX_COMPONENTS`` = 100,000 components K;
* ``MAX_PARAMETER_ELEMENTS`` = 2**27 values (1 GiB of float64) in the largest array: K·d² covariances
  for "full", d² "tied", K·d "diag" (and the means), K "spherical";
* ``MAX_ITERATIONS`` = 10,000,000 EM iterations (n_iter, the length of ``lower_bounds``: 80 MB);
* ``MAX_FEATURE_NAME_CHARS`` = 256 characters per feature name (1 KiB of UTF-32 each).

A file within them loads in memory and time bounded by them (a few times 1 GiB; full covariances
cost O(K·d³) to check). Parameters whose log-densities would not be finite (a precision that
overflows, means too far apart for the covariances) are refused: they would predict NaN.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import tokenize
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from scipy import linalg

from .archive import MAX_METADATA_BYTES, Invalid, Spec, canonical_json, check_spec, checksum, read_archive
from ..errors import DataError, ModelFileError, NotFittedError, ParameterError
from ..kernels.gaussian import COVARIANCE_TYPES, log_det_cholesky, precision_cholesky
from ..kernels.params import MixtureParams
from ..data.sources import is_remote, open_input
from ..kernels.weights import NAN_POLICIES

if TYPE_CHECKING:
    from ..estimator.mixture import GaussianMixture

FORMAT = "dgmm-model"
FORMAT_VERSION = 1
MAX_FEATURES = 100_000
MAX_COMPONENTS = 100_000
MAX_PARAMETER_ELEMENTS = 2**27
MAX_ITERATIONS = 10_000_000
MAX_FEATURE_NAME_CHARS = 256

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


_Invalid = Invalid  # a problem with a model file's content; the message does not name the path


class _TooLarge(_Invalid):
    """A model beyond the limits of the module docstring."""


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


_canonical_json = canonical_json


def _checksum(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], names: Sequence[str] = _HASHED) -> str:
    """SHA-256 (hex) of the arrays named in ``names`` and of ``metadata`` minus its ``sha256``.

    Each array adds its name, dtype, shape and C-order bytes, in the order of ``names``; the
    metadata adds its canonical JSON. Tests use this to forge self-consistent files.
    """
    return checksum(arrays, metadata, names)


def save_model(model: GaussianMixture, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None, *,
               overwrite: bool = False, storage_options: dict | None = None) -> None:
    """Write a fitted model to ``path`` (used as given: no suffix is added), atomically.

    An existing file at ``path`` — there before, or appearing while the model is written — is
    an OutputExists error unless ``overwrite`` (see :mod:`dgmm.data.publish`); ``path`` may be an
    fsspec URL (``s3://...``), opened with ``storage_options``.

    ``extra`` is a JSON-serialisable dict kept in the metadata (after a JSON round trip: tuples
    become lists; ``{}`` if None), read back by :func:`read_metadata`. The client, the init
    arrays and a RandomState ``random_state`` are not stored (the loaded model has the defaults).

    Raises NotFittedError, ParameterError (bad ``extra``), ModelFileError (an inconsistent model,
    which could not be loaded back), OutputExists, or OSError (the write failed; a file already
    at ``path`` is then left intact).
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
        text = _canonical_json(metadata).encode("utf-8")
        if len(text) > MAX_METADATA_BYTES:
            raise _TooLarge(f"the metadata takes {len(text)} bytes, more than MAX_METADATA_BYTES={MAX_METADATA_BYTES} "
                            "(pass a smaller extra)")  # fmt: skip
    except _TooLarge as exc:
        raise ModelFileError(f"{path}: refusing to save a model too large for dgmm model files: {exc}") from None
    except _Invalid as exc:
        raise ModelFileError(f"{path}: refusing to save an inconsistent model: {exc}") from None
    arrays["metadata"] = np.frombuffer(text, dtype=np.uint8)
    _write_atomically(path, arrays, overwrite, storage_options)


def _contents(model: GaussianMixture, extra: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata (without ``sha256``) of a fitted model."""
    from .. import __version__

    arrays = {name: np.asarray(getattr(model, name + "_"), dtype=np.float64) for name in _NUMERIC}
    names = getattr(model, "feature_names_in_", None)
    arrays["feature_names"] = np.asarray([] if names is None else [str(n) for n in names], dtype=str)
    if names is not None and arrays["feature_names"].tolist() != list(names):
        raise _Invalid(f"feature names {list(names)!r:.80} cannot be stored exactly as a unicode array")
    longest = max(arrays["feature_names"].tolist(), key=len, default="")
    if len(longest) > MAX_FEATURE_NAME_CHARS:
        raise _TooLarge(f"feature name {longest!r:.40} has {len(longest)} characters, more than "
                        f"MAX_FEATURE_NAME_CHARS={MAX_FEATURE_NAME_CHARS} (rename the column)")  # fmt: skip
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


def _write_atomically(path: str, arrays: Mapping[str, np.ndarray], overwrite: bool = True,
                      storage_options: dict | None = None) -> None:
    """Publish the archive of ``arrays`` at ``path`` whole (:mod:`dgmm.data.publish`); over another file only if ``overwrite``."""
    from ..data.publish import published

    with published(path, overwrite, storage_options) as file:
        np.savez(file, **arrays)  # a file object: numpy appends no ".npz" to the name


def load_model(path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> GaussianMixture:
    """Read a model written by :func:`save_model` (a path or an fsspec URL, opened with ``storage_options``).

    Raises :class:`ModelFileError` on any problem with the file, DataError when storage refuses access.
    """
    return _build(*_load(os.fspath(path), storage_options), storage_options)


def load_model_with_metadata(path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
                             ) -> tuple[GaussianMixture, dict[str, Any]]:
    """The model and its metadata (``extra`` included), from one read of the file."""
    arrays, metadata = _load(os.fspath(path), storage_options)
    return _build(arrays, metadata, storage_options), metadata


def read_metadata(path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of a model file (format, versions, params, ``extra``, ...), checked as by load_model."""
    return _load(os.fspath(path), storage_options)[1]


def _load(path: str, storage_options: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of a model file, fully checked; any problem is a ModelFileError."""
    try:
        arrays, metadata = _read(path, storage_options)
        _check_values(arrays, metadata["covariance_type"])
    except DataError:  # storage refused access (credentials, endpoint): not the file's fault
        raise
    except _TooLarge as exc:
        raise ModelFileError(f"{path}: {exc}; the file is corrupt or not written by dgmm") from None
    except _Invalid as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except PermissionError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror}); check its permissions") from None
    except _CORRUPT as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ModelFileError(f"{path}: truncated or corrupt model file ({detail}); save the model again") from None
    return arrays, metadata


def _read(path: str, storage_options: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of the archive at ``path``: metadata, dtypes, shapes and checksum checked."""
    if is_remote(path):
        return _read_remote(path, storage_options)
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
    metadata, arrays = read_archive(path, _specs, max_metadata_bytes=MAX_METADATA_BYTES, what="dgmm model file")
    return arrays, metadata


def _read_remote(path: str, storage_options: Mapping[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`_read` of a model file at an fsspec URL."""
    try:
        with open_input(path, storage_options) as file:
            if file.read(4) != b"PK\x03\x04":
                raise _Invalid("not a dgmm model file (not an .npz archive)")
            file.seek(0)
            metadata, arrays = read_archive(file, _specs, max_metadata_bytes=MAX_METADATA_BYTES,
                                            what="dgmm model file")
    except FileNotFoundError:
        raise _Invalid("no such model file; check the URL") from None
    return arrays, metadata


def _specs(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    """The dtype and shape of every array of a model file, in hashing order, from its checked metadata."""
    if metadata.get("format") != FORMAT:
        raise _Invalid(f"not a dgmm model file (format {metadata.get('format')!r:.80}, expected {FORMAT!r})")
    version = metadata.get("format_version")
    if not _has_type(version, _INT) or version < 1:
        raise _Invalid(f"unknown model format version {version!r:.80}")
    if version > FORMAT_VERSION:
        raise _Invalid(f"model format version {version} is newer than this dgmm supports ({FORMAT_VERSION}); "
                       "upgrade dgmm")  # fmt: skip
    _check_metadata(metadata)
    kind, K, d, n_iter = (metadata[key] for key in ("covariance_type", "n_components", "n_features", "n_iter"))
    return _array_specs(kind, K, d, n_iter)


def _check_metadata(metadata: Mapping[str, Any]) -> None:
    """Metadata keys, types and ranges, and the limits of the module docstring."""
    _check_keys("metadata", metadata, _METADATA)
    kind, K, d, params = (metadata[key] for key in ("covariance_type", "n_components", "n_features", "params"))
    if kind not in COVARIANCE_TYPES:
        raise _Invalid(f"unknown covariance_type {kind!r:.80}; expected one of {', '.join(COVARIANCE_TYPES)}")
    if K < 1 or d < 1 or metadata["n_iter"] < 0:
        raise _Invalid(f"metadata n_components={K}, n_features={d} or n_iter={metadata['n_iter']} is out of range")
    _check_limits(kind, K, d, metadata["n_iter"])
    _check_keys("metadata params", params, _PARAMS, optional=_OPTIONAL_PARAMS)
    if params.get("nan_policy", "raise") not in NAN_POLICIES:
        raise _Invalid(f"metadata params nan_policy={params['nan_policy']!r:.80} is not one of {', '.join(NAN_POLICIES)}")
    if params["n_components"] != K or params["covariance_type"] != kind:
        raise _Invalid(f"metadata params n_components or covariance_type differ from n_components={K}, {kind!r}")


def _covariance_shape(kind: str, K: int, d: int) -> tuple[int, ...]:
    return {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}[kind]


def _check_limits(kind: str, K: int, d: int, n_iter: int) -> None:
    """Refuse (as _TooLarge) a model beyond MAX_COMPONENTS, MAX_FEATURES, MAX_ITERATIONS, MAX_PARAMETER_ELEMENTS."""
    for key, value, name, limit in (("n_components", K, "MAX_COMPONENTS", MAX_COMPONENTS),
                                    ("n_features", d, "MAX_FEATURES", MAX_FEATURES),
                                    ("n_iter", n_iter, "MAX_ITERATIONS", MAX_ITERATIONS)):  # fmt: skip
        if value > limit:
            raise _TooLarge(f"{key}={value} is more than {name}={limit}")
    largest = max(K * d, math.prod(_covariance_shape(kind, K, d)))
    if largest > MAX_PARAMETER_ELEMENTS:
        raise _TooLarge(f"covariance_type {kind!r} with n_components={K}, n_features={d} needs an array of {largest} "
                        f"values, more than MAX_PARAMETER_ELEMENTS={MAX_PARAMETER_ELEMENTS}")  # fmt: skip


def _array_specs(kind: str, K: int, d: int, n_iter: int) -> dict[str, Spec]:
    """Exact little-endian float64 shapes; feature names unicode of (0,) or (d,), at most MAX_FEATURE_NAME_CHARS."""
    f8, context = np.dtype("<f8"), f"for covariance_type {kind!r} with n_components={K}, n_features={d}"
    cov = _covariance_shape(kind, K, d)
    names = np.dtype(f"<U{MAX_FEATURE_NAME_CHARS}")
    return {"weights": Spec(f8, ((K,),), context), "means": Spec(f8, ((K, d),), context),
            "covariances": Spec(f8, (cov,), context), "precisions_cholesky": Spec(f8, (cov,), context),
            "lower_bounds": Spec(f8, ((n_iter,),), f"for n_iter={n_iter}"),
            "feature_names": Spec(names, ((0,), (d,)), f"for n_features={d}")}  # fmt: skip


def _validate(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    """Metadata keys, types and limits, array dtypes and shapes, and the values of the parameters."""
    _check_metadata(metadata)
    specs = _array_specs(*(metadata[key] for key in ("covariance_type", "n_components", "n_features", "n_iter")))
    for name, spec in specs.items():
        check_spec(name, arrays[name].dtype, arrays[name].shape, spec)
    _check_values(arrays, metadata["covariance_type"])


def _check_shapes(arrays: Mapping[str, np.ndarray], kind: str, K: int, d: int) -> None:
    """Float64 parameters of the shapes of ``kind``, 1-D lower_bounds, unicode feature names (0,) or (d,)."""
    for name in _NUMERIC:
        if arrays[name].dtype.kind != "f" or arrays[name].dtype.itemsize != 8:
            raise _Invalid(f"array {name!r} has dtype {arrays[name].dtype}, expected float64")
    cov = _covariance_shape(kind, K, d)
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
    """Finite arrays, weights summing to 1, positive definite covariances matching their precision
    factors, and finite log-densities (:func:`_check_densities`)."""
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
    _check_densities(arrays, kind)


# Squared Mahalanobis distances and precisions must stay below exp(this): the largest float64, with margin.
_LOG_LIMIT = math.log(np.finfo(np.float64).max) - math.log(16.0)


def _check_densities(arrays: Mapping[str, np.ndarray], kind: str) -> None:
    """Refuse parameters whose log-densities are not finite near the components, in O(K·d²).

    With ``U_k`` the precision factor, ``a_k = μ_k − c`` (``c`` the mean of the means, the centre
    the E-step expands about) and ``R = max_k ‖a_k‖``: ``log det U_k``, ``‖U_k‖²`` (bounds the
    precisions), ``R²`` and ``(2R ‖U_k‖)²`` (bounds every squared Mahalanobis distance between two
    means) must all be finite, so the log-density of the mixture at every mean is.
    """
    means, factors = arrays["means"], arrays["precisions_cholesky"]
    K, d = means.shape
    with np.errstate(all="ignore"):
        log_det = np.broadcast_to(log_det_cholesky(factors, kind, d), (K,))
        if kind == "spherical":
            log_u = np.log(factors) + 0.5 * math.log(d)
        else:  # one row per factor: (K, d²) full, (1, d²) tied, (K, d) diag
            log_u = np.broadcast_to(_log_norms(factors.reshape(1 if kind == "tied" else K, -1)), (K,))
        log_r = float(np.max(_log_norms(means - means.mean(axis=0))))
        overflows = ~(np.isfinite(log_det) & (2 * log_u < _LOG_LIMIT))  # NaN compares False: refused too
        too_far = ~((2 * log_r < _LOG_LIMIT) & (2 * (math.log(2.0) + log_r + log_u) < _LOG_LIMIT))
    if overflows.any():
        k = int(np.argmax(overflows))
        raise _Invalid(f"component {k} gives non-finite log-densities ({_too_small(arrays['covariances'], kind, k)}); "
                       "refit with a larger reg_covar")  # fmt: skip
    if too_far.any():
        raise _Invalid(f"component {int(np.argmax(too_far))} gives non-finite log-densities (the means lie too far "
                       "apart for its covariance); scale the input data and refit")  # fmt: skip


def _log_norms(rows: np.ndarray) -> np.ndarray:
    """log of the Euclidean norm of every row of ``rows`` (n, m), shape (n,), without overflow (-inf for 0)."""
    scale = np.max(np.abs(rows), axis=1, initial=0.0)
    safe = np.where(scale > 0, scale, 1.0)
    with np.errstate(divide="ignore"):
        return np.log(scale) + 0.5 * np.log(np.sum((rows / safe[:, None]) ** 2, axis=1))


def _too_small(covariances: np.ndarray, kind: str, k: int) -> str:
    if kind in ("diag", "spherical"):
        return f"{kind} covariance {float(np.min(covariances[k]))!r} is too small"
    return f"{'the' if kind == 'tied' else 'its'} {kind} covariance is too close to singular"


def _is_spd(cov: np.ndarray) -> bool:
    """Symmetric to 1e-10 relative to the largest entry, and with a Cholesky factor."""
    try:
        linalg.cholesky(cov, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return False
    return bool(np.max(np.abs(cov - cov.T)) <= 1e-10 * np.max(np.abs(cov)))


def _build(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
           storage_options: Mapping[str, Any] | None = None) -> GaussianMixture:
    """A fitted estimator from validated arrays and metadata (reading data with ``storage_options``)."""
    from ..estimator.mixture import GaussianMixture

    model = GaussianMixture(**metadata["params"], storage_options=dict(storage_options) if storage_options else None)
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
