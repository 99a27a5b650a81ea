"""The fused CUDA E-step (dgmm.kernels.device.cuda) compiled for the host by the C compiler, against the numba
kernel: the same source and the same glue as on a GPU, each kernel a loop over its thread indices."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.kernels.device.cuda import (
    fused_chunk_stats_on,
    gpu_launcher,
    kernel_source,
    slice_rows,
    stats_threads_per_slice,
)
from dgmm.kernels.estep import fused_chunk_stats, plan_estep
from dgmm.kernels.gaussian import COVARIANCE_TYPES
from dgmm.kernels.params import MixtureParams
from dgmm.testing import HostLauncher, assert_stats_match

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="no C compiler to build the CUDA kernels' host version",
)


@pytest.fixture(scope="module")
def launcher():
    return HostLauncher()


@pytest.fixture(scope="module")
def data():
    X, _ = sample_mixture(random_mixture(4, 5, seed=1), 3000, seed=1)
    weights = np.random.default_rng(0).integers(0, 3, len(X)).astype(float)
    return X + 1000.0, weights  # a large common offset, as real data has


@pytest.fixture(scope="module")
def fitted(data):
    X, _ = data
    return {
        kind: dgmm.GaussianMixture(4, covariance_type=kind, random_state=0, max_iter=3).fit(X).fitted_params()
        for kind in COVARIANCE_TYPES
    }


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_float64_statistics_equal_the_numba_kernels(launcher, data, fitted, covariance_type, weighted):
    X, weights = data
    w = weights if weighted else None
    plan = plan_estep(fitted[covariance_type])
    ref = fused_chunk_stats(X, plan, weights=w)
    for tile_rows in (1000, None):  # tiles do not change the statistics beyond rounding
        assert_stats_match(fused_chunk_stats_on(launcher, X, plan, w, tile_rows), ref, covariance_type, 1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_data_and_compute_accumulate_in_float64(launcher, data, fitted, covariance_type):
    X, _ = data
    params = fitted[covariance_type]
    ref = fused_chunk_stats(X, plan_estep(params))
    got = fused_chunk_stats_on(launcher, X.astype(np.float32), plan_estep(params, "float32"))
    assert got.s2.dtype == np.float64
    assert_stats_match(got, ref, covariance_type, 1e-4)


def test_column_major_data_gives_the_same_bits(launcher, data, fitted):
    """The GPU reader stages chunks column by column and hands the kernels their transpose: strides, not copies."""
    X, weights = data
    plan = plan_estep(fitted["full"])
    rows_major = fused_chunk_stats_on(launcher, X, plan, weights, 700)
    columns = np.asfortranarray(X)
    assert not columns.flags.c_contiguous
    got = fused_chunk_stats_on(launcher, columns, plan, weights, 700)
    for name in ("loglik", "s0", "s1", "s2"):
        np.testing.assert_array_equal(getattr(got, name), getattr(rows_major, name), err_msg=name)


def test_rows_of_weight_zero_and_empty_components_add_nothing(launcher, data, fitted):
    """A dropped row (weight 0) adds nothing; a component of weight 0 (log π = −inf) gets responsibility 0."""
    X, weights = data
    p = fitted["diag"]
    emptied = MixtureParams(
        np.r_[p.weights[:-1], 0.0] / p.weights[:-1].sum(), p.means, p.covariances, p.precisions_cholesky, "diag"
    )
    plan = plan_estep(emptied)
    got = fused_chunk_stats_on(launcher, X, plan, weights)
    ref = fused_chunk_stats(X, plan, weights=weights)
    assert got.s0[-1] == 0.0 and not np.any(got.s1[-1]) and not np.any(got.s2[-1])
    assert got.n_zero_weight == int(np.sum(weights == 0)) > 0
    assert_stats_match(got, ref, "diag", 1e-12)
    live = weights > 0
    assert_stats_match(
        fused_chunk_stats_on(launcher, X[live], plan, weights[live]),
        fused_chunk_stats(X[live], plan, weights=weights[live]),
        "diag",
        1e-12,
    )


def test_slices_cover_every_row_once():
    for n, d, K in [(1, 1, 1), (100, 16, 8), (3000, 5, 4), (10**8, 16, 8), (10**6, 64, 64)]:
        rows = slice_rows(n, stats_threads_per_slice(d, K, "full"))
        slices = -(-n // rows)
        assert rows >= 1 and (slices - 1) * rows < n <= slices * rows


def test_source_defines_the_shape_and_the_numpy_path_stays_off_the_gpu(data, fitted):
    source = kernel_source(16, 8, "spherical", np.float32, np.float64)
    assert source.startswith(
        "#define D 16\n#define K 8\n#define COV 2\n#define IB 1\n#define TRI 1\n#define XT float\n#define REAL double\n"
    )
    assert "#define IB 2\n" in kernel_source(16, 8, "full", np.float64, np.float64)
    X, _ = data
    assert gpu_launcher(X, plan_estep(fitted["full"])) is None  # NumPy arrays keep the numba kernel


@pytest.mark.parametrize("n_features", [1, 10, 40])  # IB = 4, 3 and 1 rows of S2 per thread
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_every_block_of_features_equals_the_numba_kernel(launcher, n_features, covariance_type):
    from dgmm.testing import random_params

    rng = np.random.default_rng(n_features)
    params = random_params(rng, 3, n_features, covariance_type)
    X = rng.normal(size=(500, n_features)) * 2.0 + params.means[rng.integers(0, 3, 500)]
    plan = plan_estep(params)
    assert_stats_match(fused_chunk_stats_on(launcher, X, plan), fused_chunk_stats(X, plan), covariance_type, 1e-12)


def nvrtc():
    """NVRTC, the compiler CuPy uses, as a CPU library (the test extra's nvidia-cuda-nvrtc-cu12, or CUDA's)."""
    import ctypes
    import ctypes.util
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    found = [
        str(p)
        for folder in (spec.submodule_search_locations if spec else [])
        for p in sorted(Path(folder, "lib").glob("libnvrtc.so*"))
        if "builtins" not in p.name
    ]
    name = found[0] if found else ctypes.util.find_library("nvrtc")
    if name is None:
        pytest.skip("no NVRTC library (pip install nvidia-cuda-nvrtc-cu12)")
    return ctypes.CDLL(name)


def nvrtc_compile(lib, source: str, options: list[str]) -> tuple[int, str]:
    """(NVRTC's result code, its log) of compiling ``source`` with ``options``."""
    import ctypes

    program, size = ctypes.c_void_p(), ctypes.c_size_t()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"cuda.cu", 0, None, None) == 0
    try:
        flags = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        result = lib.nvrtcCompileProgram(program, len(options), flags)
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, log)
        return result, log.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(
    "dtypes",
    [(np.float64, np.float64), (np.float32, np.float32), (np.float32, np.float64)],
    ids=["f64", "f32", "f32-data-f64-compute"],
)
def test_nvrtc_compiles_the_kernels_for_an_h100_without_spills(covariance_type, dtypes):
    """What CuPy does on a GPU, done on the CPU: NVRTC compiles the source for sm_90 (H100/H200), and at the
    benchmark's shape (d=16, K=8) ptxas keeps every per-thread array in registers: no stack, no spills."""
    result, log = nvrtc_compile(
        nvrtc(), kernel_source(16, 8, covariance_type, *dtypes), ["--gpu-architecture=sm_90", "--ptxas-options=-v"]
    )
    assert result == 0, log
    assert "warning" not in log.replace("ptxas info", ""), log
    assert log.count(" 0 bytes stack frame, 0 bytes spill stores") == 2, log  # nothing in local memory


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_nvrtc_compiles_wide_shapes(covariance_type):
    """1M x 64 x 64 diag is a benchmark shape; full at that width spills a little to (cached) local memory."""
    result, log = nvrtc_compile(
        nvrtc(), kernel_source(64, 64, covariance_type, np.float64, np.float64), ["--gpu-architecture=sm_90"]
    )
    assert result == 0, log


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_precision_factors_that_are_not_triangular_take_every_product(launcher, data, fitted, covariance_type):
    """dgmm's factors U are upper triangular and the distances skip the zeros; a factor built by hand otherwise
    (here with an entry below the diagonal) takes every product, as the numba kernel's GEMM does."""
    from dgmm.kernels.device.cuda import upper_triangular

    X, weights = data
    p = fitted[covariance_type]
    factor = p.precisions_cholesky.copy()
    factor[..., 3, 1] = 0.5 * factor[..., 1, 1]
    lower = MixtureParams(p.weights, p.means, p.covariances, factor, covariance_type)
    plan, other = plan_estep(p), plan_estep(lower)
    assert upper_triangular(plan) and not upper_triangular(other)
    for given in (plan, other):
        assert_stats_match(
            fused_chunk_stats_on(launcher, X, given, weights),
            fused_chunk_stats(X, given, weights=weights),
            covariance_type,
            1e-12,
        )


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_many_components_keep_their_log_probabilities_in_the_output_row(launcher, covariance_type):
    """Beyond 32 components (a speaker's background model has 512 to 2,048) the row of R holds the
    log-probabilities until they become responsibilities, instead of a per-thread array."""
    from dgmm.testing import random_params

    rng = np.random.default_rng(9)
    params = random_params(rng, 40, 3, covariance_type)
    X = params.means[rng.integers(0, 40, 800)] + rng.normal(size=(800, 3))
    plan = plan_estep(params)
    assert_stats_match(fused_chunk_stats_on(launcher, X, plan), fused_chunk_stats(X, plan), covariance_type, 1e-12)
    result, log = nvrtc_compile(
        nvrtc(),
        kernel_source(40, 1024, "diag", np.float32, np.float32),
        ["--gpu-architecture=sm_90", "--ptxas-options=-v"],
    )
    assert result == 0 and log.count("0 bytes stack frame") == 2, log  # nothing in local memory


def test_tiles_hold_a_quarter_of_the_chunk_or_1_gib_of_responsibilities():
    from dgmm.kernels.device.cuda import fused_tile_rows

    assert fused_tile_rows(100_000_000, 16, 8) == int(0.25 * 100_000_000 * 16 / 9)  # 3 tiles, 1.25x the data
    assert fused_tile_rows(1_000_000, 16, 8) == 1 << 20  # a row group of a million rows: one tile
    assert fused_tile_rows(10_000_000, 40, 1024) == 2**30 // (8 * 1025)  # a background model: 1 GiB of R a tile


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_row_outputs_of_the_fused_kernel_equal_the_numpy_ones(launcher, data, fitted, covariance_type):
    """Predictions of a CuPy array take dgmm_resp alone: labels, log-densities and exact responsibilities."""
    from dgmm.kernels import posterior
    from dgmm.kernels.device.cuda import fused_posteriors_on

    X, _ = data
    params = fitted[covariance_type]
    outputs = ("labels", "log_density", "responsibilities")
    for tile_rows in (None, 700):
        got = fused_posteriors_on(launcher, np.asfortranarray(X), plan_estep(params), outputs, tile_rows)
        np.testing.assert_array_equal(got["labels"], posterior.labels(X, params))
        np.testing.assert_allclose(got["log_density"], posterior.log_density(X, params), rtol=1e-12)
        np.testing.assert_allclose(
            got["responsibilities"], posterior.responsibilities(X, params), rtol=1e-10, atol=1e-300
        )


def test_an_empty_chunk_launches_nothing_and_adds_nothing(launcher, data, fitted):
    from dgmm.kernels.device.cuda import fused_posteriors_on

    X, _ = data
    plan = plan_estep(fitted["full"])
    stats = fused_chunk_stats_on(launcher, X[:0], plan)
    assert stats.n_rows == 0 and stats.loglik == 0.0 and not np.any(stats.s2)
    assert fused_posteriors_on(launcher, X[:0], plan, ("responsibilities",))["responsibilities"].shape == (0, 4)
