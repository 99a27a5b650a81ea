"""Split-and-merge moves (dgmm.kernels.moves, dgmm.algorithms.smem): the maths, the ranking, and escaping a bad optimum."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.algorithms.em import run_em
from dgmm.algorithms.programs import run_steps
from dgmm.algorithms.smem import TRIAL_ITER, split_merge_steps
from dgmm.execution import CountingExecutor, InProcessExecutor
from dgmm.kernels.moves import apply_move, merge_components, move_stats, principal_axes, rank_moves, split_scores
from dgmm.kernels.params import MixtureParams
from dgmm.kernels.posterior import responsibilities
from dgmm.testing import COVARIANCE_TYPES, assert_close


@pytest.fixture(scope="module")
def three_blobs():
    """Clusters at (0, 0), (12, -6), (12, 6), 2,000 rows each."""
    rng = np.random.default_rng(0)
    centres = [[0.0, 0.0], [12.0, -6.0], [12.0, 6.0]]
    return np.concatenate([rng.normal(c, 1.0, size=(2000, 2)) for c in centres])


def bad_start(covariance_type: str) -> dict:
    """Two components on the first cluster, one between the other two: EM converges to that."""
    covariances = {
        "full": np.stack([np.eye(2)] * 3),
        "tied": np.eye(2),
        "diag": np.ones((3, 2)),
        "spherical": np.ones(3),
    }[covariance_type]
    params = MixtureParams.from_covariances(
        np.full(3, 1 / 3), np.array([[-1.0, 0.0], [1.0, 0.0], [12.0, 0.0]]), covariances, covariance_type
    )
    return dict(weights_init=params.weights, means_init=params.means, precisions_init=params.precisions)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_split_merge_escapes_a_bad_local_optimum_that_plain_em_keeps(three_blobs, covariance_type):
    kwargs = dict(covariance_type=covariance_type, tol=1e-6, max_iter=300, **bad_start(covariance_type))
    plain = dgmm.GaussianMixture(3, **kwargs).fit(three_blobs)
    moved = dgmm.GaussianMixture(3, split_merge=5, **kwargs).fit(three_blobs)
    assert plain.converged_ and moved.converged_
    assert plain.split_merge_moves_ == []
    # plain EM keeps one component across two clusters; the moves find all three
    assert np.sort(np.round(plain.means_[:, 0]))[-1] == 12 and abs(plain.means_[2, 1]) < 1
    assert moved.lower_bound_ > plain.lower_bound_ + 0.5
    found = sorted(map(tuple, np.round(moved.means_)))
    assert found == [(0, 0), (12, -6), (12, 6)], found
    ((i, j, k, before, after),) = moved.split_merge_moves_
    assert {i, j} == {0, 1} and k == 2 and after > before
    assert_close(before, plain.lower_bound_, 1e-5)
    assert_close(after, moved.lower_bound_, 1e-12)
    assert moved.n_iter_ > plain.n_iter_ and len(moved.lower_bounds_) == moved.n_iter_


def test_no_move_is_kept_at_the_right_optimum_and_it_costs_one_round(three_blobs):
    start = MixtureParams.from_covariances(
        np.full(3, 1 / 3), np.array([[0.0, 0.0], [12.0, -6.0], [12.0, 6.0]]), np.stack([np.eye(2)] * 3), "full"
    )
    counting = CountingExecutor(InProcessExecutor(1000))
    converged = run_em(counting, three_blobs, start, tol=1e-6, max_iter=300, reg_covar=1e-6, split_every=8)
    counting.passes = 0
    result, moves = run_steps(
        counting, three_blobs, 8, split_merge_steps(converged, n_candidates=5, tol=1e-6, max_iter=300, reg_covar=1e-6)
    )
    assert moves == [] and result is converged
    # one ranking pass, then at most TRIAL_ITER passes for the control and all 5 trials together
    assert 2 <= counting.passes <= 1 + TRIAL_ITER


def test_fewer_than_three_components_or_zero_candidates_change_nothing(three_blobs):
    two = dgmm.GaussianMixture(2, split_merge=5, random_state=0).fit(three_blobs)
    reference = dgmm.GaussianMixture(2, random_state=0).fit(three_blobs)
    np.testing.assert_array_equal(two.means_, reference.means_)
    assert two.split_merge_moves_ == []
    with pytest.raises(dgmm.ParameterError, match="split_merge"):
        dgmm.GaussianMixture(3, split_merge=-1).fit(three_blobs)


def test_restarts_together_and_one_at_a_time_give_the_same_moves(three_blobs):
    kwargs = dict(n_init=3, random_state=5, tol=1e-6, max_iter=200, split_merge=3, init_params="random_from_data")
    together = dgmm.GaussianMixture(3, **kwargs).fit(three_blobs)
    one_at_a_time = dgmm.GaussianMixture(3, **kwargs).fit(three_blobs, on_iteration=lambda report: None)
    for name in ("means_", "covariances_", "lower_bound_", "n_iter_", "split_merge_moves_"):
        np.testing.assert_array_equal(getattr(together, name), getattr(one_at_a_time, name), err_msg=name)


def test_split_merge_on_parquet_on_the_cluster_equals_in_memory(three_blobs, parquet_dir, cluster_client):
    kwargs = dict(tol=1e-6, max_iter=300, split_merge=5, **bad_start("diag"), covariance_type="diag")
    in_memory = dgmm.GaussianMixture(3, **kwargs).fit(three_blobs)
    on_cluster = dgmm.GaussianMixture(3, client=cluster_client, **kwargs).fit(parquet_dir(three_blobs, 777))
    assert len(on_cluster.split_merge_moves_) == 1
    assert on_cluster.split_merge_moves_[0][:3] == in_memory.split_merge_moves_[0][:3]
    assert_close(on_cluster.means_, in_memory.means_, 1e-8)
    assert_close(on_cluster.lower_bound_, in_memory.lower_bound_, 1e-10)


def test_move_statistics_add_over_chunks_and_match_naive_sums(three_blobs):
    rng = np.random.default_rng(1)
    params = MixtureParams.from_covariances(
        np.full(3, 1 / 3), three_blobs[[0, 2500, 5000]], np.ones((3, 2)) * 4, "diag"
    )
    axes = principal_axes(params)[1]
    w = rng.uniform(0.0, 2.0, size=len(three_blobs))
    whole = move_stats(three_blobs, params, axes, w)
    parts = [move_stats(three_blobs[a:b], params, axes, w[a:b]) for a, b in [(0, 7), (7, 3001), (3001, 6000)]]
    summed = parts[0] + parts[1] + parts[2]
    resp = responsibilities(three_blobs, params)
    t = np.stack([(three_blobs - params.means[k]) @ axes[k] for k in range(3)], axis=1)
    naive = dict(
        overlap=resp.T @ (resp * w[:, None]),
        s0=resp.T @ w,
        m2=(resp * w[:, None] * t**2).sum(0),
        m4=(resp * w[:, None] * t**4).sum(0),
    )
    for name, value in naive.items():
        assert_close(getattr(whole, name), value, 1e-10, name)
        assert_close(getattr(summed, name), value, 1e-10, name)


def test_split_score_is_near_zero_for_a_gaussian_and_near_two_for_two_clusters():
    rng = np.random.default_rng(2)
    gaussian = rng.normal(size=(20_000, 2))
    two = np.concatenate([rng.normal([-10, 0], 1, size=(10_000, 2)), rng.normal([10, 0], 1, size=(10_000, 2))])
    for X, expected in ((gaussian, 0.0), (two, 2.0)):
        params = MixtureParams.from_covariances(np.ones(1), X.mean(0, keepdims=True), np.cov(X.T)[None], "full")
        score = split_scores(move_stats(X, params, principal_axes(params)[1]))[0]
        assert abs(score - expected) < 0.1, (score, expected)


def test_the_bad_optimum_ranks_merging_the_shared_pair_and_splitting_the_wide_one_first(three_blobs):
    result = run_em(
        InProcessExecutor(1000), three_blobs, _bad_params("full"), tol=1e-6, max_iter=300, reg_covar=1e-6, split_every=8
    )
    stats = move_stats(three_blobs, result.params, principal_axes(result.params)[1])
    assert rank_moves(stats, 5)[0] == (0, 1, 2)
    assert len(rank_moves(stats, 100)) == 3  # 3 pairs x 1 split outside each pair


def _bad_params(covariance_type: str) -> MixtureParams:
    start = bad_start(covariance_type)
    return MixtureParams.from_precisions(
        start["weights_init"], start["means_init"], start["precisions_init"], covariance_type
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_merge_matches_the_pair_moments_and_a_move_keeps_the_others(covariance_type):
    rng = np.random.default_rng(3)
    K, d = 4, 3
    full = np.stack([np.cov(rng.normal(size=(10, d)).T) + np.eye(d) for _ in range(K)])
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.trace(c) / d for c in full]),
    }[covariance_type]
    params = MixtureParams.from_covariances(
        np.array([0.1, 0.2, 0.3, 0.4]), rng.normal(size=(K, d)), covariances, covariance_type
    )
    weights, means, covs = params.weights.copy(), params.means.copy(), params.covariances.copy()
    merge_components(weights, means, covs, 1, 3, covariance_type)
    w = params.weights[[1, 3]]
    mean = (w[:, None] * params.means[[1, 3]]).sum(0) / w.sum()
    dense = params.dense_covariances[[1, 3]]
    pooled = (
        sum(w[a] * (dense[a] + np.outer(params.means[c] - mean, params.means[c] - mean)) for a, c in enumerate((1, 3)))
        / w.sum()
    )
    assert_close(weights[1], w.sum(), 1e-12)
    assert_close(means[1], mean, 1e-12)
    expected = {"full": pooled, "tied": params.covariances, "diag": np.diag(pooled), "spherical": np.trace(pooled) / d}[
        covariance_type
    ]
    assert_close(covs if covariance_type == "tied" else covs[1], expected, 1e-12)
    moved = apply_move(params, (1, 3, 0))
    assert_close(moved.weights.sum(), 1.0, 1e-12)
    np.testing.assert_array_equal(moved.means[2], params.means[2])
    assert_close(moved.weights[0], moved.weights[3], 1e-12)
    assert_close((moved.means[0] + moved.means[3]) / 2, params.means[0], 1e-12)
