"""``dgmm fit`` and ``dgmm select``: fit on Parquet data on a cluster, publish the model."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from typing import Any

import click
import numpy as np

from ..errors import ConfigError, ConvergenceWarning, DgmmError
from .app import EXIT_NOT_CONVERGED, ProgressLog, cluster_client, events_to, finite, main, say, settings_command
from .config import FIT_SETTINGS, SELECT_SETTINGS, SET_BY_SELECT, estimator_parameters


@main.command()
@settings_command(FIT_SETTINGS, "fit")
def fit(settings: dict[str, Any]) -> None:
    """Fit a mixture to Parquet DATA and write the model (--model)."""
    from ..data.devices import device_target
    from ..data.labels import check_label_column
    from ..data.parquet import ParquetDataset
    from ..data.publish import check_destination
    from ..estimator.mixture import GaussianMixture
    from ..estimator.parameters import check_n_samples, validate_params
    from ..persist.checkpoint import Checkpoint

    if not settings["model"]:
        raise ConfigError("missing --model: give it on the command line or as 'model' in --config")
    if settings["resume"] and not settings["checkpoint"]:
        raise ConfigError("--resume needs --checkpoint DIR (the directory of the interrupted fit's checkpoint)")
    storage = settings["storage_options"]
    check_destination(settings["model"], settings["overwrite"], storage)  # before work the refusal would waste
    label = settings["label_column"]
    if label:
        if settings["checkpoint"]:
            raise ConfigError(
                "--checkpoint applies to a single mixture; a classifier (--label-column) is fitted without one"
            )
        check_label_column(settings["data"], label, storage)
    if settings["cmvn"]:
        check_label_column(settings["data"], settings["cmvn"], storage)
    excluded = settings["exclude_columns"]
    if not settings["columns"]:  # the label and group columns are never features
        excluded = [*(excluded or []), *(c for c in (label, settings["cmvn"]) if c)] or excluded
    dataset = ParquetDataset.open(
        settings["data"],
        settings["columns"],
        settings["chunk_rows"],
        settings["weight_column"],
        settings["nan_policy"],
        storage,
        excluded,
        version=settings["table_version"],
        as_of=settings["as_of"],
    )
    if label:
        return fit_classifier(settings, dataset)
    model = GaussianMixture(**estimator_parameters(settings))
    validate_params(model)  # every check that needs no cluster runs before one starts
    device_target(model.device)  # device="cuda" without a GPU is refused before a cluster starts
    check_n_samples(dataset.n_rows, model.n_components)
    log = ProgressLog(settings["log_format"], settings["max_iter"])
    log.event(
        "input", files=len(dataset.files), rows=dataset.n_rows, columns=len(dataset.columns), seed=settings["seed"]
    )
    checkpoint = Checkpoint(settings["checkpoint"], settings["resume"], storage) if settings["checkpoint"] else None
    started = time.perf_counter()
    with checkpoint.claimed() if checkpoint else contextlib.nullcontext():
        finished = False
        if checkpoint is not None:  # another run's, or one for other input or settings: refused now
            resuming = checkpoint.exists()
            finished = model.check_checkpoint(dataset, checkpoint)
            log.event("checkpoint", path=str(checkpoint.path), resuming=resuming, finished=finished)
        with (
            (
                contextlib.nullcontext()
                if finished
                else cluster_client(settings, log, model.device, dataset.float64_bytes)
            ) as client,
            warnings.catch_warnings(),
            events_to(log),
        ):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.set_params(client=client).fit(dataset, on_iteration=log.iteration, checkpoint=checkpoint)
        model.set_params(client=None)
        log.end_live()
        for i, j, k, before, after in model.split_merge_moves_:
            log.event(
                "split-merge",
                merged=[i, j],
                split=k,
                mean_log_likelihood_before=before,
                mean_log_likelihood_after=after,
            )
        publish_model(model, settings["model"], settings["overwrite"], dataset, checkpoint)
    log.event(
        "done",
        converged=model.converged_,
        iterations=model.n_iter_,
        mean_log_likelihood=finite(model.lower_bound_),
        rows_dropped=model.n_rows_dropped_,
        seconds=round(time.perf_counter() - started, 3),
        model=settings["model"],
    )
    if not model.converged_ and model.max_iter > 0:
        click.echo(
            f"dgmm fit: warning: did not converge in {model.max_iter} iterations "
            "(raise --max-iter or --tol); the model was written",
            err=True,
        )
        if settings["require_convergence"]:
            sys.exit(EXIT_NOT_CONVERGED)


def fit_classifier(settings: dict[str, Any], dataset) -> None:
    """``dgmm fit --label-column``: one mixture per class (or a background model adapted to each), one file."""
    from ..data.devices import device_target
    from ..estimator.classifier import GaussianMixtureClassifier

    model = GaussianMixtureClassifier(**estimator_parameters(settings, classifier=True))
    device_target(model.device)  # device="cuda" without a GPU is refused before a cluster starts
    log = ProgressLog(settings["log_format"])
    log.event(
        "input",
        files=len(dataset.files),
        rows=dataset.n_rows,
        columns=len(dataset.columns),
        label_column=settings["label_column"],
        seed=settings["seed"],
    )
    started = time.perf_counter()
    codes = 8 * dataset.n_rows  # the class codes travel as one more float64 column
    with (
        cluster_client(settings, log, model.device, dataset.float64_bytes + codes) as client,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.set_params(client=client).fit(dataset, settings["label_column"])
    model.set_params(client=None)
    for label, mixture, prior in zip(model.classes_, model.estimators_, model.class_prior_):
        log.event(
            "class",
            label=label.item() if isinstance(label, np.generic) else label,
            prior=float(prior),
            converged=mixture.converged_,
            iterations=mixture.n_iter_,
            mean_log_likelihood=finite(mixture.lower_bound_),
        )
    publish_model(model, settings["model"], settings["overwrite"], dataset, None)
    late = [str(c) for c, m in zip(model.classes_, model.estimators_) if not m.converged_]
    log.event(
        "done",
        classes=len(model.classes_),
        passes=model.passes_,
        converged=not late,
        seconds=round(time.perf_counter() - started, 3),
        model=settings["model"],
    )
    if late and model.max_iter > 0 and model.ubm is None:
        click.echo(
            f"dgmm fit: warning: classes {', '.join(late)} did not converge in {model.max_iter} iterations "
            "(raise --max-iter or --tol); the model was written",
            err=True,
        )
        if settings["require_convergence"]:
            sys.exit(EXIT_NOT_CONVERGED)


def publish_model(model, dest: str, overwrite: bool, dataset, checkpoint) -> None:
    """Write the fitted model; if that fails, keep it (in the checkpoint, else a file in the temporary
    directory) and say how to publish it without refitting. The checkpoint is removed once published."""
    from ..errors import OutputExists
    from ..persist.formats import save_model

    try:
        save_model(
            model, dest, extra={"input": dataset.summary()}, overwrite=overwrite, storage_options=model.storage_options
        )
    except OutputExists:  # the check at the start passed: another run wrote there meanwhile
        raise DgmmError(
            f"{dest}: appeared while this fit ran (another run writing there?) and is not replaced "
            f"without --overwrite; the fitted model {keep_unpublished(model, dest, checkpoint)}"
        ) from None
    except (DgmmError, OSError) as exc:
        reason = str(exc).removeprefix(f"{dest}: ") if isinstance(exc, DgmmError) else f"{exc.strerror or exc}"
        raise DgmmError(
            f"{dest}: the fitted model could not be written ({reason}); it {keep_unpublished(model, dest, checkpoint)}"
        ) from None
    if checkpoint is not None:
        checkpoint.remove()


def keep_unpublished(model, dest: str, checkpoint) -> str:
    """Where the fitted model that could not be published is kept, and how to publish it (a sentence)."""
    import tempfile

    from ..persist.formats import save_model

    if checkpoint is not None:  # it holds the finished fit
        return (
            f"is kept in the checkpoint {checkpoint.path}: fix that, then run the same command with --resume "
            "to write it without refitting"
        )
    rescue = os.path.join(tempfile.gettempdir(), f"dgmm-unpublished-{os.getpid()}-{os.path.basename(dest)[:80]}")
    try:
        save_model(model, rescue)
    except (DgmmError, OSError) as exc:
        return f"could not be kept at {rescue} either ({exc}); fits with --checkpoint DIR keep their model"
    return f"is kept at {rescue}: fix that, then move it into place (mv {rescue} {dest}); no refit needed"


def _int_list(text: str) -> list[int]:
    """ "1-10" or "2,4,8" -> a list of ints (ConfigError otherwise)."""
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
@settings_command(SELECT_SETTINGS, "select")
def select_command(settings: dict[str, Any]) -> None:
    """Fit every (K, covariance type) of a grid on DATA sharing each pass; print the table, save the best."""
    from ..data.parquet import ParquetDataset
    from ..data.publish import check_destination
    from ..estimator.select import select
    from ..persist.formats import save_model

    ks = _int_list(settings["n_components"])
    types = settings["covariance_types"]
    types = [t.strip() for t in types.split(",") if t.strip()] if isinstance(types, str) else types
    storage = settings["storage_options"]
    if settings["model"]:
        check_destination(settings["model"], settings["overwrite"], storage)
    dataset = ParquetDataset.open(
        settings["data"],
        settings["columns"],
        settings["chunk_rows"],
        settings["weight_column"],
        settings["nan_policy"],
        storage,
        settings["exclude_columns"] if settings["columns"] or not settings["cmvn"]
        else [*(settings["exclude_columns"] or []), settings["cmvn"]],
        version=settings["table_version"],
        as_of=settings["as_of"],
    )  # fmt: skip
    log = ProgressLog(settings["log_format"])
    log.event(
        "input", files=len(dataset.files), rows=dataset.n_rows, columns=len(dataset.columns), seed=settings["seed"]
    )
    started = time.perf_counter()

    def progress(done) -> None:
        log.event("pass", stage=done.stage, number=done.n_pass, seconds=round(done.seconds, 3))

    device = settings.get("device") or "auto"
    with cluster_client(settings, log, device, dataset.float64_bytes) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        params = {
            k: v
            for k, v in estimator_parameters(settings).items()
            if k not in SET_BY_SELECT and k != "scheduler_address"
        }  # the client is connected here
        result = select(
            dataset,
            ks,
            types,
            criterion=settings["criterion"],
            heldout_fraction=settings["heldout_fraction"],
            client=client,
            on_pass=progress,
            **params,
        )
    criterion = settings["criterion"]
    if settings["model"]:  # first: a reader of the table that goes away (| head) must not cost the model
        save_model(
            result.best,
            settings["model"],
            extra={"input": dataset.summary(), "selection": criterion},
            overwrite=settings["overwrite"],
            storage_options=storage,
        )
    log.event(
        "done",
        n_components=result.best.n_components,
        covariance_type=result.best.covariance_type,
        criterion=criterion,
        passes=result.passes,
        seconds=round(time.perf_counter() - started, 3),
        **({"model": settings["model"]} if settings["model"] else {}),
    )
    if settings["json"]:
        say(
            json.dumps(
                {
                    "criterion": criterion,
                    "best": {"n_components": result.best.n_components, "covariance_type": result.best.covariance_type},
                    "passes": result.passes,
                    "table": [
                        {k: finite(v) if isinstance(v, float) else v for k, v in row.items()} for row in result.table
                    ],
                }
            )
        )
    else:
        say(
            result.format() + f"\nbest by {criterion}: n_components={result.best.n_components}, "
            f"covariance_type={result.best.covariance_type} ({result.passes} passes over the data)"
        )
