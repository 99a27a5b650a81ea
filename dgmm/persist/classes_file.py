"""Classifier files: every class's mixture, and the background model, in one safe archive.

Format ``"dgmm-classifier"``, the same ``.npz`` archive as a model file (:mod:`dgmm.persist.model_file`), never
pickled; one ``sha256`` covers every array and the metadata.

Version 2 (written since dgmm 0.3) stacks every class's arrays by kind, so a file has the same 12 members (18
with a background model) for 2 classes or 100,000: ``weights`` (C, K), ``means`` (C, K, d), ``covariances`` and
``precisions_cholesky`` (C, ...) as a model file's with a leading class axis; every class's ``lower_bounds``
end to end (``n_iterations``,) with ``n_iter`` (C,) int64 cutting them; ``converged`` (C,) bool, ``lower_bound``
(C,) float64 (-inf: never computed), ``n_rows_dropped`` (C,) int64 (-1: unknown); ``priors`` (C,) positive,
summing to 1; ``feature_names`` as a model file's; and ``ubm.<name>``, the background model's model file
arrays. The metadata holds the class labels (JSON strings or integers), the parameters the class mixtures share
(``mixture``, checked as a model file's), the classifier's own (``params``), the background model's model file
metadata (``ubm``) and ``extra``. Every class's parameters are checked as a model file's.

Limits (on load and on save): 2 to ``MAX_CLASSES`` (100,000) classes; per class, a model file's limits; per
stacked array at most ``MAX_STACKED_ELEMENTS`` (2**28, 2 GiB of float64) values, e.g. 10,000 classes of K=64
diagonal components at d=60 hold 38.4 million; at most ``MAX_ITERATIONS`` iterations in all.

Version 1 (dgmm 0.2: one set of members ``c<i>.<name>`` per class, readable up to 10 classes) is still read.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

from ..version import __version__
from . import model_file
from .archive import Invalid, Spec
from .checks import (
    INT,
    MAX_FEATURE_NAME_CHARS,
    MAX_ITERATIONS,
    NONE,
    REAL,
    STR,
    TooLarge,
    check_keys,
    check_limits,
    check_values,
)
from .fitted import PARAMETER_ARRAYS

FORMAT = "dgmm-classifier"
FORMAT_VERSION = 2
MAX_CLASSES = 100_000
MAX_STACKED_ELEMENTS = 2**28
_PARAMS = {"priors": STR + (list,), "relevance_factor": REAL, "adapt": STR + (list,)}
_METADATA = {
    "format": STR,
    "format_version": INT,
    "dgmm_version": STR,
    "classes": (list,),
    "params": (dict,),
    "extra": (dict,),
    "sha256": STR,
    "ubm": (dict,) + NONE,
}
_METADATA_V2 = {
    **_METADATA,
    "mixture": (dict,),
    "covariance_type": STR,
    "n_components": INT,
    "n_features": INT,
    "n_iterations": INT,
}
_METADATA_V1 = {**_METADATA, "priors": (list,), "members": (list,)}
_PER_CLASS = {"n_iter": "<i8", "converged": "|b1", "lower_bound": "<f8", "n_rows_dropped": "<i8", "priors": "<f8"}

Member = tuple[dict[str, np.ndarray], dict[str, Any]]  # a model file's arrays and metadata


def is_classifier(metadata: Mapping[str, Any]) -> bool:
    return metadata.get("format") == FORMAT


def contents(model: Any, extra: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata (without ``sha256``) of a fitted GaussianMixtureClassifier (version 2)."""
    members = [model_file.contents(mixture, {}) for mixture in model.estimators_]
    first = members[0][1]
    for i, (_, member) in enumerate(members):
        if member["params"] != first["params"]:
            raise Invalid(
                f"the mixture of class {i} has other parameters than class 0's; the class mixtures share theirs"
            )
    arrays = {name: np.stack([a[name] for a, _ in members]) for name in PARAMETER_ARRAYS}
    arrays["lower_bounds"] = np.concatenate([a["lower_bounds"] for a, _ in members])
    per_class = {
        "n_iter": [m["n_iter"] for _, m in members],
        "converged": [m["converged"] for _, m in members],
        "lower_bound": [-math.inf if m["lower_bound"] is None else m["lower_bound"] for _, m in members],
        "n_rows_dropped": [m.get("n_rows_dropped", -1) for _, m in members],
        "priors": [float(p) for p in model.class_prior_],
    }
    arrays.update({name: np.asarray(values, dtype=_PER_CLASS[name]) for name, values in per_class.items()})
    arrays["feature_names"] = members[0][0]["feature_names"]
    ubm = None
    if getattr(model, "ubm_", None) is not None:
        ubm_arrays, ubm = model_file.contents(model.ubm_, {})
        arrays.update({f"ubm.{name}": value for name, value in ubm_arrays.items()})
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
        "params": {"priors": priors, "relevance_factor": float(model.relevance_factor), "adapt": adapt},
        "mixture": first["params"],
        "covariance_type": first["covariance_type"],
        "n_components": first["n_components"],
        "n_features": first["n_features"],
        "n_iterations": int(arrays["lower_bounds"].shape[0]),
        "ubm": ubm,
        "extra": extra,
    }
    return arrays, metadata


def specs(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    """The dtype and shape of every array, in hashing order, from the checked metadata (either version)."""
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Invalid(f"unknown classifier format version {version!r:.80}")
    if version > FORMAT_VERSION:
        raise Invalid(
            f"classifier format version {version} is newer than this dgmm supports ({FORMAT_VERSION}); upgrade dgmm"
        )
    check_keys("metadata", metadata, _METADATA_V1 if version == 1 else _METADATA_V2)
    check_keys("metadata params", metadata["params"], _PARAMS)
    _check_classes(metadata["classes"])
    out = _specs_v1(metadata) if version == 1 else _specs_v2(metadata)
    if metadata["ubm"] is not None:
        ubm = _member_specs("ubm", metadata["ubm"])
        if metadata["ubm"]["n_features"] != _n_features(metadata):
            raise Invalid(
                f"the background model has {metadata['ubm']['n_features']} features, the classes another count"
            )
        out.update(ubm)
    return out


def _check_classes(classes: list) -> None:
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise TooLarge(f"{len(classes)} classes; a classifier file holds 2 to MAX_CLASSES={MAX_CLASSES}")
    if (
        not all(isinstance(c, str) or (isinstance(c, int) and not isinstance(c, bool)) for c in classes)
        or len({type(c) for c in classes}) != 1
        or len(set(classes)) != len(classes)
    ):
        raise Invalid("class labels must be distinct strings, or distinct integers")


def _n_features(metadata: Mapping[str, Any]) -> int:
    return metadata["members"][0]["n_features"] if metadata["format_version"] == 1 else metadata["n_features"]


def _member_specs(prefix: str, member: Any) -> dict[str, Spec]:
    if not isinstance(member, dict):
        raise Invalid(f"metadata member {prefix} is not an object")
    return {f"{prefix}.{name}": spec for name, spec in model_file.specs({**member, "sha256": ""}).items()}


def _specs_v2(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    C, K, d, kind = (
        len(metadata["classes"]),
        *(metadata[k] for k in ("n_components", "n_features", "covariance_type")),
    )
    n_iterations = metadata["n_iterations"]
    if not 0 <= n_iterations <= MAX_ITERATIONS:
        raise TooLarge(f"n_iterations={n_iterations} is out of range (0 to MAX_ITERATIONS={MAX_ITERATIONS})")
    # one class, as a model file of it would be: the shared parameters, shapes and per-class limits checked
    one = {
        "format": model_file.FORMAT,
        "format_version": model_file.FORMAT_VERSION,
        "dgmm_version": metadata["dgmm_version"],
        "covariance_type": kind,
        "n_components": K,
        "n_features": d,
        "converged": True,
        "n_iter": 0,
        "lower_bound": None,
        "params": metadata["mixture"],
        "extra": {},
        "sha256": "",
    }
    single = model_file.specs(one)
    check_limits(kind, K, d, n_iterations)
    largest = C * max(K * d, math.prod(single["covariances"].shapes[0]))
    if largest > MAX_STACKED_ELEMENTS:
        raise TooLarge(
            f"{C} classes of covariance_type {kind!r} with n_components={K}, n_features={d} need an array of "
            f"{largest} values, more than MAX_STACKED_ELEMENTS={MAX_STACKED_ELEMENTS}"
        )
    context = f"for {C} classes of covariance_type {kind!r} with n_components={K}, n_features={d}"
    out = {name: Spec(np.dtype("<f8"), ((C, *single[name].shapes[0]),), context) for name in PARAMETER_ARRAYS}
    out["lower_bounds"] = Spec(np.dtype("<f8"), ((n_iterations,),), f"for n_iterations={n_iterations}")
    out.update({name: Spec(np.dtype(dtype), ((C,),), f"for {C} classes") for name, dtype in _PER_CLASS.items()})
    out["feature_names"] = Spec(np.dtype(f"<U{MAX_FEATURE_NAME_CHARS}"), ((0,), (d,)), f"for n_features={d}")
    return out


def _specs_v1(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    classes, priors, members = metadata["classes"], metadata["priors"], metadata["members"]
    if len(members) != len(classes) or len(priors) != len(classes):
        raise Invalid(f"{len(classes)} classes but {len(members)} members and {len(priors)} priors")
    out: dict[str, Spec] = {}
    for i, member in enumerate(members):
        out.update(_member_specs(f"c{i}", member))
    if len({member["n_features"] for member in members}) != 1:
        raise Invalid(f"the members have different feature counts {sorted({m['n_features'] for m in members})}")
    return out


def check_member_values(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    """The parameters of every class (as a model file's are checked), the per-class values and the priors."""
    class_members, ubm = mixtures(arrays, metadata)
    if metadata["format_version"] > 1:
        n_iter, dropped, lower_bound = arrays["n_iter"], arrays["n_rows_dropped"], arrays["lower_bound"]
        if np.any(n_iter < 0) or int(n_iter.sum()) != metadata["n_iterations"]:
            raise Invalid(f"n_iter per class does not add up to n_iterations={metadata['n_iterations']}")
        if np.any(dropped < -1) or np.any(np.isnan(lower_bound)) or np.any(lower_bound == math.inf):
            raise Invalid("n_rows_dropped or lower_bound of a class is out of range")
    priors = [float(p) for p in (arrays["priors"] if metadata["format_version"] > 1 else metadata["priors"])]
    if not all(math.isfinite(p) and p > 0 for p in priors) or not math.isclose(math.fsum(priors), 1.0, rel_tol=1e-9):
        raise Invalid(f"priors {priors[:4]!r:.80} are not positive numbers summing to 1")
    for i, (member_arrays_, member) in enumerate(class_members):
        try:
            check_values(member_arrays_, member["covariance_type"], model_file.NUMERIC)
        except Invalid as exc:
            raise type(exc)(f"class {i}: {exc}") from None
    if ubm is not None:
        check_values(ubm[0], ubm[1]["covariance_type"], model_file.NUMERIC)


def mixtures(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> tuple[list[Member], Member | None]:
    """Every class's mixture, and the background model (or None), as a model file's arrays and metadata (views of
    the stacked arrays: nothing is copied)."""
    ubm = (member_arrays(arrays, "ubm"), metadata["ubm"]) if metadata["ubm"] is not None else None
    if metadata["format_version"] == 1:
        return [(member_arrays(arrays, f"c{i}"), m) for i, m in enumerate(metadata["members"])], ubm
    ends = np.cumsum(arrays["n_iter"])
    members = []
    for c in range(len(metadata["classes"])):
        n_iter, dropped = int(arrays["n_iter"][c]), int(arrays["n_rows_dropped"][c])
        lower_bound = float(arrays["lower_bound"][c])
        member = {
            "format": model_file.FORMAT,
            "covariance_type": metadata["covariance_type"],
            "n_components": metadata["n_components"],
            "n_features": metadata["n_features"],
            "converged": bool(arrays["converged"][c]),
            "n_iter": n_iter,
            "lower_bound": lower_bound if math.isfinite(lower_bound) else None,
            "params": metadata["mixture"],
            **({"n_rows_dropped": dropped} if dropped >= 0 else {}),
        }
        one = {name: arrays[name][c] for name in PARAMETER_ARRAYS}
        one["lower_bounds"] = arrays["lower_bounds"][int(ends[c]) - n_iter : int(ends[c])]
        one["feature_names"] = arrays["feature_names"]
        members.append((one, member))
    return members, ubm


def priors(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> np.ndarray:
    """The class priors (C,), float64."""
    return np.asarray(arrays["priors"] if metadata["format_version"] > 1 else metadata["priors"], dtype=np.float64)


def member_arrays(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays of one member (``c0``, ``ubm``), without the prefix."""
    return {name.split(".", 1)[1]: value for name, value in arrays.items() if name.split(".", 1)[0] == prefix}
