"""Fits equal scikit-learn's GaussianMixture given identical initial parameters."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnGM

import dgmm

from conftest import COVARIANCE_TYPES, assert_close, initial_params


def _blobs(rng, sizes, means, scales):
    return np.vstack([rng.normal(m, s, size=(n, len(np.atleast_1d(m)))) for n, m, s in zip(sizes, means, scales)])


def make_dataset(name: str):
    """(X, K) for the reference data sets."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "1d_separated":
        return _blobs(rng, [300, 200], [[0.0], [8.0]], [1.0, 2.0]), 2
    if name == "single_component":
        return rng.normal(size=(400, 3)) @ np.array([[2, 0, 0], [1, 1, 0], [0, 0.5, 0.3]]), 1
    if name == "d20_separated":
        return _blobs(rng, [250, 200, 150], [np.zeros(20), np.full(20, 3.0), np.r_[np.full(10, -3.0), np.zeros(10)]], [1.0, 1.5, 0.7]), 3
    if name == "2d_overlapping":
        return _blobs(rng, [300, 300, 200], [[0.0, 0.0], [1.0, 0.5], [0.5, 1.5]], [1.0, 0.8, 1.2]), 3
    raise KeyError(name)


DATASETS = ["1d_separated", "single_component", "d20_separated", "2d_overlapping"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_matches_sklearn_after_1_10_50_iterations(dataset, covariance_type):
    X, K = make_dataset(dataset)
    init = initial_params(X, K, covariance_type)
    for max_iter in (1, 10, 50):
        kwargs = dict(covariance_type=covariance_type, tol=0.0, max_iter=max_iter, reg_covar=1e-6, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = SklearnGM(K, **kwargs).fit(X)
            ours = dgmm.GaussianMixture(K, **kwargs).fit(X)
        where = f"{dataset} {covariance_type} max_iter={max_iter}"
        assert ours.n_iter_ == ref.n_iter_ == max_iter
        for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
            assert_close(getattr(ours, attr), getattr(ref, attr), 1e-8, f"{attr} {where}")
        assert_close(ours.lower_bound_, ref.lower_bound_, 1e-8, f"lower_bound_ {where}")
        assert_close(ours.lower_bounds_, ref.lower_bounds_, 1e-8, f"lower_bounds_ {where}")
        assert_close(ours.score(X), ref.score(X), 1e-8, f"score {where}")
        assert_close(ours.score_samples(X), ref.score_samples(X), 1e-8, f"score_samples {where}")
        assert_close(ours.predict_proba(X), ref.predict_proba(X), 1e-8, f"predict_proba {where}")
        assert_close(ours.bic(X), ref.bic(X), 1e-8, f"bic {where}")
        assert_close(ours.aic(X), ref.aic(X), 1e-8, f"aic {where}")
        assert ours.converged_ == ref.converged_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_convergence_by_tol_matches_sklearn(covariance_type):
    X, K = make_dataset("2d_overlapping")
    init = initial_params(X, K, covariance_type, seed=1)
    kwargs = dict(covariance_type=covariance_type, tol=1e-4, max_iter=500, **init)
    ref = SklearnGM(K, **kwargs).fit(X)
    ours = dgmm.GaussianMixture(K, **kwargs).fit(X)
    assert ours.converged_ and ref.converged_
    assert ours.n_iter_ == ref.n_iter_
    assert_close(ours.means_, ref.means_, 1e-8)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_max_iter_zero_returns_the_initial_parameters():
    X, K = make_dataset("2d_overlapping")
    init = initial_params(X, K, "full")
    ours = dgmm.GaussianMixture(K, max_iter=0, **init).fit(X)
    assert ours.n_iter_ == 0 and not ours.converged_ and ours.lower_bound_ == -np.inf
    assert_close(ours.means_, init["means_init"], 1e-15)
    assert_close(ours.precisions_, init["precisions_init"], 1e-12)
