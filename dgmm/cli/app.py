"""The ``dgmm`` command line: fit, predict, score, impute, sample, inspect, generate.

Exit codes: 0 success; 2 user error (bad option, config, input or model file);
3 the fit ended at max_iter without converging and ``--require-convergence`` was
given; 4 the fit failed numerically (see the message); 5 the cluster could not
run the fit (no running worker for --stall-timeout seconds, workers killed again
and again, the scheduler lost: the checkpoint is kept, --resume continues);
1 any other failure; 130 interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM).
Errors are one line on stderr, without a traceback (set ``DGMM_DEBUG=1`` to get one
for unexpected failures).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable

import click
import numpy as np

from ..errors import ClusterError, ConfigError, DgmmError, FitError, InputChanged, command_line
from ..estimator.parameters import BY_NAME, Parameter
from ..execution.clusters import cluster_log_level, quiet_cluster_logs
from .config import read_yaml, resolve

EXIT_USER_ERROR = 2
EXIT_NOT_CONVERGED = 3
EXIT_FIT_FAILED = 4
EXIT_CLUSTER = 5
EXIT_INPUT_CHANGED = 6  # not the user's error: another job wrote to the input; a scheduler may retry later
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Airflow, Kubernetes and systemd send), raised in the main thread and handled
    as Ctrl-C is: temporary files removed, the local cluster closed, the checkpoint kept."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the clean-up is not interrupted again
    raise Terminated()


def fail(command: str, message: str, code: int) -> None:
    end_live_lines()
    click.echo(f"dgmm {command}: error: {message}", err=True)
    sys.exit(code)


def show_warning(command: str, message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """A Python warning as one stderr line, as errors are (``warnings.showwarning`` for the commands)."""
    click.echo(f"dgmm {command}: warning: {message}", err=True)


def debug() -> bool:
    """``DGMM_DEBUG=1``: tracebacks for unexpected failures, and distributed's own logs."""
    return bool(os.environ.get("DGMM_DEBUG"))


def handle_errors(command: str) -> Callable:
    """Map exceptions to one stderr line and a documented exit code."""

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                with warnings.catch_warnings(), command_line():
                    warnings.showwarning = functools.partial(show_warning, command)
                    return func(*args, **kwargs)
            except FitError as exc:
                fail(command, str(exc), EXIT_FIT_FAILED)
            except ClusterError as exc:
                fail(command, str(exc), EXIT_CLUSTER)
            except InputChanged as exc:
                fail(command, str(exc), EXIT_INPUT_CHANGED)
            except DgmmError as exc:
                fail(command, str(exc), EXIT_USER_ERROR)
            except KeyboardInterrupt as exc:
                terminated = isinstance(exc, Terminated)
                end_live_lines()  # the message starts a line of its own, not the end of the progress bar's
                click.echo(f"dgmm {command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", err=True)
                sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
            except (click.exceptions.Exit, click.ClickException, SystemExit):
                raise
            except OSError as exc:  # a path the user named cannot be read or written
                where = f"{exc.filename}: " if exc.filename else ""
                fail(
                    command,
                    f"{where}{exc.strerror or exc}; check the path, its permissions and free space",
                    EXIT_USER_ERROR,
                )
            except Exception as exc:  # unexpected: one line unless debugging
                if os.environ.get("DGMM_DEBUG"):
                    raise
                fail(command, f"{type(exc).__name__}: {exc} (set DGMM_DEBUG=1 for a traceback)", 1)

        return run

    return wrap


_LIVE_LOGS: list["ProgressLog"] = []  # logs whose live line may wait for its newline


def end_live_lines() -> None:
    """End any progress bar's line, so the next message starts a line of its own."""
    for log in _LIVE_LOGS:
        log.end_live()


class ProgressLog:
    """Per-iteration progress on stderr: an updating line on a terminal, else plain or JSON lines.

    A log whose reader went away (``dgmm fit ... 2>&1 | head -3``) stops writing and the run goes on:
    a closed pipe must not cost the fit its model. The stream's descriptor is pointed at /dev/null, so
    later messages and the interpreter's last flush do not fail on it either.
    """

    def __init__(self, log_format: str, max_iter: int = 0, stream=None):
        self.stream = stream or sys.stderr
        self.json = log_format == "json"
        self.live = not self.json and self.stream.isatty()
        self.max_iter = max_iter
        self.pending = False  # a live line waits for its newline
        self.closed = False
        if self.live:
            _LIVE_LOGS.append(self)

    def write(self, text: str) -> None:
        """Write and flush ``text``; on a closed pipe, stop writing for good (see the class)."""
        if self.closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed here
            self.closed = True
            silence(self.stream)

    def event(self, name: str, **fields: Any) -> None:
        if self.json:
            self.write(json.dumps({"event": name, "time": time.time(), **fields}) + "\n")
        else:
            self.end_live()
            self.write(stamp() + f"{name}: " + ", ".join(f"{k}={v}" for k, v in fields.items()) + "\n")

    def iteration(self, report) -> None:
        rows_per_s = report.n_rows / report.seconds if report.seconds > 0 else float("inf")
        if self.json:
            self.event(
                "iteration",
                iteration=report.n_iter,
                mean_log_likelihood=report.lower_bound,
                change=finite(report.change),
                seconds=report.seconds,
                rows_per_second=rows_per_s,
            )
            return
        line = (
            f"iteration {report.n_iter:4d}  mean log-likelihood {report.lower_bound:.8f}  "
            f"change {report.change:+.3e}  {report.seconds:.2f} s  {rows_per_s:,.0f} rows/s"
        )
        if self.live:
            done = min(report.n_iter / self.max_iter, 1.0) if self.max_iter else 0.0
            bar = "#" * int(24 * done) + "." * (24 - int(24 * done))
            line = f"[{bar}] {report.n_iter}/{self.max_iter}  " + line.removeprefix(f"iteration {report.n_iter:4d}  ")
        self.write(("\r" + line + "\033[K") if self.live else stamp() + line + "\n")
        self.pending = self.live

    def end_live(self) -> None:
        if self.pending:
            self.pending = False
            self.write("\n")


def say(text: str) -> None:
    """A command's result on stdout; a reader that went away (``| head``) ends the output, not the run."""
    try:
        click.echo(text)
        sys.stdout.flush()
    except BrokenPipeError:
        silence(sys.stdout)


def silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (a pipe whose reader has gone)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no descriptor (a StringIO): nothing more is written to it
        pass


@contextlib.contextmanager
def events_to(log: ProgressLog):
    """While inside, dgmm's log records that carry an event (where the data went, each initialisation
    pass) are written to ``log`` as they happen."""
    import logging

    from ..estimator.runtime import EVENT

    class Events(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = getattr(record, EVENT, None)
            if event is not None:
                log.event(event[0], **event[1])

    logger, handler = logging.getLogger("dgmm"), Events()
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def stamp() -> str:
    """Local date and time at the start of a text log line (scheduled runs' logs are read afterwards)."""
    return time.strftime("%Y-%m-%d %H:%M:%S ")


def finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


@contextlib.contextmanager
def cluster_client(settings: dict, log: ProgressLog, device: str = "cpu", nbytes: int | None = None):
    """A client for ``--scheduler`` (over TLS with ``--tls-*``); else None, the fit running in this process,
    when the data (``nbytes`` as float64) fits here (:func:`~dgmm.execution.executor.fits_in_process`) and
    neither --n-workers nor --memory-limit asks for a cluster; else a local cluster of worker processes on
    127.0.0.1: one per GPU when ``device`` (a mixture's --device) resolves to one, else one per core."""
    from ..execution.deadlines import workers_info

    tls = {key: settings[key] for key in ("tls_ca_file", "tls_cert", "tls_key")}
    if settings["scheduler"]:
        quiet_cluster_logs(debug())
        from ..execution import connect

        with connect(settings["scheduler"], **tls) as client:
            log.event(
                "cluster",
                scheduler=settings["scheduler"],
                workers=len(workers_info(client)),
                dashboard=client.dashboard_link,
            )
            yield client
        return
    given = [key for key, value in tls.items() if value]
    if given:
        raise ConfigError(
            f"{', '.join(given)} given without --scheduler; TLS settings apply only to a tls:// "
            "scheduler: add --scheduler tls://HOST:PORT or drop them"
        )
    from ..data.devices import device_target
    from ..execution import local_cluster
    from ..execution.executor import fits_in_process

    target = device_target(device)
    wants_cluster = settings["n_workers"] or settings["memory_limit"]
    if target is None and not wants_cluster and nbytes is not None and fits_in_process(nbytes, settings["cache"]):
        log.event(
            "in process",
            data_mib=round(nbytes / 2**20, 1),
            why="the data fits in memory here (--n-workers N starts a local cluster)",
        )
        yield None
        return
    quiet_cluster_logs(debug())  # imports distributed: only where a cluster is used
    with local_cluster(
        settings["n_workers"], settings["memory_limit"] or "auto", cluster_log_level(debug()), target
    ) as client:
        log.event(
            "local cluster",
            workers=len(workers_info(client)),
            **({"device": str(target)} if target else {}),
            dashboard=client.dashboard_link,
        )
        yield client


def settings_command(settings: tuple[Parameter, ...], command: str) -> Callable:
    """A command taking DATA, ``--config FILE`` and one option per setting; it is called with the
    resolved settings (defaults < the config file < the options given) and its errors are one line."""

    def decorate(func: Callable[[dict[str, Any]], Any]) -> Callable:
        @functools.wraps(func)
        @handle_errors(command)
        def run(data: str | None, config_path: str | None, **given: Any) -> Any:
            config = read_yaml(config_path) if config_path else {}
            resolved = resolve(settings, config, {"data": data, **given}, where=config_path or "config")
            if not resolved["data"]:
                raise ConfigError("missing DATA argument: give it on the command line or as 'data' in --config")
            return func(resolved)

        for setting in reversed(settings):
            if setting.name != "data":
                run = setting_option(setting)(run)
        run = click.option(
            "--config", "config_path", type=click.Path(dir_okay=False), help="YAML file with any of these options"
        )(run)
        return click.argument("data", required=False)(run)

    return decorate


def setting_option(setting: Parameter) -> Callable:
    """The click option of one setting (a mapping: repeated KEY=VALUE)."""
    if setting.type is dict:
        return click.option(setting.option, setting.key, multiple=True, metavar="KEY=VALUE", help=setting.help)
    if setting.type is bool:
        return click.option(setting.option, setting.key, is_flag=True, default=None, help=setting.help)
    kind = click.Choice(setting.choices) if setting.choices else (str if setting.is_list else setting.type)
    shown = "" if setting.default is None else f" [default: {setting.default}]"
    return click.option(setting.option, setting.key, type=kind, default=None, help=setting.help + shown)


class OneLineErrors(click.Group):
    """A click group whose usage errors are one stderr line (exit 2), like every other user error."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            ctx = exc.ctx
            name = ctx.info_name if ctx is not None and ctx.parent is not None else None
            where = f"dgmm {name}" if name else "dgmm"
            click.echo(f"{where}: error: {exc.format_message()} (see {where} --help)", err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.ClickException as exc:
            click.echo(f"dgmm: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            terminated = isinstance(exc.__context__, Terminated)
            click.echo(f"dgmm: {'terminated (SIGTERM)' if terminated else 'interrupted'}", err=True)
            sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


STORAGE_SETTING = BY_NAME["storage_options"]
STORAGE_OPTION = setting_option(STORAGE_SETTING)  # the same option on every command


def storage(values: tuple[str, ...]) -> dict | None:
    """``--storage-option KEY=VALUE`` values as fsspec's storage_options (None when none are given)."""
    return STORAGE_SETTING.convert(values, STORAGE_SETTING.option)


COLUMNS_OPTION = click.option(
    "--columns",
    default=None,
    metavar="A,B,...",
    help="feature columns of DATA, for a model fitted without feature names (NumPy) [default: the model's "
    "feature names, else every column]",
)


def feature_columns(text: str | None) -> list[str] | None:
    """``--columns a,b`` (or ``--features a,b``) as a list (None when not given)."""
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


NAN_POLICY_OPTION = click.option(
    "--nan-policy",
    type=click.Choice(BY_NAME["nan_policy"].choices),
    default=None,
    help="rows with nulls or NaN: refuse them, drop them, or score their observed values (marginalize) "
    "[default: the model's, as fitted]",
)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dgmm")
def main() -> None:
    """Gaussian mixture models fitted by exact EM on Parquet data, on Dask clusters."""
