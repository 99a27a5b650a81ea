"""dgmm with scikit-learn's GaussianMixture (to_sklearn / from_sklearn) and with Dask DataFrames of any origin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.kernels.gaussian import COVARIANCE_TYPES


@pytest.fixture(scope="module")
def data():
    return sample_mixture(random_mixture(3, 3, seed=2), 1500, seed=2)[0]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_to_sklearn_predicts_as_dgmm_and_from_sklearn_round_trips(data, covariance_type):
    model = dgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(data)
    converted = model.to_sklearn()
    assert type(converted).__module__.startswith("sklearn.mixture")
    np.testing.assert_allclose(converted.score_samples(data), model.score_samples(data), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(converted.predict_proba(data), model.predict_proba(data), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(converted.predict(data), model.predict(data))
    back = dgmm.GaussianMixture.from_sklearn(converted, chunk_rows=100)
    assert back.chunk_rows == 100 and back.n_iter_ == model.n_iter_
    np.testing.assert_array_equal(back.score_samples(data), model.score_samples(data))
    with pytest.raises(dgmm.ParameterError, match="n_components"):
        dgmm.GaussianMixture.from_sklearn(converted, n_components=2)


def test_a_model_fitted_by_scikit_learn_scores_with_dgmm(data):
    from sklearn.mixture import GaussianMixture

    fitted = GaussianMixture(3, random_state=0).fit(data)
    model = dgmm.GaussianMixture.from_sklearn(fitted)
    np.testing.assert_allclose(model.score(data), fitted.score(data), rtol=1e-12)


@pytest.fixture(scope="module")
def wide_parquet(tmp_path_factory):
    """Four files of twelve columns: read_parquet of two columns fuses their partitions."""
    folder = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    for i in range(4):
        frame = pd.DataFrame(rng.normal(size=(2000, 12)), columns=[f"c{j}" for j in range(12)])
        frame["c0"] += 4 * (np.arange(2000) % 2)
        frame.to_parquet(folder / f"part-{i}.parquet")
    return folder


@pytest.mark.parametrize("on_cluster", [False, True], ids=["no client", "client"])
def test_dask_dataframes_of_any_origin(wide_parquet, on_cluster, cluster_client):
    """Every estimator method on Dask DataFrames from read_parquet (whole and column-projected), from_pandas
    and from_map, equal to the NumPy fit's results; with a distributed client current, and without."""
    import contextlib

    import dask.dataframe as dd

    columns = ["c0", "c1"]
    files = sorted(str(p) for p in wide_parquet.glob("*.parquet"))
    frame = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    values = frame[columns].to_numpy()
    expected = dgmm.GaussianMixture(2, random_state=0).fit(values)
    inputs = {
        "read_parquet projected": dd.read_parquet(str(wide_parquet))[columns],
        "read_parquet columns=": dd.read_parquet(str(wide_parquet), columns=columns),
        "from_pandas": dd.from_pandas(frame[columns], npartitions=3),
        "from_map": dd.from_map(pd.read_parquet, files, columns=columns),
        "unknown divisions": dd.from_pandas(frame[columns], npartitions=3).clear_divisions(),
    }
    with cluster_client.as_current() if on_cluster else contextlib.nullcontext():
        for name, X in inputs.items():
            model = dgmm.GaussianMixture(2, random_state=0).fit(X)
            assert list(model.feature_names_in_) == columns, name
            np.testing.assert_allclose(model.means_, expected.means_, rtol=1e-8, err_msg=name)
            np.testing.assert_array_equal(model.predict(X).compute().to_numpy(), expected.predict(values), err_msg=name)
            np.testing.assert_allclose(
                model.predict_proba(X).compute().to_numpy(),
                expected.predict_proba(values),
                rtol=1e-6,
                atol=1e-9,
                err_msg=name,
            )
            np.testing.assert_allclose(
                model.score_samples(X).compute().to_numpy(), expected.score_samples(values), rtol=1e-8, err_msg=name
            )
            for method in ("score", "bic", "aic"):
                np.testing.assert_allclose(
                    getattr(model, method)(X), getattr(expected, method)(values), rtol=1e-8, err_msg=f"{name}: {method}"
                )
            assert model.score_summary(X)["n_samples"] == len(frame), name
            np.testing.assert_array_equal(
                dgmm.GaussianMixture(2, random_state=0).fit_predict(X).compute().to_numpy(),
                model.predict(values),
                err_msg=name,
            )
        weighted = dgmm.GaussianMixture(2, random_state=0).fit(
            inputs["read_parquet projected"], sample_weight=dd.read_parquet(str(wide_parquet))["c5"].abs()
        )
        assert np.isfinite(weighted.lower_bound_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_onnx_export_runs_in_onnxruntime_as_dgmm_predicts(data, covariance_type):
    import onnxruntime

    model = dgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(data)
    graph = model.to_onnx()
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: data}))
    )
    np.testing.assert_array_equal(outputs["label"].ravel(), model.predict(data))
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(data), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outputs["score_samples"].ravel(), model.score_samples(data), rtol=1e-12, atol=1e-12)


def test_predictions_come_back_in_the_input_kind(wide_parquet):
    import dask.array as da
    import dask.dataframe as dd

    columns = ["c0", "c1"]
    frame = pd.concat([pd.read_parquet(p) for p in sorted(wide_parquet.glob("*.parquet"))], ignore_index=True)
    frame.index = frame.index * 7 + 3  # an index that is not 0..n-1 must be kept
    values = frame[columns].to_numpy()
    model = dgmm.GaussianMixture(2, random_state=0).fit(values)
    model.feature_names_in_ = np.asarray(columns, dtype=object)
    X = dd.from_pandas(frame[columns], npartitions=5)
    labels, proba, log_density = model.predict(X), model.predict_proba(X), model.score_samples(X)
    for output in (labels, proba, log_density):  # lazy, on the same partitions, nothing computed yet
        assert isinstance(output, (dd.Series, dd.DataFrame)) and output.npartitions == X.npartitions
    assert labels.name == "component" and log_density.name == "log_likelihood"
    assert list(proba.columns) == ["proba_0", "proba_1"]
    computed = labels.compute()
    pd.testing.assert_index_equal(computed.index, frame.index)
    np.testing.assert_array_equal(computed.to_numpy(), model.predict(values))
    np.testing.assert_allclose(proba.compute().to_numpy(), model.predict_proba(values), rtol=1e-12)
    np.testing.assert_allclose(log_density.compute().to_numpy(), model.score_samples(values), rtol=1e-12)
    np.testing.assert_allclose(model.score(X), model.score(values), rtol=1e-12)
    # a frame from read_parquet: its labels can be joined back to it
    parquet = dd.read_parquet(str(wide_parquet))[columns]
    assert model.predict(parquet).npartitions == parquet.npartitions
    # a Dask array keeps its row chunks
    array = da.from_array(values, chunks=(1500, 2))
    assert model.predict(array).chunks == (array.chunks[0],)
    assert model.predict_proba(array).chunks == (array.chunks[0], (2,))


def test_dask_dataframe_rows_with_nan_are_refused_or_dropped_as_the_model_says(wide_parquet):
    import dask.dataframe as dd

    frame = pd.concat([pd.read_parquet(p) for p in sorted(wide_parquet.glob("*.parquet"))], ignore_index=True)
    frame = frame[["c0", "c1"]]
    frame.iloc[4100, 1] = np.nan
    X = dd.from_pandas(frame, npartitions=4)
    strict = dgmm.GaussianMixture(2, random_state=0).fit(frame.dropna().to_numpy())
    with pytest.raises(dgmm.DataError, match=r"partition 2, input row 100, column 1 is nan"):
        strict.predict(X).compute()
    dropping = dgmm.GaussianMixture(2, random_state=0, nan_policy="drop").fit(X)
    labels = dropping.predict(X).compute()
    assert labels.iloc[4100] == -1 and (labels.drop(index=4100) >= 0).all()
    assert np.isnan(dropping.score_samples(X).compute().iloc[4100])
    np.testing.assert_allclose(dropping.score(X), dropping.score(frame.dropna().to_numpy()), rtol=1e-12)
