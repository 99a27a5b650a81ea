"""nan_policy="marginalize": EM over each row's observed values, against the formulas, scipy and the complete-data fit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.optimize import approx_fprime
from scipy.stats import multivariate_normal

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.errors import DataError, InputTypeError, ParameterError
from dgmm.kernels.params import MixtureParams

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def data(n: int = 3_000, d: int = 5, k: int = 3, fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a mixture (complete) and the same with MCAR holes; every row keeps one observed value."""
    X = sample_mixture(random_mixture(k, d, seed=seed, separation=4.0), n, seed=seed + 1)[0]
    rng = np.random.default_rng(seed + 2)
    holes = rng.random(X.shape) < fraction
    holes[np.arange(n), rng.integers(d, size=n)] = False
    return X, np.where(holes, np.nan, X)


def start(X: np.ndarray, k: int, covariance_type: str, seed: int = 0) -> MixtureParams:
    """Starting parameters from the complete rows' moments (the same for dgmm and the oracle)."""
    rng = np.random.default_rng(seed)
    complete = X[~np.isnan(X).any(axis=1)]
    means = complete[rng.choice(len(complete), k, replace=False)]
    cov = np.cov(complete.T)
    covariances = {
        "full": np.repeat(cov[None], k, axis=0),
        "tied": cov,
        "diag": np.repeat(np.diag(cov)[None], k, axis=0),
        "spherical": np.full(k, np.diag(cov).mean()),
    }[covariance_type]
    return MixtureParams.from_covariances(np.full(k, 1.0 / k), means, covariances, covariance_type)


def oracle_em(X: np.ndarray, params: MixtureParams, n_iter: int, reg_covar: float) -> list[MixtureParams]:
    """EM with missing values, row by row (Ghahramani & Jordan): conditional means and covariances per component."""
    from tests.kernels.test_missing import reference_stats

    out = []
    for _ in range(n_iter):
        _, s0, s1, s2 = reference_stats(X, params)
        K, d = params.means.shape
        shift = s1 / s0[:, None]
        means = params.means + shift
        ct = params.covariance_type
        if ct == "full":
            cov = s2 / s0[:, None, None] - shift[:, :, None] * shift[:, None, :] + reg_covar * np.eye(d)
        elif ct == "tied":
            cov = (s2 - np.einsum("k,ki,kj->ij", s0, shift, shift)) / s0.sum() + reg_covar * np.eye(d)
        else:
            var = s2 / s0[:, None] - shift**2 + reg_covar
            cov = var if ct == "diag" else var.mean(axis=1)
        params = MixtureParams.from_covariances(s0 / s0.sum(), means, cov, ct)
        out.append(params)
    return out


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_each_iteration_matches_the_formulas_row_by_row(covariance_type):
    _, X = data(n=300, d=4, fraction=0.35)
    params = start(X, 3, covariance_type)
    expected = oracle_em(X, params, 3, 1e-6)
    for n_iter, want in enumerate(expected, start=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = dgmm.GaussianMixture(
                3,
                covariance_type=covariance_type,
                nan_policy="marginalize",
                weights_init=params.weights,
                means_init=params.means,
                precisions_init=params.precisions,
                max_iter=n_iter,
                tol=0.0,
            ).fit(X)
        np.testing.assert_allclose(model.weights_, want.weights, rtol=1e-10)
        np.testing.assert_allclose(model.means_, want.means, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(model.covariances_, want.covariances, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_without_missing_values_the_fit_is_bit_identical(covariance_type):
    X, _ = data(n=2_000)
    for init_params in ("kmeans", "k-means++", "random_from_data", "split"):
        kwargs = dict(covariance_type=covariance_type, init_params=init_params, n_init=2, random_state=4)
        a = dgmm.GaussianMixture(3, nan_policy="marginalize", **kwargs).fit(X)
        b = dgmm.GaussianMixture(3, **kwargs).fit(X)
        for name in ("weights_", "means_", "covariances_", "lower_bound_", "n_iter_", "lower_bounds_"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{init_params} {name}")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_observed_log_likelihood_never_decreases_and_the_fit_recovers_the_mixture(covariance_type):
    X, holed = data(n=6_000, d=5, fraction=0.3, seed=3)
    weights = np.random.default_rng(5).uniform(0.5, 1.5, len(X))
    for w in (weights, None):
        model = dgmm.GaussianMixture(
            3, covariance_type=covariance_type, nan_policy="marginalize", random_state=0, tol=1e-8, max_iter=500
        ).fit(holed, sample_weight=w)
        bounds = np.asarray(model.lower_bounds_)
        assert (np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])).all()
        assert model.converged_
    complete = dgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    # the complete data's fit, scored on complete rows, is within reach of the fit that saw 30% of it missing
    assert model.score(X) > complete.score(X) - 0.05
    order = np.argsort(model.means_[:, 0])
    np.testing.assert_allclose(model.means_[order], complete.means_[np.argsort(complete.means_[:, 0])], atol=0.15)


def test_the_gradient_of_the_observed_log_likelihood_vanishes_at_convergence():
    """K=1: EM's fixed point is a stationary point of Σ_n log N(x_o; μ_o, Σ_oo) (scipy's finite differences)."""
    _, X = data(n=800, d=4, k=1, fraction=0.4, seed=7)
    model = dgmm.GaussianMixture(1, nan_policy="marginalize", tol=1e-12, max_iter=5_000, reg_covar=0.0).fit(X)
    d = X.shape[1]
    lower = np.tril_indices(d)

    def loglik(theta: np.ndarray) -> float:
        mean, factor = theta[:d], np.zeros((d, d))
        factor[lower] = theta[d:]
        cov = factor @ factor.T
        total = 0.0
        for row in X:
            o = ~np.isnan(row)
            total += multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(row[o])
        return total / len(X)

    theta = np.concatenate([model.means_[0], np.linalg.cholesky(model.covariances_[0])[lower]])
    gradient = approx_fprime(theta, loglik, 1e-6)
    assert np.abs(gradient).max() < 1e-5, gradient
    assert loglik(theta) == pytest.approx(model.score(X), rel=1e-10)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means||", "k-means++", "random_from_data", "random", "split"])
def test_chunkings_do_not_change_the_answer(init_params):
    """Every initialisation and EM, with rows that have nothing observed among chunks that have none."""
    _, X = data(n=5_000, d=6, fraction=0.2, seed=9)
    X[[17, 1_500, 4_999]] = np.nan
    fits = [
        dgmm.GaussianMixture(
            4, nan_policy="marginalize", init_params=init_params, random_state=1, chunk_rows=rows, tol=1e-6
        ).fit(X)
        for rows in (5_000, 1_000, 777)
    ]
    for other in fits[1:]:
        np.testing.assert_allclose(other.means_, fits[0].means_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(other.covariances_, fits[0].covariances_, rtol=1e-8, atol=1e-10)
        assert other.n_rows_dropped_ == 3


def test_rows_with_nothing_observed_are_dropped_and_counted_and_scored_as_dropped():
    _, X = data(n=2_000, fraction=0.2)
    X[[3, 50, 51]] = np.nan
    model = dgmm.GaussianMixture(3, nan_policy="marginalize", random_state=0).fit(X)
    assert model.n_rows_dropped_ == 3
    labels, density = model.predict(X), model.score_samples(X)
    assert (labels[[3, 50, 51]] == -1).all() and np.isnan(density[[3, 50, 51]]).all()
    assert (labels[:3] >= 0).all() and np.isfinite(density[:3]).all()
    assert model.score(X) == pytest.approx(np.nanmean(density), rel=1e-12)
    filled = model.impute(X)
    np.testing.assert_allclose(filled[3], model.weights_ @ model.means_)
    assert not np.isnan(filled).any()


def test_impute_gives_conditional_means_and_sample_missing_draws_around_them():
    X, holed = data(n=4_000, d=4, fraction=0.25, seed=11)
    model = dgmm.GaussianMixture(3, nan_policy="marginalize", random_state=0).fit(holed)
    holes = np.isnan(holed)
    filled = model.impute(holed)
    np.testing.assert_array_equal(filled[~holes], holed[~holes])
    mean_imputed = np.where(holes, np.nanmean(holed, axis=0), holed)
    assert np.sqrt(np.mean((filled - X)[holes] ** 2)) < 0.9 * np.sqrt(np.mean((mean_imputed - X)[holes] ** 2))
    draws = model.sample_missing(holed, 60, random_state=3)
    assert draws.shape == (60, *X.shape)
    np.testing.assert_array_equal(draws[:, ~holes], np.broadcast_to(holed[~holes], (60, (~holes).sum())))
    spread = draws[:, holes].std(axis=0)
    assert np.abs(draws[:, holes].mean(axis=0) - filled[holes]).max() < 5 * spread.max() / np.sqrt(60)
    np.testing.assert_array_equal(draws, model.sample_missing(holed, 60, random_state=3))
    import dask.array as da

    lazy = model.sample_missing(da.from_array(holed, chunks=(777, -1)), 60, random_state=3)
    assert lazy.chunks[1] == da.from_array(holed, chunks=(777, -1)).chunks[0]
    np.testing.assert_allclose(lazy.compute(), draws, rtol=1e-12, atol=1e-12)  # drawn by global row index


def test_parquet_nulls_are_missing_values_and_outputs_stream(tmp_path):
    _, X = data(n=3_000, d=4, fraction=0.2, seed=13)
    X[17] = np.nan
    names = list("abcd")
    source = tmp_path / "in"
    source.mkdir()
    for i in range(3):
        part = X[i * 1_000 : (i + 1) * 1_000]
        table = pa.table({n: pa.array(part[:, j], mask=np.isnan(part[:, j])) for j, n in enumerate(names)})
        pq.write_table(
            table.append_column("id", pa.array(np.arange(i * 1_000, (i + 1) * 1_000))),
            source / f"{i}.parquet",
            row_group_size=300,
        )
    model = dgmm.GaussianMixture(3, nan_policy="marginalize", random_state=0).fit(str(source), columns=names)
    in_memory = dgmm.GaussianMixture(3, nan_policy="marginalize", random_state=0).fit(pd.DataFrame(X, columns=names))
    np.testing.assert_allclose(model.means_, in_memory.means_, rtol=1e-12, atol=1e-12)
    assert model.n_rows_dropped_ == 1
    dgmm.predict_to_parquet(model, str(source), tmp_path / "labels.parquet", keep_columns=["id"], columns=names)
    labels = pq.read_table(tmp_path / "labels.parquet")
    assert labels.column("component").null_count == 1 and labels.column("component")[17].as_py() is None
    np.testing.assert_array_equal(labels.column("component").to_numpy(zero_copy_only=False)[:17], model.predict(X)[:17])
    dgmm.impute_to_parquet(model, str(source), tmp_path / "filled.parquet", keep_columns=["id"])
    filled = pq.read_table(tmp_path / "filled.parquet").to_pandas()
    assert list(filled.columns) == ["id", *names]
    np.testing.assert_allclose(filled[names].to_numpy(), model.impute(X), rtol=1e-12)
    np.testing.assert_allclose(model.impute(str(source)).compute(), model.impute(X), rtol=1e-12)


def test_bad_input_and_combinations_are_refused_in_one_line():
    _, X = data(n=500)
    X[5, 1] = np.inf
    with pytest.raises(DataError, match="row 5, column 1 is inf; nan_policy='marginalize' treats only NaN"):
        dgmm.GaussianMixture(2, nan_policy="marginalize").fit(X)
    X[5, 1] = 0.0
    X[:, 2] = np.nan
    with pytest.raises(DataError, match="feature 2 has no observed value"):
        dgmm.GaussianMixture(2, nan_policy="marginalize").fit(X)
    for settings, what in (({"cmvn": "utterance"}, "cmvn='utterance'"), ({"device": "cuda"}, "device='cuda'")):
        with pytest.raises(ParameterError, match=f"does not combine with {what}"):
            dgmm.GaussianMixture(3, nan_policy="marginalize", **settings).fit(X)
    fitted = dgmm.GaussianMixture(2, random_state=0).fit(data(n=500)[0])
    with pytest.raises(ParameterError, match="impute needs nan_policy='marginalize'"):
        fitted.impute(X)
    array_api = pytest.importorskip("array_api_strict")
    with pytest.raises(InputTypeError, match="marginalize' runs on the CPU"):
        dgmm.GaussianMixture(2, nan_policy="marginalize").fit(array_api.asarray(data(n=100)[1]))


def test_the_command_line_fits_with_holes_from_yaml_and_imputes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _, X = data(n=4_000, d=3, fraction=0.25, seed=21)
    X[9] = np.nan
    table = pa.table({n: pa.array(X[:, j], mask=np.isnan(X[:, j])) for j, n in enumerate("xyz")})
    pq.write_table(
        table.append_column("id", pa.array(np.arange(len(X)))), tmp_path / "in.parquet", row_group_size=1_000
    )
    config = tmp_path / "fit.yaml"
    config.write_text("n_components: 3\nnan_policy: marginalize\ncolumns: [x, y, z]\n")
    dgmm_command = str(Path(sys.executable).parent / "dgmm")

    def run(*args, code=0):
        proc = subprocess.run([dgmm_command, *map(str, args)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == code, proc.stderr
        return proc

    run("fit", tmp_path / "in.parquet", "--config", config, "--model", tmp_path / "m.npz")
    model = dgmm.load_model(tmp_path / "m.npz")
    assert model.nan_policy == "marginalize" and model.n_rows_dropped_ == 1
    run(
        "impute",
        tmp_path / "m.npz",
        tmp_path / "in.parquet",
        "--output",
        tmp_path / "f.parquet",
        "--keep-columns",
        "id",
    )
    filled = pq.read_table(tmp_path / "f.parquet").to_pandas()
    assert list(filled.columns) == ["id", "x", "y", "z"] and not filled.isna().any().any()
    np.testing.assert_allclose(filled[["x", "y", "z"]].to_numpy(), model.impute(X), rtol=1e-12)
    bad = run("impute", tmp_path / "m.npz", tmp_path / "in.parquet", "--output", tmp_path / "f.parquet", code=2)
    assert len(bad.stderr.strip().splitlines()) == 1 and "exists" in bad.stderr
    refused = run(
        "fit",
        tmp_path / "in.parquet",
        "--columns",
        "x,y,z",
        "--n-components",
        "3",
        "--model",
        tmp_path / "r.npz",
        code=2,
    )
    assert "--nan-policy" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("ubm", [None, "fit"])
def test_the_classifier_fits_and_scores_rows_with_holes(ubm):
    """Per class (or adapted from a background model fitted with holes): predictions are the classes' marginal
    log-likelihoods plus the log priors; scoring complete rows, as accurate as the complete data's fit."""
    from scipy.special import logsumexp

    from dgmm.kernels.missing import marginal_log_prob

    truth = random_mixture(6, 4, seed=31, separation=5.0)
    X, y = sample_mixture(truth, 6_000, seed=32)
    holed = np.where(np.random.default_rng(33).random(X.shape) < 0.2, np.nan, X)
    holed[np.isnan(holed).all(axis=1), 0] = X[np.isnan(holed).all(axis=1), 0]
    kwargs = dict(n_components=2, ubm=ubm, random_state=0)
    model = dgmm.GaussianMixtureClassifier(nan_policy="marginalize", **kwargs).fit(holed, y)
    log_likelihoods = np.stack(
        [logsumexp(marginal_log_prob(holed, m.fitted_params()), axis=1) for m in model.estimators_], axis=1
    )
    expected = model.classes_[np.argmax(log_likelihoods + np.log(model.class_prior_), axis=1)]
    np.testing.assert_array_equal(model.predict(holed), expected)
    complete = dgmm.GaussianMixtureClassifier(**kwargs).fit(X, y)  # scored on complete rows, the two agree
    # (one MAP step takes a class's missing values as the background model expects them, which pulls the
    # adapted classes towards it: 71% against 78% here)
    slack = 0.02 if ubm is None else 0.1
    assert (model.predict(X) == y).mean() > (complete.predict(X) == y).mean() - slack


def test_select_fits_the_grid_on_rows_with_holes():
    _, X = data(n=3_000, d=4, fraction=0.2, seed=41)
    selection = dgmm.select(
        X, n_components=range(1, 5), covariance_types=["full", "diag"], nan_policy="marginalize", random_state=0
    )
    assert selection.best.n_components == 3 and selection.best.nan_policy == "marginalize"
    direct = dgmm.GaussianMixture(
        3, covariance_type=selection.best.covariance_type, nan_policy="marginalize", random_state=0
    )
    assert selection.best.score(X) == pytest.approx(direct.fit(X).score(X), abs=1e-3)


def test_split_and_merge_moves_rank_completed_rows_and_keep_only_what_raises_the_observed_likelihood():
    for seed in range(3):
        _, X = data(n=4_000, d=4, k=6, fraction=0.25, seed=seed)
        kwargs = dict(nan_policy="marginalize", random_state=seed, init_params="random_from_data")
        plain = dgmm.GaussianMixture(6, **kwargs).fit(X)
        moved = dgmm.GaussianMixture(6, split_merge=5, **kwargs).fit(X)
        assert moved.split_merge_moves_ and moved.lower_bound_ > plain.lower_bound_ + 1e-3
        assert all(after > before for *_, before, after in moved.split_merge_moves_)
