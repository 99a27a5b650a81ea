"""Checkpoints of a fit, written after every iteration, so a killed fit resumes exactly.

A checkpoint is one ``checkpoint.npz`` in its directory (a local path or an fsspec URL),
published whole (:mod:`dgmm.data.publish`), no pickle, checksummed like model files and read
within bounds (:mod:`dgmm.persist.archive`). It holds the seeds of every initialisation, the index
of the running one, that run's parameters and log-likelihood history, the best finished run
so far, the settings and a fingerprint of the input — and, once the fit is over, its final
model and kept split/merge moves (``finished``), so that a fit whose model could not be
published is published by ``--resume`` without refitting. EM iterations are deterministic
for a fixed chunking, so resuming from iteration t gives exactly the parameters of an
uninterrupted fit.

What a scheduled (nightly) run relies on:

* a checkpoint belongs to one run: without ``resume`` an existing one is refused (continue it
  with ``resume``, or delete it), and two runs never share one at the same time (a lock file
  beside it, for local directories);
* a checkpoint written for other settings or other input is refused with the real difference
  (the settings that changed, the files added, removed or changed), before any cluster starts;
* the command line removes the checkpoint once the model is published (:meth:`Checkpoint.remove`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from ..algorithms.em import EMResult, IterationCallback, IterationReport
from ..data.sources import filesystem, is_remote, remote_call
from ..errors import CheckpointError, DgmmError
from ..kernels.gaussian import COVARIANCE_TYPES, covariance_shape
from ..kernels.params import MixtureParams
from .archive import Invalid, Spec, canonical_json, checksum, read_archive
from .checks import CORRUPT, INT, NONE, REAL, STR, TooLarge, check_keys, check_limits, has_type
from .formats import write_archive

FORMAT = "dgmm-checkpoint"
FORMAT_VERSION = 2  # 2: n_components, n_features and n_seeds in the metadata, for bounded reads; "finished"
FILE_NAME = "checkpoint.npz"
LOCK_NAME = ".checkpoint.lock"
_PARAM_FIELDS = ("weights", "means", "covariances", "precisions_cholesky")
_RESULT = (dict, type(None))
_METADATA = {"format": STR, "format_version": INT, "covariance_type": STR, "n_components": INT,
             "n_features": INT, "n_seeds": INT, "init_index": INT, "current": _RESULT, "best": _RESULT,
             "finished": (list, type(None)), "identity": (dict,), "sha256": STR}  # fmt: skip
_RESULT_META = {"converged": (bool,), "n_iter": INT, "lower_bound": REAL + NONE}
MAX_CHECKPOINT_METADATA_BYTES = 64 << 20  # the identity lists every input file


@dataclass(frozen=True)
class FitState:
    """Where a fit stands.

    Attributes
    ----------
    seeds : one seed per initialisation, drawn once from ``random_state``
    init_index : the initialisation running (== len(seeds) when all are done)
    current : the running initialisation after its last iteration, or None
    best : the best finished initialisation so far (the final model once ``finished``), or None
    finished : None while the fit runs; once it is over, the kept split/merge moves, each
        ``(i, j, k, before, after)`` (see ``GaussianMixture.split_merge_moves_``)
    """

    seeds: tuple[int, ...]
    init_index: int
    current: EMResult | None = None
    best: EMResult | None = None
    finished: tuple[tuple, ...] | None = None


def _result_arrays(prefix: str, result: EMResult | None) -> dict[str, np.ndarray]:
    if result is None:
        return {}
    arrays = {f"{prefix}_{name}": np.asarray(getattr(result.params, name), dtype=np.float64) for name in _PARAM_FIELDS}
    arrays[f"{prefix}_lower_bounds"] = np.asarray(result.lower_bounds, dtype=np.float64)
    return arrays


def _result_meta(result: EMResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    lower_bound = result.lower_bound if math.isfinite(result.lower_bound) else None
    return {
        "converged": result.converged,
        "n_iter": result.n_iter,
        "lower_bound": lower_bound,
        "history": len(result.lower_bounds),
        "n_zero_weight": result.n_zero_weight,
    }


def _result_from(prefix: str, meta: dict | None, arrays: dict, covariance_type: str) -> EMResult | None:
    if meta is None:
        return None
    params = MixtureParams(*(arrays[f"{prefix}_{name}"] for name in _PARAM_FIELDS), covariance_type)
    lower_bound = -math.inf if meta["lower_bound"] is None else float(meta["lower_bound"])
    return EMResult(
        params,
        bool(meta["converged"]),
        int(meta["n_iter"]),
        lower_bound,
        arrays[f"{prefix}_lower_bounds"].tolist(),
        n_zero_weight=int(meta.get("n_zero_weight", 0)),
    )


class Checkpoint:
    """The checkpoint of one fit in ``directory``.

    Parameters
    ----------
    directory : a local directory (created if missing) or an fsspec URL
    resume : continue from an existing checkpoint (when there is none, start afresh);
        without it, an existing checkpoint is refused
    storage_options : fsspec options of a URL ``directory``
    """

    def __init__(self, directory: str | os.PathLike, resume: bool = False, storage_options: dict | None = None):
        self.directory = os.fspath(directory)
        self.remote = is_remote(self.directory)
        self.path = (
            f"{self.directory.rstrip('/')}/{FILE_NAME}" if self.remote else os.path.join(self.directory, FILE_NAME)
        )
        self.resume = resume
        self.storage_options = storage_options
        self.identity: dict[str, Any] = {}
        self._claims = 0

    def bind(self, settings: dict[str, Any], fingerprint: dict[str, Any]) -> None:
        """What this fit is: a resumed checkpoint must have been written for exactly this."""
        self.identity = json.loads(canonical_json({"settings": settings, "input": fingerprint}))

    def exists(self) -> bool:
        if self.remote:
            fs, inner = filesystem(self.path, self.storage_options)
            return bool(remote_call(self.path, fs.exists, inner))
        return os.path.exists(self.path)

    @contextlib.contextmanager
    def claimed(self) -> Iterator[None]:
        """Hold the checkpoint for this run: another run using the same local directory is refused.

        Re-entrant: the command line holds it from before its cluster starts, the fit inside again.
        """
        if self.remote or self._claims:
            self._claims += 1
            try:
                yield
            finally:
                self._claims -= 1
            return
        import fcntl

        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, LOCK_NAME), "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CheckpointError(
                    f"{self.path}: in use by another run; wait for it to end, or give this run "
                    "its own --checkpoint directory"
                ) from None
            self._claims = 1
            try:
                yield
            finally:
                self._claims = 0
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save(self, state: FitState, covariance_type: str) -> None:
        """Write ``state`` whole (this run's own checkpoint is replaced)."""
        if not self.remote:
            os.makedirs(self.directory, exist_ok=True)
        arrays = {"seeds": np.asarray(state.seeds, dtype=np.int64)}
        arrays.update(_result_arrays("current", state.current))
        arrays.update(_result_arrays("best", state.best))
        saved = state.current if state.current is not None else state.best
        K, d = saved.params.means.shape if saved is not None else (0, 0)
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "covariance_type": covariance_type,
            "n_components": int(K),
            "n_features": int(d),
            "n_seeds": len(state.seeds),
            "init_index": state.init_index,
            "current": _result_meta(state.current),
            "best": _result_meta(state.best),
            "finished": None if state.finished is None else [list(move) for move in state.finished],
            "identity": self.identity,
        }
        names = sorted(arrays)
        metadata["sha256"] = checksum(arrays, metadata, names)
        arrays = {name: arrays[name] for name in names}
        arrays["metadata"] = np.frombuffer(canonical_json(metadata).encode(), dtype=np.uint8)
        write_archive(self.path, arrays, overwrite=True, storage_options=self.storage_options)

    def remove(self) -> None:
        """Delete the checkpoint (the run it belongs to is over and its model published)."""
        if self.remote:
            fs, inner = filesystem(self.path, self.storage_options)
            with contextlib.suppress(FileNotFoundError):
                remote_call(self.path, fs.rm, inner)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.directory, LOCK_NAME))
            os.rmdir(self.directory)  # only when nothing else is in it

    def peek_iteration(self) -> int:
        """Iterations done by the running initialisation (0 when none is running); no identity check."""
        current = self._read()[0]["current"]
        return 0 if current is None else int(current["n_iter"])

    def load(self) -> FitState | None:
        """The saved state when resuming and one exists; None when there is none.

        Raises CheckpointError for one that exists without ``resume`` (another run's), and for
        one written for other input or settings (naming the difference).
        """
        if not self.exists():
            return None
        if not self.resume:
            raise CheckpointError(
                f"{self.path}: a checkpoint of an earlier run is there; continue it with --resume "
                "(resume=True), or delete it to start over"
            )
        metadata, arrays = self._read()
        difference = identity_difference(metadata["identity"], self.identity)
        if difference:
            raise CheckpointError(
                f"{self.path}: written for {difference}; delete the checkpoint or run without resuming"
            )
        kind = metadata["covariance_type"]
        finished = metadata["finished"]
        return FitState(
            tuple(int(s) for s in arrays["seeds"]),
            int(metadata["init_index"]),
            _result_from("current", metadata["current"], arrays, kind),
            _result_from("best", metadata["best"], arrays, kind),
            None
            if finished is None
            else tuple((int(i), int(j), int(k), float(b), float(a)) for i, j, k, b, a in finished),
        )

    def _read(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metadata and arrays, read within bounds, format, checksum and structure verified."""
        from ..data.sources import open_input

        try:
            with open_input(self.path, self.storage_options) as source:
                metadata, arrays = read_archive(
                    source if self.remote else str(source),
                    _specs,
                    max_metadata_bytes=MAX_CHECKPOINT_METADATA_BYTES,
                    what="dgmm checkpoint",
                )
            _check_values(metadata, arrays)
        except TooLarge as exc:
            raise CheckpointError(f"{self.path}: {exc}; delete it to start over") from None
        except Invalid as exc:
            raise CheckpointError(
                f"{self.path}: not an intact dgmm checkpoint ({exc}); delete it to start over"
            ) from None
        except DgmmError:
            raise
        except CORRUPT + (AttributeError, RecursionError) as exc:
            raise CheckpointError(
                f"{self.path}: corrupt checkpoint ({type(exc).__name__}); delete it to start over"
            ) from None
        return metadata, arrays


def _specs(metadata: Mapping[str, Any]) -> dict[str, Spec]:
    """The dtype and shape of every array of a checkpoint, in hashing (sorted) order, from its metadata."""
    if metadata.get("format") != FORMAT:
        raise Invalid(f"format {metadata.get('format')!r:.80}, expected {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise Invalid(
            f"format version {metadata.get('format_version')!r:.20}; this dgmm reads version "
            f"{FORMAT_VERSION} (a checkpoint of another dgmm version)"
        )
    check_keys("metadata", metadata, _METADATA)
    kind, K, d, n_seeds = (metadata[key] for key in ("covariance_type", "n_components", "n_features", "n_seeds"))
    if kind not in COVARIANCE_TYPES:
        raise Invalid(f"unknown covariance_type {kind!r:.80}")
    if n_seeds < 1 or not 0 <= metadata["init_index"] <= n_seeds or n_seeds > 1_000_000:
        raise Invalid(f"init_index {metadata['init_index']} or n_seeds {n_seeds} is out of range")
    for part in ("settings", "input"):
        if not isinstance(metadata["identity"].get(part, {}), dict):
            raise Invalid(f"metadata identity {part} is not an object")
    for move in metadata["finished"] or ():  # kept split/merge moves: (i, j, k, before, after)
        if not (
            isinstance(move, list)
            and len(move) == 5
            and all(has_type(v, INT) and 0 <= v < K for v in move[:3])
            and all(has_type(v, REAL) for v in move[3:])
        ):
            raise Invalid(f"metadata finished holds {move!r:.80}, not a move [i, j, k, before, after]")
    specs = {"seeds": Spec(np.dtype("<i8"), ((n_seeds,),))}
    for prefix in ("current", "best"):
        meta = metadata[prefix]
        if meta is None:
            continue
        check_keys(
            f"metadata {prefix}",
            meta,
            {**_RESULT_META, "history": INT, "n_zero_weight": INT},
            optional=("n_zero_weight",),
        )  # absent from older checkpoints
        if K < 1 or d < 1 or meta["n_iter"] < 0 or meta["history"] < 0:
            raise Invalid(f"metadata {prefix}: n_components={K}, n_features={d} or n_iter is out of range")
        check_limits(kind, K, d, meta["history"])
        cov = covariance_shape(kind, K, d)
        context = f"for covariance_type {kind!r} with n_components={K}, n_features={d}"
        shapes = {"weights": (K,), "means": (K, d), "covariances": cov, "precisions_cholesky": cov,
                  "lower_bounds": (meta["history"],)}  # fmt: skip
        specs.update({f"{prefix}_{name}": Spec(np.dtype("<f8"), (shape,), context) for name, shape in shapes.items()})
    return dict(sorted(specs.items()))


def _check_values(metadata: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Finite parameters in every saved result; raises Invalid."""
    for name, array in arrays.items():
        if name != "seeds" and not name.endswith("lower_bounds") and not np.all(np.isfinite(array)):
            raise Invalid(f"array {name!r} holds NaN or infinite values")


def identity_difference(saved: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """How the run a checkpoint was written for differs from this one, in words; None when it does not."""
    for part in ("settings", "input"):
        old, new = saved.get(part, {}), now.get(part, {})
        changes = _file_changes(old, new) if part == "input" else []
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not (changes and k == "files"))
        changes += [f"{key}: {_show(old.get(key))} now {_show(new.get(key))}" for key in keys]
        if changes:
            more = f"; and {len(changes) - 4} more" if len(changes) > 4 else ""
            return f"other {part} ({'; '.join(changes[:4])}{more})"
    return None


def _file_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Files added, removed or changed between two input fingerprints (empty when neither lists files)."""
    if not (isinstance(old.get("files"), list) and isinstance(new.get("files"), list)):
        return []
    before = {f.get("path"): f for f in old["files"] if isinstance(f, dict)}
    after = {f.get("path"): f for f in new["files"] if isinstance(f, dict)}
    changes = []
    added, removed = [p for p in after if p not in before], [p for p in before if p not in after]
    changed = [p for p in after if p in before and after[p] != before[p]]
    for what, paths in (("added", added), ("removed", removed), ("changed", changed)):
        if paths:
            listed = ", ".join(map(str, paths[:3])) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            changes.append(f"{len(paths)} file{'s' * (len(paths) > 1)} {what}: {listed}")
    return changes


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def saving_callback(
    callback: IterationCallback | None, checkpoint: Checkpoint, state: FitState, init: int, covariance_type: str
) -> IterationCallback:
    """An iteration callback that also checkpoints the running initialisation."""

    def save(report: IterationReport) -> None:
        current = EMResult(
            report.params,
            report.converged,
            report.n_iter,
            report.lower_bound,
            list(report.lower_bounds),
            n_zero_weight=report.n_zero_weight,
        )
        checkpoint.save(FitState(state.seeds, init, current, state.best), covariance_type)
        if callback is not None:
            callback(report)

    return save
