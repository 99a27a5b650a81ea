"""Every parameter of :class:`~dgmm.GaussianMixture` and :class:`~dgmm.GaussianMixtureClassifier`, declared once.

:data:`MIXTURE_PARAMETERS` is the one table (name, type, default, constraint, help) from which
the rest is derived:

* the estimator's validation (:func:`validate_params`), run by ``fit`` and by the command line
  before a cluster starts;
* the YAML keys and command-line options of ``dgmm fit`` and ``dgmm select``
  (:mod:`dgmm.cli.config`), under the option names in ``setting`` where they differ
  (``--init``, ``--seed``, ``--scheduler``);
* the keyword parameters :func:`dgmm.select` accepts;
* the README's parameter table (:func:`markdown_table`; a test keeps the README in step).

:data:`CLASSIFIER_PARAMETERS` are the classifier's own (the mixture's apply to every class's mixture).

The constructor's signature keeps its literal defaults (scikit-learn reads parameters from it);
a test fails when they differ from this table, or when a parameter is neither here nor exempt.
"""

from __future__ import annotations

import numbers
import os
import reprlib
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import numpy as np

from ..data.validation import NAN_POLICIES
from ..errors import ConfigError, DataError, ParameterError
from ..execution.deadlines import STALL_TIMEOUT
from ..kernels.estep import COMPUTE_DTYPES
from ..kernels.gaussian import COVARIANCE_TYPES, covariance_shape
from ..kernels.init import INIT_METHODS

CachePolicy = Literal["auto", "memory", "none"]
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
CACHE_POLICIES: tuple[str, ...] = ("auto", "memory", "none")

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 80
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 6, 6


def show(value: Any) -> str:
    """A short one-line repr of a value (a huge or deeply nested YAML value is cut)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class Parameter:
    """One parameter: of the estimator, or of a command run (``data``, ``checkpoint``, ...).

    Attributes
    ----------
    name : the estimator's keyword (or the run setting's key)
    type : int, float, str, bool or dict
    default : the default; None where None is allowed ("not given")
    help : one line for ``--help``, the README and the config docs
    choices : the allowed strings, if a fixed set
    minimum : the smallest allowed number
    setting : the YAML key and option name, where it differs from ``name``
    is_list : a list of strings (a comma-separated string on the command line)
    check : replaces the estimator's type check (random_state takes a RandomState too)
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    setting: str | None = None
    is_list: bool = False
    check: Callable[[Any], Any] | None = None

    @property
    def key(self) -> str:
        """The YAML key (and, with ``-`` for ``_``, the option) of this parameter."""
        return self.setting or self.name

    @property
    def option(self) -> str:
        name = self.key.removesuffix("s") if self.type is dict else self.key  # repeated: --storage-option K=V
        return "--" + name.replace("_", "-")

    # ------------------------------------------------------------ estimator values
    def allowed(self) -> str:
        """What the estimator accepts, as the end of a sentence."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        kind = {int: "an int", float: "a float", str: "a string", bool: "a bool", dict: "a dict"}[self.type]
        if self.minimum is not None:
            kind += f" >= {self.minimum:g}"
        return kind + (" or None" if self.default is None and self.type in (str, dict) else "")

    def validate(self, value: Any) -> None:
        """Raise ParameterError (``name=value is invalid; expected ...``) unless the estimator accepts ``value``."""
        if self.check is not None:
            self.check(value)
            return
        if value is None and self.default is None:
            return
        if self.choices:
            ok = isinstance(value, str) and value in self.choices
        elif self.type is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        elif self.type is bool:
            ok = isinstance(value, (bool, np.bool_))
        else:
            ok = isinstance(value, self.type)
        if ok and self.minimum is not None:
            ok = value >= self.minimum
        if not ok:
            raise param_error(self.name, value, self.allowed())

    # ------------------------------------------------------------ YAML and command-line values
    def describe(self) -> str:
        """What a config file or option accepts."""
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
        """Check and normalise a value from YAML or the command line; ConfigError names key, value and rule."""
        if value is None:
            return None
        bad = ConfigError(f"{where}: key {self.key!r} has value {show(value)}; expected {self.describe()}")
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
    import yaml

    if isinstance(value, (list, tuple)):
        if not value:
            return None
        pairs = {}
        for item in value:
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"{where}: {item!r} is not KEY=VALUE, e.g. --storage-option endpoint_url=http://host:9000"
                )
            try:
                pairs[key.strip()] = yaml.safe_load(text) if text.strip() else ""
            except yaml.YAMLError:
                pairs[key.strip()] = text
        return pairs
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise bad
    return dict(value)


def param_error(name: str, value: Any, allowed: str) -> ParameterError:
    return ParameterError(f"{name}={value!r} is invalid; expected {allowed}")


def check_random_state(seed: Any) -> np.random.RandomState:
    """None, an int or a RandomState -> RandomState (scikit-learn's convention)."""
    if seed is None:
        return np.random.RandomState()
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ParameterError(f"random_state={seed!r} must be None, an int or a numpy RandomState")


def _check_init_model(value: Any) -> None:
    """A model file (a path or an fsspec URL) or a fitted mixture, or None."""
    if value is None or isinstance(value, (str, os.PathLike)) or hasattr(value, "means_"):
        return
    raise param_error("init_model", value, "a model file (path or URL), a fitted GaussianMixture, or None")


def _check_seed(seed: Any) -> None:
    if seed is not None and not isinstance(seed, np.random.RandomState):
        check_random_state(seed)


MIXTURE_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("n_components", int, 1, "number of mixture components", minimum=1),
    Parameter("covariance_type", str, "full", "covariance of each component", choices=COVARIANCE_TYPES),
    Parameter("tol", float, 1e-3, "stop when the mean log-likelihood changes by less", minimum=0),
    Parameter("reg_covar", float, 1e-6, "added to every covariance diagonal", minimum=0),
    Parameter("max_iter", int, 100, "most EM iterations", minimum=0),
    Parameter("n_init", int, 1, "initialisations; the best is kept", minimum=1),
    Parameter("init_params", str, "kmeans", "initialisation method", choices=INIT_METHODS, setting="init"),
    Parameter(
        "random_state",
        int,
        None,
        "random seed (fixes the initialisation)",
        minimum=0,
        setting="seed",
        check=_check_seed,
    ),
    Parameter(
        "init_model",
        str,
        None,
        "a model file (or, in Python, a fitted mixture) whose weights, means and covariances start EM: a warm "
        "start, so n_init and init_params are ignored",
        check=_check_init_model,
    ),
    Parameter("verbose", int, 0, "print progress to stdout: 1 per initialisation, 2 per iteration", minimum=0),
    Parameter("verbose_interval", int, 10, "with verbose 2: print every this many iterations", minimum=1),
    Parameter(
        "scheduler_address",
        str,
        None,
        "address of a running Dask scheduler (default: a local cluster)",
        setting="scheduler",
    ),
    Parameter("split_every", int, 8, "fan-in of the tree reduce", minimum=2),
    Parameter("chunk_rows", int, None, "split Parquet row groups larger than this", minimum=1),
    Parameter(
        "cache", str, "auto", "keep the data in cluster memory, or stream it every iteration", choices=CACHE_POLICIES
    ),
    Parameter(
        "nan_policy",
        str,
        "raise",
        "rows with nulls or NaN: refuse them, drop them, or fit on their observed values (marginalize)",
        choices=NAN_POLICIES,
    ),
    Parameter(
        "cmvn",
        str,
        None,
        "column of group ids (utterances): each group's features normalised to mean 0 and variance 1 before "
        "fitting and scoring (CMVN)",
    ),
    Parameter(
        "dtype",
        str,
        "float64",
        "compute dtype of the E-step (statistics are accumulated in float64)",
        choices=COMPUTE_DTYPES,
    ),
    Parameter("split_merge", int, 0, "split/merge moves tried per round after EM converges (0: none)", minimum=0),
    Parameter(
        "stall_timeout",
        float,
        STALL_TIMEOUT,
        "seconds without a running worker (all paused at their memory "
        "limit, or none connected) before the fit ends with a cluster error (exit code 5)",
        minimum=0,
    ),
    Parameter("storage_options", dict, None, "fsspec options for s3:// and other URLs: credentials, endpoint_url, ..."),
    Parameter(
        "device",
        str,
        "auto",
        "where the passes run: auto (where the data lies; Parquet on a GPU when CuPy "
        "sees one), cpu, or cuda (NumPy input copied to the GPU, Parquet and Dask chunks streamed "
        "to it)",
        choices=DEVICES,
    ),
    Parameter(
        "device_cache_gib",
        float,
        None,
        "on a GPU, GiB of Parquet chunks each GPU worker keeps there (cache "
        "other than none; default: half its free memory); the rest is read every iteration",
        minimum=0,
    ),
)
BY_NAME: Mapping[str, Parameter] = {p.name: p for p in MIXTURE_PARAMETERS}
# Constructor parameters that are not in the table: objects and arrays, which no config holds.
NOT_SETTINGS: Mapping[str, str] = {
    "client": "a live distributed.Client object; the command line connects with --scheduler or starts a cluster",
    "weights_init": "an array (K,); give initial values from Python",
    "means_init": "an array (K, d); give initial values from Python",
    "precisions_init": "an array whose shape depends on covariance_type; give initial values from Python",
    "warm_start": "continues a model held in memory by the same process; a command starts from a file or afresh",
}


PRIORS = ("empirical", "uniform")
# The classifier's own parameters, as the command line and configs take them (arrays of priors and
# fitted background models are for Python).
CLASSIFIER_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("priors", str, "empirical", "class priors: the classes' shares of the rows, or equal", choices=PRIORS),
    Parameter(
        "ubm",
        str,
        None,
        "background model MAP-adapted to every class: a model file, or fit (on all rows "
        "first); default: each class fitted by EM",
    ),
    Parameter(
        "relevance_factor",
        float,
        16.0,
        "MAP relevance factor r: a component moves n/(n + r) of the way to the class's rows",
        minimum=0,
    ),
    Parameter(
        "adapt",
        str,
        "means",
        "what MAP adapts: means, weights or covariances, or several comma-separated (means,weights)",
    ),
)
CLASSIFIER_BY_NAME = {parameter.name: parameter for parameter in CLASSIFIER_PARAMETERS}
# a scoring setting of the classifier (not stored in its file): predict, score and their commands take it
TOP_C = Parameter(
    "top_c",
    int,
    None,
    "Gaussian selection: score each row on its top_c background components (5 is usual); default: all, exact",
    minimum=1,
)


def validate_params(est: Any) -> None:
    """Check every table parameter of a GaussianMixture; ParameterError names the bad one, or the combination."""
    for parameter in MIXTURE_PARAMETERS:
        parameter.validate(getattr(est, parameter.name))
    if est.nan_policy == "marginalize":
        refused = [
            (est.device == "cuda", "device='cuda' (missing values are marginalised on the CPU)", "device='cpu'"),
            (getattr(est, "cmvn", None) is not None, f"cmvn={est.cmvn!r}", "normalise before the fit"),
        ]
        for bad, what, fix in refused:
            if bad:
                raise ParameterError(
                    f"nan_policy='marginalize' does not combine with {what} in this version; use {fix}, or "
                    "nan_policy='drop'"
                )


def passes_device(est: Any) -> str:
    """Where a model's passes run: its ``device``, but the CPU for "auto" under nan_policy="marginalize" (its
    kernels are the CPU's)."""
    return "cpu" if getattr(est, "nan_policy", "raise") == "marginalize" and est.device == "auto" else est.device


def check_n_samples(n_samples: int, n_components: int) -> None:
    """Refuse data with fewer rows than a fit needs (scikit-learn's wording, plus the fix)."""
    if n_samples < max(2, n_components):
        raise DataError(
            f"expected n_samples >= max(2, n_components) but got n_components = {n_components}, "
            f"n_samples = {n_samples}; fit fewer components or give more rows"
        )


def markdown_table() -> str:
    """The README's table of estimator parameters, their options and config keys (Markdown).

    Regenerate the README's copy with ``python -c "from dgmm.estimator.parameters import markdown_table as t; print(t())"``.
    """
    lines = ["| parameter | option / config key | default | allowed | meaning |", "|---|---|---|---|---|"]
    for p in MIXTURE_PARAMETERS:
        option = f"`{p.option}` / `{p.key}`" + (" (repeated `KEY=VALUE`)" if p.type is dict else "")
        allowed = p.allowed() if p.check is None else "an int >= 0 (or a RandomState from Python)"
        if p.default is None and not allowed.endswith("None"):
            allowed += " or None"
        cells = [f"`{p.name}`", option, f"`{p.default!r}`", allowed, p.help]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def checked_inits(est, n_features: int) -> tuple[np.ndarray | None, ...]:
    """weights_init, means_init, precisions_init as float64 arrays of the right shapes (or None)."""
    K, d = est.n_components, n_features
    weights = means = precisions = None
    if est.weights_init is not None:
        weights = np.asarray(est.weights_init, dtype=np.float64)
        if weights.shape != (K,):
            raise param_error("weights_init", weights.shape, f"shape ({K},)")
        if np.any(weights < 0) or np.any(weights > 1) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
            raise ParameterError(f"weights_init must be in [0, 1] and sum to 1, got sum {weights.sum():.6f}")
    if est.means_init is not None:
        means = np.asarray(est.means_init, dtype=np.float64)
        if means.shape != (K, d):
            raise param_error("means_init", means.shape, f"shape ({K}, {d})")
    if est.precisions_init is not None:
        precisions = np.asarray(est.precisions_init, dtype=np.float64)
        expected = covariance_shape(est.covariance_type, K, d)
        if precisions.shape != expected:
            raise param_error("precisions_init", precisions.shape, f"shape {expected} for {est.covariance_type}")
        if est.covariance_type in ("full", "tied"):
            stack = precisions.reshape(-1, d, d)
            if not np.allclose(stack, np.swapaxes(stack, 1, 2), atol=1e-12 * np.abs(stack).max()):
                raise ParameterError("precisions_init: every precision matrix must be symmetric")
        elif np.any(precisions <= 0):
            raise ParameterError("precisions_init: every precision must be positive")
    return weights, means, precisions
