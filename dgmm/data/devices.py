"""Chunks on a GPU: the device passes run on, host-to-device copies through reused pinned buffers, and
each process's cache of device chunks within a byte budget.

A :class:`DeviceTarget` is pickled into the tasks of a pass; every worker process then keeps its own
staging buffers (one per thread) and its own :class:`DeviceCache`. The data path of a Parquet chunk::

    pyarrow decodes the row group (CPU) ──▶ straight into this thread's pinned buffer
        ──▶ copied to the GPU on this thread's stream (51 GiB/s pinned, 6.3 pageable, on an H200)
        ──▶ kept in the device cache while it has room, else dropped after the pass

A worker runs several threads, so one chunk decodes while another's copy or kernel runs: decoding
overlaps the copies and the compute. No Dask here.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import numpy as np

from ..errors import InputTypeError
from ..kernels.arrays import namespace, to_numpy
from .row_groups import RowGroupReader, column_values, read_row_group
from .validation import MAX_MAGNITUDE, NanPolicy, check_finite_block

DEVICE_CACHE_SHARE = 0.5  # with no budget given: this share of the device memory free when a fit's first chunk arrives


@dataclass(frozen=True)
class DeviceTarget:
    """A device that passes run on.

    ``library`` "cupy" is a CUDA GPU; "array_api_strict" is array-api-strict's ``device1`` on the CPU,
    which refuses conversion to NumPy as CuPy does: a simulated GPU for tests
    (:func:`dgmm.testing.simulated_gpu`).
    """

    library: Literal["cupy", "array_api_strict"] = "cupy"
    name: str = "cuda"

    def __str__(self) -> str:
        return "GPU" if self.library == "cupy" else f"simulated GPU ({self.library} {self.name})"

    def count(self) -> int:
        """Devices this process sees (0 without a driver or CuPy)."""
        return cuda_devices() if self.library == "cupy" else 1

    def select(self, index: int, count: int) -> None:
        """Make GPU ``index`` mod ``count`` this process's only visible one (one worker per GPU), for every
        thread: through ``CUDA_VISIBLE_DEVICES``, so before the process first uses CUDA (a current device
        would be per thread, and a worker's task threads are many)."""
        if self.library == "cupy" and count > 0:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            ids = visible.split(",") if visible else [str(i) for i in range(count)]
            os.environ["CUDA_VISIBLE_DEVICES"] = ids[index % len(ids)]

    def meta(self) -> Any:
        """An empty (0, 0) float64 array of this device's library, for Dask (NumPy for the simulation:
        array-api-strict arrays lack the methods Dask calls on a meta)."""
        if self.library == "cupy":
            import cupy

            return cupy.empty((0, 0), dtype=np.float64)
        return np.empty((0, 0), dtype=np.float64)

    def staging(self, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """A host array to decode a chunk into: a view of this thread's pinned buffer (reused; grown when
        too small), so the copy to the GPU runs at pinned-memory speed without another host copy."""
        if self.library != "cupy":
            return np.empty(shape, dtype=dtype)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buffer = getattr(_THREAD, "pinned", None)
        if buffer is None or buffer.nbytes < nbytes:
            import cupyx

            _THREAD.pinned = buffer = cupyx.empty_pinned((max(nbytes, 1),), dtype=np.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)

    def put(self, block: np.ndarray) -> Any:
        """``block`` (n, d) copied to the device: through this thread's pinned buffer, on its own stream."""
        block = np.ascontiguousarray(block)
        if self.library != "cupy":
            import array_api_strict

            return array_api_strict.asarray(block, copy=True, device=array_api_strict.Device(self.name))
        import cupy

        pinned = getattr(_THREAD, "pinned", None)
        if pinned is None or not np.shares_memory(block, pinned):  # not decoded into it: staged there first
            staged = self.staging(block.shape, block.dtype)
            np.copyto(staged, block)
            block = staged
        stream = getattr(_THREAD, "stream", None)
        if stream is None:
            _THREAD.stream = stream = cupy.cuda.Stream(non_blocking=True)
        out = cupy.empty(block.shape, dtype=block.dtype)
        out.set(block, stream=stream)
        stream.synchronize()  # the pinned buffer is this thread's next chunk's
        return out

    def copied(self, array: Any) -> Any:
        """A Dask array of NumPy chunks with each chunk copied to this device in its task (:meth:`put`)."""
        return array.map_blocks(self.put, meta=self.meta(), dtype=np.float64)

    def free_bytes(self) -> int:
        """Device memory free now (CuPy's pool counts as free), in bytes."""
        if self.library == "cupy":
            import cupy

            pool = cupy.get_default_memory_pool()
            return int(cupy.cuda.runtime.memGetInfo()[0] + pool.total_bytes() - pool.used_bytes())
        import psutil

        return int(psutil.virtual_memory().available)


_THREAD = threading.local()


def cuda_devices() -> int:
    """CUDA GPUs CuPy sees in this process; 0 when CuPy is not installed or finds no driver or device."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device, a broken install: all mean "no GPU" here
        return 0


def is_device_array(X: Any) -> bool:
    """An array of another array-API library than NumPy (CuPy, torch, array-api-strict), maybe on a GPU."""
    if isinstance(X, np.ndarray) or type(X).__module__.split(".")[0] in ("pandas", "dask", "dask_expr"):
        return False
    return hasattr(X, "__array_namespace__") or type(X).__module__.split(".")[0] == "torch"


def check_device_values(X: Any, row_offset: int = 0, nan_policy: NanPolicy = "raise") -> Any:
    """Refuse NaN, infinities and values beyond MAX_MAGNITUDE in an array-API block, on its device
    (only the first bad row is copied, to name it); with ``"drop"``, NaN rows pass.

    Returns the (n,) boolean array of rows holding NaN under ``"drop"``, else None (no row dropped).
    """
    xp = namespace(X)
    if X.shape[0] and -MAX_MAGNITUDE <= float(to_numpy(xp.min(X))) and float(to_numpy(xp.max(X))) <= MAX_MAGNITUDE:
        return None  # every value finite and in range (NaN fails both): two reductions, no array of X's size
    bad = ~xp.isfinite(X)
    if X.dtype == xp.float64:  # a finite float32 is far below MAX_MAGNITUDE
        bad = bad | (xp.abs(X) > MAX_MAGNITUDE)
    dropped = None
    if nan_policy == "drop":
        dropped = xp.any(xp.isnan(X), axis=1)
        bad = bad & ~dropped[:, None]
    if bool(to_numpy(xp.any(bad))):
        row = int(np.argmax(to_numpy(xp.any(bad, axis=1))))
        check_finite_block(to_numpy(X[row : row + 1, ...]), row_offset + row, nan_policy)
    return dropped


def device_route(data: Any) -> str:
    """How lazy input marked for a GPU (:attr:`~dgmm.data.inputs.Input.device`) gets there: "reader" (Parquet through its
    dataset's device reader: decoded into pinned memory, cached on each worker), "device" (a Dask array
    of CuPy chunks, there already) or "copied" (NumPy chunks, each copied in its task)."""
    if data.dataset is not None and data.lazy.name == data.dataset.to_dask().name:  # no weight array attached
        return "reader"
    return "device" if is_device_array(data.lazy._meta) else "copied"


_SIMULATED: contextvars.ContextVar[DeviceTarget | None] = contextvars.ContextVar("dgmm_simulated_gpu", default=None)


@contextlib.contextmanager
def simulated_device(target: DeviceTarget) -> Iterator[None]:
    """Inside the block, ``device="cuda"`` (and ``"auto"`` for Parquet) means ``target``."""
    token = _SIMULATED.set(target)
    try:
        yield
    finally:
        _SIMULATED.reset(token)


def device_target(device: str) -> DeviceTarget | None:
    """The GPU that passes over Parquet or Dask input run on for a ``device`` setting, or None (the CPU).

    "cuda" needs CuPy and a GPU it sees (else InputTypeError, one line); "auto" takes one if there is one.
    """
    if device == "cpu":
        return None
    simulated = _SIMULATED.get()
    if simulated is not None:
        return simulated
    if cuda_devices():
        return DeviceTarget()
    if device == "cuda":
        raise InputTypeError(
            "device='cuda' needs CuPy and a GPU it sees (none found: pip install cupy-cuda12x "
            "or cupy-cuda13x for your CUDA, and check nvidia-smi), or use device='cpu'"
        )
    return None


class DeviceCache:
    """This process's device chunks of one dataset, within a byte budget.

    The first chunks that fit stay and later ones stream: EM reads the chunks in the same order every
    pass, so evicting old chunks for new ones would only trade hits for misses. A chunk of another
    dataset (``token``), or asked for with another budget, empties the cache first: a long-lived
    worker holds one fit's data at most, and the next fit of the same data finds it there.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear(None, 0)

    def clear(self, token: str | None, budget: int | None) -> None:
        self.token, self.asked, self.budget = token, budget, -1 if budget is None else budget
        self.chunks, self.used, self.hits, self.misses = {}, 0, 0, 0

    def get(self, token: str, key: Any, budget: int | None, load: Callable[[], Any]) -> Any:
        """The chunk ``key`` of dataset ``token``: cached, or ``load()`` and kept if the budget allows.

        ``budget`` in bytes; None is :data:`DEVICE_CACHE_SHARE` of the free device memory, measured
        by the first chunk of the dataset (``load`` returns it on the device).
        """
        with self.lock:
            if (token, budget) != (self.token, self.asked):
                self.clear(token, budget)
            found = self.chunks.get(key)
            if found is not None:
                self.hits += 1
                return found
        value = load()
        nbytes = getattr(value, "nbytes", None) or 8 * int(np.prod(value.shape))  # chunks are float64
        with self.lock:
            self.misses += 1
            if (token, budget) == (self.token, self.asked) and self.budget < 0:
                self.budget = int(DEVICE_CACHE_SHARE * _free_bytes(value))
            if (
                (token, budget) == (self.token, self.asked)
                and key not in self.chunks
                and self.used + nbytes <= self.budget
            ):
                self.chunks[key] = value
                self.used += nbytes
        return value

    def report(self) -> dict[str, Any]:
        """What the cache holds and how it served the passes so far."""
        with self.lock:
            return {
                "token": self.token,
                "budget": self.budget,
                "chunks": len(self.chunks),
                "bytes": self.used,
                "hits": self.hits,
                "misses": self.misses,
            }


def _free_bytes(value: Any) -> int:
    if type(value).__module__.split(".")[0] == "cupy":
        return DeviceTarget().free_bytes()
    return DeviceTarget("array_api_strict").free_bytes()


_CACHE = DeviceCache()


def device_cache() -> DeviceCache:
    """This process's device cache (a worker's, when called in a task or by ``client.run``)."""
    return _CACHE


class DeviceRowGroupReader(RowGroupReader):
    """:class:`RowGroupReader` whose chunks come back on ``target``, served from this process's
    :class:`DeviceCache` while it has room.

    A chunk is staged column by column, (d [+ 1], n), in this thread's pinned buffer: one contiguous
    copy per Arrow column, where the row-major layout the CPU kernels want costs a transposition that
    took as long as pyarrow's decoding. The device gets that block and uses its transpose (n, d [+ 1]),
    a view. Values are checked there (two reductions); a chunk they find suspect (NaN, infinities,
    magnitudes beyond MAX_MAGNITUDE, negative weights) is read again by :func:`read_row_group`, which
    refuses it naming file, column and row, or drops its NaN rows, exactly as on the CPU.
    """

    def __init__(self, reader: RowGroupReader, target: DeviceTarget, token: str, cache_bytes: int | None):
        super().__init__(reader.row_groups, reader.columns, reader.weight_column, reader.nan_policy)
        self.target, self.token, self.cache_bytes = target, token, cache_bytes

    def __getitem__(self, key: tuple[slice, slice]) -> Any:
        start, stop, _ = key[0].indices(self.shape[0])
        return device_cache().get(self.token, (start, stop), self.cache_bytes, lambda: self.load(start, stop))

    def load(self, start: int, stop: int) -> Any:
        """Rows ``start:stop`` (within one row group: chunks never span two) on the device, (n, d [+ 1])."""
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        row_group, lo, hi = self.row_groups[i], start - int(self.starts[i]), stop - int(self.starts[i])
        values = column_values(row_group, self.columns, self.weight_column, self.nan_policy)
        staged = self.target.staging((self.shape[1], row_group.n_rows))
        for j, value in enumerate(values):
            staged[j] = value
        if len(values) < self.shape[1]:  # weighted by nan_policy="drop" alone: every weight 1
            staged[-1] = 1.0
        X = self.target.put(staged[:, lo:hi]).T
        if self.suspect(X):
            block = read_row_group(row_group, self.columns, self.weight_column, self.nan_policy)  # raises, or drops
            X = self.target.put(block[lo:hi])
        return X

    def suspect(self, X: Any) -> bool:
        """Whether the chunk may hold what :func:`read_row_group` refuses or drops (checked on its device)."""
        xp = namespace(X)
        low, high = float(to_numpy(xp.min(X))), float(to_numpy(xp.max(X)))
        if not (-MAX_MAGNITUDE <= low and high <= MAX_MAGNITUDE):  # NaN fails both
            return True
        return self.weight_column is not None and float(to_numpy(xp.min(X[:, -1]))) < 0
