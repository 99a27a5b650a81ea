"""The scikit-learn estimator API: parameters, inputs and outputs, errors, warm start, sampling."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import dgmm
from dgmm.data.synthetic import sample_mixture
from dgmm.errors import ConvergenceWarning, DataError, NotFittedError, ParameterError
from dgmm.kernels.params import MixtureParams
from dgmm.testing import assert_close


@pytest.fixture(scope="module")
def data():
    covariances = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 1.2]], [[0.8, 0.0], [0.0, 0.8]]])
    truth = MixtureParams.from_covariances([0.3, 0.3, 0.4], [[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], covariances, "full")
    X, y = sample_mixture(truth, 900, seed=1)
    return X, y, truth


def test_get_set_params_clone_and_repr():
    model = dgmm.GaussianMixture(4, covariance_type="diag", split_every=4)
    params = model.get_params()
    assert params["n_components"] == 4 and params["covariance_type"] == "diag" and params["split_every"] == 4
    assert {
        "tol",
        "reg_covar",
        "max_iter",
        "n_init",
        "init_params",
        "weights_init",
        "means_init",
        "precisions_init",
        "random_state",
        "warm_start",
        "verbose",
        "client",
    } <= set(params)
    twin = clone(model)
    assert twin is not model and twin.get_params() == params
    assert model.set_params(tol=1e-5) is model and model.tol == 1e-5
    assert (
        " ".join(repr(model).split())
        == "GaussianMixture(covariance_type='diag', n_components=4, split_every=4, tol=1e-05)"
    )
    with pytest.raises(ParameterError, match="invalid parameter 'n_clusters'"):
        model.set_params(n_clusters=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_components": 0}, r"n_components=0 is invalid; expected an int >= 1"),
        (
            {"covariance_type": "banana"},
            r"covariance_type='banana' is invalid; expected one of full, tied, diag, spherical",
        ),
        ({"tol": -1.0}, r"tol=-1.0 is invalid"),
        ({"reg_covar": float("nan")}, r"reg_covar=nan is invalid"),
        ({"max_iter": 1.5}, r"max_iter=1.5 is invalid"),
        (
            {"init_params": "kmeans++"},
            r"init_params='kmeans\+\+' is invalid; expected one of random, random_from_data, k-means\+\+, kmeans, k-means\|\|, split$",
        ),
        ({"split_every": 1}, r"split_every=1 is invalid; expected an int >= 2"),
        ({"weights_init": [0.5, 0.6]}, r"weights_init must be in \[0, 1\] and sum to 1"),
        ({"means_init": np.zeros((3, 2))}, r"means_init=\(3, 2\) is invalid; expected shape \(2, 2\)"),
        ({"precisions_init": np.ones((2, 2))}, r"precisions_init=\(2, 2\) is invalid; expected shape \(2, 2, 2\)"),
        (
            {"precisions_init": np.array([[[1, 2], [0, 1]]] * 2)},
            r"precisions_init: every precision matrix must be symmetric",
        ),
        (
            {"precisions_init": np.array([[[1, 2], [2, 1]]] * 2)},
            r"precisions_init: precision matrix 0 is not symmetric positive definite",
        ),
        ({"random_state": "seed"}, r"random_state='seed' must be None, an int or a numpy RandomState"),
    ],
)
def test_bad_parameters_are_named(data, kwargs, message):
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(ParameterError, match=message):
        dgmm.GaussianMixture(**kwargs).fit(data[0])


def test_bad_inputs_are_named(data):
    X = data[0]
    with pytest.raises(DataError, match=r"expected a 2-D array .* Reshape your data with X.reshape\(-1, 1\)"):
        dgmm.GaussianMixture(2).fit(X[:, 0])
    bad = X.copy()
    bad[5, 1] = np.inf
    with pytest.raises(DataError, match=r"input row 5, column 1 is inf"):
        dgmm.GaussianMixture(2).fit(bad)
    with pytest.raises(DataError, match=r"n_samples >= max\(2, n_components\) but got n_components = 5, n_samples = 3"):
        dgmm.GaussianMixture(5).fit(X[:3])
    with pytest.raises(DataError, match=r"column 'name' has dtype \S+, not a number"):
        dgmm.GaussianMixture(2).fit(pd.DataFrame({"a": [1.0, 2.0, 3.0], "name": ["x", "y", "z"]}))
    with pytest.raises(DataError, match="is not a numeric array"):
        dgmm.GaussianMixture(2).fit([["a", "b"], ["c", "d"]])


def test_unfitted_and_mismatched_inputs(data):
    X = data[0]
    with pytest.raises(NotFittedError, match="not fitted yet"):
        dgmm.GaussianMixture(2).predict(X)
    model = dgmm.GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(DataError, match="X has 3 features, but GaussianMixture is expecting 2 features"):
        model.predict(np.c_[X, X[:, 0]])
    named = dgmm.GaussianMixture(3, random_state=0).fit(pd.DataFrame(X, columns=["a", "b"]))
    with pytest.raises(DataError, match=r"feature names \['b', 'a'\] differ from those seen in fit \['a', 'b'\]"):
        named.predict(pd.DataFrame(X, columns=["b", "a"]))


def test_outputs_are_numpy_for_numpy_and_lazy_for_dask(data):
    X = data[0]
    model = dgmm.GaussianMixture(3, random_state=0).fit(X)
    lazy_X = da.from_array(X, chunks=(250, 2))
    for method, shape in (("predict", (900,)), ("predict_proba", (900, 3)), ("score_samples", (900,))):
        eager = getattr(model, method)(X)
        lazy = getattr(model, method)(lazy_X)
        assert isinstance(eager, np.ndarray) and eager.shape == shape
        assert isinstance(lazy, da.Array) and lazy.shape == shape
        np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-12)
    assert model.predict(X).dtype == np.int64
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    assert isinstance(model.score(lazy_X), float)
    assert_close(model.score(lazy_X), model.score(X), 1e-12)


def test_recovers_the_generating_mixture_and_labels(data):
    X, y, truth = data
    model = dgmm.GaussianMixture(3, random_state=0).fit(X)
    assert model.converged_ and model.n_features_in_ == 2
    assert not hasattr(model, "feature_names_in_")
    order = [int(np.argmin(np.linalg.norm(model.means_ - m, axis=1))) for m in truth.means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(model.means_[order], truth.means, atol=0.3)
    np.testing.assert_allclose(model.weights_[order], truth.weights, atol=0.05)
    agreement = np.mean(np.asarray(order)[y] == model.predict(X))
    assert agreement > 0.97
    np.testing.assert_array_equal(model.fit_predict(X), model.predict(X))
    assert len(model.lower_bounds_) == model.n_iter_ and model.lower_bounds_[-1] == model.lower_bound_
    assert np.all(np.diff(model.lower_bounds_) >= -1e-9)  # EM never decreases the likelihood


@pytest.mark.parametrize("init_params", ["random", "random_from_data", "k-means++"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_every_init_method_and_covariance_type_fits(data, init_params, covariance_type):
    X = data[0]
    model = dgmm.GaussianMixture(
        3, covariance_type=covariance_type, init_params=init_params, n_init=2, random_state=0, max_iter=300
    ).fit(X)
    assert model.converged_
    one_component = dgmm.GaussianMixture(1, covariance_type=covariance_type).fit(X).score(X)
    # "random" starts every mean at the data mean, as scikit-learn's does, and often
    # stops early near that saddle; the data-driven inits find the three clusters.
    if init_params == "random":
        assert model.score(X) > one_component - 1e-6
    else:
        from sklearn.mixture import GaussianMixture as SklearnGM

        best = SklearnGM(3, covariance_type=covariance_type, n_init=5, random_state=0).fit(X).score(X)
        assert model.score(X) > best - 1e-3
    expected = {"full": (3, 2, 2), "tied": (2, 2), "diag": (3, 2), "spherical": (3,)}[covariance_type]
    assert model.covariances_.shape == model.precisions_.shape == model.precisions_cholesky_.shape == expected


def test_random_init_does_not_depend_on_chunking(data):
    X = data[0]
    kwargs = dict(init_params="random", tol=0.0, max_iter=5, random_state=7)
    whole = dgmm.GaussianMixture(3, **kwargs).fit(X)
    chunked = dgmm.GaussianMixture(3, **kwargs).fit(da.from_array(X, chunks=(77, 2)))
    assert_close(chunked.means_, whole.means_, 1e-10)


def test_random_state_makes_fits_reproducible(data):
    X = data[0]
    a = dgmm.GaussianMixture(3, n_init=2, random_state=42).fit(X)
    b = dgmm.GaussianMixture(3, n_init=2, random_state=42).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)


def test_n_init_keeps_the_best_lower_bound(data):
    X = data[0]
    single = [
        dgmm.GaussianMixture(3, init_params="random", max_iter=3, tol=0.0, random_state=s).fit(X).lower_bound_
        for s in range(3)
    ]
    best = dgmm.GaussianMixture(3, init_params="random", max_iter=3, tol=0.0, n_init=4, random_state=0).fit(X)
    assert best.lower_bound_ >= max(single) - 0.5
    assert best.lower_bound_ == max(best.lower_bounds_[-1], best.lower_bound_)


def test_warm_start_continues_where_it_left_off(data):
    X = data[0]
    full = dgmm.GaussianMixture(3, tol=0.0, max_iter=10, random_state=0).fit(X)
    warm = dgmm.GaussianMixture(3, tol=0.0, max_iter=4, random_state=0, warm_start=True).fit(X)
    warm.set_params(max_iter=6).fit(X)
    assert warm.n_iter_ == 6
    np.testing.assert_allclose(warm.means_, full.means_, rtol=1e-12)
    np.testing.assert_allclose(warm.covariances_, full.covariances_, rtol=1e-12)


def test_convergence_warning_when_max_iter_is_reached(data):
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        dgmm.GaussianMixture(3, tol=0.0, max_iter=2, random_state=0).fit(data[0])


def test_sample_draws_from_the_model(data):
    X = data[0]
    model = dgmm.GaussianMixture(3, random_state=0).fit(X)
    S, labels = model.sample(30_000)
    assert S.shape == (30_000, 2) and labels.shape == (30_000,)
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / 30_000, model.weights_, atol=0.02)
    for k in range(3):
        np.testing.assert_allclose(S[labels == k].mean(axis=0), model.means_[k], atol=0.1)
    np.testing.assert_array_equal(model.sample(10)[0], model.sample(10)[0])
    with pytest.raises(ParameterError, match="n_samples=0 is invalid"):
        model.sample(0)


def test_bic_and_aic_follow_their_definitions(data):
    X = data[0]
    model = dgmm.GaussianMixture(3, random_state=0).fit(X)
    n_params = 3 * 3 + 3 * 2 + 2  # covariances, means, weights
    log_lik = model.score(X) * len(X)
    assert_close(model.bic(X), -2 * log_lik + n_params * np.log(len(X)), 1e-12)
    assert_close(model.aic(X), -2 * log_lik + 2 * n_params, 1e-12)
    scores = [dgmm.GaussianMixture(k, random_state=0, n_init=2).fit(X).bic(X) for k in (1, 2, 3, 5)]
    assert int(np.argmin(scores)) == 2


def test_dataframes_and_parquet_give_feature_names(data, parquet_dir, cluster_client):
    X = data[0]
    frame = pd.DataFrame(X, columns=["height", "weight"])
    from_pandas = dgmm.GaussianMixture(3, random_state=0, tol=0.0, max_iter=5).fit(frame)
    assert list(from_pandas.feature_names_in_) == ["height", "weight"]
    import dask.dataframe as dd

    from_dask = dgmm.GaussianMixture(3, random_state=0, tol=0.0, max_iter=5).fit(dd.from_pandas(frame, npartitions=3))
    assert list(from_dask.feature_names_in_) == ["height", "weight"]
    assert_close(from_dask.means_, from_pandas.means_, 1e-10)
    wide = np.c_[X, np.arange(len(X))]
    path = parquet_dir(wide, row_group_size=200)
    from_parquet = dgmm.GaussianMixture(3, random_state=0, tol=0.0, max_iter=5, client=cluster_client)
    from_parquet.fit(path, columns=["x0", "x1"])
    assert list(from_parquet.feature_names_in_) == ["x0", "x1"]
    assert_close(from_parquet.means_, from_pandas.means_, 1e-10)
    # scoring a Parquet path reads the columns seen in fit
    np.testing.assert_array_equal(from_parquet.predict(path).compute(), from_parquet.predict(X))


def test_verbose_reports_progress(data, capsys):
    dgmm.GaussianMixture(3, verbose=2, verbose_interval=1, random_state=0).fit(data[0])
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1\t time lapse" in out and "Initialization converged" in out
