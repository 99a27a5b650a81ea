"""Per-utterance feature normalisation (cmvn=): one pass of mergeable group moments, applied to every chunk as
it is read, in fits and in scoring; checked against normalising the rows first, with pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dgmm
from dgmm.errors import DataError, ParameterError
from dgmm.kernels.moments import GroupMoments

FEATURES = [f"f{j}" for j in range(6)]


def utterances(rng, n_utterances: int, frames: int, offset: float = 0.0) -> pd.DataFrame:
    """Frames of utterances of uneven length, each with its own channel offset and scale, in order."""
    lengths = rng.integers(frames // 2, 2 * frames, n_utterances)
    codes = np.repeat(np.arange(n_utterances), lengths)
    shift = rng.normal(scale=5.0, size=(n_utterances, len(FEATURES))) + offset
    scale = rng.uniform(0.5, 3.0, size=(n_utterances, len(FEATURES)))
    centres = rng.normal(scale=2.0, size=(4, len(FEATURES)))
    X = centres[rng.integers(0, 4, codes.size)] + rng.normal(size=(codes.size, len(FEATURES)))
    frame = pd.DataFrame(X * scale[codes] + shift[codes], columns=FEATURES)
    frame["utterance"] = [f"utt{c:05d}" for c in codes]
    frame["speaker"] = [f"spk{c % 37:02d}" for c in codes]
    return frame


def normalised_by_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    groups = frame.groupby("utterance")[FEATURES]
    spread = groups.transform(lambda s: s.std(ddof=0))
    return (frame[FEATURES] - groups.transform("mean")) / spread.where(spread > 0, 1.0)


def assert_same_mixture(got, want, rtol: float) -> None:
    """The same components, in any order: rows normalised here and by pandas differ in the last digit, and a
    seeding draw of k-means|| may go the other way on such a difference."""
    order, wanted = np.argsort(got.means_[:, 0]), np.argsort(want.means_[:, 0])
    np.testing.assert_allclose(got.means_[order], want.means_[wanted], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got.covariances_[order], want.covariances_[wanted], rtol=rtol)
    np.testing.assert_allclose(got.weights_[order], want.weights_[wanted], rtol=rtol)


@pytest.fixture(scope="module")
def speech():
    return utterances(np.random.default_rng(40), 2_000, 40)  # 2,000 utterances, ~100,000 frames


def write_files(frame: pd.DataFrame, folder, n_files: int = 40) -> str:
    """Files cut at arbitrary rows, so utterances span files and row groups."""
    folder.mkdir()
    bounds = np.linspace(0, len(frame), n_files + 1).astype(int) + 7
    bounds[0], bounds[-1] = 0, len(frame)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        frame.iloc[a:b].to_parquet(folder / f"part-{i:03d}.parquet", row_group_size=500, index=False)
    return str(folder)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_merged_moments_equal_one_pass_over_all_rows_whatever_the_split(offset):
    rng = np.random.default_rng(41)
    codes = np.sort(rng.integers(0, 300, 20_000))
    X = rng.normal(size=(20_000, 5)) * 3.0 + offset
    whole = GroupMoments.of_rows(codes, X)
    for n_parts in (2, 7, 64):
        cuts = np.sort(rng.choice(np.arange(1, 20_000), n_parts - 1, replace=False))
        parts = [GroupMoments.of_rows(c, x) for c, x in zip(np.split(codes, cuts), np.split(X, cuts))]
        merged = parts[0]
        for part in parts[1:]:
            merged = merged + part
        np.testing.assert_array_equal(merged.codes, whole.codes)
        np.testing.assert_array_equal(merged.counts, whole.counts)
        np.testing.assert_allclose(merged.means, whole.means, rtol=1e-13, atol=1e-13 * max(offset, 1.0))
        np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-9)
    for k in (0, 17, 299):
        rows = X[codes == k]
        np.testing.assert_allclose(whole.m2[whole.codes == k][0], ((rows - rows.mean(axis=0)) ** 2).sum(axis=0))


def test_a_fit_with_cmvn_is_the_fit_of_the_normalised_rows_from_a_frame_and_from_parquet(speech, tmp_path):
    reference = dgmm.GaussianMixture(4, covariance_type="diag", random_state=0).fit(normalised_by_pandas(speech))
    settings = dict(covariance_type="diag", random_state=0, cmvn="utterance")
    from_frame = dgmm.GaussianMixture(4, **settings).fit(speech[[*FEATURES, "utterance"]])
    folder = write_files(speech[[*FEATURES, "utterance"]], tmp_path / "speech")
    from_files = dgmm.GaussianMixture(4, **settings).fit(folder)  # the group column is never a feature
    chunked = dgmm.GaussianMixture(4, chunk_rows=128, **settings).fit(folder)
    assert list(from_files.feature_names_in_) == FEATURES
    for model in (from_frame, from_files, chunked):
        assert_same_mixture(model, reference, 1e-8)
    # scoring normalises as the fit did, also after a round trip through the model file
    want = reference.score_samples(normalised_by_pandas(speech))
    np.testing.assert_allclose(from_files.score_samples(speech[[*FEATURES, "utterance"]]), want, rtol=1e-9)
    from_files.save(tmp_path / "model.npz")
    loaded = dgmm.load_model(tmp_path / "model.npz")
    assert loaded.cmvn == "utterance"
    np.testing.assert_allclose(np.asarray(loaded.score_samples(folder)), want, rtol=1e-9)
    np.testing.assert_allclose(loaded.score(folder), reference.score(normalised_by_pandas(speech)), rtol=1e-12)


def test_the_moments_pass_runs_on_the_cluster_it_is_given(speech, tmp_path, cluster_client):
    folder = write_files(speech[[*FEATURES, "utterance"]], tmp_path / "speech", n_files=8)
    settings = dict(covariance_type="diag", random_state=0, cmvn="utterance", max_iter=5)
    here = dgmm.GaussianMixture(3, **settings).fit(folder)
    there = dgmm.GaussianMixture(3, client=cluster_client, cache="none", **settings).fit(folder)
    assert_same_mixture(there, here, 1e-10)


def test_a_classifier_with_cmvn_fits_and_scores_normalised_rows_also_grouped_by_the_same_column(speech):
    train, test = speech.iloc[:60_000], speech.iloc[60_000:]  # an utterance cut in two: two groups
    normal_train, normal_test = normalised_by_pandas(train), normalised_by_pandas(test)
    ubm = dgmm.GaussianMixture(8, covariance_type="diag", random_state=0, max_iter=20, cmvn="utterance")
    ubm.fit(train[[*FEATURES, "utterance"]])
    model = dgmm.GaussianMixtureClassifier(8, covariance_type="diag", ubm=ubm, cmvn="utterance", random_state=0)
    model.fit(train[[*FEATURES, "utterance", "speaker"]], "speaker")
    plain_ubm = dgmm.GaussianMixture(8, covariance_type="diag", random_state=0, max_iter=20)
    plain = dgmm.GaussianMixtureClassifier(8, covariance_type="diag", ubm=plain_ubm.fit(normal_train))
    plain.fit(normal_train, train["speaker"].to_numpy())
    for mine, theirs in zip(model.estimators_, plain.estimators_):
        assert_same_mixture(mine, theirs, 1e-8)
    got = model.predict_groups(test[[*FEATURES, "utterance"]], "utterance")  # groups and CMVN: one column
    want = plain.predict_groups(normal_test, test["utterance"].to_numpy())
    np.testing.assert_array_equal(got["class"], want["class"])
    np.testing.assert_allclose(got.filter(like="score_"), want.filter(like="score_"), rtol=1e-9)
    summary = model.score_summary(test[[*FEATURES, "utterance", "speaker"]], "speaker")
    assert summary["accuracy"] == plain.score_summary(normal_test, test["speaker"].to_numpy())["accuracy"]
    with pytest.raises(ParameterError, match="cmvn"):  # a background model normalised otherwise
        dgmm.GaussianMixtureClassifier(8, covariance_type="diag", ubm=ubm).fit(
            train[[*FEATURES, "utterance", "speaker"]], "speaker"
        )


def test_rows_dropped_for_nulls_are_left_out_of_their_group_moments(speech):
    frame = speech[[*FEATURES, "utterance"]].iloc[:5_000].copy()
    frame.iloc[::13, 2] = np.nan
    kept = frame.dropna()
    settings = dict(covariance_type="diag", random_state=0, max_iter=10)
    dropped = dgmm.GaussianMixture(3, cmvn="utterance", nan_policy="drop", **settings).fit(frame)
    # the same rows dropped from the rows normalised by the moments of the others
    reference = dgmm.GaussianMixture(3, nan_policy="drop", **settings).fit(
        normalised_by_pandas(kept).reindex(frame.index)
    )
    assert_same_mixture(dropped, reference, 1e-9)


def test_cmvn_without_a_group_column_is_refused_in_one_line(speech):
    with pytest.raises(DataError, match="needs a DataFrame or Parquet input"):
        dgmm.GaussianMixture(2, cmvn="utterance").fit(speech[FEATURES].to_numpy())
    with pytest.raises(DataError, match="column 'session' not found"):
        dgmm.GaussianMixture(2, cmvn="session").fit(speech[[*FEATURES, "utterance"]])
    model = dgmm.GaussianMixture(2, cmvn="utterance", max_iter=2).fit(speech[[*FEATURES, "utterance"]])
    with pytest.raises(DataError, match="needs a DataFrame or Parquet input"):  # scoring needs the groups too
        model.predict(speech[FEATURES].to_numpy())
    with pytest.raises(ParameterError, match="cmvn"):
        dgmm.GaussianMixture(2, cmvn=3).fit(speech[[*FEATURES, "utterance"]])


def test_the_command_line_fits_with_cmvn_and_scores_with_the_model_files_column(speech, tmp_path):
    from tests.cli.test_cli import one_line_error, run

    folder = write_files(speech[[*FEATURES, "utterance", "speaker"]].iloc[:20_000], tmp_path / "speech", n_files=5)
    run("fit", folder, "--label-column", "speaker", "--cmvn", "utterance", "--n-components", "2",
        "--covariance-type", "diag", "--seed", "0", "--model", tmp_path / "c.npz")  # fmt: skip
    run("predict", tmp_path / "c.npz", folder, "--group-column", "utterance", "-o", tmp_path / "groups.parquet")
    model = dgmm.load_model(tmp_path / "c.npz")
    assert model.cmvn == "utterance" and list(model.feature_names_in_) == FEATURES
    want = model.predict_groups(folder, "utterance")
    got = pd.read_parquet(tmp_path / "groups.parquet")
    np.testing.assert_array_equal(got["class"], want["class"])
    wrong = run("fit", folder, "--cmvn", "session", "--model", tmp_path / "m.npz", check_code=2)
    assert "column 'session' not found" in one_line_error(wrong, "fit")
