"""TLS to a remote Dask scheduler: the client's ``distributed.Security``, checked before connecting.

The CA file, client certificate and key come from explicit settings (``tls_ca_file``,
``tls_cert``, ``tls_key``: config keys, ``--tls-*`` options or :func:`dgmm.execution.connect`
arguments) and, for whatever is not given, from Dask's own configuration
(``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``, e.g. through
``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``). Every problem found before or during the handshake is
one line naming the setting, the file or the address, and what to do.

Nothing falls back to plaintext: a non-``tls://`` address is refused while Dask's configuration
holds client TLS files or ``distributed.comm.require-encryption``. :func:`open_client` first
makes one connection and handshake of its own, bounded by the connect timeout, and only then
builds the ``distributed.Client``; a Client whose start fails anyway is closed at once.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from typing import Any

from ..errors import ConfigError, DataError

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


def client_security(
    address: str, tls_ca_file: str | None = None, tls_cert: str | None = None, tls_key: str | None = None
) -> Any:
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
        dask_tls = _dask_tls_settings()
        if dask_tls:
            one = len(dask_tls) == 1
            raise ConfigError(
                f"scheduler {address}: Dask's {', '.join(dask_tls)} {'is' if one else 'are'} set but the "
                f"address is not tls://; use tls://HOST:PORT for a TLS scheduler or unset "
                f"{'it' if one else 'them'} (Dask config or DASK_DISTRIBUTED__COMM__* variables)"
            )
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


def _dask_tls_settings() -> list[str]:
    """The Dask settings that ask a client for TLS: its files, and require-encryption (truthy, as Dask reads it)."""
    import dask

    keys = [*_DASK_KEYS.values(), "distributed.comm.require-encryption"]
    return [key for key in keys if dask.config.get(key, None)]


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
        raise ConfigError(
            f"{_origin('tls_ca_file', explicit)} {_short(ca)}: not a PEM CA certificate "
            f"({_reason(exc)}); give the CA that signed the scheduler's certificate"
        ) from None
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


# OpenSSL's reasons when the bytes received are not TLS at all (a plaintext server answered)
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
)


def connection_error(address: str, timeout: str, exc: BaseException) -> DataError:
    """The one-line DataError for a failed connection to ``address``."""
    cause = _ssl_cause(exc)
    detail = " ".join(str(exc).split())[:200]
    if isinstance(cause, ssl.SSLCertVerificationError):
        return DataError(f"scheduler {address}: TLS handshake failed, the scheduler's certificate is not trusted "
                         f"({_reason(cause)}); set tls_ca_file to the CA that signed it")  # fmt: skip
    # tornado refuses to start TLS on a stream that has already received bytes: the server spoke first, unencrypted
    spoke_first = isinstance(exc, ValueError) and "cannot convert to SSL" in detail
    if is_tls(address) and (spoke_first or (cause is not None and any(r in _reason(cause) for r in _NOT_TLS))):
        reason = "it sent data before the TLS handshake" if spoke_first else _reason(cause)
        return DataError(f"scheduler {address}: TLS handshake failed, the scheduler answered in plaintext ({reason}); "
                         "check that the scheduler listens with TLS (dask scheduler --tls-ca-file, --tls-cert, "
                         "--tls-key)")  # fmt: skip
    if cause is not None or "SSL" in detail or "TLS" in detail:
        return DataError(f"scheduler {address}: TLS handshake failed ({_reason(cause) if cause else detail}); "
                         "check that the scheduler's CA signed tls_cert and that tls_ca_file is that CA")  # fmt: skip
    hint = "check the address"
    if not is_tls(address) and ("reset" in detail.lower() or "closed" in detail.lower()):
        hint = "check the address; a TLS scheduler needs a tls:// address and tls_ca_file, tls_cert, tls_key"
    what = f"{type(exc).__name__}: {detail}" if detail else f"{type(exc).__name__}, no answer"
    return DataError(f"scheduler {address}: cannot connect within {timeout} ({what}); {hint}")


def open_client(address: str, timeout: str, security: Any) -> Any:
    """A ``distributed.Client`` of ``address``, or a one-line DataError within ``timeout``.

    1. One connection and Dask handshake of our own (``distributed.comm.connect``, the Client's own
       connection arguments) on a private IO loop, cut off after ``timeout``: an unreachable
       scheduler, a failed TLS handshake, or a server that never answers fails here, before any
       Client exists. (``Client(timeout=...)`` bounds the TCP and TLS connect only, and a
       constructor that fails otherwise, e.g. tornado's ValueError when a plaintext server
       answers a tls:// connection, leaves a half-started Client whose ``__del__`` later waits
       twice the timeout on a stopped loop.)
    2. The Client itself; should it still fail, it is closed here, its IO loop thread stopped.
    """
    from dask.utils import parse_timedelta
    from distributed import Client, Security
    from distributed.comm import connect as comm_connect
    from distributed.utils import LoopRunner, sync

    seconds = parse_timedelta(timeout, "s")
    connection_args = (security or Security()).get_connection_args("client")

    async def handshake() -> None:
        comm = await comm_connect(address, timeout=seconds, **connection_args)
        await comm.close()

    error = None
    runner = LoopRunner()  # a thread of its own, stopped (joined) below
    runner.start()
    try:
        sync(runner.loop, handshake, callback_timeout=seconds)
    except Exception as exc:  # any failure to connect, whatever layer raises it (raised below, outside the
        error = connection_error(address, timeout, exc)  # except: no __context__ keeps the failed objects alive)
    finally:
        runner.stop()
    if error is not None:
        raise error

    client = Client.__new__(Client)  # in two steps: a Client whose constructor fails is still at hand to close
    try:
        client.__init__(address, timeout=timeout, set_as_default=False, security=security)
    except Exception as exc:
        error = connection_error(address, timeout, exc)
    else:
        return client
    _discard(client)
    raise error


def _discard(client: Any) -> None:
    """Close a Client whose start failed, now and quietly, and stop its IO loop thread.

    distributed closes a Client whose connect raised OSError but leaves its loop thread running,
    and does not close one that failed otherwise (its ``__del__`` would then wait on the loop).
    """
    with contextlib.suppress(Exception):
        client.close(timeout=2)
    with contextlib.suppress(Exception):
        client._loop_runner.stop()
    with contextlib.suppress(Exception):
        client.status = "closed"  # nothing is left to close: a later close() or __del__ returns at once
