"""The classifier's kernels on a block of any array-API library, on its device (CuPy on a GPU): one class's view
of the rows, every class's statistics under a background model, every class's scores and their sums per group;
and the training or held-out part of a block.

The block's layout is :func:`dgmm.kernels.row_weights.class_rows`'s: features (n, d), the row weight when the
data is weighted, and last the class (or group) code of the row as a float.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np

from ..adapt import ClassStats
from ..arrays import namespace, to_numpy
from ..groups import GroupSums, ScoreTotals
from ..hashing import heldout_rows
from ..params import MixtureParams
from ..posterior import most_probable
from ..row_weights import block_row_offset
from ..stats import weight_totals
from .estep import xp_accumulate
from .posterior import xp_posterior, xp_posteriors
from .tiles import row_tiles, rows_for_width


def xp_class_rows(block: Any, n_features: int, weighted: bool, code: int) -> Any:
    """The weighted block (n, d + 1) one class's fit sees, on the block's device: other classes' rows weigh 0."""
    xp = namespace(block)
    mine = xp.astype(block[:, -1] == code, xp.float64)
    weights = mine * xp.astype(block[:, n_features], xp.float64) if weighted else mine
    return xp.concat([xp.astype(block[:, :n_features], xp.float64), weights[:, None]], axis=1)


def xp_class_stats(block: Any, ubm: MixtureParams, weighted: bool, tile_rows: int | None = None) -> ClassStats:
    """:func:`dgmm.kernels.adapt.class_stats` on the block's device: by tiles of ``tile_rows`` (default:
    intermediates of 4d + 4K values a row within a quarter of the block), one E-step of ``ubm`` for all the
    tile's rows, then the statistics of each class present from its rows (sorted by class once: each row
    accumulated once)."""
    n, d = block.shape[0], ubm.n_features
    tiles = row_tiles(n, tile_rows or rows_for_width(n, d, 4 * d + 4 * ubm.n_components))
    return reduce(lambda a, b: a + b, [_class_stats_tile(block[a:b, :], ubm, weighted) for a, b in tiles])


def _class_stats_tile(block: Any, ubm: MixtureParams, weighted: bool) -> ClassStats:
    xp = namespace(block)
    d = ubm.n_features
    X = xp.astype(block[:, :d], xp.float64)
    codes = xp.astype(block[:, -1], xp.float64)
    rows_out = xp_posteriors(X, ubm, ("log_density", "responsibilities"))  # fused on a GPU
    log_norm, resp = rows_out["log_density"], rows_out["responsibilities"]
    order = xp.argsort(codes, stable=True)
    present, starts = np.unique(to_numpy(xp.take(codes, order)).astype(np.int64), return_index=True)
    bounds = [*starts.tolist(), block.shape[0]]
    centres = xp.asarray(np.asarray(ubm.means, dtype=np.float64), device=block.device)
    out = []
    for c in range(len(present)):
        rows = order[bounds[c] : bounds[c + 1]]
        r, lse = xp.take(resp, rows, axis=0), xp.take(log_norm, rows)
        w = xp.take(xp.astype(block[:, d], xp.float64), rows) if weighted else None
        if w is not None:
            r, lse = r * w[:, None], lse * w
        loglik = float(to_numpy(xp.sum(lse)))
        totals = weight_totals(rows.shape[0], w)
        out.append(xp_accumulate(xp.take(X, rows, axis=0), r, centres, ubm.covariance_type, loglik, totals))
    return ClassStats(present, tuple(out))


def xp_class_scores(block: Any, payload: tuple) -> Any:
    """:func:`dgmm.kernels.posterior.class_scores` on the block's device: ``log p(x | mixture_c) + offset_c``
    (n, C), or against the last mixture (n, C − 1); rows of weight 0 get NaN."""
    params, (offset, against_last) = payload
    xp = namespace(block)
    d = params[0].n_features
    X = block[:, :d]
    scores = xp.stack([xp_posterior(X, p, "log_density") for p in params], axis=1)
    scores = scores + xp.asarray(np.asarray(offset, dtype=np.float64), device=block.device)
    if against_last:
        scores = scores[:, :-1] - scores[:, -1:]
    if block.shape[1] > d:  # weighted: rows dropped by nan_policy
        scores = xp.where((block[:, d] == 0)[:, None], xp.full_like(scores, float("nan")), scores)
    return scores


def host_class_scores(block: Any, payload: tuple) -> np.ndarray:
    """:func:`xp_class_scores` of a chunk on a GPU, copied back as NumPy (a task of ``map_block_rows``)."""
    return to_numpy(xp_class_scores(block, payload))


def xp_most_probable(joint: Any, classes: np.ndarray) -> np.ndarray:
    """:func:`dgmm.kernels.posterior.most_probable` of joint log-likelihoods on a device: the classes as NumPy
    (labels may be strings, which no device holds)."""
    xp = namespace(joint)
    if bool(to_numpy(xp.any(xp.isnan(joint)))):
        return most_probable(to_numpy(joint), classes)  # names the first dropped row, as on the CPU
    return classes[to_numpy(xp.argmax(joint, axis=1))]


def xp_group_sums(block: Any, payload: tuple, row_offset: int) -> GroupSums:
    """:func:`dgmm.kernels.groups.group_kernel` of a block on its device: the scores (n, C) come back to the host
    and are summed there per group."""
    params, ratio, weighted = payload
    scores = host_class_scores(block[:, :-1], (params, (np.zeros(len(params)), ratio)))
    codes = to_numpy(block[:, -1])
    kept = ~np.isnan(scores[:, 0]) if weighted else slice(None)  # rows dropped by nan_policy weigh 0
    return GroupSums.of_rows(codes[kept], scores[kept])


def xp_select_rows(
    block: Any, n_features: int, seed: int, fraction: float, held: bool, block_info: dict | None = None
) -> Any:
    """:func:`dgmm.kernels.row_weights.select_rows` on the block's device: the part's mask goes there."""
    xp = namespace(block)
    X = block[:, :n_features]
    weights = block[:, n_features] if block.shape[1] > n_features else None
    keep = heldout_rows(X.shape[0], block_row_offset(block_info), seed, fraction)
    part = xp.asarray((keep == held).astype(np.float64), device=X.device)
    weights = part if weights is None else xp.astype(weights, xp.float64) * part
    return xp.concat([xp.astype(X, xp.float64), weights[:, None]], axis=1)


def xp_score_totals(block: Any, payload: tuple, row_offset: int) -> ScoreTotals:
    """:func:`dgmm.kernels.groups.score_totals` of a block on its device: the joint scores (n, C) come back to the
    host and are totalled there."""
    params, log_priors, weighted = payload
    joint = host_class_scores(block[:, :-1], (params, (log_priors, False)))
    truth = to_numpy(block[:, -1])
    kept = ~np.isnan(joint[:, 0]) if weighted else slice(None)  # rows dropped by nan_policy weigh 0
    return ScoreTotals.of_rows(joint[kept], truth[kept])
