"""Plots of a fitted mixture: the log-likelihood curve and the components over the data.

matplotlib is optional (``pip install 'dgmm[plot]'``) and imported only when a plot is drawn;
without a display the non-interactive "Agg" backend is selected. The numeric helpers
(:func:`dense_covariances`, :func:`ellipse_geometry`, :func:`projection_axes`,
:func:`project`, :func:`mixture_density_1d`) need NumPy only.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from ..data.parquet import ParquetDataset, PathLike, read_row_group
from ..data.validation import NanPolicy
from ..errors import DataError, DgmmError, ParameterError
from ..kernels import gaussian

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


class FittedMixture(Protocol):
    """What the plots read of a fitted :class:`~dgmm.GaussianMixture`."""

    covariance_type: str
    weights_: np.ndarray
    means_: np.ndarray
    covariances_: np.ndarray
    n_features_in_: int
    n_iter_: int
    converged_: bool
    lower_bounds_: list[float]

    def predict(self, X: Any) -> Any: ...


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


def dense_covariances(model: FittedMixture) -> np.ndarray:
    """The covariance of every component as a dense matrix, shape (K, d, d), for any covariance type."""
    return gaussian.dense_covariances(
        model.covariances_, model.covariance_type, len(model.weights_), model.n_features_in_
    )


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


def mixture_covariance(model: FittedMixture) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's mean μ̄ = Σ πₖμₖ, shape (d,), and covariance Σ πₖ(Σₖ + μₖμₖᵀ) − μ̄μ̄ᵀ, shape (d, d)."""
    w, mu = np.asarray(model.weights_), np.asarray(model.means_)
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, dense_covariances(model)) + np.einsum("k,ki,kj->ij", w, mu, mu)
    return mean, second - np.outer(mean, mean)


def projection_axes(
    model: FittedMixture, X: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre (d,), the two leading principal axes of the *standardised* features as a projection of the
    original ones W (d, 2), their shares of the standardised variance (2,) and their loadings (d, 2).

    From the sample covariance of ``X`` (n, d) when given (n ≥ 2), else from the mixture's total
    covariance. Features are scaled to unit variance first, so a feature in large units (a price in
    dollars beside carats) does not take the first axis alone: the axes are those of the correlation
    matrix, ``loadings`` its unit eigenvectors, and ``W = loadings / σ`` projects unscaled rows, so
    ``(x − centre) W`` are the standardised rows' coordinates. Each axis's largest loading is made
    positive, so the result is deterministic.
    """
    if X is not None and len(X) > 1:
        centre, cov = X.mean(axis=0), np.atleast_2d(np.cov(X, rowvar=False))
    else:
        centre, cov = mixture_covariance(model)
    scale = np.sqrt(np.clip(np.diag(cov), np.finfo(float).tiny, None))
    values, vectors = np.linalg.eigh(cov / np.outer(scale, scale))
    order = np.argsort(values)[::-1][:2]
    loadings = vectors[:, order]
    loadings *= np.where(loadings[np.argmax(np.abs(loadings), axis=0), [0, 1]] < 0, -1.0, 1.0)
    share = values[order] / max(values.sum(), np.finfo(float).tiny)
    return centre, loadings / scale[:, None], share, loadings


def axis_label(axis: int, share: float, loadings: np.ndarray, names: Sequence[str], most: int = 3) -> str:
    """ "PC1, 62% of the standardised variance" over "+0.58 carat +0.57 price −0.31 depth": the features that
    load most on a principal axis (loadings of (d,), at most ``most`` of them, those of |loading| ≥ 0.2)."""
    order = [j for j in np.argsort(-np.abs(loadings))[:most] if abs(loadings[j]) >= 0.2] or [
        int(np.argmax(np.abs(loadings)))
    ]
    terms = " ".join(f"{'+' if loadings[j] >= 0 else '−'}{abs(loadings[j]):.2f} {names[j]}" for j in order)
    return f"PC{axis + 1}, {share:.0%} of the standardised variance\n{terms}"


def feature_indices(model: FittedMixture, features: Sequence[str | int]) -> list[int]:
    """The column indices of two features named (or numbered) by the user; one-line errors otherwise."""
    names = _feature_names(model)
    if len(features) != 2:
        raise ParameterError(f"features={list(features)!r}: name exactly two features to plot against each other")
    indices = []
    for feature in features:
        if isinstance(feature, str) and feature in names:
            indices.append(names.index(feature))
        elif isinstance(feature, (int, np.integer)) or (isinstance(feature, str) and feature.isdigit()):
            index = int(feature)
            if not 0 <= index < len(names):
                raise ParameterError(f"feature {index} is out of range: the model has {len(names)} features")
            indices.append(index)
        else:
            raise ParameterError(f"feature {feature!r} is not one of the model's features: {', '.join(names)}")
    return indices


def project(
    means: np.ndarray, covariances: np.ndarray, centre: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Means (K, d) → (μₖ − centre)W, shape (K, 2); covariances (K, d, d) → WᵀΣₖW, shape (K, 2, 2)."""
    return (means - centre) @ W, np.einsum("ia,kij,jb->kab", W, covariances, W)


def mixture_density_1d(model: FittedMixture, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density p(x), shape (n,), and weighted component densities πₖN(x|μₖ,σₖ²), shape (n, K), of a 1-D model
    on ``grid``, shape (n,)."""
    if model.n_features_in_ != 1:
        raise ParameterError(f"mixture_density_1d needs a 1-feature model, got {model.n_features_in_} features")
    var = dense_covariances(model)[:, 0, 0]
    z = (np.asarray(grid, dtype=np.float64)[:, None] - np.asarray(model.means_)[:, 0]) ** 2 / var
    parts = np.asarray(model.weights_) * np.exp(-0.5 * z) / np.sqrt(2 * np.pi * var)
    return parts.sum(axis=1), parts


def _feature_names(model: FittedMixture) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else [f"x{j}" for j in range(model.n_features_in_)]


def _colours(K: int) -> np.ndarray:
    from matplotlib import colormaps

    if K <= 10:
        return np.asarray(colormaps["tab10"].colors)[:K]
    if K <= 20:
        return np.asarray(colormaps["tab20"].colors)[:K]
    return colormaps["turbo"](np.linspace(0.05, 0.95, K))[:, :3]


def _as_sample(model: FittedMixture, X: Any) -> np.ndarray | None:
    if X is None:
        return None
    X = np.asarray(X, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 and model.n_features_in_ == 1 else X
    if X.ndim != 2 or X.shape[1] != model.n_features_in_:
        raise DataError(f"X has shape {X.shape}, the model expects (n, {model.n_features_in_})")
    return X


def plot_convergence(model: FittedMixture, ax: Axes | None = None) -> Axes:
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


def plot_components(
    model: FittedMixture, X: Any = None, ax: Axes | None = None, features: Sequence[str | int] | None = None
) -> Axes:
    """The components over the sample ``X`` (n, d), if given, on ``ax`` (new figure if None).

    d = 1: histogram of X, mixture density and weighted component densities. d = 2: X coloured by
    ``model.predict``, 1σ and 2σ ellipses and the means. d > 2: the same on the two ``features`` named
    (the mixture's marginal), or else on the first two principal axes of the standardised features (of
    X's covariance when X is given, else of the mixture's), labelled with the features that load on them.
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
    if features is not None and d > 1:
        pair = feature_indices(model, features)
        means, covs = means[:, pair], covs[:, pair][:, :, pair]
        points = None if X is None else X[:, pair]
        xlabel, ylabel = names[pair[0]], names[pair[1]]
        kind += f"\n{xlabel} against {ylabel} (the mixture's marginal)" if d > 2 else ""
    elif d > 2:
        centre, W, share, loadings = projection_axes(model, X)
        means, covs = project(means, covs, centre, W)
        points = None if X is None else (X - centre) @ W
        xlabel, ylabel = (axis_label(a, share[a], loadings[:, a], names) for a in (0, 1))
        kind += (
            f"\nfirst two principal axes of the standardised {'sample' if X is not None and len(X) > 1 else 'mixture'}"
        )
    if points is not None:
        predicted = np.asarray(model.predict(X))
        alpha = float(np.clip(25 / np.sqrt(len(points)), 0.1, 0.6))  # fainter as the sample grows
        ax.scatter(points[:, 0], points[:, 1], s=4, c=colours[predicted], alpha=alpha, linewidths=0, rasterized=True)
    for k in range(K):
        for n_sigma, style in ((1, "-"), (2, "--")):
            width, height, angle = ellipse_geometry(covs[k], n_sigma)
            for colour, lw in (("white", 3.5), (colours[k], 1.8)):  # a white halo keeps edges visible on points
                ax.add_patch(Ellipse(means[k], width, height, angle=angle, fill=False, ec=colour, lw=lw, ls=style))
        ax.plot(
            *means[k], marker="X", ms=10, mfc=colours[k], mec="black", ls="none", label=labels[k] if K <= 10 else None
        )
    ax.autoscale_view()
    ax.set(
        xlabel=xlabel,
        ylabel=ylabel,
        title=kind + "; ellipses at 1σ (solid) and 2σ (dashed)" * (d == 2 or features is not None),
    )
    ax.grid(alpha=0.3)
    if K <= 10:
        ax.legend(fontsize="small", markerscale=0.7)
    return ax


def plot_model(
    model: FittedMixture,
    X: Any = None,
    path: PathLike | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    features: Sequence[str | int] | None = None,
) -> Figure:
    """Figure with the convergence curve and the components over ``X`` (n, d); saved as PNG to ``path`` if given.

    ``features``: two features to plot against each other instead of the principal axes (d > 2).
    A classifier (``classes_``) is drawn by :func:`plot_classes` instead. The PNG is published at
    ``path`` whole (:mod:`dgmm.data.publish`; an existing file is replaced only with ``overwrite``),
    and the figure is then closed.
    """
    plt = _pyplot()
    if hasattr(model, "classes_"):
        fig, ax = plt.subplots(figsize=(9, 6.5), layout="constrained")
        draw = lambda: plot_classes(model, X, ax, features)  # noqa: E731
    else:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), width_ratios=(1, 1.3), layout="constrained")
        draw = lambda: (plot_convergence(model, left), plot_components(model, X, right, features))  # noqa: E731
    try:
        draw()
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path, overwrite, storage_options)


def plot_classes(
    model: Any, X: Any = None, ax: Axes | None = None, features: Sequence[str | int] | None = None
) -> Axes:
    """A classifier: every class's components (means and 1σ ellipses) in one colour per class, over the
    sample ``X`` coloured by predicted class; on two ``features``, or the principal axes of the
    standardised features (of X, else of the background model or the first class's mixture) for d > 2."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    if ax is None:
        ax = _pyplot().subplots(figsize=(9, 6.5), layout="constrained")[1]
    mixtures, classes = list(model.estimators_), [str(c) for c in model.classes_]
    reference = getattr(model, "ubm_", None) or mixtures[0]
    X = _as_sample(reference, X)
    d, names = reference.n_features_in_, _feature_names(reference)
    colours = _colours(len(classes))
    if d == 1:
        raise ParameterError("a classifier of one feature has no plane to draw its classes on; use dgmm inspect")
    if features is not None or d == 2:
        pair = feature_indices(reference, features if features is not None else (0, 1))
        xlabel, ylabel = names[pair[0]], names[pair[1]]

        def place(means, covs):
            return means[:, pair], covs[:, pair][:, :, pair]

        points = None if X is None else X[:, pair]
    else:
        centre, W, share, loadings = projection_axes(reference, X)
        xlabel, ylabel = (axis_label(a, share[a], loadings[:, a], names) for a in (0, 1))

        def place(means, covs):
            return project(means, covs, centre, W)

        points = None if X is None else (X - centre) @ W
    if points is not None:
        predicted = np.searchsorted(np.asarray(model.classes_), np.asarray(model.predict(X)))
        alpha = float(np.clip(25 / np.sqrt(len(points)), 0.1, 0.6))
        ax.scatter(points[:, 0], points[:, 1], s=4, c=colours[predicted], alpha=alpha, linewidths=0, rasterized=True)
    for c, mixture in enumerate(mixtures):
        means, covs = place(np.asarray(mixture.means_), dense_covariances(mixture))
        for k in range(len(means)):
            width, height, angle = ellipse_geometry(covs[k], 1.0)
            ax.add_patch(Ellipse(means[k], width, height, angle=angle, fill=False, ec=colours[c], lw=1.2, alpha=0.8))
        ax.plot(means[:, 0], means[:, 1], marker="X", ms=7, mfc=colours[c], mec="black", ls="none")
    ax.autoscale_view()
    first = mixtures[0]
    ax.set(
        xlabel=xlabel,
        ylabel=ylabel,
        title=f"{len(classes)} classes, {first.n_components} {first.covariance_type} components each; "
        "1σ ellipses, points by predicted class"
        * (points is not None)
        or "1σ ellipses",
    )
    ax.grid(alpha=0.3)
    if len(classes) <= 20:
        ax.legend(
            handles=[
                Line2D([], [], marker="X", ls="none", mfc=colours[c], mec="black", label=label)
                for c, label in enumerate(classes)
            ],
            title="class",
            fontsize="small",
        )
    return ax


def save_figure(fig: Figure, path: PathLike | None, overwrite: bool, storage_options: dict | None) -> Figure:
    """``fig`` published whole as a PNG at ``path`` (nothing when None), then closed."""
    if path is None:
        return fig
    plt = _pyplot()
    from ..data.publish import published

    try:
        with published(path, overwrite, storage_options) as file:
            fig.savefig(file, format="png", dpi=100)
    finally:
        plt.close(fig)
    return fig


def sample_rows(
    source: PathLike | Sequence[PathLike],
    columns: Sequence[str] | None,
    n_rows: int,
    seed: int = 0,
    storage_options: dict | None = None,
    nan_policy: NanPolicy = "raise",
) -> np.ndarray:
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
