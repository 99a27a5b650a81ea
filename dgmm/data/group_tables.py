"""Rows transformed by a table of their group's values, chunk by chunk as they are read (per-group
normalisation: :mod:`dgmm.estimator.normalisation`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..kernels.moments import normalised_block
from .inputs import Input


def group_normalised(data: Input, coded: Input, table: np.ndarray) -> Input:
    """``data`` with each row's features normalised by its group's mean and scale, ``table`` (groups, 2, d) from
    :meth:`~dgmm.kernels.moments.GroupMoments.normaliser`; ``coded`` is ``data`` with the group codes as a last
    column (:func:`~dgmm.data.labels.with_codes`). In memory at once; lazily otherwise, the table one key of
    the graph that every chunk's task depends on."""
    if data.kind == "numpy":
        return replace(data, values=normalised_block(coded.values, table, data.n_features), lazy=None)
    import dask

    shared = dask.delayed(table, traverse=False)
    array = coded.array
    lazy = array.map_blocks(
        normalised_block, shared, data.n_features, chunks=(array.chunks[0], (array.shape[1] - 1,)), dtype=np.float64
    )
    return replace(data, lazy=lazy)
