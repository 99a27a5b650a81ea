"""Classifier files: every class's mixture and the background model in one archive, exact round trips,
damaged or forged files refused as model files are."""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pytest

import dgmm
from dgmm.errors import ModelFileError
from dgmm.persist import formats, model_file

rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(c, 1.0, (200, 2)) for c in (0.0, 2.0, 4.0)])
y = np.repeat(np.array(["ann", "bob", "cy"]), 200)


@pytest.fixture(scope="module")
def classifier():
    return dgmm.GaussianMixtureClassifier(
        2, covariance_type="diag", ubm="fit", random_state=0, adapt="means,covariances", relevance_factor=4
    ).fit(X, y)


def assert_same(loaded, model):
    assert list(loaded.classes_) == list(model.classes_)
    np.testing.assert_array_equal(loaded.class_prior_, model.class_prior_)
    for a, b in zip(loaded.estimators_ + [loaded.ubm_], model.estimators_ + [model.ubm_]):
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            assert getattr(a, name).tobytes() == getattr(b, name).tobytes()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_ratio(X), model.score_ratio(X))


def test_round_trip_is_exact(classifier, tmp_path):
    classifier.save(tmp_path / "c.npz", extra={"corpus": "test"})
    loaded = dgmm.load_model(tmp_path / "c.npz")
    assert type(loaded) is dgmm.GaussianMixtureClassifier
    assert_same(loaded, classifier)
    params = loaded.get_params()
    assert (params["adapt"], params["relevance_factor"], params["n_components"]) == ("means,covariances", 4.0, 2)
    assert formats.read_metadata(tmp_path / "c.npz")["extra"] == {"corpus": "test"}
    integers = dgmm.GaussianMixtureClassifier(2, random_state=0, priors=[1, 2, 3]).fit(X, np.repeat([3, 1, 2], 200))
    integers.save(tmp_path / "i.npz")
    back = dgmm.load_model(tmp_path / "i.npz")
    assert back.classes_.tolist() == [1, 2, 3] and not hasattr(back, "ubm_")
    np.testing.assert_array_equal(back.predict(X), integers.predict(X))


def test_any_flipped_array_byte_and_forged_metadata_are_refused(classifier, tmp_path):
    path = tmp_path / "c.npz"
    classifier.save(path)
    content = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    assert len(infos) == 1 + 11 + 6  # metadata; the classes' arrays stacked by kind; the background model's six
    for info in infos:
        name_length, extra_length = struct.unpack("<HH", content[info.header_offset + 26 : info.header_offset + 30])
        position = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
        flipped = bytearray(content)
        flipped[position] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(ModelFileError, match="truncated or corrupt model file|checksum mismatch"):
            dgmm.load_model(path)
    # a forged file with a consistent checksum: every class is checked as a model file is
    path.write_bytes(content)
    arrays, metadata = read_raw(path)

    def with_array(name, edit):
        return lambda m, a: a.update({name: edit(a[name].copy())})

    forges = [
        (with_array("priors", lambda p: np.full_like(p, 0.5)), "priors"),
        (lambda m, a: m.update(classes=["a", "a", "b"]), "distinct"),
        (lambda m, a: m["mixture"].update(n_components=3), "differ"),
        (lambda m, a: (m.update(n_components=3), m["mixture"].update(n_components=3)), "shape"),
        (lambda m, a: m.update(format_version=3), "newer than this dgmm supports"),
        (with_array("n_iter", lambda n: n + 1), "n_iterations"),
        (with_array("n_rows_dropped", lambda n: n - 5), "out of range"),
        (with_array("weights", lambda w: w * np.array([[1.0], [2.0], [1.0]])), "class 1: weights sum"),
        (with_array("covariances", lambda c: -c), "class 0: covariance of component 0 is not positive"),
        (lambda m, a: m.update(classes=list(range(100_001))), "MAX_CLASSES"),
    ]
    for forge, message in forges:
        forged, forged_arrays = json.loads(json.dumps(metadata)), dict(arrays)
        forge(forged, forged_arrays)
        write_raw(path, forged_arrays, forged)
        with pytest.raises(ModelFileError, match=message):
            dgmm.load_model(path)


def read_raw(path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return arrays, json.loads(arrays.pop("metadata").tobytes())


def write_raw(path, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """An archive with a consistent checksum over ``arrays`` (in their order) and ``metadata``."""
    metadata = {**metadata, "sha256": model_file.checksum_of(arrays, metadata, list(arrays))}
    with open(path, "wb") as file:
        np.savez(file, metadata=np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8), **arrays)


def test_version_1_files_of_dgmm_0_2_are_still_read(classifier, tmp_path):
    """The layout dgmm 0.2 wrote, one set of model file members per class (``c<i>.<name>``), loads as before."""
    arrays, members = {}, []
    for i, mixture in enumerate(classifier.estimators_):
        member_arrays, member = model_file.contents(mixture, {})
        arrays.update({f"c{i}.{name}": value for name, value in member_arrays.items()})
        members.append(member)
    ubm_arrays, ubm = model_file.contents(classifier.ubm_, {})
    arrays.update({f"ubm.{name}": value for name, value in ubm_arrays.items()})
    metadata = {"format": "dgmm-classifier", "format_version": 1, "dgmm_version": "0.2.0", "classes": ["ann", "bob", "cy"],
                "priors": classifier.class_prior_.tolist(), "members": members, "ubm": ubm, "extra": {},
                "params": {"priors": "empirical", "relevance_factor": 4.0, "adapt": "means,covariances"}}  # fmt: skip
    write_raw(tmp_path / "v1.npz", arrays, metadata)
    assert_same(dgmm.load_model(tmp_path / "v1.npz"), classifier)


def test_thousands_of_classes_round_trip_bit_for_bit(tmp_path):
    """3,000 speakers MAP-adapted from one background model (one pass): the file holds 18 members whatever the
    number of classes, and every class comes back bit for bit, as do its scores."""
    n_classes, d = 3_000, 6
    world = np.random.default_rng(1)
    codes = np.repeat(np.arange(n_classes), 12)
    rows = world.normal(size=(codes.size, d)) + world.normal(scale=2.0, size=(n_classes, d))[codes]
    labels = np.asarray([f"spk{c:05d}" for c in codes])
    model = dgmm.GaussianMixtureClassifier(
        4, covariance_type="diag", ubm="fit", adapt="means", random_state=0, max_iter=5
    ).fit(rows, labels)
    path = tmp_path / "speakers.npz"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert len(archive.infolist()) == 18
    loaded = dgmm.load_model(path)
    assert len(loaded.estimators_) == n_classes
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_", "n_iter_"):
        np.testing.assert_array_equal(
            np.stack([np.asarray(getattr(m, name)) for m in loaded.estimators_]),
            np.stack([np.asarray(getattr(m, name)) for m in model.estimators_]),
            err_msg=name,
        )
    np.testing.assert_array_equal(loaded.class_prior_, model.class_prior_)
    np.testing.assert_array_equal(loaded.predict_log_proba(rows[:50]), model.predict_log_proba(rows[:50]))


def test_each_class_loads_only_its_own_format(classifier, tmp_path):
    """GaussianMixture.load and GaussianMixtureClassifier.load read their own format; the other is refused in one
    line naming what reads it (dgmm.load_model reads either)."""
    classifier.save(tmp_path / "c.npz")
    classifier.ubm_.save(tmp_path / "m.npz")
    assert type(dgmm.GaussianMixtureClassifier.load(tmp_path / "c.npz")) is dgmm.GaussianMixtureClassifier
    assert type(dgmm.GaussianMixture.load(tmp_path / "m.npz")) is dgmm.GaussianMixture
    with pytest.raises(ModelFileError, match="a classifier file, not one mixture; load it with dgmm.load_model"):
        dgmm.GaussianMixture.load(tmp_path / "c.npz")
    with pytest.raises(ModelFileError, match="one mixture, not a classifier; load it with dgmm.load_model"):
        dgmm.GaussianMixtureClassifier.load(tmp_path / "m.npz")
