"""One declaration per parameter: the table in dgmm.estimator.parameters drives the estimator's
validation, the YAML keys and options of `dgmm fit` and `dgmm select`, select() and the README."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dgmm
from dgmm.cli import main
from dgmm.cli.config import CLI_SEED, FIT_SETTINGS, SELECT_SETTINGS, SET_BY_SELECT, resolve
from dgmm.errors import ParameterError
from dgmm.estimator.parameters import BY_NAME, MIXTURE_PARAMETERS, NOT_SETTINGS, markdown_table, validate_params

README = Path(__file__).resolve().parents[2] / "README.md"
SIGNATURE = inspect.signature(dgmm.GaussianMixture).parameters


def test_every_constructor_parameter_is_in_the_table_or_exempt_with_a_reason():
    in_table, exempt = set(BY_NAME), set(NOT_SETTINGS)
    assert not in_table & exempt
    assert set(SIGNATURE) == in_table | exempt, set(SIGNATURE) ^ (in_table | exempt)
    assert all(len(reason) > 20 for reason in NOT_SETTINGS.values())
    scalars = {name for name, p in SIGNATURE.items() if isinstance(p.default, (int, float, str, type(None)))}
    assert scalars - in_table <= {"client", "weights_init", "means_init", "precisions_init", "warm_start"}


@pytest.mark.parametrize("parameter", MIXTURE_PARAMETERS, ids=lambda p: p.name)
def test_the_signature_default_is_the_table_default(parameter):
    assert SIGNATURE[parameter.name].default == parameter.default
    assert dgmm.GaussianMixture().get_params()[parameter.name] == parameter.default


@pytest.mark.parametrize("parameter", MIXTURE_PARAMETERS, ids=lambda p: p.name)
def test_every_parameter_is_a_fit_option_and_a_config_key(parameter):
    # the same declaration; the command line's one difference is its seed, 0 unless given (CLI_SEED)
    assert (replace(parameter, default=CLI_SEED) if parameter.name == "random_state" else parameter) in FIT_SETTINGS
    help_text = CliRunner().invoke(main, ["fit", "--help"]).output
    assert parameter.option in help_text
    assert resolve(FIT_SETTINGS, {parameter.key: parameter.default})[parameter.key] == parameter.default
    if parameter.name not in SET_BY_SELECT:
        assert parameter.key in {s.key for s in SELECT_SETTINGS}
        assert parameter.option in CliRunner().invoke(main, ["select", "--help"]).output


def bad_value(parameter):
    if parameter.choices:
        return "banana"
    if parameter.minimum is not None:
        return parameter.minimum - 1
    return 3.5 if parameter.type in (str, dict) else "text"


@pytest.mark.parametrize("parameter", MIXTURE_PARAMETERS, ids=lambda p: p.name)
def test_validation_comes_from_the_table(parameter):
    model = dgmm.GaussianMixture(**{parameter.name: bad_value(parameter)})
    with pytest.raises((ParameterError, ValueError), match=parameter.name if parameter.check is None else None):
        validate_params(model)
    validate_params(dgmm.GaussianMixture())


def test_select_takes_every_parameter_but_the_grid():
    X = np.random.default_rng(0).normal(size=(300, 2))
    params = {p.name: p.default for p in MIXTURE_PARAMETERS if p.name not in ("n_components", "covariance_type")}
    params.update(random_state=0, max_iter=3, dtype="float32", cache="memory", verbose=0)
    result = dgmm.select(X, [1, 2], **params)
    assert result.best.dtype == "float32" and result.best.random_state == 0 and result.best.cache == "memory"
    with pytest.raises(ParameterError, match="'covariance_type'"):
        dgmm.select(X, [1], covariance_type="full")
    with pytest.raises(ParameterError, match="'nonsense'"):
        dgmm.select(X, [1], nonsense=1)


def test_the_readme_shows_the_table():
    assert markdown_table() in README.read_text(), (
        "regenerate with: python -c 'from dgmm.estimator.parameters import markdown_table as t; print(t())'"
    )
