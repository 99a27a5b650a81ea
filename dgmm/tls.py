"""TLS to a remote Dask scheduler: the client's ``distributed.Security``, checked before connecting.

The CA file, client certificate and key come from explicit settings (``tls_ca_file``,
``tls_cert``, ``tls_key``: config keys, ``--tls-*`` options or :func:`dgmm.execution.connect`
arguments) and, for whatever is not given, from Dask's own configuration
(``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``, e.g. through
``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``). Every problem found before or during the handshake is
one line naming the setting, the file or the address, and what to do.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from .config import ConfigError
from .errors import DataError

TLS_SETTINGS = ("tls_ca_file", "tls_cert", "tls_key")
_DASK_KEYS = {
    "tls_ca_file": "distributed.comm.tls.ca-file",
    "tls_cert": "distributed.comm.tls.client.cert",
    "tls_key": "distributed.comm.tls.client.key",
}
_SECURITY_FIELDS = {"tls_ca_file": "tls_ca_file", "tls_cert": "tls_client_cert", "tls_key": "tls_client_key"}


def is_tls(address: str) -> bool:
    """Whether ``address`` is a ``tls://`` scheduler address."""
    return address.strip().lower().startswith("tls://")


def client_security(address: str, tls_ca_file: str | None = None, tls_cert: str | None = None,
                    tls_key: str | None = None) -> Any:
    """The ``distributed.Security`` a client of ``address`` uses, or None for Dask's default.

    Explicit files win over Dask's configuration. Raises ConfigError when TLS files are given for
    a non-``tls://`` address, or when a ``tls://`` address lacks a CA or certificate, or a file is
    missing, unreadable or not PEM.
    """
    explicit = {name: os.path.expanduser(os.fspath(value)) for name, value in
                zip(TLS_SETTINGS, (tls_ca_file, tls_cert, tls_key)) if value}  # fmt: skip
    if not is_tls(address):
        if explicit:
            raise ConfigError(f"scheduler {address}: {', '.join(explicit)} given but the address is not tls://; "
                              "use tls://HOST:PORT for a TLS scheduler or drop the TLS settings")  # fmt: skip
        return None
    from distributed import Security

    fields = {_SECURITY_FIELDS[name]: value for name, value in explicit.items()}
    security = Security(**fields, require_encryption=True) if explicit else Security()
    files = {name: getattr(security, _SECURITY_FIELDS[name]) for name in TLS_SETTINGS}
    missing = [name for name in ("tls_ca_file", "tls_cert") if not files[name]]
    if missing:
        raise ConfigError(
            f"scheduler {address}: a tls:// address needs {' and '.join(missing)}; set tls_ca_file, tls_cert and "
            "tls_key (config keys or --tls-* options) or Dask's distributed.comm.tls.ca-file, .client.cert, .client.key"
        )
    check_files(files, explicit)
    return security


def _origin(name: str, explicit: dict[str, str]) -> str:
    """How a TLS setting is called where it came from: the dgmm key or the Dask config key."""
    return name if name in explicit else _DASK_KEYS[name]


def check_files(files: dict[str, str | None], explicit: dict[str, str]) -> None:
    """Each file readable, the CA a PEM certificate, and the certificate and key a PEM pair."""
    paths = {name: value for name, value in files.items() if value and "\n" not in value}  # else PEM text itself
    for name, path in paths.items():
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            raise ConfigError(f"{_origin(name, explicit)} {path}: cannot read the file ({exc.strerror or exc}); "
                              "check the path and its permissions") from None  # fmt: skip
    ca, cert, key = (files[name] for name in TLS_SETTINGS)
    try:
        context = ssl.create_default_context(**({"cadata": ca} if "\n" in ca else {"cafile": ca}))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{_origin('tls_ca_file', explicit)} {_short(ca)}: not a PEM CA certificate "
                          f"({_reason(exc)}); give the CA that signed the scheduler's certificate") from None
    if "\n" in cert or (key and "\n" in key):
        return  # in-memory PEM text: Dask itself writes it to temporary files
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        names = " and ".join(f"{_origin(n, explicit)} {files[n]}" for n in ("tls_cert", "tls_key") if files[n])
        raise ConfigError(f"{names}: not a PEM certificate with its matching private key ({_reason(exc)}); "
                          "give the client certificate and key signed by the cluster's CA") from None  # fmt: skip


def _short(value: str) -> str:
    """A file name, or a placeholder for in-memory PEM text."""
    return "(PEM text)" if "\n" in value else value


def _reason(exc: BaseException) -> str:
    """The one-line gist of an SSL or connection error."""
    text = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:200]


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind a Dask connection error, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def connection_error(address: str, timeout: str, exc: BaseException) -> DataError:
    """The one-line DataError for a failed connection to ``address``."""
    cause = _ssl_cause(exc)
    detail = " ".join(str(exc).split())[:200]
    if isinstance(cause, ssl.SSLCertVerificationError):
        return DataError(f"scheduler {address}: TLS handshake failed, the scheduler's certificate is not trusted "
                         f"({_reason(cause)}); set tls_ca_file to the CA that signed it")  # fmt: skip
    if cause is not None or "SSL" in detail or "TLS" in detail:
        return DataError(f"scheduler {address}: TLS handshake failed ({_reason(cause) if cause else detail}); "
                         "check that the scheduler's CA signed tls_cert and that tls_ca_file is that CA")  # fmt: skip
    hint = "check the address"
    if not is_tls(address) and ("reset" in detail.lower() or "closed" in detail.lower()):
        hint = "check the address; a TLS scheduler needs a tls:// address and tls_ca_file, tls_cert, tls_key"
    return DataError(f"scheduler {address}: cannot connect within {timeout} ({type(exc).__name__}: {detail}); {hint}")
