"""Scalable initialisation: k-means kernels against naive references, chunking invariance,
pass counts, sample weights, and k-means|| against scikit-learn's k-means initialisation."""

from __future__ import annotations

import statistics
from functools import reduce

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dgmm
from dgmm.algorithms.em import init_kernel, initial_params
from dgmm.algorithms.programs import run_steps
from dgmm.algorithms.seeding import ROUNDS, initial_centres, kmeans_parallel, lloyd
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.data.validation import attach_weights
from dgmm.execution import CountingExecutor, Executor, InProcessExecutor
from dgmm.kernels.hashing import row_uniforms
from dgmm.kernels.init import InitPlan, choose_centres, init_chunk_stats
from dgmm.kernels.kmeans import (
    count_nearest,
    kmeans_plusplus,
    lloyd_chunk,
    lloyd_update,
    mean_variance,
    nearest,
    recluster,
    sample_candidates,
    sampling_probabilities,
    squared_distances,
)
from dgmm.testing import ComputeCounter, assert_close, chunk_cuts, chunks_of


def naive_d2(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.array([[float(np.sum((x - c) ** 2)) for c in centres] for x in X])


@pytest.fixture(scope="module")
def blobs():
    X, _ = sample_mixture(random_mixture(5, 3, seed=2, separation=8.0), 3000, seed=2)
    return X


# ---------------------------------------------------------------- pure kernels


def test_distances_match_naive_even_far_from_the_origin():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)) + 1e7
    centres = X[[3, 50, 120]] + rng.normal(scale=0.1, size=(3, 4))
    assert_close(squared_distances(X, centres), naive_d2(X, centres), 1e-6)
    labels, d2 = nearest(X, centres)
    np.testing.assert_array_equal(labels, np.argmin(naive_d2(X, centres), axis=1))
    assert_close(d2, naive_d2(X, centres).min(axis=1), 1e-6)


def test_row_uniforms_are_a_function_of_the_global_row():
    whole = row_uniforms(7, 2, 0, 1000)
    np.testing.assert_array_equal(np.concatenate([row_uniforms(7, 2, 0, 313), row_uniforms(7, 2, 313, 687)]), whole)
    assert np.all((whole > 0) & (whole < 1)) and abs(whole.mean() - 0.5) < 0.05
    assert not np.array_equal(whole, row_uniforms(7, 3, 0, 1000))
    assert not np.array_equal(whole, row_uniforms(8, 2, 0, 1000))


@settings(max_examples=40, deadline=None)
@given(cuts=chunk_cuts(300, max_cuts=12), weighted=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_a_round_draws_exactly_the_naive_sample_for_any_chunking(cuts, weighted, seed):
    rng = np.random.default_rng(seed % 1000)
    X = rng.normal(size=(300, 3))
    w = rng.integers(0, 3, size=300).astype(float) if weighted else np.ones(300)
    candidates, ell = X[:2] + 0.5, 6.0
    parts = [
        sample_candidates(
            b,
            candidates,
            seed=seed,
            round_=3,
            oversampling=ell,
            row_offset=off,
            weights=w[off : off + len(b)] if weighted else None,
        )
        for off, b in chunks_of(X, cuts)
    ]
    merged = reduce(lambda a, b: a + b, parts)
    d2 = naive_d2(X, candidates).min(axis=1)
    cost = float(np.sum(w * d2))
    assert_close(merged.cost, cost, 1e-12)
    drawn = np.flatnonzero(row_uniforms(seed, 3, 0, 300) < np.minimum(1.0, ell * w * d2 / cost))
    np.testing.assert_array_equal(merged.index, drawn)
    np.testing.assert_array_equal(merged.rows, X[drawn])
    assert np.all(w[merged.index] > 0)


def test_sampling_frequencies_match_the_probabilities():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    w = rng.uniform(0, 2, size=40)
    w[:5] = 0.0
    candidates, ell = X[:1], 4.0
    d2 = naive_d2(X, candidates)[:, 0]
    p = np.minimum(1.0, ell * w * d2 / np.sum(w * d2))
    assert_close(sampling_probabilities(X, candidates, float(np.sum(w * d2)), ell, w), p, 1e-12)
    trials = 4000
    hits = np.zeros(40)
    for seed in range(trials):
        hits[sample_candidates(X, candidates, seed=seed, round_=1, oversampling=ell, weights=w).index] += 1
    sigma = np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(hits / trials - p) <= 5 * sigma + 1e-12)
    assert hits[:5].sum() == 0 and hits[0] == 0


def test_candidate_weights_match_naive():
    rng = np.random.default_rng(2)
    X, w = rng.normal(size=(500, 3)), rng.uniform(0, 3, size=500)
    candidates = rng.normal(size=(7, 3))
    labels = np.argmin(naive_d2(X, candidates), axis=1)
    parts = [count_nearest(b, candidates, w[off : off + len(b)]) for off, b in chunks_of(X, [17, 200, 201, 480])]
    merged = reduce(lambda a, b: a + b, parts)
    assert_close(merged.weights, np.bincount(labels, weights=w, minlength=7), 1e-12)
    assert_close(merged.cost, np.sum(w * naive_d2(X, candidates).min(axis=1)), 1e-12)
    np.testing.assert_array_equal(count_nearest(X, candidates).weights, np.bincount(labels, minlength=7))


def test_lloyd_sums_match_naive_and_merge_over_chunks():
    rng = np.random.default_rng(3)
    X, w = rng.normal(size=(400, 3)) + 100.0, rng.uniform(0, 2, size=400)
    centres = X[:4] + 0.01
    labels = np.argmin(naive_d2(X, centres), axis=1)
    merged = reduce(
        lambda a, b: a + b,
        [lloyd_chunk(b, centres, off, w[off : off + len(b)]) for off, b in chunks_of(X, [99, 100, 250])],
    )
    for k in range(4):
        rows = labels == k
        assert_close(merged.counts[k], w[rows].sum(), 1e-12)
        assert_close(merged.sums[k], w[rows] @ (X[rows] - centres[k]), 1e-10)
        assert_close(merged.cost[k], w[rows] @ ((X[rows] - centres[k]) ** 2).sum(axis=1), 1e-10)
        assert_close(lloyd_update(merged, centres)[k], w[rows] @ X[rows] / w[rows].sum(), 1e-12)
    whole = lloyd_chunk(X, centres, 0, w)
    np.testing.assert_array_equal(merged.far_index, whole.far_index)
    far = np.argsort(-naive_d2(X, centres).min(axis=1), kind="stable")[:4]
    np.testing.assert_array_equal(merged.far_index, far)
    assert_close(mean_variance(merged, centres), np.mean(w @ (X - w @ X / w.sum()) ** 2 / w.sum()), 1e-9)


def test_an_empty_cluster_moves_to_the_farthest_row():
    X = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.0, 3.0]])
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [-50.0, 0.0]])
    stats = lloyd_chunk(X, centres)
    assert stats.counts[2] == 0
    updated = lloyd_update(stats, centres)
    np.testing.assert_array_equal(updated[2], [10.0, 3.0])
    assert_close(updated[1], [10.0, 1.5], 1e-12)


def test_integer_weights_equal_repeated_rows():
    rng = np.random.default_rng(4)
    X, reps = rng.normal(size=(300, 2)), rng.integers(0, 4, size=300)
    centres = X[:3] + 0.1
    weighted, repeated = (
        lloyd_chunk(X, centres, weights=reps.astype(float)),
        lloyd_chunk(np.repeat(X, reps, axis=0), centres),
    )
    for a, b in [(weighted.counts, repeated.counts), (weighted.sums, repeated.sums), (weighted.cost, repeated.cost)]:
        assert_close(a, b, 1e-10)
    plan = InitPlan("k-means||", centres, 0, "full")
    a, b = init_chunk_stats(X, plan, weights=reps.astype(float)), init_chunk_stats(np.repeat(X, reps, axis=0), plan)
    for x, y in [(a.s0, b.s0), (a.s1, b.s1), (a.s2, b.s2)]:
        assert_close(x, y, 1e-10)


def test_weighted_kmeans_plusplus_never_picks_zero_weight_points_and_recluster_finds_blobs():
    rng = np.random.default_rng(5)
    means = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    points = np.concatenate([m + rng.normal(size=(30, 2)) for m in means])
    weights = rng.uniform(0.5, 2.0, size=90)
    zeroed = np.concatenate([weights, np.zeros(5)]), np.concatenate([points, rng.normal(size=(5, 2)) + 100])
    centres = kmeans_plusplus(points, 3, rng, weights)
    assert len({int(np.argmin(((means - c) ** 2).sum(1))) for c in centres}) == 3
    found = recluster(zeroed[1], zeroed[0], 3, rng)
    assert np.abs(np.sort(found[:, 0]) - [0.0, 0.0, 20.0]).max() < 1.0
    assert np.all(np.abs(found) < 30)
    picked = choose_centres(zeroed[1], 3, "random_from_data", rng, zeroed[0])
    assert np.all(np.abs(picked) < 30)


# ---------------------------------------------------------------- orchestration


def uneven(n: int, seed: int = 0) -> tuple[int, ...]:
    sizes, rng = [], np.random.default_rng(seed)
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(1, 400), n - sum(sizes))))
    return tuple(sizes)


@pytest.mark.parametrize("method", ["k-means||", "kmeans"])
def test_centres_do_not_depend_on_chunking_or_workers(blobs, parquet_dir, cluster_client, method):
    kwargs = dict(n_components=5, n_features=3, method=method, seed=11)
    reference = run_steps(InProcessExecutor(3000), blobs, 8, initial_centres(blobs.shape, **kwargs))
    others = [
        run_steps(InProcessExecutor(257), blobs, 3, initial_centres(blobs.shape, **kwargs)),
        run_steps(
            Executor(scheduler="threads"),
            da.from_array(blobs, chunks=(uneven(3000), 3)),
            4,
            initial_centres(blobs.shape, **kwargs),
        ),
        run_steps(
            Executor(cluster_client),
            da.from_array(blobs, chunks=(uneven(3000, 1), 3)),
            2,
            initial_centres(blobs.shape, **kwargs),
        ),
    ]
    for other in others:
        assert_close(other, reference, 1e-10)
    if method == "kmeans":
        return  # the estimator on Parquet: once is enough
    model = dgmm.GaussianMixture(5, init_params=method, random_state=0, tol=0.0, max_iter=3)
    from_parquet = model.fit(parquet_dir(blobs, row_group_size=250)).means_
    in_memory = dgmm.GaussianMixture(5, init_params=method, random_state=0, tol=0.0, max_iter=3, chunk_rows=500).fit(
        blobs
    )
    assert_close(from_parquet, in_memory.means_, 1e-9)


def test_weighted_centres_do_not_depend_on_chunking_and_ignore_zero_weight_rows(blobs):
    far_away = blobs[:400] + 1000.0
    X = np.concatenate([blobs, far_away])
    w = np.concatenate([np.random.default_rng(6).uniform(0.5, 2.0, size=3000), np.zeros(400)])
    kwargs = dict(n_components=5, n_features=3, method="kmeans", seed=3)
    weighted = attach_weights(X, w, "raise")
    reference = run_steps(InProcessExecutor(10_000), weighted, 8, initial_centres(weighted.shape, **kwargs))
    assert np.all(np.abs(reference) < 500)
    chunked = run_steps(
        Executor(scheduler="sync"),
        da.from_array(weighted, chunks=(uneven(3400), 4)),
        3,
        initial_centres(weighted.shape, **kwargs),
    )
    assert_close(chunked, reference, 1e-10)


def test_weighted_lloyd_and_statistics_equal_repeated_rows(blobs):
    reps = np.random.default_rng(7).integers(0, 3, size=len(blobs))
    repeated, executor = np.repeat(blobs, reps, axis=0), InProcessExecutor(512)
    start = blobs[:5] + 0.5
    blocks = attach_weights(blobs, reps.astype(float), "raise")
    weighted, _ = run_steps(executor, blocks, 4, lloyd(start, max_iter=4, tol=0.0))
    assert_close(weighted, run_steps(executor, repeated, 4, lloyd(start, max_iter=4, tol=0.0))[0], 1e-9)
    plan = InitPlan("kmeans", weighted, 0, "diag")
    a = executor.map_reduce(blocks, init_kernel, plan, 4)
    b = executor.map_reduce(repeated, init_kernel, plan, 4)
    assert_close(a.s2, b.s2, 1e-9)
    params = initial_params(
        executor,
        blocks,
        n_components=5,
        n_features=3,
        covariance_type="diag",
        method="k-means||",
        reg_covar=1e-6,
        seed=0,
        split_every=4,
    )
    assert np.isclose(params.weights.sum(), 1.0)


def test_kmeans_parallel_costs_rounds_plus_two_passes(blobs):
    counting = CountingExecutor(InProcessExecutor(400))
    kwargs = dict(n_components=5, covariance_type="full", reg_covar=1e-6, seed=0, split_every=4)
    initial_params(counting, blobs, method="k-means||", **kwargs)
    assert (counting.passes, counting.gathers) == (ROUNDS + 2, 1)
    counting = CountingExecutor(InProcessExecutor(400))
    run_steps(counting, blobs, 4, kmeans_parallel(blobs.shape, 5, 0, n_features=3, rounds=3))
    assert counting.passes == 3 + 1
    counting = CountingExecutor(InProcessExecutor(400))
    initial_params(counting, blobs, method="kmeans", **kwargs)
    assert ROUNDS + 3 <= counting.passes <= ROUNDS + 2 + 10
    X = da.from_array(blobs, chunks=(300, 3))
    with ComputeCounter() as counter:
        model = dgmm.GaussianMixture(5, init_params="k-means||", tol=0.0, max_iter=3, cache="none", random_state=0).fit(
            X
        )
    assert model.n_iter_ == 3
    assert counter.computes == 1 + (ROUNDS + 2) + 3  # first-centre gather, init passes, EM iterations


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_new_init_methods_fit_every_covariance_type(blobs, covariance_type):
    for method in ("kmeans", "k-means||"):
        model = dgmm.GaussianMixture(5, covariance_type=covariance_type, init_params=method, random_state=1).fit(blobs)
        assert model.converged_ and np.isfinite(model.lower_bound_)


# ---------------------------------------------------------------- quality


@pytest.mark.parametrize("data_seed", [0, 1, 2, 3])
def test_kmeans_parallel_is_at_least_as_good_as_sklearn_kmeans_init(data_seed):
    """Median final lower bound over seeds 0..4, equal or higher up to EM's tolerance (tol=1e-3)."""
    from sklearn.mixture import GaussianMixture as SklearnGM

    X, _ = sample_mixture(random_mixture(8, 5, seed=data_seed, separation=8.0), 5000, seed=data_seed)
    ours, theirs = [], []
    for seed in range(5):
        kwargs = dict(tol=1e-3, max_iter=300, random_state=seed)
        ours.append(dgmm.GaussianMixture(8, init_params="k-means||", **kwargs).fit(X).lower_bound_)
        theirs.append(SklearnGM(8, init_params="kmeans", **kwargs).fit(X).lower_bound_)
    assert statistics.median(ours) >= statistics.median(theirs) - 1e-3
