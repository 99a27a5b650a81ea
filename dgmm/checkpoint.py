"""Checkpoints of a fit, written after every iteration, so a killed fit resumes exactly.

A checkpoint is one ``checkpoint.npz`` in its directory (written atomically, no
pickle, checksummed like model files). It holds the seeds of every
initialisation, the index of the running one, that run's parameters and
log-likelihood history, the best finished run so far, the settings and a
fingerprint of the input. EM iterations are deterministic for a fixed chunking,
so resuming from iteration t gives exactly the parameters of an uninterrupted fit.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .em import EMResult, IterationCallback, IterationReport
from .errors import DgmmError
from .gaussian import COVARIANCE_TYPES
from .model_io import (_CORRUPT, _INT, _NONE, _REAL, _STR, _canonical_json, _check_keys, _check_shapes, _checksum,
                       _Invalid, _write_atomically)  # fmt: skip
from .params import MixtureParams

FORMAT = "dgmm-checkpoint"
FORMAT_VERSION = 1
_PARAM_FIELDS = ("weights", "means", "covariances", "precisions_cholesky")
_RESULT = (dict, type(None))
_METADATA = {"format": _STR, "format_version": _INT, "covariance_type": _STR, "init_index": _INT, "current": _RESULT,
             "best": _RESULT, "identity": (dict,), "sha256": _STR}  # fmt: skip
_RESULT_META = {"converged": (bool,), "n_iter": _INT, "lower_bound": _REAL + _NONE}


class CheckpointError(DgmmError, ValueError):
    """A checkpoint is corrupt, or belongs to other input or other settings."""


@dataclass(frozen=True)
class FitState:
    """Where a fit stands.

    Attributes
    ----------
    seeds : one seed per initialisation, drawn once from ``random_state``
    init_index : the initialisation running (== len(seeds) when all are done)
    current : the running initialisation after its last iteration, or None
    best : the best finished initialisation so far, or None
    """

    seeds: tuple[int, ...]
    init_index: int
    current: EMResult | None = None
    best: EMResult | None = None


def _result_arrays(prefix: str, result: EMResult | None) -> dict[str, np.ndarray]:
    if result is None:
        return {}
    arrays = {f"{prefix}_{name}": np.asarray(getattr(result.params, name)) for name in _PARAM_FIELDS}
    arrays[f"{prefix}_lower_bounds"] = np.asarray(result.lower_bounds, dtype=np.float64)
    return arrays


def _result_meta(result: EMResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    lower_bound = result.lower_bound if math.isfinite(result.lower_bound) else None
    return {"converged": result.converged, "n_iter": result.n_iter, "lower_bound": lower_bound}


def _result_from(prefix: str, meta: dict | None, arrays: dict, covariance_type: str) -> EMResult | None:
    if meta is None:
        return None
    params = MixtureParams(*(arrays[f"{prefix}_{name}"] for name in _PARAM_FIELDS), covariance_type)
    lower_bound = -math.inf if meta["lower_bound"] is None else float(meta["lower_bound"])
    return EMResult(params, bool(meta["converged"]), int(meta["n_iter"]), lower_bound,
                    arrays[f"{prefix}_lower_bounds"].tolist())


class Checkpoint:
    """The checkpoint of one fit in ``directory``.

    Parameters
    ----------
    directory : created if missing
    resume : continue from an existing checkpoint (when there is none, start afresh)
    """

    def __init__(self, directory: str | os.PathLike, resume: bool = False):
        self.directory = Path(directory)
        self.path = self.directory / "checkpoint.npz"
        self.resume = resume
        self.identity: dict[str, Any] = {}

    def bind(self, settings: dict[str, Any], fingerprint: dict[str, Any]) -> None:
        """What this fit is: a resumed checkpoint must have been written for exactly this."""
        self.identity = json.loads(_canonical_json({"settings": settings, "input": fingerprint}))

    def save(self, state: FitState, covariance_type: str) -> None:
        """Write ``state`` atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = {"seeds": np.asarray(state.seeds, dtype=np.int64)}
        arrays.update(_result_arrays("current", state.current))
        arrays.update(_result_arrays("best", state.best))
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "covariance_type": covariance_type,
            "init_index": state.init_index,
            "current": _result_meta(state.current),
            "best": _result_meta(state.best),
            "identity": self.identity,
        }
        metadata["sha256"] = _checksum(arrays, metadata, sorted(arrays))
        arrays["metadata"] = np.frombuffer(_canonical_json(metadata).encode(), dtype=np.uint8)
        _write_atomically(str(self.path), arrays)

    def peek_iteration(self) -> int:
        """Iterations done by the running initialisation (0 when none is running); no identity check."""
        current = self._read()[0]["current"]
        return 0 if current is None else int(current["n_iter"])

    def load(self) -> FitState | None:
        """The saved state when resuming and one exists; refuses other input or settings."""
        if not (self.resume and self.path.exists()):
            return None
        metadata, arrays = self._read()
        self._check_identity(metadata["identity"])
        kind = metadata["covariance_type"]
        return FitState(
            tuple(int(s) for s in arrays["seeds"]),
            int(metadata["init_index"]),
            _result_from("current", metadata["current"], arrays, kind),
            _result_from("best", metadata["best"], arrays, kind),
        )

    def _read(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metadata and arrays, format, checksum and structure verified."""
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            metadata = json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))
            valid = (
                isinstance(metadata, dict)
                and metadata.get("format") == FORMAT
                and metadata.get("format_version") == FORMAT_VERSION
                and metadata.get("sha256") == _checksum(arrays, metadata, sorted(arrays))
            )
        except _CORRUPT + (AttributeError, RecursionError) as exc:
            raise CheckpointError(f"{self.path}: corrupt checkpoint ({type(exc).__name__}); delete it to start over") from None
        if not valid:
            raise CheckpointError(f"{self.path}: not an intact dgmm checkpoint; delete it to start over")
        try:
            _check_structure(metadata, arrays)
        except _Invalid as exc:
            raise CheckpointError(f"{self.path}: inconsistent checkpoint ({exc}); delete it to start over") from None
        return metadata, arrays

    def _check_identity(self, saved: dict[str, Any]) -> None:
        for part in ("settings", "input"):
            old, new = saved.get(part, {}), self.identity.get(part, {})
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if changed:
                key = changed[0]
                raise CheckpointError(
                    f"{self.path}: written for other {part} ({key}: {json.dumps(old.get(key))[:80]} "
                    f"now {json.dumps(new.get(key))[:80]}); delete the checkpoint or run without resuming"
                )


def _check_structure(metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Keys and types of the metadata, the seeds, and the arrays of every saved result; raises _Invalid."""
    _check_keys("metadata", metadata, _METADATA)
    kind = metadata["covariance_type"]
    if kind not in COVARIANCE_TYPES:
        raise _Invalid(f"unknown covariance_type {kind!r:.80}")
    for part in ("settings", "input"):
        if not isinstance(metadata["identity"].get(part, {}), dict):
            raise _Invalid(f"metadata identity {part} is not an object")
    seeds = arrays.get("seeds")
    if seeds is None or seeds.dtype.kind not in "iu" or seeds.ndim != 1 or not seeds.size:
        raise _Invalid("array 'seeds' is missing or not a non-empty 1-D integer array")
    if not 0 <= metadata["init_index"] <= len(seeds):
        raise _Invalid(f"init_index {metadata['init_index']} is outside 0..{len(seeds)}")
    expected = {"seeds"}
    for prefix in ("current", "best"):
        if metadata[prefix] is not None:
            expected.update(_check_result(prefix, metadata[prefix], arrays, kind))
    unknown = sorted(arrays.keys() - expected)
    if unknown:
        raise _Invalid(f"unknown array {unknown[0]!r:.80}")


def _check_result(prefix: str, meta: dict[str, Any], arrays: dict[str, np.ndarray], kind: str) -> list[str]:
    """One saved EM result: its metadata and its arrays' presence, dtypes, shapes and finiteness."""
    _check_keys(f"metadata {prefix}", meta, _RESULT_META)
    if meta["n_iter"] < 0:
        raise _Invalid(f"metadata {prefix} n_iter={meta['n_iter']} is negative")
    names = [f"{prefix}_{name}" for name in _PARAM_FIELDS + ("lower_bounds",)]
    missing = [name for name in names if name not in arrays]
    if missing:
        raise _Invalid(f"missing array {missing[0]!r}")
    result = {name.removeprefix(prefix + "_"): arrays[name] for name in names}
    means = result["means"]
    if means.ndim != 2 or 0 in means.shape:
        raise _Invalid(f"array '{prefix}_means' has shape {means.shape}, expected (n_components, n_features)")
    try:
        _check_shapes({**result, "feature_names": np.empty(0, dtype="U1")}, kind, *means.shape)
    except _Invalid as exc:
        raise _Invalid(f"{prefix}: {exc}") from None
    for name in _PARAM_FIELDS:
        if not np.all(np.isfinite(result[name])):
            raise _Invalid(f"array '{prefix}_{name}' holds NaN or infinite values")
    return names


def saving_callback(callback: IterationCallback | None, checkpoint: Checkpoint, state: FitState, init: int,
            covariance_type: str) -> IterationCallback:
    """An iteration callback that also checkpoints the running initialisation."""

    def save(report: IterationReport) -> None:
        current = EMResult(report.params, report.converged, report.n_iter, report.lower_bound, list(report.lower_bounds))
        checkpoint.save(FitState(state.seeds, init, current, state.best), covariance_type)
        if callback is not None:
            callback(report)

    return save
