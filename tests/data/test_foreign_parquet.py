"""Parquet written by other tools (pandas, Polars, DuckDB, pyarrow) is read as written or refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dask
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dgmm
from dgmm.data.parquet import ParquetDataset
from dgmm.errors import DataError

DGMM = str(Path(sys.executable).parent / "dgmm")
LIMIT = 2**53


def features(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two well separated blobs in columns a, b, and a unique integer id in no order."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)) + np.repeat([[0.0, 0.0], [6.0, 6.0]], n // 2, axis=0)
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "id": rng.permutation(n) * 7 + 1000})


def computed(array) -> np.ndarray:
    (out,) = dask.compute(array, scheduler="sync")
    return out


def index_columns(path: Path) -> list:
    return json.loads(pq.read_schema(path).metadata[b"pandas"])["index_columns"]


# -- pandas: its index is never a feature unless named ----------------------------------------------------------------


def test_pandas_default_range_index_is_not_stored_and_features_are_read(tmp_path):
    df = features()[["a", "b"]]
    df.to_parquet(tmp_path / "range.parquet")
    assert isinstance(index_columns(tmp_path / "range.parquet")[0], dict)  # a RangeIndex: metadata only
    array = dgmm.read_parquet(tmp_path / "range.parquet")
    assert array.shape == (400, 2)
    np.testing.assert_array_equal(computed(array), df.to_numpy())


def test_pandas_unnamed_index_after_filtering_is_left_out(tmp_path):
    df = features()
    kept = df[(df.a > -1.0) & (df.index % 3 != 1)][["a", "b"]]  # an irregular index, stored as __index_level_0__
    kept.to_parquet(tmp_path / "filtered.parquet")
    assert "__index_level_0__" in pq.read_schema(tmp_path / "filtered.parquet").names
    assert ParquetDataset.open(tmp_path / "filtered.parquet").columns == ("a", "b")
    array = dgmm.read_parquet(tmp_path / "filtered.parquet")
    assert array.shape == (len(kept), 2)
    np.testing.assert_array_equal(computed(array), kept.to_numpy())
    # named explicitly, it is honoured
    both = computed(dgmm.read_parquet(tmp_path / "filtered.parquet", columns=["b", "__index_level_0__"]))
    np.testing.assert_array_equal(both, np.c_[kept.b, kept.index])


def test_pandas_named_indexes_are_left_out_unless_named(tmp_path):
    df = features()
    df.set_index("id").to_parquet(tmp_path / "named.parquet")
    df.set_index(["id", "b"]).to_parquet(tmp_path / "multi.parquet")
    assert index_columns(tmp_path / "named.parquet") == ["id"]
    assert ParquetDataset.open(tmp_path / "named.parquet").columns == ("a", "b")
    np.testing.assert_array_equal(computed(dgmm.read_parquet(tmp_path / "named.parquet")), df[["a", "b"]].to_numpy())
    assert ParquetDataset.open(tmp_path / "multi.parquet").columns == ("a",)
    np.testing.assert_array_equal(
        computed(dgmm.read_parquet(tmp_path / "named.parquet", columns=["id", "a"])),
        df[["id", "a"]].to_numpy(dtype=float),
    )


def test_pandas_partitioned_data_set_uses_neither_index_nor_partition_key_by_default(tmp_path):
    df = features().assign(group=np.repeat([1, 2], 200))
    df.set_index("id").to_parquet(tmp_path / "parts", partition_cols=["group"])
    dataset = ParquetDataset.open(tmp_path / "parts")
    assert dataset.columns == ("a", "b")
    np.testing.assert_array_equal(computed(dataset.to_dask()), df[["a", "b"]].to_numpy())
    keyed = computed(dgmm.read_parquet(tmp_path / "parts", columns=["a", "group", "id"]))
    np.testing.assert_array_equal(keyed, df[["a", "group", "id"]].to_numpy(dtype=float))


def test_a_later_file_whose_index_is_a_default_feature_is_refused(tmp_path):
    df = features()
    (tmp_path / "d").mkdir()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "d" / "0.parquet")
    df.set_index("id").to_parquet(tmp_path / "d" / "1.parquet")
    with pytest.raises(DataError, match=r"1\.parquet: column 'id' is the pandas index in this file") as caught:
        ParquetDataset.open(tmp_path / "d")
    assert "\n" not in str(caught.value) and "columns=[...]" in str(caught.value)
    assert ParquetDataset.open(tmp_path / "d", columns=["a", "id"]).columns == ("a", "id")


def test_fit_on_a_pandas_file_with_an_index_matches_the_fit_on_its_features(tmp_path, cluster_client):
    df = features()
    kept = df[df.index % 5 != 0].set_index("id")
    kept.to_parquet(tmp_path / "named.parquet")
    on_file = dgmm.GaussianMixture(2, max_iter=3, random_state=0, client=cluster_client).fit(tmp_path / "named.parquet")
    in_memory = dgmm.GaussianMixture(2, max_iter=3, random_state=0).fit(kept[["a", "b"]].to_numpy())
    assert on_file.n_features_in_ == 2
    np.testing.assert_allclose(on_file.means_, in_memory.means_, rtol=1e-8, atol=1e-8)


# -- Polars and DuckDB ------------------------------------------------------------------------------------------------


def test_polars_integer_widths_and_uint64_are_read_exactly(tmp_path):
    n = 50
    frame = pl.DataFrame(
        {
            "i8": pl.Series(np.arange(n) - 25, dtype=pl.Int8),
            "i16": pl.Series(np.arange(n) * -300, dtype=pl.Int16),
            "i32": pl.Series(np.arange(n) * 40_000_000, dtype=pl.Int32),
            "i64": pl.Series(-LIMIT + np.arange(n), dtype=pl.Int64),
            "u8": pl.Series(np.arange(n) + 200, dtype=pl.UInt8),
            "u32": pl.Series(np.arange(n) * 80_000_000, dtype=pl.UInt32),
            "u64": pl.Series(np.uint64(LIMIT) - np.arange(n, dtype=np.uint64), dtype=pl.UInt64),
            "f32": pl.Series(np.linspace(-1, 1, n), dtype=pl.Float32),
        }
    )
    frame.write_parquet(tmp_path / "polars.parquet", row_group_size=20)
    assert str(pq.read_schema(tmp_path / "polars.parquet").field("u64").type) == "uint64"
    array = dgmm.read_parquet(tmp_path / "polars.parquet")
    assert array.shape == (n, 8)
    expected = np.column_stack([frame[c].to_numpy().astype(np.float64) for c in frame.columns])
    np.testing.assert_array_equal(computed(array), expected)
    assert computed(array)[0, 6] == float(LIMIT)  # 2**53 itself is exact, so it is accepted


def test_duckdb_file_with_several_row_groups(tmp_path):
    path = (tmp_path / "duck.parquet").as_posix()
    duckdb.sql(
        "COPY (SELECT i::DOUBLE / 7 AS x, (i * 3)::BIGINT - 5000 AS big, i::UBIGINT AS ubig, "
        "(i % 100)::SMALLINT AS small, i::INTEGER AS int, (i / 3)::FLOAT AS f FROM range(5000) t(i)) "
        f"TO '{path}' (FORMAT PARQUET, ROW_GROUP_SIZE 2048)"
    )
    i = np.arange(5000)
    expected = np.column_stack([i / 7, i * 3 - 5000, i, i % 100, i, (i / 3).astype(np.float32)]).astype(np.float64)
    array = dgmm.read_parquet(path)
    assert len(array.chunks[0]) == pq.ParquetFile(path).metadata.num_row_groups > 1
    np.testing.assert_array_equal(computed(array), expected)
    np.testing.assert_array_equal(computed(dgmm.read_parquet(path, columns=["ubig", "x"])), expected[:, [2, 0]])


# -- duplicate column names -------------------------------------------------------------------------------------------


def test_duplicate_column_names_are_refused_when_used(tmp_path):
    table = pa.table([pa.array([1.0, 2.0]), pa.array([3.0, 4.0]), pa.array([5.0, 6.0])], names=["x", "x", "y"])
    pq.write_table(table, tmp_path / "dup.parquet")
    for columns in (None, ["y", "x"]):
        with pytest.raises(DataError) as caught:
            ParquetDataset.open(tmp_path / "dup.parquet", columns)
        message = str(caught.value)
        assert message.startswith(f"{tmp_path / 'dup.parquet'}: column 'x' appears 2 times") and "\n" not in message
        assert "table.rename_columns(" in message
    np.testing.assert_array_equal(computed(dgmm.read_parquet(tmp_path / "dup.parquet", columns=["y"])), [[5.0], [6.0]])


# -- 64-bit integers float64 cannot hold exactly ----------------------------------------------------------------------


def write_wide(path: Path, kind: str, statistics: bool) -> str:
    """Two row groups of 10 rows; row 3 of row group 1 holds 2**53 + 1 (uint64) or -2**53 - 1 (int64)."""
    if kind == "uint64":
        values = np.arange(20, dtype=np.uint64) + np.uint64(LIMIT - 20)
        values[13] = np.uint64(LIMIT + 1)
        values[15] = np.uint64(2**64 - 1)
    else:
        values = -np.arange(20, dtype=np.int64) - (LIMIT - 20)
        values[13] = -LIMIT - 1
    table = pa.table({"x": np.linspace(0, 1, 20), "n": pa.array(values, type=getattr(pa, kind)())})
    pq.write_table(table, path, row_group_size=10, write_statistics=statistics)
    return str(path)


@pytest.mark.parametrize("kind, value", [("uint64", LIMIT + 1), ("int64", -LIMIT - 1)])
def test_inexact_integers_are_refused_at_open_from_statistics(tmp_path, kind, value):
    path = write_wide(tmp_path / f"{kind}.parquet", kind, statistics=True)
    with pytest.raises(DataError) as caught:
        ParquetDataset.open(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: column 'n' ({kind}) has ") and "\n" not in message, message
    assert f"in row group 1 (first: row 3 of the group, value {value})" in message, message
    assert (
        "cast the column to float64 yourself" in message
        and "leave it out of the feature columns (columns=[...], --columns)" in message
    )
    assert ParquetDataset.open(path, columns=["x"]).columns == ("x",)


@pytest.mark.parametrize("kind, value", [("uint64", LIMIT + 1), ("int64", -LIMIT - 1)])
def test_inexact_integers_without_statistics_are_refused_when_read(tmp_path, kind, value):
    path = write_wide(tmp_path / f"{kind}.parquet", kind, statistics=False)
    array = dgmm.read_parquet(path)  # nothing to see in the footer
    with pytest.raises(DataError) as caught:
        computed(array)
    message = str(caught.value)
    assert message.startswith(f"{path}: column 'n' ({kind}) has ") and "\n" not in message, message
    assert f"in row group 1 (first: row 3 of the group, value {value})" in message, message
    np.testing.assert_array_equal(
        computed(array[:10]), np.c_[np.linspace(0, 1, 20)[:10], pq.read_table(path)["n"].to_numpy()[:10]]
    )


def test_inexact_integers_found_in_cluster_tasks_are_a_data_error(tmp_path, cluster_client):
    path = write_wide(tmp_path / "uint64.parquet", "uint64", statistics=False)
    with pytest.raises(DataError, match=r"column 'n' \(uint64\) .* row group 1 \(first: row 3 of the group"):
        cluster_client.compute(dgmm.read_parquet(path)).result()


def test_command_line_refuses_inexact_integers_in_one_line(tmp_path):
    path = write_wide(tmp_path / "uint64.parquet", "uint64", statistics=True)
    proc = subprocess.run(
        [DGMM, "fit", path, "--n-components", "2", "--model", str(tmp_path / "m.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("dgmm fit: error: ") and "column 'n' (uint64)" in lines[0], lines[0]
    assert not (tmp_path / "m.npz").exists()
