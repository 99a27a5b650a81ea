"""Delta Lake and Iceberg tables read as tables: exactly the rows their own readers return, at the current and at
pinned versions, after overwrites, appends and deletes; never the loose files of the directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import dgmm
from dgmm.errors import CheckpointError, DataError

deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

DGMM = str(Path(sys.executable).parent / "dgmm")
FEATURES = ["a", "b", "c"]


def batch(rng, n: int, shift: float) -> pa.Table:
    values = rng.normal(size=(n, 3)) + shift
    return pa.table({**{name: values[:, j] for j, name in enumerate(FEATURES)},
                     "part": np.where(np.arange(n) % 3 == 0, "north", "south")})  # fmt: skip


def rows_of(table: pa.Table) -> np.ndarray:
    """The feature rows of an Arrow table, sorted (tables promise no order)."""
    X = np.column_stack([table.column(name).to_numpy() for name in FEATURES])
    return X[np.lexsort(X.T[::-1])]


def rows_read(dataset: dgmm.ParquetDataset) -> np.ndarray:
    X = dataset.to_dask().compute()
    return X[np.lexsort(X.T[::-1])]


@pytest.fixture(scope="module")
def delta_table(tmp_path_factory):
    """Version 0: 30,000 rows; 1: overwritten by 50,000; 2: 10,000 appended; 3: the rows with a > 4 deleted."""
    from deltalake import DeltaTable, write_deltalake

    rng = np.random.default_rng(60)
    path = str(tmp_path_factory.mktemp("delta") / "table")
    write_deltalake(path, batch(rng, 30_000, 0.0), partition_by=["part"])
    write_deltalake(path, batch(rng, 50_000, 3.0), mode="overwrite", partition_by=["part"])
    write_deltalake(path, batch(rng, 10_000, -3.0), mode="append", partition_by=["part"])
    DeltaTable(path).delete("a > 4")
    return path


@pytest.fixture(scope="module")
def iceberg_table(tmp_path_factory):
    """An Iceberg table of a SQLite catalog: appended twice, overwritten, rows deleted; its snapshot ids."""
    from pyiceberg.catalog.sql import SqlCatalog

    rng = np.random.default_rng(61)
    warehouse = tmp_path_factory.mktemp("iceberg")
    catalog = SqlCatalog("local", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
    catalog.create_namespace("speech")
    first = batch(rng, 20_000, 0.0)
    table = catalog.create_table("speech.frames", schema=first.schema)
    table.append(first)
    table.append(batch(rng, 20_000, 2.0))
    table.overwrite(batch(rng, 30_000, -2.0))
    table.delete("a > 0")
    table = catalog.load_table("speech.frames")
    location = table.metadata_location.removeprefix("file://").rsplit("/metadata/", 1)[0]
    return location, table


@pytest.mark.parametrize("version", [None, 0, 1, 2, 3])
def test_a_delta_table_gives_the_rows_deltalake_returns_at_each_version(delta_table, version):
    from deltalake import DeltaTable

    dataset = dgmm.ParquetDataset.open(delta_table, FEATURES, version=version)
    want = DeltaTable(delta_table, version=version).to_pyarrow_table()
    assert dataset.n_rows == want.num_rows and dataset.table == {
        "format": "delta",
        "version": 3 if version is None else version,
    }
    np.testing.assert_array_equal(rows_read(dataset), rows_of(want))
    assert {dict(rg.partitions)["part"] for rg in dataset.row_groups} == {"north", "south"}  # its partition values


def test_a_delta_table_fits_its_rows_never_the_removed_files(delta_table):
    from deltalake import DeltaTable

    loose = dgmm.ParquetDataset.open([str(p) for p in Path(delta_table).rglob("*.parquet")], FEATURES)
    assert loose.n_rows > DeltaTable(delta_table).to_pyarrow_table().num_rows  # what reading the directory gave
    rows = DeltaTable(delta_table, version=1).to_pyarrow_table()
    start = dict(means_init=np.zeros((2, 3)) + [[2.0], [4.0]], weights_init=[0.5, 0.5], random_state=0, tol=0.0)
    model = dgmm.GaussianMixture(2, max_iter=10, **start).fit(
        dgmm.ParquetDataset.open(delta_table, FEATURES, as_of=_time_of(delta_table, 1))
    )
    reference = dgmm.GaussianMixture(2, max_iter=10, **start).fit(rows_of(rows))
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-9)
    np.testing.assert_allclose(model.covariances_, reference.covariances_, rtol=1e-9)


def _time_of(path: str, version: int):
    """A time within ``version`` of the table: midway between its commit and the next (delta-rs dates a version
    by its log file, written a little after the commit's own timestamp)."""
    import datetime as dt

    from deltalake import DeltaTable

    stamps = {entry["version"]: entry["timestamp"] for entry in DeltaTable(path).history()}
    return dt.datetime.fromtimestamp((stamps[version] + stamps[version + 1]) / 2000, tz=dt.timezone.utc)


@pytest.mark.parametrize("pinned", [False, True])
def test_an_iceberg_table_gives_the_rows_pyiceberg_returns(iceberg_table, pinned):
    location, table = iceberg_table
    snapshots = [s.snapshot_id for s in table.snapshots()]
    snapshot = snapshots[1] if pinned else snapshots[-1]
    dataset = dgmm.ParquetDataset.open(location, FEATURES, version=snapshot if pinned else None)
    want = table.scan(snapshot_id=snapshot).to_arrow()
    assert dataset.table == {"format": "iceberg", "snapshot_id": snapshot}
    assert dataset.n_rows == want.num_rows > 0
    np.testing.assert_array_equal(rows_read(dataset), rows_of(want))


def test_tables_without_their_library_are_refused_never_read_as_files(delta_table, iceberg_table, monkeypatch):
    monkeypatch.setitem(sys.modules, "deltalake", None)
    monkeypatch.setitem(sys.modules, "pyiceberg.table", None)
    with pytest.raises(
        DataError, match=r"a Delta Lake table; reading it needs deltalake \(pip install 'dgmm\[delta\]'"
    ):
        dgmm.ParquetDataset.open(delta_table)
    with pytest.raises(DataError, match=r"an Apache Iceberg table; reading it needs pyiceberg"):
        dgmm.ParquetDataset.open(iceberg_table[0])


def test_versions_of_plain_files_and_unknown_versions_are_one_line_errors(delta_table, iceberg_table, tmp_path):
    plain = tmp_path / "plain.parquet"
    pa.parquet.write_table(batch(np.random.default_rng(0), 100, 0.0), plain)
    with pytest.raises(DataError, match="version and as_of apply to Delta Lake and Iceberg tables"):
        dgmm.ParquetDataset.open(str(plain), version=2)
    with pytest.raises(DataError, match="cannot read this Delta table at the version asked for"):
        dgmm.ParquetDataset.open(delta_table, version=99)
    with pytest.raises(DataError, match="no snapshot 12345"):
        dgmm.ParquetDataset.open(iceberg_table[0], version=12345)
    with pytest.raises(DataError, match="give a table alone"):
        dgmm.ParquetDataset.open([delta_table, str(plain)])


def test_a_checkpoint_of_one_table_version_is_not_resumed_on_another(delta_table, tmp_path):
    model = dgmm.GaussianMixture(2, random_state=0, tol=0.0, max_iter=4)

    def stop(report) -> None:
        if report.n_iter == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(dgmm.ParquetDataset.open(delta_table, FEATURES, version=2),
                  checkpoint=dgmm.Checkpoint(tmp_path / "ckpt"), on_iteration=stop)  # fmt: skip
    with pytest.raises(CheckpointError, match="table"):
        model.fit(dgmm.ParquetDataset.open(delta_table, FEATURES, version=3),
                  checkpoint=dgmm.Checkpoint(tmp_path / "ckpt", resume=True))  # fmt: skip
    resumed = model.fit(dgmm.ParquetDataset.open(delta_table, FEATURES, version=2),
                        checkpoint=dgmm.Checkpoint(tmp_path / "ckpt", resume=True))  # fmt: skip
    assert resumed.n_iter_ == 4


def test_the_command_line_fits_a_pinned_version_and_records_it(delta_table, tmp_path):
    from dgmm.estimator.files import load_model_with_metadata

    proc = subprocess.run(
        [DGMM, "fit", delta_table, "--table-version", "1", "--columns", "a,b,c", "--n-components", "2",
         "--model", tmp_path / "m.npz"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _, metadata = load_model_with_metadata(tmp_path / "m.npz")
    assert metadata["extra"]["input"]["table"] == {"format": "delta", "version": 1}
    assert metadata["extra"]["input"]["n_rows"] == 50_000
    wrong = subprocess.run([DGMM, "fit", delta_table, "--as-of", "yesterday", "--model", tmp_path / "x.npz"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert wrong.returncode == 2 and "as_of='yesterday' is not a time" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def test_a_delta_table_of_many_files_with_awkward_partition_values(tmp_path):
    """300 partitions, one file each, keyed by values with spaces, slashes and accents (percent-encoded on
    storage, twice in the log): every file found, every value as the table holds it."""
    from deltalake import DeltaTable, write_deltalake

    rng = np.random.default_rng(63)
    keys = np.array([f"utt {i:03d}/é%" for i in range(300)])
    rows = batch(rng, 6_000, 0.0).append_column("speaker", pa.array(keys[np.arange(6_000) % 300]))
    path = str(tmp_path / "table")
    write_deltalake(path, rows, partition_by=["speaker"])
    dataset = dgmm.ParquetDataset.open(path, FEATURES)
    assert len(dataset.files) == 300 and dataset.n_rows == 6_000
    assert {dict(rg.partitions)["speaker"] for rg in dataset.row_groups} == set(keys)
    np.testing.assert_array_equal(rows_read(dataset), rows_of(DeltaTable(path).to_pyarrow_table()))
