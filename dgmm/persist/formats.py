"""Saving and loading dgmm's two file formats: a model file (:mod:`dgmm.persist.model_file`, one mixture) and a
classifier file (:mod:`dgmm.persist.classes_file`, every class's mixture and the background model).

Both are one ``.npz`` archive, never pickled, whose metadata names its format. Writes are atomic (temporary file,
fsync, rename: :mod:`dgmm.data.publish`); reads are bounded and fully checked (:mod:`dgmm.persist.archive`), and any
problem on load is a ``ModelFileError``.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Mapping

import numpy as np

from ..data.publish import published
from ..data.sources import is_remote, open_input
from ..errors import DataError, ModelFileError, NotFittedError, ParameterError
from . import classes_file, model_file
from .archive import MAX_METADATA_BYTES, Invalid, Spec, canonical_json, check_spec, read_archive
from .checks import CORRUPT, TooLarge, check_values


def specs(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    """The dtype and shape of every array of either format, in hashing order, from its checked metadata."""
    if classes_file.is_classifier(metadata):
        return classes_file.specs(metadata)
    return model_file.specs(metadata)


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    extra: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    storage_options: dict | None = None,
) -> None:
    """Write a fitted model (a :class:`~dgmm.GaussianMixture`) to ``path`` (used as given: no suffix is added), atomically.

    An existing file at ``path`` — there before, or appearing while the model is written — is
    an OutputExists error unless ``overwrite`` (see :mod:`dgmm.data.publish`); ``path`` may be an
    fsspec URL (``s3://...``), opened with ``storage_options``.

    ``extra`` is a JSON-serialisable dict kept in the metadata (after a JSON round trip: tuples
    become lists; ``{}`` if None), read back by :func:`read_metadata`. The client, the init
    arrays and a RandomState ``random_state`` are not stored (the loaded model has the defaults).

    Raises NotFittedError, ParameterError (bad ``extra``), ModelFileError (an inconsistent model,
    which could not be loaded back), OutputExists, or OSError (the write failed; a file already
    at ``path`` is then left intact).
    """
    path = os.fspath(path)
    if not hasattr(model, "means_") and not hasattr(model, "estimators_"):
        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet; call 'fit' before saving it")
    try:
        extra = json.loads(json.dumps(dict(extra or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"extra must be a JSON-serialisable dict (str keys, finite numbers): {exc}") from None
    try:
        if hasattr(model, "estimators_"):  # a GaussianMixtureClassifier: every class's mixture in one file
            arrays, metadata = classes_file.contents(model, extra)
            specs = classes_file.specs({**metadata, "sha256": ""})
            for name, spec in specs.items():
                check_spec(name, arrays[name].dtype, arrays[name].shape, spec)
            classes_file.check_member_values(arrays, metadata)
            arrays = {name: arrays[name] for name in specs}  # hashed and read in this order
        else:
            arrays, metadata = model_file.contents(model, extra)
            model_file.validate(arrays, {**metadata, "sha256": ""})
        names = list(arrays) if hasattr(model, "estimators_") else model_file.HASHED
        metadata["sha256"] = model_file.checksum_of(arrays, metadata, names)
        text = canonical_json(metadata).encode("utf-8")
        if len(text) > MAX_METADATA_BYTES:
            raise TooLarge(f"the metadata takes {len(text)} bytes, more than MAX_METADATA_BYTES={MAX_METADATA_BYTES} "
                            "(pass a smaller extra)")  # fmt: skip
    except TooLarge as exc:
        raise ModelFileError(f"{path}: refusing to save a model too large for dgmm model files: {exc}") from None
    except Invalid as exc:
        raise ModelFileError(f"{path}: refusing to save an inconsistent model: {exc}") from None
    arrays["metadata"] = np.frombuffer(text, dtype=np.uint8)
    write_archive(path, arrays, overwrite, storage_options)


def write_archive(
    path: str, arrays: Mapping[str, np.ndarray], overwrite: bool = True, storage_options: dict | None = None
) -> None:
    """Publish the archive of ``arrays`` at ``path`` whole (:mod:`dgmm.data.publish`); over another file only if ``overwrite``."""
    with published(path, overwrite, storage_options) as file:
        np.savez(file, **arrays)  # a file object: numpy appends no ".npz" to the name


def read_metadata(path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of a model file (format, versions, params, ``extra``, ...), checked as by load_model."""
    return read_model_file(path, storage_options)[1]


READERS = {False: "dgmm.load_model or GaussianMixture.load", True: "dgmm.load_model or GaussianMixtureClassifier.load"}


def read_model_file(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None, classifier: bool | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of a model file, fully checked; any problem is a ModelFileError, and so is a file of
    the other format when ``classifier`` says which one is expected (None: either).

    :func:`dgmm.load_model` builds the estimator from them.
    """
    arrays, metadata = _read_checked(os.fspath(path), storage_options)
    found = classes_file.is_classifier(metadata)
    if classifier is not None and found != classifier:
        what = "a classifier file, not one mixture" if found else "a model file of one mixture, not a classifier"
        raise ModelFileError(f"{os.fspath(path)}: {what}; load it with {READERS[found]}")
    return arrays, metadata


def _read_checked(path: str, storage_options: Mapping[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`read_model_file` of either format."""
    try:
        arrays, metadata = _read(path, storage_options)
        if classes_file.is_classifier(metadata):
            classes_file.check_member_values(arrays, metadata)
        else:
            check_values(arrays, metadata["covariance_type"], model_file.NUMERIC)
    except DataError:  # storage refused access (credentials, endpoint): not the file's fault
        raise
    except TooLarge as exc:
        raise ModelFileError(f"{path}: {exc}; the file is corrupt or not written by dgmm") from None
    except Invalid as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except PermissionError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror}); check its permissions") from None
    except CORRUPT as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ModelFileError(f"{path}: truncated or corrupt model file ({detail}); save the model again") from None
    return arrays, metadata


def _read(path: str, storage_options: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of the archive at ``path``: metadata, dtypes, shapes and checksum checked."""
    if is_remote(path):
        return _read_remote(path, storage_options)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise Invalid("no such model file; check the path") from None
    if not stat.S_ISREG(mode):
        what = "is a directory" if stat.S_ISDIR(mode) else "is not a regular file"
        raise Invalid(f"{what}, not a model file; give the path of a file written by save_model")
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":
            raise Invalid("not a dgmm model file (not an .npz archive)")
    metadata, arrays = read_archive(path, specs, max_metadata_bytes=MAX_METADATA_BYTES, what="dgmm model file")
    return arrays, metadata


def _read_remote(path: str, storage_options: Mapping[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`_read` of a model file at an fsspec URL."""
    try:
        with open_input(path, storage_options) as file:
            if file.read(4) != b"PK\x03\x04":
                raise Invalid("not a dgmm model file (not an .npz archive)")
            file.seek(0)
            metadata, arrays = read_archive(file, specs, max_metadata_bytes=MAX_METADATA_BYTES, what="dgmm model file")
    except FileNotFoundError:
        raise Invalid("no such model file; check the URL") from None
    return arrays, metadata
