"""Imported at start-up by the Python processes a test starts with tests/hooks on PYTHONPATH.

With ``DGMM_SIGNAL_AT="SIGTERM:3"`` the process sends itself that signal when pyarrow starts
reading its 3rd row group: a deterministic point inside a real command, never a timer.
"""

import os

_SPEC = os.environ.get("DGMM_SIGNAL_AT")
if _SPEC:
    import signal

    import pyarrow.parquet as pq

    _NAME, _, _N = _SPEC.partition(":")
    _READ = pq.ParquetFile.read_row_group
    _CALLS = [0]

    def _read_row_group(self, *args, **kwargs):
        _CALLS[0] += 1
        if _CALLS[0] == int(_N):
            os.kill(os.getpid(), getattr(signal, _NAME))
        return _READ(self, *args, **kwargs)

    pq.ParquetFile.read_row_group = _read_row_group
