"""Gaussian selection (Reynolds, Quatieri & Dunn 2000, section 3.3): every class's log-likelihood of a row from the
``top_c`` components of the background model that score the row highest (pure NumPy).

Classes MAP-adapted from a background model keep its components one to one, and a row's likelihood under a
class comes almost all from the components near it, which are the same for the background model and the class.
So per row: the background model's weighted log-probabilities (one matrix product for all K components), its
``top_c`` best components, then each class's ``log Σ_{k ∈ top} w_ck N(x | μ_ck, Σ_ck)`` over those only: per
background component k, one matrix product of the rows that selected it by the C classes' k-th components.
``top_c = K`` is exact scoring.

Diagonal and spherical covariances; rows are centred on the mean of the background model's means, with the
squared distances expanded as the E-step expands them (``(z∘z)·P − 2 z·(a∘P) + a·(a∘P)``).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .params import MixtureParams
from .posterior import expanded_components

# rows scored at once: a tile's (rows, top_c, C) log-terms hold about this many values (64 MiB of float64)
SELECTION_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class SelectionPlan:
    """What Gaussian selection needs on every chunk, derived once from the background model and the classes.

    Attributes
    ----------
    top_c : components selected per row
    centre : (d,) the mean of the background model's means
    ubm_gemm : (2d, K) the background model's ``[P ; −2 a∘P]ᵀ``; ``ubm_log_norm`` (K,) its constants
    class_gemm : (K, 2d, C) per background component k, the classes' k-th components as ``ubm_gemm`` has its own
    class_log_norm : (K, C) their ``log w_ck + log det U_ck − ½ d log 2π − ½ a·(a∘P)``
    with_ubm : whether a last column holds the background model's own (full) log-likelihood
    """

    top_c: int
    centre: np.ndarray
    ubm_gemm: np.ndarray
    ubm_log_norm: np.ndarray
    class_gemm: np.ndarray
    class_log_norm: np.ndarray
    with_ubm: bool = False

    @property
    def n_features(self) -> int:
        return int(self.centre.shape[0])

    def __call__(self, X: np.ndarray, map: Callable = builtins.map) -> np.ndarray:
        """``log p(x_n | class c)`` (n, C), and the background model's in a last column when ``with_ubm``."""
        return selected_log_likelihoods(X, self, map)


def plan_selection(ubm: MixtureParams, classes: tuple[MixtureParams, ...], top_c: int, with_ubm: bool = False
                   ) -> SelectionPlan:  # fmt: skip
    """The plan of :func:`selected_log_likelihoods`; ValueError unless every mixture is diagonal or spherical with
    the background model's number of components and features."""
    K, d = ubm.n_components, ubm.n_features
    if any(p.covariance_type not in ("diag", "spherical") for p in (ubm, *classes)):
        raise ValueError("Gaussian selection needs diagonal or spherical covariances")
    if any((p.n_components, p.n_features) != (K, d) for p in classes):
        raise ValueError("Gaussian selection needs classes with the background model's components and features")
    centre = ubm.means.mean(axis=0)
    ubm_gemm, ubm_log_norm = expanded_components(ubm, centre)
    parts = [expanded_components(p, centre) for p in classes]
    class_gemm = np.ascontiguousarray(np.stack([g for g, _ in parts], axis=2).transpose(1, 0, 2))  # (K, 2d, C)
    class_log_norm = np.stack([n for _, n in parts], axis=1)  # (K, C)
    return SelectionPlan(min(int(top_c), K), centre, ubm_gemm, ubm_log_norm, class_gemm, class_log_norm, with_ubm)


def selected_log_likelihoods(X: np.ndarray, plan: SelectionPlan, map: Callable = builtins.map) -> np.ndarray:
    """Every class's log-likelihood of each row (n, C) from the row's ``plan.top_c`` best background components
    (and the background model's full log-likelihood last, (n, C + 1), when ``plan.with_ubm``). ``map`` runs the
    tiles of rows, whose bounds depend on the sizes only."""
    K, C = plan.class_log_norm.shape
    out = np.empty((X.shape[0], C + plan.with_ubm), dtype=np.float64)
    step = min(16_384, max(256, SELECTION_ELEMENTS // (plan.top_c * C)))

    def tile(start: int) -> None:
        Z = np.asarray(X[start : start + step], dtype=np.float64) - plan.centre
        expanded = np.concatenate([Z * Z, Z], axis=1)
        ubm_log_prob = -0.5 * (expanded @ plan.ubm_gemm) + plan.ubm_log_norm  # (t, K)
        if plan.top_c >= K:
            top = np.broadcast_to(np.arange(K), ubm_log_prob.shape)
        else:
            top = np.argpartition(-ubm_log_prob, plan.top_c - 1, axis=1)[:, : plan.top_c]
        terms = np.empty((Z.shape[0], top.shape[1], C))
        rows_of = np.argsort(top, axis=None, kind="stable")  # the (row, slot) pairs grouped by component
        components, starts = np.unique(top.ravel()[rows_of], return_index=True)
        for k, chosen in zip(components.tolist(), np.split(rows_of, starts[1:])):
            rows, slots = np.divmod(chosen, top.shape[1])
            terms[rows, slots] = -0.5 * (expanded[rows] @ plan.class_gemm[k]) + plan.class_log_norm[k]
        peak = terms.max(axis=1, keepdims=True)
        peak[~np.isfinite(peak)] = 0.0
        with np.errstate(under="ignore", divide="ignore"):
            out[start : start + Z.shape[0], :C] = np.log(np.exp(terms - peak).sum(axis=1)) + peak[:, 0]
            if plan.with_ubm:
                ubm_peak = ubm_log_prob.max(axis=1, keepdims=True)
                ubm_peak[~np.isfinite(ubm_peak)] = 0.0
                out[start : start + Z.shape[0], C] = (
                    np.log(np.exp(ubm_log_prob - ubm_peak).sum(axis=1)) + ubm_peak[:, 0]
                )

    for _ in map(tile, range(0, X.shape[0], step)):
        pass
    return out
