"""dgmm.GaussianMixture as a scikit-learn estimator: scikit-learn's own estimator checks, Pipeline,
grid search, cross-validation, clone and pickling; scikit-learn's exceptions and warnings; and
scikit-learn kept off the Dask workers."""

from __future__ import annotations

import pickle
import sys
import warnings

import joblib
import numpy as np
import pytest
import sklearn.exceptions
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture

# Every check scikit-learn runs on these settings passes but the ones listed here, each with its reason.
EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "the initialisation draws rows by a hash of their global index (k-means||, kmeans, random) or "
        "samples rows (k-means++, random_from_data), so a repeated row is drawn differently from a "
        "weighted one; with means_init given, weighted and repeated fits agree to 1e-15 "
        "(test_weights_act_as_repetitions_when_means_are_given)"
    ),
}
SETTINGS = [
    dgmm.GaussianMixture(),
    dgmm.GaussianMixture(2, covariance_type="diag", random_state=0),
    dgmm.GaussianMixture(2, covariance_type="spherical", init_params="random", random_state=1),
    dgmm.GaussianMixture(3, covariance_type="tied", init_params="k-means++", random_state=2, chunk_rows=7),
]


def expected_failures(estimator) -> dict[str, str]:
    """The default setting fits one component, where weighting cannot change the start."""
    return {} if estimator.n_components == 1 else EXPECTED_FAILURES


@parametrize_with_checks(SETTINGS, expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def blobs():
    X, y = sample_mixture(random_mixture(3, 2, seed=5), 900, seed=5)
    return X * [1.0, 50.0] + [0.0, 1e3], y  # scales differ: the scaler in the pipeline matters


def test_pipeline_fits_predicts_and_scores(blobs):
    X, _ = blobs
    pipe = make_pipeline(StandardScaler(), dgmm.GaussianMixture(3, random_state=0)).fit(X)
    labels = pipe.predict(X)
    assert labels.shape == (900,) and set(labels) == {0, 1, 2}
    assert np.isfinite(pipe.score(X)) and pipe.predict_proba(X).shape == (900, 3)


def bic_scorer(estimator, X, y=None) -> float:
    """Minus the BIC of the mixture at the end of a pipeline (higher is better, as scorers are)."""
    if hasattr(estimator, "steps"):
        X, estimator = estimator[:-1].transform(X), estimator[-1]
    return -estimator.bic(X)


@pytest.mark.parametrize("scoring", [None, bic_scorer], ids=["score", "bic"])
def test_grid_search_over_a_pipeline_finds_the_generating_k(blobs, scoring):
    X, _ = blobs
    pipe = make_pipeline(StandardScaler(), dgmm.GaussianMixture(random_state=0))
    search = GridSearchCV(
        pipe,
        {"gaussianmixture__n_components": [1, 2, 3], "gaussianmixture__covariance_type": ["full", "diag"]},
        scoring=scoring,
        cv=KFold(3, shuffle=True, random_state=0),
    )
    search.fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and len(set(np.round(scores, 9))) > 1
    assert search.best_params_["gaussianmixture__n_components"] == 3


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_cross_val_score(blobs, n_jobs):
    X, _ = blobs
    scores = cross_val_score(dgmm.GaussianMixture(3, random_state=0), X, cv=3, n_jobs=n_jobs)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_clone_pickle_and_joblib_of_fitted_and_unfitted_models(blobs, tmp_path):
    X, _ = blobs
    unfitted = dgmm.GaussianMixture(3, covariance_type="diag", random_state=0)
    assert clone(unfitted).get_params() == unfitted.get_params()
    fitted = clone(unfitted).fit(X)
    for model in (unfitted, fitted):
        again = pickle.loads(pickle.dumps(model))
        joblib.dump(model, tmp_path / "model.joblib")
        loaded = joblib.load(tmp_path / "model.joblib")
        assert again.get_params() == loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), fitted.score_samples(X))
    with pytest.raises(sklearn.exceptions.NotFittedError):
        pickle.loads(pickle.dumps(unfitted)).predict(X)


def test_scikit_learn_exceptions_and_warnings_catch_dgmm_ones(blobs):
    X, _ = blobs
    model = dgmm.GaussianMixture(3)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(model)
    try:
        model.predict(X)
    except sklearn.exceptions.NotFittedError as exc:
        assert isinstance(exc, dgmm.NotFittedError) and isinstance(exc, dgmm.DgmmError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        dgmm.GaussianMixture(3, max_iter=1, random_state=0).fit(X)  # did not converge: silenced
    assert issubclass(dgmm.ConvergenceWarning, sklearn.exceptions.ConvergenceWarning)
    check_is_fitted(dgmm.GaussianMixture(3, random_state=0).fit(X))
    assert issubclass(dgmm.FitError, ValueError)


def test_bad_inputs_are_refused_as_scikit_learn_refuses_them(blobs):
    from scipy import sparse

    X, _ = blobs
    with pytest.raises(ValueError, match="Complex data not supported"):
        dgmm.GaussianMixture(2).fit(X + 1j)
    with pytest.raises(TypeError, match="sparse"):
        dgmm.GaussianMixture(2).fit(sparse.csr_matrix(X))
    with pytest.raises(
        dgmm.ParameterError, match="precisions_init: precision matrix 1 is not symmetric positive definite"
    ):
        dgmm.GaussianMixture(2, precisions_init=np.stack([np.eye(2), np.ones((2, 2))])).fit(X)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means||", "k-means++", "random_from_data", "random"])
@pytest.mark.parametrize("given", ["means", "means+weights", "all"])
def test_weights_act_as_repetitions_when_means_are_given(blobs, init_params, given):
    """With means_init given, a row of weight w counts exactly as w repeated rows, whatever the method."""
    X, _ = blobs
    w = np.random.default_rng(1).integers(0, 4, len(X))
    inits = {"means_init": X[[0, 300, 600]]}
    if given != "means":
        inits["weights_init"] = [0.2, 0.3, 0.5]
    if given == "all":
        inits["precisions_init"] = np.stack([np.linalg.inv(np.cov(X.T))] * 3)
    kw = dict(init_params=init_params, random_state=0, max_iter=20, tol=0, **inits)
    weighted = dgmm.GaussianMixture(3, **kw).fit(X, sample_weight=w.astype(float))
    repeated = dgmm.GaussianMixture(3, **kw).fit(np.repeat(X, w, axis=0))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-9, atol=1e-9)


def test_workers_never_import_scikit_learn(cluster_client, tmp_path):
    X, _ = sample_mixture(random_mixture(2, 3, seed=1), 4000, seed=1)
    from dgmm.data.synthetic import write_parquet

    write_parquet(X, tmp_path / "data", row_group_size=1000)
    model = dgmm.GaussianMixture(2, random_state=0, client=cluster_client).fit(str(tmp_path / "data"))
    model.predict(str(tmp_path / "data")).compute()
    # the classifier's passes, MAP adaptation, predictions and grouped scores too
    y, groups = (X[:, 0] > np.median(X[:, 0])).astype(int), np.arange(len(X)) // 100
    classifier = dgmm.GaussianMixtureClassifier(2, ubm="fit", random_state=0, client=cluster_client)
    classifier.fit(str(tmp_path / "data"), y)
    classifier.predict_proba(str(tmp_path / "data")).compute()
    classifier.predict_groups(str(tmp_path / "data"), groups)
    classifier.score_summary(str(tmp_path / "data"), y)
    # the held-out split of model selection (its kernel travels as a ByBackend pair of kernels)
    dgmm.select(str(tmp_path / "data"), n_components=[2], criterion="heldout", random_state=0, client=cluster_client)
    assert not any(cluster_client.run(lambda: "sklearn" in sys.modules).values())
