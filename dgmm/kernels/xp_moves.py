"""The statistics that rank split/merge moves, written against the Python array API.

:func:`dgmm.kernels.moves.move_stats` for any array-API chunk (CuPy on a GPU, array-api-strict, ...):
the same sums, computed where the chunk lies; only the (K, K) and (K,) results come back to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .moves import MoveStats
from .params import MixtureParams
from .xp_estep import namespace, to_numpy, xp_posterior


def xp_move_stats(X: Any, params: MixtureParams, axes: np.ndarray, weights: Any = None) -> MoveStats:
    """:class:`~dgmm.kernels.moves.MoveStats` of rows ``X`` (n, d) on their device, with weights (n,) on the
    same device (default 1) and principal ``axes`` (K, d) (NumPy)."""
    xp = namespace(X)
    where = getattr(X, "device", None)
    X = xp.astype(X, xp.float64)
    resp = xp_posterior(X, params, "responsibilities")
    weighted = resp if weights is None else resp * xp.astype(weights, xp.float64)[:, None]
    v = xp.asarray(np.ascontiguousarray(axes), dtype=xp.float64, device=where)
    offsets = xp.asarray(np.einsum("kd,kd->k", params.means, axes), dtype=xp.float64, device=where)
    t = X @ xp.matrix_transpose(v) - offsets  # (n, K) projections on each component's own axis
    t2 = t * t
    return MoveStats(to_numpy(xp.matrix_transpose(resp) @ weighted), to_numpy(xp.sum(weighted, axis=0)),
                     to_numpy(xp.sum(weighted * t2, axis=0)), to_numpy(xp.sum(weighted * t2 * t2, axis=0)))
