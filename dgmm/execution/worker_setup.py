"""Set-up of the worker processes of the local cluster dgmm starts: a Dask worker preload
(``LocalCluster(preload=["dgmm.execution.worker_setup"])``), run in every worker, restarted ones included.

- Ctrl-C in a terminal sends SIGINT to the whole process group, the workers included. The
  client ends the fit and closes the cluster; a worker acting on it itself would only print a
  KeyboardInterrupt traceback, so workers ignore it.
- A task that fails with a dgmm error (bad input) is not logged by the worker with a
  traceback: the error reaches the client, which reports it in one line. Other logs are kept.
"""

from __future__ import annotations

import logging
import signal
import threading

_USER_ERRORS = ("DataError", "InputTypeError", "ParameterError", "ConfigError", "ModelFileError", "CheckpointError")


def _drop_user_error_records(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("Compute Failed" in message and any(f"{name}(" in message for name in _USER_ERRORS))


def dask_setup(worker) -> None:
    """Called by distributed in each worker process as it starts (on its main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker").addFilter(_drop_user_error_records)
