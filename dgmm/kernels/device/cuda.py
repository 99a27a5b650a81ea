"""The fused E-step on a GPU: :file:`cuda.cu`, two kernels per tile, launched by CuPy.

The array-API tile (:mod:`dgmm.kernels.device.estep`) takes ~10 whole-tile array operations per component,
each reading and writing (T, d) arrays in GPU memory: ~15 KB per row at d=16, K=8, full. Here a tile
is read twice and only the responsibilities are written:

1. ``dgmm_resp``, a thread per row: distances, log-sum-exp, responsibilities ``R`` (T, K) and the
   row's log-likelihood, all in registers (as the numba kernel does on the CPU);
2. ``dgmm_stats``, a thread per (slice of rows, component, block of features): ``S1`` and the lower triangle of
   ``S2`` row by row, centred on the old means, in float64; the slices' partial sums are added in
   order, so the statistics depend only on the tile.

Per row that is the data twice, ``R`` written and read: ~0.4 KB at d=16, K=8 in float64.

The same source compiles on the host (:class:`dgmm.testing.HostLauncher`, the C compiler and ctypes), so the tests
check the kernels' arithmetic and this module's glue on machines without a GPU.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..arrays import to_numpy
from ..estep import EStepPlan, component_chols
from ..stats import Stats, s2_shape, weight_totals
from .tiles import row_tiles, rows_for_width

SOURCE = Path(__file__).with_name("cuda.cu")
STATS_THREADS = 1 << 18  # dgmm_stats threads a tile aims at: an H200's 132 SMs hold 270,336
MIN_SLICE_ROWS = 64
BLOCK = 256  # threads per block
COV_CODES = {"full": 0, "tied": 1, "diag": 2, "spherical": 2}
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def kernel_source(
    n_features: int,
    n_components: int,
    covariance_type: str,
    data_dtype: Any,
    compute_dtype: Any,
    triangular: bool = True,
) -> str:
    """The kernels' text for one shape: :file:`cuda.cu` after its defines (``triangular``: the precision
    factors are upper triangular, so the distances take half the products)."""
    defines = {
        "D": n_features,
        "K": n_components,
        "COV": COV_CODES[covariance_type],
        "IB": rows_per_thread(n_features, covariance_type),
        "TRI": int(triangular),
        "XT": C_TYPES[np.dtype(data_dtype)],
        "REAL": C_TYPES[np.dtype(compute_dtype)],
    }
    return "".join(f"#define {name} {value}\n" for name, value in defines.items()) + SOURCE.read_text()


def kernel_key(X: Any, plan: EStepPlan) -> tuple:
    """What the kernels for ``X`` (n, d) are compiled for: :func:`kernel_source`'s arguments."""
    data_dtype = np.dtype(X.dtype) if np.dtype(X.dtype) in C_TYPES else np.dtype(np.float64)
    return X.shape[1], plan.n_components, plan.covariance_type, data_dtype, plan.dtype, upper_triangular(plan)


def upper_triangular(plan: EStepPlan) -> bool:
    """Whether the plan's precision factors are upper triangular, as every factor dgmm computes is (one built
    by hand otherwise takes every product, as the numba kernel's GEMM does)."""
    d = plan.n_features
    if plan.covariance_type == "full":
        return not np.any(np.tril(component_chols(plan), -1))
    if plan.covariance_type == "tied":
        return not np.any(np.tril(plan.gemm[0, :d, :], -1))
    return True


def fused_tile_rows(n_rows: int, n_features: int, n_components: int) -> int:
    """Rows per tile: ``R`` and the log-likelihoods, K + 1 float64 values a row, by the rule of every device
    kernel's tiles (:func:`~dgmm.kernels.device.tiles.rows_for_width`: within a quarter of the chunk, so GPU memory
    is about 1.25x the data, and at least a million rows or 1 GiB)."""
    return rows_for_width(n_rows, n_features, n_components + 1)


def rows_per_thread(n_features: int, covariance_type: str) -> int:
    """Full/tied: rows of ``S2`` each ``dgmm_stats`` thread sums, ``IB``: each ``d_tj`` it computes serves IB
    products, within 32 float64 accumulators (64 of a thread's 255 registers, leaving room for the hoisted
    ``c_j`` and ``a_kj``); 1 for diag/spherical."""
    if covariance_type in ("diag", "spherical"):
        return 1
    return max(1, min(4, 32 // n_features))


def stats_threads_per_slice(n_features: int, n_components: int, covariance_type: str) -> int:
    """``dgmm_stats`` threads per slice of rows: one per component and block of ``IB`` features."""
    return n_components * -(-n_features // rows_per_thread(n_features, covariance_type))


def slice_rows(n_rows: int, per_slice: int) -> int:
    """Rows each ``dgmm_stats`` thread sums, so a tile has about :data:`STATS_THREADS` threads of ``per_slice``
    threads a slice."""
    slices = max(1, min(-(-STATS_THREADS // per_slice), -(-n_rows // MIN_SLICE_ROWS)))
    return -(-n_rows // slices)


class Operands:
    """The plan's constants on the launcher's device: what ``dgmm_resp`` and ``dgmm_stats`` read."""

    def __init__(self, xp, plan: EStepPlan, floor: float | None = None):
        d = plan.n_features
        real = plan.dtype
        kind = plan.covariance_type
        log_norm = plan.log_norm
        if kind == "full":
            matrix, shift_u = component_chols(plan), np.zeros(1)
        elif kind == "tied":
            matrix, shift_u = plan.gemm[0, :d, :], plan.shift_u
        else:  # per-feature precisions P (K, d); the kernel sums (z − a)² P itself, so log_norm gets ½ a²P back
            matrix, shift_u = plan.gemm[d:, :].T, np.zeros(1)
            log_norm = log_norm + 0.5 * np.sum(plan.shift**2 * matrix.astype(np.float64), axis=1)
        self.centre = xp.asarray(np.ascontiguousarray(plan.centre, dtype=np.float64))
        self.shift = xp.asarray(np.ascontiguousarray(plan.shift, dtype=real))
        self.matrix = xp.asarray(np.ascontiguousarray(matrix, dtype=real))
        self.shift_u = xp.asarray(np.ascontiguousarray(shift_u, dtype=real))
        self.log_norm = xp.asarray(np.ascontiguousarray(log_norm, dtype=np.float64))
        self.floor = plan.floor if floor is None else floor
        self.empty = xp.zeros(1)


def fused_chunk_stats_on(
    launcher: "Launcher", X: Any, plan: EStepPlan, weights: Any = None, tile_rows: int | None = None
) -> Stats:
    """E-step statistics of one chunk ``X`` (n, d), float32 or float64, by the fused kernels.

    Parameters
    ----------
    launcher : where the kernels run; ``X`` and ``weights`` are arrays of its library (``launcher.xp``)
    plan : from :func:`dgmm.kernels.estep.plan_estep`
    weights : (n,) or None; row n counts ``weights[n]`` times
    tile_rows : rows per tile; default :func:`fused_tile_rows`

    Returns
    -------
    Stats (NumPy, float64), as :func:`dgmm.kernels.estep.fused_chunk_stats` gives
    """
    xp = launcher.xp
    n, d = X.shape
    K = plan.n_components
    X = _floating(xp, X)
    if weights is not None:
        weights = xp.ascontiguousarray(weights.astype(xp.float64))
    ops, key = Operands(xp, plan), kernel_key(X, plan)
    loglik, s0, s1 = 0.0, np.zeros(K), np.zeros((K, d))
    s2 = np.zeros(s2_shape(K, d, plan.covariance_type))
    for start, stop in row_tiles(n, tile_rows or fused_tile_rows(n, d, K)):
        w = None if weights is None else weights[start:stop]
        parts = _tile(launcher, X[start:stop], plan, ops, w, key)
        loglik += float(to_numpy(parts[0]))
        s0 += to_numpy(parts[1])
        s1 += to_numpy(parts[2])
        s2 += _mirrored(to_numpy(parts[3]), plan.covariance_type)
    totals = weight_totals(n, weights)
    return Stats(n, loglik, s0, s1, s2, *totals)


def fused_posteriors_on(
    launcher: "Launcher", X: Any, plan: EStepPlan, outputs: tuple[str, ...], tile_rows: int | None = None
) -> dict[str, Any]:
    """Row outputs of the mixture by ``dgmm_resp`` alone, on the launcher's device, in its library.

    Parameters
    ----------
    X : (n, d), float32 or float64
    plan : from :func:`~dgmm.kernels.estep.plan_estep` (float64)
    outputs : any of "labels" (n,) int64 (the largest responsibility's component), "log_density" (n,) and
        "responsibilities" (n, K), float64, as :mod:`dgmm.kernels.posterior` gives them (no floor: exact
        ``exp(log p_k − log p)``)
    """
    xp = launcher.xp
    n, d = X.shape
    K = plan.n_components
    X = _floating(xp, X)
    ops, key = Operands(xp, plan, floor=-1e308), kernel_key(X, plan)
    parts: dict[str, list] = {name: [] for name in outputs}
    for start, stop in row_tiles(n, tile_rows or fused_tile_rows(n, d, K)):
        R, LL = _responsibilities(launcher, X[start:stop], ops, None, key)
        got = {
            "labels": lambda: xp.argmax(R, axis=1).astype(xp.int64),
            "log_density": lambda: LL,
            "responsibilities": lambda: R,
        }
        for name in outputs:
            parts[name].append(got[name]())
    return {name: values[0] if len(values) == 1 else xp.concatenate(values) for name, values in parts.items()}


def _tile(launcher, X: Any, plan: EStepPlan, ops: Operands, w: Any, key: tuple) -> tuple[Any, Any, Any, Any]:
    """(loglik, s0, s1, lower-triangular or per-feature s2) of one tile, on the launcher's device."""
    xp = launcher.xp
    n, d = X.shape
    K = plan.n_components
    R, LL = _responsibilities(launcher, X, ops, w, key)
    per_feature = plan.covariance_type in ("diag", "spherical")
    if n == 0:  # an empty chunk: nothing to launch
        return LL.sum(), R.sum(axis=0), xp.zeros((K, d)), xp.zeros((K, d) if per_feature else (K, d, d))
    sr, sc = _strides(X)
    per_slice = stats_threads_per_slice(d, K, plan.covariance_type)
    rows = slice_rows(n, per_slice)
    slices = -(-n // rows)
    S1P = xp.empty((slices, K, d), dtype=xp.float64)
    S2P = xp.empty((slices, K, d) if per_feature else (slices, K, d, d), dtype=xp.float64)
    launcher.stats(key, slices * per_slice, n, rows, X, sr, sc, ops, R, S1P, S2P)
    return LL.sum(), R.sum(axis=0), S1P.sum(axis=0), S2P.sum(axis=0)


def _responsibilities(launcher, X: Any, ops: Operands, w: Any, key: tuple) -> tuple[Any, Any]:
    """``dgmm_resp`` on a tile (T, d): responsibilities ``R`` (T, K) and the rows' log-likelihoods (T,), float64."""
    xp = launcher.xp
    n = X.shape[0]
    R = xp.empty((n, ops.log_norm.shape[0]), dtype=xp.float64)
    LL = xp.empty((n,), dtype=xp.float64)
    if n:  # CUDA refuses a launch of no blocks
        launcher.resp(key, n, X, *_strides(X), w if w is not None else ops.empty, w is not None, ops, R, LL)
    return R, LL


def _strides(X: Any) -> tuple[int, int]:
    """Row and column strides of X (n, d) in elements: the kernels read row-major and column-major tiles alike."""
    return X.strides[0] // X.dtype.itemsize, X.strides[1] // X.dtype.itemsize


def _floating(xp, X: Any) -> Any:
    """X itself when float32 or float64 (the types the kernels are built for), else X as float64."""
    return X if X.dtype in (xp.float32, xp.float64) else X.astype(xp.float64)


def _mirrored(s2: np.ndarray, covariance_type: str) -> np.ndarray:
    """Full/tied: each component's lower triangle (K, d, d) made symmetric (summed over components for tied)."""
    if covariance_type in ("diag", "spherical"):
        return s2
    full = s2 + np.tril(s2, -1).transpose(0, 2, 1)
    return full.sum(axis=0) if covariance_type == "tied" else full


class Launcher(Protocol):
    """What runs the two kernels: :class:`CupyLauncher` on a GPU, ``dgmm.testing.HostLauncher`` on the host."""

    xp: Any

    def compile(self, key: tuple) -> None: ...

    def resp(self, key, n, X, sr, sc, W, has_w, ops: Operands, R, LL) -> None: ...

    def stats(self, key, threads, n, rows, X, sr, sc, ops: Operands, R, S1P, S2P) -> None: ...


class CupyLauncher:
    """The kernels on CuPy's current device, compiled once per shape and dtype by NVRTC (CuPy caches them)."""

    def __init__(self):
        import cupy

        self.xp = cupy
        self._modules: dict[tuple, Any] = {}

    def _function(self, key: tuple, name: str):
        module = self._modules.get(key)
        if module is None:
            module = self._modules[key] = self.xp.RawModule(code=kernel_source(*key))
        return module.get_function(name)

    def compile(self, key: tuple) -> None:
        """Compile both kernels of ``key`` now (NVRTC errors surface here, before any data is touched)."""
        self._function(key, "dgmm_resp")
        self._function(key, "dgmm_stats")

    def resp(self, key, n, X, sr, sc, W, has_w, ops: Operands, R, LL) -> None:
        self._function(key, "dgmm_resp")(
            (-(-n // BLOCK),),
            (BLOCK,),
            (
                np.int64(n),
                X,
                np.int64(sr),
                np.int64(sc),
                np.int32(has_w),
                W,
                ops.centre,
                ops.shift,
                ops.matrix,
                ops.shift_u,
                ops.log_norm,
                np.float64(ops.floor),
                R,
                LL,
            ),
        )

    def stats(self, key, threads, n, rows, X, sr, sc, ops: Operands, R, S1P, S2P) -> None:
        self._function(key, "dgmm_stats")(
            (-(-threads // BLOCK),),
            (BLOCK,),
            (
                np.int64(threads),
                np.int64(n),
                np.int64(rows),
                X,
                np.int64(sr),
                np.int64(sc),
                ops.centre,
                ops.shift,
                R,
                S1P,
                S2P,
            ),
        )


_GPU: dict[str, Any] = {}
_GPU_LOCK = threading.Lock()


def gpu_launcher(X: Any, plan: EStepPlan) -> CupyLauncher | None:
    """The launcher for ``X`` when it is a CuPy array and its kernels compile; None otherwise (the array-API
    kernels run instead). A compile failure is warned about once and not retried."""
    from array_api_compat import is_cupy_array

    if not is_cupy_array(X) or _GPU.get("failed"):
        return None
    with _GPU_LOCK:
        launcher = _GPU.get("launcher") or _GPU.setdefault("launcher", CupyLauncher())
        try:
            launcher.compile(kernel_key(X, plan))
        except Exception as error:  # NVRTC missing or refusing the source: the fit still runs, unfused
            _GPU["failed"] = True
            warnings.warn(
                f"dgmm's fused CUDA E-step did not compile ({type(error).__name__}: {error}); "
                "using the array-API kernels, several times slower",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
    return launcher
