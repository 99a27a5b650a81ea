"""Validation of GaussianMixture parameters, declared in one place."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..errors import DataError, ParameterError
from ..kernels.gaussian import COVARIANCE_TYPES
from ..kernels.init import INIT_METHODS
from ..kernels.weights import NAN_POLICIES

LATER_INITS: tuple[str, ...] = ()  # init methods named but not available yet
CACHE_POLICIES = ("auto", "memory", "none")


def check_random_state(seed: Any) -> np.random.RandomState:
    """None, an int or a RandomState -> RandomState (scikit-learn's convention)."""
    if seed is None:
        return np.random.RandomState()
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ParameterError(f"random_state={seed!r} must be None, an int or a numpy RandomState")


def param_error(name: str, value: Any, allowed: str) -> ParameterError:
    return ParameterError(f"{name}={value!r} is invalid; expected {allowed}")


def check_n_samples(n_samples: int, n_components: int) -> None:
    """Refuse data with fewer rows than a fit needs (scikit-learn's wording, plus the fix)."""
    if n_samples < max(2, n_components):
        raise DataError(
            f"expected n_samples >= max(2, n_components) but got n_components = {n_components}, "
            f"n_samples = {n_samples}; fit fewer components or give more rows"
        )


def validate_params(est) -> None:
    """Check every constructor parameter of a GaussianMixture; ParameterError names the bad one."""

    def integer(name: str, low: int) -> None:
        value = getattr(est, name)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise param_error(name, value, f"an int >= {low}")

    def real(name: str) -> None:
        value = getattr(est, name)
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
            raise param_error(name, value, "a float >= 0")

    integer("n_components", 1)
    integer("max_iter", 0)
    integer("n_init", 1)
    integer("split_every", 2)
    integer("verbose", 0)
    integer("verbose_interval", 1)
    integer("split_merge", 0)
    if est.chunk_rows is not None:
        integer("chunk_rows", 1)
    if est.cache not in CACHE_POLICIES:
        raise param_error("cache", est.cache, f"one of {', '.join(CACHE_POLICIES)}")
    if est.nan_policy not in NAN_POLICIES:
        raise param_error("nan_policy", est.nan_policy, f"one of {', '.join(NAN_POLICIES)}")
    real("tol")
    real("reg_covar")
    real("stall_timeout")
    if est.covariance_type not in COVARIANCE_TYPES:
        raise param_error("covariance_type", est.covariance_type, f"one of {', '.join(COVARIANCE_TYPES)}")
    if est.init_params in LATER_INITS:
        raise param_error("init_params", est.init_params, f"one of {', '.join(INIT_METHODS)} (not available yet)")
    if est.init_params not in INIT_METHODS:
        raise param_error("init_params", est.init_params, f"one of {', '.join(INIT_METHODS)}")

def checked_inits(est, n_features: int) -> tuple[np.ndarray | None, ...]:
    """weights_init, means_init, precisions_init as float64 arrays of the right shapes (or None)."""
    K, d = est.n_components, n_features
    weights = means = precisions = None
    if est.weights_init is not None:
        weights = np.asarray(est.weights_init, dtype=np.float64)
        if weights.shape != (K,):
            raise param_error("weights_init", weights.shape, f"shape ({K},)")
        if np.any(weights < 0) or np.any(weights > 1) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
            raise ParameterError(f"weights_init must be in [0, 1] and sum to 1, got sum {weights.sum():.6f}")
    if est.means_init is not None:
        means = np.asarray(est.means_init, dtype=np.float64)
        if means.shape != (K, d):
            raise param_error("means_init", means.shape, f"shape ({K}, {d})")
    if est.precisions_init is not None:
        precisions = np.asarray(est.precisions_init, dtype=np.float64)
        expected = {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}[est.covariance_type]
        if precisions.shape != expected:
            raise param_error("precisions_init", precisions.shape, f"shape {expected} for {est.covariance_type}")
        if est.covariance_type in ("full", "tied"):
            stack = precisions.reshape(-1, d, d)
            if not np.allclose(stack, np.swapaxes(stack, 1, 2), atol=1e-12 * np.abs(stack).max()):
                raise ParameterError("precisions_init: every precision matrix must be symmetric")
        elif np.any(precisions <= 0):
            raise ParameterError("precisions_init: every precision must be positive")
    return weights, means, precisions
