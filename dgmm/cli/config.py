"""Typed run settings: one schema serves YAML configs and command-line options.

A config file holds the same keys as the command's options (with ``_`` for
``-``); options given on the command line override it. Every problem is a
:class:`ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..errors import ConfigError
from ..estimator.parameters import CLASSIFIER_PARAMETERS, MIXTURE_PARAMETERS, Parameter, show
from ..estimator.select import SELECTION_PARAMETERS

# Settings of a command run that are not estimator parameters.
DATA = Parameter("data", str, None, "Parquet file or directory, or a Delta Lake or Iceberg table, to fit")
TABLE_VERSION = Parameter(
    "table_version", int, None, "of a Delta Lake or Iceberg table: the version (Delta) or snapshot id (Iceberg) to read"
)
AS_OF = Parameter(
    "as_of", str, None, "of a Delta Lake or Iceberg table: read the snapshot current at this ISO 8601 time"
)
MODEL = Parameter("model", str, None, "where to write the fitted model (.npz)")
OVERWRITE = Parameter("overwrite", bool, False, "replace an existing model file")
COLUMNS = Parameter("columns", str, None, "feature columns (default: all)", is_list=True)
EXCLUDE_COLUMNS = Parameter(
    "exclude_columns",
    str,
    None,
    "columns that are not features (ids, labels), when --columns is not given",
    is_list=True,
)
WEIGHT_COLUMN = Parameter("weight_column", str, None, "column of per-row weights >= 0 (not a feature)")
LABEL_COLUMN = Parameter(
    "label_column",
    str,
    None,
    "column (or hive key) of each row's class: fit one mixture per class, a classifier (never a feature)",
)
CHECKPOINT = Parameter("checkpoint", str, None, "directory for a checkpoint written after every iteration")
RESUME = Parameter("resume", bool, False, "continue from the checkpoint (starts afresh when there is none)")
CLUSTER_SETTINGS: tuple[Parameter, ...] = (
    Parameter("tls_ca_file", str, None, "PEM CA certificate of a tls:// scheduler (else Dask's TLS config)"),
    Parameter("tls_cert", str, None, "PEM client certificate for a tls:// scheduler"),
    Parameter("tls_key", str, None, "PEM private key of --tls-cert (unless that file holds it)"),
    Parameter("n_workers", int, None, "worker processes of the local cluster", minimum=1),
    Parameter("memory_limit", str, None, "memory limit per local worker, e.g. 2GiB"),
)
LOG_FORMAT = Parameter("log_format", str, "text", "progress lines on stderr", choices=("text", "json"))

# The command line's one rule for randomness: every command that draws uses --seed, 0 unless given, so a run
# repeats exactly from its command (the seed is logged and written to the model file). Python's API keeps
# scikit-learn's random_state=None.
CLI_SEED = 0


def seeded(parameters: tuple[Parameter, ...]) -> tuple[Parameter, ...]:
    """``parameters`` with ``random_state`` (--seed) defaulting to :data:`CLI_SEED`."""
    return tuple(replace(p, default=CLI_SEED) if p.name == "random_state" else p for p in parameters)


FIT_SETTINGS: tuple[Parameter, ...] = (
    DATA,
    MODEL,
    OVERWRITE,
    *seeded(MIXTURE_PARAMETERS),
    COLUMNS,
    EXCLUDE_COLUMNS,
    WEIGHT_COLUMN,
    TABLE_VERSION,
    AS_OF,
    LABEL_COLUMN,
    *CLASSIFIER_PARAMETERS,
    CHECKPOINT,
    RESUME,
    *CLUSTER_SETTINGS,
    Parameter("require_convergence", bool, False, "exit with code 3 when max_iter ends the fit"),
    LOG_FORMAT,
)
# dgmm select: the grid and the criterion, then every estimator parameter but the two the grid sets
# and the per-iteration printing (a selection prints its table; --log-format its progress).
SET_BY_SELECT = ("n_components", "covariance_type", "verbose", "verbose_interval", "init_model")
SELECT_SETTINGS: tuple[Parameter, ...] = (
    replace(DATA, help="Parquet file or directory, or a table, to select a model on"),
    Parameter("n_components", str, "1-10", "K to try: 1-10 or 2,4,8"),
    Parameter("covariance_types", str, "full", "covariance types to try, comma-separated", is_list=True),
    *SELECTION_PARAMETERS,
    replace(MODEL, help="write the best model here (.npz)"),
    OVERWRITE,
    COLUMNS,
    EXCLUDE_COLUMNS,
    WEIGHT_COLUMN,
    TABLE_VERSION,
    AS_OF,
    *seeded(tuple(p for p in MIXTURE_PARAMETERS if p.name not in SET_BY_SELECT)),
    *CLUSTER_SETTINGS,
    Parameter("json", bool, False, "print the table as JSON"),
    LOG_FORMAT,
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (safe_load: configs are data, never code)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); save the config as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)}); fix the file") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to read; a config is a flat mapping of key: value") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the config must be a mapping of key: value, not {type(loaded).__name__}")
    return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where, on one line."""
    if isinstance(exc, yaml.MarkedYAMLError) and (exc.problem or exc.context):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return " ".join(f"{exc.problem or exc.context}{where}".split())[:200]
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def resolve(
    settings: Sequence[Parameter],
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    where: str = "config",
) -> dict[str, Any]:
    """Defaults, then the config file's values, then explicit overrides (command-line options); by key."""
    by_key = {s.key: s for s in settings}
    result = {s.key: s.default for s in settings}
    for key, value in (config or {}).items():
        if key not in by_key:
            raise ConfigError(f"{where}: unknown key {show(key)}; allowed keys: {', '.join(by_key)}")
        result[key] = by_key[key].convert(value, where)
    for key, value in (overrides or {}).items():
        if value is not None and value != ():  # () : a repeatable option not given
            result[key] = by_key[key].convert(value, by_key[key].option)
    return result


def estimator_parameters(settings: Mapping[str, Any], classifier: bool = False) -> dict[str, Any]:
    """The GaussianMixture keywords among resolved settings (by the table's keys: ``seed`` -> ``random_state``);
    with ``classifier``, the GaussianMixtureClassifier's (its own parameters too)."""
    table = MIXTURE_PARAMETERS + (CLASSIFIER_PARAMETERS if classifier else ())
    return {p.name: settings[p.key] for p in table if p.key in settings}
