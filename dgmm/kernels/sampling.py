"""Rows drawn from a mixture, as scikit-learn's ``GaussianMixture.sample`` draws them."""

from __future__ import annotations

import numpy as np

from .params import MixtureParams


def draw(params: MixtureParams, n_samples: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` rows, grouped by component (counts from one multinomial draw).

    Returns
    -------
    X : ndarray of shape (n_samples, d)
    y : ndarray of shape (n_samples,), the component of each row
    """
    counts = rng.multinomial(n_samples, params.weights)
    d = params.n_features
    parts = []
    for k, count in enumerate(counts):
        if params.covariance_type in ("full", "tied"):
            cov = params.covariances[k] if params.covariance_type == "full" else params.covariances
            parts.append(rng.multivariate_normal(params.means[k], cov, int(count)))
        else:
            scale = np.sqrt(params.covariances[k])
            parts.append(params.means[k] + rng.standard_normal(size=(int(count), d)) * scale)
    y = np.concatenate([np.full(int(c), k, dtype=np.int64) for k, c in enumerate(counts)])
    return np.vstack(parts), y
