"""Conversion to and from scikit-learn's ``sklearn.mixture.GaussianMixture`` (fitted models)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ..persist.fitted import FittedState
from .parameters import BY_NAME

# Constructor parameters the two estimators share (same names, same meanings).
SHARED = (
    "n_components",
    "covariance_type",
    "tol",
    "reg_covar",
    "max_iter",
    "n_init",
    "random_state",
    "warm_start",
    "verbose",
    "verbose_interval",
    "weights_init",
    "means_init",
    "precisions_init",
)


def to_sklearn(model: Any):
    """A fitted ``sklearn.mixture.GaussianMixture`` with the same parameters and fitted state.

    Its ``predict``, ``predict_proba`` and ``score_samples`` agree with dgmm's to rounding
    (scikit-learn computes the same densities from the same precision Cholesky factors).
    ``init_params`` maps to scikit-learn's where it has the method ("kmeans", "k-means++",
    "random", "random_from_data"); "k-means||" becomes "kmeans".
    """
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    model.fitted_params()  # NotFittedError before fit
    init = "kmeans" if model.init_params == "k-means||" else model.init_params
    converted = SklearnGaussianMixture(init_params=init, **{name: getattr(model, name) for name in SHARED})
    FittedState.of(model).apply(converted, dgmm_only=False)
    return converted


def from_sklearn(cls: type, fitted: Any, **params: Any):
    """A fitted ``cls`` (:class:`~dgmm.GaussianMixture`) from a fitted ``sklearn.mixture.GaussianMixture``.

    ``params`` sets dgmm's own parameters (``split_every``, ``chunk_rows``, ``dtype``, ...) for later
    fits and scoring; the shared ones come from ``fitted``.
    """
    if not hasattr(fitted, "means_") or not hasattr(fitted, "precisions_cholesky_"):
        raise ParameterError(
            f"from_sklearn needs a fitted sklearn.mixture.GaussianMixture, got {type(fitted).__name__}"
        )
    unknown = sorted(set(params) - set(BY_NAME) - {"client"})
    if unknown or set(params) & set(SHARED):
        raise ParameterError(
            f"from_sklearn: {', '.join(sorted(set(params) & set(SHARED)) + unknown)} cannot be "
            "set here; the shared parameters come from the fitted model"
        )
    init = fitted.init_params if fitted.init_params in BY_NAME["init_params"].choices else "kmeans"
    model = cls(init_params=init, **{name: getattr(fitted, name) for name in SHARED}, **params)
    FittedState.of(fitted).apply(model)
    model.split_merge_moves_, model.cache_used_ = [], "none"
    return model


def to_onnx(model: Any):
    """The fitted model as an ONNX graph (``onnx.ModelProto``), through scikit-learn's converter.

    Input ``X``: float64, shape (n, d). Outputs ``label`` (n, 1), ``probabilities`` (n, K) and
    ``score_samples`` (n, 1), equal to ``predict``, ``predict_proba`` and ``score_samples`` to rounding.
    Needs the ``onnx`` extra (``pip install 'dgmm[onnx]'``: skl2onnx, onnxruntime to run it).
    """
    try:
        from skl2onnx import to_onnx as convert
    except ImportError:
        raise ParameterError("ONNX export needs skl2onnx: pip install 'dgmm[onnx]'") from None
    example = np.zeros((1, model.fitted_params().n_features), dtype=np.float64)
    return convert(to_sklearn(model), example, options={"score_samples": True})
