"""A GaussianMixture, or a GaussianMixtureClassifier, from a model file (:mod:`dgmm.persist.model_file`
reads and checks it; this builds it)."""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np

from ..kernels.params import MixtureParams
from ..persist.classes_file import is_classifier, member_arrays
from ..persist.formats import read_model_file
from .mixture import GaussianMixture


def load_model(path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> GaussianMixture:
    """Read a model written by :func:`~dgmm.save_model` (a path or an fsspec URL, opened with ``storage_options``):
    a GaussianMixture, or a GaussianMixtureClassifier from a classifier file.

    Raises :class:`ModelFileError` on any problem with the file, DataError when storage refuses access.
    """
    return _build(*read_model_file(path, storage_options), storage_options)


def load_model_with_metadata(path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
                             ) -> tuple[GaussianMixture, dict[str, Any]]:
    """The model and its metadata (``extra`` included), from one read of the file."""
    arrays, metadata = read_model_file(path, storage_options)
    return _build(arrays, metadata, storage_options), metadata


def _build(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
           storage_options: Mapping[str, Any] | None = None) -> Any:
    """A fitted estimator from validated arrays and metadata (reading data with ``storage_options``)."""
    if is_classifier(metadata):
        return _build_classifier(arrays, metadata, storage_options)
    model = GaussianMixture(**metadata["params"], storage_options=dict(storage_options) if storage_options else None)
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        setattr(model, name + "_", arrays[name].astype(np.float64, copy=False))
    model.precisions_ = MixtureParams(
        model.weights_, model.means_, model.covariances_, model.precisions_cholesky_, metadata["covariance_type"]
    ).precisions
    model.converged_, model.n_iter_ = metadata["converged"], metadata["n_iter"]
    model.n_features_in_ = metadata["n_features"]
    model.lower_bound_ = -math.inf if metadata["lower_bound"] is None else float(metadata["lower_bound"])
    model.lower_bounds_ = [float(v) for v in arrays["lower_bounds"]]
    if "n_rows_dropped" in metadata:
        model.n_rows_dropped_ = metadata["n_rows_dropped"]
    if arrays["feature_names"].size:
        model.feature_names_in_ = np.asarray(arrays["feature_names"].tolist(), dtype=object)
    return model


def _build_classifier(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
                      storage_options: Mapping[str, Any] | None = None) -> Any:
    """A fitted GaussianMixtureClassifier: every class's mixture, and the background model, built as models."""
    from .classifier import GaussianMixtureClassifier

    members = [_build(member_arrays(arrays, f"c{i}"), member, storage_options)
               for i, member in enumerate(metadata["members"])]
    settings = {k: v for k, v in members[0].get_params().items() if k in GaussianMixtureClassifier().get_params()}
    model = GaussianMixtureClassifier(**{**settings, **metadata["params"]})
    model.estimators_ = members
    model.classes_ = np.asarray(metadata["classes"])
    model.class_prior_ = np.asarray(metadata["priors"], dtype=np.float64)
    model.n_iter_ = np.asarray([m.n_iter_ for m in members])
    model.n_features_in_ = members[0].n_features_in_
    if hasattr(members[0], "feature_names_in_"):
        model.feature_names_in_ = members[0].feature_names_in_
    if metadata["ubm"] is not None:
        model.ubm_ = _build(member_arrays(arrays, "ubm"), metadata["ubm"], storage_options)
    return model
