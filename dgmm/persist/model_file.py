"""Safe, versioned model files: one ``.npz`` archive, never pickled, fully checked on load.

A model file (format ``"dgmm-model"``, version 1) holds float64 arrays ``weights`` (K,), ``means``
(K, d), ``covariances`` and ``precisions_cholesky`` (full (K, d, d), tied (d, d), diag (K, d),
spherical (K,)), ``lower_bounds`` (n_iter,); unicode ``feature_names`` ((d,), or (0,) without names);
and ``metadata``, UTF-8 JSON as a 1-D uint8 array whose ``sha256`` covers every other array (name,
dtype, shape, bytes, in a fixed order) and the rest of the metadata, so any changed value is detected.
Saving and loading either format, and publishing the archive whole, is :mod:`dgmm.persist.formats`.

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

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.validation import NAN_POLICIES
from ..kernels.gaussian import COVARIANCE_TYPES, covariance_shape
from ..kernels.params import MixtureParams
from ..version import __version__
from .archive import Invalid, Spec, check_spec, checksum
from .checks import (  # noqa: F401  (documented here)
    INT,
    MAX_COMPONENTS,
    MAX_FEATURE_NAME_CHARS,
    MAX_FEATURES,
    MAX_ITERATIONS,
    MAX_PARAMETER_ELEMENTS,
    NONE,
    REAL,
    STR,
    TooLarge,
    check_keys,
    check_limits,
    check_values,
    has_type,
)
from .fitted import PARAMETER_ARRAYS, FittedState

FORMAT = "dgmm-model"
FORMAT_VERSION = 1

NUMERIC = PARAMETER_ARRAYS + ("lower_bounds",)  # the fitted state's arrays (:mod:`dgmm.persist.fitted`)
HASHED = NUMERIC + ("feature_names",)
PARAMS = {"n_components": INT, "covariance_type": STR, "tol": REAL, "reg_covar": REAL, "max_iter": INT,
           "n_init": INT, "init_params": STR, "random_state": INT + NONE, "warm_start": (bool,),
           "verbose": INT, "verbose_interval": INT, "split_every": INT, "nan_policy": STR,
           "split_merge": INT, "cmvn": STR + NONE}  # fmt: skip
OPTIONAL_PARAMS = ("random_state", "nan_policy", "split_merge", "cmvn")  # absent from older files
METADATA = {"format": STR, "format_version": INT, "dgmm_version": STR, "covariance_type": STR,
             "n_components": INT, "n_features": INT, "converged": (bool,), "n_iter": INT,
             "lower_bound": REAL + NONE, "params": (dict,), "extra": (dict,), "sha256": STR,
             "n_rows_dropped": INT}  # fmt: skip
OPTIONAL_METADATA = ("n_rows_dropped",)  # absent from older files


def checksum_of(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], names: Sequence[str] = HASHED) -> str:
    """SHA-256 (hex) of the arrays named in ``names`` and of ``metadata`` minus its ``sha256``.

    Each array adds its name, dtype, shape and C-order bytes, in the order of ``names``; the
    metadata adds its canonical JSON. Tests use this to forge self-consistent files.
    """
    return checksum(arrays, metadata, names)


def contents(model: Any, extra: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata (without ``sha256``) of a fitted model."""
    arrays = {name: np.asarray(getattr(model, name + "_"), dtype=np.float64) for name in NUMERIC}
    names = getattr(model, "feature_names_in_", None)
    arrays["feature_names"] = np.asarray([] if names is None else [str(n) for n in names], dtype=str)
    if names is not None and arrays["feature_names"].tolist() != list(names):
        raise Invalid(f"feature names {list(names)!r:.80} cannot be stored exactly as a unicode array")
    longest = max(arrays["feature_names"].tolist(), key=len, default="")
    if len(longest) > MAX_FEATURE_NAME_CHARS:
        raise TooLarge(f"feature name {longest!r:.40} has {len(longest)} characters, more than "
                        f"MAX_FEATURE_NAME_CHARS={MAX_FEATURE_NAME_CHARS} (rename the column)")  # fmt: skip
    lower_bound = float(model.lower_bound_)
    if math.isnan(lower_bound) or lower_bound == math.inf:  # null in the file stands for -inf
        raise Invalid(f"lower_bound_ is {lower_bound}; only finite values or -inf can be stored")
    # JSON-safe parameters only: never the client or the init arrays, nor a RandomState.
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in model.get_params().items() if k in PARAMS}
    if not has_type(params.get("random_state"), PARAMS["random_state"]):
        params.pop("random_state", None)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "dgmm_version": __version__,
                "covariance_type": params["covariance_type"], "n_components": params["n_components"],
                "n_features": int(model.n_features_in_), "converged": bool(model.converged_),
                "n_iter": int(model.n_iter_), "lower_bound": lower_bound if math.isfinite(lower_bound) else None,
                "params": params, "extra": extra}  # fmt: skip
    if getattr(model, "n_rows_dropped_", None) is not None:
        metadata["n_rows_dropped"] = int(model.n_rows_dropped_)
    return arrays, metadata


def fitted_state(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> FittedState:
    """The fitted state a model file's checked arrays and metadata hold (a stored lower bound of null is -inf)."""
    params = MixtureParams(
        *(arrays[name].astype(np.float64, copy=False) for name in PARAMETER_ARRAYS), metadata["covariance_type"]
    )
    names = arrays["feature_names"]
    return FittedState(
        params,
        metadata["converged"],
        metadata["n_iter"],
        -math.inf if metadata["lower_bound"] is None else float(metadata["lower_bound"]),
        tuple(float(v) for v in arrays["lower_bounds"]),
        metadata["n_features"],
        np.asarray(names.tolist(), dtype=object) if names.size else None,
        metadata.get("n_rows_dropped"),
    )


def specs(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    """The dtype and shape of every array of a model file, in hashing order, from its checked metadata."""
    if metadata.get("format") != FORMAT:
        raise Invalid(f"not a dgmm model file (format {metadata.get('format')!r:.80}, expected {FORMAT!r})")
    version = metadata.get("format_version")
    if not has_type(version, INT) or version < 1:
        raise Invalid(f"unknown model format version {version!r:.80}")
    if version > FORMAT_VERSION:
        raise Invalid(f"model format version {version} is newer than this dgmm supports ({FORMAT_VERSION}); "
                       "upgrade dgmm")  # fmt: skip
    _check_metadata(metadata)
    kind, K, d, n_iter = (metadata[key] for key in ("covariance_type", "n_components", "n_features", "n_iter"))
    return _array_specs(kind, K, d, n_iter)


def _check_metadata(metadata: Mapping[str, Any]) -> None:
    """Metadata keys, types and ranges, and the limits of the module docstring."""
    check_keys("metadata", metadata, METADATA, optional=OPTIONAL_METADATA)
    kind, K, d, params = (metadata[key] for key in ("covariance_type", "n_components", "n_features", "params"))
    if kind not in COVARIANCE_TYPES:
        raise Invalid(f"unknown covariance_type {kind!r:.80}; expected one of {', '.join(COVARIANCE_TYPES)}")
    if K < 1 or d < 1 or metadata["n_iter"] < 0:
        raise Invalid(f"metadata n_components={K}, n_features={d} or n_iter={metadata['n_iter']} is out of range")
    check_limits(kind, K, d, metadata["n_iter"])
    check_keys("metadata params", params, PARAMS, optional=OPTIONAL_PARAMS)
    if params.get("nan_policy", "raise") not in NAN_POLICIES:
        raise Invalid(
            f"metadata params nan_policy={params['nan_policy']!r:.80} is not one of {', '.join(NAN_POLICIES)}"
        )
    if params["n_components"] != K or params["covariance_type"] != kind:
        raise Invalid(f"metadata params n_components or covariance_type differ from n_components={K}, {kind!r}")


def _array_specs(kind: str, K: int, d: int, n_iter: int) -> dict[str, Spec]:
    """Exact little-endian float64 shapes; feature names unicode of (0,) or (d,), at most MAX_FEATURE_NAME_CHARS."""
    f8, context = np.dtype("<f8"), f"for covariance_type {kind!r} with n_components={K}, n_features={d}"
    cov = covariance_shape(kind, K, d)
    names = np.dtype(f"<U{MAX_FEATURE_NAME_CHARS}")
    return {"weights": Spec(f8, ((K,),), context), "means": Spec(f8, ((K, d),), context),
            "covariances": Spec(f8, (cov,), context), "precisions_cholesky": Spec(f8, (cov,), context),
            "lower_bounds": Spec(f8, ((n_iter,),), f"for n_iter={n_iter}"),
            "feature_names": Spec(names, ((0,), (d,)), f"for n_features={d}")}  # fmt: skip


def validate(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    """Metadata keys, types and limits, array dtypes and shapes, and the values of the parameters."""
    _check_metadata(metadata)
    specs = _array_specs(*(metadata[key] for key in ("covariance_type", "n_components", "n_features", "n_iter")))
    for name, spec in specs.items():
        check_spec(name, arrays[name].dtype, arrays[name].shape, spec)
    check_values(arrays, metadata["covariance_type"], NUMERIC)
