"""Plugins for the workers of the local cluster dgmm starts (imported only when it starts one)."""

from __future__ import annotations

import logging

from distributed import WorkerPlugin

_USER_ERRORS = ("DataError", "ParameterError", "ConfigError", "ModelFileError", "CheckpointError")


def _drop_user_error_records(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("Compute Failed" in message and any(f"{name}(" in message for name in _USER_ERRORS))


class QuietUserErrors(WorkerPlugin):
    """A task that fails with a dgmm error (bad input) is not logged by the worker with a traceback.

    The error still reaches the client, which reports it in one line; other worker logs are kept.
    """

    def setup(self, worker) -> None:
        logging.getLogger("distributed.worker").addFilter(_drop_user_error_records)
