"""Faults injected at deterministic points of a fit, from inside the cluster (never after a timer).

:class:`KillAt` is a worker plugin: it watches the task transitions of its worker and kills a
process — its own worker, that worker's nanny, or a given process such as the scheduler — at
one chosen moment of the n-th pass over the data. Passes are counted cluster-wide through
files in a folder: every pass has exactly one parameter key (``payload-…``), computed by one
worker, which records it there. The kill happens once, whichever worker gets there first
(a marker file created with O_EXCL), so a restarted worker does not kill again.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from distributed import WorkerPlugin
from distributed.core import Status

FOLDER = Path(__file__).resolve().parent  # tests/: on the PYTHONPATH of processes that unpickle these plugins
HOOKS = FOLDER / "hooks"  # sitecustomize.py: a signal at the n-th row group read (DGMM_SIGNAL_AT), on PYTHONPATH

# moment -> (key prefix, start state, finish state) of the transition that triggers the kill
MOMENTS = {
    "payload-made": (
        "payload-",
        "executing",
        "memory",
    ),  # the worker that made the parameters, before others fetch them
    "payload-fetch": ("payload-", "fetch", "flight"),  # a worker starting to fetch the parameters
    "task": (("stats-", "merge-"), "ready", "executing"),  # a chunk or merge task starting
}


class KillAt(WorkerPlugin):
    """Kill ``target`` ("worker", "nanny", "group" or a pid) at ``moment`` of pass ``n`` (1-based); ``n=None`` only counts.

    ``signal`` is the signal sent (SIGKILL by default); "group" sends it to the worker's process group.
    ``target="write:PATH"`` writes a file at PATH instead (another run publishing to the same path);
    ``target=("move", SRC, DST)`` renames SRC to DST (an input file removed mid-fit);
    ``target=("pidfile", PATH)`` kills the process whose pid the test writes to PATH once it has
    started it (waited for: the plugin is registered before the process starts).

    ``target="pause"`` pauses instead, as distributed does at a worker's memory limit: every
    worker, at its first task transition once pass ``n`` has begun (run the workers with
    ``distributed.worker.memory.pause: false``, or their memory monitor resumes them).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        n: int | None,
        moment: str = "task",
        target: str | int = "worker",
        signal: str = "SIGKILL",
    ):
        self.folder, self.n, self.moment, self.target, self.signal = str(folder), n, moment, target, signal

    def setup(self, worker) -> None:
        (Path(self.folder) / "passes").mkdir(parents=True, exist_ok=True)
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if not isinstance(name, str):
            return
        if name.startswith("payload-") and finish == "memory" and start == "executing":
            _create(Path(self.folder) / "passes" / name)
        if self.target == "pause":
            if self.n is not None and passes_seen(self.folder) >= self.n and not getattr(self, "paused", False):
                self.paused = True  # not from inside the worker's state machine: from its event loop, next
                self.worker.loop.add_callback(setattr, self.worker, "status", Status.paused)
            return
        prefix, when, then = MOMENTS[self.moment]
        if self.n is None or (start, finish) != (when, then) or not name.startswith(prefix):
            return
        if passes_seen(self.folder) == self.n and _create(Path(self.folder) / "killed"):
            if isinstance(self.target, (tuple, list)) and self.target[0] == "move":
                os.rename(self.target[1], self.target[2])
                return
            if isinstance(self.target, (tuple, list)) and self.target[0] == "pidfile":
                os.kill(_wait_for_pid(Path(self.target[1])), getattr(signal, self.signal))
                return
            if str(self.target).startswith("write:"):
                Path(str(self.target).removeprefix("write:")).write_bytes(b"another run's model")
                return
            number = getattr(signal, self.signal)
            if self.target == "group":
                os.killpg(os.getpgid(0), number)
                return
            pid = {"worker": os.getpid(), "nanny": os.getppid()}.get(self.target, self.target)
            os.kill(int(pid), number)


def _wait_for_pid(path: Path, seconds: float = 120.0) -> int:
    """The pid a test writes to ``path`` right after starting its process (normally there long before)."""
    import time

    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(path.read_text())


def passes_seen(folder: str | os.PathLike) -> int:
    """Passes started so far (as recorded by :class:`KillAt` plugins writing to ``folder``)."""
    path = Path(folder) / "passes"
    return len(os.listdir(path)) if path.exists() else 0


def killed(folder: str | os.PathLike) -> bool:
    return (Path(folder) / "killed").exists()


def resume(dask_worker) -> None:
    """``client.run(resume)``: every paused worker runs again."""
    dask_worker.status = Status.running


def _create(path: Path) -> bool:
    """Create ``path``; False when it exists already (another worker got there first)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


async def dask_setup(worker) -> None:
    """A worker preload (``DASK_DISTRIBUTED__WORKER__PRELOAD='["faults"]'``, tests/ on PYTHONPATH):
    records the worker's pid and adds the :class:`KillAt` described by the JSON in ``DGMM_FAULT``
    (its keyword arguments), for clusters a test cannot reach, such as the one `dgmm fit` starts."""
    import json

    spec = json.loads(os.environ.get("DGMM_FAULT", "{}"))
    if spec:
        (Path(spec["folder"]) / "pids").mkdir(parents=True, exist_ok=True)
        _create(Path(spec["folder"]) / "pids" / str(os.getpid()))
        await worker.plugin_add(KillAt(**spec), name="dgmm-fault")


def worker_pids(folder: str | os.PathLike) -> list[int]:
    """Pids of the workers :func:`dask_setup` started with ``folder``."""
    path = Path(folder) / "pids"
    return [int(name) for name in os.listdir(path)] if path.exists() else []


def preload_env(folder: str | os.PathLike, **fault) -> dict[str, str]:
    """The environment of a `dgmm` command whose local cluster's workers carry ``KillAt(folder, **fault)``."""
    import json

    return {
        **os.environ,
        "PYTHONPATH": str(FOLDER),
        "DASK_DISTRIBUTED__WORKER__PRELOAD": '["faults"]',
        "DGMM_FAULT": json.dumps({"folder": str(folder), **fault}),
    }
