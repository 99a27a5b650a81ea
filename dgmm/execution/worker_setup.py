"""Set-up of the worker processes of the local cluster dgmm starts: a Dask worker preload
(``LocalCluster(preload=["dgmm.execution.worker_setup"])``), run in every worker, restarted ones included.

- Ctrl-C in a terminal sends SIGINT to the whole process group, the workers included. The
  client ends the fit and closes the cluster; a worker acting on it itself would only print a
  KeyboardInterrupt traceback, so workers ignore it.
- A task that fails with a dgmm error (bad input) is not logged by the worker with a
  traceback: the error reaches the client, which reports it in one line. Other logs are kept.

:class:`OneGpuEach`, a worker plugin, gives worker ``i`` of a local GPU cluster its own GPU.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

_USER_ERRORS = ("DataError", "InputTypeError", "ParameterError", "ConfigError", "ModelFileError", "CheckpointError")


def _drop_user_error_records(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("Compute Failed" in message and any(f"{name}(" in message for name in _USER_ERRORS))


def dask_setup(worker) -> None:
    """Called by distributed in each worker process as it starts (on its main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker").addFilter(_drop_user_error_records)


class OneGpuEach(WorkerPlugin):
    """Worker ``i`` sees only GPU ``i mod count`` (:meth:`~dgmm.data.devices.DeviceTarget.select`), restarted
    workers too: set as each starts, before it first uses CUDA."""

    name = "dgmm-one-gpu-each"

    def __init__(self, device: Any, count: int):
        self.device, self.count = device, count

    def setup(self, worker) -> None:
        name = getattr(worker, "name", 0)
        self.device.select(int(name) if str(name).isdigit() else 0, self.count)
