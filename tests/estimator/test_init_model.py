"""Starting a fit from a model file (init_model=, --init-model): the nightly refit of yesterday's model on today's
data, as a warm start from the same model in memory is, bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.errors import DataError, ParameterError
from dgmm.testing import assert_identical

DGMM = str(Path(sys.executable).parent / "dgmm")


@pytest.fixture(scope="module")
def days():
    """Yesterday's rows, and today's: the same rows and 5% more."""
    X, _ = sample_mixture(random_mixture(4, 5, seed=30, separation=3.0), 42_000, seed=30)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(5)])
    return frame.iloc[:40_000], frame


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_a_fit_from_a_model_file_is_the_warm_start_from_the_model_in_memory(days, tmp_path, covariance_type):
    yesterday, today = days
    settings = dict(covariance_type=covariance_type, random_state=0, tol=1e-6, max_iter=300)
    model = dgmm.GaussianMixture(4, **settings).fit(yesterday)
    model.save(tmp_path / "yesterday.npz")
    from_file = dgmm.GaussianMixture(4, init_model=tmp_path / "yesterday.npz", n_init=3, **settings).fit(today)
    in_memory = dgmm.GaussianMixture(4, init_model=model, **settings).fit(today)
    warm = model.set_params(warm_start=True).fit(today)
    assert_identical(from_file, warm)
    assert_identical(in_memory, warm)
    fresh = dgmm.GaussianMixture(4, **settings).fit(today)
    assert from_file.n_iter_ < fresh.n_iter_ and from_file.converged_


def test_a_fit_from_a_model_file_takes_a_checkpoint_and_resumes(days, tmp_path):
    yesterday, today = days
    dgmm.GaussianMixture(3, random_state=0).fit(yesterday).save(tmp_path / "yesterday.npz")
    settings = dict(init_model=tmp_path / "yesterday.npz", random_state=0, tol=0.0, max_iter=6)
    reference = dgmm.GaussianMixture(3, **settings).fit(today)
    checkpoint = tmp_path / "ckpt"

    def stop_after_three(report) -> None:  # a deterministic interruption, once the 3rd iteration is saved
        if report.n_iter == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dgmm.GaussianMixture(3, **settings).fit(today, checkpoint=dgmm.Checkpoint(checkpoint),
                                                on_iteration=stop_after_three)  # fmt: skip
    assert dgmm.Checkpoint(checkpoint).peek_iteration() == 3
    resumed = dgmm.GaussianMixture(3, **settings).fit(today, checkpoint=dgmm.Checkpoint(checkpoint, resume=True))
    np.testing.assert_array_equal(resumed.means_, reference.means_)
    other = dgmm.GaussianMixture(3, random_state=1).fit(yesterday)
    other.save(tmp_path / "other.npz")
    with pytest.raises(dgmm.CheckpointError, match="init_model"):  # another starting model: another run
        dgmm.GaussianMixture(3, **{**settings, "init_model": tmp_path / "other.npz"}).fit(
            today, checkpoint=dgmm.Checkpoint(checkpoint, resume=True)
        )


def test_a_model_file_that_does_not_fit_the_run_is_refused_in_one_line(days, tmp_path):
    yesterday, today = days
    dgmm.GaussianMixture(3, covariance_type="diag", random_state=0, max_iter=5).fit(yesterday).save(tmp_path / "m.npz")
    path = tmp_path / "m.npz"
    with pytest.raises(ParameterError, match=r"has 3 diag components; this model has n_components=4"):
        dgmm.GaussianMixture(4, covariance_type="diag", init_model=path).fit(today)
    with pytest.raises(ParameterError, match=r"has 3 diag components; .*covariance_type='full'"):
        dgmm.GaussianMixture(3, init_model=path).fit(today)
    with pytest.raises(DataError, match="X has 4 features, but init_model"):
        dgmm.GaussianMixture(3, covariance_type="diag", init_model=path).fit(today.iloc[:, :4])
    renamed = today.rename(columns={"x0": "y0"})
    with pytest.raises(DataError, match="feature names .* differ from those of init_model"):
        dgmm.GaussianMixture(3, covariance_type="diag", init_model=path).fit(renamed)
    with pytest.raises(dgmm.ModelFileError):
        dgmm.GaussianMixture(3, covariance_type="diag", init_model=tmp_path / "missing.npz").fit(today)
    with pytest.raises(ParameterError, match="init_model"):
        dgmm.GaussianMixture(3, init_model=3.5).fit(today)
    with pytest.raises(ParameterError, match="init_model starts one mixture"):
        dgmm.GaussianMixtureClassifier(3, init_model=path).fit(today, np.arange(len(today)) % 2)


def test_the_command_line_starts_from_yesterdays_model(days, tmp_path):
    yesterday, today = days
    data = tmp_path / "today.parquet"
    today.to_parquet(data, index=False)
    model = dgmm.GaussianMixture(4, covariance_type="diag", random_state=0).fit(yesterday)
    model.save(tmp_path / "yesterday.npz")
    proc = subprocess.run(
        [DGMM, "fit", data, "--n-components", "4", "--covariance-type", "diag", "--init-model",
         tmp_path / "yesterday.npz", "--model", tmp_path / "today.npz"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = model.set_params(warm_start=True).fit(pd.read_parquet(data))
    np.testing.assert_array_equal(dgmm.load_model(tmp_path / "today.npz").means_, want.means_)
