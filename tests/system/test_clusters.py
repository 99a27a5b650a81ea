"""Real clusters: a `dask scheduler` and `dask worker` processes, worker counts (faults: test_faults.py)."""

from __future__ import annotations

import logging
import subprocess

import pytest
from distributed import Client, LocalCluster

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.testing import BIN, assert_identical, mixture_parquet


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return mixture_parquet(tmp_path_factory.mktemp("clusters"), 240_000, 4, 8, 20_000, 3)


def test_fit_through_scheduler_address_client_and_cli(dataset, scheduler_and_workers, tmp_path):
    kwargs = dict(tol=0.0, max_iter=5, random_state=0, cache="none")
    by_address = dgmm.GaussianMixture(3, scheduler_address=scheduler_and_workers, **kwargs).fit(dataset)
    with Client(scheduler_and_workers, set_as_default=False) as client:
        by_client = dgmm.GaussianMixture(3, client=client, **kwargs).fit(dataset)
        assert len(client.scheduler_info()["workers"]) == 2
    assert_identical(by_address, by_client)
    proc = subprocess.run(
        [
            BIN / "dgmm",
            "fit",
            dataset,
            "--n-components",
            "3",
            "--tol",
            "0",
            "--max-iter",
            "5",
            "--seed",
            "0",
            "--scheduler",
            scheduler_and_workers,
            "--model",
            tmp_path / "m.npz",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cluster: scheduler=" in proc.stderr and "workers=2" in proc.stderr
    assert_identical(dgmm.load_model(tmp_path / "m.npz"), by_address)


def test_unreachable_scheduler_is_a_clear_error(dataset):
    with pytest.raises(dgmm.DataError, match=r"scheduler tcp://127.0.0.1:9: cannot connect within 2s"):
        from dgmm.execution import connect

        connect("tcp://127.0.0.1:9", timeout="2s")


def test_bit_identical_across_1_2_and_4_workers(tmp_path):
    from dgmm.data.synthetic import write_parquet

    X, _ = sample_mixture(random_mixture(3, 4, seed=9, separation=3.0), 40_000, seed=9)
    dataset = str(tmp_path / "small")
    write_parquet(X, dataset, row_group_size=2_500, n_files=2)
    fits = []
    for n_workers in (1, 2, 4):
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            fits.append(dgmm.GaussianMixture(3, tol=0.0, max_iter=4, random_state=2, client=client).fit(dataset))
    for other in fits[1:]:
        assert_identical(other, fits[0])


def test_default_local_cluster_listens_on_loopback_only():
    from urllib.parse import urlparse

    from dgmm.execution import local_cluster

    with local_cluster(n_workers=1) as client:
        assert urlparse(client.scheduler.address).hostname == "127.0.0.1"
        assert urlparse(client.dashboard_link).hostname == "127.0.0.1"
        for address in client.scheduler_info()["workers"]:
            assert urlparse(address).hostname == "127.0.0.1"
