"""The statistics that rank split/merge moves, written against the Python array API.

:func:`dgmm.kernels.moves.move_stats` for any array-API chunk (CuPy on a GPU, array-api-strict, ...):
the same sums, computed where the chunk lies; only the (K, K) and (K,) results come back to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import namespace, to_numpy
from ..moves import MoveStats
from ..params import MixtureParams
from .posterior import xp_posterior
from .tiles import row_tiles, rows_for_width


def xp_move_stats(
    X: Any, params: MixtureParams, axes: np.ndarray, weights: Any = None, tile_rows: int | None = None
) -> MoveStats:
    """:class:`~dgmm.kernels.moves.MoveStats` of rows ``X`` (n, d) on their device, with weights (n,) on the
    same device (default 1) and principal ``axes`` (K, d) (NumPy), by tiles of ``tile_rows`` (default:
    intermediates of 3d + 6K values a row within a quarter of the chunk)."""
    xp = namespace(X)
    where = getattr(X, "device", None)
    n, d = X.shape
    K = params.n_components
    v = xp.asarray(np.ascontiguousarray(axes), dtype=xp.float64, device=where)
    offsets = xp.asarray(np.einsum("kd,kd->k", params.means, axes), dtype=xp.float64, device=where)
    pairs, mass, second, fourth = np.zeros((K, K)), np.zeros(K), np.zeros(K), np.zeros(K)
    for a, b in row_tiles(n, tile_rows or rows_for_width(n, d, 3 * d + 6 * K)):
        rows = xp.astype(X[a:b, :], xp.float64)
        resp = xp_posterior(rows, params, "responsibilities")
        weighted = resp if weights is None else resp * xp.astype(weights[a:b], xp.float64)[:, None]
        t = rows @ xp.matrix_transpose(v) - offsets  # (n, K) projections on each component's own axis
        t2 = t * t
        pairs += to_numpy(xp.matrix_transpose(resp) @ weighted)
        mass += to_numpy(xp.sum(weighted, axis=0))
        second += to_numpy(xp.sum(weighted * t2, axis=0))
        fourth += to_numpy(xp.sum(weighted * t2 * t2, axis=0))
    return MoveStats(pairs, mass, second, fourth)
