"""n_init restarts share every pass over the data and give the one-at-a-time result."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.testing import counted_in_process


@pytest.fixture
def counting():
    """Every in-memory fit runs on one in-process executor whose passes are counted."""
    with counted_in_process() as counter:
        yield counter


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_shared_restarts_equal_one_at_a_time_and_cost_far_fewer_reads(counting, covariance_type):
    X = sample_mixture(random_mixture(4, 3, seed=9, separation=1.5), 2000, seed=9)[0]
    kwargs = dict(n_init=4, random_state=3, covariance_type=covariance_type, tol=1e-6, max_iter=60)
    together = dgmm.GaussianMixture(4, **kwargs).fit(X)
    shared_passes = counting.passes
    counting.passes = 0
    one_at_a_time = dgmm.GaussianMixture(4, **kwargs).fit(X, on_iteration=lambda report: None)
    sequential_passes = counting.passes
    for name in ("weights_", "means_", "covariances_", "lower_bound_", "n_iter_", "converged_"):
        np.testing.assert_array_equal(getattr(together, name), getattr(one_at_a_time, name), err_msg=name)
    counting.passes = 0
    dgmm.GaussianMixture(4, **{**kwargs, "n_init": 1}).fit(X)
    single_passes = counting.passes
    # initialisation costs 2 passes per restart; EM passes are shared
    assert shared_passes <= single_passes + 2 * 3 + max(0, one_at_a_time.n_iter_)
    assert shared_passes < 0.6 * sequential_passes, (shared_passes, sequential_passes, single_passes)
