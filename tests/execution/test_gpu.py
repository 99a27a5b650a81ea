"""On a real GPU, where CuPy sees one (skipped elsewhere: CI has none). The simulated device
(tests/execution/test_device_data.py) covers the same paths on any machine; these add what only a GPU
has: CuPy arrays and CuPy-backed Dask arrays, pinned staging buffers and two workers sharing the GPU."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.data.devices import DeviceTarget, cuda_devices
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.execution import local_cluster

if not cuda_devices():
    pytest.skip("no GPU that CuPy sees", allow_module_level=True)
cupy = pytest.importorskip("cupy")
SETTINGS = dict(n_components=3, random_state=0, max_iter=15, tol=0.0)


@pytest.fixture(scope="module")
def rows():
    X, _ = sample_mixture(random_mixture(3, 4, seed=7, separation=3.0), 6000, seed=7)
    return X


def assert_same_fit(gpu, cpu, rtol: float = 1e-9) -> None:
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_cupy_array_fit_equals_the_numpy_fit(rows, covariance_type):
    settings = dict(SETTINGS, covariance_type=covariance_type)
    gpu = dgmm.GaussianMixture(**settings).fit(cupy.asarray(rows))
    assert_same_fit(gpu, dgmm.GaussianMixture(**settings).fit(rows))
    assert isinstance(gpu.predict(cupy.asarray(rows)), cupy.ndarray)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fused_cuda_kernels_equal_the_numba_and_array_api_kernels(rows, covariance_type):
    """NVRTC compiles dgmm/kernels/device/cuda.cu, and the fused tiles equal the numba kernel (float64, 1e-12)
    and the array-API tiles, with weights, a column-major view (as the Parquet reader stages it) and float32."""
    from dgmm.kernels.device.cuda import gpu_launcher
    from dgmm.kernels.device.estep import xp_chunk_stats
    from dgmm.kernels.estep import fused_chunk_stats, plan_estep
    from dgmm.testing import assert_stats_match

    X = rows + 1000.0
    params = dgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0, max_iter=3).fit(X).fitted_params()
    weights = np.random.default_rng(0).integers(0, 3, len(X)).astype(float)
    plan = plan_estep(params)
    on_gpu, w = cupy.asarray(X), cupy.asarray(weights)
    assert gpu_launcher(on_gpu, plan) is not None  # compiled, not fallen back to the array-API tiles
    ref = fused_chunk_stats(X, plan, weights=weights)
    for data in (on_gpu, cupy.asfortranarray(on_gpu)):
        for tile_rows in (None, 1000):
            assert_stats_match(xp_chunk_stats(data, plan, w, tile_rows=tile_rows), ref, covariance_type, 1e-12)
    assert_stats_match(xp_chunk_stats(on_gpu, plan, w, fused=False), ref, covariance_type, 1e-12)
    single = xp_chunk_stats(on_gpu.astype(cupy.float32), params, dtype="float32")
    assert_stats_match(single, fused_chunk_stats(X, plan), covariance_type, 1e-4)
    from dgmm.kernels.device.posterior import xp_posteriors

    outputs = ("labels", "log_density", "responsibilities")
    fast, slow = xp_posteriors(on_gpu, params, outputs), xp_posteriors(on_gpu, params, outputs, fused=False)
    np.testing.assert_array_equal(fast["labels"].get(), slow["labels"].get())
    np.testing.assert_allclose(fast["log_density"].get(), slow["log_density"].get(), rtol=1e-12)
    np.testing.assert_allclose(fast["responsibilities"].get(), slow["responsibilities"].get(), rtol=1e-10, atol=1e-300)


def test_cupy_backed_dask_array_fit_equals_the_numpy_fit(rows):
    import dask.array as da

    X = da.from_array(cupy.asarray(rows), chunks=(1000, -1), asarray=False)
    assert_same_fit(dgmm.GaussianMixture(**SETTINGS).fit(X), dgmm.GaussianMixture(**SETTINGS).fit(rows))


def test_the_classifier_on_cupy_arrays_equals_the_numpy_fit(rows):
    y = np.array(["a", "b"])[(rows[:, 0] > np.median(rows[:, 0])).astype(int)]
    settings = dict(n_components=2, random_state=0, max_iter=15, tol=0.0)
    gpu = dgmm.GaussianMixtureClassifier(**settings).fit(cupy.asarray(rows), y)
    cpu = dgmm.GaussianMixtureClassifier(**settings).fit(rows, y)
    for got, want in zip(gpu.estimators_, cpu.estimators_):
        assert_same_fit(got, want)
    np.testing.assert_array_equal(gpu.predict(cupy.asarray(rows)), cpu.predict(rows))
    np.testing.assert_allclose(gpu.predict_proba(cupy.asarray(rows)).get(), cpu.predict_proba(rows), atol=1e-9)


def test_pinned_staging_buffer_is_reused_and_put_copies_exactly(rows):
    target = DeviceTarget()
    first = target.staging((1000, 4))
    assert np.shares_memory(first, target.staging((500, 4)))  # this thread's buffer, not a new one
    first[...] = rows[:1000]
    np.testing.assert_array_equal(target.put(first).get(), rows[:1000])  # decoded in place: no host copy
    np.testing.assert_array_equal(target.put(rows[1000:3000]).get(), rows[1000:3000])  # staged, buffer grown


def test_parquet_streamed_to_the_gpu_by_two_workers_sharing_it(rows, parquet_dir):
    path = parquet_dir(rows, row_group_size=500, n_files=2)
    cpu = dgmm.GaussianMixture(**SETTINGS, device="cpu").fit(path)
    assert_same_fit(dgmm.GaussianMixture(**SETTINGS, device="cuda").fit(path), cpu)
    with local_cluster(2, device=DeviceTarget()) as client:
        for cache in ("auto", "none"):
            gpu = dgmm.GaussianMixture(
                **SETTINGS, device="cuda", cache=cache, device_cache_gib=0.001, client=client
            ).fit(path)
            assert_same_fit(gpu, cpu)
