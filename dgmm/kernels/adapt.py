"""MAP adaptation of a background mixture (UBM) to one class's rows (pure NumPy).

Reynolds, Quatieri & Dunn (2000), "Speaker verification using adapted Gaussian mixture models".
From the statistics of the class's rows under the UBM ``(w_k, μ_k, Σ_k)``, centred on its means
(one E-step pass, :func:`class_stats`), with ``n_k = S0_k``, ``T = Σ_k n_k``, ``d_k = S1_k / n_k``
and the relevance factor ``r``::

    α_k = n_k / (n_k + r)                              (0 where n_k + r = 0: the UBM's part is kept)
    means        μ̂_k = μ_k + δ_k,  δ_k = α_k d_k        (δ_k = 0 when means are not adapted)
    weights      ŵ_k ∝ α_k n_k / T + (1 − α_k) w_k
    covariances  Σ̂_k = α_k (S2_k / n_k + reg·I) + (1 − α_k) Σ_k − δ_k δ_kᵀ

The covariance is Reynolds' ``α E[xxᵀ] + (1 − α)(Σ + μμᵀ) − μ̂μ̂ᵀ`` written about the old means,
so nothing large cancels. Tied covariances use one ``α = T / (T + r)`` and the ``n_k / T``-weighted
``δ_k δ_kᵀ``; spherical ones the mean over features. With ``r = 0`` every adapted part is the
ordinary M-step (:func:`dgmm.kernels.mstep.m_step`) from the UBM on the class's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import ParameterError
from .missing import has_missing, marginal_stats
from .params import MixtureParams
from .posterior import log_responsibilities, logsumexp_rows, stacked_weighted_log_prob
from .row_weights import split_weights
from .stats import Stats, accumulate, accumulate_expanded, zero_stats

ADAPTABLE = ("means", "weights", "covariances")


def check_adapt(adapt: str | Iterable[str]) -> frozenset[str]:
    """``"means"``, ``"means,weights"`` or a list of them -> the set; ParameterError otherwise."""
    parts = [p.strip() for p in adapt.split(",")] if isinstance(adapt, str) else list(adapt)
    if not parts or not all(isinstance(p, str) and p in ADAPTABLE for p in parts):
        raise ParameterError(
            f"adapt={adapt!r} is invalid; expected one or more of {', '.join(ADAPTABLE)} "
            "(a list, or a comma-separated string such as 'means,weights')"
        )
    return frozenset(parts)


@dataclass(frozen=True)
class ClassStats:
    """Statistics of the classes present in some rows, by class code: a chunk's hold only its own classes (frames
    are usually stored speaker by speaker), and ``+`` merges them class by class, so a task of the pass's tree
    holds the classes of its rows, never every class.

    Attributes
    ----------
    codes : (m,) int64, sorted codes of the classes present
    stats : one :class:`~dgmm.kernels.stats.Stats` per code
    """

    codes: np.ndarray
    stats: tuple[Stats, ...]

    def __add__(self, other: "ClassStats") -> "ClassStats":
        merged = dict(zip(self.codes.tolist(), self.stats))
        for code, stats in zip(other.codes.tolist(), other.stats):
            merged[code] = merged[code] + stats if code in merged else stats
        codes = sorted(merged)
        return ClassStats(np.asarray(codes, dtype=np.int64), tuple(merged[c] for c in codes))

    def dense(self, n_classes: int, n_components: int, n_features: int, covariance_type: str) -> list[Stats]:
        """One Stats per class code 0..n_classes-1; zeros for a class with no rows."""
        present = dict(zip(self.codes.tolist(), self.stats))
        zero = zero_stats(n_components, n_features, covariance_type)
        return [present.get(c, zero) for c in range(n_classes)]


def class_stats(block: np.ndarray, ubm: MixtureParams, weighted: bool) -> ClassStats:
    """Statistics of every class's rows under ``ubm``, centred on its means, from one E-step, for the classes
    present in the block.

    ``block`` has shape (n, d [+ 1] + 1): features, the row weight when ``weighted``, the class code. Each
    class's rows are taken in their order (a stable sort by code), so its statistics are those of its rows
    alone, bit for bit. Rows with missing values (NaN) give expected statistics over their observed values
    (:func:`~dgmm.kernels.missing.marginal_stats`).
    """
    X, weights = split_weights(block[:, :-1], ubm.n_features) if weighted else (block[:, :-1], None)
    codes = block[:, -1].astype(np.int64)
    order = np.argsort(codes, kind="stable")
    present, starts = np.unique(codes[order], return_index=True)
    groups = np.split(order, starts[1:]) if len(order) else []
    if has_missing(X):
        return ClassStats(
            present, tuple(marginal_stats(X[r], ubm, None if weights is None else weights[r]) for r in groups)
        )
    log_norm, resp = _responsibilities(X, ubm)
    add_up = accumulate_expanded if ubm.covariance_type in ("diag", "spherical") else accumulate
    out = []
    for rows in groups:
        w = None if weights is None else weights[rows]
        loglik = float(log_norm[rows].sum() if w is None else w @ log_norm[rows])
        out.append(add_up(X[rows], resp[rows], ubm.means, ubm.covariance_type, loglik, w))
    return ClassStats(present, tuple(out))


def _responsibilities(X: np.ndarray, ubm: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """``log p(x_n | ubm)`` (n,) and the responsibilities (n, K): for diagonal and spherical covariances from one
    matrix product of the rows centred on the mean of the means (:func:`stacked_log_likelihoods`'s expansion),
    otherwise component by component (:func:`log_responsibilities`)."""
    if ubm.covariance_type not in ("diag", "spherical"):
        log_norm, log_resp = log_responsibilities(X, ubm)
        return log_norm, np.exp(log_resp)
    weighted = stacked_weighted_log_prob(X, ubm)
    log_norm = logsumexp_rows(weighted)
    weighted -= log_norm[:, None]
    with np.errstate(under="ignore"):
        return log_norm, np.exp(weighted, out=weighted)


def map_adapt(
    stats: Stats, ubm: MixtureParams, relevance_factor: float, adapt: frozenset[str], reg_covar: float
) -> MixtureParams:
    """The UBM adapted to the rows ``stats`` describe (see the module docstring).

    Raises FitError (from :meth:`MixtureParams.from_covariances`) if a covariance is not positive definite.
    """
    kind = ubm.covariance_type
    nk = stats.s0 + 10.0 * np.finfo(np.float64).eps  # as the M-step: an empty component divides safely
    total = nk.sum()
    alpha = _ratio(stats.s0, relevance_factor)
    shift = stats.s1 / nk[:, None]
    delta = alpha[:, None] * shift if "means" in adapt else np.zeros_like(shift)
    means = ubm.means + delta
    weights = ubm.weights
    if "weights" in adapt:
        weights = alpha * nk / total + (1.0 - alpha) * ubm.weights
        weights = weights / weights.sum()
    covariances = ubm.covariances
    if "covariances" in adapt:
        covariances = _adapted_covariances(stats, nk, alpha, delta, ubm, relevance_factor, reg_covar)
    return MixtureParams.from_covariances(weights, means, covariances, kind)


def _ratio(n: np.ndarray | float, relevance_factor: float) -> np.ndarray:
    """``n / (n + r)``, 0 where both are 0."""
    n = np.asarray(n, dtype=np.float64)
    denominator = n + relevance_factor
    return np.divide(n, denominator, out=np.zeros_like(n), where=denominator > 0)


def _adapted_covariances(
    stats: Stats,
    nk: np.ndarray,
    alpha: np.ndarray,
    delta: np.ndarray,
    ubm: MixtureParams,
    relevance_factor: float,
    reg_covar: float,
) -> np.ndarray:
    kind, d = ubm.covariance_type, ubm.n_features
    if kind == "full":
        cov = (
            alpha[:, None, None] * stats.s2 / nk[:, None, None]
            + (1.0 - alpha)[:, None, None] * ubm.covariances
            - delta[:, :, None] * delta[:, None, :]
        )
        cov[:, np.arange(d), np.arange(d)] += alpha[:, None] * reg_covar
        return 0.5 * (cov + np.swapaxes(cov, 1, 2))
    if kind == "tied":
        total = nk.sum()
        pooled = _ratio(stats.s0.sum(), relevance_factor)
        cov = (
            pooled * stats.s2 / total
            + (1.0 - pooled) * ubm.covariances
            - np.einsum("k,ki,kj->ij", nk / total, delta, delta)
        )
        cov[np.arange(d), np.arange(d)] += pooled * reg_covar
        return 0.5 * (cov + cov.T)
    var = alpha[:, None] * (stats.s2 / nk[:, None] + reg_covar) - delta**2
    if kind == "diag":
        return var + (1.0 - alpha)[:, None] * ubm.covariances
    return var.mean(axis=1) + (1.0 - alpha) * ubm.covariances
