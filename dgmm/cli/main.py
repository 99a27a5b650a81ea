"""The ``dgmm`` command line: fit, predict, score, sample, inspect, generate.

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
import logging
import os
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable

import click
import numpy as np

from .config import FIT_SETTINGS, ConfigError, Setting, read_yaml, resolve
from ..errors import ClusterError, ConvergenceWarning, DgmmError, FitError
from ..kernels.init import INIT_METHODS as INIT_CHOICES

EXIT_USER_ERROR = 2
EXIT_NOT_CONVERGED = 3
EXIT_FIT_FAILED = 4
EXIT_CLUSTER = 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Airflow, Kubernetes and systemd send), raised in the main thread and handled
    as Ctrl-C is: temporary files removed, the local cluster closed, the checkpoint kept."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the clean-up is not interrupted again
    raise Terminated()


def fail(command: str, message: str, code: int) -> None:
    click.echo(f"dgmm {command}: error: {message}", err=True)
    sys.exit(code)


def cluster_log_level() -> int:
    """What distributed may log in a command's processes: nothing but crashes (its tracebacks for
    a lost scheduler or worker, heartbeats and shutdown would bury the one-line error), or
    everything from warnings up with ``DGMM_DEBUG=1``."""
    return logging.WARNING if os.environ.get("DGMM_DEBUG") else logging.CRITICAL


def quiet_cluster_logs() -> None:
    """Apply :func:`cluster_log_level` to distributed's loggers in this process.

    After importing distributed: its import sets the levels of its own loggers from its config.
    """
    import distributed  # noqa: F401

    for name in [*logging.root.manager.loggerDict, "distributed", "tornado", "asyncio"]:
        if name.split(".")[0] in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(cluster_log_level())


def handle_errors(command: str) -> Callable:
    """Map exceptions to one stderr line and a documented exit code."""

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except FitError as exc:
                fail(command, str(exc), EXIT_FIT_FAILED)
            except ClusterError as exc:
                fail(command, str(exc), EXIT_CLUSTER)
            except DgmmError as exc:
                fail(command, str(exc), EXIT_USER_ERROR)
            except KeyboardInterrupt as exc:
                terminated = isinstance(exc, Terminated)
                click.echo(f"dgmm {command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", err=True)
                sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
            except (click.exceptions.Exit, click.ClickException, SystemExit):
                raise
            except OSError as exc:  # a path the user named cannot be read or written
                where = f"{exc.filename}: " if exc.filename else ""
                fail(command, f"{where}{exc.strerror or exc}; check the path, its permissions and free space",
                     EXIT_USER_ERROR)
            except Exception as exc:  # unexpected: one line unless debugging
                if os.environ.get("DGMM_DEBUG"):
                    raise
                fail(command, f"{type(exc).__name__}: {exc} (set DGMM_DEBUG=1 for a traceback)", 1)

        return run

    return wrap


class ProgressLog:
    """Per-iteration progress on stderr: an updating line on a terminal, else plain or JSON lines."""

    def __init__(self, log_format: str, max_iter: int = 0, stream=None):
        self.stream = stream or sys.stderr
        self.json = log_format == "json"
        self.live = not self.json and self.stream.isatty()
        self.max_iter = max_iter
        self.pending = False  # a live line waits for its newline

    def event(self, name: str, **fields: Any) -> None:
        if self.json:
            self.stream.write(json.dumps({"event": name, "time": time.time(), **fields}) + "\n")
        else:
            self.end_live()
            self.stream.write(f"{name}: " + ", ".join(f"{k}={v}" for k, v in fields.items()) + "\n")
        self.stream.flush()

    def iteration(self, report) -> None:
        rows_per_s = report.n_rows / report.seconds if report.seconds > 0 else float("inf")
        if self.json:
            self.event("iteration", iteration=report.n_iter, mean_log_likelihood=report.lower_bound,
                       change=_finite(report.change), seconds=report.seconds, rows_per_second=rows_per_s)
            return
        line = (f"iteration {report.n_iter:4d}  mean log-likelihood {report.lower_bound:.8f}  "
                f"change {report.change:+.3e}  {report.seconds:.2f} s  {rows_per_s:,.0f} rows/s")
        if self.live:
            done = min(report.n_iter / self.max_iter, 1.0) if self.max_iter else 0.0
            bar = "#" * int(24 * done) + "." * (24 - int(24 * done))
            line = f"[{bar}] {report.n_iter}/{self.max_iter}  " + line.removeprefix(f"iteration {report.n_iter:4d}  ")
        self.stream.write(("\r" + line + "\033[K") if self.live else line + "\n")
        self.pending = self.live
        self.stream.flush()

    def end_live(self) -> None:
        if self.pending:
            self.stream.write("\n")
            self.pending = False


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


@contextlib.contextmanager
def cluster_client(settings: dict, log: ProgressLog):
    """A client for ``--scheduler`` (over TLS with ``--tls-*``), else a local cluster of worker processes on 127.0.0.1."""
    from ..execution.deadlines import workers_info

    tls = {key: settings[key] for key in ("tls_ca_file", "tls_cert", "tls_key")}
    quiet_cluster_logs()
    if settings["scheduler"]:
        from ..execution.executor import connect

        with connect(settings["scheduler"], **tls) as client:
            log.event("cluster", scheduler=settings["scheduler"], workers=len(workers_info(client)))
            yield client
        return
    given = [key for key, value in tls.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)} given without --scheduler; TLS settings apply only to a tls:// "
                          "scheduler: add --scheduler tls://HOST:PORT or drop them")
    from ..execution.executor import local_cluster

    with local_cluster(settings["n_workers"], settings["memory_limit"] or "auto", cluster_log_level()) as client:
        log.event("local cluster", workers=len(workers_info(client)), dashboard=client.dashboard_link)
        yield client


def fit_options(func: Callable) -> Callable:
    """Click options generated from the shared settings schema (values merge with --config)."""
    for setting in reversed(FIT_SETTINGS):
        if setting.name != "data":
            func = setting_option(setting)(func)
    return func


def setting_option(setting: Setting) -> Callable:
    """The click option of one setting (a mapping: repeated KEY=VALUE)."""
    if setting.type is dict:
        return click.option(setting.option, setting.name, multiple=True, metavar="KEY=VALUE", help=setting.help)
    if setting.type is bool:
        return click.option(setting.option, setting.name, is_flag=True, default=None, help=setting.help)
    kind = click.Choice(setting.choices) if setting.choices else (str if setting.is_list else setting.type)
    return click.option(setting.option, setting.name, type=kind, default=None,
                        help=f"{setting.help} [default: {setting.default}]")


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


STORAGE_SETTING = next(s for s in FIT_SETTINGS if s.name == "storage_options")
STORAGE_OPTION = setting_option(STORAGE_SETTING)  # the same option on every command


def storage(values: tuple[str, ...]) -> dict | None:
    """``--storage-option KEY=VALUE`` values as fsspec's storage_options (None when none are given)."""
    return STORAGE_SETTING.convert(values, STORAGE_SETTING.option)


NAN_POLICY_OPTION = click.option(
    "--nan-policy", type=click.Choice(("raise", "drop")), default=None,
    help="rows with nulls or NaN: refuse them, or drop them [default: the model's, as fitted]")


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dgmm")
def main() -> None:
    """Gaussian mixture models fitted by exact EM on Parquet data, on Dask clusters."""


@main.command()
@click.argument("data", required=False)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML file with any of these options")
@fit_options
@handle_errors("fit")
def fit(data: str | None, config_path: str | None, **options: Any) -> None:
    """Fit a mixture to Parquet DATA and write the model (--model)."""
    from ..persist.checkpoint import Checkpoint
    from ..data.parquet import ParquetDataset
    from ..estimator.mixture import GaussianMixture
    from ..data.publish import check_destination
    from ..estimator.validation import check_n_samples, validate_params

    config = read_yaml(config_path) if config_path else {}
    settings = resolve(FIT_SETTINGS, config, {"data": data, **options}, where=config_path or "config")
    for key in ("data", "model"):
        if not settings[key]:
            raise ConfigError(f"missing {'DATA argument' if key == 'data' else '--model'}: give it on the command line or as {key!r} in --config")
    if settings["resume"] and not settings["checkpoint"]:
        raise ConfigError("--resume needs --checkpoint DIR (the directory of the interrupted fit's checkpoint)")
    storage = settings["storage_options"]
    check_destination(settings["model"], settings["overwrite"], storage)  # before work the refusal would waste
    dataset = ParquetDataset.open(settings["data"], settings["columns"], settings["chunk_rows"],
                                  settings["weight_column"], settings["nan_policy"], storage)
    model = GaussianMixture(
        settings["n_components"],
        covariance_type=settings["covariance_type"],
        tol=settings["tol"],
        reg_covar=settings["reg_covar"],
        max_iter=settings["max_iter"],
        n_init=settings["n_init"],
        init_params=settings["init"],
        split_merge=settings["split_merge"],
        random_state=settings["seed"],
        split_every=settings["split_every"],
        chunk_rows=settings["chunk_rows"],
        cache=settings["cache"],
        nan_policy=settings["nan_policy"],
        stall_timeout=settings["stall_timeout"],
        storage_options=storage,
    )
    validate_params(model)  # every check that needs no cluster runs before one starts
    check_n_samples(dataset.n_rows, model.n_components)
    log = ProgressLog(settings["log_format"], settings["max_iter"])
    log.event("input", files=len(dataset.files), rows=dataset.n_rows, columns=len(dataset.columns))
    checkpoint = Checkpoint(settings["checkpoint"], settings["resume"], storage) if settings["checkpoint"] else None
    started = time.perf_counter()
    with checkpoint.claimed() if checkpoint else contextlib.nullcontext():
        finished = False
        if checkpoint is not None:  # another run's, or one for other input or settings: refused now
            resuming = checkpoint.exists()
            finished = model.check_checkpoint(dataset, checkpoint)
            log.event("checkpoint", path=str(checkpoint.path), resuming=resuming, finished=finished)
        with (contextlib.nullcontext() if finished else cluster_client(settings, log)) as client, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.set_params(client=client).fit(dataset, on_iteration=log.iteration, checkpoint=checkpoint)
        model.set_params(client=None)
        log.end_live()
        log.event("cache", policy=settings["cache"], used=model.cache_used_)
        for i, j, k, before, after in model.split_merge_moves_:
            log.event("split-merge", merged=[i, j], split=k, mean_log_likelihood_before=before,
                      mean_log_likelihood_after=after)
        publish_model(model, settings["model"], settings["overwrite"], dataset, checkpoint)
    log.event("done", converged=model.converged_, iterations=model.n_iter_,
              mean_log_likelihood=_finite(model.lower_bound_), seconds=round(time.perf_counter() - started, 3),
              model=settings["model"])
    if not model.converged_ and model.max_iter > 0:
        click.echo(f"dgmm fit: warning: did not converge in {model.max_iter} iterations "
                   "(raise --max-iter or --tol); the model was written", err=True)
        if settings["require_convergence"]:
            sys.exit(EXIT_NOT_CONVERGED)


def publish_model(model, dest: str, overwrite: bool, dataset, checkpoint) -> None:
    """Write the fitted model; if that fails, keep it (in the checkpoint, else a file in the temporary
    directory) and say how to publish it without refitting. The checkpoint is removed once published."""
    from ..persist.model_file import save_model
    from ..data.publish import OutputExists

    try:
        save_model(model, dest, extra={"input": dataset.summary()}, overwrite=overwrite,
                   storage_options=model.storage_options)
    except OutputExists:  # the check at the start passed: another run wrote there meanwhile
        raise DgmmError(f"{dest}: appeared while this fit ran (another run writing there?) and is not replaced "
                        f"without --overwrite; the fitted model {keep_unpublished(model, dest, checkpoint)}") from None
    except (DgmmError, OSError) as exc:
        reason = str(exc).removeprefix(f"{dest}: ") if isinstance(exc, DgmmError) else f"{exc.strerror or exc}"
        raise DgmmError(f"{dest}: the fitted model could not be written ({reason}); it "
                        f"{keep_unpublished(model, dest, checkpoint)}") from None
    if checkpoint is not None:
        checkpoint.remove()


def keep_unpublished(model, dest: str, checkpoint) -> str:
    """Where the fitted model that could not be published is kept, and how to publish it (a sentence)."""
    import tempfile

    from ..persist.model_file import save_model

    if checkpoint is not None:  # it holds the finished fit
        return (f"is kept in the checkpoint {checkpoint.path}: fix that, then run the same command with --resume "
                "to write it without refitting")
    rescue = os.path.join(tempfile.gettempdir(), f"dgmm-unpublished-{os.getpid()}-{os.path.basename(dest)[:80]}")
    try:
        save_model(model, rescue)
    except (DgmmError, OSError) as exc:
        return f"could not be kept at {rescue} either ({exc}); fits with --checkpoint DIR keep their model"
    return f"is kept at {rescue}: fix that, then move it into place (mv {rescue} {dest}); no refit needed"


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--output", "-o", required=True, help="Parquet file to write")
@click.option("--proba", is_flag=True, help="also write proba_0..proba_{K-1}")
@click.option("--log-likelihood", "log_likelihood", is_flag=True, help="also write each row's log-likelihood")
@click.option("--keep-columns", default="", help="input columns to copy to the output, e.g. id")
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@NAN_POLICY_OPTION
@STORAGE_OPTION
@handle_errors("predict")
def predict(model_path: str, data: str, output: str, proba: bool, log_likelihood: bool, keep_columns: str,
            overwrite: bool, nan_policy: str | None, storage_options: tuple[str, ...]) -> None:
    """Write the most probable component of every row of DATA, in input order (null for dropped rows)."""
    from ..persist.model_file import load_model
    from ..data.outputs import predict_to_parquet

    model = load_model(model_path, storage(storage_options))
    model.set_params(nan_policy=nan_policy or model.nan_policy)
    keep = [c.strip() for c in keep_columns.split(",") if c.strip()]
    n = predict_to_parquet(model, data, output, proba=proba, log_likelihood=log_likelihood, keep_columns=keep,
                           overwrite=overwrite)
    click.echo(f"wrote {n} rows to {output}", err=True)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@NAN_POLICY_OPTION
@STORAGE_OPTION
@handle_errors("score")
def score(model_path: str, data: str, as_json: bool, nan_policy: str | None, storage_options: tuple[str, ...]) -> None:
    """Mean log-likelihood, BIC and AIC of the model on DATA (over the rows not dropped)."""
    from ..persist.model_file import load_model

    model = load_model(model_path, storage(storage_options))
    summary = model.set_params(nan_policy=nan_policy or model.nan_policy).score_summary(data)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key:20s} {value}")


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--n-samples", "-n", type=click.IntRange(min=1), required=True)
@click.option("--output", "-o", required=True, help="Parquet file to write")
@click.option("--seed", type=click.IntRange(min=0), default=None)
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@STORAGE_OPTION
@handle_errors("sample")
def sample(model_path: str, n_samples: int, output: str, seed: int | None, overwrite: bool,
           storage_options: tuple[str, ...]) -> None:
    """Draw rows from the model; columns are its features plus `component`."""
    import pyarrow as pa

    from ..persist.model_file import load_model
    from ..data.outputs import check_destination, write_table

    options = storage(storage_options)
    model = load_model(model_path, options)
    check_destination(output, overwrite, options)
    X, labels = model.set_params(random_state=seed).sample(n_samples)
    names = getattr(model, "feature_names_in_", None)
    names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
    table = pa.table({**{n: X[:, j] for j, n in enumerate(names)}, "component": labels})
    write_table(table, output, overwrite, storage_options=options)
    click.echo(f"wrote {n_samples} rows to {output}", err=True)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@STORAGE_OPTION
@handle_errors("inspect")
def inspect(model_path: str, as_json: bool, storage_options: tuple[str, ...]) -> None:
    """Weights, means, covariance summaries, convergence and the input fingerprint of a model."""
    from ..persist.model_file import load_model_with_metadata

    model, metadata = load_model_with_metadata(model_path, storage(storage_options))
    components = []
    for k, cov in enumerate(model._params().dense_covariances):
        eig = np.linalg.eigvalsh(cov)
        components.append({
            "weight": float(model.weights_[k]),
            "mean": model.means_[k].tolist(),
            "variances": np.diag(cov).tolist(),
            "log_det_covariance": float(np.sum(np.log(eig))),
            "condition_number": float(eig[-1] / eig[0]),
        })
    report = {
        "covariance_type": model.covariance_type,
        "n_components": model.n_components,
        "n_features": model.n_features_in_,
        "feature_names": list(getattr(model, "feature_names_in_", [])),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "mean_log_likelihood": _finite(model.lower_bound_),
        "components": components,
        "input": metadata.get("extra", {}).get("input"),
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{model.n_components} components, {model.covariance_type} covariances, {model.n_features_in_} features "
               f"({', '.join(report['feature_names']) or 'unnamed'})")
    click.echo(f"converged: {report['converged']} after {report['n_iter']} iterations, "
               f"mean log-likelihood {report['mean_log_likelihood']}")
    with np.printoptions(precision=4, suppress=True):
        for k, c in enumerate(components):
            click.echo(f"  component {k}: weight {c['weight']:.4f}  mean {np.array(c['mean'])}  "
                       f"variances {np.array(c['variances'])}  condition {c['condition_number']:.3g}")
    if report["input"]:
        source = report["input"]
        n_files = source["n_files"] if "n_files" in source else len(source.get("files", []))  # older files list them
        click.echo(f"input: {source['n_rows']} rows in {n_files} files, columns {', '.join(source['columns'])}")


@main.command()
@click.option("--n-samples", "-n", type=click.IntRange(min=1), required=True)
@click.option("--n-features", "-d", type=click.IntRange(min=1), required=True)
@click.option("--n-components", "-k", type=click.IntRange(min=1), required=True)
@click.option("--output", "-o", required=True, help="directory to write the Parquet files to")
@click.option("--seed", type=click.IntRange(min=0), default=0)
@click.option("--row-group-size", type=click.IntRange(min=1), default=65_536)
@click.option("--n-files", type=click.IntRange(min=1), default=1)
@click.option("--overwrite", is_flag=True, help="replace an existing output directory")
@handle_errors("generate")
def generate(n_samples: int, n_features: int, n_components: int, output: str, seed: int,
             row_group_size: int, n_files: int, overwrite: bool) -> None:
    """Synthetic mixture data as Parquet (columns x0..x{d-1}), written in blocks."""
    from ..data.synthetic import write_mixture_parquet

    write_mixture_parquet(output, n_samples, n_features, n_components, seed=seed,
                          row_group_size=row_group_size, n_files=n_files, overwrite=overwrite)
    click.echo(f"wrote {n_samples} rows x {n_features} features ({n_components} components) to {output}", err=True)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", required=False)
@click.option("--output", "-o", required=True, help="PNG file to write")
@click.option("--sample-rows", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="rows of DATA to draw (from randomly chosen row groups)")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="seed of the row sample")
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@STORAGE_OPTION
@handle_errors("plot")
def plot(model_path: str, data: str | None, output: str, sample_rows: int, seed: int, overwrite: bool,
         storage_options: tuple[str, ...]) -> None:
    """Plot the convergence curve and the components (over a sample of DATA) as a PNG."""
    from ..errors import DataError
    from ..persist.model_file import load_model
    from ..data.outputs import check_destination
    from ..estimator.plots import plot_model, sample_rows as read_sample

    options = storage(storage_options)
    model = load_model(model_path, options)
    if not output.lower().endswith(".png"):
        raise ConfigError(f"{output}: --output must be a .png file")
    check_destination(output, overwrite, options)
    X = None
    if data is not None:
        names = getattr(model, "feature_names_in_", None)
        X = read_sample(data, list(names) if names is not None else None, sample_rows, seed=seed, storage_options=options)
        if X.shape[1] != model.n_features_in_:
            raise DataError(f"{data}: input has {X.shape[1]} feature columns, the model expects {model.n_features_in_}")
    plot_model(model, X, output, overwrite, options)
    click.echo(f"wrote {output}", err=True)


def _int_list(text: str) -> list[int]:
    """"1-10" or "2,4,8" -> a list of ints (ConfigError otherwise)."""
    values: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            values.extend(range(int(low), int(high) + 1) if high else [int(low)])
    except ValueError:
        raise ConfigError(f"--n-components {text!r}: expected integers like 1-10 or 2,4,8") from None
    if not values or min(values) < 1:
        raise ConfigError(f"--n-components {text!r}: expected integers >= 1, like 1-10 or 2,4,8")
    return values


@main.command("select")
@click.argument("data")
@click.option("--n-components", "n_components", default="1-10", show_default=True, help="K to try: 1-10 or 2,4,8")
@click.option("--covariance-types", default="full", show_default=True, help="comma-separated covariance types")
@click.option("--criterion", type=click.Choice(("bic", "aic", "heldout")), default="bic", show_default=True)
@click.option("--heldout-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True,
              help="rows held out (by a hash of the row index) for the held-out log-likelihood")
@click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--init", "init_params", type=click.Choice(INIT_CHOICES), default="kmeans", show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0.0), default=1e-3, show_default=True)
@click.option("--split-merge", type=click.IntRange(min=0), default=0, show_default=True,
              help="split/merge moves tried per round after each cell's EM (0: none)")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--columns", default=None, help="feature columns (default: all)")
@click.option("--weight-column", default=None, help="column of per-row weights >= 0")
@click.option("--nan-policy", type=click.Choice(("raise", "drop")), default="raise", show_default=True)
@click.option("--scheduler", default=None, help="address of a running Dask scheduler (default: a local cluster)")
@click.option("--n-workers", type=click.IntRange(min=1), default=None, help="worker processes of the local cluster")
@click.option("--model", default=None, help="write the best model here (.npz)")
@click.option("--overwrite", is_flag=True, help="replace an existing model file")
@click.option("--json", "as_json", is_flag=True, help="print the table as JSON")
@STORAGE_OPTION
@handle_errors("select")
def select_command(data: str, n_components: str, covariance_types: str, criterion: str, heldout_fraction: float,
                   n_init: int, init_params: str, max_iter: int, tol: float, split_merge: int, seed: int,
                   columns: str | None,
                   weight_column: str | None, nan_policy: str, scheduler: str | None, n_workers: int | None,
                   model: str | None, overwrite: bool, as_json: bool, storage_options: tuple[str, ...]) -> None:
    """Fit every (K, covariance type) of a grid on DATA sharing each pass; print the table, save the best."""
    from ..data.parquet import ParquetDataset
    from ..persist.model_file import save_model
    from ..data.outputs import check_destination
    from ..estimator.select import select

    ks = _int_list(n_components)
    types = [t.strip() for t in covariance_types.split(",") if t.strip()]
    options = storage(storage_options)
    if model:
        check_destination(model, overwrite, options)
    dataset = ParquetDataset.open(data, [c.strip() for c in columns.split(",")] if columns else None, None,
                                  weight_column, nan_policy, options)
    log = ProgressLog("text")
    settings = {"scheduler": scheduler, "n_workers": n_workers, "memory_limit": None,
                "tls_ca_file": None, "tls_cert": None, "tls_key": None}
    with cluster_client(settings, log) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = select(dataset, ks, types, criterion=criterion, heldout_fraction=heldout_fraction, n_init=n_init,
                        init_params=init_params, tol=tol, max_iter=max_iter, split_merge=split_merge,
                        random_state=seed,
                        nan_policy=nan_policy, client=client)
    if as_json:
        click.echo(json.dumps({"criterion": criterion, "best": {"n_components": result.best.n_components,
                               "covariance_type": result.best.covariance_type}, "passes": result.passes,
                               "table": [{k: _finite(v) if isinstance(v, float) else v for k, v in row.items()}
                                         for row in result.table]}))
    else:
        click.echo(result.format())
        click.echo(f"best by {criterion}: n_components={result.best.n_components}, "
                   f"covariance_type={result.best.covariance_type} ({result.passes} passes over the data)")
    if model:
        save_model(result.best, model, extra={"input": dataset.summary(), "selection": criterion}, overwrite=overwrite,
                   storage_options=options)
        click.echo(f"wrote {model}", err=True)


if __name__ == "__main__":
    main()
