"""dgmm with dask-ml: its scaler before dgmm in a Pipeline on Dask arrays, ParallelPostFit, its GridSearchCV."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture

pytest.importorskip("dask_ml")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def blobs():
    X, _ = sample_mixture(random_mixture(3, 2, seed=5), 900, seed=5)
    return X * [1.0, 50.0] + [0.0, 1e3]


def test_dask_ml_scaler_then_dgmm_in_a_pipeline_on_dask_arrays(blobs):
    from dask_ml.preprocessing import StandardScaler
    from sklearn.pipeline import make_pipeline

    X = da.from_array(blobs, chunks=(200, 2))
    pipe = make_pipeline(StandardScaler(), dgmm.GaussianMixture(3, random_state=0)).fit(X)
    labels = pipe.predict(X)
    assert isinstance(labels, da.Array) and labels.chunks == (X.chunks[0],)
    # the same as scaling in memory first: dask-ml's scaler computes what scikit-learn's does
    scaled = (blobs - blobs.mean(axis=0)) / blobs.std(axis=0)
    alone = dgmm.GaussianMixture(3, random_state=0).fit(scaled)
    # the two scalings differ in the last bits, which may order the components otherwise (as a CPU's
    # kernels do): the same mixture, compared component for component in the order of their means
    order, alone_order = np.argsort(pipe[-1].means_[:, 0]), np.argsort(alone.means_[:, 0])
    np.testing.assert_allclose(pipe[-1].means_[order], alone.means_[alone_order], rtol=1e-9, atol=1e-12)
    relabel = np.empty(3, dtype=np.int64)
    relabel[order] = alone_order
    np.testing.assert_array_equal(relabel[labels.compute()], alone.predict(scaled))
    np.testing.assert_allclose(pipe.score(X), alone.score(scaled), rtol=1e-12)


def test_parallel_post_fit_predicts_dask_arrays_block_by_block(blobs):
    from dask_ml.wrappers import ParallelPostFit

    # (its predict_proba is for classifiers: it reads ``classes_``, which no mixture has, scikit-learn's neither)
    model = ParallelPostFit(dgmm.GaussianMixture(3, random_state=0)).fit(blobs)
    X = da.from_array(blobs, chunks=(300, 2))
    labels = model.predict(X)
    assert isinstance(labels, da.Array) and labels.chunks == (X.chunks[0],)
    np.testing.assert_array_equal(labels.compute(), model.estimator.predict(blobs))


def test_dask_ml_grid_search_on_a_dask_array_finds_the_generating_k(blobs):
    from dask_ml.model_selection import GridSearchCV

    scaled = (blobs - blobs.mean(axis=0)) / blobs.std(axis=0)
    search = GridSearchCV(dgmm.GaussianMixture(random_state=0), {"n_components": [1, 2, 3, 4]}, cv=3)
    search.fit(da.from_array(scaled, chunks=(150, 2)))
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and search.best_params_["n_components"] in (3, 4)
    assert scores[2] > scores[1] > scores[0]
