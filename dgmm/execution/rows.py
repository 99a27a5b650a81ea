"""Row-wise outputs of a fitted model over lazy Dask arrays and DataFrames (predict, probabilities, log-densities)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .blas import pinned


def map_rows(array: Any, kernel: Callable, payload: Any, n_out: int | None, dtype: Any) -> Any:
    """``kernel(block, payload)`` on every row block of a Dask array, lazily.

    ``payload`` (the parameters) enters the graph once, as one key every block depends on.
    Returns a Dask array of shape (n,) when ``n_out`` is None, else (n, n_out).
    """
    from dask import delayed

    shared = delayed(payload, traverse=False)
    chunks = {"drop_axis": 1} if n_out is None else {"chunks": (array.chunks[0], (n_out,))}
    return array.map_blocks(pinned(kernel), shared, dtype=dtype, **chunks)


def map_block_rows(array: Any, kernel: Callable, payload: Any, n_out: int | None, dtype: Any) -> Any:
    """:func:`map_rows` for arrays whose blocks are not NumPy (on a GPU): one task per row block, no
    concatenation of input blocks (Dask would join them on the host); ``kernel`` returns NumPy."""
    import dask.array as da
    from dask import delayed

    shared = delayed(payload, traverse=False)
    blocks = array.to_delayed().ravel()
    parts = [
        da.from_delayed(
            delayed(pinned(kernel))(block, shared), shape=(rows,) if n_out is None else (rows, n_out), dtype=dtype
        )
        for block, rows in zip(blocks, array.chunks[0])
    ]
    return da.concatenate(parts)


def map_partitions_rows(
    frame: Any, kernel: Callable, payload: Any, columns: Sequence[str] | str, dtype: Any, nan_policy: str
) -> Any:
    """``kernel(values, payload)`` on every partition of a Dask DataFrame, lazily, keeping partitions and index.

    Returns a Dask Series named ``columns`` (a str) or a Dask DataFrame of those columns.
    ``nan_policy``: "drop", rows holding NaN give -1 (integers) or NaN; "marginalize", NaN reaches the kernel
    (a missing value); "raise", they are refused.
    """
    import pandas as pd
    from dask import delayed

    shared = delayed(payload, traverse=False)
    empty = np.empty((0,) if isinstance(columns, str) else (0, len(columns)), dtype=dtype)
    meta = pd.Series(empty, name=columns) if isinstance(columns, str) else pd.DataFrame(empty, columns=list(columns))
    return frame.map_partitions(_partition_rows, kernel, shared, columns, nan_policy, meta=meta, enforce_metadata=False)


def _partition_rows(
    part,
    kernel: Callable,
    payload: Any,
    columns: Sequence[str] | str,
    nan_policy: str,
    partition_info: dict | None = None,
):
    """One partition of :func:`map_partitions_rows`, as pandas."""
    import pandas as pd

    from ..data.validation import attach_weights, check_finite_block
    from ..errors import DataError
    from ..kernels.posterior import kept_rows_only

    values = part.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        if nan_policy == "drop":
            out = pinned(kept_rows_only)(kernel, attach_weights(values, None, "drop"), payload)
        else:
            check_finite_block(values, 0, nan_policy)
            out = pinned(kernel)(values, payload)
    except DataError as exc:  # rows are counted within the partition: its global offset is not known
        number = partition_info["number"] if partition_info else "?"
        raise DataError(f"Dask DataFrame partition {number}, {exc}") from None
    if isinstance(columns, str):
        return pd.Series(out, index=part.index, name=columns)
    return pd.DataFrame(out, index=part.index, columns=list(columns))


def finite_total(values: Any) -> tuple[float, int]:
    """Sum and count of the values that are not NaN (rows dropped by ``nan_policy``), NumPy or Dask, shape (n,)."""
    if isinstance(values, np.ndarray):
        kept = ~np.isnan(values)
        return float(values[kept].sum()), int(kept.sum())
    if hasattr(values, "to_dask_array"):  # a Dask Series: summed as a Series (its array's graph, with the
        import dask  # parameters' key beside read_parquet's, cannot be fused by dask.array's optimisation)

        total, n = dask.compute(values.sum(), values.count())
        return float(total), int(n)
    if type(values).__module__.split(".")[0] not in ("dask", "dask_expr"):  # an array-API array on its device
        from ..kernels.arrays import namespace, to_numpy

        xp = namespace(values)
        kept = ~xp.isnan(values)
        return float(to_numpy(xp.sum(xp.where(kept, values, xp.zeros_like(values))))), int(
            to_numpy(xp.sum(xp.astype(kept, xp.int64)))
        )
    import dask
    import dask.array as da

    kept = ~da.isnan(values)
    total, n = dask.compute(da.where(kept, values, 0.0).sum(), kept.sum())
    return float(total), int(n)
