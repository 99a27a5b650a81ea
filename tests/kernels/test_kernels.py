"""Pure kernels against naive references: scipy densities, two-pass statistics, hypothesis chunkings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from dgmm.kernels.gaussian import precision_cholesky, precision_cholesky_from_precisions
from dgmm.kernels.mstep import params_from_stats
from dgmm.kernels.params import MixtureParams
from dgmm.kernels.posterior import log_density, log_responsibilities, weighted_log_prob
from dgmm.kernels.reference import reference_chunk_stats as chunk_stats
from dgmm.kernels.stats import accumulate, merge_stats, zero_stats
from dgmm.testing import COVARIANCE_TYPES, assert_close, chunk_cuts, chunks_of, random_params


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 3, 8])
def test_log_densities_match_scipy(covariance_type, d):
    rng = np.random.default_rng(d)
    params = random_params(rng, 3, d, covariance_type)
    X = rng.normal(size=(50, d)) * 3
    weighted = weighted_log_prob(X, params)
    for k in range(3):
        expected = multivariate_normal(params.means[k], params.dense_covariances[k]).logpdf(X)
        assert_close(weighted[:, k] - np.log(params.weights[k]), expected, 1e-12)
    mixture = np.log(
        sum(
            params.weights[k] * multivariate_normal(params.means[k], params.dense_covariances[k]).pdf(X)
            for k in range(3)
        )
    )
    assert_close(log_density(X, params), mixture, 1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precision_cholesky_round_trips(covariance_type):
    rng = np.random.default_rng(1)
    params = random_params(rng, 2, 4, covariance_type)
    again = MixtureParams.from_precisions(params.weights, params.means, params.precisions, covariance_type)
    assert_close(again.precisions_cholesky, params.precisions_cholesky, 1e-12)
    assert_close(again.covariances, params.covariances, 1e-12)
    assert_close(
        precision_cholesky_from_precisions(params.precisions, covariance_type), params.precisions_cholesky, 1e-12
    )


def test_responsibilities_survive_far_outliers():
    params = random_params(np.random.default_rng(2), 3, 2, "full")
    X = np.array([[1e6, -1e6], [0.0, 0.0]])
    log_norm, log_resp = log_responsibilities(X, params)
    assert np.all(np.isfinite(log_norm)) and np.all(np.isfinite(log_resp))
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0)


def two_pass_params(X, resp, covariance_type, reg_covar):
    """Textbook M-step: means first, then covariances about them (float64)."""
    nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
    means = resp.T @ X / nk[:, None]
    K, d = means.shape
    full = np.stack([((X - means[k]) * resp[:, [k]]).T @ (X - means[k]) / nk[k] for k in range(K)])
    cov = {
        "full": full + reg_covar * np.eye(d),
        "tied": np.einsum("k,kij->ij", nk, full) / nk.sum() + reg_covar * np.eye(d),
        "diag": np.diagonal(full, axis1=1, axis2=2) + reg_covar,
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(axis=1) + reg_covar,
    }[covariance_type]
    return nk / nk.sum(), means, cov


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_mstep_matches_two_pass_reference(covariance_type, offset):
    rng = np.random.default_rng(3)
    params = random_params(rng, 3, 4, covariance_type)
    X = rng.normal(size=(400, 4)) * 2
    resp = np.exp(log_responsibilities(X, params)[1])
    shifted = MixtureParams(
        params.weights, params.means + offset, params.covariances, params.precisions_cholesky, covariance_type
    )
    stats = accumulate(X + offset, resp, shifted.means, covariance_type)
    new = params_from_stats(stats, shifted.means, covariance_type, 1e-6)
    weights, means, cov = two_pass_params(X + offset, resp, covariance_type, 1e-6)
    assert_close(new.weights, weights, 1e-12)
    assert_close(new.means - offset, means - offset, 1e-6 if offset else 1e-12)
    assert_close(new.covariances, cov, 1e-6 if offset else 1e-12)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(2, 120),
    d=st.integers(1, 4),
    K=st.integers(1, 3),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
)
def test_merge_of_any_chunking_equals_stats_of_concatenation(data, n, d, K, covariance_type):
    rng = np.random.default_rng(n * 31 + d * 7 + K)
    params = random_params(rng, K, d, covariance_type)
    X = rng.normal(size=(n, d)) * 2
    pieces = [block for _, block in chunks_of(X, data.draw(chunk_cuts(n, max_cuts=8)))]
    merged = merge_stats([zero_stats(K, d, covariance_type)] + [chunk_stats(p, params) for p in pieces])
    whole = chunk_stats(X, params)
    assert merged.n_rows == whole.n_rows == n
    assert_close(merged.loglik, whole.loglik, 1e-10)
    for name in ("s0", "s1", "s2"):
        assert_close(getattr(merged, name), getattr(whole, name), 1e-10, name)


def test_singular_covariance_is_a_clear_error():
    from dgmm.errors import FitError

    with pytest.raises(FitError, match="increase reg_covar"):
        precision_cholesky(np.zeros((1, 2, 2)), "full")
    with pytest.raises(FitError, match="increase reg_covar"):
        precision_cholesky(np.array([1.0, 0.0]), "spherical")


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_stacked_class_scores_equal_each_class_scored_alone(covariance_type):
    """Every class's components at once (two matrix products per tile of rows, centred on the mean of the means)
    give each class's log-likelihood as scoring the classes one by one does, also for data far from zero."""
    from concurrent.futures import ThreadPoolExecutor

    from dgmm.kernels.posterior import class_log_likelihoods, log_density, stacked_log_likelihoods

    rng = np.random.default_rng(4)
    for offset in (0.0, 1e4):
        classes = tuple(random_params(rng, 16, 12, covariance_type) for _ in range(300))
        classes = tuple(MixtureParams(p.weights, p.means + offset, p.covariances, p.precisions_cholesky,
                                      covariance_type) for p in classes)  # fmt: skip
        X = rng.normal(size=(2_000, 12)) * 2.0 + offset  # several tiles of rows
        got = stacked_log_likelihoods(X, classes)
        want = np.stack([log_density(X, p) for p in classes], axis=1)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(class_log_likelihoods(X, classes), got)
        with ThreadPoolExecutor(3) as pool:  # row tiles on threads: the same bits
            np.testing.assert_array_equal(stacked_log_likelihoods(X, classes, pool.map), got)
    mixed = (random_params(rng, 2, 3, covariance_type), random_params(rng, 3, 3, covariance_type))
    X = rng.normal(size=(50, 3))
    np.testing.assert_array_equal(  # classes of different sizes are scored one by one
        class_log_likelihoods(X, mixed), np.stack([log_density(X, p) for p in mixed], axis=1)
    )


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_expanded_statistics_equal_the_component_loop_also_far_from_zero(covariance_type):
    """accumulate_expanded (two matrix products about the mean of the centres) gives accumulate's statistics to
    rounding relative to the components' spread, with and without weights, whatever the offset of the data."""
    from dgmm.kernels.stats import accumulate_expanded

    rng = np.random.default_rng(8)
    for offset in (0.0, 1e5):
        centres = rng.normal(scale=3.0, size=(32, 6)) + offset
        X = centres[rng.integers(0, 32, 5_000)] + rng.normal(size=(5_000, 6))
        resp = rng.dirichlet(np.ones(32), size=5_000)
        for weights in (None, rng.uniform(0, 2, 5_000)):
            got = accumulate_expanded(X, resp, centres, covariance_type, 1.5, weights)
            want = accumulate(X, resp, centres, covariance_type, 1.5, weights)
            np.testing.assert_array_equal(got.s0, want.s0)
            scale = np.abs(want.s2).max()
            np.testing.assert_allclose(got.s1, want.s1, atol=1e-11 * np.sqrt(scale * want.s0.max()))
            np.testing.assert_allclose(got.s2, want.s2, rtol=1e-10, atol=1e-11 * scale)
            assert (got.n_rows, got.loglik, got.weight, got.n_zero_weight) == (
                want.n_rows, want.loglik, want.weight, want.n_zero_weight)  # fmt: skip
