"""Typed run settings: one schema serves YAML configs and command-line options.

A config file holds the same keys as the command's options (with ``_`` for
``-``); options given on the command line override it. Every problem is a
:class:`ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..errors import DgmmError
from ..kernels.gaussian import COVARIANCE_TYPES
from ..kernels.init import INIT_METHODS


class ConfigError(DgmmError, ValueError):
    """A config file or option has an unknown key, a wrong type or a bad value."""


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 80
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 6, 6


def _show(value: Any) -> str:
    """A short one-line repr of a config key or value (a huge or deeply nested YAML value is cut)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class Setting:
    """One key of a run: its type, default, allowed values and help text."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    is_list: bool = False

    @property
    def option(self) -> str:
        name = self.name.removesuffix("s") if self.type is dict else self.name  # repeated: --storage-option K=V
        return "--" + name.replace("_", "-")

    def describe(self) -> str:
        if self.type is dict:
            return "a mapping of option: value (on the command line: --storage-option KEY=VALUE, repeated)"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[self.type]
        if self.is_list:
            kind = "a list of strings (or a comma-separated string)"
        if self.minimum is not None:
            kind += f" >= {self.minimum:g}"
        return kind

    def convert(self, value: Any, where: str) -> Any:
        """Check and normalise a value from YAML or the command line."""
        if value is None:
            return None
        bad = ConfigError(f"{where}: key {self.name!r} has value {_show(value)}; expected {self.describe()}")
        if self.type is dict:
            return _mapping(value, bad, where)
        if self.is_list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise bad
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if isinstance(value, bool):
            raise bad
        if self.type is float and isinstance(value, int):
            value = float(value)
        if self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.type):
            raise bad
        if self.choices and value not in self.choices:
            raise bad
        if self.minimum is not None and not value >= self.minimum:
            raise bad
        return value


def _mapping(value: Any, bad: ConfigError, where: str) -> dict[str, Any] | None:
    """A YAML mapping with string keys, or ``KEY=VALUE`` strings from the command line (values read as YAML scalars)."""
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        pairs = {}
        for item in value:
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{where}: {item!r} is not KEY=VALUE, e.g. --storage-option endpoint_url=http://host:9000")
            try:
                pairs[key.strip()] = yaml.safe_load(text) if text.strip() else ""
            except yaml.YAMLError:
                pairs[key.strip()] = text
        return pairs
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise bad
    return dict(value)


FIT_SETTINGS: tuple[Setting, ...] = (
    Setting("data", str, None, "Parquet file or directory to fit"),
    Setting("model", str, None, "where to write the fitted model (.npz)"),
    Setting("overwrite", bool, False, "replace an existing model file"),
    Setting("n_components", int, 1, "number of mixture components", minimum=1),
    Setting("covariance_type", str, "full", "covariance of each component", choices=COVARIANCE_TYPES),
    Setting("max_iter", int, 100, "most EM iterations", minimum=0),
    Setting("tol", float, 1e-3, "stop when the mean log-likelihood changes by less", minimum=0),
    Setting("reg_covar", float, 1e-6, "added to every covariance diagonal", minimum=0),
    Setting("init", str, "kmeans", "initialisation method", choices=INIT_METHODS),
    Setting("n_init", int, 1, "initialisations; the best is kept", minimum=1),
    Setting("split_merge", int, 0, "split/merge moves tried per round after EM converges (0: none)", minimum=0),
    Setting("seed", int, None, "random seed (fixes the initialisation)", minimum=0),
    Setting("columns", str, None, "feature columns (default: all)", is_list=True),
    Setting("weight_column", str, None, "column of per-row weights >= 0 (not a feature)"),
    Setting("nan_policy", str, "raise", "rows with nulls or NaN: refuse them, or drop them", choices=("raise", "drop")),
    Setting("checkpoint", str, None, "directory for a checkpoint written after every iteration"),
    Setting("resume", bool, False, "continue from the checkpoint (starts afresh when there is none)"),
    Setting("storage_options", dict, None, "fsspec options for s3:// and other URLs: credentials, endpoint_url, ..."),
    Setting("scheduler", str, None, "address of a running Dask scheduler (default: a local cluster)"),
    Setting("tls_ca_file", str, None, "PEM CA certificate of a tls:// scheduler (else Dask's TLS config)"),
    Setting("tls_cert", str, None, "PEM client certificate for a tls:// scheduler"),
    Setting("tls_key", str, None, "PEM private key of --tls-cert (unless that file holds it)"),
    Setting("n_workers", int, None, "worker processes of the local cluster", minimum=1),
    Setting("memory_limit", str, None, "memory limit per local worker, e.g. 2GiB"),
    Setting("split_every", int, 8, "fan-in of the tree reduce", minimum=2),
    Setting("chunk_rows", int, None, "split Parquet row groups larger than this", minimum=1),
    Setting("cache", str, "auto", "keep the data in cluster memory, or stream it every iteration",
            choices=("auto", "memory", "none")),
    Setting("stall_timeout", float, 60.0, "seconds without a running worker (all paused at their memory limit, "
            "or none connected) before the fit ends with exit code 5", minimum=0),
    Setting("require_convergence", bool, False, "exit with code 3 when max_iter ends the fit"),
    Setting("log_format", str, "text", "progress lines on stderr", choices=("text", "json")),
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (safe_load: configs are data, never code)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
                          "save the config as UTF-8") from None
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
    settings: Sequence[Setting],
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    where: str = "config",
) -> dict[str, Any]:
    """Defaults, then the config file's values, then explicit overrides (command-line options)."""
    by_name = {s.name: s for s in settings}
    result = {s.name: s.default for s in settings}
    for key, value in (config or {}).items():
        if key not in by_name:
            raise ConfigError(f"{where}: unknown key {_show(key)}; allowed keys: {', '.join(by_name)}")
        result[key] = by_name[key].convert(value, where)
    for key, value in (overrides or {}).items():
        if value is not None and value != ():  # () : a repeatable option not given
            result[key] = by_name[key].convert(value, by_name[key].option)
    return result
