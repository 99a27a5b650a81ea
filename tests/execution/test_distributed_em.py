"""The EM loop on real schedulers: chunking invariance, one compute per iteration, broadcast, defaults."""

from __future__ import annotations

import math
import pickle

import dask.array as da
import numpy as np
import pytest

import dgmm
from dgmm.algorithms.em import em_kernel
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.execution import Executor, build_pass, current_client
from dgmm.testing import COVARIANCE_TYPES, ComputeCounter, assert_close, initial_params, random_params

PARAM_ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_")


@pytest.fixture(scope="module")
def mixture_data():
    X, _ = sample_mixture(random_mixture(3, 3, seed=5, separation=4.0), 1500, seed=5)
    return X


def uneven_chunks(n: int) -> tuple[int, ...]:
    sizes, rng = [], np.random.default_rng(0)
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(1, 300), n - sum(sizes))))
    return tuple(sizes)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_does_not_depend_on_chunking(mixture_data, parquet_dir, cluster_client, covariance_type):
    X = mixture_data
    kwargs = dict(covariance_type=covariance_type, tol=0.0, max_iter=15, random_state=0)
    one_chunk = dgmm.GaussianMixture(3, **kwargs).fit(X)
    chunks = uneven_chunks(len(X))
    assert len(chunks) > 5 and len(set(chunks)) > 3
    uneven = dgmm.GaussianMixture(3, split_every=3, **kwargs).fit(da.from_array(X, chunks=(chunks, 3)))
    path = parquet_dir(X, row_group_size=97, n_files=3)
    from_parquet = dgmm.GaussianMixture(3, client=cluster_client, **kwargs).fit(path)
    for fitted in (uneven, from_parquet):
        for attr in PARAM_ATTRS:
            assert_close(getattr(fitted, attr), getattr(one_chunk, attr), 1e-10, attr)
    assert list(from_parquet.feature_names_in_) == ["x0", "x1", "x2"]


def test_fixed_chunking_is_bit_identical_across_runs_and_schedulers(mixture_data, cluster_client):
    X = da.from_array(mixture_data, chunks=(200, 3))
    kwargs = dict(tol=0.0, max_iter=8, random_state=3)
    runs = [
        dgmm.GaussianMixture(3, **kwargs).fit(X),
        dgmm.GaussianMixture(3, **kwargs).fit(X),
        dgmm.GaussianMixture(3, client=cluster_client, **kwargs).fit(X),
    ]
    for other in runs[1:]:
        for attr in PARAM_ATTRS:
            np.testing.assert_array_equal(getattr(other, attr), getattr(runs[0], attr))


def test_one_compute_per_iteration_on_local_scheduler(mixture_data):
    X = da.from_array(mixture_data, chunks=(100, 3))
    init = initial_params(mixture_data, 3, "full")
    with ComputeCounter() as counter:
        model = dgmm.GaussianMixture(3, tol=0.0, max_iter=7, cache="none", **init).fit(X)
    assert model.n_iter_ == 7
    assert counter.computes == 7
    with ComputeCounter() as counter:
        model = dgmm.GaussianMixture(
            3, tol=0.0, max_iter=4, n_init=2, random_state=0, cache="none", init_params="k-means++"
        ).fit(X)
    # both inits share one row-sample gather and one init pass; then 4 iterations, each one compute for both
    assert counter.computes == 2 + 4
    with ComputeCounter() as counter:
        model = dgmm.GaussianMixture(3, tol=0.0, max_iter=7, cache="memory", **init).fit(X)
    assert model.cache_used_ == "memory" and counter.computes == 1 + 7  # persist once, then one per iteration


class GraphCounter:
    """Counts graph submissions (update_graph calls) in the scheduler."""

    def __init__(self, client):
        from distributed.diagnostics.plugin import SchedulerPlugin

        class Plugin(SchedulerPlugin):
            name = "dgmm-graph-counter"

            def __init__(self):
                self.count = 0

            def update_graph(self, scheduler, *args, **kwargs):
                self.count += 1

        self.client = client
        self.name = Plugin.name
        client.register_plugin(Plugin())

    @property
    def count(self) -> int:
        name = self.name
        return self.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[name].count)

    def close(self) -> None:
        self.client.unregister_scheduler_plugin(self.name)


def test_one_graph_submission_per_iteration_on_a_cluster(mixture_data, parquet_dir, cluster_client):
    counter = GraphCounter(cluster_client)
    path = parquet_dir(mixture_data, row_group_size=150)
    init = initial_params(mixture_data, 3, "diag")
    model = dgmm.GaussianMixture(
        3, covariance_type="diag", tol=0.0, max_iter=6, client=cluster_client, cache="none", **init
    )
    model.fit(path)
    assert model.n_iter_ == 6 and model.cache_used_ == "none"
    assert counter.count == 6
    cached = dgmm.GaussianMixture(
        3, covariance_type="diag", tol=0.0, max_iter=6, client=cluster_client, cache="memory", **init
    )
    cached.fit(path)
    assert cached.cache_used_ == "memory"
    assert counter.count == 6 + 1 + 6  # the data is persisted once, then one graph per iteration
    for attr in PARAM_ATTRS:
        np.testing.assert_array_equal(getattr(cached, attr), getattr(model, attr))
    counter.close()


def test_auto_cache_persists_only_what_fits(mixture_data, monkeypatch, caplog):
    import logging

    X = da.from_array(mixture_data, chunks=(300, 3))
    with caplog.at_level(logging.INFO, logger="dgmm"):
        assert dgmm.GaussianMixture(2, max_iter=2, cache="auto").fit(X).cache_used_ == "memory"
    assert "cache=auto: persisted in memory" in caplog.text
    monkeypatch.setattr("dgmm.execution.executor.CACHE_FRACTION", 1e-12)
    assert dgmm.GaussianMixture(2, max_iter=2, cache="auto").fit(X).cache_used_ == "none"


def test_payload_is_shared_not_copied_per_chunk(cluster_client):
    """K=32, d=256: 2 M doubles of covariance; the graph holds them once, whatever the chunk count.

    On a cluster too: the parameters are one key of the pass's graph (not scattered data, which
    a lost worker could take with it), made once and fetched by the workers that need them.
    """
    params = random_params(np.random.default_rng(0), 32, 256, "full")
    payload_bytes = len(pickle.dumps(params))
    assert payload_bytes > 30e6
    for executor in (Executor(), Executor(cluster_client)):
        for n_chunks in (20, 200):
            X = da.zeros((n_chunks * 10, 256), chunks=(10, 256))
            graph = dict(build_pass(X, em_kernel, executor.broadcast(params), 8).__dask_graph__())
            assert payload_bytes < len(pickle.dumps(graph)) < payload_bytes + 2e6
    X = da.zeros((200, 256), chunks=(10, 256))
    remote, local = (e.map_reduce(X, em_kernel, params) for e in (Executor(cluster_client), Executor(scheduler="sync")))
    for field in ("n_rows", "loglik", "s0", "s1", "s2", "weight"):
        np.testing.assert_array_equal(getattr(remote, field), getattr(local, field), err_msg=field)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("n_chunks, split_every", [(1, 8), (8, 8), (9, 8), (40, 3), (100, 10)])
def test_tree_reduce_depth_is_log_b_of_chunks(n_chunks, split_every, fused, monkeypatch):
    if not fused:
        monkeypatch.setattr("dgmm.execution.passes.FUSE_CHUNK_BYTES", 0)
    X = da.zeros((n_chunks * 5, 2), chunks=(5, 2))
    graph = dict(build_pass(X, em_kernel, None, split_every).__dask_graph__())
    levels = {k[0].rsplit("-", 1)[1] for k in graph if isinstance(k, tuple) and k[0].startswith("merge-")}
    expected = 0 if n_chunks == 1 else math.ceil(math.log(n_chunks, split_every) - 1e-12)
    assert len(levels) == expected


def test_fused_pass_runs_the_same_merges_in_fewer_tasks(mixture_data, monkeypatch):
    """Small chunks run split_every to a task; the tree, and so every bit of the result, is unchanged."""
    X = da.from_array(mixture_data, chunks=(7, 3))
    payload = random_mixture(3, 3, seed=5)
    fused = build_pass(X, em_kernel, payload, 8)
    monkeypatch.setattr("dgmm.execution.passes.FUSE_CHUNK_BYTES", 0)
    unfused = build_pass(X, em_kernel, payload, 8)
    tasks = {
        name: sum(1 for k in dict(p.__dask_graph__()) if k[0].startswith(("stats-", "merge-")))
        for name, p in (("fused", fused), ("unfused", unfused))
    }
    assert tasks["unfused"] == X.numblocks[0] + tasks["fused"] and tasks["fused"] < tasks["unfused"] / 7
    a, b = Executor(scheduler="sync").compute(fused), Executor(scheduler="sync").compute(unfused)
    for field in ("n_rows", "loglik", "s0", "s1", "s2", "weight"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("n_chunks", [64, 70, 200])
def test_deeper_fusion_runs_whole_subtrees_with_the_same_bits(n_chunks, monkeypatch):
    """A task room for 64 chunks: subtrees of 64 chunks (split_every 8) run in one task, with the same bits."""
    rng = np.random.default_rng(3)
    X = da.from_array(rng.normal(size=(n_chunks * 5, 3)), chunks=(5, 3))
    payload = random_mixture(3, 3, seed=5)
    monkeypatch.setattr("dgmm.execution.passes.MIN_FUSED_TASKS", 1)
    monkeypatch.setattr("dgmm.execution.passes.FUSE_TASK_BYTES", 64 * 5 * 3 * 8)
    fused = build_pass(X, em_kernel, payload, 8)
    stats_tasks = [k for k in dict(fused.__dask_graph__()) if k[0].startswith(("stats-", "merge-"))]
    depths = [int(k[0].rsplit("-", 1)[1]) for k in stats_tasks]
    assert min(depths) == 2 and max(depths) == math.ceil(math.log(n_chunks, 8) - 1e-12)
    assert len([d for d in depths if d == 2]) == math.ceil(n_chunks / 64)
    monkeypatch.setattr("dgmm.execution.passes.FUSE_CHUNK_BYTES", 0)
    unfused = build_pass(X, em_kernel, payload, 8)
    a, b = Executor(scheduler="sync").compute(fused), Executor(scheduler="sync").compute(unfused)
    for field in ("n_rows", "loglik", "s0", "s1", "s2", "weight"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_fit_uses_the_current_client(mixture_data, cluster_client):
    X = da.from_array(mixture_data, chunks=(300, 3))
    counter = GraphCounter(cluster_client)
    with cluster_client.as_current():
        assert current_client() is cluster_client
        dgmm.GaussianMixture(3, tol=0.0, max_iter=3, random_state=0, cache="none", init_params="k-means++").fit(X)
    assert counter.count == 3 + 2  # a row sample, the init pass, 3 iterations
    counter.close()


def test_parquet_without_client_runs_on_a_local_cluster_that_is_closed(mixture_data, parquet_dir):
    path = parquet_dir(mixture_data, row_group_size=500, n_files=1)
    assert current_client() is None
    model = dgmm.GaussianMixture(3, tol=0.0, max_iter=5, random_state=0).fit(path)
    assert current_client() is None
    reference = dgmm.GaussianMixture(3, tol=0.0, max_iter=5, random_state=0).fit(
        da.from_array(mixture_data, chunks=(500, 3))
    )
    for attr in PARAM_ATTRS:
        np.testing.assert_array_equal(getattr(model, attr), getattr(reference, attr))
    labels = model.predict(path)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), reference.predict(mixture_data))


def test_nan_inside_a_dask_chunk_is_a_clear_error(mixture_data):
    X = mixture_data.copy()
    X[777, 1] = np.nan
    with pytest.raises(dgmm.DataError, match=r"input row 777, column 1 is nan"):
        dgmm.GaussianMixture(2, max_iter=2).fit(da.from_array(X, chunks=(100, 3)))
    model = dgmm.GaussianMixture(2, max_iter=2).fit(mixture_data)
    with pytest.raises(dgmm.DataError, match=r"input row 777, column 1 is nan"):
        model.predict(da.from_array(X, chunks=(100, 3))).compute()
