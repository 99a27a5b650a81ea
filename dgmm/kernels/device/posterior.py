"""Posterior quantities of a mixture for rows on a device: :mod:`dgmm.kernels.posterior`'s outputs, from one
computation of the log-probabilities (the tiles' distances of :mod:`dgmm.kernels.device.estep`), or from the
fused CUDA kernel for a CuPy array."""

from __future__ import annotations

from typing import Any

from array_api_compat import is_cupy_array

from ..arrays import namespace
from ..estep import plan_estep
from ..params import MixtureParams
from ..posterior import logsumexp_rows
from .cuda import fused_posteriors_on, gpu_launcher
from .estep import _Constants, _log_prob
from .tiles import row_tiles, rows_for_width


def xp_weighted_log_prob(X: Any, params: MixtureParams) -> Any:
    """``log π_k + log N(x_n | μ_k, Σ_k)``, (n, K) float64 on X's device (the tiles' distances of :func:`_tile`)."""
    xp = namespace(X)
    c = _Constants(xp, plan_estep(params), getattr(X, "device", None), xp.float64)
    return _log_prob(xp, c, xp.astype(X, xp.float64) - c.centre)


def xp_posterior(X: Any, params: MixtureParams, output: str, dropped: Any = None) -> Any:
    """One row output of the mixture on X's device, in X's library (:func:`xp_posteriors`)."""
    return xp_posteriors(X, params, (output,), dropped)[output]


def xp_posteriors(
    X: Any,
    params: MixtureParams,
    outputs: tuple[str, ...],
    dropped: Any = None,
    tile_rows: int | None = None,
    fused: bool = True,
) -> dict[str, Any]:
    """Row outputs of the mixture on X's device, in X's library, from one computation of the log-probabilities,
    by tiles of ``tile_rows`` (default: intermediates of 3d + 4K values a row within a quarter of the chunk);
    a CuPy array by the fused CUDA kernel unless ``fused`` is False (:func:`~dgmm.kernels.device.cuda.fused_posteriors_on`).

    Parameters
    ----------
    X : array of shape (n, d) on any device
    outputs : any of "labels" (n,) int64, "log_density" (n,) and "responsibilities" (n, K) float64, as
        :mod:`dgmm.kernels.posterior` gives them
    dropped : (n,) booleans on X's device, or None; those rows get -1 or NaN
    """
    xp = namespace(X)
    if fused and is_cupy_array(X):  # the fused CUDA kernel's responsibilities and log-densities
        plan = plan_estep(params)
        launcher = gpu_launcher(X, plan)
        if launcher is not None:
            got = fused_posteriors_on(launcher, X, plan, outputs, tile_rows)
            return {name: _mark_dropped(xp, out, dropped) for name, out in got.items()}
    n, d = X.shape
    tiles = row_tiles(n, tile_rows or rows_for_width(n, d, 3 * d + 4 * params.n_components))
    parts = [
        _posterior_tile(xp, X[a:b, :], params, outputs, None if dropped is None else dropped[a:b]) for a, b in tiles
    ]
    return {
        name: parts[0][name] if len(parts) == 1 else xp.concat([part[name] for part in parts], axis=0)
        for name in outputs
    }


def _posterior_tile(xp, X: Any, params: MixtureParams, outputs: tuple[str, ...], dropped: Any) -> dict[str, Any]:
    weighted = xp_weighted_log_prob(X, params)
    lse = logsumexp_rows(weighted) if {"log_density", "responsibilities"} & set(outputs) else None
    computed = {
        "labels": lambda: xp.argmax(weighted, axis=1),
        "log_density": lambda: lse,
        "responsibilities": lambda: xp.exp(weighted - lse[:, None]),
    }
    return {output: _mark_dropped(xp, computed[output](), dropped) for output in outputs}


def _mark_dropped(xp, out: Any, dropped: Any) -> Any:
    """A row output with the rows ``dropped`` (n,) (None: none) set to -1 (labels) or NaN."""
    if dropped is None:
        return out
    mask = dropped if out.ndim == 1 else dropped[:, None]
    return xp.where(mask, xp.full_like(out, -1 if out.dtype == xp.int64 else float("nan")), out)
