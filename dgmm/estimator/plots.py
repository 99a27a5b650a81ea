"""Plots of a fitted mixture: the log-likelihood curve and the components over the data.

matplotlib is optional (``pip install 'dgmm[plot]'``) and imported only when a plot is drawn;
without a display the non-interactive "Agg" backend is selected. The numeric helpers
(:func:`dense_covariances`, :func:`ellipse_geometry`, :func:`projection_axes`,
:func:`project`, :func:`mixture_density_1d`) need NumPy only.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..kernels import gaussian
from ..errors import DataError, DgmmError, ParameterError
from ..data.parquet import ParquetDataset, PathLike, read_row_group
from ..kernels.weights import NanPolicy

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .mixture import GaussianMixture


def _pyplot() -> Any:
    """matplotlib.pyplot, with the Agg backend when there is no display and no backend was chosen."""
    try:
        import matplotlib
    except ImportError:
        raise DgmmError("plotting needs matplotlib: pip install 'dgmm[plot]'") from None
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dense_covariances(model: GaussianMixture) -> np.ndarray:
    """The covariance of every component as a dense matrix, shape (K, d, d), for any covariance type."""
    return gaussian.dense_covariances(model.covariances_, model.covariance_type, len(model.weights_), model.n_features_in_)


def ellipse_geometry(cov: np.ndarray, n_sigma: float = 1.0) -> tuple[float, float, float]:
    """Width, height and angle (degrees, anticlockwise from the x axis) of the ``n_sigma`` ellipse.

    ``cov`` is a (2, 2) covariance; the ellipse is {x : xᵀ cov⁻¹ x = n_sigma²}, its full axes are
    2·n_sigma·√λ along the eigenvectors (width along the largest eigenvalue's), as
    matplotlib.patches.Ellipse expects.
    """
    values, vectors = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    values = np.clip(values, 0.0, None)
    major = vectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    return 2 * n_sigma * float(np.sqrt(values[1])), 2 * n_sigma * float(np.sqrt(values[0])), angle


def mixture_covariance(model: GaussianMixture) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's mean μ̄ = Σ πₖμₖ, shape (d,), and covariance Σ πₖ(Σₖ + μₖμₖᵀ) − μ̄μ̄ᵀ, shape (d, d)."""
    w, mu = np.asarray(model.weights_), np.asarray(model.means_)
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, dense_covariances(model)) + np.einsum("k,ki,kj->ij", w, mu, mu)
    return mean, second - np.outer(mean, mean)


def projection_axes(model: GaussianMixture, X: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (d,), the two leading principal axes W (d, 2) and their shares of the variance (2,).

    From the sample covariance of ``X`` (n, d) when given (n ≥ 2), else from the mixture's total
    covariance. Each axis's largest-magnitude entry is made positive, so the result is deterministic.
    """
    if X is not None and len(X) > 1:
        centre, cov = X.mean(axis=0), np.cov(X, rowvar=False)
    else:
        centre, cov = mixture_covariance(model)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:2]
    W = vectors[:, order]
    W *= np.where(W[np.argmax(np.abs(W), axis=0), [0, 1]] < 0, -1.0, 1.0)
    return centre, W, values[order] / max(values.sum(), np.finfo(float).tiny)


def project(means: np.ndarray, covariances: np.ndarray, centre: np.ndarray, W: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Means (K, d) → (μₖ − centre)W, shape (K, 2); covariances (K, d, d) → WᵀΣₖW, shape (K, 2, 2)."""
    return (means - centre) @ W, np.einsum("ia,kij,jb->kab", W, covariances, W)


def mixture_density_1d(model: GaussianMixture, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density p(x), shape (n,), and weighted component densities πₖN(x|μₖ,σₖ²), shape (n, K), of a 1-D model
    on ``grid``, shape (n,)."""
    if model.n_features_in_ != 1:
        raise ParameterError(f"mixture_density_1d needs a 1-feature model, got {model.n_features_in_} features")
    var = dense_covariances(model)[:, 0, 0]
    z = (np.asarray(grid, dtype=np.float64)[:, None] - np.asarray(model.means_)[:, 0]) ** 2 / var
    parts = np.asarray(model.weights_) * np.exp(-0.5 * z) / np.sqrt(2 * np.pi * var)
    return parts.sum(axis=1), parts


def _feature_names(model: GaussianMixture) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else [f"x{j}" for j in range(model.n_features_in_)]


def _colours(K: int) -> np.ndarray:
    from matplotlib import colormaps

    if K <= 10:
        return np.asarray(colormaps["tab10"].colors)[:K]
    if K <= 20:
        return np.asarray(colormaps["tab20"].colors)[:K]
    return colormaps["turbo"](np.linspace(0.05, 0.95, K))[:, :3]


def _as_sample(model: GaussianMixture, X: Any) -> np.ndarray | None:
    if X is None:
        return None
    X = np.asarray(X, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 and model.n_features_in_ == 1 else X
    if X.ndim != 2 or X.shape[1] != model.n_features_in_:
        raise DataError(f"X has shape {X.shape}, the model expects (n, {model.n_features_in_})")
    return X


def plot_convergence(model: GaussianMixture, ax: Axes | None = None) -> Axes:
    """Mean log-likelihood per EM iteration (``model.lower_bounds_``, x = 1..n) on ``ax`` (new figure if None)."""
    if ax is None:
        ax = _pyplot().subplots(figsize=(6, 4.5), layout="constrained")[1]
    values = np.asarray(getattr(model, "lower_bounds_", []), dtype=np.float64)
    state = "converged" if model.converged_ else "not converged"
    ax.set_title(f"EM: {state} after {model.n_iter_} iteration{'s' * (model.n_iter_ != 1)}")
    if values.size:
        ax.plot(np.arange(1, values.size + 1), values, marker="o" if values.size <= 50 else None, ms=4, lw=1.5)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.text(0.5, 0.5, "no iterations recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean log-likelihood")
    ax.grid(alpha=0.3)
    return ax


def plot_components(model: GaussianMixture, X: Any = None, ax: Axes | None = None) -> Axes:
    """The components over the sample ``X`` (n, d), if given, on ``ax`` (new figure if None).

    d = 1: histogram of X, mixture density and weighted component densities. d = 2: X coloured by
    ``model.predict``, 1σ and 2σ ellipses and the means. d > 2: the same on the first two principal
    axes (of X's covariance when X is given, else of the mixture's).
    """
    from matplotlib.patches import Ellipse

    if ax is None:
        ax = _pyplot().subplots(figsize=(6, 4.5), layout="constrained")[1]
    X = _as_sample(model, X)
    K, d, names = len(model.weights_), model.n_features_in_, _feature_names(model)
    colours, weights = _colours(K), np.asarray(model.weights_)
    labels = [f"component {k} (π={weights[k]:.2f})" for k in range(K)]
    kind = f"{K} component{'s' * (K != 1)}, {model.covariance_type} covariance"
    if d == 1:
        sd = np.sqrt(dense_covariances(model)[:, 0, 0])
        mu = np.asarray(model.means_)[:, 0]
        if X is not None:
            lo, hi = X.min(), X.max()
            lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
            ax.hist(X[:, 0], bins=int(np.clip(np.sqrt(len(X)), 10, 100)), density=True, color="0.8", label="sample")
        else:
            lo, hi = np.min(mu - 4 * sd), np.max(mu + 4 * sd)
        grid = np.linspace(lo, hi, 1000)
        total, parts = mixture_density_1d(model, grid)
        ax.plot(grid, total, color="black", lw=2.5, label="mixture")
        for k in range(K):  # drawn over the mixture: a dominant component's curve stays visible
            ax.plot(grid, parts[:, k], color=colours[k], lw=1.5, ls="--", label=labels[k] if K <= 10 else None)
        ax.set(xlabel=names[0], ylabel="density", title=kind, xlim=(lo, hi))
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small")
        return ax
    means, covs = np.asarray(model.means_), dense_covariances(model)
    xlabel, ylabel = names[:2]
    points = X
    if d > 2:
        centre, W, share = projection_axes(model, X)
        means, covs = project(means, covs, centre, W)
        points = None if X is None else (X - centre) @ W
        xlabel, ylabel = "PC1", "PC2"
        kind += f"\nfirst two principal axes of the {'sample' if X is not None and len(X) > 1 else 'mixture'} " \
                f"({share[0]:.0%} + {share[1]:.0%} of the variance)"
    if points is not None:
        predicted = np.asarray(model.predict(X))
        alpha = float(np.clip(25 / np.sqrt(len(points)), 0.1, 0.6))  # fainter as the sample grows
        ax.scatter(points[:, 0], points[:, 1], s=4, c=colours[predicted], alpha=alpha, linewidths=0, rasterized=True)
    for k in range(K):
        for n_sigma, style in ((1, "-"), (2, "--")):
            width, height, angle = ellipse_geometry(covs[k], n_sigma)
            for colour, lw in (("white", 3.5), (colours[k], 1.8)):  # a white halo keeps edges visible on points
                ax.add_patch(Ellipse(means[k], width, height, angle=angle, fill=False, ec=colour, lw=lw, ls=style))
        ax.plot(*means[k], marker="X", ms=10, mfc=colours[k], mec="black", ls="none",
                label=labels[k] if K <= 10 else None)
    ax.autoscale_view()
    ax.set(xlabel=xlabel, ylabel=ylabel, title=kind + "; ellipses at 1σ (solid) and 2σ (dashed)" * (d == 2))
    ax.grid(alpha=0.3)
    if K <= 10:
        ax.legend(fontsize="small", markerscale=0.7)
    return ax


def plot_model(model: GaussianMixture, X: Any = None, path: PathLike | None = None, overwrite: bool = False,
               storage_options: dict | None = None) -> Figure:
    """Figure with the convergence curve and the components over ``X`` (n, d); saved as PNG to ``path`` if given.

    The PNG is published at ``path`` whole (:mod:`dgmm.data.publish`; an existing file is replaced
    only with ``overwrite``), and the figure is then closed.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), width_ratios=(1, 1.3), layout="constrained")
    try:
        plot_convergence(model, left)
        plot_components(model, X, right)
    except BaseException:
        plt.close(fig)
        raise
    if path is None:
        return fig
    from ..data.publish import published

    try:
        with published(path, overwrite, storage_options) as file:
            fig.savefig(file, format="png", dpi=100)
    finally:
        plt.close(fig)
    return fig


def sample_rows(source: PathLike | Sequence[PathLike], columns: Sequence[str] | None, n_rows: int,
                seed: int = 0, storage_options: dict | None = None, nan_policy: NanPolicy = "raise") -> np.ndarray:
    """Up to ``n_rows`` rows of Parquet input, shape (m, len(columns)), m = min(n_rows, total rows).

    With ``nan_policy="drop"`` (a model fitted so) rows holding nulls or NaN are left out, as the fit left them.

    Row groups are read one by one in a seeded random order until ``n_rows`` rows are in hand,
    then rows are drawn uniformly without replacement among them; the rest is never read. The
    rows are a uniform sample of the row groups read, not of the whole input.
    """
    if not isinstance(n_rows, (int, np.integer)) or isinstance(n_rows, bool) or n_rows < 1:
        raise ParameterError(f"n_rows={n_rows!r} is invalid; expected an int >= 1")
    dataset = ParquetDataset.open(source, columns, storage_options=storage_options, nan_policy=nan_policy)
    rng = np.random.default_rng(seed)
    blocks, total = [], 0
    for i in rng.permutation(len(dataset.row_groups)):
        block = read_row_group(dataset.row_groups[i], dataset.columns, nan_policy=nan_policy)
        if nan_policy == "drop":  # a last column of weights: 0 for the rows to leave out
            block = block[block[:, -1] > 0, :-1]
        blocks.append(block)
        total += len(blocks[-1])
        if total >= n_rows:
            break
    rows = np.concatenate(blocks)
    return rows[rng.choice(total, n_rows, replace=False)] if total > n_rows else rows[rng.permutation(total)]
