"""dgmm.GaussianMixtureClassifier: every class's mixture equals a GaussianMixture fitted with the other
classes' rows at weight 0, bit for bit, while all classes share each pass; labels from arrays, Dask and
Parquet label columns; scikit-learn's classifier checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn.exceptions
from sklearn.utils.estimator_checks import parametrize_with_checks

import dgmm
from dgmm.data.synthetic import random_mixture, sample_mixture
from dgmm.testing import counted_in_process

ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_", "n_iter_", "converged_")


@pytest.fixture(scope="module")
def speakers():
    """Three classes of different sizes, each its own 3-component mixture, rows shuffled."""
    rng = np.random.default_rng(0)
    Xs, ys = [], []
    for c, n in enumerate((700, 900, 1100)):
        X, _ = sample_mixture(random_mixture(3, 2, seed=10 + c), n, seed=c)
        Xs.append(X + 3 * c)
        ys.append(np.full(n, c))
    order = rng.permutation(2700)
    return np.concatenate(Xs)[order], np.array(["ann", "bob", "cy"])[np.concatenate(ys)[order]]


def assert_identical(a, b):
    for attr in ATTRS:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


@pytest.mark.parametrize(
    "covariance_type,init_params",
    [
        ("full", "kmeans"),
        ("diag", "k-means++"),
        ("tied", "random"),
        ("spherical", "k-means||"),
        ("full", "random_from_data"),
    ],
)
def test_each_class_is_the_mixture_fitted_with_the_other_rows_at_weight_zero(speakers, covariance_type, init_params):
    X, y = speakers
    settings = dict(
        n_components=3,
        covariance_type=covariance_type,
        init_params=init_params,
        random_state=4,
        chunk_rows=500,
        n_init=2,
        split_merge=2 if covariance_type == "full" else 0,
    )
    with counted_in_process() as counter:
        model = dgmm.GaussianMixtureClassifier(**settings).fit(X, y)
        together = counter.passes
        alone = []
        for c in model.classes_:
            before = counter.passes
            alone.append(dgmm.GaussianMixture(**settings).fit(X, sample_weight=(y == c).astype(float)))
            alone[-1].passes = counter.passes - before
    assert list(model.classes_) == ["ann", "bob", "cy"]
    for mixture, reference in zip(model.estimators_, alone):
        assert_identical(mixture, reference)
    # S classes cost the passes of the slowest class, not S times
    assert model.passes_ == together == max(m.passes for m in alone) < sum(m.passes for m in alone)
    np.testing.assert_allclose(model.class_prior_, [700 / 2700, 900 / 2700, 1100 / 2700], rtol=1e-12)


def test_predictions_are_the_posterior_over_classes(speakers):
    X, y = speakers
    model = dgmm.GaussianMixtureClassifier(3, random_state=0).fit(X, y)
    joint = np.column_stack([m.score_samples(X) for m in model.estimators_]) + np.log(model.class_prior_)
    proba = np.exp(joint - np.logaddexp.reduce(joint, axis=1)[:, None])
    np.testing.assert_allclose(model.predict_proba(X), proba, rtol=1e-10)
    np.testing.assert_allclose(model.decision_function(X), joint, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), model.classes_[np.argmax(joint, axis=1)])
    assert model.score(X, y) > 0.9  # accuracy
    uniform = dgmm.GaussianMixtureClassifier(3, random_state=0, priors="uniform").fit(X, y)
    np.testing.assert_allclose(uniform.class_prior_, 1 / 3)
    given = dgmm.GaussianMixtureClassifier(3, random_state=0, priors=[1, 1, 2]).fit(X, y)
    np.testing.assert_allclose(given.class_prior_, [0.25, 0.25, 0.5])
    with pytest.raises(dgmm.ParameterError, match="priors"):
        dgmm.GaussianMixtureClassifier(3, priors=[1, 2]).fit(X, y)
    with pytest.raises(dgmm.DataError, match="class 'ann': expected n_samples >= max"):
        dgmm.GaussianMixtureClassifier(3).fit(X[:40], np.where(np.arange(40) < 2, "ann", "bob"))
    with pytest.raises(dgmm.DataError, match="one class"):
        dgmm.GaussianMixtureClassifier(2).fit(X, np.full(len(X), "ann"))


def test_sample_weights_and_dask_labels(speakers):
    import dask.array as da

    X, y = speakers
    w = np.random.default_rng(1).integers(0, 3, len(X)).astype(float)
    model = dgmm.GaussianMixtureClassifier(2, random_state=1, chunk_rows=600).fit(X, y, sample_weight=w)
    for c, mixture in zip(model.classes_, model.estimators_):
        assert_identical(
            mixture, dgmm.GaussianMixture(2, random_state=1, chunk_rows=600).fit(X, sample_weight=w * (y == c))
        )
    np.testing.assert_allclose(model.class_count_, [w[y == c].sum() for c in model.classes_])
    lazy = dgmm.GaussianMixtureClassifier(2, random_state=1).fit(
        da.from_array(X, chunks=(700, 2)), da.from_array(y, chunks=500)
    )
    eager = dgmm.GaussianMixtureClassifier(2, random_state=1).fit(X, y)
    for a, b in zip(lazy.estimators_, eager.estimators_):
        np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)
    labels = lazy.predict(da.from_array(X, chunks=(700, 2)))
    assert isinstance(labels, da.Array) and labels.chunks == ((700, 700, 700, 600),)
    np.testing.assert_array_equal(labels.compute(), eager.predict(X))


def test_parquet_label_column_and_hive_key(speakers, tmp_path, cluster_client):
    X, y = speakers
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "speaker": y})
    for i, part in enumerate(np.array_split(np.arange(len(X)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part-{i}.parquet", row_group_size=400, index=False)
    model = dgmm.GaussianMixtureClassifier(2, random_state=3, client=cluster_client).fit(str(tmp_path), "speaker")
    assert list(model.feature_names_in_) == ["a", "b"] and list(model.classes_) == ["ann", "bob", "cy"]
    memory = dgmm.GaussianMixtureClassifier(2, random_state=3, chunk_rows=400).fit(X, y)
    for a, b in zip(model.estimators_, memory.estimators_):
        np.testing.assert_allclose(a.means_, b.means_, rtol=1e-8)
    hive = tmp_path / "hive"
    for c in np.unique(y):
        (hive / f"speaker={c}").mkdir(parents=True)
        frame[frame.speaker == c][["a", "b"]].to_parquet(hive / f"speaker={c}" / "part.parquet", index=False)
    by_key = dgmm.GaussianMixtureClassifier(2, random_state=3, client=cluster_client).fit(str(hive), "speaker")
    assert list(by_key.classes_) == ["ann", "bob", "cy"] and list(by_key.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(by_key.predict(frame[["a", "b"]]), model.predict(frame[["a", "b"]]))
    with pytest.raises(dgmm.DataError, match="column 'nope' not found; columns are a, b, speaker"):
        dgmm.GaussianMixtureClassifier(2, client=cluster_client).fit(str(tmp_path), "nope")


@parametrize_with_checks(
    [
        dgmm.GaussianMixtureClassifier(),
        dgmm.GaussianMixtureClassifier(2, covariance_type="diag", random_state=0),
        dgmm.GaussianMixtureClassifier(
            2, ubm="fit", relevance_factor=4, random_state=0, adapt="means,weights,covariances"
        ),
    ],
    expected_failed_checks=lambda estimator: (
        {}
        if estimator.ubm is None
        else {
            "check_sample_weight_equivalence_on_dense_data": (
                "the background model's initialisation draws rows, so a repeated row is drawn "
                "differently from a weighted one, as for GaussianMixture (test_sklearn_api.py)"
            )
        }
    ),
)
def test_scikit_learn_classifier_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        check(estimator)


def test_the_classifier_takes_every_mixture_parameter_with_its_default():
    import inspect

    from dgmm.estimator.parameters import CLASSIFIER_PARAMETERS, MIXTURE_PARAMETERS, TOP_C

    signature = inspect.signature(dgmm.GaussianMixtureClassifier).parameters
    per_class = {p.name: p.default for p in MIXTURE_PARAMETERS}
    own = {p.name: p.default for p in (*CLASSIFIER_PARAMETERS, TOP_C)}
    assert set(signature) == set(per_class) | set(own) | {"client"}  # not the initial arrays, nor warm_start
    for name, default in {**per_class, **own}.items():
        assert signature[name].default == default, name
    with pytest.raises(dgmm.ParameterError, match="covariance_type='banana' is invalid"):
        dgmm.GaussianMixtureClassifier(covariance_type="banana").fit(np.zeros((10, 2)), [0, 1] * 5)


# ---------------------------------------------------------------- background model and MAP adaptation


@pytest.fixture(scope="module")
def close_speakers():
    """Three classes whose mixtures differ a little, as speakers' do."""
    Xs, ys = [], []
    for c in range(3):
        X, _ = sample_mixture(random_mixture(4, 3, seed=10 + c), 900, seed=c)
        Xs.append(X + 0.5 * c)
        ys.append(np.full(len(X), c))
    return np.concatenate(Xs), np.concatenate(ys)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_map_with_relevance_zero_is_one_m_step_from_the_ubm_on_the_class_rows(close_speakers, covariance_type):
    from sklearn.frozen import FrozenEstimator

    from dgmm.kernels.mstep import m_step
    from dgmm.kernels.posterior import responsibilities
    from dgmm.kernels.stats import accumulate

    X, y = close_speakers
    ubm = dgmm.GaussianMixture(4, covariance_type=covariance_type, random_state=0).fit(X)
    model = dgmm.GaussianMixtureClassifier(
        ubm=FrozenEstimator(ubm), relevance_factor=0, adapt=["means", "weights", "covariances"]
    ).fit(X, y)
    assert model.passes_ == 1  # every class adapted in one pass
    params = ubm.fitted_params()
    for c, mixture in enumerate(model.estimators_):
        rows = X[y == c]
        step, _ = m_step(
            accumulate(rows, responsibilities(rows, params), params.means, covariance_type),
            params.means,
            covariance_type,
            ubm.reg_covar,
            reseed=False,
        )
        assert (mixture.n_components, mixture.covariance_type) == (4, covariance_type)
        np.testing.assert_allclose(mixture.means_, step.means, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(mixture.weights_, step.weights, rtol=1e-10)
        np.testing.assert_allclose(mixture.covariances_, step.covariances, rtol=1e-10, atol=1e-14)
    # a huge relevance factor keeps the UBM; "means" alone adapts only the means
    stiff = dgmm.GaussianMixtureClassifier(
        ubm=FrozenEstimator(ubm), relevance_factor=1e15, adapt="means,weights,covariances"
    ).fit(X, y)
    np.testing.assert_allclose(stiff.estimators_[0].covariances_, ubm.covariances_, rtol=1e-9)
    np.testing.assert_allclose(stiff.estimators_[0].means_, ubm.means_, rtol=1e-9, atol=1e-9)
    means_only = dgmm.GaussianMixtureClassifier(ubm=FrozenEstimator(ubm)).fit(X, y)  # r = 16, means
    for mixture in means_only.estimators_:
        np.testing.assert_array_equal(mixture.covariances_, ubm.covariances_)
        np.testing.assert_array_equal(mixture.weights_, ubm.weights_)
        assert not np.array_equal(mixture.means_, ubm.means_)


def test_ubm_fit_file_and_frozen_estimators_and_the_likelihood_ratio(close_speakers, tmp_path):
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    X, y = close_speakers
    with counted_in_process() as counter:
        model = dgmm.GaussianMixtureClassifier(4, covariance_type="diag", ubm="fit", random_state=2).fit(X, y)
        ubm = dgmm.GaussianMixture(4, covariance_type="diag", random_state=2).fit(X)
        ubm_passes = counter.passes - model.passes_
    assert model.passes_ == ubm_passes + 1  # the background model's fit, then one pass for every class
    assert_identical(model.ubm_, ubm)
    ratio = model.score_ratio(X)
    expected = np.column_stack([m.score_samples(X) for m in model.estimators_]) - ubm.score_samples(X)[:, None]
    np.testing.assert_allclose(ratio, expected, rtol=1e-9, atol=1e-9)
    # the UBM as a file, a frozen dgmm model, a frozen scikit-learn model: the same adaptation
    ubm.save(tmp_path / "ubm.npz")
    adapted = [
        dgmm.GaussianMixtureClassifier(ubm=given).fit(X, y).estimators_[1].means_
        for given in (str(tmp_path / "ubm.npz"), FrozenEstimator(ubm), FrozenEstimator(ubm.to_sklearn()))
    ]
    np.testing.assert_allclose(adapted[0], adapted[1], rtol=1e-12)
    np.testing.assert_allclose(adapted[2], adapted[1], rtol=1e-12)
    frozen = dgmm.GaussianMixtureClassifier(ubm=FrozenEstimator(ubm))
    np.testing.assert_array_equal(clone(frozen).fit(X, y).estimators_[1].means_, adapted[1])
    with pytest.raises(dgmm.NotFittedError):
        dgmm.GaussianMixtureClassifier(ubm=dgmm.GaussianMixture(4)).fit(X, y)
    with pytest.raises(dgmm.DataError, match="background model \\(ubm\\) has 3"):
        dgmm.GaussianMixtureClassifier(ubm=FrozenEstimator(ubm)).fit(X[:, :2], y)
    with pytest.raises(dgmm.ParameterError, match="adapt='mean' is invalid"):
        dgmm.GaussianMixtureClassifier(ubm=FrozenEstimator(ubm), adapt="mean").fit(X, y)
    with pytest.raises(dgmm.NotFittedError, match="background model"):
        dgmm.GaussianMixtureClassifier(2).fit(X, y).score_ratio(X)


# ---------------------------------------------------------------- grouped scoring


def test_group_scores_equal_an_in_memory_group_by(close_speakers):
    X, y = close_speakers
    groups = y * 100 + np.arange(len(X)) % 37  # every utterance's frames scattered over the chunks
    model = dgmm.GaussianMixtureClassifier(3, covariance_type="diag", ubm="fit", random_state=0, chunk_rows=250).fit(
        X, y
    )
    frame = pd.DataFrame(np.column_stack([m.score_samples(X) for m in model.estimators_]), columns=[0, 1, 2])
    frame["group"] = groups
    for reduce in ("mean", "sum"):
        out = model.predict_groups(X, groups, reduce=reduce)
        expected = frame.groupby("group").agg(reduce)
        assert list(out.columns) == ["group", "n_rows", "class", "score_0", "score_1", "score_2"]
        np.testing.assert_array_equal(out["group"], expected.index)
        np.testing.assert_allclose(out[["score_0", "score_1", "score_2"]], expected, rtol=1e-10)
        np.testing.assert_array_equal(out["n_rows"], frame.groupby("group").size())
    sums = frame.groupby("group").sum().to_numpy() + np.log(model.class_prior_)
    np.testing.assert_array_equal(out["class"], model.classes_[np.argmax(sums, axis=1)])
    assert (out["class"] == out["group"] // 100).mean() == 1.0  # 24 frames decide where one frame cannot
    assert model.score(X, y) < 0.9
    ratio = model.predict_groups(X, groups, ratio=True)
    ubm = model.ubm_.score_samples(X)
    np.testing.assert_allclose(ratio["score_1"], (frame[1] - ubm).groupby(groups).mean(), rtol=1e-9)
    with pytest.raises(dgmm.DataError, match="groups has 10 values but X has 2700 rows"):
        model.predict_groups(X, groups[:10])


def test_group_scores_over_many_files_with_groups_spanning_row_groups(close_speakers, tmp_path, cluster_client):
    X, y = close_speakers
    utterance = np.asarray([f"u{c}-{i // 40:03d}" for c, i in zip(y, np.arange(len(X)))], dtype=object)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "speaker": y, "utterance": utterance})
    for i, part in enumerate(np.array_split(np.arange(len(X)), 7)):  # cuts fall inside utterances
        frame.iloc[part].to_parquet(tmp_path / f"part-{i}.parquet", row_group_size=33, index=False)
    model = dgmm.GaussianMixtureClassifier(
        2,
        covariance_type="diag",
        random_state=0,
        client=cluster_client,
    ).fit(str(tmp_path), "speaker", columns=["a", "b", "c"])
    out = model.predict_groups(str(tmp_path), "utterance")
    memory = model.predict_groups(frame[["a", "b", "c"]], utterance)
    pd.testing.assert_frame_equal(out, memory, rtol=1e-10)
    assert len(out) == len(np.unique(utterance))


def test_label_and_group_columns_of_dataframes(close_speakers):
    import dask.dataframe as dd

    X, y = close_speakers
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["speaker"], frame["utterance"] = y, y * 100 + np.arange(len(X)) // 90
    features = frame[["a", "b", "c", "speaker"]]
    from_frame = dgmm.GaussianMixtureClassifier(2, random_state=0).fit(features, "speaker")
    from_arrays = dgmm.GaussianMixtureClassifier(2, random_state=0).fit(frame[["a", "b", "c"]], y)
    np.testing.assert_array_equal(from_frame.estimators_[1].means_, from_arrays.estimators_[1].means_)
    assert list(from_frame.feature_names_in_) == ["a", "b", "c"]
    lazy = dgmm.GaussianMixtureClassifier(2, random_state=0).fit(dd.from_pandas(features, npartitions=3), "speaker")
    np.testing.assert_allclose(lazy.estimators_[1].means_, from_arrays.estimators_[1].means_, rtol=1e-9)
    decided = from_frame.predict_groups(frame[["a", "b", "c", "utterance"]], "utterance")
    pd.testing.assert_frame_equal(decided, from_frame.predict_groups(frame[["a", "b", "c"]], frame["utterance"]))
    with pytest.raises(dgmm.DataError, match="column 'spk' not found; columns are a, b, c, speaker"):
        dgmm.GaussianMixtureClassifier(2).fit(features, "spk")


def test_adaptation_statistics_hold_only_the_classes_of_their_rows_and_merge_bit_for_bit():
    """1,000 speakers stored speaker by speaker: each chunk's statistics hold its few speakers, never all 1,000;
    merged sparsely they equal, bit for bit, the dense merge of every class's statistics (zeros where absent)."""
    from functools import reduce

    from dgmm.algorithms.classes import AdaptPlan, adapt_kernel
    from dgmm.kernels.adapt import class_stats
    from dgmm.kernels.stats import zero_stats

    rng = np.random.default_rng(11)
    n_classes, frames, d = 1_000, 30, 4
    codes = np.repeat(np.arange(n_classes), frames).astype(np.float64)
    X = rng.normal(size=(codes.size, d)) + rng.normal(scale=3.0, size=(n_classes, d))[codes.astype(int)]
    ubm = dgmm.GaussianMixture(8, covariance_type="diag", random_state=0, max_iter=5).fit(X).fitted_params()
    block = np.column_stack([X, codes])
    chunks = [block[start : start + 1_000] for start in range(0, len(block), 1_000)]
    parts = [adapt_kernel(chunk, AdaptPlan(ubm, n_classes, False), 0) for chunk in chunks]
    assert max(len(part.codes) for part in parts) <= 35  # a chunk's own speakers (1,000 rows of 30 frames each)
    sparse = reduce(lambda a, b: a + b, parts).dense(n_classes, 8, d, "diag")
    zero = zero_stats(8, d, "diag")
    dense = [
        reduce(lambda a, b: a + b, [p.dense(n_classes, 8, d, "diag")[c] for p in parts], zero) for c in range(n_classes)
    ]
    for mine, theirs in zip(sparse, dense):
        assert (mine.n_rows, mine.loglik, mine.weight) == (theirs.n_rows, theirs.loglik, theirs.weight)
        for name in ("s0", "s1", "s2"):
            np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name))
    alone = class_stats(block[codes == 123], ubm, False)  # a speaker's rows alone, in one chunk
    np.testing.assert_array_equal(alone.stats[0].s1, sparse[123].s1)


def test_gaussian_selection_with_every_component_is_full_scoring_and_a_few_agree(tmp_path):
    """top_c = K scores exactly as without selection (posteriors, ratios, group decisions, also on Parquet);
    top_c = 3 of 32 decides as full scoring on speakers adapted from one background model."""
    from dgmm.data.synthetic import write_parquet

    rng = np.random.default_rng(5)
    n_speakers, d = 40, 6
    world = rng.normal(scale=4.0, size=(32, d))
    shifts = rng.normal(scale=1.0, size=(n_speakers, d))
    codes = np.repeat(np.arange(n_speakers), 200)
    X = world[rng.integers(0, 32, codes.size)] + shifts[codes] + rng.normal(size=(codes.size, d))
    model = dgmm.GaussianMixtureClassifier(32, covariance_type="diag", ubm="fit", random_state=0, max_iter=20)
    model.fit(X, codes)
    full = {
        "proba": model.predict_log_proba(X),
        "ratio": model.score_ratio(X),
        "groups": model.predict_groups(X, codes // 1),
    }
    model.set_params(top_c=32)
    np.testing.assert_allclose(model.predict_log_proba(X), full["proba"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(model.score_ratio(X), full["ratio"], rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(model.predict_groups(X, codes), full["groups"], rtol=1e-9)
    write_parquet(X, tmp_path / "frames", row_group_size=1_000)
    np.testing.assert_allclose(model.predict_log_proba(str(tmp_path / "frames")).compute(), full["proba"],
                               rtol=1e-9, atol=1e-9)  # fmt: skip
    model.set_params(top_c=3)
    selected = model.predict(X)
    assert np.mean(selected == np.argmax(full["proba"], axis=1)) > 0.99
    assert (model.predict_groups(X, codes)["class"] == full["groups"]["class"]).all()


def test_gaussian_selection_is_refused_where_it_does_not_apply(speakers):
    X, y = speakers
    no_background = dgmm.GaussianMixtureClassifier(2, covariance_type="diag", random_state=0, top_c=1).fit(X, y)
    with pytest.raises(dgmm.ParameterError, match="top_c=1 needs a background model"):
        no_background.predict(X)
    full = dgmm.GaussianMixtureClassifier(2, ubm="fit", random_state=0, top_c=1).fit(X, y)
    with pytest.raises(dgmm.ParameterError, match="diagonal or spherical covariances"):
        full.predict(X)
    with pytest.raises(dgmm.ParameterError, match="top_c=0 is invalid"):
        full.set_params(top_c=0, covariance_type="diag").predict(X)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "split"])
def test_classes_absent_from_a_chunk_skip_it_and_stay_bit_identical(speakers, init_params):
    """Rows grouped by class (one speaker per file): a class's kernels run only on the chunks holding its rows,
    and each class is still the mixture fitted with the other rows at weight 0, bit for bit."""
    X, y = speakers
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]
    settings = dict(n_components=3, init_params=init_params, random_state=5, chunk_rows=300, n_init=2)
    model = dgmm.GaussianMixtureClassifier(**settings).fit(X, y)
    for c, mixture in zip(model.classes_, model.estimators_):
        assert_identical(mixture, dgmm.GaussianMixture(**settings).fit(X, sample_weight=(y == c).astype(float)))


def test_thousands_of_classes_cost_kernel_calls_per_chunk_they_hold(monkeypatch):
    """2,000 classes over 1,000 chunks, two classes a chunk: a pass calls a class's kernel where the class has
    rows (about 2 per chunk), not 2,000 times per chunk."""
    from dgmm.algorithms import classes

    calls = [0]
    original = classes.class_kernel

    def counted(block, payload, row_offset):
        calls[0] += 1
        return original(block, payload, row_offset)

    counted.rows_key, counted.keys_in = original.rows_key, original.keys_in
    monkeypatch.setattr(classes, "class_kernel", counted)
    rng = np.random.default_rng(0)
    n_classes, per_class = 2_000, 20
    y = np.repeat(np.arange(n_classes), per_class)
    X = rng.normal(scale=10.0, size=(n_classes, 6))[y] + rng.normal(size=(len(y), 6))
    with counted_in_process() as counter:
        model = dgmm.GaussianMixtureClassifier(
            2, covariance_type="diag", init_params="k-means||", random_state=0, chunk_rows=2 * per_class, max_iter=3
        ).fit(X, y)
    chunks = len(y) // (2 * per_class)
    assert len(model.estimators_) == n_classes and counter.passes > 3
    assert calls[0] <= counter.passes * 2 * chunks, (calls[0], counter.passes, chunks)
    assert (model.predict(X[::97]) == y[::97]).mean() > 0.8  # chance: 1 in 2,000
