"""Remote storage against a real S3 API server (moto's server mode) on 127.0.0.1.

Every read and write goes through fsspec with the run's ``storage_options``: Parquet input on
the client and on the workers, model files, checkpoints, predictions, samples. Outputs are
multipart uploads completed with a conditional write, so nothing half-written is ever
visible and an existing object is never replaced without ``--overwrite``. Storage problems
are one line naming the URL, exit 2.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture, write_parquet
from dgmm.testing import BIN, assert_identical

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "dgmm-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket holding a Parquet data set; yields its storage options."""
    import boto3
    import s3fs

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
    X, _ = sample_mixture(random_mixture(3, 3, seed=5, separation=4.0), 12_000, seed=5)
    local = tmp_path_factory.mktemp("s3data") / "data"
    write_parquet(X, local, row_group_size=2_000, n_files=2)
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    fs.put(str(local), f"{BUCKET}/data", recursive=True)
    try:
        yield {"options": options, "fs": fs, "local": str(local), "endpoint": endpoint}
    finally:
        server.stop()


def cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance metadata service to ask for credentials
    return subprocess.run(
        [BIN / "dgmm", *map(str, args)], capture_output=True, text=True, timeout=300, env={**base, **(env or {})}
    )


def storage_args(options: dict) -> list[str]:
    return [arg for key, value in options.items() for arg in ("--storage-option", f"{key}={value}")]


def one_line(proc: subprocess.CompletedProcess, command: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith(f"dgmm {command}: error: "), proc.stderr
    return lines[-1]


def test_fit_predict_sample_through_s3_match_local_files(s3, tmp_path, cluster_client):
    fs, args = s3["fs"], storage_args(s3["options"])
    url = f"s3://{BUCKET}/data"
    common = [
        "--n-components",
        "3",
        "--seed",
        "0",
        "--max-iter",
        "5",
        "--tol",
        "0",
        "--scheduler",
        cluster_client.scheduler.address,
    ]
    model_url, checkpoint_url = f"s3://{BUCKET}/run1/model.npz", f"s3://{BUCKET}/run1/ck"
    proc = cli("fit", url, *common, "--model", model_url, "--checkpoint", checkpoint_url, *args)
    assert proc.returncode == 0, proc.stderr
    assert fs.exists(f"{BUCKET}/run1/model.npz") and not fs.exists(f"{BUCKET}/run1/ck/checkpoint.npz")
    local = cli("fit", s3["local"], *common, "--model", tmp_path / "local.npz")
    assert local.returncode == 0, local.stderr
    assert_identical(dgmm.load_model(model_url, s3["options"]), dgmm.load_model(tmp_path / "local.npz"))

    predictions = f"s3://{BUCKET}/run1/labels.parquet"
    proc = cli("predict", model_url, url, "--output", predictions, "--proba", *args)
    assert proc.returncode == 0, proc.stderr
    with fs.open(f"{BUCKET}/run1/labels.parquet", "rb") as f:
        import pyarrow.parquet as pq

        labels = pq.read_table(f).column("component").to_numpy()
    np.testing.assert_array_equal(labels, dgmm.load_model(tmp_path / "local.npz").predict(s3["local"]).compute())
    before = fs.cat(f"{BUCKET}/run1/labels.parquet")
    again = cli("predict", model_url, url, "--output", predictions, *args)
    assert again.returncode == 2
    assert one_line(again, "predict").endswith(f"{predictions}: output exists; remove it or pass --overwrite")
    assert fs.cat(f"{BUCKET}/run1/labels.parquet") == before

    proc = cli("sample", model_url, "-n", "100", "--output", f"s3://{BUCKET}/run1/sample.parquet", *args)
    assert proc.returncode == 0, proc.stderr
    proc = cli("inspect", model_url, "--json", *args)
    assert proc.returncode == 0 and '"n_files": 2' in proc.stdout, proc.stderr


def test_a_failed_upload_leaves_no_object(s3, tmp_path):
    """A predict that fails in its last row group (a NaN there) publishes nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, options = s3["fs"], s3["options"]
    X = np.arange(30_000, dtype=float).reshape(-1, 3)
    X[-1, 0] = np.nan
    pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(3)}), tmp_path / "bad.parquet", row_group_size=1_000)
    fs.put(str(tmp_path / "bad.parquet"), f"{BUCKET}/bad/part-0.parquet")
    model = dgmm.GaussianMixture(2, random_state=0, max_iter=3).fit(np.nan_to_num(X))
    dest = f"s3://{BUCKET}/bad/labels.parquet"
    with pytest.raises(dgmm.DataError, match="NaN or infinite values"):
        dgmm.predict_to_parquet(model, f"s3://{BUCKET}/bad", dest, storage_options=options)
    assert not fs.exists(f"{BUCKET}/bad/labels.parquet")
    assert fs.ls(f"{BUCKET}/bad") == [f"{BUCKET}/bad/part-0.parquet"]


def test_a_model_object_that_appears_during_the_write_is_not_replaced(s3):
    from dgmm.data.publish import published
    from dgmm.errors import OutputExists

    fs, options = s3["fs"], s3["options"]
    url = f"s3://{BUCKET}/race/model.bin"
    with pytest.raises(OutputExists, match="it appeared while this run was working"):
        with published(url, storage_options=options) as file:
            file.write(b"ours")
            fs.pipe(f"{BUCKET}/race/model.bin", b"theirs")  # another run publishes first
    assert fs.cat(f"{BUCKET}/race/model.bin") == b"theirs"


def test_missing_credentials_and_unreachable_endpoints_are_one_line_errors(s3, tmp_path):
    url = f"s3://{BUCKET}/data"
    proc = cli(
        "fit",
        url,
        "--n-components",
        "2",
        "--model",
        tmp_path / "m.npz",
        "--storage-option",
        f"endpoint_url={s3['endpoint']}",
    )
    assert proc.returncode == 2
    assert (
        one_line(proc, "fit") == f"dgmm fit: error: {url}: no credentials found; set them (AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY, a profile, or storage_options key/secret)"
    )
    proc = cli(
        "fit",
        url,
        "--n-components",
        "2",
        "--model",
        tmp_path / "m.npz",
        *storage_args({**s3["options"], "endpoint_url": "http://127.0.0.1:9"}),
    )
    assert proc.returncode == 2
    assert "cannot reach the storage endpoint; check endpoint_url and the network" in one_line(proc, "fit")
    proc = cli("inspect", f"s3://{BUCKET}/nowhere/model.npz", *storage_args({**s3["options"], "secret": "wrong"}))
    assert proc.returncode == 2
    assert one_line(proc, "inspect").startswith(f"dgmm inspect: error: s3://{BUCKET}/nowhere/model.npz: ")
    assert not (tmp_path / "m.npz").exists()


def test_storage_options_from_a_config_file(s3, tmp_path, cluster_client):
    config = tmp_path / "run.yaml"
    config.write_text(
        "data: s3://{b}/data\nn_components: 2\nmax_iter: 2\nmodel: s3://{b}/cfg/model.npz\n"
        "scheduler: {s}\nstorage_options:\n  key: testing\n  secret: testing\n  endpoint_url: {e}\n".format(
            b=BUCKET, s=cluster_client.scheduler.address, e=s3["endpoint"]
        )
    )
    proc = cli("fit", "--config", config)
    assert proc.returncode == 0, proc.stderr
    assert s3["fs"].exists(f"{BUCKET}/cfg/model.npz")


def test_an_object_overwritten_or_deleted_during_a_run_ends_it_in_one_line(s3):
    """The run's snapshot holds each object's ETag: an object written again (the same bytes too: a new write)
    or deleted after the run opened the data set is refused at its next read, never read as the new version."""
    from dgmm.data.parquet import ParquetDataset
    from dgmm.data.row_groups import read_row_group
    from dgmm.errors import InputChanged

    fs = s3["fs"]
    fs.put(s3["local"], f"{BUCKET}/moving", recursive=True)
    url = f"s3://{BUCKET}/moving"
    dataset = ParquetDataset.open(url, storage_options=s3["options"])
    first, last = dataset.row_groups[0], dataset.row_groups[-1]
    read_row_group(first, dataset.columns)  # as it was: read
    key = last.path.removeprefix("s3://")
    fs.pipe(key, fs.cat(key)[:-8] + b"12345678")  # another job's write: the same size, new bytes
    with pytest.raises(InputChanged, match=r"changed while in use: a new etag"):
        read_row_group(last, dataset.columns)
    fs.rm(first.path.removeprefix("s3://"))
    with pytest.raises(InputChanged, match="removed while in use"):
        read_row_group(first, dataset.columns)


def test_delta_and_iceberg_tables_on_s3_read_as_their_libraries_read_them(s3):
    """Tables written to the S3 server by deltalake and by pyiceberg (a SQLite catalog, S3 warehouse) are read
    with the same storage_options as files: the rows of their current and pinned versions."""
    deltalake = pytest.importorskip("deltalake")
    pytest.importorskip("pyiceberg")
    import numpy as np
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

    from dgmm.data.parquet import ParquetDataset
    from dgmm.data.tables import _delta_options

    rng = np.random.default_rng(62)
    tables = [pa.table({"a": rng.normal(size=n), "b": rng.normal(size=n)}) for n in (3_000, 5_000, 1_000)]
    options = s3["options"]
    url = f"s3://{BUCKET}/delta-table"
    deltalake.write_deltalake(url, tables[0], storage_options=_delta_options(options))
    deltalake.write_deltalake(url, tables[1], mode="overwrite", storage_options=_delta_options(options))
    deltalake.write_deltalake(url, tables[2], mode="append", storage_options=_delta_options(options))
    for version, rows in ((None, 6_000), (0, 3_000), (1, 5_000)):
        dataset = ParquetDataset.open(url, ["a", "b"], storage_options=options, version=version)
        assert dataset.n_rows == rows and dataset.table["version"] == (2 if version is None else version)
        np.testing.assert_allclose(np.sort(dataset.to_dask().compute()[:, 0]), np.sort(np.concatenate(
            [t.column("a").to_numpy() for t in ([tables[1], tables[2]] if version is None else [tables[version]])]
        )))  # fmt: skip

    catalog = SqlCatalog("s3", uri="sqlite:///:memory:", warehouse=f"s3://{BUCKET}/warehouse",
                         **{"s3.endpoint": s3["endpoint"], "s3.access-key-id": "testing",
                            "s3.secret-access-key": "testing", "s3.region": "us-east-1"})  # fmt: skip
    catalog.create_namespace("ns")
    table = catalog.create_table("ns.frames", schema=tables[0].schema)
    table.append(tables[0])
    table.overwrite(tables[1])
    location = table.metadata_location.rsplit("/metadata/", 1)[0]
    dataset = ParquetDataset.open(location, ["a", "b"], storage_options=options)
    assert dataset.table["format"] == "iceberg" and dataset.n_rows == 5_000
    first = ParquetDataset.open(location, ["a", "b"], storage_options=options, version=table.snapshots()[0].snapshot_id)
    np.testing.assert_allclose(np.sort(first.to_dask().compute()[:, 0]), np.sort(tables[0].column("a").to_numpy()))
