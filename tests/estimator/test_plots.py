"""Plots of fitted mixtures: PNGs that are really drawn, the geometry behind them, and `dgmm plot`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import dgmm  # noqa: E402
from dgmm.data.synthetic import random_mixture, sample_mixture, write_parquet  # noqa: E402
from dgmm.errors import DgmmError  # noqa: E402
from dgmm.estimator import plots  # noqa: E402
from dgmm.testing import COVARIANCE_TYPES  # noqa: E402

DGMM = str(Path(sys.executable).parent / "dgmm")
PNG_SHAPE = (550, 1300)  # plot_model: 13 x 5.5 inches at 100 dpi


def data(d: int, K: int = 3, n: int = 2000, seed: int = 0) -> np.ndarray:
    return sample_mixture(random_mixture(K, d, seed=seed), n, seed=seed + 1)[0]


def fitted(
    X: np.ndarray, K: int = 3, covariance_type: str = "full", names: list[str] | None = None
) -> dgmm.GaussianMixture:
    source = pd.DataFrame(X, columns=names) if names else X
    return dgmm.GaussianMixture(K, covariance_type=covariance_type, random_state=0).fit(source)


@pytest.fixture(scope="module")
def models() -> dict:
    """Small real fits (NumPy, in process): 1-D, 2-D of every covariance type, 5-D."""
    X1, X2, X5 = data(1, seed=1), data(2, seed=2), data(5, K=4, seed=5)
    out = {("1d", "full"): (fitted(X1, names=["height"]), X1), ("5d", "full"): (fitted(X5, K=4), X5)}
    for kind in COVARIANCE_TYPES:
        out[("2d", kind)] = (fitted(X2, covariance_type=kind, names=["length", "width"]), X2)
    return out


def assert_png(path: Path) -> np.ndarray:
    assert path.is_file()
    image = mpimg.imread(path)
    assert image.shape[:2] == PNG_SHAPE
    assert image[..., :3].var() > 0
    right = image[:, PNG_SHAPE[1] // 2 :, :3]  # the components panel is drawn, not left empty
    assert right.var() > 0.001
    return image


@pytest.mark.parametrize("key", [("1d", "full"), ("5d", "full")] + [("2d", k) for k in COVARIANCE_TYPES], ids="-".join)
@pytest.mark.parametrize("with_data", [True, False], ids=["sample", "model-only"])
def test_plot_model_writes_a_png(models, tmp_path, key, with_data):
    model, X = models[key]
    path = tmp_path / f"{key[0]}-{key[1]}.png"
    before = set(plt.get_fignums())
    plots.plot_model(model, X if with_data else None, path)
    assert set(plt.get_fignums()) == before  # the saved figure was closed
    assert_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


def test_plot_model_without_path_returns_the_figure_and_labels_axes(models):
    model, X = models[("2d", "full")]
    fig = plots.plot_model(model, X)
    try:
        convergence, components = fig.axes[:2]
        assert convergence.get_title() == f"EM: converged after {model.n_iter_} iterations"
        line = convergence.get_lines()[0]
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(model.lower_bounds_) + 1))
        np.testing.assert_array_equal(line.get_ydata(), model.lower_bounds_)
        assert (components.get_xlabel(), components.get_ylabel()) == ("length", "width")
        ellipses = [p for p in components.patches if isinstance(p, Ellipse)]
        assert len(ellipses) == 3 * 2 * 2  # K x (1σ, 2σ) x (white halo, coloured line)
    finally:
        plt.close(fig)
    fig = plots.plot_model(models[("5d", "full")][0])
    try:
        xlabel, ylabel = fig.axes[1].get_xlabel(), fig.axes[1].get_ylabel()
        assert xlabel.startswith("PC1, ") and ylabel.startswith("PC2, ")
        assert "of the standardised variance\n" in xlabel and " x" in xlabel  # the features that load on it
        title = fig.axes[1].get_title()
        assert title.startswith("4 components, full covariance\nfirst two principal axes of the standardised mixture")
    finally:
        plt.close(fig)


def test_convergence_title_says_not_converged():
    X = data(2, seed=3)
    model = dgmm.GaussianMixture(3, max_iter=2, tol=0, random_state=0).fit(X)
    ax = plots.plot_convergence(model)
    try:
        assert ax.get_title() == "EM: not converged after 2 iterations"
        assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "mean log-likelihood"
    finally:
        plt.close(ax.figure)


def test_dense_covariances_match_every_covariance_type(models):
    for kind in COVARIANCE_TYPES:
        model = models[("2d", kind)][0]
        dense = plots.dense_covariances(model)
        assert dense.shape == (3, 2, 2)
        cov = model.covariances_
        for k in range(3):
            expected = {
                "full": lambda: cov[k],
                "tied": lambda: cov,
                "diag": lambda: np.diag(cov[k]),
                "spherical": lambda: cov[k] * np.eye(2),
            }[kind]()
            np.testing.assert_array_equal(dense[k], expected)


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_ellipse_geometry_of_a_known_covariance(angle):
    theta = np.radians(angle)
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cov = R @ np.diag([9.0, 1.0]) @ R.T  # standard deviations 3 along angle, 1 across it
    width, height, got = plots.ellipse_geometry(cov, 2.0)
    assert width == pytest.approx(12.0) and height == pytest.approx(4.0)
    assert (got - angle) % 180 == pytest.approx(0.0, abs=1e-9) or (got - angle) % 180 == pytest.approx(180.0)
    # the matplotlib patch drawn from it lies at Mahalanobis distance 2 from its centre
    centre = np.array([5.0, -1.0])
    patch = Ellipse(centre, width, height, angle=got)
    t = np.linspace(0, 2 * np.pi, 50)
    boundary = patch.get_patch_transform().transform(np.c_[np.cos(t), np.sin(t)]) - centre  # its unit circle
    distance = np.sqrt(np.einsum("ni,ij,nj->n", boundary, np.linalg.inv(cov), boundary))
    np.testing.assert_allclose(distance, 2.0, rtol=1e-6)


def test_projection_is_wT_sigma_w_and_axes_are_principal(models):
    model, X = models[("5d", "full")]
    rng = np.random.default_rng(0)
    W = np.linalg.qr(rng.normal(size=(5, 2)))[0]
    covs, centre = plots.dense_covariances(model), rng.normal(size=5)
    means, projected = plots.project(model.means_, covs, centre, W)
    for k in range(4):
        np.testing.assert_allclose(projected[k], W.T @ covs[k] @ W, rtol=1e-12)
        np.testing.assert_allclose(means[k], (model.means_[k] - centre) @ W, rtol=1e-12)
    centre, W, share, loadings = plots.projection_axes(model, X)
    np.testing.assert_allclose(centre, X.mean(axis=0))
    np.testing.assert_allclose(loadings.T @ loadings, np.eye(2), atol=1e-12)
    values, vectors = np.linalg.eigh(np.corrcoef(X, rowvar=False))  # the axes of the standardised features
    np.testing.assert_allclose(np.abs(loadings), np.abs(vectors[:, [-1, -2]]), atol=1e-10)
    np.testing.assert_allclose(share, values[[-1, -2]] / values.sum())
    standardised = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    np.testing.assert_allclose((X - centre) @ W, standardised @ loadings, atol=1e-10)


def test_a_feature_in_large_units_does_not_take_the_first_axis_alone():
    """Diamonds-like data: a price in dollars beside sizes in mm; unscaled, price was '100% of the variance'."""
    rng = np.random.default_rng(0)
    size = rng.gamma(2.0, 0.4, 3000)
    X = np.column_stack(
        [
            size,
            6.4 * size**0.33 + rng.normal(0, 0.05, 3000),
            rng.normal(61.7, 1.4, 3000),
            np.exp(8 + 1.7 * np.log(size) + rng.normal(0, 0.3, 3000)),
        ]
    )
    names = ["carat", "x", "depth", "price"]
    model = fitted(X, names=names)
    centre, W, share, loadings = plots.projection_axes(model, X)
    assert share[0] < 0.9 and share[1] > 0.1  # standardised: the sizes and price share the first axis
    label = plots.axis_label(0, share[0], loadings[:, 0], names)
    assert {"carat", "x", "price"} <= set(label.replace("−", " ").replace("+", " ").split()) and "depth" not in label
    ax = plots.plot_components(model, X)
    try:
        assert ax.get_xlabel() == label and "PC2" in ax.get_ylabel()
    finally:
        plt.close(ax.figure)
    ax = plots.plot_components(model, X, features=["carat", "price"])  # two features named: their marginal
    try:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("carat", "price")
        means = [line.get_xydata()[0] for line in ax.get_lines()]
        np.testing.assert_allclose(means, model.means_[:, [0, 3]])
    finally:
        plt.close(ax.figure)
    with pytest.raises(dgmm.ParameterError, match="'weight' is not one of the model's features: carat, x, depth"):
        plots.plot_components(model, X, features=["carat", "weight"])
    with pytest.raises(dgmm.ParameterError, match="exactly two features"):
        plots.plot_components(model, X, features=["carat"])


def test_a_classifier_is_drawn_in_one_colour_per_class(tmp_path):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(loc, 1.0, size=(400, 4)) for loc in (0.0, 4.0, 8.0)])
    y = np.repeat(["adelie", "chinstrap", "gentoo"], 400)
    frame = pd.DataFrame(X, columns=["bill_length", "bill_depth", "flipper", "mass"])
    model = dgmm.GaussianMixtureClassifier(2, random_state=0).fit(frame, y)
    ax = plots.plot_classes(model, X)
    try:
        handles = ax.get_legend().legend_handles
        assert [h.get_label() for h in handles] == ["adelie", "chinstrap", "gentoo"]
        colours = [tuple(h.get_markerfacecolor()) for h in handles]
        assert len(set(colours)) == 3
        ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
        assert len(ellipses) == 3 * 2  # classes x components
        for c, colour in enumerate(colours):  # each class's ellipses in its colour
            assert sum(tuple(e.get_edgecolor()[:3]) == colour[:3] for e in ellipses) == 2
        assert ax.get_xlabel().startswith("PC1, ")
    finally:
        plt.close(ax.figure)
    path = tmp_path / "classes.png"
    plots.plot_model(model, X, path)
    image = mpimg.imread(path)
    assert image.shape[:2] == (650, 900) and image[..., :3].var() > 0.001


def test_mixture_covariance_is_the_law_of_total_covariance(models):
    model = models[("5d", "full")][0]
    mean, cov = plots.mixture_covariance(model)
    sample = model.set_params(random_state=1).sample(400_000)[0]
    np.testing.assert_allclose(mean, sample.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(cov, np.cov(sample, rowvar=False), atol=0.02 * np.abs(cov).max())


def test_one_d_density_integrates_to_one(models):
    model = models[("1d", "full")][0]
    mu, sd = model.means_[:, 0], np.sqrt(plots.dense_covariances(model)[:, 0, 0])
    grid = np.linspace(np.min(mu - 8 * sd), np.max(mu + 8 * sd), 20_001)
    total, parts = plots.mixture_density_1d(model, grid)
    step = grid[1] - grid[0]
    assert total.sum() * step == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(parts.sum(axis=0) * step, model.weights_, atol=1e-6)
    np.testing.assert_allclose(total, np.exp(model.score_samples(grid[:, None])), rtol=1e-9)
    ax = plots.plot_components(model)  # no sample: the grid spans μ ± 4σ
    try:
        lo, hi = ax.get_xlim()
        assert lo == pytest.approx(np.min(mu - 4 * sd)) and hi == pytest.approx(np.max(mu + 4 * sd))
    finally:
        plt.close(ax.figure)


def test_sample_rows_reads_only_the_row_groups_it_needs(tmp_path, monkeypatch):
    X = np.arange(3000, dtype=np.float64).reshape(1000, 3)
    write_parquet(X, tmp_path / "d", row_group_size=100, n_files=2)
    calls = []
    original = plots.read_row_group
    monkeypatch.setattr(plots, "read_row_group", lambda rg, cols, **kw: calls.append(rg) or original(rg, cols, **kw))
    rows = plots.sample_rows(tmp_path / "d", ["x0", "x1", "x2"], 250, seed=3)
    assert rows.shape == (250, 3) and len(calls) == 3
    assert len({tuple(r) for r in rows}) == 250 and np.all(rows[:, 0] % 3 == 0)  # distinct rows of X
    np.testing.assert_array_equal(rows, plots.sample_rows(tmp_path / "d", None, 250, seed=3))
    assert not np.array_equal(rows, plots.sample_rows(tmp_path / "d", None, 250, seed=4))
    everything = plots.sample_rows(tmp_path / "d", ["x2", "x0"], 5000)
    np.testing.assert_array_equal(np.sort(everything[:, 1]), X[:, 0])
    with pytest.raises(dgmm.ParameterError, match="n_rows=0"):
        plots.sample_rows(tmp_path / "d", None, 0)


def test_missing_matplotlib_is_a_dgmm_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(DgmmError, match=r"^plotting needs matplotlib: pip install 'dgmm\[plot\]'$"):
        plots._pyplot()


def test_a_sample_of_the_wrong_width_is_refused(models):
    model, X = models[("2d", "full")]
    before = set(plt.get_fignums())
    with pytest.raises(dgmm.DataError, match=r"shape \(2000, 3\)"):
        plots.plot_model(model, np.hstack([X, X[:, :1]]))
    assert set(plt.get_fignums()) == before  # the half-drawn figure was closed


def run(*args, code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([DGMM, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("dgmm plot: error: ")
    return lines[0]


def test_dgmm_plot_command(tmp_path):
    X = data(2, seed=2)
    write_parquet(X, tmp_path / "data", row_group_size=300, n_files=2)
    model_path = tmp_path / "model.npz"
    fitted(X, names=["x0", "x1"]).save(str(model_path))
    out = tmp_path / "out.png"
    proc = run("plot", model_path, tmp_path / "data", "--output", out, "--sample-rows", 1000, "--seed", 1)
    assert proc.stderr.strip() == f"wrote {out}"
    first = assert_png(out)

    refused = run("plot", model_path, tmp_path / "data", "--output", out, code=2)
    assert one_line_error(refused) == f"dgmm plot: error: {out}: output exists; remove it or pass --overwrite"
    np.testing.assert_array_equal(mpimg.imread(out), first)  # left intact

    run("plot", model_path, "--output", out, "--overwrite")  # no DATA: the model alone
    assert_png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model.npz", "out.png"]

    assert "--output must be a .png file" in one_line_error(run("plot", model_path, "-o", tmp_path / "x.pdf", code=2))
    assert "model file" in one_line_error(run("plot", tmp_path / "nope.npz", "-o", tmp_path / "y.png", code=2))


def test_estimator_plot_helpers(tmp_path):
    import dgmm

    X = np.random.default_rng(0).normal(size=(500, 2))
    model = dgmm.GaussianMixture(2, random_state=0).fit(X)
    figure = model.plot(X, path=tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 0 and len(figure.axes) == 2
    ax = model.plot_convergence()
    assert list(ax.lines[0].get_ydata()) == model.lower_bounds_


def test_a_model_fitted_with_nan_policy_drop_plots_over_data_with_nan(tmp_path):
    """Its sample leaves out the rows the fit dropped, instead of refusing the data."""
    X = sample_mixture(random_mixture(2, 2, seed=1), 3000, seed=1)[0]
    X[::50, 0] = np.nan
    pd.DataFrame(X, columns=["a", "b"]).to_parquet(tmp_path / "d.parquet", row_group_size=500)
    rows = plots.sample_rows(tmp_path / "d.parquet", None, 5000, nan_policy="drop")
    assert rows.shape == (3000 - 60, 2) and np.isfinite(rows).all()
    with pytest.raises(DgmmError, match="null|NaN"):
        plots.sample_rows(tmp_path / "d.parquet", None, 5000)
    dgmm.GaussianMixture(2, nan_policy="drop", random_state=0).fit(str(tmp_path / "d.parquet")).save(tmp_path / "m.npz")
    proc = subprocess.run(
        [
            Path(sys.executable).parent / "dgmm",
            "plot",
            tmp_path / "m.npz",
            tmp_path / "d.parquet",
            "-o",
            tmp_path / "p.png",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and (tmp_path / "p.png").exists(), proc.stderr
