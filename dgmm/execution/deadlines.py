"""Waiting on a ``distributed`` cluster with deadlines, so that a fit never hangs.

Every wait polls every :data:`POLL_SECONDS`; between polls the scheduler is asked (itself
within :data:`SCHEDULER_TIMEOUT`) which workers are running. When no worker has been running
— all paused at their memory limit, or none connected — for ``stall_timeout`` seconds in a
row, the wait ends with a :class:`~dgmm.errors.ClusterError` that says what happened and what
to change. distributed pauses workers briefly while they spill; one running worker resets the
clock, so such pauses never add up to a stall.

A lost worker costs a retry, not an error: the scheduler reruns its tasks elsewhere (passes
reference the parameters as a task of their own graph, not as scattered data, so nothing of a
pass exists only on one worker). A lost scheduler, or a task that killed its worker again and
again, is a ClusterError at once.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import ClusterError

STALL_TIMEOUT = 60.0  # seconds without a running worker before a fit ends (default)
POLL_SECONDS = 1.0  # how often a wait looks at the cluster
SCHEDULER_TIMEOUT = 30.0  # most seconds one question to the scheduler may take
RESUME_HINT = "the checkpoint of the last finished iteration is kept: run again with --resume to continue"


@dataclass
class StallWatch:
    """Seconds in a row without a running worker, from the times and counts it is shown."""

    timeout: float
    since: float | None = None

    def stalled(self, now: float, running: int) -> bool:
        """Whether no worker has run since ``timeout`` seconds before ``now`` (``running`` workers now)."""
        if running:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.timeout


@dataclass(frozen=True)
class Health:
    """What the scheduler says of its workers (``reachable`` False: it did not answer)."""

    running: int
    paused: int
    total: int
    memory: int = 0  # largest process memory of a paused worker, bytes
    limit: int = 0  # its memory limit, bytes
    reachable: bool = True


def workers_info(client: Any) -> dict[str, dict]:
    """The scheduler's description of every worker, asked within SCHEDULER_TIMEOUT (raises on failure)."""
    info = client.sync(client.scheduler.identity, n_workers=-1, callback_timeout=SCHEDULER_TIMEOUT)
    return dict(info.get("workers", {}))


def health(client: Any) -> Health:
    """Running and paused workers now; an unreachable scheduler counts as no running worker."""
    try:
        workers = workers_info(client).values()
    except (OSError, TimeoutError):
        return Health(0, 0, 0, reachable=False)
    paused = [w for w in workers if w.get("status") == "paused"]
    running = sum(w.get("status") == "running" for w in workers)
    worst = max(paused, key=lambda w: w.get("metrics", {}).get("memory", 0), default={})
    return Health(
        running,
        len(paused),
        len(workers),
        int(worst.get("metrics", {}).get("memory", 0) or 0),
        int(worst.get("memory_limit") or 0),
    )


def wait_all(
    client: Any, futures: Sequence[Any], stall_timeout: float = STALL_TIMEOUT, poll: float = POLL_SECONDS
) -> None:
    """Wait until every future is done; ClusterError when the cluster cannot run them.

    Errors raised by the tasks themselves are not raised here: ``future.result()`` raises them.
    """
    from distributed.client import _wait

    watch = StallWatch(stall_timeout)
    while True:
        try:
            client.sync(_wait, list(futures), timeout=poll)
            return
        except TimeoutError:
            pass
        except _cancelled() as exc:
            raise cancelled_error(client, exc) from None
        now = health(client)
        if watch.stalled(time.monotonic(), now.running):
            with contextlib.suppress(Exception):  # the client may be closing; the error below is what matters
                client.cancel(list(futures))
            raise stalled_error(client, now, stall_timeout)


def result(client: Any, future: Any, stall_timeout: float = STALL_TIMEOUT) -> Any:
    """``future.result()`` within the deadlines of :func:`wait_all`; cluster failures as ClusterError."""
    from distributed.scheduler import KilledWorker

    wait_all(client, [future], stall_timeout)
    try:
        return future.result()
    except _cancelled() as exc:
        raise cancelled_error(client, exc) from None
    except KilledWorker as exc:
        task, _, allowed = exc.args
        raise ClusterError(
            f"task {task!r:.80} killed {allowed + 1} workers in a row; they most likely ran out of memory: "
            f"give workers more memory (--memory-limit) or make chunks smaller (--chunk-rows); {RESUME_HINT}"
        ) from None


def _cancelled() -> type[BaseException]:
    from distributed.utils import CancelledError

    return CancelledError


def address_of(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except AttributeError:
        return "(unknown)"


def cancelled_error(client: Any, exc: BaseException) -> ClusterError:
    """The ClusterError for futures the cluster cancelled (the scheduler lost, or the work lost)."""
    text = " ".join(str(exc).split())
    if "scheduler-connection-lost" in text or getattr(client, "status", "running") != "running":
        return ClusterError(
            f"lost the connection to the scheduler {address_of(client)}; restart it (and its "
            f"workers) and run again; {RESUME_HINT}"
        )
    reason = getattr(exc, "reason", None) or text[:160]
    return ClusterError(
        f"the cluster at {address_of(client)} dropped this pass's work ({reason}), after losing "
        f"workers or the scheduler; check them and run again; {RESUME_HINT}"
    )


def stalled_error(client: Any, now: Health, seconds: float) -> ClusterError:
    """The ClusterError for a cluster on which no worker ran for ``seconds``."""
    where = f"scheduler {address_of(client)}"
    if not now.reachable:
        return ClusterError(
            f"{where} did not answer for {seconds:g} s; check that it runs and run again; {RESUME_HINT}"
        )
    if now.paused:
        return ClusterError(
            f"no worker ran for {seconds:g} s: {now.paused} of {now.total} workers are paused at their memory "
            f"limit (process memory {now.memory / 2**20:.0f} MiB of {now.limit / 2**20:.0f} MiB); give workers "
            f"more memory (--memory-limit) or start fewer, larger ones; {RESUME_HINT}"
        )
    return ClusterError(
        f"no worker connected to {where} for {seconds:g} s; start workers (or find out why they "
        f"stopped) and run again; {RESUME_HINT}"
    )
