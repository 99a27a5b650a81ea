"""Parquet and Dask input whose passes run on a GPU, on a simulated one: array-api-strict's "device1",
which refuses conversion to NumPy as CuPy does (:func:`dgmm.testing.simulated_gpu`). Chunks are decoded,
copied to the device and cached there by real worker processes of a real LocalCluster (two of them
sharing the one device, as two GPU workers share a GPU); the fit must equal the CPU fit."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dgmm
from dgmm.data.devices import DeviceCache, DeviceTarget, simulated_device
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.execution import local_cluster
from dgmm.execution.clusters import gpu_worker_threads
from dgmm.execution.worker_setup import OneGpuEach
from dgmm.testing import device_cache_reports, simulated_gpu

pytest.importorskip("array_api_strict")
SETTINGS = dict(n_components=3, random_state=0, max_iter=15, tol=0.0)
ROW_GROUP, N_ROWS = 200, 2400  # 12 chunks of 200 rows x 4 features: 6,400 bytes each
CHUNK_BYTES = ROW_GROUP * 4 * 8


@pytest.fixture(scope="module")
def rows():
    X, _ = sample_mixture(random_mixture(3, 4, seed=5, separation=3.0), N_ROWS, seed=5)
    return X


@pytest.fixture
def data(rows, parquet_dir) -> str:
    return parquet_dir(rows, row_group_size=ROW_GROUP, n_files=3)


def assert_same_fit(gpu, cpu, rtol: float = 1e-10) -> None:
    assert gpu.n_iter_ == cpu.n_iter_
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=rtol, atol=rtol)
    assert abs(gpu.lower_bound_ - cpu.lower_bound_) <= rtol * abs(cpu.lower_bound_)


@pytest.mark.parametrize(
    "covariance_type, init_params",
    [("full", "kmeans"), ("diag", "k-means++"), ("tied", "random_from_data"), ("spherical", "kmeans")],
)
def test_parquet_on_a_gpu_equals_the_cpu_fit(data, cluster_client, covariance_type, init_params):
    settings = dict(SETTINGS, covariance_type=covariance_type, init_params=init_params, client=cluster_client)
    cpu = dgmm.GaussianMixture(**settings, device="cpu").fit(data)
    with simulated_gpu():
        gpu = dgmm.GaussianMixture(**settings, device="cuda").fit(data)
    assert gpu.cache_used_ == "device"
    assert_same_fit(gpu, cpu)
    assert isinstance(gpu.means_, np.ndarray)


def test_weights_and_dropped_rows_reach_the_gpu(rows, parquet_dir, cluster_client):
    import pyarrow as pa
    import pyarrow.parquet as pq

    dirty = rows.copy()
    dirty[::37, 1] = np.nan
    folder = parquet_dir(rows[:0], name="empty")  # a fresh folder beside the others
    table = pa.table({**{f"x{j}": dirty[:, j] for j in range(4)}, "w": np.linspace(0.5, 2.0, len(rows))})
    pq.write_table(table, f"{folder}/weighted.parquet", row_group_size=ROW_GROUP)
    settings = dict(SETTINGS, nan_policy="drop", client=cluster_client)
    path = f"{folder}/weighted.parquet"
    cpu = dgmm.GaussianMixture(**settings, device="cpu").fit(path, sample_weight="w")
    with simulated_gpu():
        gpu = dgmm.GaussianMixture(**settings, device="cuda").fit(path, sample_weight="w")
    assert_same_fit(gpu, cpu)
    assert gpu.n_rows_dropped_ == cpu.n_rows_dropped_ == len(range(0, len(rows), 37))


@pytest.mark.parametrize("column, value", [("x2", np.inf), ("x0", 1e300), ("w", -1.0), ("w", np.nan)])
def test_values_the_cpu_refuses_are_refused_on_the_gpu_in_the_same_words(rows, tmp_path, cluster_client, column, value):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {**{f"x{j}": rows[:, j].copy() for j in range(4)}, "w": np.ones(len(rows))}
    columns[column][ROW_GROUP + 3] = value
    path = str(tmp_path / "bad.parquet")
    pq.write_table(pa.table(columns), path, row_group_size=ROW_GROUP, write_statistics=False)  # found on reading
    errors = []
    for device in ("cpu", "cuda"):
        with simulated_gpu(), pytest.raises(dgmm.DataError) as refused:
            dgmm.GaussianMixture(**SETTINGS, client=cluster_client, device=device).fit(path, sample_weight="w")
        errors.append(str(refused.value))
    assert errors[1] == errors[0] and "bad.parquet" in errors[0] and "row group 1" in errors[0]


def test_each_worker_caches_its_share_within_the_budget(data, cluster_client):
    with simulated_gpu():
        fits = [dgmm.GaussianMixture(**SETTINGS, client=cluster_client, device="cuda").fit(data)]
        cached = device_cache_reports(cluster_client).values()
        assert sum(r["chunks"] for r in cached) >= N_ROWS // ROW_GROUP  # every chunk read once, and kept
        assert sum(r["hits"] for r in cached) > sum(r["misses"] for r in cached)  # later passes read no file

        budget = 3 * CHUNK_BYTES
        fits.append(
            dgmm.GaussianMixture(**SETTINGS, client=cluster_client, device="cuda", device_cache_gib=budget / 2**30).fit(
                data
            )
        )
        cached = device_cache_reports(cluster_client).values()
        assert all(r["bytes"] <= budget and r["chunks"] <= 3 for r in cached)
        assert sum(r["chunks"] for r in cached) >= 3  # the first chunks each worker read stayed

        fits.append(dgmm.GaussianMixture(**SETTINGS, client=cluster_client, device="cuda", cache="none").fit(data))
        cached = device_cache_reports(cluster_client).values()
        assert all(r["chunks"] == 0 and r["hits"] == 0 for r in cached)  # streamed: every pass reads the files
    for fit in fits[1:]:  # cached or read, on either worker: the same chunking gives the same bits
        np.testing.assert_array_equal(fit.means_, fits[0].means_)
        np.testing.assert_array_equal(fit.covariances_, fits[0].covariances_)


def test_device_cache_keeps_the_first_chunks_that_fit_and_one_dataset():
    cache, loads = DeviceCache(), []

    def load(value):
        loads.append(value)
        return np.full((2, 2), float(value))  # 32 bytes

    for _ in range(3):  # three passes over four chunks, room for two
        for key in range(4):
            assert cache.get("a", key, 64, lambda: load(key))[0, 0] == key
    assert loads == [0, 1, 2, 3, 2, 3, 2, 3]  # chunks 0 and 1 stayed; evicting them would only trade hits
    assert cache.report() | {"token": None} == {
        "token": None,
        "budget": 64,
        "chunks": 2,
        "bytes": 64,
        "hits": 4,
        "misses": 8,
    }
    cache.get("b", 0, 64, lambda: load(9))  # another data set: the cache holds it alone
    assert cache.report()["token"] == "b" and cache.report()["chunks"] == 1


def test_dask_arrays_of_host_chunks_are_copied_to_the_gpu_per_chunk(rows):
    import dask.array as da

    X = da.from_array(rows, chunks=(500, -1))
    cpu = dgmm.GaussianMixture(**SETTINGS, device="cpu").fit(X)
    with simulated_gpu():
        gpu = dgmm.GaussianMixture(**SETTINGS, device="cuda").fit(X)
    assert_same_fit(gpu, cpu)
    assert gpu.cache_used_ in ("memory", "none")


def test_parquet_on_a_gpu_without_a_client_runs_on_a_local_gpu_cluster(data):
    cpu = dgmm.GaussianMixture(**SETTINGS, device="cpu").fit(data)
    with simulated_gpu():
        assert_same_fit(dgmm.GaussianMixture(**SETTINGS, device="cuda").fit(data), cpu)
        with local_cluster(2, device=DeviceTarget("array_api_strict", "device1")) as client:  # two share the GPU
            threads = gpu_worker_threads(2)
            assert sorted(w["nthreads"] for w in client.scheduler_info()["workers"].values()) == [threads, threads]
            assert_same_fit(dgmm.GaussianMixture(**SETTINGS, device="cuda", client=client).fit(data), cpu)
            client.register_plugin(OneGpuEach(DeviceTarget(), 2))  # what a CUDA cluster without dask-cuda gets
            seen = client.run(lambda dask_worker: (dask_worker.name, os.environ.get("CUDA_VISIBLE_DEVICES")))
            assert sorted(seen.values()) == [(0, "0"), (1, "1")]


def test_the_classifier_on_parquet_without_a_client_runs_where_a_mixture_would(rows, tmp_path, monkeypatch):
    """One decision for every estimator (estimator/runtime.py): the classifier's fit and its group scores on
    Parquet with device="cuda" and no client run on a local cluster of GPU workers, as a mixture's fit does
    (it used to get a CPU cluster of a worker per core), and on the CPU they run in this process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import dgmm.execution.executor as executor

    speaker = np.array(["ann", "bob", "cy"])[np.arange(N_ROWS) * 7 % 3]
    folder = tmp_path / "frames"
    folder.mkdir()
    pq.write_table(
        pa.table({**{f"x{j}": rows[:, j] for j in range(4)}, "speaker": speaker}),
        folder / "part.parquet",
        row_group_size=ROW_GROUP,
    )
    started = []

    def recorded(*args, **kwargs):
        started.append(kwargs.get("device"))
        return local_cluster(*args, **kwargs)

    monkeypatch.setattr(executor, "local_cluster", recorded)
    settings = dict(n_components=2, random_state=0, max_iter=10)
    cpu = dgmm.GaussianMixtureClassifier(**settings, device="cpu").fit(str(folder), "speaker")
    assert started == []  # small, on the CPU: in this process
    groups = np.arange(N_ROWS) // 100
    with simulated_gpu() as target:
        gpu = dgmm.GaussianMixtureClassifier(**settings, device="cuda").fit(str(folder), "speaker")
        assert started == [target]  # a local cluster of GPU workers
        decided = gpu.predict_groups(str(folder), groups)
        assert started == [target, target]
    for got, want in zip(gpu.estimators_, cpu.estimators_):
        assert_same_fit(got, want, rtol=1e-9)
    expected = cpu.predict_groups(str(folder), groups)
    np.testing.assert_array_equal(decided["class"], expected["class"])
    np.testing.assert_allclose(decided["score_ann"], expected["score_ann"], rtol=1e-9)


def test_workers_without_a_gpu_run_auto_on_their_cpus_and_refuse_cuda(data, cluster_client):
    cpu = dgmm.GaussianMixture(**SETTINGS, client=cluster_client, device="cpu").fit(data)
    with simulated_device(DeviceTarget("cupy", "cuda")):  # this process "sees" a GPU; the workers have no CuPy GPU
        auto = dgmm.GaussianMixture(**SETTINGS, client=cluster_client).fit(data)
        assert auto.cache_used_ != "device"
        np.testing.assert_array_equal(auto.means_, cpu.means_)
        with pytest.raises(dgmm.InputTypeError, match="workers see no GPU"):
            dgmm.GaussianMixture(**SETTINGS, client=cluster_client, device="cuda").fit(data)


def test_split_merge_and_select_run_on_the_gpu(data, cluster_client):
    settings = dict(SETTINGS, client=cluster_client, split_merge=1, max_iter=5)
    cpu = dgmm.GaussianMixture(**settings, device="cpu").fit(data)
    with simulated_gpu():
        gpu = dgmm.GaussianMixture(**settings, device="cuda").fit(data)
        assert gpu.cache_used_ == "device"
        assert [m[:3] for m in gpu.split_merge_moves_] == [m[:3] for m in cpu.split_merge_moves_]
        assert_same_fit(gpu, cpu)
    kwargs = dict(criterion="heldout", random_state=0, max_iter=10, client=cluster_client)
    host = dgmm.select(data, [2, 3], device="cpu", **kwargs)
    with simulated_gpu():
        gpu = dgmm.select(data, [2, 3], device="cuda", **kwargs)
    assert gpu.best.n_components == host.best.n_components and gpu.passes == host.passes
    np.testing.assert_allclose(
        [r["heldout_log_likelihood"] for r in gpu.table], [r["heldout_log_likelihood"] for r in host.table], rtol=1e-10
    )
    assert_same_fit(gpu.best, host.best, rtol=1e-9)


def test_the_command_line_fits_parquet_on_a_gpu(data, tmp_path):
    from click.testing import CliRunner

    from dgmm.cli import main

    model = tmp_path / "model.npz"
    with simulated_gpu():  # in this process (click's runner), so the command's local cluster gets the device
        result = CliRunner().invoke(
            main,
            [
                "fit",
                data,
                "--model",
                str(model),
                "--n-components",
                "3",
                "--seed",
                "0",
                "--max-iter",
                "15",
                "--tol",
                "0",
                "--device",
                "cuda",
                "--device-cache-gib",
                "0.001",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "workers=1, device=simulated GPU" in result.output and "used=device" in result.output
    cpu = dgmm.GaussianMixture(**SETTINGS, device="cpu").fit(data)
    np.testing.assert_allclose(dgmm.load_model(model).means_, cpu.means_, rtol=1e-10)
    with simulated_gpu():
        result = CliRunner().invoke(main, ["select", data, "--n-components", "2-3", "--seed", "0", "--device", "cuda"])
    assert result.exit_code == 0, result.output
    assert "device=simulated GPU" in result.output and "n_components=3" in result.output


def test_predictions_on_parquet_and_dask_input_are_computed_on_the_gpu(rows, parquet_dir):
    import dask.array as da

    dirty = rows.copy()
    dirty[::53, 2] = np.nan
    path = parquet_dir(dirty, row_group_size=ROW_GROUP, n_files=3)
    cpu = dgmm.GaussianMixture(**SETTINGS, nan_policy="drop", device="cpu").fit(path)
    gpu = dgmm.GaussianMixture(**SETTINGS, nan_policy="drop", device="cuda")
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "n_features_in_", "feature_names_in_"):
        setattr(gpu, name, getattr(cpu, name))
    with simulated_gpu():
        for X in (path, da.from_array(dirty, chunks=(700, -1))):
            labels = gpu.predict(X)
            layers = labels.__dask_graph__().layers  # the chunks go through the device reader or a copy to it
            assert any("parquet-array_api_strict" in name or "put-" in name for name in layers), list(layers)
            np.testing.assert_array_equal(labels.compute(), cpu.predict(X).compute())
            assert (labels.compute()[::53] == -1).all()
            np.testing.assert_allclose(gpu.predict_proba(X).compute(), cpu.predict_proba(X).compute(), rtol=1e-12)
            np.testing.assert_allclose(gpu.score_samples(X).compute(), cpu.score_samples(X).compute(), rtol=1e-12)
            assert abs(gpu.score(X) - cpu.score(X)) <= 1e-12 * abs(cpu.score(X))


def test_predict_to_parquet_scores_each_row_group_on_the_gpu(rows, parquet_dir, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    copied = []
    put = DeviceTarget.put
    monkeypatch.setattr(DeviceTarget, "put", lambda self, block: copied.append(len(block)) or put(self, block))

    dirty = rows.copy()
    dirty[::53, 2] = np.nan
    path = parquet_dir(dirty, row_group_size=ROW_GROUP, n_files=3)
    model = dgmm.GaussianMixture(**SETTINGS, nan_policy="drop", device="cpu").fit(dirty)
    dgmm.predict_to_parquet(model, path, tmp_path / "cpu.parquet", proba=True, log_likelihood=True)
    with simulated_gpu():
        dgmm.predict_to_parquet(
            model.set_params(device="cuda"), path, tmp_path / "gpu.parquet", proba=True, log_likelihood=True
        )
    assert copied == [ROW_GROUP] * (N_ROWS // ROW_GROUP)  # each row group went to the device once
    cpu, gpu = (pq.read_table(tmp_path / f"{name}.parquet") for name in ("cpu", "gpu"))
    assert gpu.column_names == cpu.column_names and gpu.column("component").null_count == len(range(0, N_ROWS, 53))
    assert gpu.column("component").equals(cpu.column("component"))
    for name in cpu.column_names[1:]:
        np.testing.assert_allclose(
            gpu.column(name).to_numpy(zero_copy_only=False), cpu.column(name).to_numpy(zero_copy_only=False), rtol=1e-12
        )


def test_hive_keys_and_row_groups_split_by_chunk_rows_reach_the_gpu(rows, tmp_path, cluster_client):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for region, part in ((1, rows[:1000]), (2, rows[1000:])):  # a feature from the folder names
        folder = tmp_path / f"region={region}"
        folder.mkdir()
        pq.write_table(
            pa.table({f"x{j}": part[:, j] for j in range(4)}), folder / "part.parquet", row_group_size=ROW_GROUP
        )
    settings = dict(SETTINGS, client=cluster_client, chunk_rows=150)  # chunks of 150 and 50 rows per row group
    columns = ["x0", "x1", "x2", "x3", "region"]
    cpu = dgmm.GaussianMixture(**settings, device="cpu").fit(str(tmp_path), columns=columns)
    with simulated_gpu():
        gpu = dgmm.GaussianMixture(**settings, device="cuda").fit(str(tmp_path), columns=columns)
    assert gpu.cache_used_ == "device"
    assert_same_fit(gpu, cpu)


def test_the_classifier_fits_and_scores_parquet_on_the_gpu(rows, tmp_path, cluster_client, capsys):
    """Each class's EM, the background model's adaptation, predictions and group decisions, chunks on the device
    with their class codes, equal the CPU's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    speaker = np.array(["ann", "bob", "cy"])[np.arange(N_ROWS) * 7 % 3]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(N_ROWS), 3)):
        table = pa.table({**{f"x{j}": rows[part, j] for j in range(4)}, "speaker": speaker[part]})
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=ROW_GROUP)
    path = str(folder)
    with simulated_gpu():  # the command line too: its local cluster gets the device
        from click.testing import CliRunner

        from dgmm.cli import main

        result = CliRunner().invoke(
            main,
            [
                "fit",
                path,
                "--label-column",
                "speaker",
                "--model",
                str(tmp_path / "classes.npz"),
                "--n-components",
                "2",
                "--seed",
                "0",
                "--max-iter",
                "10",
                "--device",
                "cuda",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "device=simulated GPU" in result.output
    groups = np.arange(N_ROWS) // 100
    for extra in ({}, {"ubm": "fit", "adapt": ["means", "weights"]}):
        settings = dict(n_components=2, random_state=0, max_iter=10, client=cluster_client, **extra)
        cpu = dgmm.GaussianMixtureClassifier(**settings, device="cpu").fit(path, "speaker")
        with simulated_gpu():
            gpu = dgmm.GaussianMixtureClassifier(**settings, device="cuda", verbose=1).fit(path, "speaker")
            assert "each chunk copied to the simulated GPU" in capsys.readouterr().out
            for got, want in zip(gpu.estimators_, cpu.estimators_):
                assert_same_fit(got, want, rtol=1e-9)
            if not extra:  # the command's fit, on a local cluster of its own
                saved = dgmm.load_model(tmp_path / "classes.npz").estimators_
                np.testing.assert_allclose(saved[2].means_, cpu.estimators_[2].means_, rtol=1e-9)
            labels = gpu.predict(path)
            layers = labels.__dask_graph__().layers  # scored on the device, read there by its Parquet reader
            assert any("parquet-array_api_strict" in name for name in layers), list(layers)
            np.testing.assert_array_equal(labels.compute(), cpu.predict(path).compute())
            np.testing.assert_allclose(
                gpu.predict_proba(path).compute(), cpu.predict_proba(path).compute(), rtol=1e-10, atol=1e-14
            )
            got, want = gpu.predict_groups(path, groups), cpu.predict_groups(path, groups)
        np.testing.assert_array_equal(got["class"], want["class"])
        np.testing.assert_allclose(got["score_cy"], want["score_cy"], rtol=1e-10)


def test_numpy_input_is_scored_where_it_is_fitted_and_comes_back_as_numpy(rows, monkeypatch):
    """device='cuda' places NumPy input on the GPU for scoring as for the fit (one decision, estimator/runtime.py:
    scoring_input): computed there by the device kernels, returned as NumPy, equal to the CPU's scores."""
    import dgmm.estimator.class_scoring as class_scoring
    import dgmm.estimator.scoring as scoring

    seen = []
    for module, name in ((scoring, "xp_posterior"), (class_scoring, "xp_class_scores")):

        def spy(X, *args, _kernel=getattr(module, name), _name=name):
            seen.append((_name, type(X).__module__.split(".")[0]))
            return _kernel(X, *args)

        monkeypatch.setattr(module, name, spy)
    y = (rows[:, 0] > np.median(rows[:, 0])).astype(np.int64)
    model = dgmm.GaussianMixture(**SETTINGS).fit(rows)
    classifier = dgmm.GaussianMixtureClassifier(n_components=2, random_state=0, max_iter=10).fit(rows, y)
    expected = [
        model.predict(rows),
        model.predict_proba(rows),
        model.score_samples(rows),
        classifier.predict_proba(rows),
        classifier.predict(rows),
    ]
    assert not seen
    with simulated_gpu():
        model.set_params(device="cuda"), classifier.set_params(device="cuda")
        got = [
            model.predict(rows),
            model.predict_proba(rows),
            model.score_samples(rows),
            classifier.predict_proba(rows),
            classifier.predict(rows),
        ]
    assert {name for name, _ in seen} == {"xp_posterior", "xp_class_scores"}
    assert {library for _, library in seen} == {"array_api_strict"}  # the simulated GPU's arrays
    assert all(type(out) is np.ndarray for out in got)
    for out, want in zip(got, expected):
        if out.dtype.kind == "f":
            np.testing.assert_allclose(out, want, rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_array_equal(out, want)
