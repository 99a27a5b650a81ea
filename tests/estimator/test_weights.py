"""Sample weights and nan_policy="drop": weighted EM equals EM on repeated rows; dropped rows vanish."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.errors import DataError
from dgmm.testing import COVARIANCE_TYPES, initial_params

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


@pytest.fixture(scope="module")
def X():
    return sample_mixture(random_mixture(3, 2, seed=8, separation=2.5), 400, seed=8)[0]


@pytest.fixture(scope="module")
def counts():
    return np.random.default_rng(3).integers(0, 4, 400)


def fit(data, covariance_type="full", start=None, **kwargs):
    start = start if start is not None else data
    params = initial_params(np.asarray(start), 3, covariance_type)
    return dgmm.GaussianMixture(3, covariance_type=covariance_type, tol=0.0, max_iter=15, **params, **kwargs)


def assert_same(a, b, rtol=1e-9):
    for name in FITTED:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-12, err_msg=name)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-10)


def write(path, columns, row_group_size=61):
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(X, counts, covariance_type):
    repeated = np.repeat(X, counts, axis=0)
    reference = fit(repeated, covariance_type, start=X).fit(repeated)
    weighted = fit(X, covariance_type).fit(X, sample_weight=counts)
    assert_same(weighted, reference)


def test_weights_from_parquet_column_dask_and_dataframe_agree(X, counts, tmp_path, cluster_client):
    repeated = np.repeat(X, counts, axis=0)
    reference = fit(repeated, start=X).fit(repeated)
    path = write(tmp_path / "w.parquet", {"a": X[:, 0], "b": X[:, 1], "w": counts.astype(np.int32)})
    from_parquet = fit(X, client=cluster_client).fit(path, sample_weight="w")
    assert list(from_parquet.feature_names_in_) == ["a", "b"]
    assert_same(from_parquet, reference)
    frame = pd.DataFrame({"a": X[:, 0], "w": counts, "b": X[:, 1]})
    assert_same(fit(X).fit(frame, sample_weight="w"), reference)
    dask_weights = fit(X).fit(da.from_array(X, chunks=(57, 2)), sample_weight=da.from_array(counts, chunks=91))
    assert_same(dask_weights, reference)


def test_fractional_weights_scale_free(X):
    """Multiplying every weight by a constant changes nothing; fractional weights are allowed."""
    w = np.random.default_rng(1).uniform(0.1, 2.0, len(X))
    assert_same(fit(X).fit(X, sample_weight=w), fit(X).fit(X, sample_weight=7.5 * w))


@pytest.mark.parametrize(
    "weights, message",
    [
        (-1.0, r"sample_weight\[17\] is -1.0; weights must be finite and >= 0"),
        (np.nan, r"sample_weight\[17\] is nan; weights must be finite and >= 0"),
        (np.inf, r"sample_weight\[17\] is inf; weights must be finite and >= 0"),
    ],
)
def test_bad_weights_are_refused(X, weights, message):
    w = np.ones(len(X))
    w[17] = weights
    with pytest.raises(DataError, match=message):
        dgmm.GaussianMixture(2).fit(X, sample_weight=w)
    with pytest.raises(DataError, match=message):
        dgmm.GaussianMixture(2).fit(da.from_array(X, chunks=50), sample_weight=w)


def test_bad_weight_shape_and_column(X, tmp_path):
    with pytest.raises(DataError, match=r"sample_weight has shape \(3,\); expected \(400,\), one weight per row"):
        dgmm.GaussianMixture(2).fit(X, sample_weight=[1.0, 2.0, 3.0])
    path = write(tmp_path / "w.parquet", {"a": X[:, 0], "w": np.r_[np.ones(399), -2.0]})
    with pytest.raises(DataError, match=r"weight column 'w' has 1 negative, NaN or infinite weights in row group 6"):
        dgmm.GaussianMixture(2).fit(path, sample_weight="w")
    with pytest.raises(DataError, match=r"weight column 'w' is also a feature column"):
        dgmm.GaussianMixture(2).fit(path, columns=["a", "w"], sample_weight="w")
    with pytest.raises(DataError, match=r"column 'zz' not found"):
        dgmm.GaussianMixture(2).fit(path, sample_weight="zz")


def with_missing(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X with NaN in some rows, and the mask of the rows left intact."""
    dirty = X.copy()
    rows = np.random.default_rng(5).choice(len(X), 40, replace=False)
    dirty[rows[:20], 0] = np.nan
    dirty[rows[20:], 1] = np.nan
    kept = np.ones(len(X), dtype=bool)
    kept[rows] = False
    return dirty, kept


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_nan_policy_drop_equals_fitting_the_clean_rows(X, covariance_type):
    dirty, kept = with_missing(X)
    reference = fit(X[kept], covariance_type).fit(X[kept])
    dropped = fit(X[kept], covariance_type, nan_policy="drop").fit(dirty)
    assert_same(dropped, reference)
    assert dropped.n_rows_dropped_ == 40 and reference.n_rows_dropped_ == 0
    labels = dropped.predict(dirty)
    assert np.all(labels[~kept] == -1) and np.array_equal(labels[kept], reference.predict(X[kept]))
    proba = dropped.predict_proba(dirty)
    assert np.isnan(proba[~kept]).all() and np.allclose(proba[kept], reference.predict_proba(X[kept]))
    assert dropped.score(dirty) == pytest.approx(reference.score(X[kept]), rel=1e-12)
    assert dropped.bic(dirty) == pytest.approx(reference.bic(X[kept]), rel=1e-12)
    with pytest.raises(DataError, match=r"input row \d+, column \d is nan; .* or pass nan_policy='drop'"):
        fit(X[kept], covariance_type).fit(dirty)


def test_nan_policy_drop_on_parquet_nulls_and_nan(X, counts, tmp_path, cluster_client):
    dirty, kept = with_missing(X)
    a = pa.array(dirty[:, 0], mask=np.isnan(dirty[:, 0]))  # nulls
    path = write(tmp_path / "d.parquet", {"a": a, "b": dirty[:, 1], "w": counts})  # and NaN
    reference = fit(X[kept]).fit(X[kept])
    model = fit(X[kept], client=cluster_client, nan_policy="drop").fit(path, columns=["a", "b"])
    assert_same(model, reference)
    assert model.n_rows_dropped_ == 40  # counted in the passes: the nulls and the NaN rows
    model.save(tmp_path / "m.npz")
    assert dgmm.load_model(tmp_path / "m.npz").n_rows_dropped_ == 40
    repeated = np.repeat(X[kept], counts[kept], axis=0)
    weighted = fit(X[kept], client=cluster_client, nan_policy="drop").fit(path, columns=["a", "b"], sample_weight="w")
    assert_same(weighted, fit(repeated, start=X[kept]).fit(repeated))

    out = tmp_path / "labels.parquet"
    dgmm.predict_to_parquet(model, path, out, proba=True, log_likelihood=True)
    table = pq.read_table(out)
    component = table.column("component").to_numpy(zero_copy_only=False)
    assert table.column("component").null_count == 40 and np.isnan(component[~kept]).all()
    np.testing.assert_array_equal(component[kept], reference.predict(X[kept]))
    assert table.column("log_likelihood").null_count == 40

    with pytest.raises(DataError, match=r"column 'a' has \d+ null values in row group \d+; .*nan_policy='drop'"):
        fit(X[kept]).fit(path, columns=["a", "b"])
    infinite = write(tmp_path / "inf.parquet", {"a": np.r_[X[:-1, 0], np.inf], "b": X[:, 1]})
    with pytest.raises(DataError, match=r"infinite values .*nan_policy='drop' skips only nulls and NaN"):
        dgmm.GaussianMixture(2, nan_policy="drop").fit(infinite)


def test_every_row_dropped_is_a_clear_error(tmp_path):
    path = write(tmp_path / "nan.parquet", {"a": np.full(10, np.nan)})
    with pytest.raises(DataError, match="no rows left"):
        dgmm.GaussianMixture(1, nan_policy="drop").fit(path)
