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


def test_cupy_backed_dask_array_fit_equals_the_numpy_fit(rows):
    import dask.array as da

    X = da.from_array(cupy.asarray(rows), chunks=(1000, -1), asarray=False)
    assert_same_fit(dgmm.GaussianMixture(**SETTINGS).fit(X), dgmm.GaussianMixture(**SETTINGS).fit(rows))


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
            gpu = dgmm.GaussianMixture(**SETTINGS, device="cuda", cache=cache, device_cache_gib=0.001,
                                       client=client).fit(path)
            assert_same_fit(gpu, cpu)
