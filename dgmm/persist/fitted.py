"""What a fit leaves on a mixture, as one record: written by the fit, read and written by model files, exchanged
with scikit-learn, compared by the tests. Its fields are declared here once; the estimator's attributes are the
scikit-learn names with a trailing underscore (``weights_``, ``n_iter_``, ``n_features_in_``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels.params import MixtureParams

PARAMETER_ARRAYS = ("weights", "means", "covariances", "precisions_cholesky")
# every fitted attribute of a GaussianMixture, as scikit-learn names them (dgmm adds lower_bounds_, n_rows_dropped_)
ATTRIBUTES = tuple(f"{name}_" for name in PARAMETER_ARRAYS) + (
    "precisions_",
    "converged_",
    "n_iter_",
    "lower_bound_",
    "lower_bounds_",
    "n_features_in_",
    "feature_names_in_",
    "n_rows_dropped_",
)


@dataclass(frozen=True)
class FittedState:
    """The fitted state of one mixture.

    Attributes
    ----------
    params : the fitted weights (K,), means (K, d), covariances and precision Cholesky factors, float64
    converged : whether the best run converged
    n_iter : EM iterations of the best run
    lower_bound : mean log-likelihood of its last E-step (-inf when it never ran one)
    lower_bounds : (n_iter,) the mean log-likelihood of every iteration
    n_features : d
    feature_names : (d,) object array of the input's column names, or None
    n_rows_dropped : rows of weight 0 the last pass saw (dropped for NaN, or of sample weight 0); None unknown
    precisions : the precision matrices as the model holds them (scikit-learn's own product of the Cholesky
        factors, for a converted model); None: computed from ``params``
    """

    params: MixtureParams
    converged: bool
    n_iter: int
    lower_bound: float
    lower_bounds: tuple[float, ...]
    n_features: int
    feature_names: np.ndarray | None = None
    n_rows_dropped: int | None = None
    precisions: np.ndarray | None = None

    @classmethod
    def of(cls, model: Any) -> "FittedState":
        """The state of a fitted dgmm or scikit-learn mixture (which has no ``lower_bounds_`` before 1.7)."""
        params = MixtureParams(
            *(np.asarray(getattr(model, f"{name}_"), dtype=np.float64) for name in PARAMETER_ARRAYS),
            model.covariance_type,
        )
        lower_bound = float(model.lower_bound_)
        names = getattr(model, "feature_names_in_", None)
        dropped = getattr(model, "n_rows_dropped_", None)
        return cls(
            params,
            bool(model.converged_),
            int(model.n_iter_),
            lower_bound,
            tuple(float(v) for v in getattr(model, "lower_bounds_", [lower_bound])),
            int(model.n_features_in_),
            None if names is None else np.asarray(names, dtype=object),
            None if dropped is None else int(dropped),
            getattr(model, "precisions_", None),
        )

    def apply(self, model: Any, dgmm_only: bool = True) -> None:
        """Set the fitted attributes of ``model``; ``dgmm_only=False`` leaves out ``n_rows_dropped_`` (a
        scikit-learn mixture has none). A state without feature names removes a previous fit's."""
        p = self.params
        for name in PARAMETER_ARRAYS:
            setattr(model, f"{name}_", getattr(p, name))
        model.precisions_ = p.precisions if self.precisions is None else self.precisions
        model.converged_, model.n_iter_ = self.converged, self.n_iter
        model.lower_bound_, model.lower_bounds_ = self.lower_bound, list(self.lower_bounds)
        model.n_features_in_ = self.n_features
        if self.feature_names is not None:
            model.feature_names_in_ = self.feature_names
        elif hasattr(model, "feature_names_in_"):
            del model.feature_names_in_
        if dgmm_only and self.n_rows_dropped is not None:
            model.n_rows_dropped_ = self.n_rows_dropped

    @property
    def stored_lower_bound(self) -> float | None:
        """The lower bound as a file stores it: finite, or None for -inf."""
        return self.lower_bound if math.isfinite(self.lower_bound) else None
