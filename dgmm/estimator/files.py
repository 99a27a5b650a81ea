"""A GaussianMixture, or a GaussianMixtureClassifier, from a saved file: :mod:`dgmm.persist.formats` reads and
checks it, the class its format names builds itself (``from_file_contents``). The one module that knows both."""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..persist.classes_file import is_classifier
from ..persist.formats import read_model_file
from .classifier import GaussianMixtureClassifier
from .mixture import GaussianMixture


def load_model(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> GaussianMixture | GaussianMixtureClassifier:
    """Read a model written by :func:`~dgmm.save_model` (a path or an fsspec URL, opened with ``storage_options``):
    a GaussianMixture, or a GaussianMixtureClassifier from a classifier file.

    Raises :class:`ModelFileError` on any problem with the file, DataError when storage refuses access.
    """
    return load_model_with_metadata(path, storage_options)[0]


def load_model_with_metadata(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> tuple[GaussianMixture | GaussianMixtureClassifier, dict[str, Any]]:
    """The model and its metadata (``extra`` included), from one read of the file."""
    arrays, metadata = read_model_file(path, storage_options)
    cls = GaussianMixtureClassifier if is_classifier(metadata) else GaussianMixture
    return cls.from_file_contents(arrays, metadata, storage_options), metadata
