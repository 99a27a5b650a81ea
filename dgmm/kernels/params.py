"""The parameters θ = (π, μ, Σ) of a Gaussian mixture, as one immutable value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussian import (
    CovarianceType,
    covariances_from_precisions,
    dense_covariances,
    precision_cholesky,
    precision_cholesky_from_precisions,
    precisions_from_cholesky,
)


@dataclass(frozen=True)
class MixtureParams:
    """Weights, means, covariances and their precision Cholesky factors.

    Attributes
    ----------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    covariances : ndarray, shape by ``covariance_type`` (see :mod:`dgmm.kernels.gaussian`)
    precisions_cholesky : ndarray, same shape as ``covariances``
    covariance_type : "full", "tied", "diag" or "spherical"
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: CovarianceType

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    @property
    def precisions(self) -> np.ndarray:
        return precisions_from_cholesky(self.precisions_cholesky, self.covariance_type)

    @property
    def dense_covariances(self) -> np.ndarray:
        """Covariances as dense matrices, shape (K, d, d)."""
        return dense_covariances(self.covariances, self.covariance_type, self.n_components, self.n_features)

    @classmethod
    def from_covariances(
        cls,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        covariance_type: CovarianceType,
    ) -> "MixtureParams":
        """Build from covariances; raises :class:`~dgmm.errors.FitError` if one is not SPD."""
        covariances = np.asarray(covariances, dtype=np.float64)
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariances,
            precision_cholesky(covariances, covariance_type),
            covariance_type,
        )

    @classmethod
    def from_precisions(
        cls,
        weights: np.ndarray,
        means: np.ndarray,
        precisions: np.ndarray,
        covariance_type: CovarianceType,
    ) -> "MixtureParams":
        """Build from precision matrices (scikit-learn's ``precisions_init``)."""
        precisions = np.asarray(precisions, dtype=np.float64)
        cholesky = precision_cholesky_from_precisions(precisions, covariance_type)  # first: refuses a singular one
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariances_from_precisions(precisions, covariance_type),
            cholesky,
            covariance_type,
        )

    def is_finite(self) -> bool:
        return bool(
            np.all(np.isfinite(self.weights))
            and np.all(np.isfinite(self.means))
            and np.all(np.isfinite(self.covariances))
            and np.all(np.isfinite(self.precisions_cholesky))
        )

    def n_free_parameters(self) -> int:
        """Free parameters, as scikit-learn counts them for BIC/AIC."""
        K, d = self.means.shape
        cov_params = {
            "full": K * d * (d + 1) / 2.0,
            "tied": d * (d + 1) / 2.0,
            "diag": K * d,
            "spherical": K,
        }[self.covariance_type]
        return int(cov_params + K * d + K - 1)
