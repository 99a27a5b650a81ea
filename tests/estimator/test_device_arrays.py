"""Array-API input left on its device: a whole fit on array-api-strict's "device1" (which refuses
conversion to NumPy, as CuPy's GPU arrays do) equals the NumPy fit, and predictions stay on the device."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.data.devices import cuda_devices
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.kernels.gaussian import COVARIANCE_TYPES

xps = pytest.importorskip("array_api_strict")
DEVICE = xps.Device("device1")


@pytest.fixture(scope="module")
def data():
    X, _ = sample_mixture(random_mixture(3, 4, seed=2), 4000, seed=2)
    return X + 50.0


def on_device(values: np.ndarray):
    return xps.asarray(values, device=DEVICE)


def assert_same_fit(device, host, rtol=1e-10):
    assert device.n_iter_ == host.n_iter_ and device.converged_ == host.converged_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(device, name), getattr(host, name), rtol=rtol, atol=1e-12, err_msg=name)
    assert device.lower_bound_ == pytest.approx(host.lower_bound_, rel=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["k-means++", "split"])
def test_a_fit_on_the_device_equals_the_numpy_fit(data, covariance_type, init_params):
    settings = dict(
        n_components=3,
        covariance_type=covariance_type,
        init_params=init_params,
        random_state=0,
        chunk_rows=1500,
        n_init=2 if init_params == "k-means++" else 1,
    )
    assert_same_fit(dgmm.GaussianMixture(**settings).fit(on_device(data)), dgmm.GaussianMixture(**settings).fit(data))


@pytest.mark.parametrize("init_params", ["kmeans", "k-means||", "random", "random_from_data"])
def test_every_other_initialisation_on_the_device(data, init_params):
    settings = dict(n_components=3, init_params=init_params, random_state=1, chunk_rows=999)
    assert_same_fit(dgmm.GaussianMixture(**settings).fit(on_device(data)), dgmm.GaussianMixture(**settings).fit(data))


def test_predictions_stay_on_the_device(data):
    model = dgmm.GaussianMixture(3, init_params="k-means++", random_state=0).fit(data)
    X = on_device(data)
    labels, proba, log_density = model.predict(X), model.predict_proba(X), model.score_samples(X)
    for output in (labels, proba, log_density):
        assert isinstance(output, type(X)) and output.device == DEVICE
    to_host = lambda a: np.asarray(a.to_device(xps.Device("CPU_DEVICE")))  # noqa: E731
    np.testing.assert_array_equal(to_host(labels), model.predict(data))
    np.testing.assert_allclose(to_host(proba), model.predict_proba(data), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(to_host(log_density), model.score_samples(data), rtol=1e-12)
    assert model.score(X) == pytest.approx(model.score(data), rel=1e-12)
    assert model.bic(X) == pytest.approx(model.bic(data), rel=1e-12)


def test_weights_nan_rows_and_float32_on_the_device(data):
    weights = np.random.default_rng(3).integers(0, 3, len(data)).astype(float)
    settings = dict(n_components=3, init_params="k-means++", random_state=0)
    host = dgmm.GaussianMixture(**settings).fit(data, sample_weight=weights)
    assert_same_fit(dgmm.GaussianMixture(**settings).fit(on_device(data), sample_weight=on_device(weights)), host)
    assert_same_fit(dgmm.GaussianMixture(**settings).fit(on_device(data), sample_weight=weights), host)
    dirty = data.copy()
    dirty[[7, 300], 1] = np.nan
    with pytest.raises(dgmm.DataError, match=r"input row 7, column 1 is nan; .*nan_policy='drop'"):
        dgmm.GaussianMixture(**settings).fit(on_device(dirty))
    dropping = dgmm.GaussianMixture(**settings, nan_policy="drop")
    assert_same_fit(dropping.fit(on_device(dirty)), dgmm.GaussianMixture(**settings, nan_policy="drop").fit(dirty))
    assert dropping.n_rows_dropped_ == 2
    single = dgmm.GaussianMixture(**settings, dtype="float32").fit(on_device(data.astype(np.float32)))
    np.testing.assert_allclose(single.means_, dgmm.GaussianMixture(**settings).fit(data).means_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_split_merge_on_the_device_equals_the_numpy_fit(covariance_type):
    X, _ = sample_mixture(random_mixture(5, 3, seed=4, separation=4.0), 3000, seed=4)  # room for moves
    settings = dict(
        n_components=5,
        covariance_type=covariance_type,
        init_params="random_from_data",
        random_state=3,
        split_merge=2,
        chunk_rows=1000,
    )
    host = dgmm.GaussianMixture(**settings).fit(X)
    device = dgmm.GaussianMixture(**settings).fit(on_device(X))
    assert [m[:3] for m in device.split_merge_moves_] == [m[:3] for m in host.split_merge_moves_]
    assert device.split_merge_moves_  # a move was kept
    np.testing.assert_allclose(
        [m[3:] for m in device.split_merge_moves_], [m[3:] for m in host.split_merge_moves_], rtol=1e-12
    )
    assert_same_fit(device, host)


@pytest.mark.parametrize("criterion", ["bic", "heldout"])
def test_select_on_the_device_equals_select_on_numpy(data, criterion):
    kwargs = dict(covariance_types=["full", "diag"], criterion=criterion, random_state=0, chunk_rows=1000)
    host = dgmm.select(data, [2, 3], **kwargs)
    device = dgmm.select(on_device(data), [2, 3], **kwargs)
    assert (device.best.n_components, device.best.covariance_type) == (
        host.best.n_components,
        host.best.covariance_type,
    )
    assert device.passes == host.passes
    for got, want in zip(device.table, host.table):
        for key in ("log_likelihood", "bic", "heldout_log_likelihood"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, err_msg=key)
    np.testing.assert_allclose(device.best.means_, host.best.means_, rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def speakers():
    """Three classes of rows (one of them weighted 0 in places), a NaN row, and a group per 50 rows."""
    X, labels = sample_mixture(random_mixture(6, 3, seed=4), 3000, seed=4)
    y = np.array(["ann", "bob", "cy"])[labels % 3]
    weights = np.random.default_rng(1).integers(0, 3, len(X)).astype(float)
    weights[y == "bob"] = np.maximum(weights[y == "bob"], 1.0)
    return X + 20.0, y, weights


def assert_same_classifier(device, host, rtol=1e-9):
    np.testing.assert_array_equal(device.classes_, host.classes_)
    np.testing.assert_allclose(device.class_prior_, host.class_prior_, rtol=1e-12)
    for got, want in zip(device.estimators_, host.estimators_):
        assert got.n_iter_ == want.n_iter_
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=rtol, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_the_classifier_on_the_device_equals_the_numpy_fit(speakers, covariance_type, weighted):
    X, y, weights = speakers
    w = weights if weighted else None
    settings = dict(n_components=2, covariance_type=covariance_type, random_state=0, chunk_rows=1000, n_init=2)
    device = dgmm.GaussianMixtureClassifier(**settings).fit(on_device(X), y, sample_weight=w)
    host = dgmm.GaussianMixtureClassifier(**settings).fit(X, y, sample_weight=w)
    assert_same_classifier(device, host)
    assert device.passes_ == host.passes_
    proba = device.predict_proba(on_device(X))
    assert isinstance(proba, type(on_device(X))) and proba.device == DEVICE  # stays on the device
    np.testing.assert_allclose(
        np.asarray(proba.to_device(xps.Device("CPU_DEVICE"))), host.predict_proba(X), rtol=1e-9, atol=1e-12
    )
    labels = device.predict(on_device(X))  # class labels are strings: on the host
    np.testing.assert_array_equal(labels, host.predict(X))
    decision = device.decision_function(on_device(X))
    np.testing.assert_allclose(
        np.asarray(decision.to_device(xps.Device("CPU_DEVICE"))), host.decision_function(X), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("split_merge", [0, 2])
def test_background_model_adaptation_and_group_decisions_on_the_device(speakers, split_merge):
    X, y, weights = speakers
    settings = dict(
        n_components=3, random_state=0, chunk_rows=1000, ubm="fit", adapt=["means", "weights"], split_merge=split_merge
    )
    device = dgmm.GaussianMixtureClassifier(**settings).fit(on_device(X), y, sample_weight=weights)
    host = dgmm.GaussianMixtureClassifier(**settings).fit(X, y, sample_weight=weights)
    assert_same_classifier(device, host)
    np.testing.assert_allclose(device.ubm_.means_, host.ubm_.means_, rtol=1e-9)
    ratio = device.score_ratio(on_device(X))
    np.testing.assert_allclose(
        np.asarray(ratio.to_device(xps.Device("CPU_DEVICE"))), host.score_ratio(X), rtol=1e-9, atol=1e-9
    )
    groups = np.arange(len(X)) // 50
    got = device.predict_groups(on_device(X), groups, ratio=True)
    want = host.predict_groups(X, groups, ratio=True)
    np.testing.assert_array_equal(got["class"], want["class"])
    np.testing.assert_allclose(got["score_bob"], want["score_bob"], rtol=1e-9)


def test_dropped_rows_on_the_device_are_named_as_on_the_cpu(speakers):
    X, y, _ = speakers
    X = X.copy()
    X[7, 1] = np.nan
    model = dgmm.GaussianMixtureClassifier(2, random_state=0, nan_policy="drop").fit(X, y)
    on = dgmm.GaussianMixtureClassifier(2, random_state=0, nan_policy="drop").fit(on_device(X), y)
    assert_same_classifier(on, model)
    with pytest.raises(dgmm.DataError, match="row 7 of this block holds nulls or NaN"):
        on.predict(on_device(X))
    proba = np.asarray(on.predict_proba(on_device(X)).to_device(xps.Device("CPU_DEVICE")))
    assert np.isnan(proba[7]).all() and not np.isnan(np.delete(proba, 7, axis=0)).any()


def test_given_starts_run_on_the_device(data):
    means = dgmm.GaussianMixture(3, init_params="k-means++", random_state=0).fit(data).means_
    given = dgmm.GaussianMixture(3, means_init=means).fit(on_device(data))  # a start given: no k-means pass
    assert_same_fit(given, dgmm.GaussianMixture(3, means_init=means).fit(data))


def test_device_cpu_copies_to_numpy_and_cuda_needs_cupy(data):
    host = dgmm.GaussianMixture(3, random_state=0).fit(data)
    copied = dgmm.GaussianMixture(3, random_state=0, device="cpu").fit(on_device(data))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(copied, name), getattr(host, name))
    assert isinstance(copied.predict(data), np.ndarray)
    y = (data[:, 0] > np.median(data[:, 0])).astype(int)
    classes = dgmm.GaussianMixtureClassifier(2, random_state=0, device="cpu").fit(on_device(data), y)
    np.testing.assert_array_equal(
        classes.estimators_[1].means_,
        dgmm.GaussianMixtureClassifier(2, random_state=0).fit(data, y).estimators_[1].means_,
    )
    assert dgmm.select(on_device(data), [2, 3], device="cpu").best.n_components in (2, 3)
    if not cuda_devices():
        with pytest.raises(dgmm.InputTypeError, match="device='cuda' needs CuPy and a GPU it sees"):
            dgmm.GaussianMixture(3, device="cuda").fit(data)
    if not cuda_devices():
        with pytest.raises(dgmm.InputTypeError, match="device='cuda' needs CuPy and a GPU it sees"):
            dgmm.GaussianMixtureClassifier(2, device="cuda").fit(data, np.arange(len(data)) % 2)
