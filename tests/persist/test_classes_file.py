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
    assert len(infos) == 1 + 4 * 6  # metadata; three classes and the background model, six arrays each
    for info in infos:
        name_length, extra_length = struct.unpack("<HH", content[info.header_offset + 26 : info.header_offset + 30])
        position = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
        flipped = bytearray(content)
        flipped[position] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(ModelFileError, match="truncated or corrupt model file|checksum mismatch"):
            dgmm.load_model(path)
    # a forged file with a consistent checksum: the members are checked as model files are
    path.write_bytes(content)
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    metadata = json.loads(arrays.pop("metadata").tobytes())
    for forge, message in [
        (lambda m: m.update(priors=[0.5, 0.5, 0.5]), "priors"),
        (lambda m: m.update(classes=["a", "a", "b"]), "distinct"),
        (lambda m: m["members"][1].update(n_components=3), "shape|differ"),
        (lambda m: m.update(format_version=2), "newer than this dgmm supports"),
    ]:
        forged = json.loads(json.dumps(metadata))
        forge(forged)
        forged["sha256"] = model_file.checksum_of(arrays, forged, list(arrays))
        with open(path, "wb") as file:
            np.savez(file, metadata=np.frombuffer(json.dumps(forged).encode(), dtype=np.uint8), **arrays)
        with pytest.raises(ModelFileError, match=message):
            dgmm.load_model(path)
