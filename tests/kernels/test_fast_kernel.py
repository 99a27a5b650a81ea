"""The fused, tiled EM kernel against the naive reference (dgmm.kernels.reference.reference_chunk_stats), and the dtype option."""

from __future__ import annotations

import builtins
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dgmm
from dgmm.algorithms.em import em_kernel
from dgmm.errors import ParameterError
from dgmm.execution import InProcessExecutor
from dgmm.kernels._numba_tiles import SYRK_MIN_WIDTH, exp_above, log_of, segment_logsumexp
from dgmm.kernels.estep import fused_chunk_stats, plan_estep, tile_bounds
from dgmm.kernels.params import MixtureParams
from dgmm.kernels.reference import reference_chunk_stats as chunk_stats
from dgmm.kernels.stats import merge_stats
from dgmm.testing import COVARIANCE_TYPES, assert_close, chunk_cuts, chunks_of, initial_params, random_params


def assert_stats_close(got, ref, rtol: float) -> None:
    assert got.n_rows == ref.n_rows
    assert_close(got.loglik, ref.loglik, rtol, "loglik")
    for name in ("s0", "s1", "s2"):
        assert_close(getattr(got, name), getattr(ref, name), rtol, name)


def shifted(params: MixtureParams, offset: float) -> MixtureParams:
    return MixtureParams(
        params.weights, params.means + offset, params.covariances, params.precisions_cholesky, params.covariance_type
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("tile_rows", [1, 7, 64, None, 10_000])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_fused_matches_reference(covariance_type, tile_rows, offset):
    rng = np.random.default_rng(11)
    params = shifted(random_params(rng, 4, 6, covariance_type), offset)
    X = rng.normal(size=(1500, 6)) * 2 + offset
    ref = chunk_stats(X, params)
    got = fused_chunk_stats(X, plan_estep(params, "float64", tile_rows))
    # with an offset the reference's own E-step rounds at ~1e-16 * 1e6 relative to the spread
    assert_stats_close(got, ref, 1e-10 if offset == 0 else 1e-7)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("gemm_rows", [1, 7, 64])
def test_mahalanobis_products_in_row_blocks_match_the_reference(covariance_type, gemm_rows):
    rng = np.random.default_rng(15)
    params = shifted(random_params(rng, 5, 6, covariance_type), 3.0)
    X = rng.normal(size=(700, 6)) * 2 + 3.0
    plan = plan_estep(params, "float64", 300, gemm_rows)
    assert plan.gemm_rows == gemm_rows
    assert_stats_close(fused_chunk_stats(X, plan), chunk_stats(X, params), 1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("tile_rows", [5, None])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_float32_compute_matches_reference_to_float32_precision(covariance_type, tile_rows, offset):
    rng = np.random.default_rng(12)
    params = shifted(random_params(rng, 3, 5, covariance_type), offset)
    X = rng.normal(size=(2000, 5)) * 2 + offset
    got = fused_chunk_stats(X, plan_estep(params, "float32", tile_rows))
    assert got.s0.dtype == got.s1.dtype == got.s2.dtype == np.float64
    assert_stats_close(got, chunk_stats(X, params), 2e-4)


def test_vectorised_exp_and_log_agree_with_numpy_to_a_few_ulp():
    rng = np.random.default_rng(14)
    floor = -354.0
    x = np.concatenate([rng.uniform(floor, 0.0, 100_000), [0.0, floor, -1e-300, -745.0, -np.inf, np.nan]])
    got = np.empty_like(x)
    exp_above(x, floor, got, np.empty(x.size, np.int64))
    kept = x >= floor
    np.testing.assert_allclose(got[kept], np.exp(x[kept]), rtol=4e-16, atol=0)
    assert np.all(got[(x < floor)] == 0.0) and np.isnan(got[-1])
    specials = [
        0.0,
        -0.0,
        -1.0,
        5e-324,
        1e-310,
        np.inf,
        -np.inf,
        np.nan,
        1.0,
        2.0,
        np.sqrt(2.0),
        np.nextafter(np.sqrt(2.0), 2),
    ]
    y = np.concatenate([np.exp(rng.uniform(-700, 700, 100_000)), rng.uniform(1.0, 64.0, 100_000), specials])
    logs = np.empty_like(y)
    log_of(y, logs, np.empty(y.size, np.int64))
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.log(y)
    finite = np.isfinite(ref) & (ref != 0)
    np.testing.assert_allclose(logs[finite], ref[finite], rtol=4e-16, atol=0)
    np.testing.assert_array_equal(logs[~finite], ref[~finite])


@pytest.mark.parametrize("K", [1, 7, 512])
def test_segment_logsumexp_agrees_with_scipy_also_for_infinities_and_nan(K):
    """Each run of K columns: a close spread, a wide one (most terms far below the largest, gathered out),
    every entry -inf, an infinity, NaN beside finite entries and beside -inf only."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(15)
    C = 6
    L = np.concatenate([rng.normal(size=(50, C * K)) * 0.3 - 80, rng.normal(size=(50, C * K)) * 300 + 1e4])
    L[0, :K] = -np.inf
    L[1, K] = np.inf
    L[2, 2 * K] = np.nan
    L[3, 3 * K : 4 * K] = -np.inf
    L[3, 4 * K - 1] = np.nan
    L[4, 4 * K : 5 * K] = np.nan
    out = np.empty((L.shape[0], C))
    floor = np.log(np.finfo(np.float64).eps / (8 * K))
    segment_logsumexp(L, K, floor, out, np.empty(K), np.empty(K, np.int64))
    with np.errstate(invalid="ignore"):
        want = logsumexp(L.reshape(L.shape[0], C, K), axis=2)
    finite = np.isfinite(want)
    np.testing.assert_allclose(out[finite], want[finite], rtol=4e-16, atol=2e-12)
    np.testing.assert_array_equal(out[~finite], want[~finite])  # -inf, inf and NaN where SciPy has them
    assert not finite[:5].all() and finite[5:].all()


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_wide_data_takes_the_symmetric_rank_k_path_and_matches_the_reference(covariance_type, dtype, rtol, offset):
    d = 60  # V = √r [z − a, 1] is d + 1 wide: the SYRK branch of gram_lower
    assert d + 1 >= SYRK_MIN_WIDTH
    rng = np.random.default_rng(13)
    params = shifted(random_params(rng, 5, d, covariance_type), offset)
    X = rng.normal(size=(700, d)) * 2 + offset
    plan = plan_estep(params, dtype, 256)
    if covariance_type == "full":  # 5 x 60 columns: two GEMM groups of 3 components, the last one padded
        assert plan.gemm.shape == (2, d + 1, 3 * d)
    got = fused_chunk_stats(X, plan)
    assert_stats_close(got, chunk_stats(X, params), rtol if offset == 0 else 100 * rtol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-7), ("float32", 2e-4)])
def test_well_separated_offset_components_keep_their_small_variances(covariance_type, dtype, rtol):
    """Components 1,000 σ apart at an offset of 1e6: centred statistics, no cancellation to speak of.

    In float32, diag and spherical fall back to float64 here (their expansion about c would
    lose a third of the variances); full and tied stay float32.
    """
    rng = np.random.default_rng(13)
    K, d = 3, 4
    means = 1e6 + 100.0 * rng.normal(size=(K, d))
    cov = {
        "full": np.repeat(0.01 * np.eye(d)[None], K, 0),
        "tied": 0.01 * np.eye(d),
        "diag": np.full((K, d), 0.01),
        "spherical": np.full(K, 0.01),
    }[covariance_type]
    params = MixtureParams.from_covariances(np.full(K, 1 / K), means, cov, covariance_type)
    X = np.vstack([m + 0.1 * rng.normal(size=(400, d)) for m in means])
    plan = plan_estep(params, dtype, 97)
    assert plan.dtype == (np.float64 if covariance_type in ("diag", "spherical") else dtype)
    got, ref = fused_chunk_stats(X, plan), chunk_stats(X, params)
    if dtype == "float64":
        assert_stats_close(got, ref, rtol)
    else:  # float32 rounds z ≈ a_k (1,000 σ) to 1e-4 σ, so S1 is close to rtol of N_k σ, not of itself
        assert_close(got.loglik, ref.loglik, rtol, "loglik")
        assert_close(got.s2, ref.s2, rtol, "s2")
        np.testing.assert_allclose(got.s1, ref.s1, atol=rtol * 400 * 0.1)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_tiles_on_a_thread_pool_give_bit_identical_results(covariance_type):
    rng = np.random.default_rng(14)
    params = random_params(rng, 5, 3, covariance_type)
    X = rng.normal(size=(5000, 3)) * 3
    plan = plan_estep(params, "float64", 300)
    serial = fused_chunk_stats(X, plan, builtins.map)
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            parallel = fused_chunk_stats(X, plan, pool.map)
            assert parallel.loglik == serial.loglik
            for name in ("s0", "s1", "s2"):
                np.testing.assert_array_equal(getattr(parallel, name), getattr(serial, name))


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(2, 300),
    K=st.integers(1, 4),
    d=st.integers(1, 5),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    tile_rows=st.integers(1, 64),
)
def test_any_chunking_and_tiling_agree(data, n, K, d, covariance_type, tile_rows):
    rng = np.random.default_rng(n * 17 + K * 5 + d)
    params = random_params(rng, K, d, covariance_type)
    X = rng.normal(size=(n, d)) * 2
    cuts = data.draw(chunk_cuts(n, max_cuts=6))
    plan = plan_estep(params, "float64", tile_rows)
    merged = merge_stats([fused_chunk_stats(piece, plan) for _, piece in chunks_of(X, cuts)])
    assert_stats_close(merged, fused_chunk_stats(X, plan_estep(params)), 1e-10)


def test_zero_weight_component_and_far_outliers_stay_finite():
    rng = np.random.default_rng(15)
    params = random_params(rng, 3, 2, "full")
    params = MixtureParams(
        np.array([0.0, 0.5, 0.5]), params.means, params.covariances, params.precisions_cholesky, "full"
    )
    X = np.vstack([rng.normal(size=(50, 2)), [[1e6, -1e6]]])
    got = fused_chunk_stats(X, plan_estep(params, "float64", 16))
    assert np.isfinite(got.loglik) and got.s0[0] == 0.0
    assert_stats_close(got, chunk_stats(X, params), 1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(("dtype", "kept", "dropped"), [("float64", 26.0, 27.0), ("float32", 9.0, 9.5)])
def test_shares_below_the_floor_are_exactly_zero_never_subnormal(covariance_type, dtype, kept, dropped):
    # rows at 0, unit variances, a second component at distance D: its share of a row is
    # exp(-D²/2), above the floor ½ log(tiny) for `kept` and below it for `dropped`
    X = np.zeros((40, 1))
    for distance, zero in ((kept, False), (dropped, True)):
        unit = {"full": (2, 1, 1), "tied": (1, 1), "diag": (2, 1), "spherical": (2,)}[covariance_type]
        params = MixtureParams.from_covariances(
            np.array([0.5, 0.5]), np.array([[0.0], [distance]]), np.ones(unit), covariance_type
        )
        got = fused_chunk_stats(X, plan_estep(params, dtype))
        ref = chunk_stats(X, params)
        assert ref.s0[1] > 0
        if zero:
            assert got.s0[1] == 0.0 and got.s1[1] == 0.0
        else:
            assert_close(got.s0[1], ref.s0[1], 1e-10 if dtype == "float64" else 1e-4, "s0")
        assert_close(got.loglik, ref.loglik, 1e-12, "loglik")


def test_em_kernel_accepts_raw_parameters_and_tile_bounds_cover_the_chunk():
    rng = np.random.default_rng(16)
    params = random_params(rng, 2, 3, "diag")
    X = rng.normal(size=(100, 3))
    assert_stats_close(em_kernel(X, params, 0), chunk_stats(X, params), 1e-10)
    assert tile_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)] and tile_bounds(0, 4) == []


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_in_process_executor_result_does_not_depend_on_threads(threads):
    rng = np.random.default_rng(17)
    params = random_params(rng, 3, 4, "full")
    X = rng.normal(size=(20_000, 4))
    plan = plan_estep(params, "float64", 512)
    # one chunk (tiles in parallel), a few (chunks in flight together, their tiles in parallel), many (chunks in parallel)
    for chunk_rows in (20_000, 5_000, 1_000):
        reference = InProcessExecutor(chunk_rows, threads=1).map_reduce(X, em_kernel, plan)
        got = InProcessExecutor(chunk_rows, threads=threads).map_reduce(X, em_kernel, plan)
        assert got.loglik == reference.loglik
        np.testing.assert_array_equal(got.s2, reference.s2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_fit_matches_float64_fit(covariance_type):
    X, _ = dgmm.data.synthetic.sample_mixture(dgmm.data.synthetic.random_mixture(3, 4, seed=2), 6000, seed=2)
    kwargs = dict(covariance_type=covariance_type, tol=0.0, max_iter=20, **initial_params(X, 3, covariance_type))
    f64 = dgmm.GaussianMixture(3, **kwargs).fit(X)
    f32 = dgmm.GaussianMixture(3, dtype="float32", **kwargs).fit(X)
    assert f32.means_.dtype == np.float64
    assert abs(f32.lower_bound_ - f64.lower_bound_) <= 1e-4 * abs(f64.lower_bound_)
    assert_close(f32.means_, f64.means_, 1e-3)


def test_dtype_is_a_validated_estimator_parameter():
    from sklearn.base import clone

    model = dgmm.GaussianMixture(2, dtype="float32")
    assert model.get_params()["dtype"] == "float32"
    assert clone(model).dtype == "float32"
    assert "dtype='float32'" in repr(model)
    with pytest.raises(ParameterError, match="dtype='float16' is invalid"):
        dgmm.GaussianMixture(2, dtype="float16").fit(np.random.default_rng(0).normal(size=(20, 2)))
