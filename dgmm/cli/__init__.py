"""The ``dgmm`` command: its group and exit codes (:mod:`.app`), settings from YAML and options (:mod:`.config`),
``fit`` and ``select`` (:mod:`.fit`), the model-file commands (:mod:`.commands`, ``impute`` in :mod:`.impute`), ``make demo`` (:mod:`.demo`)."""

from . import commands, fit, impute, speakers  # noqa: F401  (each registers its commands on the group)
from .app import main

__all__ = ["main"]
