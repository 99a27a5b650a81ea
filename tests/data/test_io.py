"""dgmm.read_parquet: chunks from row-group metadata, and clear errors naming file and column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dgmm
from dgmm.errors import DataError


def write(path, columns: dict, row_group_size: int = 10) -> str:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


def test_file_chunks_follow_row_groups_and_values_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(35, 3))
    path = write(tmp_path / "a.parquet", {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}, row_group_size=10)
    array = dgmm.read_parquet(path)
    assert array.chunks == ((10, 10, 10, 5), (3,))
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array.compute(), X)
    np.testing.assert_array_equal(dgmm.read_parquet(path, columns=["c", "a"]).compute(), X[:, [2, 0]])
    # rows are copied in blocks of 4,096: a row group spanning several blocks, and a weight column
    Y = rng.normal(size=(9_000, 2))
    path = write(tmp_path / "big.parquet", {"a": Y[:, 0], "b": Y[:, 1], "w": np.abs(Y[:, 0])}, row_group_size=9_000)
    (group,) = dgmm.data.parquet.ParquetDataset.open(path, None, None).row_groups
    got = dgmm.data.parquet.read_row_group(group, ["b", "a"], "w")
    np.testing.assert_array_equal(got, np.column_stack([Y[:, 1], Y[:, 0], np.abs(Y[:, 0])]))


def test_directory_and_list_in_sorted_order_with_integer_columns(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "part-1.parquet", {"x": np.arange(5, 10, dtype=np.int32), "y": np.ones(5, np.float32)})
    write(tmp_path / "d" / "part-0.parquet", {"x": np.arange(5, dtype=np.int64), "y": np.zeros(5, np.float32)})
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "d" / ".part-0.parquet.crc").write_text("x")
    expected = np.c_[np.arange(10.0), np.r_[np.zeros(5), np.ones(5)]]
    np.testing.assert_array_equal(dgmm.read_parquet(tmp_path / "d").compute(), expected)
    files = [tmp_path / "d" / "part-1.parquet", tmp_path / "d" / "part-0.parquet"]
    np.testing.assert_array_equal(dgmm.read_parquet(files).compute(), expected[[5, 6, 7, 8, 9, 0, 1, 2, 3, 4]])


def test_chunk_sizes_come_from_metadata_without_reading_data(tmp_path, monkeypatch):
    path = write(tmp_path / "a.parquet", {"a": np.arange(25.0)}, row_group_size=10)
    import dgmm.data.parquet

    def forbidden(*args, **kwargs):
        raise AssertionError("data was read while building the array")

    monkeypatch.setattr(dgmm.data.parquet, "read_row_group", forbidden)
    array = dgmm.read_parquet(path)
    assert array.shape == (25, 1) and array.chunks[0] == (10, 10, 5)


def test_non_numeric_column_names_file_and_column(tmp_path):
    path = write(tmp_path / "a.parquet", {"a": np.arange(3.0), "name": ["x", "y", "z"]})
    with pytest.raises(DataError, match=r"a\.parquet: column 'name' has type string, not a number"):
        dgmm.read_parquet(path)
    assert dgmm.read_parquet(path, columns=["a"]).shape == (3, 1)


def test_missing_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "a.parquet", {"a": np.arange(3.0)})
    with pytest.raises(DataError, match=r"column 'b' not found; columns are a"):
        dgmm.read_parquet(path, columns=["b"])


def test_nulls_are_found_in_metadata(tmp_path):
    path = write(tmp_path / "a.parquet", {"a": pa.array([1.0, None, 3.0]), "b": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match=r"a\.parquet: column 'a' has 1 null values in row group 0"):
        dgmm.read_parquet(path)


def test_nulls_without_statistics_are_found_when_read(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"a": pa.array([1.0, None, 3.0])}), path, write_statistics=False)
    array = dgmm.read_parquet(path)
    with pytest.raises(DataError, match=r"column 'a' has 1 null values"):
        array.compute()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_name_file_column_and_row(tmp_path, bad):
    values = np.arange(30.0)
    values[17] = bad
    path = write(tmp_path / "a.parquet", {"ok": np.arange(30.0), "v": values}, row_group_size=10)
    array = dgmm.read_parquet(path)
    with pytest.raises(
        DataError, match=r"a\.parquet: column 'v' has 1 NaN or infinite values in row group 1 \(first: row 7"
    ):
        array.compute()


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(DataError, match=r"nope\.parquet: no such file or directory"):
        dgmm.read_parquet(tmp_path / "nope.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="directory holds no Parquet files"):
        dgmm.read_parquet(tmp_path / "empty")


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"x\.parquet: not a readable Parquet file"):
        dgmm.read_parquet(path)


def test_empty_row_groups_are_skipped(tmp_path):
    write(tmp_path / "a.parquet", {"a": np.zeros(0)})
    write(tmp_path / "b.parquet", {"a": np.arange(4.0)})
    array = dgmm.read_parquet([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert array.chunks[0] == (4,)


def test_hive_partitions_are_not_features_unless_selected(tmp_path):
    for region, day, values in ((1, "a", np.arange(3.0)), (2, "b", np.arange(3.0, 7.0))):
        folder = tmp_path / f"region={region}" / f"day={day}"
        folder.mkdir(parents=True)
        write(folder / "part-0.parquet", {"v": values})
    np.testing.assert_array_equal(dgmm.read_parquet(tmp_path).compute()[:, 0], np.arange(7.0))
    with_key = dgmm.read_parquet(tmp_path, columns=["v", "region"]).compute()
    np.testing.assert_array_equal(with_key[:, 1], [1, 1, 1, 2, 2, 2, 2])
    with pytest.raises(DataError, match=r"partition key 'day' has value 'a', not a number"):
        dgmm.read_parquet(tmp_path, columns=["v", "day"])


def test_spark_output_directory(tmp_path):
    out = tmp_path / "spark-out"
    out.mkdir()
    for i in range(2):
        write(out / f"part-0000{i}-1f2e-c000.snappy.parquet", {"a": np.full(4, float(i))})
        (out / f".part-0000{i}-1f2e-c000.snappy.parquet.crc").write_bytes(b"\x00crc")
    (out / "_SUCCESS").write_text("")
    (out / "_temporary").mkdir()
    (out / "_temporary" / "part-9.parquet").write_text("half written")
    np.testing.assert_array_equal(dgmm.read_parquet(out).compute()[:, 0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_globs_and_file_urls(tmp_path):
    for i in range(3):
        write(tmp_path / f"day-{i}.parquet", {"a": np.full(2, float(i))})
    write(tmp_path / "other.parquet", {"a": np.full(2, 9.0)})
    np.testing.assert_array_equal(
        dgmm.read_parquet(str(tmp_path / "day-*.parquet")).compute()[:, 0], [0, 0, 1, 1, 2, 2]
    )
    np.testing.assert_array_equal(dgmm.read_parquet(f"file://{tmp_path}/other.parquet").compute()[:, 0], [9, 9])
    with pytest.raises(DataError, match="the pattern matches no files"):
        dgmm.read_parquet(str(tmp_path / "nothing-*.parquet"))


def test_fsspec_memory_filesystem():
    import fsspec

    fs = fsspec.filesystem("memory")
    for i in range(2):
        with fs.open(f"/dgmm-test/part-{i}.parquet", "wb") as f:
            pq.write_table(pa.table({"a": np.arange(3.0) + 10 * i}), f, row_group_size=2)
    array = dgmm.read_parquet("memory://dgmm-test")
    assert array.chunks[0] == (2, 1, 2, 1)
    np.testing.assert_array_equal(array.compute()[:, 0], [0, 1, 2, 10, 11, 12])
    fs.rm("/dgmm-test", recursive=True)


def test_any_numeric_width_is_cast_to_float64(tmp_path):
    cols = {
        t: pa.array([1, 2, 3], type=getattr(pa, t)())
        for t in ("int8", "uint16", "int32", "int64", "float16", "float32")
    }
    array = dgmm.read_parquet(write(tmp_path / "a.parquet", cols))
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array.compute(), np.tile([[1.0], [2.0], [3.0]], (1, 6)))


def test_schema_disagreement_names_both_files(tmp_path):
    first = write(tmp_path / "a.parquet", {"x": [1.0], "y": [2.0]})
    second = write(tmp_path / "b.parquet", {"x": [1.0], "z": [2.0]})
    with pytest.raises(DataError, match=r"schemas disagree: column 'y' is in .*a\.parquet but not in .*b\.parquet"):
        dgmm.read_parquet([first, second])
    third = write(tmp_path / "c.parquet", {"x": ["s"], "y": [2.0]})
    with pytest.raises(
        DataError, match=r"c\.parquet: column 'x' has type string, not a number \(it is double in .*a\.parquet\)"
    ):
        dgmm.read_parquet([first, third])
    np.testing.assert_array_equal(dgmm.read_parquet([first, second], columns=["x"]).compute(), [[1.0], [1.0]])


def test_large_row_groups_split_at_chunk_rows(tmp_path):
    path = write(tmp_path / "a.parquet", {"a": np.arange(25.0)}, row_group_size=10)
    array = dgmm.read_parquet(path, chunk_rows=4)
    assert array.chunks[0] == (4, 4, 2, 4, 4, 2, 4, 1)
    np.testing.assert_array_equal(array.compute()[:, 0], np.arange(25.0))


def test_exclude_columns_leaves_ids_and_labels_out(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"id": np.arange(500), "a": rng.normal(size=500), "label": rng.integers(0, 3, 500), "b": rng.normal(size=500)}
    )
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    dataset = dgmm.ParquetDataset.open(tmp_path / "d.parquet", exclude_columns=["id", "label"])
    assert dataset.columns == ("a", "b")
    np.testing.assert_array_equal(
        dgmm.read_parquet(tmp_path / "d.parquet", exclude_columns="id").compute(),
        frame[["a", "label", "b"]].to_numpy(dtype=float),
    )
    with pytest.raises(dgmm.DataError, match="column 'nope' \\(from exclude_columns\\) not found; columns are id, a"):
        dgmm.ParquetDataset.open(tmp_path / "d.parquet", exclude_columns=["nope"])
    with pytest.raises(dgmm.DataError, match="give columns or exclude_columns, not both"):
        dgmm.ParquetDataset.open(tmp_path / "d.parquet", ["a"], exclude_columns=["id"])
    # the id left in: the fit goes on, with one warning line naming it and the option that leaves it out
    proc = subprocess.run(
        [
            Path(sys.executable).parent / "dgmm",
            "fit",
            tmp_path / "d.parquet",
            "--exclude-columns",
            "label",
            "--model",
            tmp_path / "m.npz",
            "--n-components",
            "2",
            "--n-workers",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(dgmm.load_model(tmp_path / "m.npz").feature_names_in_) == ["id", "a", "b"]
    warned = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warned == [
        "dgmm fit: warning: column 'id' looks like a row id (distinct consecutive integers, one per "
        "row) but is fitted as a feature; leave it out with exclude_columns=['id'] (--exclude-columns "
        "id), or name the features with columns=[...] (--columns)"
    ], proc.stderr


def test_columns_that_look_like_row_ids_are_found_from_footers_and_frames(tmp_path):
    import warnings

    import pandas as pd

    rng = np.random.default_rng(1)
    n = 600
    frame = pd.DataFrame(
        {
            "rownames": np.arange(1, n + 1),
            "a": rng.normal(size=n),
            "count": rng.integers(0, 50, n),
            "b": rng.normal(size=n),
        }
    )
    frame["shuffled"] = rng.permutation(n) + 1000  # unique, consecutive, in any order
    frame["gappy"] = np.arange(n) * 2  # unique but not consecutive: a measurement as likely as an id
    for i, part in enumerate(np.array_split(np.arange(n), 3)):  # three files of several row groups
        pq.write_table(
            pa.Table.from_pandas(frame.iloc[part], preserve_index=False), tmp_path / f"p{i}.parquet", row_group_size=70
        )
    assert dgmm.ParquetDataset.open(tmp_path).id_like_columns == ("rownames",)  # shuffled across files: not seen
    one = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), one, row_group_size=n)
    assert dgmm.ParquetDataset.open(one).id_like_columns == ("rownames", "shuffled")
    assert dgmm.ParquetDataset.open(one, ["a", "b"]).id_like_columns == ()
    with pytest.warns(dgmm.errors.IdColumnWarning, match=r"columns 'rownames', 'shuffled' look like row ids") as caught:
        dgmm.GaussianMixture(2, max_iter=5, random_state=0).fit(frame)
    assert caught[0].filename == __file__  # attributed to the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", dgmm.errors.IdColumnWarning)
        dgmm.GaussianMixture(2, max_iter=5, random_state=0).fit(frame[["a", "count", "b", "gappy"]])
        dgmm.GaussianMixture(2, max_iter=5, random_state=0).fit(frame.iloc[:9])  # too few rows to tell
