"""TLS to a remote scheduler: a real `dask scheduler` and workers on tls://127.0.0.1, fitted through the
CLI (config keys, Dask's env vars) and the Python API, and every bad setting or certificate refused in one line."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import dgmm
from dgmm.cli import main
from dgmm.data.synthetic import random_mixture, sample_mixture, write_parquet
from dgmm.errors import ConfigError
from dgmm.execution import connect
from dgmm.testing import BIN, dask_processes

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command to make certificates"
)

FIT = dict(n_components=3, tol=0.0, max_iter=5, seed=0, cache="none")
TIMEOUT = "10s"


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_ca_and_cert(folder: Path, name: str) -> dict[str, str]:
    """A self-signed CA and a certificate for 127.0.0.1 signed by it (EC P-256 keys, valid 2 days)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key, cert, key, csr = (
        folder / f"{name}{suffix}" for suffix in ("-ca.pem", "-ca.key", ".pem", ".key", ".csr")
    )
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", f"/CN=dgmm test CA {name}")
    openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-set_serial",
        "2",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        folder / "san.cnf",
    )
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, dict[str, str]]:
    """The cluster's CA and certificate ("good"), and an unrelated CA with its own certificate ("other")."""
    folder = tmp_path_factory.mktemp("certs")
    return {"good": make_ca_and_cert(folder, "good"), "other": make_ca_and_cert(folder, "other")}


@pytest.fixture(scope="module")
def tls_scheduler(certs, tmp_path_factory) -> str:
    """A TLS-only `dask scheduler` with two TLS `dask worker` processes on 127.0.0.1."""
    with dask_processes(tmp_path_factory.mktemp("tls-dask"), n_workers=2, tls=certs["good"]) as address:
        assert address.startswith("tls://127.0.0.1:")
        yield address


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[np.ndarray, str]:
    """A 3-component mixture as NumPy and as a Parquet directory with several row groups."""
    X, _ = sample_mixture(random_mixture(3, 3, seed=4, separation=3.0), 12_000, seed=4)
    path = tmp_path_factory.mktemp("tls-data") / "data"
    write_parquet(X, path, row_group_size=1_500, n_files=2)
    return X, str(path)


@pytest.fixture(scope="module")
def reference(data) -> dgmm.GaussianMixture:
    """The same fit in this process, from the NumPy array."""
    return estimator().fit(data[0])


def estimator(**extra) -> dgmm.GaussianMixture:
    return dgmm.GaussianMixture(
        FIT["n_components"],
        tol=FIT["tol"],
        max_iter=FIT["max_iter"],
        random_state=FIT["seed"],
        cache=FIT["cache"],
        **extra,
    )


def assert_same_model(model: dgmm.GaussianMixture, reference: dgmm.GaussianMixture) -> None:
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.weights_, reference.weights_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.covariances_, reference.covariances_, rtol=1e-9, atol=1e-10)
    assert model.n_iter_ == reference.n_iter_


def write_config(path: Path, **settings) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


def run_fit(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`dgmm fit ARGS` in a subprocess without any inherited Dask TLS settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    return subprocess.run(
        [BIN / "dgmm", "fit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one error line for a user error (exit code 2), without its prefix; before it only progress lines."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("dgmm fit: error: ") and [line[20:] for line in lines[:-1]] == [
        "input: files=2, rows=12000, columns=3, seed=0"
    ], proc.stderr
    return lines[-1].removeprefix("dgmm fit: error: ")


def cli_error(*args: str | Path) -> str:
    """`dgmm fit ARGS` run in this process (faster than a subprocess): its one error line, exit code 2."""
    result = CliRunner().invoke(main, ["fit", *map(str, args)])
    return one_line_error(subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr))


def test_cli_fit_over_tls_from_a_config_file_matches_an_in_process_fit(certs, tls_scheduler, data, reference, tmp_path):
    good = certs["good"]
    config = write_config(
        tmp_path / "tls.yaml",
        data=data[1],
        model=str(tmp_path / "m.npz"),
        scheduler=tls_scheduler,
        tls_ca_file=good["ca"],
        tls_cert=good["cert"],
        tls_key=good["key"],
        **FIT,
    )
    proc = run_fit("--config", config)
    assert proc.returncode == 0, proc.stderr
    assert f"cluster: scheduler={tls_scheduler}, workers=2" in proc.stderr
    assert_same_model(dgmm.load_model(tmp_path / "m.npz"), reference)


def test_cli_fit_over_tls_from_dask_environment_variables(certs, tls_scheduler, data, reference, tmp_path):
    good = certs["good"]
    env = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": good["ca"], "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": good["cert"],
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": good["key"]}  # fmt: skip
    proc = run_fit(
        data[1],
        "--scheduler",
        tls_scheduler,
        "--model",
        tmp_path / "m.npz",
        "--n-components",
        "3",
        "--tol",
        "0",
        "--max-iter",
        "5",
        "--seed",
        "0",
        "--cache",
        "none",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_model(dgmm.load_model(tmp_path / "m.npz"), reference)


def test_python_api_over_tls_with_explicit_files_and_with_dask_config(certs, tls_scheduler, data, reference):
    good = certs["good"]
    with connect(tls_scheduler, tls_ca_file=good["ca"], tls_cert=good["cert"], tls_key=good["key"]) as client:
        assert client.scheduler.address == tls_scheduler
        by_client = estimator(client=client).fit(data[1])
    settings = {"distributed.comm.tls.ca-file": good["ca"], "distributed.comm.tls.client.cert": good["cert"],
                "distributed.comm.tls.client.key": good["key"]}  # fmt: skip
    with dask.config.set(settings):
        by_address = estimator(scheduler_address=tls_scheduler).fit(data[1])
    assert_same_model(by_client, reference)
    np.testing.assert_array_equal(by_address.means_, by_client.means_)  # same chunking: bit-identical


def test_tls_scheduler_without_certificates_is_a_one_line_error(tls_scheduler, data, tmp_path):
    message = cli_error(data[1], "--scheduler", tls_scheduler, "--model", tmp_path / "m.npz")
    assert message == (
        f"scheduler {tls_scheduler}: a tls:// address needs tls_ca_file and tls_cert; set tls_ca_file, tls_cert and "
        "tls_key (config keys or --tls-* options) or Dask's distributed.comm.tls.ca-file, .client.cert, .client.key"
    )
    plain = "tcp://" + tls_scheduler.removeprefix("tls://")
    message = one_line_error(run_fit(data[1], "--scheduler", plain, "--model", tmp_path / "m.npz"))
    assert message.startswith(f"scheduler {plain}: cannot connect within 10s (")
    assert message.endswith("check the address; a TLS scheduler needs a tls:// address and tls_ca_file, tls_cert, "
                            "tls_key")  # fmt: skip
    assert not (tmp_path / "m.npz").exists()


def test_wrong_ca_fails_clearly_within_the_timeout(certs, tls_scheduler, data, tmp_path):
    good, other = certs["good"], certs["other"]
    started = time.monotonic()
    with pytest.raises(dgmm.DataError) as wrong_ca:
        connect(tls_scheduler, TIMEOUT, tls_ca_file=other["ca"], tls_cert=good["cert"], tls_key=good["key"])
    assert str(wrong_ca.value) == (
        f"scheduler {tls_scheduler}: TLS handshake failed, the scheduler's certificate is not trusted "
        "(self-signed certificate in certificate chain); set tls_ca_file to the CA that signed it"
    )
    with pytest.raises(dgmm.DataError, match=r"^scheduler tls://\S+: TLS handshake failed \(.+\); check that the "
                       r"scheduler's CA signed tls_cert and that tls_ca_file is that CA$"):  # fmt: skip
        connect(tls_scheduler, TIMEOUT, tls_ca_file=good["ca"], tls_cert=other["cert"], tls_key=other["key"])
    assert time.monotonic() - started < 10
    config = write_config(
        tmp_path / "wrong-ca.yaml",
        scheduler=tls_scheduler,
        tls_ca_file=other["ca"],
        tls_cert=good["cert"],
        tls_key=good["key"],
    )
    message = cli_error(data[1], "--config", config, "--model", tmp_path / "m.npz")
    assert message == str(wrong_ca.value)


def test_bad_tls_settings_are_config_errors_before_connecting(certs, tmp_path):
    good, other = certs["good"], certs["other"]
    address = "tls://127.0.0.1:9"  # nothing listens: every check below happens before connecting
    (tmp_path / "not.pem").write_text("hello\n")
    cases = [
        (dict(tls_ca_file=str(tmp_path / "missing.pem"), tls_cert=good["cert"], tls_key=good["key"]),
         f"tls_ca_file {tmp_path / 'missing.pem'}: cannot read the file (No such file or directory); "
         "check the path and its permissions"),
        (dict(tls_ca_file=str(tmp_path), tls_cert=good["cert"], tls_key=good["key"]),
         f"tls_ca_file {tmp_path}: cannot read the file (Is a directory); check the path and its permissions"),
        (dict(tls_ca_file=str(tmp_path / "not.pem"), tls_cert=good["cert"], tls_key=good["key"]),
         f"tls_ca_file {tmp_path / 'not.pem'}: not a PEM CA certificate"),
        (dict(tls_ca_file=good["ca"], tls_cert=good["cert"], tls_key=other["key"]),
         f"tls_cert {good['cert']} and tls_key {other['key']}: not a PEM certificate with its matching private key"),
        (dict(tls_ca_file=good["ca"]), f"scheduler {address}: a tls:// address needs tls_cert; "),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(ConfigError) as error:
            connect(address, "1s", **kwargs)
        assert str(error.value).startswith(message) and "\n" not in str(error.value)
    with pytest.raises(
        ConfigError,
        match=r"^scheduler tcp://127.0.0.1:9: tls_ca_file, tls_cert, tls_key given but "
        r"the address is not tls://; use tls://HOST:PORT for a TLS scheduler or drop the TLS settings$",
    ):
        connect("tcp://127.0.0.1:9", "1s", tls_ca_file=good["ca"], tls_cert=good["cert"], tls_key=good["key"])


def test_tls_settings_without_a_scheduler_are_refused(certs, data, tmp_path):
    message = cli_error(data[1], "--model", tmp_path / "m.npz", "--tls-ca-file", certs["good"]["ca"])
    assert message == (
        "tls_ca_file given without --scheduler; TLS settings apply only to a tls:// scheduler: "
        "add --scheduler tls://HOST:PORT or drop them"
    )


@pytest.fixture(scope="module")
def plain_scheduler(tmp_path_factory) -> str:
    """A plaintext `dask scheduler` (tcp://127.0.0.1, no workers)."""
    with dask_processes(tmp_path_factory.mktemp("plain-dask"), n_workers=0) as address:
        assert address.startswith("tcp://127.0.0.1:")
        yield address


def test_dask_tls_configuration_with_a_plaintext_address_is_refused_before_connecting(
    certs, plain_scheduler, data, tmp_path
):
    good = certs["good"]
    files = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": good["ca"], "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": good["cert"],
             "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": good["key"]}  # fmt: skip
    fit = (data[1], "--scheduler", plain_scheduler, "--model", tmp_path / "m.npz")
    assert one_line_error(run_fit(*fit, env=files)) == (
        f"scheduler {plain_scheduler}: Dask's distributed.comm.tls.ca-file, distributed.comm.tls.client.cert, "
        "distributed.comm.tls.client.key are set but the address is not tls://; use tls://HOST:PORT for a TLS "
        "scheduler or unset them (Dask config or DASK_DISTRIBUTED__COMM__* variables)"
    )
    assert one_line_error(run_fit(*fit, env={"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"})) == (
        f"scheduler {plain_scheduler}: Dask's distributed.comm.require-encryption is set but the address is not "
        "tls://; use tls://HOST:PORT for a TLS scheduler or unset it (Dask config or DASK_DISTRIBUTED__COMM__* variables)"
    )
    assert not (tmp_path / "m.npz").exists()
    for key, value in [
        ("distributed.comm.tls.client.cert", good["cert"]),
        ("distributed.comm.require-encryption", True),
    ]:
        bare = plain_scheduler.removeprefix("tcp://")  # Dask's default scheme: plaintext too
        with (
            dask.config.set({key: value}),
            pytest.raises(
                ConfigError,
                match=rf"^scheduler {bare}: Dask's {key} is "
                r"set but the address is not tls://; ",
            ),
        ):
            connect(bare, TIMEOUT)


def io_loop_threads() -> int:
    import threading

    return sum(thread.name == "IO loop" for thread in threading.enumerate())


PLAINTEXT_ANSWER = (r"TLS handshake failed, the scheduler answered in plaintext \((WRONG_VERSION_NUMBER|it sent data "
                    r"before the TLS handshake)\); check that the scheduler listens with TLS \(dask scheduler "
                    r"--tls-ca-file, --tls-cert, --tls-key\)$")  # fmt: skip


def test_tls_address_against_a_plaintext_scheduler_is_one_line_within_the_timeout(
    certs, plain_scheduler, data, tmp_path
):
    good = certs["good"]
    address = "tls://" + plain_scheduler.removeprefix("tcp://")
    proc = run_fit(data[1], "--scheduler", address, "--tls-ca-file", good["ca"], "--tls-cert", good["cert"],
                   "--tls-key", good["key"], "--model", tmp_path / "m.npz")  # fmt: skip
    assert "Traceback" not in proc.stderr and "__del__" not in proc.stderr, proc.stderr
    assert re.match(rf"scheduler {address}: {PLAINTEXT_ANSWER}", one_line_error(proc))
    assert not (tmp_path / "m.npz").exists()
    threads = io_loop_threads()
    for _ in range(5):  # the plaintext answer races tornado's start of TLS: either way the same error
        with pytest.raises(dgmm.DataError, match=rf"^scheduler {address}: {PLAINTEXT_ANSWER}"):
            connect(address, TIMEOUT, tls_ca_file=good["ca"], tls_cert=good["cert"], tls_key=good["key"])
    assert io_loop_threads() == threads  # nothing of the failed connections is left running


def test_connection_errors_name_the_plaintext_answer():
    from dgmm.execution.tls import connection_error

    # what tornado raises when the plaintext server's bytes arrive before it starts TLS
    error = connection_error("tls://h:1", TIMEOUT, ValueError("IOStream is not idle; cannot convert to SSL"))
    assert str(error) == ("scheduler tls://h:1: TLS handshake failed, the scheduler answered in plaintext (it sent "
                          "data before the TLS handshake); check that the scheduler listens with TLS (dask scheduler "
                          "--tls-ca-file, --tls-cert, --tls-key)")  # fmt: skip


def test_a_server_that_accepts_but_never_answers_fails_within_the_timeout(certs):
    good = certs["good"]
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts connections; nobody answers
        port = silent.getsockname()[1]
        with pytest.raises(dgmm.DataError, match=rf"^scheduler tcp://127.0.0.1:{port}: cannot connect within 1s \("):
            connect(f"tcp://127.0.0.1:{port}", "1s")
        with pytest.raises(dgmm.DataError, match=rf"^scheduler tls://127.0.0.1:{port}: cannot connect within 1s \("):
            connect(f"tls://127.0.0.1:{port}", "1s", tls_ca_file=good["ca"], tls_cert=good["cert"], tls_key=good["key"])
