"""The bad-input matrix: every case through the Python API and the `dgmm` command.

Each case must give one line naming the problem and the fix, exit code 2 on the
command line, no traceback, and leave no output behind. Cases that must *fit*
(constant column, duplicate rows, d = 1, one-row row groups) are checked too.

``python tests/system/test_bad_inputs.py`` prints the matrix as a table (case, message,
exit code) from real command-line runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dgmm
from dgmm import load_model
from dgmm.data.devices import cuda_devices
from dgmm.errors import DgmmError

DGMM = str(Path(sys.executable).parent / "dgmm")
RNG = np.random.default_rng(7)
GOOD = RNG.normal(size=(600, 2)) + np.repeat([[0.0, 0.0], [6.0, 6.0]], 300, axis=0)


def write(path: Path, columns: dict[str, Any], row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def good_columns(n: int = 600) -> dict[str, np.ndarray]:
    return {"x0": GOOD[:n, 0], "x1": GOOD[:n, 1]}


def with_value(value: float | None) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        x1 = GOOD[:, 1].tolist()
        x1[123] = value
        return write(tmp / "data.parquet", {"x0": GOOD[:, 0], "x1": pa.array(x1, pa.float64())})

    return build


def mismatched_schemas(tmp: Path) -> Path:
    write(tmp / "data" / "a.parquet", good_columns(300))
    write(tmp / "data" / "b.parquet", {"x0": GOOD[300:, 0], "x1": GOOD[300:, 1].astype(str)})
    return tmp / "data"


def text_file(tmp: Path) -> Path:
    path = tmp / "data.parquet"
    path.write_text("id,x\n1,2\n")
    return path


def empty_directory(tmp: Path) -> Path:
    (tmp / "data" / "sub").mkdir(parents=True)
    (tmp / "data" / "notes.txt").write_text("no parquet here")
    return tmp / "data"


def saved_model(tmp: Path) -> Path:
    path = tmp / "model.npz"
    dgmm.GaussianMixture(2, random_state=0).fit(GOOD).save(str(path))
    return path


def model_file(edit: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        path = saved_model(tmp)
        path.write_bytes(edit(path.read_bytes()))
        return path

    return build


def other_version(content: bytes) -> bytes:
    """A well-formed model file from a future format version (checksum recomputed)."""
    import io

    from dgmm.persist import model_file as model_io

    with np.load(io.BytesIO(content)) as npz:
        arrays = {name: npz[name] for name in npz.files}
    metadata = json.loads(arrays.pop("metadata").tobytes())
    metadata["format_version"] = 99
    metadata["sha256"] = model_io.checksum_of(arrays, metadata)
    out = io.BytesIO()
    np.savez(out, metadata=np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8), **arrays)
    return out.getvalue()


def tampered(content: bytes) -> bytes:
    """One byte of the means changed: the zip and the arrays still parse, the checksum does not match."""
    import io

    with np.load(io.BytesIO(content)) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["means"][0, 0] += 1.0
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


@dataclass(frozen=True)
class Case:
    """One bad input: how to build it, how to run it, and what the one-line error must say."""

    name: str
    message: str
    build: Callable[[Path], Path] = lambda tmp: write(tmp / "data.parquet", good_columns())
    fit_options: tuple[str, ...] = ()
    api: dict[str, Any] = field(default_factory=dict)  # GaussianMixture parameters for the API run
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    command: str = "fit"  # "fit", or "predict"/"score"/"inspect" with a built model file
    api_only: bool = False
    cli_only: bool = False
    api_message: str | None = None  # where the Python API words it as scikit-learn does
    found_mid_fit: bool = False  # found when a chunk is read: progress lines may come before the error


CASES = [
    # ----------------------------------------------------------------- the data
    Case("missing path", "no such file or directory", build=lambda tmp: tmp / "nope"),
    Case("not a Parquet file", "this is CSV, not Parquet; dgmm reads Parquet: convert it once with", build=text_file),
    Case("directory without Parquet files", "directory holds no Parquet files", build=empty_directory),
    Case("zero rows", "no rows", build=lambda tmp: write(tmp / "data.parquet", {"x0": pa.array([], pa.float64())})),
    Case(
        "fewer rows than components",
        "n_samples >= max(2, n_components) but got n_components = 5, n_samples = 3",
        build=lambda tmp: write(tmp / "data.parquet", good_columns(3)),
        fit_options=("--n-components", "5"),
        api={"n_components": 5},
    ),
    Case(
        "one row group of one row",
        "but got n_components = 1, n_samples = 1",
        build=lambda tmp: write(tmp / "data.parquet", good_columns(1)),
    ),
    Case(
        "selected column missing",
        "column 'zz' not found; columns are x0, x1",
        fit_options=("--columns", "x0,zz"),
        fit_kwargs={"columns": ["x0", "zz"]},
    ),
    Case(
        "non-numeric column",
        "column 'name' has type string, not a number",
        build=lambda tmp: write(tmp / "data.parquet", {**good_columns(), "name": ["a"] * 600}),
    ),
    Case("null values", "column 'x1' has 1 null values", build=with_value(None)),
    Case(
        "NaN values",
        "column 'x1' has 1 NaN or infinite values in row group 0 (first: row 123 of the group, value nan)",
        build=with_value(np.nan),
        found_mid_fit=True,
    ),
    Case(
        "infinite values",
        "column 'x1' has 1 NaN or infinite values in row group 0 (first: row 123 of the group, value inf)",
        build=with_value(np.inf),
        found_mid_fit=True,
    ),
    Case(
        "values beyond 1e100 (their squares overflow)",
        "column 'x1' in row group 0, row 123 of the group, is 1e+300, "
        "beyond 1e+100 in magnitude, where the second moments overflow; scale the data",
        build=with_value(1e300),
    ),
    Case(
        "negative sample weight",
        "weight column 'w' has 1 negative, NaN or infinite weights in row group 0 "
        "(first: row 123 of the group, value -1.0); weights must be finite and >= 0",
        build=lambda tmp: write(tmp / "data.parquet", {**good_columns(), "w": np.r_[np.ones(123), -1.0, np.ones(476)]}),
        fit_options=("--weight-column", "w"),
        fit_kwargs={"sample_weight": "w"},
        found_mid_fit=True,
    ),
    Case(
        "NaN sample weight",
        "weight column 'w' has 1 negative, NaN or infinite weights in row group 0 "
        "(first: row 123 of the group, value nan)",
        build=lambda tmp: write(
            tmp / "data.parquet", {**good_columns(), "w": np.r_[np.ones(123), np.nan, np.ones(476)]}
        ),
        fit_options=("--weight-column", "w"),
        fit_kwargs={"sample_weight": "w"},
        found_mid_fit=True,
    ),
    Case("unknown nan_policy", "maybe", fit_options=("--nan-policy", "maybe"), api={"nan_policy": "maybe"}),
    Case(
        "files with mismatched schemas",
        "column 'x1' has type string, not a number (it is double in",
        build=mismatched_schemas,
    ),
    # ----------------------------------------------------------------- the parameters
    Case("n_components < 1", "n_components", fit_options=("--n-components", "0"), api={"n_components": 0}),
    Case("tol < 0", "tol", fit_options=("--tol", "-1"), api={"tol": -1.0}),
    Case("reg_covar < 0", "reg_covar", fit_options=("--reg-covar", "-0.1"), api={"reg_covar": -0.1}),
    Case(
        "unknown covariance_type",
        "banana",
        fit_options=("--covariance-type", "banana"),
        api={"covariance_type": "banana"},
    ),
    Case("unknown init_params", "banana", fit_options=("--init", "banana"), api={"init_params": "banana"}),
    Case("unknown device", "tpu", fit_options=("--device", "tpu"), api={"device": "tpu"}),
    *(
        []
        if cuda_devices()
        else [  # refused before a cluster starts
            Case(
                "device cuda without a GPU",
                "device='cuda' needs CuPy and a GPU it sees",
                fit_options=("--device", "cuda"),
                api={"device": "cuda"},
            )
        ]
    ),
    Case(
        "means_init of the wrong shape",
        "means_init=(3, 2) is invalid; expected shape (2, 2)",
        api={"n_components": 2, "means_init": np.zeros((3, 2))},
        api_only=True,
    ),
    Case(
        "precisions_init not positive definite",
        "precision matrix 0 is not symmetric positive definite",
        api={"n_components": 2, "precisions_init": np.array([[[1.0, 2.0], [2.0, 1.0]]] * 2)},
        api_only=True,
    ),
    # ----------------------------------------------------------------- model files
    Case(
        "model file truncated",
        "truncated or corrupt model file",
        command="inspect",
        build=model_file(lambda b: b[: len(b) // 2]),
    ),
    Case("model file tampered", "checksum mismatch", command="inspect", build=model_file(tampered)),
    Case(
        "model file of another version",
        "model format version 99 is newer than this dgmm supports",
        command="inspect",
        build=model_file(other_version),
    ),
    Case(
        "model of another number of features",
        "input has 3 feature columns, the model expects 2",
        command="predict",
        build=saved_model,
        api_message="X has 3 features, but GaussianMixture is expecting 2 features as input",
    ),
    # ----------------------------------------------------------------- outputs
    Case("output exists", "output exists; remove it or pass --overwrite", command="exists", cli_only=True),
    Case("output directory missing", "output directory does not exist", command="no-parent", cli_only=True),
    Case("output parent is a file", "output directory does not exist", command="parent-file", cli_only=True),
]


def cli_args(case: Case, tmp: Path, scheduler: str | None) -> list[str]:
    """The command line of a case, after building its input under ``tmp``."""
    cluster = ["--scheduler", scheduler] if scheduler else []
    if case.command == "fit":
        data = case.build(tmp)
        return ["fit", str(data), "--model", str(tmp / "model.npz"), "--n-components", "1", *case.fit_options, *cluster]
    if case.command == "inspect":
        return ["inspect", str(case.build(tmp))]
    data = write(tmp / "three.parquet", {"x0": GOOD[:, 0], "x1": GOOD[:, 1], "x2": GOOD[:, 0]})
    if case.command == "predict":
        return ["predict", str(case.build(tmp)), str(data), "--output", str(tmp / "out.parquet")]
    model = saved_model(tmp)
    if case.command == "exists":
        (tmp / "out.parquet").write_bytes(b"precious")
        data = write(tmp / "data.parquet", good_columns())
        return ["predict", str(model), str(data), "--output", str(tmp / "out.parquet")]
    if case.command == "no-parent":
        return ["fit", str(data), "--model", str(tmp / "missing" / "model.npz"), *cluster]
    (tmp / "file").write_text("")
    return ["fit", str(data), "--model", str(tmp / "file" / "model.npz"), *cluster]


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([DGMM, *args], capture_output=True, text=True, timeout=120)


def run_api(case: Case, tmp: Path, client) -> None:
    """The Python API form of a case; it must raise."""
    if case.command == "inspect":
        load_model(case.build(tmp))
    elif case.command == "predict":
        model = load_model(case.build(tmp))
        model.predict(write(tmp / "three.parquet", {"x0": GOOD[:, 0], "x1": GOOD[:, 1], "x2": GOOD[:, 0]}))
    else:
        data = GOOD if case.api_only else case.build(tmp)
        dgmm.GaussianMixture(**{"n_components": 1, "client": client, **case.api}).fit(data, **case.fit_kwargs)


def leftovers(tmp: Path, before: set[Path]) -> list[Path]:
    return [
        p
        for p in tmp.rglob("*")
        if p not in before and p.name not in ("three.parquet", "model.npz") and not p.name.startswith("data")
    ]


@pytest.mark.parametrize("case", [c for c in CASES if not c.api_only], ids=lambda c: c.name)
def test_command_line(case, tmp_path, cluster_client):
    args = cli_args(case, tmp_path, cluster_client.scheduler.address)
    before = set(tmp_path.rglob("*"))
    model_before = (tmp_path / "model.npz").read_bytes() if (tmp_path / "model.npz").exists() else None
    proc = run_cli(args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and sum("error" in line for line in lines) == 1, proc.stderr
    assert len(lines) == 1 or case.found_mid_fit, proc.stderr
    assert lines[-1].startswith(f"dgmm {args[0]}: error: ") and case.message in lines[-1], lines[-1]
    assert not leftovers(tmp_path, before), leftovers(tmp_path, before)
    if case.command == "fit":
        model = tmp_path / "model.npz"
        assert (model.read_bytes() if model.exists() else None) == model_before
    if case.command == "exists":
        assert (tmp_path / "out.parquet").read_bytes() == b"precious"


@pytest.mark.parametrize("case", [c for c in CASES if not c.cli_only], ids=lambda c: c.name)
def test_python_api(case, tmp_path, cluster_client):
    with pytest.raises(DgmmError) as caught:
        run_api(case, tmp_path, cluster_client)
    message = str(caught.value)
    assert "\n" not in message and (case.api_message or case.message) in message, message


def test_fit_refuses_an_existing_model_unless_overwrite(tmp_path, cluster_client):
    data = write(tmp_path / "data.parquet", good_columns())
    model = tmp_path / "model.npz"
    model.write_bytes(b"an older model")
    args = ["fit", str(data), "--model", str(model), "--scheduler", cluster_client.scheduler.address]
    refused = run_cli(args)
    assert refused.returncode == 2 and "model.npz: output exists; remove it or pass --overwrite" in refused.stderr
    assert model.read_bytes() == b"an older model"
    assert run_cli([*args, "--overwrite"]).returncode == 0
    assert load_model(model).n_components == 1


@pytest.mark.parametrize(
    "name, X",
    [
        ("constant column", np.c_[GOOD, np.full(600, 3.0)]),
        ("duplicate rows", np.repeat(GOOD[:40], 15, axis=0)),
        ("d = 1", GOOD[:, :1]),
    ],
)
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_degenerate_but_valid_data_fits(name, X, covariance_type, tmp_path, cluster_client):
    """Singular empirical covariances are rescued by reg_covar, in memory and from Parquet."""
    in_memory = dgmm.GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    path = write(tmp_path / "data.parquet", {f"x{j}": X[:, j] for j in range(X.shape[1])}, row_group_size=97)
    on_cluster = dgmm.GaussianMixture(2, covariance_type=covariance_type, random_state=0, client=cluster_client).fit(
        path
    )
    assert np.all(np.isfinite(in_memory.means_)) and np.isfinite(in_memory.lower_bound_)
    np.testing.assert_allclose(on_cluster.means_, in_memory.means_, rtol=1e-8, atol=1e-8)
    if name == "constant column":
        variances = in_memory.fitted_params().dense_covariances[:, 2, 2]
        np.testing.assert_allclose(variances, in_memory.reg_covar, rtol=1e-6)


def test_one_row_row_groups_fit_like_one_chunk(tmp_path, cluster_client):
    path = write(tmp_path / "data.parquet", good_columns(60), row_group_size=1)
    assert pq.ParquetFile(path).metadata.num_row_groups == 60
    ours = dgmm.GaussianMixture(2, random_state=0, client=cluster_client).fit(path)
    reference = dgmm.GaussianMixture(2, random_state=0).fit(GOOD[:60])
    np.testing.assert_allclose(ours.means_, reference.means_, rtol=1e-10)


def test_bad_values_found_on_the_default_local_cluster_leave_no_worker_traceback(tmp_path):
    """Workers of the cluster `dgmm fit` starts do not log a user's bad input with a traceback."""
    data = with_value(np.nan)(tmp_path)
    proc = run_cli(["fit", str(data), "--model", str(tmp_path / "model.npz"), "--n-workers", "1"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Compute Failed" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"dgmm fit: error: {data}: column 'x1' has 1 NaN")
    assert not (tmp_path / "model.npz").exists()


def main() -> None:
    """Print the matrix from real command-line runs (a local cluster is started where a fit runs)."""
    import tempfile

    print("| case | message (stderr) | exit |\n|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            if case.api_only:
                try:
                    run_api(case, Path(tmp), None)
                except DgmmError as exc:
                    print(f"| {case.name} (Python API) | `{type(exc).__name__}: {exc}` | – |")
                continue
            proc = run_cli(cli_args(case, Path(tmp), None))
            print(f"| {case.name} | `{proc.stderr.strip().replace(tmp, '…')}` | {proc.returncode} |")


if __name__ == "__main__":
    main()
