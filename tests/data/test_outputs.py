"""predict_to_parquet: streamed, in input order, equal to predict/predict_proba/score_samples, atomic."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dgmm


@pytest.fixture
def fitted(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (700, 2)), rng.normal(5, 1, (500, 2))])[rng.permutation(1200)]
    for i, rows in enumerate(np.array_split(np.arange(1200), 3)):
        pq.write_table(
            pa.table({"id": rows, "a": X[rows, 0], "b": X[rows, 1]}), tmp_path / f"p{i}.parquet", row_group_size=150
        )
    model = dgmm.GaussianMixture(2, random_state=0).fit(X)
    model.feature_names_in_ = np.asarray(["a", "b"], dtype=object)
    return model, X, tmp_path


def test_outputs_equal_the_in_memory_methods(fitted):
    model, X, folder = fitted
    dest = folder / "out" / "scores.parquet"
    dest.parent.mkdir()
    n = dgmm.predict_to_parquet(
        model, str(folder / "p*.parquet"), dest, proba=True, log_likelihood=True, keep_columns=["id"]
    )
    table = pq.read_table(dest)
    assert n == 1200 and table.column_names == ["id", "component", "proba_0", "proba_1", "log_likelihood"]
    np.testing.assert_array_equal(table.column("id").to_numpy(), np.arange(1200))
    np.testing.assert_array_equal(table.column("component").to_numpy(), model.predict(X))
    proba = np.c_[table.column("proba_0").to_numpy(), table.column("proba_1").to_numpy()]
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(table.column("log_likelihood").to_numpy(), model.score_samples(X), rtol=1e-12)
    about = json.loads(table.schema.metadata[b"dgmm"])  # the model that wrote the file
    assert about["n_components"] == 2 and about["feature_names"] == ["a", "b"] and about["dgmm_version"]
    np.testing.assert_array_equal(about["weights"], model.weights_)


def test_failure_leaves_no_output(fitted, monkeypatch):
    model, X, folder = fitted
    dest = folder / "labels.parquet"
    import dgmm.data.outputs

    calls = {"n": 0}
    real = dgmm.data.outputs.read_row_group

    def failing(rg, columns, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk went away")
        return real(rg, columns, **kwargs)

    monkeypatch.setattr(dgmm.data.outputs, "read_row_group", failing)
    with pytest.raises(OSError, match="disk went away"):
        dgmm.predict_to_parquet(model, str(folder / "p*.parquet"), dest)
    assert not dest.exists()
    assert [f for f in os.listdir(folder) if f.startswith(".")] == []


def test_bad_destinations(fitted):
    model, X, folder = fitted
    with pytest.raises(dgmm.DataError, match="output directory does not exist"):
        dgmm.predict_to_parquet(model, str(folder / "p0.parquet"), folder / "missing" / "x.parquet")
    with pytest.raises(dgmm.DataError, match=r"column 'nope' \(from --keep-columns\) not found"):
        dgmm.predict_to_parquet(model, str(folder / "p0.parquet"), folder / "x.parquet", keep_columns=["nope"])


def test_hive_partition_keys_can_be_kept(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    frames = []
    for day in ("mon", "tue"):
        (tmp_path / "data" / f"day={day}").mkdir(parents=True)
        frame = pd.DataFrame({"id": np.arange(300), "a": rng.normal(size=300), "b": rng.normal(size=300)})
        frame.to_parquet(tmp_path / "data" / f"day={day}" / "part.parquet", index=False)
        frames.append(frame)
    model = dgmm.GaussianMixture(2, random_state=0).fit(pd.concat(frames)[["a", "b"]])
    dgmm.predict_to_parquet(model, tmp_path / "data", tmp_path / "out.parquet", keep_columns=["id", "day"])
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["id", "day", "component"] and table.schema.field("day").type == pa.string()
    assert table.column("day").to_pylist() == ["mon"] * 300 + ["tue"] * 300
    with pytest.raises(
        dgmm.DataError, match="column 'month' \\(from --keep-columns\\) not found; columns are id, a, b, day"
    ):
        dgmm.predict_to_parquet(model, tmp_path / "data", tmp_path / "none.parquet", keep_columns=["month"])
