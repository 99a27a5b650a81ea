"""Model files: exact round trips, atomic writes, and every damaged, forged or foreign file refused."""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dgmm
import dgmm.data.publish
from dgmm import load_model
from dgmm.errors import ModelFileError, NotFittedError, ParameterError
from dgmm.persist import model_file as model_io
from dgmm.persist.formats import read_metadata, save_model
from dgmm.testing import COVARIANCE_TYPES

FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")
NAMES = ["längd", "b c"]


def make_data(n: int = 300, seed: int = 0) -> np.ndarray:
    """Three separated 2-D clusters."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 2)) * [1.0, 0.7]


X = make_data()


def fit(covariance_type: str = "full", names: bool = False, **params) -> dgmm.GaussianMixture:
    data = pd.DataFrame(X, columns=NAMES) if names else X
    params = {"random_state": 0, **params}
    return dgmm.GaussianMixture(3, covariance_type=covariance_type, **params).fit(data)


def assert_identical(loaded: dgmm.GaussianMixture, model: dgmm.GaussianMixture) -> None:
    """Bitwise equal arrays, equal scalars, parameters and feature names."""
    for name in FITTED_ARRAYS:
        a, b = getattr(loaded, name), getattr(model, name)
        assert a.dtype == b.dtype == np.float64 and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    assert loaded.get_params() == model.get_params()
    assert (loaded.converged_, loaded.n_iter_, loaded.lower_bound_, loaded.n_features_in_) == (
        model.converged_, model.n_iter_, model.lower_bound_, model.n_features_in_,
    )  # fmt: skip
    assert isinstance(loaded.lower_bounds_, list) and loaded.lower_bounds_ == list(model.lower_bounds_)
    assert hasattr(loaded, "feature_names_in_") == hasattr(model, "feature_names_in_")
    if hasattr(model, "feature_names_in_"):
        assert loaded.feature_names_in_.dtype == object
        assert list(loaded.feature_names_in_) == list(model.feature_names_in_)


def read_archive(path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the decoded metadata of a model file."""
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return arrays, json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))


def write_archive(path, arrays: dict, metadata: dict, rehash: bool = True) -> None:
    """Write a (possibly forged) model file; ``rehash`` makes its checksum consistent again."""
    metadata = dict(metadata)
    if rehash:
        metadata["sha256"] = model_io.checksum_of(arrays, metadata)
    with open(path, "wb") as file:
        np.savez(file, metadata=np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8), **arrays)


@pytest.fixture
def saved(tmp_path):
    """A full-covariance model with feature names, saved; returns (model, path)."""
    model = fit("full", names=True)
    path = tmp_path / "model.npz"
    save_model(model, path)
    return model, path


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("names", [False, True], ids=["array", "named"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_is_exact_and_predicts_bit_for_bit(tmp_path, covariance_type, names):
    model = fit(covariance_type, names=names)
    path = tmp_path / "model.npz"
    save_model(model, path)
    loaded = load_model(path)
    assert_identical(loaded, model)
    data = pd.DataFrame(X, columns=NAMES) if names else X
    for method in ("predict", "predict_proba", "score_samples"):
        expected, actual = getattr(model, method)(data), getattr(loaded, method)(data)
        assert actual.dtype == expected.dtype and actual.tobytes() == expected.tobytes(), method


def test_file_layout_and_metadata(saved):
    model, path = saved
    arrays, metadata = read_archive(path)
    assert set(arrays) == {"weights", "means", "covariances", "precisions_cholesky", "lower_bounds", "feature_names"}
    assert all(arrays[name].dtype == np.float64 for name in model_io.NUMERIC)
    assert arrays["feature_names"].dtype.kind == "U" and arrays["feature_names"].tolist() == NAMES
    with np.load(path) as npz:
        assert npz["metadata"].dtype == np.uint8 and npz["metadata"].ndim == 1
    assert metadata["format"] == "dgmm-model" and metadata["format_version"] == model_io.FORMAT_VERSION == 1
    assert metadata["dgmm_version"] == dgmm.__version__ and len(metadata["sha256"]) == 64
    assert (metadata["covariance_type"], metadata["n_components"], metadata["n_features"]) == ("full", 3, 2)
    assert metadata["lower_bound"] == model.lower_bound_ and metadata["n_iter"] == model.n_iter_
    assert set(metadata["params"]) == set(model_io.PARAMS)  # never client, weights_init, means_init, ...
    assert metadata["extra"] == {} and read_metadata(path) == metadata


def test_extra_round_trips(tmp_path):
    model = fit("diag")
    extra = {"fingerprint": "sha256:0f3a", "rows": 300, "columns": ("a", "b"), "nested": {"x": 1.5, "n": None}}
    save_model(model, tmp_path / "model.npz", extra=extra)
    assert read_metadata(tmp_path / "model.npz")["extra"] == {**extra, "columns": ["a", "b"]}  # a tuple is a list
    assert_identical(load_model(tmp_path / "model.npz"), model)


def test_unfitted_lower_bound_and_random_state_round_trip(tmp_path):
    model = fit("tied", max_iter=0)  # lower_bound_ is -inf, no iterations
    assert model.lower_bound_ == -np.inf and model.lower_bounds_ == []
    save_model(model, tmp_path / "m0.npz")
    assert read_archive(tmp_path / "m0.npz")[1]["lower_bound"] is None
    assert_identical(load_model(tmp_path / "m0.npz"), model)

    seeded = fit("spherical", random_state=np.random.RandomState(0))
    save_model(seeded, tmp_path / "rs.npz")
    loaded = load_model(tmp_path / "rs.npz")
    assert loaded.random_state is None  # a RandomState is not stored
    assert loaded.means_.tobytes() == seeded.means_.tobytes()


def test_path_is_used_exactly_as_given(tmp_path):
    save_model(fit(), str(tmp_path / "model.bin"))
    assert os.listdir(tmp_path) == ["model.bin"]  # no ".npz" appended, no temporary left
    assert load_model(str(tmp_path / "model.bin")).n_components == 3


def test_save_refuses_unfitted_model_bad_extra_and_inconsistent_model(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        save_model(dgmm.GaussianMixture(2), tmp_path / "m.npz")
    with pytest.raises(ParameterError, match="extra must be a JSON-serialisable dict"):
        save_model(fit(), tmp_path / "m.npz", extra={"nan": float("nan")})
    model = fit()
    model.weights_ = model.weights_ * 0.5
    with pytest.raises(ModelFileError, match=r"refusing to save an inconsistent model: weights sum to 0\.5, not 1"):
        save_model(model, tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- atomic writes
def test_failed_serialisation_leaves_the_old_file_intact(saved):
    _, path = saved
    before = path.read_bytes()
    with pytest.raises(ParameterError, match="extra must be a JSON-serialisable dict"):
        save_model(fit("diag"), path, extra={"when": object()}, overwrite=True)
    assert path.read_bytes() == before and os.listdir(path.parent) == ["model.npz"]


@pytest.mark.parametrize("step", ["savez", "fsync"])
def test_failed_write_leaves_the_old_file_intact_and_no_temporary(saved, monkeypatch, step):
    model, path = saved
    before = path.read_bytes()

    def fail(file, *args, **kwargs):
        if step == "savez":
            file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_io.np if step == "savez" else dgmm.data.publish.os, step, fail)
    with pytest.raises(OSError, match="No space left on device"):
        save_model(fit("spherical"), path, overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(path.parent) == ["model.npz"]
    assert_identical(load_model(path), model)


def test_overwriting_replaces_the_model_only_when_asked(saved):
    model, path = saved
    other = fit("diag")
    with pytest.raises(dgmm.DataError, match="model.npz: output exists; remove it or pass --overwrite"):
        save_model(other, path)
    assert_identical(load_model(path), model)
    save_model(other, path, overwrite=True)
    assert_identical(load_model(path), other)
    assert os.listdir(path.parent) == ["model.npz"]


# ---------------------------------------------------------------------- damaged and foreign files
@pytest.mark.parametrize("fraction", [0.5, None], ids=["half", "10-bytes"])
def test_truncated_file(saved, fraction):
    _, path = saved
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * fraction) if fraction else 10])
    with pytest.raises(ModelFileError, match=r"model\.npz: truncated or corrupt model file \(BadZipFile"):
        load_model(path)


def test_flipped_byte_in_the_middle(saved):
    model, path = saved
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    try:
        loaded = load_model(path)
    except ModelFileError as exc:
        assert "truncated or corrupt model file" in str(exc) or "checksum mismatch" in str(exc)
    else:  # the byte lies in a zip header field that zipfile ignores: the model is untouched
        assert_identical(loaded, model)


def test_flipped_byte_in_any_array_is_detected(saved):
    model, path = saved
    content = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    assert len(infos) == 7
    for info in infos:
        name_length, extra_length = struct.unpack("<HH", content[info.header_offset + 26 : info.header_offset + 30])
        start = info.header_offset + 30 + name_length + extra_length  # the member's .npy bytes
        for position in (start, start + info.compress_size // 2, start + info.compress_size - 1):
            flipped = bytearray(content)
            flipped[position] ^= 0x01
            path.write_bytes(bytes(flipped))
            with pytest.raises(ModelFileError, match="truncated or corrupt model file|checksum mismatch"):
                load_model(path)


def test_flipping_any_byte_refuses_or_changes_nothing(saved):
    """Every 11th byte of the file flipped: an error, or (zip header fields zipfile ignores) the same model."""
    model, path = saved
    content = path.read_bytes()
    refused = 0
    for position in range(0, len(content), 11):
        flipped = bytearray(content)
        flipped[position] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            loaded = load_model(path)
        except ModelFileError:
            refused += 1
            continue
        assert_identical(loaded, model)
    assert refused > len(content) // 11 * 0.6


def test_missing_file_directory_text_file_and_npy_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"nothing\.npz: no such model file"):
        load_model(tmp_path / "nothing.npz")
    with pytest.raises(ModelFileError, match="is a directory, not a model file"):
        load_model(tmp_path)
    (tmp_path / "notes.txt").write_text("weights: 0.5 0.5\n")
    with pytest.raises(ModelFileError, match=r"notes\.txt: not a dgmm model file \(not an \.npz archive\)"):
        load_model(tmp_path / "notes.txt")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match=r"not an \.npz archive"):
        load_model(tmp_path / "array.npy")
    with open(tmp_path / "other.npz", "wb") as file:
        np.savez(file, a=np.zeros(3))
    with pytest.raises(ModelFileError, match=r"not a dgmm model file \(the archive has no 'metadata' array\)"):
        load_model(tmp_path / "other.npz")


UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Trap:
    """Unpickling this records it: proof that the loader never unpickles."""

    def __reduce__(self):
        return (_record_unpickling, ("trap",))


@pytest.mark.parametrize("member", ["means", "metadata"])
def test_object_arrays_are_refused_not_unpickled(saved, member):
    _, path = saved
    arrays, metadata = read_archive(path)
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    arrays[member] = np.array([Trap(), Trap()], dtype=object)
    with open(path, "wb") as file:
        np.savez(file, allow_pickle=True, **arrays)
    UNPICKLED.clear()
    with pytest.raises(ModelFileError, match=f"array '{member}' holds Python objects"):
        load_model(path)
    assert UNPICKLED == []
    with np.load(path, allow_pickle=True) as npz:  # the trap is real: unpickling would have fired it
        npz[member]
    assert UNPICKLED == ["trap", "trap"]


def _set(mapping: dict, key: str, value) -> None:
    mapping[key] = value


def _indefinite(arrays: dict, metadata: dict) -> None:
    arrays["covariances"][1] = [[1.0, 2.0], [2.0, 1.0]]


def _asymmetric(arrays: dict, metadata: dict) -> None:
    arrays["covariances"][2, 0, 1] += 1e-3


def _unknown_covariance_type(arrays: dict, metadata: dict) -> None:
    metadata["covariance_type"] = metadata["params"]["covariance_type"] = "banana"


# (covariance type, edit of (arrays, metadata), recompute the checksum?, expected message)
FORGERIES = {
    "changed-mean": ("full", lambda a, m: a["means"].__setitem__((0, 0), a["means"][0, 0] + 1e-9), False,
                     "checksum mismatch: the file was modified after it was written"),
    # n_iter fixes the length of lower_bounds, checked (with every shape) before the checksum can be
    "changed-n_iter": ("full", lambda a, m: _set(m, "n_iter", m["n_iter"] + 1), False,
                       r"array 'lower_bounds' has shape \(\d+,\), expected \(\d+,\) for n_iter=\d+"),
    "changed-lower_bound": ("full", lambda a, m: _set(m, "lower_bound", m["lower_bound"] + 1.0), False,
                            "checksum mismatch"),
    "version-2": ("full", lambda a, m: _set(m, "format_version", 2), True,
                  r"model format version 2 is newer than this dgmm supports \(1\); upgrade dgmm"),
    "version-0": ("full", lambda a, m: _set(m, "format_version", 0), True, "unknown model format version 0"),
    "format": ("full", lambda a, m: _set(m, "format", "sklearn-model"), False,
               r"not a dgmm model file \(format 'sklearn-model', expected 'dgmm-model'\)"),
    "missing-array": ("full", lambda a, m: a.pop("covariances"), False, "missing array 'covariances'"),
    "missing-key": ("full", lambda a, m: m.pop("n_iter"), True, "metadata lacks key 'n_iter'"),
    "bad-type": ("full", lambda a, m: _set(m, "converged", "yes"), True, "metadata converged='yes' is not bool"),
    "unknown-param": ("full", lambda a, m: _set(m["params"], "client", None), True,
                      "metadata params holds an unknown key 'client'"),
    "covariance-type": ("diag", _unknown_covariance_type, True, "unknown covariance_type 'banana'"),
    "unknown-key": ("full", lambda a, m: _set(m, "surprise", 1), True, "metadata holds an unknown key 'surprise'"),
    "extra-type": ("full", lambda a, m: _set(m, "extra", [1]), True, r"metadata extra=\[1\] is not dict"),
    "shape": ("full", lambda a, m: _set(a, "covariances", np.ones((3, 2))), True,
              r"array 'covariances' has shape \(3, 2\), expected \(3, 2, 2\) for covariance_type 'full' "
              r"with n_components=3, n_features=2"),
    "dtype": ("full", lambda a, m: _set(a, "means", a["means"].astype(np.int64)), True,
              "array 'means' has dtype int64, expected float64"),
    "names": ("full", lambda a, m: _set(a, "feature_names", np.array(["a"])), True, "array 'feature_names' has"),
    "nan": ("diag", lambda a, m: a["means"].__setitem__((1, 1), np.nan), True, "array 'means' holds NaN or infinite"),
    "weights-sum": ("full", lambda a, m: _set(a, "weights", np.array([0.3, 0.3, 0.3])), True,
                    r"weights sum to 0\.9, not 1"),
    "negative-weight": ("full", lambda a, m: _set(a, "weights", np.array([1.2, -0.1, -0.1])), True,
                        "weights must be non-negative, but component 1"),
    "indefinite": ("full", _indefinite, True, "covariance of component 1 is not symmetric positive definite"),
    "asymmetric": ("full", _asymmetric, True, "covariance of component 2 is not symmetric positive definite"),
    "tied-indefinite": ("tied", lambda a, m: _set(a, "covariances", np.array([[1.0, 2.0], [2.0, 1.0]])), True,
                        "the tied covariance is not symmetric positive definite"),
    "negative-variance": ("diag", lambda a, m: a["covariances"].__setitem__((1, 0), -1.0), True,
                          "covariance of component 1 is not positive"),
    "precisions": ("spherical", lambda a, m: _set(a, "precisions_cholesky", a["precisions_cholesky"] * (1 + 1e-6)),
                   True, "precisions_cholesky does not match the covariances"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FORGERIES))
def test_forged_or_tampered_files_are_refused(tmp_path, case):
    covariance_type, edit, rehash, message = FORGERIES[case]
    path = tmp_path / "model.npz"
    save_model(fit(covariance_type), path)
    arrays, metadata = read_archive(path)
    original = metadata["sha256"]
    edit(arrays, metadata)
    write_archive(path, arrays, {**metadata, "sha256": original}, rehash=rehash)
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_unforged_rewrite_loads(saved):
    """The forging helpers themselves produce a loadable file when nothing is changed."""
    model, path = saved
    write_archive(path, *read_archive(path))
    assert_identical(load_model(path), model)


@pytest.mark.parametrize("metadata", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"format": "dgmm-model", "x": NaN}'])
def test_undecodable_metadata(saved, metadata):
    _, path = saved
    arrays, _ = read_archive(path)
    with open(path, "wb") as file:
        np.savez(file, metadata=np.frombuffer(metadata, dtype=np.uint8), **arrays)
    with pytest.raises(ModelFileError, match="metadata is not (valid UTF-8 JSON|a JSON object)"):
        load_model(path)


# ---------------------------------------------------------------------- fuzzing
@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=2048), st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b)))
def test_random_bytes_raise_only_model_file_error(content):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.npz")
        with open(path, "wb") as file:
            file.write(content)
        with pytest.raises(ModelFileError, match=r"model\.npz: "):
            load_model(path)


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    model = fit("full", names=True)
    path = tmp_path_factory.mktemp("fuzz") / "model.npz"
    save_model(model, path, extra={"fingerprint": "abc"})
    return model, path.read_bytes()


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_mutated_file_loads_identically_or_raises_model_file_error(model_bytes, data):
    model, content = model_bytes
    start = data.draw(st.integers(0, len(content) - 1), label="start")
    stop = data.draw(st.integers(start, min(len(content), start + 64)), label="stop")
    mutated = content[:start] + data.draw(st.binary(max_size=64), label="replacement") + content[stop:]
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.npz")
        with open(path, "wb") as file:
            file.write(mutated)
        try:
            loaded, extra = load_model(path), read_metadata(path)["extra"]
        except ModelFileError as exc:
            assert str(exc).startswith(f"{path}: ")
            return
    assert_identical(loaded, model)
    assert extra == {"fingerprint": "abc"}


def test_estimator_save_and_load_wrappers(tmp_path):
    import dgmm

    X = np.random.default_rng(0).normal(size=(200, 2))
    model = dgmm.GaussianMixture(2, random_state=0).fit(X)
    model.save(tmp_path / "m.npz")
    loaded = dgmm.GaussianMixture.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.means_, model.means_)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
