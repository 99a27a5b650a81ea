"""Row-wise outputs of a fitted model over lazy Dask arrays (predict, probabilities, log-densities)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def map_rows(array: Any, kernel: Callable, payload: Any, n_out: int | None, dtype: Any) -> Any:
    """``kernel(block, payload)`` on every row block of a Dask array, lazily.

    ``payload`` (the parameters) enters the graph once, as one key every block depends on.
    Returns a Dask array of shape (n,) when ``n_out`` is None, else (n, n_out).
    """
    from dask import delayed

    shared = delayed(payload, traverse=False)
    chunks = {"drop_axis": 1} if n_out is None else {"chunks": (array.chunks[0], (n_out,))}
    return array.map_blocks(kernel, shared, dtype=dtype, **chunks)


def finite_total(values: Any) -> tuple[float, int]:
    """Sum and count of the values that are not NaN (rows dropped by ``nan_policy``), NumPy or Dask, shape (n,)."""
    if isinstance(values, np.ndarray):
        kept = ~np.isnan(values)
        return float(values[kept].sum()), int(kept.sum())
    import dask
    import dask.array as da

    kept = ~da.isnan(values)
    total, n = dask.compute(da.where(kept, values, 0.0).sum(), kept.sum())
    return float(total), int(n)
