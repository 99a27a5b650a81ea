"""Array helpers shared by the NumPy kernels, their device twins and the layers above (a leaf module).

A block is *on the host* when it is a NumPy array; any other array-API array (CuPy, torch,
array-api-strict) is *on a device*. Kernels never test which they were given: the pass kernels of
:mod:`dgmm.algorithms` and the scoring paths choose once, with :func:`on_host` or :class:`ByBackend`,
between a kernel of :mod:`dgmm.kernels` and its twin in :mod:`dgmm.kernels.device`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


def on_host(block: Any) -> bool:
    """Whether ``block`` is a NumPy array (the CPU kernels' input), rather than an array on a device."""
    return isinstance(block, np.ndarray)


@dataclass(frozen=True)
class ByBackend:
    """One kernel in two definitions, chosen by its first argument: ``host`` for a NumPy block, ``device``
    for any other array-API block. Picklable when both are module-level functions (Dask ships it, and a
    worker imports only their modules). ``map_blocks`` hands it a ``block_info``, passed on when given."""

    host: Callable
    device: Callable

    @property
    def maps_tiles(self) -> bool:
        """Whether the host kernel takes a ``map`` for its row tiles (the device kernel never gets one)."""
        return getattr(self.host, "maps_tiles", False)

    def __call__(self, block: Any, *args: Any, block_info: dict | None = None, **kwargs: Any) -> Any:
        if block_info is not None:
            kwargs["block_info"] = block_info
        if on_host(block):
            return self.host(block, *args, **kwargs)
        kwargs.pop("map", None)
        return self.device(block, *args, **kwargs)


def namespace(*arrays: Any):
    """The array API namespace of ``arrays`` (array-api-compat's wrapper for NumPy, CuPy, torch)."""
    from array_api_compat import array_namespace

    return array_namespace(*arrays)


def to_numpy(x: Any) -> np.ndarray:
    """A small result back on the host as NumPy, from any array-API library and device."""
    from array_api_compat import is_cupy_array, is_numpy_array, is_torch_array

    if is_numpy_array(x):
        return x
    if is_cupy_array(x):
        return x.get()
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("array_api_strict"):
        import array_api_strict

        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def take_rows(X: Any, indices: np.ndarray) -> np.ndarray:
    """Rows ``X[indices]`` (n, d) of a NumPy or array-API block as NumPy: taken on the block's device, so
    only those rows are copied to the host."""
    if on_host(X):
        return X[np.asarray(indices)]
    xp = namespace(X)
    return to_numpy(xp.take(X, xp.asarray(np.asarray(indices, dtype=np.int64), device=X.device), axis=0))
