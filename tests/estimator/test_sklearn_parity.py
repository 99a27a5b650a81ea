"""Fits equal scikit-learn's GaussianMixture given identical initial parameters."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnGM

import dgmm
from dgmm.testing import COVARIANCE_TYPES, DATASETS, assert_close, initial_params, make_dataset


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
