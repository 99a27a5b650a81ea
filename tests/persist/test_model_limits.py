"""Bounded model loading: hostile archives are refused before anything large is read or allocated,
models beyond the documented maxima are neither saved nor loaded, and parameters whose
log-densities are not finite are refused."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import dgmm
from dgmm import load_model, save_model
from dgmm.errors import ModelFileError
from dgmm.kernels.gaussian import covariance_shape, precision_cholesky
from dgmm.persist import archive, checks
from dgmm.persist import model_file as model_io

ROOT = Path(__file__).resolve().parents[2]  # the repository: its dgmm first on the PYTHONPATH
X = np.random.default_rng(0).normal(size=(200, 4)) + np.repeat([[0.0], [6.0]], 100, axis=0)
SHAPE_400M = (
    r"array 'covariances' has shape \(400000000,\), expected \(3, 4\) for covariance_type 'diag' with "
    r"n_components=3, n_features=4; the file is corrupt or not written by dgmm"
)


def fit(covariance_type: str = "diag") -> dgmm.GaussianMixture:
    return dgmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)


def contents(path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the decoded metadata of a model file."""
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return arrays, json.loads(arrays.pop("metadata").tobytes())


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """A ``.npy`` header declaring ``dtype`` and ``shape``, without the data."""
    out = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def members_of(arrays: dict[str, np.ndarray], metadata: dict) -> list[tuple[str, bytes]]:
    text = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    return [("metadata.npy", npy(text))] + [(f"{name}.npy", npy(array)) for name, array in arrays.items()]


def write_zip(path, members: list[tuple[str, bytes]], deflate: frozenset[str] | bool = False) -> None:
    """A zip of ``(name, bytes)`` members, the ones named in ``deflate`` (or all) deflated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names, which one test writes on purpose
        with zipfile.ZipFile(path, "w") as out:
            for name, data in members:
                compressed = deflate is True or (deflate and name in deflate)
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
                out.writestr(info, data, compresslevel=9)


def forge(path, edit) -> None:
    """Rewrite the model at ``path`` with ``edit(arrays, metadata)`` applied and a matching checksum."""
    arrays, metadata = contents(path)
    edit(arrays, metadata)
    metadata["sha256"] = model_io.checksum_of(arrays, metadata)
    write_zip(path, members_of(arrays, metadata))


@pytest.fixture
def saved(tmp_path) -> Path:
    """A diag model, K=3, d=4, saved."""
    path = tmp_path / "model.npz"
    save_model(fit("diag"), path)
    return path


def refused(path, message: str) -> str:
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    return text


def load_under_rlimit(path, limit: int = 3 << 29) -> subprocess.CompletedProcess:
    """load_model(path) in a subprocess whose address space is capped at ``limit`` (1.5 GiB) after the imports."""
    script = (
        "import resource, sys\n"
        "from dgmm.errors import ModelFileError\n"
        "from dgmm import load_model\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
        "try:\n"
        "    load_model(sys.argv[1])\n"
        "except ModelFileError as exc:\n"
        "    print(exc)\n"
    )
    threads = {f"{name}_NUM_THREADS": "1" for name in ("OPENBLAS", "OMP", "MKL", "NUMBA")}  # a small address space
    env = {**os.environ, **threads, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


# ---------------------------------------------------------------------- hostile sizes
@pytest.fixture(scope="module", params=["stored", "deflated"])
def hostile_400m(request, tmp_path_factory) -> Path:
    """A model whose covariances header declares 400 M float64 (3.2 GB): stored, 3 MB of data follow;
    deflated, the whole 3.2 GB of zeros follow (14 MB on disk, 229-fold, within the ratio bound)."""
    path = tmp_path_factory.mktemp(request.param) / "model.npz"
    save_model(fit("diag"), path)
    arrays, metadata = contents(path)
    members = [(n, d) for n, d in members_of(arrays, metadata) if n != "covariances.npy"]
    if request.param == "stored":
        write_zip(path, members + [("covariances.npy", npy_header("<f8", (400_000_000,)) + bytes(3 << 20))])
        return path
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for name, data in members:
            out.writestr(name, data)
        with out.open("covariances.npy", "w", force_zip64=True) as member:
            member.write(npy_header("<f8", (400_000_000,)))
            block, size = bytes(1 << 24), 400_000_000 * 8
            for start in range(0, size, len(block)):
                member.write(block[: size - start])
    assert path.stat().st_size < 20 << 20
    return path


def test_a_member_declaring_400m_values_is_refused(hostile_400m):
    refused(hostile_400m, SHAPE_400M)


def test_a_member_declaring_400m_values_is_refused_within_1_5_gib(hostile_400m):
    proc = load_under_rlimit(hostile_400m)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MemoryError" not in proc.stdout + proc.stderr
    expected = f"{hostile_400m}: array 'covariances' has shape (400000000,), expected (3, 4)"
    assert proc.stdout.strip().startswith(expected)


WHITESPACE = 2_000_000_000


@pytest.fixture(scope="module")
def whitespace_metadata(tmp_path_factory) -> Path:
    """A model whose metadata is its JSON then 2 GB of spaces, deflated (about 9 MB on disk)."""
    path = tmp_path_factory.mktemp("whitespace") / "model.npz"
    save_model(fit("diag"), path)
    arrays, metadata = contents(path)
    text = json.dumps(metadata).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        with out.open("metadata.npy", "w", force_zip64=True) as member:
            member.write(npy_header("|u1", (len(text) + WHITESPACE,)) + text)
            block = b" " * (1 << 24)
            for start in range(0, WHITESPACE, len(block)):
                member.write(block[: WHITESPACE - start])
        for name, array in arrays.items():
            out.writestr(f"{name}.npy", npy(array))
    assert path.stat().st_size < 50 << 20
    return path


def test_metadata_of_2_gb_is_refused(whitespace_metadata):
    refused(whitespace_metadata, r"array 'metadata' holds 2000\d+ bytes, more than the 16777216 dgmm reads")


def test_metadata_of_2_gb_is_refused_within_1_5_gib(whitespace_metadata):
    proc = load_under_rlimit(whitespace_metadata)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MemoryError" not in proc.stdout + proc.stderr
    assert "array 'metadata' holds 2000" in proc.stdout and proc.stdout.count("\n") == 1


def test_metadata_just_below_its_limit_is_read(saved):
    """Trailing whitespace is valid JSON: a model whose metadata fills MAX_METADATA_BYTES still loads."""
    arrays, metadata = contents(saved)
    text = json.dumps(metadata).encode()
    padded = text + b" " * (archive.MAX_METADATA_BYTES - len(text))
    write_zip(saved, [("metadata.npy", npy(np.frombuffer(padded, np.uint8)))] + members_of(arrays, metadata)[1:])
    assert load_model(saved).n_components == 3
    write_zip(saved, [("metadata.npy", npy(np.frombuffer(padded + b" ", np.uint8)))] + members_of(arrays, metadata)[1:])
    refused(saved, r"array 'metadata' holds 16777217 bytes, more than the 16777216 dgmm reads")


def test_an_array_header_longer_than_numpy_allows_is_refused_unread(saved):
    arrays, metadata = contents(saved)
    members = [(n, d) for n, d in members_of(arrays, metadata) if n != "means.npy"]
    members.append(("means.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 31) + b" " * 4096))
    write_zip(saved, members)
    refused(saved, "an array header is longer than 10012 bytes")


# ---------------------------------------------------------------------- archive structure
def test_an_unexpected_member_is_refused(saved):
    arrays, metadata = contents(saved)
    write_zip(saved, members_of(arrays, metadata) + [("notes.txt", b"hello")])
    refused(saved, r"unexpected member 'notes\.txt' in the archive; the file is not a dgmm model file")
    write_zip(saved, members_of(arrays, metadata) + [("precisions.npy", npy(np.ones(3)))])
    refused(saved, r"unexpected member 'precisions\.npy'")


def test_a_duplicate_member_is_refused(saved):
    arrays, metadata = contents(saved)
    members = members_of(arrays, metadata)
    write_zip(saved, members + [("means.npy", npy(arrays["means"] + 1.0))])
    refused(saved, r"member 'means\.npy' appears twice in the archive")


def test_too_many_members_are_refused_before_the_directory_is_read(saved):
    arrays, metadata = contents(saved)
    write_zip(saved, members_of(arrays, metadata) + [(f"junk{i}", b"") for i in range(archive.MAX_MEMBERS)])
    refused(saved, r"the archive directory lists 71 members in \d+ bytes \(at most 64")


@pytest.mark.parametrize("name, shape", [("means", (4, 3)), ("weights", (3, 1)), ("covariances", (3, 4, 4)),
                                         ("precisions_cholesky", (3,)), ("lower_bounds", (0,))])  # fmt: skip
def test_a_shape_that_disagrees_with_the_metadata_is_refused(saved, name, shape):
    arrays, metadata = contents(saved)
    arrays[name] = np.ones(shape)
    metadata["sha256"] = model_io.checksum_of(arrays, metadata)
    write_zip(saved, members_of(arrays, metadata))
    context = f"for n_iter={metadata['n_iter']}" if name == "lower_bounds" else "for covariance_type 'diag'"
    refused(saved, rf"array '{name}' has shape \({', '.join(map(str, shape))},?\), expected .* {context}")


@pytest.mark.parametrize("dtype", [">f8", "<f4", "<i8"])
def test_a_dtype_other_than_little_endian_float64_is_refused(saved, dtype):
    arrays, metadata = contents(saved)
    arrays["means"] = arrays["means"].astype(dtype)
    metadata["sha256"] = model_io.checksum_of(arrays, metadata)
    write_zip(saved, members_of(arrays, metadata))
    refused(saved, r"array 'means' has dtype \S+, expected float64")


def test_fortran_order_and_over_long_feature_names_are_refused(saved):
    arrays, metadata = contents(saved)
    arrays["means"] = np.asfortranarray(arrays["means"])
    write_zip(saved, members_of(arrays, metadata))
    refused(saved, "array 'means' is stored in Fortran order, expected C order")
    arrays["means"] = np.ascontiguousarray(arrays["means"])
    arrays["feature_names"] = np.array(["x" * 257, "b", "c", "d"])
    metadata["sha256"] = model_io.checksum_of(arrays, metadata)
    write_zip(saved, members_of(arrays, metadata))
    refused(saved, r"array 'feature_names' has dtype <U257, expected unicode \(<U\) of at most 256 characters")


def _patch_sizes(content: bytes, member: str, size: int, compressed: bool = False) -> bytes:
    """The archive with ``member``'s uncompressed (and, if ``compressed``, compressed) size set to ``size``."""
    end = content.rindex(b"PK\x05\x06")
    at = struct.unpack("<I", content[end + 16 : end + 20])[0]  # the directory's offset
    while content[at : at + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack("<3H", content[at + 28 : at + 34])
        if content[at + 46 : at + 46 + name_length] == member.encode():
            old = struct.unpack("<I", content[at + 20 : at + 24])[0]
            sizes = struct.pack("<II", size if compressed else old, size)
            return content[: at + 20] + sizes + content[at + 28 :]
        at += 46 + name_length + extra_length + comment_length
    raise AssertionError(f"no member {member!r}")


def test_a_lying_uncompressed_size_of_a_stored_member_is_refused(saved):
    """Metadata padded beyond zipfile's read-ahead, so that the size check, not the CRC, sees the lie."""
    arrays, metadata = contents(saved)
    text = json.dumps(metadata).encode() + b" " * 20_000
    write_zip(saved, [("metadata.npy", npy(np.frombuffer(text, np.uint8)))] + members_of(arrays, metadata)[1:])
    size = 128 + len(text)
    content = saved.read_bytes()
    saved.write_bytes(_patch_sizes(content, "metadata.npy", size + 8, compressed=True))
    refused(saved, rf"member 'metadata\.npy' declares {size + 8} bytes, but its header describes {size}; the file is "
                   "corrupt or forged")  # fmt: skip
    saved.write_bytes(_patch_sizes(content, "metadata.npy", size + 8))
    refused(saved, rf"member 'metadata\.npy' is stored uncompressed but declares {size + 8} bytes in {size}")


@pytest.mark.parametrize("delta", [-8, 8, 1 << 30])
def test_a_lying_uncompressed_size_of_a_deflated_member_is_refused(saved, delta):
    """zipfile's CRC check catches a small member's lie as soon as it reads ahead; otherwise the size check does."""
    arrays, metadata = contents(saved)
    write_zip(saved, members_of(arrays, metadata), deflate=frozenset({"means.npy"}))
    with zipfile.ZipFile(saved) as archive_:
        size = archive_.getinfo("means.npy").file_size
    saved.write_bytes(_patch_sizes(saved.read_bytes(), "means.npy", size + delta))
    expected = "expands" if delta > 1000 else rf"declares {size + delta} bytes|Bad CRC-32 for file 'means\.npy'"
    refused(saved, expected)


def test_a_compression_ratio_above_the_limit_is_refused(saved):
    """64 MiB of zeros deflate about 1030-fold (deflate's ceiling is 1032), refused before a header is read."""
    arrays, metadata = contents(saved)
    members = [("metadata.npy", bytes(64 << 20))] + members_of(arrays, metadata)[1:]
    write_zip(saved, members, deflate=frozenset({"metadata.npy"}))
    with zipfile.ZipFile(saved) as archive_:
        info = archive_.getinfo("metadata.npy")
    assert info.file_size / info.compress_size > archive.MAX_COMPRESSION_RATIO
    refused(saved, r"member 'metadata\.npy' expands \d+-fold, more than 1000; the file is corrupt or a decompression "
                   "bomb")  # fmt: skip


def test_deflated_members_within_the_ratio_load(saved):
    model = load_model(saved)
    write_zip(saved, members_of(*contents(saved)), deflate=True)
    assert load_model(saved).means_.tobytes() == model.means_.tobytes()


# ---------------------------------------------------------------------- non-finite log-densities
def _tiny(covariance_type: str):
    def edit(arrays: dict, metadata: dict) -> None:
        covariances = arrays["covariances"]
        if covariance_type == "full":
            covariances[1] = np.eye(4) * 5e-324
        elif covariance_type == "tied":
            covariances[...] = np.eye(4) * 5e-324
        else:
            covariances[0] = 5e-324
        arrays["precisions_cholesky"] = precision_cholesky(covariances, covariance_type)

    return edit


@pytest.mark.parametrize("covariance_type, message", [
    ("diag", r"component 0 gives non-finite log-densities \(diag covariance 5e-324 is too small\); "
             "refit with a larger reg_covar"),
    ("spherical", r"component 0 gives non-finite log-densities \(spherical covariance 5e-324 is too small\)"),
    ("full", r"component 1 gives non-finite log-densities \(its full covariance is too close to singular\)"),
    ("tied", r"component 0 gives non-finite log-densities \(the tied covariance is too close to singular\)"),
])  # fmt: skip
def test_a_covariance_too_small_for_finite_densities_is_refused(tmp_path, covariance_type, message):
    path = tmp_path / "model.npz"
    save_model(fit(covariance_type), path)
    forge(path, _tiny(covariance_type))
    refused(path, message)


def test_the_tiny_covariance_would_have_given_nan_probabilities(saved):
    """Why it is refused: the forged parameters, used anyway, give NaN for every row."""
    arrays, metadata = contents(saved)
    for k in range(3):
        arrays["covariances"][k] = 5e-324
    params = dgmm.kernels.params.MixtureParams(arrays["weights"], arrays["means"], arrays["covariances"],
                                       precision_cholesky(arrays["covariances"], "diag"), "diag")  # fmt: skip
    with np.errstate(all="ignore"):
        assert np.isnan(dgmm.kernels.posterior.responsibilities(X, params)).all()
    forge(saved, lambda a, m: a.update(covariances=params.covariances, precisions_cholesky=params.precisions_cholesky))
    refused(saved, "component 0 gives non-finite log-densities")


def test_means_too_far_apart_for_their_covariances_are_refused(saved):
    forge(saved, lambda a, m: a["means"].__setitem__((2, 0), 1e160))
    refused(saved, r"component 0 gives non-finite log-densities \(the means lie too far apart for its covariance\); "
                   "scale the input data and refit")  # fmt: skip


def test_small_but_finite_covariances_still_load(saved):
    def edit(arrays: dict, metadata: dict) -> None:
        arrays["covariances"][0] = 1e-290
        arrays["precisions_cholesky"] = precision_cholesky(arrays["covariances"], "diag")

    forge(saved, edit)
    assert load_model(saved).covariances_[0, 0] == 1e-290


def test_saving_parameters_with_non_finite_densities_is_refused(tmp_path):
    model = fit("spherical")
    model.covariances_ = model.covariances_.copy()
    model.covariances_[2] = 5e-324
    model.precisions_cholesky_ = precision_cholesky(model.covariances_, "spherical")
    with pytest.raises(ModelFileError, match="refusing to save an inconsistent model: component 2 gives non-finite"):
        save_model(model, tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- the maxima
def hand_built(covariance_type: str, K: int, d: int, n_iter: int = 0, names=None) -> dgmm.GaussianMixture:
    """A fitted-looking model of any size, its large arrays broadcast views (no memory)."""
    model = dgmm.GaussianMixture(K, covariance_type=covariance_type)
    cov = covariance_shape(covariance_type, K, d)
    model.weights_ = np.full(K, 1.0 / K)
    model.means_ = np.broadcast_to(np.arange(K, dtype=float)[:, None], (K, d))
    # an identity, or (a model too large to save, never looked at) ones
    unit = np.eye(d) if covariance_type in ("full", "tied") and d <= 1000 else 1.0
    model.covariances_ = model.precisions_cholesky_ = np.broadcast_to(unit, cov)
    model.converged_, model.n_iter_, model.n_features_in_ = True, n_iter, d
    model.lower_bounds_ = np.broadcast_to(-1.0, (n_iter,))
    model.lower_bound_ = -1.0 if n_iter else -np.inf
    if names is not None:
        model.feature_names_in_ = np.asarray(names, dtype=object)
    return model


@pytest.mark.parametrize("covariance_type, K, d, n_iter, message", [
    ("diag", 1, 100_001, 0, "n_features=100001 is more than MAX_FEATURES=100000"),
    ("spherical", 100_001, 1, 0, "n_components=100001 is more than MAX_COMPONENTS=100000"),
    ("spherical", 2, 3, 10_000_001, "n_iter=10000001 is more than MAX_ITERATIONS=10000000"),
    ("full", 2, 8193, 0, r"covariance_type 'full' with n_components=2, n_features=8193 needs an array of 134250498 "
                         r"values, more than MAX_PARAMETER_ELEMENTS=134217728"),
    ("tied", 1, 11586, 0, "needs an array of 134235396 values"),
    ("diag", 1342, 100_000, 0, "needs an array of 134200000 values"),
])  # fmt: skip
def test_saving_beyond_the_maxima_is_refused(tmp_path, covariance_type, K, d, n_iter, message):
    if "134200000" in message:  # just below the bound: that one is allowed, one more component is not
        checks.check_limits(covariance_type, K, d, n_iter)
        K, message = K + 1, "needs an array of 134300000 values, more than MAX_PARAMETER_ELEMENTS"
    with pytest.raises(ModelFileError, match=f"refusing to save a model too large for dgmm model files: .*{message}"):
        save_model(hand_built(covariance_type, K, d, n_iter), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_the_maxima_themselves_are_allowed(tmp_path):
    checks.check_limits("full", 2, 8192, model_io.MAX_ITERATIONS)  # K·d² == 2**27 exactly
    for covariance_type, K, d in [("diag", 1, 100_000), ("spherical", 100_000, 1)]:
        save_model(hand_built(covariance_type, K, d, n_iter=3), tmp_path / "m.npz", overwrite=True)
        loaded = load_model(tmp_path / "m.npz")
        assert (loaded.n_components, loaded.n_features_in_, loaded.lower_bounds_) == (K, d, [-1.0] * 3)


def test_feature_names_and_metadata_beyond_the_maxima_are_not_saved(tmp_path):
    path = tmp_path / "m.npz"
    save_model(hand_built("diag", 2, 2, names=["a" * 256, "b"]), path)
    assert load_model(path).feature_names_in_[0] == "a" * 256
    with pytest.raises(ModelFileError, match="feature name 'aaa.* has 257 characters, more than MAX_FEATURE_NAME"):
        save_model(hand_built("diag", 2, 2, names=["a" * 257, "b"]), path)
    with pytest.raises(ModelFileError, match=r"the metadata takes \d+ bytes, more than MAX_METADATA_BYTES=16777216"):
        save_model(hand_built("diag", 2, 2), path, extra={"notes": "x" * (16 << 20)})
    assert load_model(path).feature_names_in_[0] == "a" * 256  # the refused saves left the file alone


def test_a_file_beyond_the_maxima_is_refused_on_load(saved):
    def edit(arrays: dict, metadata: dict) -> None:
        metadata["n_components"] = metadata["params"]["n_components"] = 100_001

    forge(saved, edit)
    refused(saved, "n_components=100001 is more than MAX_COMPONENTS=100000; the file is corrupt or not written by dgmm")


# ---------------------------------------------------------------------- the reader, for checkpoints
def test_read_archive_reads_a_checkpoint_like_archive_from_its_metadata(tmp_path):
    """The caller decides each array's dtype and shape from the metadata; seeds are int64."""
    path = tmp_path / "checkpoint.npz"
    arrays = {"seeds": np.array([3, 1, 4], dtype=np.int64), "current_means": np.ones((2, 3)),
              "current_lower_bounds": np.array([-3.0, -2.5])}  # fmt: skip
    metadata = {"format": "dgmm-checkpoint", "n_components": 2, "n_features": 3, "n_iter": 2}
    metadata["sha256"] = model_io.checksum_of(arrays, metadata, sorted(arrays))
    write_zip(path, members_of(arrays, metadata))

    def expected(meta: dict) -> dict:
        K, d, n = meta["n_components"], meta["n_features"], meta["n_iter"]
        return {"current_lower_bounds": ("<f8", (n,)), "current_means": ("<f8", (K, d)), "seeds": ("<i8", (3,))}

    read_metadata, read = archive.read_archive(str(path), expected)
    assert read_metadata == metadata and list(read) == sorted(arrays)
    assert all(read[name].dtype == arrays[name].dtype and np.array_equal(read[name], arrays[name]) for name in arrays)

    arrays["seeds"] = arrays["seeds"].astype(np.int32)
    metadata["sha256"] = model_io.checksum_of(arrays, metadata, sorted(arrays))
    write_zip(path, members_of(arrays, metadata))
    with pytest.raises(archive.Invalid, match="array 'seeds' has dtype int32, expected int64"):
        archive.read_archive(str(path), expected)
