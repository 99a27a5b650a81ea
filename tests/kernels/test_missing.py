"""The marginalised E-step and expected statistics against a brute-force per-row implementation of the formulas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.kernels.missing import conditional_means, has_missing, marginal_log_prob, marginal_stats
from dgmm.kernels.params import MixtureParams
from dgmm.kernels.stats import s2_shape

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def mixture(covariance_type: str, k: int = 4, d: int = 6, seed: int = 0) -> MixtureParams:
    full = random_mixture(k, d, seed=seed, separation=3.0)
    cov = full.covariances
    covariances = {
        "full": cov,
        "tied": cov.mean(axis=0),
        "diag": np.diagonal(cov, axis1=1, axis2=2).copy(),
        "spherical": np.diagonal(cov, axis1=1, axis2=2).mean(axis=1),
    }[covariance_type]
    return MixtureParams.from_covariances(full.weights, full.means, covariances, covariance_type)


def with_holes(X: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """MCAR holes, plus rows complete, with one observed value, and with every pattern size."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    out[rng.random(X.shape) < fraction] = np.nan
    d = X.shape[1]
    empty = np.isnan(out).all(axis=1)  # rows with nothing observed are dropped before any kernel
    out[empty, rng.integers(d, size=int(empty.sum()))] = X[empty, 0]
    for s in range(d):  # a row with s missing values, for every s < d
        out[s, :] = X[s]
        out[s, :s] = np.nan
    out[d, 1:] = np.nan  # one observed value
    return out


def reference_stats(X, params: MixtureParams, weights=None):
    """The formulas row by row: N(x_o; μ_o, Σ_oo), E[x_m|x_o] and Cov[x_m|x_o] per component."""
    n, d = X.shape
    K = params.n_components
    cov = params.dense_covariances
    w = np.ones(n) if weights is None else weights
    loglik, s0, s1, s2 = 0.0, np.zeros(K), np.zeros((K, d)), np.zeros((K, d, d))
    for i in range(n):
        if w[i] == 0:
            continue
        o = ~np.isnan(X[i])
        m = ~o
        logp = np.empty(K)
        moments = []
        for k in range(K):
            S, mu = cov[k], params.means[k]
            logp[k] = np.log(params.weights[k]) + multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(X[i, o])
            solve = np.linalg.solve(S[np.ix_(o, o)], S[np.ix_(o, m)])  # Σ_oo⁻¹ Σ_om
            x_hat = X[i].copy()
            x_hat[m] = mu[m] + solve.T @ (X[i, o] - mu[o])
            C = np.zeros((d, d))
            C[np.ix_(m, m)] = S[np.ix_(m, m)] - S[np.ix_(m, o)] @ solve
            moments.append((x_hat - mu, C))
        total = logsumexp(logp)
        loglik += w[i] * total
        r = w[i] * np.exp(logp - total)
        for k, (z, C) in enumerate(moments):
            s0[k] += r[k]
            s1[k] += r[k] * z
            s2[k] += r[k] * (np.outer(z, z) + C)
    if params.covariance_type == "tied":
        s2 = s2.sum(axis=0)
    elif params.covariance_type in ("diag", "spherical"):
        s2 = np.diagonal(s2, axis1=1, axis2=2)
    return loglik, s0, s1, s2


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("fraction", [0.1, 0.5])
@pytest.mark.parametrize("pattern_cache", [True, False])
def test_statistics_match_the_formulas_row_by_row(covariance_type, fraction, pattern_cache, monkeypatch):
    """Patterns' blocks inverted once per chunk, or (a chunk with too many patterns) every row's factorised."""
    if not pattern_cache:
        monkeypatch.setattr("dgmm.kernels.missing_patterns.BLOCK_CACHE_ELEMENTS", 0)
    params = mixture(covariance_type)
    X = with_holes(sample_mixture(random_mixture(4, 6, seed=0, separation=3.0), 400, seed=1)[0], fraction, seed=2)
    weights = np.random.default_rng(3).uniform(0.0, 2.0, len(X))
    weights[::17] = 0.0
    for w in (None, weights):
        stats = marginal_stats(X, params, w)
        loglik, s0, s1, s2 = reference_stats(X, params, w)
        assert stats.s2.shape == s2_shape(4, 6, covariance_type)
        np.testing.assert_allclose(stats.loglik, loglik, rtol=1e-10)
        np.testing.assert_allclose(stats.s0, s0, rtol=1e-10)
        np.testing.assert_allclose(stats.s1, s1, rtol=1e-10, atol=1e-10 * np.abs(s1).max())
        np.testing.assert_allclose(stats.s2, s2, rtol=1e-10, atol=1e-10 * np.abs(s2).max())
        assert stats.n_rows == len(X)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("pattern_cache", [True, False])
def test_wide_rows_in_groups_of_components(covariance_type, pattern_cache, monkeypatch):
    """d = 100 and K = 5: the product runs in two groups of components (the second padded), the patterns are
    numbered by a sort of their packed bits (too wide for a table or one integer), every row has its own."""
    if not pattern_cache:
        monkeypatch.setattr("dgmm.kernels.missing_patterns.BLOCK_CACHE_ELEMENTS", 0)
    params = mixture(covariance_type, k=5, d=100, seed=11)
    X = with_holes(sample_mixture(random_mixture(5, 100, seed=11, separation=3.0), 300, seed=12)[0], 0.05, seed=13)
    stats = marginal_stats(X, params)
    loglik, s0, s1, s2 = reference_stats(X, params)
    np.testing.assert_allclose(stats.loglik, loglik, rtol=1e-10)
    np.testing.assert_allclose(stats.s0, s0, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.s1, s1, rtol=1e-9, atol=1e-10 * np.abs(s1).max())
    np.testing.assert_allclose(stats.s2, s2, rtol=1e-9, atol=1e-10 * np.abs(s2).max())


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("pattern_cache", [True, False])
@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_log_determinants_at_extreme_scales(covariance_type, pattern_cache, scale, monkeypatch):
    """Precisions near 1e±200, whose products of pivots leave float64: the log-likelihood moves by exactly
    −log(scale) per observed value and the statistics scale as the data."""
    if not pattern_cache:
        monkeypatch.setattr("dgmm.kernels.missing_patterns.BLOCK_CACHE_ELEMENTS", 0)
    params = mixture(covariance_type)
    X = with_holes(sample_mixture(random_mixture(4, 6, seed=0, separation=3.0), 300, seed=1)[0], 0.4, seed=2)
    scaled = MixtureParams.from_covariances(
        params.weights, params.means * scale, params.covariances * scale**2, covariance_type
    )
    base, far = marginal_stats(X, params), marginal_stats(X * scale, scaled)
    observed = int((~np.isnan(X)).sum())
    np.testing.assert_allclose(far.loglik, base.loglik - observed * np.log(scale), rtol=1e-10)
    np.testing.assert_allclose(far.s0, base.s0, rtol=1e-9)
    np.testing.assert_allclose(far.s1, base.s1 * scale, rtol=1e-8, atol=1e-10 * np.abs(base.s1).max() * scale)
    np.testing.assert_allclose(far.s2, base.s2 * scale**2, rtol=1e-8, atol=1e-10 * np.abs(base.s2).max() * scale**2)


def test_has_missing_tells_nan_from_an_overflowing_sum():
    X = np.array([[1e308] * 4, [-1e308] * 4])  # finite, but its sum overflows (to NaN, in NumPy's usual order)
    assert not has_missing(X)
    X[1, 0] = np.nan
    assert has_missing(X) and has_missing(np.asfortranarray(X))
    Y = np.ones((3, 2), dtype=np.float32)
    assert not has_missing(Y)
    Y[2, 1] = np.nan
    assert has_missing(Y)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_probabilities_are_the_observed_margins_densities(covariance_type):
    params = mixture(covariance_type, k=3, d=5, seed=4)
    X = with_holes(sample_mixture(random_mixture(3, 5, seed=4), 60, seed=5)[0], 0.3, seed=6)
    cov = params.dense_covariances
    got = marginal_log_prob(X, params)
    for i in range(len(X)):
        o = ~np.isnan(X[i])
        for k in range(3):
            expected = np.log(params.weights[k]) + multivariate_normal(params.means[k][o], cov[k][np.ix_(o, o)]).logpdf(
                X[i, o]
            )
            np.testing.assert_allclose(got[i, k], expected, rtol=1e-11)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_conditional_means_fill_only_the_holes(covariance_type):
    params = mixture(covariance_type, k=3, d=5, seed=7)
    complete = sample_mixture(random_mixture(3, 5, seed=7), 80, seed=8)[0]
    X = with_holes(complete, 0.3, seed=9)
    filled = conditional_means(X, params)
    observed = ~np.isnan(X)
    np.testing.assert_array_equal(filled[observed], X[observed])
    cov = params.dense_covariances
    log_prob = marginal_log_prob(X, params)
    resp = np.exp(log_prob - logsumexp(log_prob, axis=1, keepdims=True))
    for i in range(len(X)):
        o, m = observed[i], ~observed[i]
        expected = sum(
            resp[i, k]
            * (
                params.means[k][m]
                + cov[k][np.ix_(m, o)] @ np.linalg.solve(cov[k][np.ix_(o, o)], X[i, o] - params.means[k][o])
            )
            for k in range(3)
        )
        np.testing.assert_allclose(filled[i, m], expected, rtol=1e-10, atol=1e-12)
