"""The `dgmm` command, run for real in subprocesses on generated Parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dgmm
from dgmm import load_model

DGMM = str(Path(sys.executable).parent / "dgmm")


def run(*args: str, check_code: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([DGMM, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check_code is not None:
        assert proc.returncode == check_code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"dgmm {command}: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "data"
    run(
        "generate",
        "-n",
        30_000,
        "-d",
        3,
        "-k",
        3,
        "--output",
        out,
        "--seed",
        4,
        "--row-group-size",
        5_000,
        "--n-files",
        2,
    )
    return out


@pytest.fixture(scope="module")
def scheduler_address(cluster_client):
    return cluster_client.scheduler.address


def test_generate_writes_parquet_in_row_groups(generated):
    files = sorted(generated.glob("part-*.parquet"))
    assert len(files) == 2
    meta = pq.read_metadata(files[0])
    assert meta.num_rows == 15_000 and meta.num_row_groups == 3
    assert pq.read_schema(files[0]).names == ["x0", "x1", "x2"]


def test_fit_inspect_predict_score_sample_on_a_local_cluster(generated, tmp_path):
    model_path = tmp_path / "model.npz"
    fit = run(
        "fit", generated, "--n-components", 3, "--model", model_path, "--seed", 0, "--n-workers", 2, "--tol", "1e-6"
    )
    assert "local cluster: workers=2, dashboard=http://127.0.0.1:" in fit.stderr
    assert "iteration    1  mean log-likelihood" in fit.stderr and "rows/s" in fit.stderr
    assert "done: converged=True" in fit.stderr
    model = load_model(model_path)
    assert model.converged_ and list(model.feature_names_in_) == ["x0", "x1", "x2"]

    inspect = json.loads(run("inspect", model_path, "--json").stdout)
    assert inspect["n_components"] == 3 and inspect["converged"]
    assert abs(sum(c["weight"] for c in inspect["components"]) - 1) < 1e-12
    assert inspect["input"]["n_rows"] == 30_000 and inspect["input"]["columns"] == ["x0", "x1", "x2"]
    assert "3 components, full covariances, 3 features (x0, x1, x2)" in run("inspect", model_path).stdout

    out = tmp_path / "labels.parquet"
    run("predict", model_path, generated, "--output", out, "--proba")
    labels = pq.read_table(out)
    assert labels.num_rows == 30_000 and labels.column_names == ["component", "proba_0", "proba_1", "proba_2"]
    X = dgmm.read_parquet(generated).compute()
    np.testing.assert_array_equal(labels.column("component").to_numpy(), model.predict(X))

    score = json.loads(run("score", model_path, generated, "--json").stdout)
    assert score["n_samples"] == 30_000
    np.testing.assert_allclose(score["mean_log_likelihood"], model.score(X), rtol=1e-12)
    np.testing.assert_allclose(score["bic"], model.bic(X), rtol=1e-12)

    drawn = tmp_path / "sample.parquet"
    run("sample", model_path, "-n", 5000, "--output", drawn, "--seed", 1)
    table = pq.read_table(drawn)
    assert table.num_rows == 5000 and table.column_names == ["x0", "x1", "x2", "component"]

    picture = tmp_path / "model.png"
    run("plot", model_path, generated, "--output", picture, "--sample-rows", 3000)
    import matplotlib.image

    image = matplotlib.image.imread(picture)
    assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 0


def test_predict_keeps_id_columns_in_row_order(tmp_path, scheduler_address):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (500, 2)), rng.normal(6, 1, (500, 2))])
    order = rng.permutation(1000)
    X = X[order]
    table = pa.table({"id": np.arange(1000) * 10, "a": X[:, 0], "b": X[:, 1], "name": [f"r{i}" for i in range(1000)]})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=128)
    model_path = tmp_path / "m.npz"
    run("fit", tmp_path / "in.parquet", "-h")  # help works on every subcommand
    run(
        "fit",
        tmp_path / "in.parquet",
        "--n-components",
        2,
        "--columns",
        "a,b",
        "--model",
        model_path,
        "--scheduler",
        scheduler_address,
        "--seed",
        0,
    )
    out = tmp_path / "out.parquet"
    run("predict", model_path, tmp_path / "in.parquet", "--output", out, "--keep-columns", "id,name")
    result = pq.read_table(out)
    assert result.column_names == ["id", "name", "component"]
    np.testing.assert_array_equal(result.column("id").to_numpy(), np.arange(1000) * 10)
    truth = (order >= 500).astype(int)
    labels = result.column("component").to_numpy()
    assert max(np.mean(labels == truth), np.mean(labels != truth)) == 1.0
    again = run("predict", model_path, tmp_path / "in.parquet", "--output", out, check_code=2)
    assert one_line_error(again, "predict").endswith("out.parquet: output exists; remove it or pass --overwrite")
    run("predict", model_path, tmp_path / "in.parquet", "--output", out, "--overwrite")


def test_config_file_with_overrides_and_json_logs(generated, tmp_path, scheduler_address):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {generated}\nn_components: 2\ncovariance_type: diag\nmax_iter: 4\ntol: 0\n"
        f"scheduler: {scheduler_address}\nlog_format: json\n"
    )
    model_path = tmp_path / "m.npz"
    proc = run("fit", "--config", config, "--n-components", 3, "--model", model_path)
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    iterations = [e for e in events if e["event"] == "iteration"]
    assert [e["iteration"] for e in iterations] == [1, 2, 3, 4]
    assert all(e["rows_per_second"] > 0 for e in iterations)
    model = load_model(model_path)
    assert model.n_components == 3 and model.covariance_type == "diag" and model.n_iter_ == 4
    assert "did not converge in 4 iterations" in proc.stderr
    strict = run("fit", "--config", config, "--model", model_path, "--overwrite", "--require-convergence", check_code=3)
    assert "did not converge" in strict.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("n_components: 3\nbogus: 1\n", "unknown key 'bogus'; allowed keys: data, model, overwrite, n_components"),
        ("n_components: three\n", "key 'n_components' has value 'three'; expected an integer >= 1"),
        (
            "covariance_type: banana\n",
            "key 'covariance_type' has value 'banana'; expected one of full, tied, diag, spherical",
        ),
        ("tol: -1\n", "key 'tol' has value -1; expected a number >= 0"),
        ("- just\n- a list\n", "the config must be a mapping of key: value, not list"),
        ("n_components: [\n", "not valid YAML"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    proc = run("fit", "some-data", "--model", tmp_path / "m.npz", "--config", config, check_code=2)
    assert message in one_line_error(proc, "fit")
    assert not (tmp_path / "m.npz").exists()


def test_user_errors_exit_2_with_one_line(tmp_path, generated):
    missing = run("fit", tmp_path / "nope", "--n-components", 2, "--model", tmp_path / "m.npz", check_code=2)
    assert one_line_error(missing, "fit").endswith("nope: no such file or directory")
    no_model = run("fit", generated, "--n-components", 2, check_code=2)
    assert "missing --model" in one_line_error(no_model, "fit")
    bad_column = run("fit", generated, "--columns", "x0,zz", "--model", tmp_path / "m.npz", check_code=2)
    assert "column 'zz' not found; columns are x0, x1, x2" in one_line_error(bad_column, "fit")
    bad_option = run("fit", generated, "--covariance-type", "banana", "--model", tmp_path / "m.npz", check_code=2)
    assert "Invalid value for '--covariance-type': 'banana' is not one of" in one_line_error(bad_option, "fit")
    not_a_model = tmp_path / "model.npz"
    not_a_model.write_text("hello")
    broken = run("inspect", not_a_model, check_code=2)
    assert str(not_a_model) in one_line_error(broken, "inspect")
    exists = run("generate", "-n", 10, "-d", 1, "-k", 1, "--output", generated, check_code=2)
    assert "output exists; remove it or pass --overwrite" in one_line_error(exists, "generate")
    assert not list(tmp_path.glob(".*tmp"))


def test_fit_with_split_merge_from_a_config_records_it_in_the_model(generated, tmp_path):
    config = tmp_path / "smem.yaml"
    config.write_text("n_components: 3\nsplit_merge: 5\nseed: 0\ntol: 1.0e-6\nn_workers: 2\n")
    model_path = tmp_path / "model.npz"
    fit = run("fit", generated, "--config", config, "--model", model_path)
    assert "done: converged=True" in fit.stderr
    model = load_model(model_path)
    assert model.split_merge == 5 and model.converged_
    # the generating mixture's optimum: a move is tried and none is kept
    assert "split-merge:" not in fit.stderr
    bad = run("fit", generated, "--split-merge", "-1", "--model", tmp_path / "bad.npz", check_code=2)
    assert "--split-merge" in one_line_error(bad, "fit") and not (tmp_path / "bad.npz").exists()


def test_select_takes_a_config_with_every_estimator_key(generated, tmp_path, scheduler_address):
    """`dgmm select --config`: the grid, the criterion and estimator keys such as dtype and reg_covar,
    options overriding the file; the best model is written with the settings it was fitted with."""
    config = tmp_path / "select.yaml"
    config.write_text(
        "n_components: 2-3\ncovariance_types: [full, diag]\ndtype: float32\nreg_covar: 1.0e-4\n"
        "max_iter: 20\ncache: none\nseed: 3\ncriterion: aic\n"
    )
    model_path = tmp_path / "best.npz"
    proc = run(
        "select",
        generated,
        "--config",
        config,
        "--criterion",
        "bic",
        "--scheduler",
        scheduler_address,
        "--model",
        model_path,
        "--json",
    )
    report = json.loads(proc.stdout)
    assert report["criterion"] == "bic" and len(report["table"]) == 4
    best = load_model(model_path)
    assert (best.n_components, best.covariance_type) == (
        report["best"]["n_components"],
        report["best"]["covariance_type"],
    )
    assert best.reg_covar == 1e-4 and best.max_iter == 20 and best.random_state == 3
    bad = run("select", generated, "--config", config, "--dtype", "float16", check_code=2)
    assert "float16" in one_line_error(bad, "select")


def test_classifier_fit_inspect_predict_rows_and_groups(tmp_path, scheduler_address, generated):
    """`dgmm fit --label-column` (one mixture per speaker, MAP from a background model fitted first), one
    model file holding every class; `inspect` lists them; `predict` per row and per utterance."""
    import pandas as pd

    rng = np.random.default_rng(3)
    frames = []
    for c, speaker in enumerate(["ann", "bob", "cy"]):
        X = rng.normal(size=(600, 2)) + [2.0 * c, 0.0]
        frames.append(
            pd.DataFrame(
                {
                    "a": X[:, 0],
                    "b": X[:, 1],
                    "speaker": speaker,
                    "utterance": [f"{speaker}-{i // 60}" for i in range(600)],
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    data = tmp_path / "frames"
    data.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(data / f"part-{i}.parquet", row_group_size=128, index=False)
    model_path = tmp_path / "speakers.npz"
    run(
        "fit",
        data,
        "--label-column",
        "speaker",
        "--exclude-columns",
        "utterance",
        "--n-components",
        2,
        "--covariance-type",
        "diag",
        "--ubm",
        "fit",
        "--adapt",
        "means,weights",
        "--model",
        model_path,
        "--scheduler",
        scheduler_address,
        "--seed",
        0,
    )
    report = json.loads(run("inspect", model_path, "--json").stdout)
    assert report["kind"] == "classifier" and report["classes"] == ["ann", "bob", "cy"]
    assert report["feature_names"] == ["a", "b"] and report["background_model"]["n_components"] == 2
    assert "3 classes" in run("inspect", model_path).stdout
    rows = tmp_path / "rows.parquet"
    run("predict", model_path, data, "--output", rows, "--proba", "--keep-columns", "utterance")
    table = pq.read_table(rows)
    assert table.column_names == ["utterance", "class", "proba_ann", "proba_bob", "proba_cy"]
    loaded = load_model(model_path)
    np.testing.assert_array_equal(
        table.column("class").to_numpy(zero_copy_only=False), loaded.predict(frame[["a", "b"]])
    )
    groups = tmp_path / "groups.parquet"
    run("predict", model_path, data, "--output", groups, "--group-column", "utterance")
    decided = pq.read_table(groups).to_pandas()
    assert len(decided) == 30 and (decided["class"] == decided["group"].str.split("-").str[0]).all()
    # a one-mixture model has no classes; a missing label column and a checkpoint are refused in one line
    mixture = tmp_path / "mixture.npz"
    run("fit", generated, "--n-components", 2, "--model", mixture, "--scheduler", scheduler_address, "--max-iter", 3)
    bad = run("predict", mixture, data, "--output", tmp_path / "x.parquet", "--group-column", "utterance", check_code=2)
    assert "needs a classifier model" in one_line_error(bad, "predict")
    missing = run("fit", data, "--label-column", "nope", "--model", tmp_path / "y.npz", check_code=2)
    assert "column 'nope' not found; columns are a, b, speaker, utterance" in one_line_error(missing, "fit")
    refused = run(
        "fit",
        data,
        "--label-column",
        "speaker",
        "--checkpoint",
        tmp_path / "ck",
        "--model",
        tmp_path / "z.npz",
        check_code=2,
    )
    assert "--checkpoint applies to a single mixture" in one_line_error(refused, "fit")


def test_every_command_takes_a_classifier_file_of_many_classes(tmp_path):
    """200 speakers MAP-adapted from one background model in one file: inspect, score (accuracy with
    --label-column), predict by row and by utterance, sample (by prior, or one --class) and plot each take it;
    a one-mixture model refuses the classifier-only options in one line, exit 2."""
    import pandas as pd

    rng = np.random.default_rng(7)
    n_speakers, frames = 200, 40
    speakers = np.repeat([f"spk{c:03d}" for c in range(n_speakers)], frames)
    X = rng.normal(size=(speakers.size, 3)) + np.repeat(rng.normal(scale=4.0, size=(n_speakers, 3)), frames, axis=0)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "speaker": speakers})
    frame["utterance"] = [f"{s}-{i % 2}" for i, s in enumerate(speakers)]
    data = tmp_path / "frames.parquet"
    frame.to_parquet(data, row_group_size=1000, index=False)
    model = tmp_path / "speakers.npz"
    run("fit", data, "--label-column", "speaker", "--exclude-columns", "utterance", "--n-components", 4,
        "--covariance-type", "diag", "--ubm", "fit", "--model", model, "--seed", 0)  # fmt: skip
    loaded = load_model(model)
    assert len(loaded.classes_) == n_speakers
    assert json.loads(run("inspect", model, "--json").stdout)["classes"][:2] == ["spk000", "spk001"]
    scored = json.loads(run("score", model, data, "--label-column", "speaker", "--json").stdout)
    features = frame[["a", "b", "c"]]
    assert scored["n_samples"] == scored["n_labelled"] == len(frame) and scored["n_classes"] == n_speakers
    assert scored["accuracy"] == pytest.approx(np.mean(loaded.predict(features) == speakers), abs=1e-12)
    joint = loaded.predict_log_proba(features)  # log-posteriors; the mean log-likelihood adds back the evidence
    assert np.isfinite(joint).all() and scored["mean_log_likelihood"] == pytest.approx(
        loaded.score_summary(features)["mean_log_likelihood"], rel=1e-12
    )
    assert "accuracy" not in json.loads(run("score", model, data, "--json").stdout)
    run("predict", model, data, "--output", tmp_path / "rows.parquet")
    rows = pq.read_table(tmp_path / "rows.parquet").column("class").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(rows, loaded.predict(features))
    run("predict", model, data, "--output", tmp_path / "utterances.parquet", "--group-column", "utterance")
    decided = pq.read_table(tmp_path / "utterances.parquet").to_pandas()
    assert len(decided) == 2 * n_speakers
    # Gaussian selection on every background component decides as full scoring
    selected = tmp_path / "selected.parquet"
    run("predict", model, data, "--output", selected, "--group-column", "utterance", "--top-c", 4)
    assert (pq.read_table(selected).to_pandas()["class"] == decided["class"]).all()
    top = json.loads(run("score", model, data, "--label-column", "speaker", "--top-c", 4, "--json").stdout)
    assert top["accuracy"] == pytest.approx(scored["accuracy"], abs=1e-12)
    run("sample", model, "-n", 50, "--class", "spk007", "--output", tmp_path / "one.parquet")
    one = pq.read_table(tmp_path / "one.parquet")
    assert one.column_names == ["a", "b", "c", "class"] and set(one.column("class").to_pylist()) == {"spk007"}
    run("sample", model, "-n", 500, "--output", tmp_path / "all.parquet")
    assert len(set(pq.read_table(tmp_path / "all.parquet").column("class").to_pylist())) > 100
    unknown = run("sample", model, "-n", 5, "--class", "nobody", "--output", tmp_path / "x.parquet", check_code=2)
    assert "label='nobody' is not a class of this model" in one_line_error(unknown, "sample")
    run("plot", model, data, "--output", tmp_path / "classes.png")
    assert (tmp_path / "classes.png").stat().st_size > 0
    mixture = tmp_path / "mixture.npz"
    run("fit", data, "--exclude-columns", "speaker,utterance", "--n-components", 2, "--model", mixture)
    refused = run("score", mixture, data, "--label-column", "speaker", check_code=2)
    assert "--label-column needs a classifier model" in one_line_error(refused, "score")
    refused = run("sample", mixture, "-n", 5, "--class", "spk001", "--output", tmp_path / "y.parquet", check_code=2)
    assert "--class needs a classifier model" in one_line_error(refused, "sample")
    refused = run("predict", mixture, data, "--output", tmp_path / "z.parquet", "--top-c", 2, check_code=2)
    assert "--top-c needs a classifier model" in one_line_error(refused, "predict")
