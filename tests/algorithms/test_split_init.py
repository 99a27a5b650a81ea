"""init_params="split": a mixture grown from one component by binary splitting (HTK, GaussianMixtures.jl)."""

from __future__ import annotations

import numpy as np
import pytest

import dgmm
from dgmm.algorithms.em import split_steps
from dgmm.algorithms.programs import run_steps
from dgmm.execution import InProcessExecutor
from dgmm.kernels.moves import split_heaviest_components
from dgmm.kernels.params import MixtureParams


def test_the_heaviest_components_split_along_their_principal_axes():
    covariances = np.array([np.diag([4.0, 1.0]), np.diag([1.0, 9.0]), np.eye(2)])
    params = MixtureParams.from_covariances(
        np.array([0.5, 0.3, 0.2]), np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), covariances, "full"
    )
    grown = split_heaviest_components(params, 2)
    assert grown.n_components == 5 and grown.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(grown.weights, [0.25, 0.15, 0.2, 0.25, 0.15])
    np.testing.assert_allclose(grown.means[[0, 3]], [[-2.0, 0.0], [2.0, 0.0]], atol=1e-12)  # ± sqrt(4) along x
    np.testing.assert_allclose(grown.means[[1, 4]], [[10.0, -3.0], [10.0, 3.0]], atol=1e-12)  # ± sqrt(9) along y
    np.testing.assert_array_equal(grown.covariances[3], covariances[0])


@pytest.fixture(scope="module")
def rectangle():
    """Four clusters at the corners of a wide rectangle, the right ones heavier: the whole data's
    principal axis parts left from right, each side's then parts bottom from top."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [0, 8], [30, 0], [30, 8]], dtype=float)
    sizes = [300, 300, 700, 700]
    return np.concatenate([rng.normal(c, 1.0, (n, 2)) for c, n in zip(centres, sizes)]), centres


def nearest_means(model, centres):
    return model.means_[np.argmin(((model.means_[:, None] - centres[None]) ** 2).sum(-1), axis=0)]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_splitting_finds_the_clusters_for_every_covariance_type(rectangle, covariance_type):
    X, centres = rectangle
    model = dgmm.GaussianMixture(4, covariance_type=covariance_type, init_params="split", tol=1e-6).fit(X)
    if covariance_type != "spherical":  # a spherical component has no principal axis: it splits along any
        np.testing.assert_allclose(nearest_means(model, centres), centres, atol=0.2)
    again = dgmm.GaussianMixture(
        4, covariance_type=covariance_type, init_params="split", tol=1e-6, random_state=123
    ).fit(X)
    np.testing.assert_array_equal(again.means_, model.means_)  # no randomness
    # three components: 1, 2 (left, right), then only the heavier right side splits
    three = dgmm.GaussianMixture(3, covariance_type="full", init_params="split", tol=1e-6).fit(X)
    expected = np.array([[0.0, 4.0], [30.0, 0.0], [30.0, 8.0]])
    np.testing.assert_allclose(nearest_means(three, expected), expected, atol=0.3)


def test_sizes_grow_one_two_four_then_the_heaviest_split(rectangle):
    X, _ = rectangle
    sizes = []
    program = split_steps(n_components=6, n_features=2, covariance_type="diag", reg_covar=1e-6)
    answer = None
    executor = InProcessExecutor(1000)
    try:
        while True:
            request = program.send(answer)
            if hasattr(request, "payload") and hasattr(request.payload, "n_components"):
                sizes.append(request.payload.n_components)
            answer = run_steps(executor, X, 8, _one(request))
    except StopIteration as stop:
        params = stop.value
    assert params.n_components == 6
    assert sorted(set(sizes)) == [2, 4]  # EM ran at 2 and 4 components; the split to 6 starts the fit's EM


def _one(request):
    """A program of the single request (to drive split_steps by hand)."""
    return (yield request)
