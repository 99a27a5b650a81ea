"""Classifier files: every class's mixture, and the background model, in one safe archive.

Format ``"dgmm-classifier"``, version 1: the same ``.npz`` archive as a model file
(:mod:`dgmm.persist.model_file`), never pickled. Each member (class ``i``, and ``ubm`` when there
is one) is a whole model file's contents under the prefix ``c<i>.`` (or ``ubm.``): its arrays and,
in the archive's metadata, its metadata, checked exactly as a model file's. The metadata adds the
class labels (JSON strings or integers), the priors (positive, summing to 1), the classifier's own
parameters and ``extra``; one ``sha256`` covers every array and the metadata. Limits: at most
``MAX_CLASSES`` classes, and ``MAX_PARAMETER_ELEMENTS`` values per member as for model files.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

from ..version import __version__
from . import model_file
from .archive import Invalid, Spec
from .checks import INT, NONE, REAL, STR, TooLarge, check_keys, check_values

FORMAT = "dgmm-classifier"
FORMAT_VERSION = 1
MAX_CLASSES = 100_000
_METADATA = {
    "format": STR,
    "format_version": INT,
    "dgmm_version": STR,
    "classes": (list,),
    "priors": (list,),
    "params": (dict,),
    "members": (list,),
    "ubm": (dict,) + NONE,
    "extra": (dict,),
    "sha256": STR,
}
_PARAMS = {"priors": STR + (list,), "relevance_factor": REAL, "adapt": STR + (list,)}


def is_classifier(metadata: Mapping[str, Any]) -> bool:
    return metadata.get("format") == FORMAT


def contents(model: Any, extra: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata (without ``sha256``) of a fitted GaussianMixtureClassifier."""
    arrays: dict[str, np.ndarray] = {}
    members = []
    for i, mixture in enumerate(model.estimators_):
        member_arrays, member = model_file.contents(mixture, {})
        arrays.update({f"c{i}.{name}": value for name, value in member_arrays.items()})
        members.append(member)
    ubm = None
    if getattr(model, "ubm_", None) is not None:
        member_arrays, ubm = model_file.contents(model.ubm_, {})
        arrays.update({f"ubm.{name}": value for name, value in member_arrays.items()})
    classes = [label.item() if isinstance(label, np.generic) else label for label in model.classes_]
    if not all(isinstance(c, str) or (isinstance(c, numbers.Integral) and not isinstance(c, bool)) for c in classes):
        raise Invalid(f"class labels {classes[:3]!r:.80} cannot be stored: only strings and integers can")
    priors = model.priors if isinstance(model.priors, str) else [float(p) for p in np.ravel(model.priors)]
    adapt = model.adapt if isinstance(model.adapt, str) else list(model.adapt)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dgmm_version": __version__,
        "classes": classes,
        "priors": [float(p) for p in model.class_prior_],
        "params": {"priors": priors, "relevance_factor": float(model.relevance_factor), "adapt": adapt},
        "members": members,
        "ubm": ubm,
        "extra": extra,
    }
    return arrays, metadata


def specs(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    """The dtype and shape of every array, in hashing order, from the checked metadata."""
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Invalid(f"unknown classifier format version {version!r:.80}")
    if version > FORMAT_VERSION:
        raise Invalid(
            f"classifier format version {version} is newer than this dgmm supports ({FORMAT_VERSION}); upgrade dgmm"
        )
    check_keys("metadata", metadata, _METADATA)
    check_keys("metadata params", metadata["params"], _PARAMS)
    classes, priors, members = metadata["classes"], metadata["priors"], metadata["members"]
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise TooLarge(f"{len(classes)} classes; a classifier file holds 2 to MAX_CLASSES={MAX_CLASSES}")
    if len(members) != len(classes) or len(priors) != len(classes):
        raise Invalid(f"{len(classes)} classes but {len(members)} members and {len(priors)} priors")
    if (
        not all(isinstance(c, str) or (isinstance(c, int) and not isinstance(c, bool)) for c in classes)
        or len({type(c) for c in classes}) != 1
        or len(set(classes)) != len(classes)
    ):
        raise Invalid("class labels must be distinct strings, or distinct integers")
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0 for p in priors) or not math.isclose(
        sum(priors), 1.0, rel_tol=1e-9
    ):
        raise Invalid(f"priors {priors[:4]!r:.80} are not positive numbers summing to 1")
    out: dict[str, Spec] = {}
    named = [(f"c{i}", member) for i, member in enumerate(members)]
    named += [("ubm", metadata["ubm"])] if metadata["ubm"] is not None else []
    shapes = set()
    for prefix, member in named:
        if not isinstance(member, dict):
            raise Invalid(f"metadata member {prefix} is not an object")
        member_specs = model_file.specs({**member, "sha256": ""})
        shapes.add(member["n_features"])
        out.update({f"{prefix}.{name}": spec for name, spec in member_specs.items()})
    if len(shapes) != 1:
        raise Invalid(f"the members have different feature counts {sorted(shapes)}")
    return out


def check_member_values(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    """The parameters of every member, as a model file's are checked."""
    named = [(f"c{i}", member) for i, member in enumerate(metadata["members"])]
    named += [("ubm", metadata["ubm"])] if metadata["ubm"] is not None else []
    for prefix, member in named:
        check_values(member_arrays(arrays, prefix), member["covariance_type"], model_file.NUMERIC)


def member_arrays(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays of one member (``c0``, ``ubm``), without the prefix."""
    return {name.split(".", 1)[1]: value for name, value in arrays.items() if name.split(".", 1)[0] == prefix}
