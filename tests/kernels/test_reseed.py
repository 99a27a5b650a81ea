"""Dead or collapsing components are re-seeded (split of the heaviest component), not fatal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dgmm
from dgmm.kernels.mstep import m_step, split_heaviest
from dgmm.kernels.stats import accumulate


@pytest.fixture(scope="module")
def three_blobs():
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    return np.concatenate([c + rng.normal(size=(300, 2)) for c in centres]), centres


def test_a_component_started_where_no_data_is_reseeded_and_finds_the_third_blob(three_blobs):
    X, centres = three_blobs
    start = dict(
        means_init=[[0.0, 0.0], [4.0, 4.0], [500.0, 500.0]],
        weights_init=[0.4, 0.4, 0.2],
        precisions_init=np.repeat(np.eye(2)[None], 3, axis=0),
    )
    with pytest.warns(
        dgmm.ReseedWarning,
        match=r"component 2 died or collapsed at iteration 1; re-seeded by "
        r"splitting component \d",
    ):
        model = dgmm.GaussianMixture(3, max_iter=200, tol=1e-8, **start).fit(X)
    assert model.converged_ and np.all(model.weights_ > 0.3)
    for c in centres:  # every blob has a component on it
        assert np.min(np.linalg.norm(model.means_ - c, axis=1)) < 0.2


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_without_reg_covar_is_reseeded_not_fatal(covariance_type):
    rng = np.random.default_rng(1)
    X = np.concatenate([np.zeros((60, 2)), rng.normal(size=(300, 2)) + 5.0])
    kwargs = dict(
        reg_covar=0.0,
        covariance_type=covariance_type,
        max_iter=5,
        tol=0.0,
        means_init=[[0.0, 0.0], [5.0, 5.0]],
        weights_init=[0.2, 0.8],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = dgmm.GaussianMixture(2, **kwargs).fit(X)  # before: FitError "ill-defined empirical covariance"
    assert np.all(np.isfinite(model.means_)) and np.all(model.weights_ > 0)
    reseeds = [w for w in caught if issubclass(w.category, dgmm.ReseedWarning)]
    # a zero variance is exactly 0 for diag/spherical; a full covariance may round to a tiny positive one
    assert reseeds or covariance_type == "full"


def test_split_heaviest_halves_weight_along_the_principal_axis():
    weights = np.array([0.7, 0.3, 0.0])
    means = np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    covariances = np.array([np.diag([4.0, 1.0]), np.eye(2), np.eye(2)])
    w, m, c, moves = split_heaviest(weights, means, covariances, np.array([False, False, True]), "full")
    assert moves == [(2, 0)]
    np.testing.assert_allclose(w, [0.35, 0.3, 0.35])
    np.testing.assert_allclose(sorted(map(tuple, m[[0, 2]])), [(-2.0, 0.0), (2.0, 0.0)], atol=1e-12)
    np.testing.assert_array_equal(c[2], c[0])


def test_healthy_statistics_are_left_alone():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    resp = rng.dirichlet([1.0, 1.0], size=200)
    centres = np.zeros((2, 2))
    params, moves = m_step(accumulate(X, resp, centres, "full"), centres, "full", 1e-6)
    assert moves == [] and np.isclose(params.weights.sum(), 1.0)
