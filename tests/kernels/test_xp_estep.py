"""The array-API E-step (dgmm.kernels.device.estep) against the numba kernel, under NumPy and array-api-strict
(on its CPU device and on "device1", which refuses conversion to NumPy as CuPy's arrays do)."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.kernels.device.estep import xp_chunk_stats
from dgmm.kernels.estep import fused_chunk_stats, plan_estep
from dgmm.kernels.gaussian import COVARIANCE_TYPES
from dgmm.testing import assert_stats_match

xps = pytest.importorskip("array_api_strict")


@pytest.fixture(scope="module")
def data():
    X, _ = sample_mixture(random_mixture(4, 5, seed=1), 3000, seed=1)
    weights = np.random.default_rng(0).integers(0, 3, len(X)).astype(float)
    return X + 1000.0, weights  # a large common offset, as real data has


def on(namespace: str, values: np.ndarray | None):
    if values is None or namespace == "numpy":
        return values
    device = xps.Device("device1") if namespace == "strict-device1" else xps.Device("CPU_DEVICE")
    return xps.asarray(values, device=device)


@pytest.mark.parametrize("namespace", ["numpy", "strict-cpu", "strict-device1"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_float64_statistics_equal_the_numba_kernels(data, namespace, covariance_type, weighted):
    X, weights = data
    params = dgmm.GaussianMixture(4, covariance_type=covariance_type, random_state=0, max_iter=3).fit(X).fitted_params()
    w = weights if weighted else None
    ref = fused_chunk_stats(X, plan_estep(params), weights=w)
    for tile_rows in (1000, 1 << 16):  # tiles do not change the statistics beyond rounding
        got = xp_chunk_stats(on(namespace, X), params, on(namespace, w), tile_rows=tile_rows)
        assert_stats_match(got, ref, covariance_type, 1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_compute_accumulates_in_float64(data, covariance_type):
    X, _ = data
    params = dgmm.GaussianMixture(4, covariance_type=covariance_type, random_state=0, max_iter=3).fit(X).fitted_params()
    ref = fused_chunk_stats(X, plan_estep(params))
    got = xp_chunk_stats(on("strict-device1", X), params, dtype="float32")
    assert got.s2.dtype == np.float64
    assert_stats_match(got, ref, covariance_type, 1e-4)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("tile_rows", [None, 37], ids=["one-tile", "tiles-of-37"])
def test_kmeans_kernels_equal_the_numpy_ones(data, weighted, tile_rows):
    from dgmm.kernels.device.kmeans import xp_count_nearest, xp_lloyd_chunk, xp_sample_candidates
    from dgmm.kernels.kmeans import count_nearest, lloyd_chunk, sample_candidates

    X, weights = data
    w = weights if weighted else None
    centres = X[[0, 500, 1000, 1500, 2000]]
    device, device_w = on("strict-device1", X), on("strict-device1", w)
    drawn, expected = (
        xp_sample_candidates(
            device, centres, seed=3, round_=1, oversampling=8.0, row_offset=100, weights=device_w, tile_rows=tile_rows
        ),
        sample_candidates(X, centres, seed=3, round_=1, oversampling=8.0, row_offset=100, weights=w),
    )
    np.testing.assert_array_equal(drawn.index, expected.index)
    np.testing.assert_allclose(drawn.cost, expected.cost, rtol=1e-12)
    np.testing.assert_array_equal(drawn.rows, expected.rows)
    counts, expected = xp_count_nearest(device, centres, device_w, tile_rows), count_nearest(X, centres, w)
    np.testing.assert_allclose(counts.weights, expected.weights, rtol=1e-12)
    np.testing.assert_allclose(counts.cost, expected.cost, rtol=1e-12)
    lloyd, expected = xp_lloyd_chunk(device, centres, 100, device_w, tile_rows), lloyd_chunk(X, centres, 100, w)
    for name in ("counts", "cost", "far_dist"):
        np.testing.assert_allclose(getattr(lloyd, name), getattr(expected, name), rtol=1e-12)
    np.testing.assert_allclose(lloyd.sums, expected.sums, rtol=0, atol=1e-9 * np.abs(X - X.mean(0)).sum())
    np.testing.assert_array_equal(lloyd.far_index, expected.far_index)
    np.testing.assert_array_equal(lloyd.far_rows, expected.far_rows)


def test_tiles_on_a_device_are_as_large_as_a_quarter_of_the_chunk_or_1_gib_allows():
    from dgmm.kernels.device.tiles import xp_tile_rows

    rows = xp_tile_rows(100_000_000, 16, 8, "full")  # intermediates of 4d + 7K = 120 values a row
    assert rows == int(0.25 * 100_000_000 * 16 / 120)  # 30 tiles: few kernel launches, 1.25x the data in all
    assert xp_tile_rows(100_000_000, 64, 64, "diag") == int(0.25 * 100_000_000 * 64 / (6 * 64 + 7 * 64))
    assert xp_tile_rows(1_000_000, 16, 8, "full") == 1 << 20  # a row group of a million rows: one tile
    assert xp_tile_rows(1_000_000, 64, 64, "diag") == 2**30 // (8 * 832)  # ...unless it needs over 1 GiB


@pytest.mark.parametrize("namespace", ["numpy", "strict-device1"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("tile_rows", [None, 37], ids=["one-tile", "tiles-of-37"])
def test_move_statistics_equal_the_numpy_kernel(data, namespace, weighted, tile_rows):
    from dgmm.kernels.device.moves import xp_move_stats
    from dgmm.kernels.moves import move_stats, principal_axes

    X, weights = data
    params = dgmm.GaussianMixture(4, random_state=0, max_iter=3).fit(X).fitted_params()
    axes = principal_axes(params)[1]
    w = weights if weighted else None
    ref = move_stats(X, params, axes, w)
    got = xp_move_stats(on(namespace, X), params, axes, on(namespace, w), tile_rows)
    for name in ("overlap", "s0", "m2", "m4"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("method", ["kmeans", "random"])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_initial_statistics_and_posteriors_by_tiles_equal_one_tile(data, method, covariance_type):
    """Tiles keep a device's memory near the chunk's size; they change nothing but rounding (and the hashed
    responsibilities of "random" follow the global row index across tiles)."""
    from dgmm.kernels.device.estep import xp_init_stats
    from dgmm.kernels.device.posterior import xp_posteriors

    X, weights = data
    device, device_w = on("strict-device1", X), on("strict-device1", weights)
    centres = X[[0, 500, 1000, 1500]]
    whole = xp_init_stats(device, method, centres, covariance_type, 3, 100, device_w)
    assert_stats_match(
        xp_init_stats(device, method, centres, covariance_type, 3, 100, device_w, tile_rows=37),
        whole,
        covariance_type,
        1e-12,
    )
    params = dgmm.GaussianMixture(4, covariance_type=covariance_type, random_state=0, max_iter=3).fit(X).fitted_params()
    dropped = on("strict-device1", weights == 0)
    outputs = ("labels", "log_density", "responsibilities")
    one, tiled = (xp_posteriors(device, params, outputs, dropped, tile_rows=rows) for rows in (None, 37))
    to_host = lambda a: np.asarray(a.to_device(xps.Device("CPU_DEVICE")))  # noqa: E731
    np.testing.assert_array_equal(to_host(tiled["labels"]), to_host(one["labels"]))
    for name in ("log_density", "responsibilities"):
        np.testing.assert_allclose(to_host(tiled[name]), to_host(one[name]), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("tile_rows", [None, 37], ids=["one-tile", "tiles-of-37"])
def test_class_statistics_under_a_background_model_equal_the_numpy_kernel(data, tile_rows):
    from dgmm.kernels.adapt import class_stats
    from dgmm.kernels.device.classes import xp_class_stats

    X, weights = data
    codes = (np.arange(len(X)) * 7 % 3).astype(float)
    codes[codes == 2] = 3.0  # class 2 absent from the block: zeros
    block = np.column_stack([X, weights, codes])
    ubm = dgmm.GaussianMixture(4, random_state=0, max_iter=3).fit(X).fitted_params()
    got = xp_class_stats(on("strict-device1", block), ubm, True, tile_rows=tile_rows)
    ref = class_stats(block, ubm, True)
    assert got.codes.tolist() == ref.codes.tolist() == [0, 1, 3]  # only the classes present
    shape = (4, ubm.n_components, ubm.n_features, ubm.covariance_type)
    for c, (mine, theirs) in enumerate(zip(got.dense(*shape), ref.dense(*shape))):
        if c == 2:
            assert mine.n_rows == theirs.n_rows == 0 and not np.any(mine.s2)
            continue
        assert_stats_match(mine, theirs, "full", 1e-12)
