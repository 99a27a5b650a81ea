"""What a new user meets in the first hour, run for real: small data fits in process and says where its
time goes; seeds make every run repeatable; messages name the options the command has; a closed log pipe,
Ctrl-C, a CSV file or a script without a main guard get one clear line, never a lost model or a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dgmm
from dgmm.testing import assert_identical

DGMM = str(Path(sys.executable).parent / "dgmm")


def run(*args, check_code: int | None = 0, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([DGMM, *map(str, args)], capture_output=True, text=True, timeout=300, **kwargs)
    if check_code is not None:
        assert proc.returncode == check_code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def faithful(tmp_path_factory) -> Path:
    """272 rows of two features, as the Old Faithful geyser data (eruption minutes, minutes waited)."""
    rng = np.random.default_rng(0)
    short = rng.random(272) < 0.35
    frame = pd.DataFrame(
        {
            "eruptions": np.where(short, rng.normal(2.0, 0.3, 272), rng.normal(4.3, 0.4, 272)).round(3),
            "waiting": np.where(short, rng.normal(54, 6, 272), rng.normal(80, 6, 272)).round(0),
        }
    )
    folder = tmp_path_factory.mktemp("faithful")
    frame.to_parquet(folder / "faithful.parquet", index=False)
    frame.to_csv(folder / "faithful.csv", index=False)
    frame.assign(name="geyser").to_parquet(folder / "with_text.parquet", index=False)
    return folder


def test_a_small_fit_runs_in_process_and_reports_its_passes_before_the_first_iteration(faithful, tmp_path):
    fit = run("fit", faithful / "faithful.parquet", "--n-components", 2, "--model", tmp_path / "m.npz")
    lines = fit.stderr.splitlines()
    names = [line.split(" ", 2)[2].split(":")[0] for line in lines]  # after the date and time
    assert "local cluster" not in names and names[:3] == ["input", "in process", "cache"]
    first_iteration = next(i for i, line in enumerate(lines) if "iteration    1" in line)
    passes = [line for line in lines[:first_iteration] if " pass: stage=initialisation" in line]
    assert len(passes) >= 2  # k-means|| and Lloyd passes, each as it ends, not seconds of silence
    assert names[-1] == "done"
    # the same chunking on a cluster of worker processes: the same bits
    run("fit", faithful / "faithful.parquet", "--n-components", 2, "--model", tmp_path / "c.npz", "--n-workers", 2)
    assert_identical(dgmm.load_model(tmp_path / "m.npz"), dgmm.load_model(tmp_path / "c.npz"))


def test_parquet_in_process_equals_the_cluster_fit_bit_for_bit(parquet_dir, cluster_client, monkeypatch):
    """Row groups of uneven sizes stay the chunks of the in-process passes; no local cluster starts."""
    from dgmm.data.synthetic import random_mixture, sample_mixture

    X = sample_mixture(random_mixture(3, 4, seed=1), 5_000, seed=1)[0]
    path = parquet_dir(X, row_group_size=777, n_files=3)
    monkeypatch.setattr("dgmm.execution.executor.local_cluster", None)  # calling it would fail the test
    settings = dict(n_components=3, random_state=0, n_init=2, split_merge=3)
    here = dgmm.GaussianMixture(**settings).fit(path)
    assert here.cache_used_ == "memory"
    there = dgmm.GaussianMixture(**settings, client=cluster_client).fit(path)
    assert_identical(here, there)
    np.testing.assert_array_equal(here.predict(path).compute(), there.predict(path).compute())


def test_large_parquet_without_a_client_still_starts_a_local_cluster(monkeypatch):
    from dgmm.execution.executor import fits_in_process

    monkeypatch.setattr("dgmm.execution.executor.IN_PROCESS_FRACTION", 0.125)
    import psutil

    available = psutil.virtual_memory().available
    assert fits_in_process(available // 10)
    assert not fits_in_process(available // 4)
    assert not fits_in_process(10, cache="none")  # streaming asked for: out of core, on a cluster


def test_every_command_is_seeded_and_records_its_seed(faithful, tmp_path):
    models = []
    for i in range(2):
        fit = run("fit", faithful / "faithful.parquet", "--n-components", 3, "--model", tmp_path / f"m{i}.npz")
        assert "input: files=1, rows=272, columns=2, seed=0" in fit.stderr
        models.append(dgmm.load_model(tmp_path / f"m{i}.npz"))
    assert_identical(*models)
    assert "seed 0" in run("inspect", tmp_path / "m0.npz").stdout
    other = run("fit", faithful / "faithful.parquet", "--n-components", 3, "--model", tmp_path / "m7.npz", "--seed", 7)
    assert "seed=7" in other.stderr and dgmm.load_model(tmp_path / "m7.npz").random_state == 7
    for command in ("fit", "select", "sample", "plot", "generate"):
        assert "[default: 0" in " ".join(run(command, "--help").stdout.split()), command
    drawn = [run("sample", tmp_path / "m0.npz", "-n", 50, "-o", tmp_path / f"s{i}.parquet") for i in range(2)]
    assert drawn and pd.read_parquet(tmp_path / "s0.parquet").equals(pd.read_parquet(tmp_path / "s1.parquet"))


def test_messages_name_the_options_of_the_command_they_come_from(faithful, tmp_path):
    X = pd.read_parquet(faithful / "faithful.parquet").to_numpy()
    dgmm.GaussianMixture(2, random_state=0).fit(X).save(str(tmp_path / "numpy.npz"))  # no feature names
    data = faithful / "with_text.parquet"
    for args in (
        ("predict", tmp_path / "numpy.npz", data, "-o", tmp_path / "p.parquet"),
        ("score", tmp_path / "numpy.npz", data),
        ("plot", tmp_path / "numpy.npz", data, "-o", tmp_path / "p.png"),
    ):
        proc = run(*args, check_code=2)
        assert proc.stderr.strip().endswith("not a number; select numeric feature columns with --columns A,B,..."), (
            proc.stderr
        )
        assert "columns=[" not in proc.stderr
        run(*args, "--columns", "eruptions,waiting")  # and the option is there
    with pytest.raises(dgmm.DataError, match=r"select numeric feature columns with columns=\[\.\.\.\]$"):
        dgmm.GaussianMixture(2).fit(str(data))  # Python is told in Python's words
    score = json.loads(run("score", tmp_path / "numpy.npz", data, "--columns", "eruptions,waiting", "--json").stdout)
    assert score["n_samples"] == 272


def test_a_csv_file_gets_the_one_line_that_converts_it(faithful, tmp_path):
    proc = run("fit", faithful / "faithful.csv", "--model", tmp_path / "m.npz", check_code=2)
    line = proc.stderr.strip()
    assert (
        line.startswith(f"dgmm fit: error: {faithful / 'faithful.csv'}: this is CSV, not Parquet") and "\n" not in line
    )
    command = line.split("convert it once with ", 1)[1].split(", then give", 1)[0]
    subprocess.run(
        command, shell=True, check=True, cwd=faithful, env={**os.environ, "PATH": str(Path(sys.executable).parent)}
    )
    run("fit", faithful / "faithful.parquet", "--model", tmp_path / "m.npz", "--n-components", 2)
    assert pd.read_parquet(faithful / "faithful.parquet").shape == (272, 2)


def test_a_closed_log_pipe_does_not_lose_the_fit(faithful, tmp_path):
    """`dgmm fit ... 2>&1 | head -2`: the reader goes away after two lines; the fit goes on and writes its model."""
    for log_format in ("text", "json"):
        model = tmp_path / f"{log_format}.npz"
        proc = subprocess.run(
            f"'{DGMM}' fit '{faithful / 'faithful.parquet'}' --n-components 3 --model '{model}' "
            f"--log-format {log_format} 2>&1 | head -2; exit ${{PIPESTATUS[0]}}",
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2, proc
        assert dgmm.load_model(model).converged_
    proc = subprocess.run(
        f"'{DGMM}' select '{faithful / 'faithful.parquet'}' --n-components 1-3 --model "
        f"'{tmp_path / 'best.npz'}' 2>/dev/null | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and (tmp_path / "best.npz").is_file()


def test_ctrl_c_starts_its_own_line_after_a_progress_bar(faithful, tmp_path):
    """On a terminal the progress bar is a line without its newline; the interrupt message must not join it.

    The fit is stopped at a deterministic point: SIGINT is sent from the first iteration's report."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        import dgmm.cli.app as app

        original = app.ProgressLog.iteration

        def iteration(self, report):
            original(self, report)
            os.kill(os.getpid(), signal.SIGINT)

        app.ProgressLog.iteration = iteration
        sys.stderr.isatty = lambda: True
        sys.argv = ["dgmm", "fit", {str(faithful / "faithful.parquet")!r}, "--n-components", "2", "--model",
                    {str(tmp_path / "m.npz")!r}, "--max-iter", "50", "--tol", "0"]
        from dgmm.cli import main
        main()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    stderr = proc.stderr.decode()  # bytes: text mode would turn the bar's carriage returns into newlines
    assert proc.returncode == 130, stderr
    assert "\r[" in stderr  # the live bar was drawn
    assert stderr.endswith("\x1b[K\ndgmm fit: interrupted\n"), repr(stderr[-200:])
    assert not (tmp_path / "m.npz").exists()


def test_a_script_without_a_main_guard_is_told_what_to_add(faithful, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(f"""
        import dgmm
        model = dgmm.GaussianMixture(2, random_state=0, cache="none").fit({str(faithful / "faithful.parquet")!r})
    """)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"dgmm.errors.ConfigError: {script}, line 3: this starts a local Dask cluster, whose worker processes "
        'import the script again; put the code that fits under if __name__ == "__main__": (or pass a client of a '
        "cluster started elsewhere)"
    )
    assert len(proc.stderr.splitlines()) < 40  # its own traceback, not hundreds of lines from every worker
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        textwrap.dedent(f"""
        import dgmm

        def fit():
            return dgmm.GaussianMixture(2, random_state=0, cache="none").fit({str(faithful / "faithful.parquet")!r})

        if __name__ == "__main__":
            print(fit().converged_)
    """)
    )
    proc = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr


def test_array_api_input_needs_no_extra():
    from importlib.metadata import requires

    core = [r for r in requires("dgmm") if "extra ==" not in r]
    assert any(r.startswith("array-api-compat") for r in core)


def test_tables_people_read_have_one_number_format_per_column(tmp_path):
    from dgmm.estimator.tables import format_table

    text = format_table(
        ["k", "bic", "log_likelihood", "heldout"],
        [[1, 1389800.31, -4.179943, float("nan")], [2, 649610.0, -3.5, float("nan")]],
        ["", "*"],
    )
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # aligned
    assert lines[1].split() == ["1", "1389800", "-4.17994", "-"] and lines[2].split() == [
        "*",
        "2",
        "649610",
        "-3.50000",
        "-",
    ]
    assert "e+" not in text
    rng = np.random.default_rng(0)
    names = ["carat", "depth", "table", "price", "x", "y", "z"]
    X = rng.normal(size=(3000, 7)) * [0.5, 1.4, 2.2, 4000, 1.1, 1.1, 0.7] + [0.8, 61.7, 57.4, 3900, 5.7, 5.7, 3.5]
    pd.DataFrame(X, columns=names).to_parquet(tmp_path / "diamonds.parquet")
    run("fit", tmp_path / "diamonds.parquet", "--n-components", 3, "--model", tmp_path / "m.npz")
    shown = run("inspect", tmp_path / "m.npz").stdout
    assert "[" not in shown and "e+0" not in shown  # no NumPy array wrapped across lines
    tables = shown.split(":\n")
    means = tables[-2].splitlines()[:4]
    assert means[0].split() == ["component", *names] and len({len(line) for line in means}) == 1
    select = run("select", tmp_path / "diamonds.parquet", "--n-components", "1-3").stdout
    header = select.splitlines()[0].split()
    assert "heldout_log_likelihood" not in header and header[:3] == [
        "n_components",
        "covariance_type",
        "log_likelihood",
    ]
    bic = [line.split()[-4] for line in select.splitlines()[1:4]]
    assert len({len(b.split(".")[-1]) if "." in b else 0 for b in bic}) == 1  # one format in the column
    held = run("select", tmp_path / "diamonds.parquet", "--n-components", "1-2", "--criterion", "heldout").stdout
    assert "heldout_log_likelihood" in held.splitlines()[0] and " - " not in held


def test_dgmm_plot_draws_a_classifier_and_two_named_features(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image as mpimg

    rng = np.random.default_rng(2)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "species": name,
                    "bill_length": rng.normal(loc, 2.5, 150),
                    "bill_depth": rng.normal(18 - loc / 10, 1.0, 150),
                    "flipper": rng.normal(190 + loc, 6, 150),
                    "mass": rng.normal(3700 + 40 * loc, 400, 150),
                }
            )
            for name, loc in (("Adelie", 39), ("Chinstrap", 49), ("Gentoo", 47))
        ]
    )
    frame.to_parquet(tmp_path / "penguins.parquet", index=False)
    run(
        "fit",
        tmp_path / "penguins.parquet",
        "--label-column",
        "species",
        "--n-components",
        2,
        "--model",
        tmp_path / "classes.npz",
    )
    for extra in ((), ("--features", "bill_length,bill_depth")):
        out = tmp_path / f"classes{len(extra)}.png"
        run("plot", tmp_path / "classes.npz", tmp_path / "penguins.parquet", "-o", out, *extra)
        assert mpimg.imread(out)[..., :3].var() > 0.001
    proc = run(
        "plot",
        tmp_path / "classes.npz",
        tmp_path / "penguins.parquet",
        "-o",
        tmp_path / "x.png",
        "--features",
        "bill_length,beak",
        check_code=2,
    )
    assert proc.stderr.strip() == (
        "dgmm plot: error: feature 'beak' is not one of the model's features: bill_length, bill_depth, flipper, mass"
    )
