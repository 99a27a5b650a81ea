"""Checks shared by model files and checkpoints: the size limits, metadata types, parameter values.

The limits (enforced on load, and on save so that nothing writes a file dgmm refuses to read) are
documented in :mod:`dgmm.persist.model_file`. Every problem is an :class:`~dgmm.persist.archive.Invalid`
(:class:`TooLarge` for a model beyond the limits) whose message does not name the path.
"""

from __future__ import annotations

import math
import struct
import tokenize
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np
from scipy import linalg

from ..kernels.gaussian import covariance_shape, log_det_cholesky, precision_cholesky
from .archive import Invalid
from .fitted import PARAMETER_ARRAYS

MAX_FEATURES = 100_000
MAX_COMPONENTS = 100_000
MAX_PARAMETER_ELEMENTS = 2**27
MAX_ITERATIONS = 10_000_000
MAX_FEATURE_NAME_CHARS = 256

INT, STR, REAL, NONE = (int,), (str,), (int, float), (type(None),)
# Everything numpy (its .npy header parser included), zipfile, zlib, struct and json raise on garbage input.
CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, KeyError, IndexError, EOFError, TypeError,
            struct.error, zlib.error, NotImplementedError, RuntimeError, OverflowError, MemoryError, SyntaxError,
            tokenize.TokenError)  # fmt: skip


class TooLarge(Invalid):
    """A model beyond the limits of the module docstring."""


def has_type(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that a bool is no int and a float must be finite."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) and not (isinstance(value, float) and not math.isfinite(value))


def check_keys(
    where: str, mapping: Mapping[str, Any], spec: Mapping[str, tuple[type, ...]], optional: tuple[str, ...] = ()
):
    """Every key of ``spec`` but the ``optional`` ones present, no other key, and each value of its types."""
    unknown = sorted(mapping.keys() - spec.keys())
    if unknown:
        raise Invalid(f"{where} holds an unknown key {unknown[0]!r:.80}")
    for key, types in spec.items():
        if key not in mapping and key not in optional:
            raise Invalid(f"{where} lacks key {key!r}")
        if key in mapping and not has_type(mapping[key], types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise Invalid(f"{where} {key}={mapping[key]!r:.80} is not {expected}")


def check_limits(kind: str, K: int, d: int, n_iter: int) -> None:
    """Refuse (as TooLarge) a model beyond MAX_COMPONENTS, MAX_FEATURES, MAX_ITERATIONS, MAX_PARAMETER_ELEMENTS."""
    for key, value, name, limit in (("n_components", K, "MAX_COMPONENTS", MAX_COMPONENTS),
                                    ("n_features", d, "MAX_FEATURES", MAX_FEATURES),
                                    ("n_iter", n_iter, "MAX_ITERATIONS", MAX_ITERATIONS)):  # fmt: skip
        if value > limit:
            raise TooLarge(f"{key}={value} is more than {name}={limit}")
    largest = max(K * d, math.prod(covariance_shape(kind, K, d)))
    if largest > MAX_PARAMETER_ELEMENTS:
        raise TooLarge(f"covariance_type {kind!r} with n_components={K}, n_features={d} needs an array of {largest} "
                        f"values, more than MAX_PARAMETER_ELEMENTS={MAX_PARAMETER_ELEMENTS}")  # fmt: skip


def check_values(arrays: Mapping[str, np.ndarray], kind: str, names: tuple[str, ...] = PARAMETER_ARRAYS) -> None:
    """Finite arrays, weights summing to 1, positive definite covariances matching their precision
    factors, and finite log-densities (:func:`check_densities`)."""
    for name in names:
        if not np.all(np.isfinite(arrays[name])):
            raise Invalid(f"array {name!r} holds NaN or infinite values")
    weights, covariances = arrays["weights"], arrays["covariances"]
    if np.any(weights < 0):
        raise Invalid(f"weights must be non-negative, but component {int(np.argmax(weights < 0))} has weight < 0")
    if abs(math.fsum(weights) - 1.0) > 1e-8:
        raise Invalid(f"weights sum to {math.fsum(weights):.12g}, not 1")
    if kind in ("full", "tied"):
        for k, cov in enumerate(covariances if kind == "full" else covariances[None]):
            if not is_spd(cov):
                what = f"covariance of component {k}" if kind == "full" else "the tied covariance"
                raise Invalid(f"{what} is not symmetric positive definite")
    elif np.any(covariances <= 0):
        k = int(np.argmax(np.reshape(covariances <= 0, (len(covariances), -1)).any(axis=1)))
        raise Invalid(f"covariance of component {k} is not positive")
    expected = precision_cholesky(covariances, kind)
    error, scale = np.max(np.abs(arrays["precisions_cholesky"] - expected)), np.max(np.abs(expected))
    if error > 1e-8 * scale:
        raise Invalid(f"precisions_cholesky does not match the covariances (off by {error:.3g} at scale {scale:.3g})")
    check_densities(arrays, kind)


# Squared Mahalanobis distances and precisions must stay below exp(this): the largest float64, with margin.
LOG_LIMIT = math.log(np.finfo(np.float64).max) - math.log(16.0)


def check_densities(arrays: Mapping[str, np.ndarray], kind: str) -> None:
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
            log_u = np.broadcast_to(log_norms(factors.reshape(1 if kind == "tied" else K, -1)), (K,))
        log_r = float(np.max(log_norms(means - means.mean(axis=0))))
        overflows = ~(np.isfinite(log_det) & (2 * log_u < LOG_LIMIT))  # NaN compares False: refused too
        too_far = ~((2 * log_r < LOG_LIMIT) & (2 * (math.log(2.0) + log_r + log_u) < LOG_LIMIT))
    if overflows.any():
        k = int(np.argmax(overflows))
        raise Invalid(f"component {k} gives non-finite log-densities ({too_small(arrays['covariances'], kind, k)}); "
                       "refit with a larger reg_covar")  # fmt: skip
    if too_far.any():
        raise Invalid(f"component {int(np.argmax(too_far))} gives non-finite log-densities (the means lie too far "
                       "apart for its covariance); scale the input data and refit")  # fmt: skip


def log_norms(rows: np.ndarray) -> np.ndarray:
    """log of the Euclidean norm of every row of ``rows`` (n, m), shape (n,), without overflow (-inf for 0)."""
    scale = np.max(np.abs(rows), axis=1, initial=0.0)
    safe = np.where(scale > 0, scale, 1.0)
    with np.errstate(divide="ignore"):
        return np.log(scale) + 0.5 * np.log(np.sum((rows / safe[:, None]) ** 2, axis=1))


def too_small(covariances: np.ndarray, kind: str, k: int) -> str:
    if kind in ("diag", "spherical"):
        return f"{kind} covariance {float(np.min(covariances[k]))!r} is too small"
    return f"{'the' if kind == 'tied' else 'its'} {kind} covariance is too close to singular"


def is_spd(cov: np.ndarray) -> bool:
    """Symmetric to 1e-10 relative to the largest entry, and with a Cholesky factor."""
    try:
        linalg.cholesky(cov, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return False
    return bool(np.max(np.abs(cov - cov.T)) <= 1e-10 * np.max(np.abs(cov)))
