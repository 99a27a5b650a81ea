"""Property-based fuzzing of everything dgmm parses from disk: model files, checkpoints and YAML configs.

Whatever the bytes, the parsers only ever raise their documented error (ModelFileError, CheckpointError,
ConfigError), with a one-line message naming the file; never KeyError, TypeError, a numpy ValueError,
zipfile.BadZipFile, UnicodeDecodeError, RecursionError or a hang. Deterministic: derandomized, no database.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dgmm
from dgmm.cli.config import FIT_SETTINGS, read_yaml, resolve
from dgmm.errors import CheckpointError, ConfigError, DgmmError, ModelFileError
from dgmm.estimator.files import load_model, load_model_with_metadata
from dgmm.persist import model_file as model_io
from dgmm.persist.checkpoint import Checkpoint
from dgmm.persist.formats import read_metadata, save_model

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


def fuzz(max_examples: int) -> Callable:
    return settings(FUZZ, max_examples=max_examples)


# ------------------------------------------------------------------ strategies
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))  # fmt: skip
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=16)  # fmt: skip
DTYPES = ["<f8", ">f8", "<f4", "<f2", "<c16", "<i8", "<i4", "<u1", "|b1", "<U3", "<U1", "|S4", "<M8[s]", "<m8[s]",
          "|V8", [("a", "<f8"), ("b", "<i4")], "O"]  # fmt: skip
SHAPES = st.lists(st.integers(0, 4), max_size=3).map(tuple)
MEMBER_NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/\\"), min_size=1, max_size=8
)  # zip-storable: no NUL or separators, UTF-8 encodable


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """A small array of a random dtype and shape, with random bytes or special float values."""
    dtype, shape = np.dtype(draw(st.sampled_from(DTYPES))), draw(SHAPES)
    if dtype.hasobject:
        return np.array(draw(st.lists(JSON_SCALARS, min_size=1, max_size=3)) + [None], dtype=object)
    if dtype.kind == "f" and draw(st.booleans()):
        values = st.sampled_from([0.0, -1.0, 1.0, 1e-300, 1e300, math.nan, math.inf, -math.inf, 0.5])
        with np.errstate(over="ignore"):  # 1e300 as float16 or float32 is inf: fine
            return np.array(draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape))),
                            dtype=dtype).reshape(shape)  # fmt: skip
    raw = draw(st.binary(min_size=math.prod(shape) * dtype.itemsize, max_size=math.prod(shape) * dtype.itemsize))
    if dtype.kind == "U":  # code points beyond U+10FFFF make NumPy itself fail (SystemError) on any use of the array
        return (np.frombuffer(raw, "<u4") % 0x110000).astype("<u4").view(dtype).reshape(shape)
    return np.frombuffer(raw, dtype).reshape(shape).copy()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def json_array(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def zip_bytes(members: dict[str, bytes], compress: bool) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def mutate(value: Any, draw: st.DrawFn, depth: int = 0) -> Any:
    """``value`` (JSON) with one random change somewhere: a replaced, removed or added entry."""
    if isinstance(value, dict) and value and depth < 4 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(value[key], draw, depth + 1)}
    if isinstance(value, dict):
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove" and value:
            key = draw(st.sampled_from(sorted(value)))
            return {k: v for k, v in value.items() if k != key}
        if action == "add":
            return {**value, draw(st.text(max_size=8)): draw(JSON)}
    return draw(JSON)


def write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def assert_documented(call: Callable[[], Any], error: type[DgmmError], path: Path | str) -> Any:
    """``call()``'s value, or None when it raised ``error`` with a one-line message naming ``path``.

    Any other exception propagates and fails the test.
    """
    try:
        return call()
    except error as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
        return None


# ------------------------------------------------------------------ model files
class Quiet(tuple):
    """A fixture value that hypothesis prints briefly in a failure report."""

    def __repr__(self) -> str:
        return f"<{len(self)} items>"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def model_file(folder) -> tuple[dgmm.GaussianMixture, bytes, dict[str, np.ndarray], dict[str, Any]]:
    """A fitted model with feature names: the object, its file's bytes, its arrays and metadata."""
    X = np.random.default_rng(0).normal(size=(200, 2)) + np.repeat([[0, 0], [6, 0]], 100, axis=0)
    import pandas as pd

    model = dgmm.GaussianMixture(2, random_state=0).fit(pd.DataFrame(X, columns=["a", "b"]))
    path = folder / "valid.npz"
    save_model(model, path, extra={"input": {"files": ["x"], "n_rows": 200}})
    with np.load(path) as npz:
        content = {name: npz[name] for name in npz.files}
    metadata = json.loads(content.pop("metadata").tobytes())
    return Quiet((model, path.read_bytes(), content, metadata))


def load_all(path: Path) -> None:
    """Every model reader on ``path``: only ModelFileError, and all agree."""
    outcomes = [assert_documented(lambda f=f: f(path), ModelFileError, path)
                for f in (load_model, read_metadata, load_model_with_metadata)]  # fmt: skip
    assert len({outcome is None for outcome in outcomes}) == 1, outcomes


@fuzz(200)
@given(st.binary(max_size=4096) | st.binary(max_size=4096).map(lambda b: b"PK\x03\x04" + b)
       | st.binary(max_size=512).map(lambda b: b"\x93NUMPY" + b))  # fmt: skip
def test_model_loaders_on_random_bytes(folder, content):
    load_all(write(folder, "random.npz", content))


@fuzz(200)
@given(data=st.data())
def test_model_loaders_on_truncated_or_flipped_files(folder, model_file, data):
    model, content, _, _ = model_file
    if data.draw(st.booleans(), label="truncate"):
        damaged = content[: data.draw(st.integers(0, len(content) - 1), label="length")]
    else:
        damaged = bytearray(content)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            at = data.draw(st.integers(0, len(content) - 1), label="at")
            damaged[at] ^= data.draw(st.integers(1, 255), label="xor")
    path = write(folder, "damaged.npz", bytes(damaged))
    loaded = assert_documented(lambda: load_model(path), ModelFileError, path)
    if loaded is not None:  # a flip the format ignores (zip padding, timestamps): the same model
        np.testing.assert_array_equal(loaded.means_, model.means_)
    load_all(path)


@fuzz(150)
@given(data=st.data())
def test_model_loaders_on_random_npz_archives(folder, data):
    """Valid zip archives of random members: names, dtypes (pickles too), shapes, and random JSON metadata."""
    members = {f"{name}.npy": npy_bytes(array) for name, array in data.draw(
        st.dictionaries(st.sampled_from(list(model_io.HASHED)) | MEMBER_NAMES, arrays(), max_size=7),
        label="arrays").items()}  # fmt: skip
    metadata = data.draw(st.sampled_from(["json", "array", "absent"]), label="metadata")
    if metadata == "json":
        members["metadata.npy"] = npy_bytes(json_array(data.draw(JSON | st.dictionaries(
            st.sampled_from(sorted(model_io.METADATA)), JSON), label="metadata JSON")))  # fmt: skip
    elif metadata == "array":
        members["metadata.npy"] = npy_bytes(data.draw(arrays(), label="metadata array"))
    if data.draw(st.booleans(), label="junk member"):
        members[data.draw(MEMBER_NAMES, label="junk name")] = data.draw(st.binary(max_size=64))
    load_all(write(folder, "random-members.npz", zip_bytes(members, data.draw(st.booleans(), label="deflate"))))


@fuzz(250)
@given(data=st.data())
def test_model_loaders_on_forged_self_consistent_files(folder, model_file, data):
    """A valid model with one random change to the metadata or to the arrays, and the checksum recomputed."""
    _, _, arrays_, metadata = model_file
    arrays_ = dict(arrays_)
    if data.draw(st.booleans(), label="change an array"):
        name = data.draw(st.sampled_from(list(model_io.HASHED)), label="name")
        old = arrays_[name]
        edits = [old[::-1], old[..., None], old[:1]]
        edits += [abs(old), old * 1e300, -old, old.astype("<f4")] if old.dtype.kind == "f" else [old.astype("S")]
        arrays_[name] = data.draw(arrays() | st.sampled_from(edits), label="array")
    else:
        metadata = mutate(metadata, data.draw)
    if isinstance(metadata, dict):
        try:
            metadata = {**metadata, "sha256": model_io.checksum_of(arrays_, metadata)}
        except ValueError:  # a float the canonical JSON refuses: the checksum cannot match, which is also refused
            pass
    members = {f"{name}.npy": npy_bytes(array) for name, array in arrays_.items()}
    members["metadata.npy"] = npy_bytes(json_array(metadata))
    load_all(write(folder, "forged.npz", zip_bytes(members, compress=False)))


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def checkpoint_file(folder) -> tuple[Path, bytes, dict[str, np.ndarray], dict[str, Any]]:
    """A real checkpoint after two iterations of the second of two initialisations."""
    X = np.random.default_rng(1).normal(size=(300, 2))
    directory = folder / "valid-checkpoint"
    calls = {"n": 0}

    def stop(report):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dgmm.GaussianMixture(2, tol=0.0, max_iter=3, n_init=2, random_state=0).fit(
            X, on_iteration=stop, checkpoint=Checkpoint(directory)
        )
    content = (directory / "checkpoint.npz").read_bytes()
    with np.load(directory / "checkpoint.npz") as npz:
        arrays_ = {name: npz[name] for name in npz.files}
    metadata = json.loads(arrays_.pop("metadata").tobytes())
    assert metadata["current"] and metadata["best"]
    return Quiet((directory, content, arrays_, metadata))


def read_checkpoint(directory: Path, identity: dict[str, Any]) -> None:
    """``load()`` and ``peek_iteration()`` on ``directory``: only CheckpointError."""
    checkpoint = Checkpoint(directory, resume=True)
    checkpoint.identity = identity
    assert_documented(checkpoint.load, CheckpointError, checkpoint.path)
    assert_documented(checkpoint.peek_iteration, CheckpointError, checkpoint.path)


@fuzz(150)
@given(data=st.data())
def test_checkpoint_reader_on_random_bytes_and_damaged_files(folder, checkpoint_file, data):
    _, content, _, metadata = checkpoint_file
    how = data.draw(st.sampled_from(["random", "truncated", "flipped"]), label="how")
    if how == "random":
        damaged = data.draw(st.binary(max_size=2048) | st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b))
    elif how == "truncated":
        damaged = content[: data.draw(st.integers(0, len(content) - 1), label="length")]
    else:
        damaged = bytearray(content)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            damaged[data.draw(st.integers(0, len(content) - 1), label="at")] ^= data.draw(st.integers(1, 255))
    directory = folder / "damaged-checkpoint"
    directory.mkdir(exist_ok=True)
    write(directory, "checkpoint.npz", bytes(damaged))
    read_checkpoint(directory, metadata["identity"])


@fuzz(250)
@given(data=st.data())
def test_checkpoint_reader_on_forged_self_consistent_files(folder, checkpoint_file, data):
    """Checksums recomputed after random changes to the metadata and arrays: the structure itself is checked."""
    _, _, valid_arrays, valid_metadata = checkpoint_file
    arrays_ = {k: v.copy() for k, v in valid_arrays.items()}
    n_changed = data.draw(st.integers(0, 2), label="n arrays changed")
    for _ in range(n_changed):
        name = data.draw(st.sampled_from(sorted(valid_arrays)) | MEMBER_NAMES, label="name")
        if data.draw(st.booleans(), label="remove") and name in arrays_:
            del arrays_[name]
        else:
            arrays_[name] = data.draw(arrays().filter(lambda a: not a.dtype.hasobject), label="array")
    metadata = valid_metadata
    for _ in range(data.draw(st.integers(0 if n_changed else 1, 2), label="n metadata changes")):
        metadata = mutate(metadata, data.draw)
    if isinstance(metadata, dict):
        try:
            metadata = {**metadata, "sha256": model_io.checksum_of(arrays_, metadata, sorted(arrays_))}
        except ValueError:
            pass
    directory = folder / "forged-checkpoint"
    directory.mkdir(exist_ok=True)
    members = {f"{name}.npy": npy_bytes(array) for name, array in arrays_.items()}
    members["metadata.npy"] = npy_bytes(json_array(metadata))
    write(directory, "checkpoint.npz", zip_bytes(members, compress=False))
    read_checkpoint(directory, valid_metadata["identity"])


def test_valid_checkpoint_still_loads(checkpoint_file):
    directory, _, _, metadata = checkpoint_file
    checkpoint = Checkpoint(directory, resume=True)
    checkpoint.identity = metadata["identity"]
    state = checkpoint.load()
    assert state.init_index == 1 and state.current.n_iter == 2 and checkpoint.peek_iteration() == 2


# ------------------------------------------------------------------ configs
def parse_config(folder: Path, content: bytes | str) -> dict[str, Any] | None:
    """read_yaml + resolve of ``content``: the settings, or None after a ConfigError naming the file."""
    path = write(
        folder, "config.yaml", content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    )
    return assert_documented(lambda: resolve(FIT_SETTINGS, read_yaml(path), where=str(path)), ConfigError, path)


def assert_valid_settings(settings_: dict[str, Any] | None) -> None:
    """Resolved settings have the types their schema promises."""
    if settings_ is None:
        return
    for setting in FIT_SETTINGS:
        value = settings_[setting.key]
        if value is not None and setting.is_list:
            assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif value is not None:
            assert type(value) is setting.type, (setting.name, value)


SETTING_NAMES = [s.key for s in FIT_SETTINGS]
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3),
    max_leaves=10,
)
YAML_KEYS = st.sampled_from(SETTING_NAMES) | st.text(max_size=8) | st.integers() | st.booleans() | st.none()
TAGS = ["!!python/object:os.system", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
        "!!python/object/new:builtins.dict {}", "!!python/tuple [1, 2]", "!!python/module:os", "!!python/bytes aGk=",
        "!<tag:yaml.org,2002:python/object:builtins.object> {}", "!!binary aGVsbG8=", "!!set {a, b}",
        "!!omap [a: 1]", "!!pairs [a: 1]", "!!timestamp 2001-12-14", "!!float nan", "!!float .inf", "!!int 0x1F",
        "!!str 3", "!!bool yes", "!!null ''", "!custom x", "!!map {a: 1}", "!!seq [a]", "&a [x, y]", "*a",
        "2001-12-14", "0o17", "1_000", ".nan", "-.inf", "~", "'x'", "\"\\x00\"", "[a, b]", "{x: 1}", "|\n  text"]  # fmt: skip


@fuzz(200)
@given(st.binary(max_size=1024) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_config_parser_on_random_bytes_and_text(folder, content):
    assert_valid_settings(parse_config(folder, content))


@fuzz(200)
@given(st.dictionaries(YAML_KEYS, YAML_VALUES, max_size=6) | YAML_VALUES)
def test_config_parser_on_random_yaml_documents(folder, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    assert_valid_settings(parse_config(folder, text))


@fuzz(200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(SETTING_NAMES + ["!!python/object:os.system x", "? [a]", "<<"]), st.sampled_from(TAGS)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_config_parser_on_yaml_tags_anchors_and_odd_scalars(folder, entries):
    text = "".join(f"{key}: {value}\n" for key, value in entries)
    settings_ = parse_config(folder, text)
    assert_valid_settings(settings_)
    # safe_load never builds Python objects: a tagged value is refused, except under a merge key
    # ("<<: !!python/... {a: 1}"), whose mapping is merged as plain entries and its tag ignored
    if ("!!python/" in text or "python/object" in text) and "<<" not in text:
        assert settings_ is None


def test_python_tags_are_config_errors(folder):
    path = write(folder, "evil.yaml", b"data: !!python/object/apply:os.system ['touch /tmp/dgmm-pwned']\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML \(could not determine a constructor for the "
                       r"tag 'tag:yaml.org,2002:python/object/apply:os.system'"):  # fmt: skip
        read_yaml(path)


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}"), ("- ", "")])
def test_deeply_nested_yaml_is_a_config_error(folder, opening, closing):
    depth = 1_000  # beyond what PyYAML's recursive composer survives (its scanner is quadratic in the depth)
    text = (opening * depth + "x" + closing * depth) if closing else "".join("  " * i + "-\n" for i in range(depth))
    path = write(folder, "deep.yaml", text.encode())
    with pytest.raises(ConfigError, match=r"deep\.yaml: "):
        resolve(FIT_SETTINGS, read_yaml(path))


def test_alias_bomb_is_refused_quickly(folder):
    """A "billion laughs" document: the value is refused without expanding it in the message (expanded,
    its 9**10 items would exhaust memory; the test finishing at all is the proof, no timer needed)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines.append("columns: *a9")
    path = write(folder, "bomb.yaml", "\n".join(lines).encode())
    with pytest.raises(ConfigError) as error:
        resolve(FIT_SETTINGS, {"columns": read_yaml(path)["columns"]}, where=str(path))
    assert len(str(error.value)) < 500


def test_undecodable_config_is_a_config_error(folder):
    path = write(folder, "latin1.yaml", "data: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: "):
        read_yaml(path)
