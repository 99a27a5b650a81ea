"""``dgmm predict``, ``score``, ``sample``, ``inspect``, ``generate`` and ``plot``: a model file and data."""

from __future__ import annotations

import json

import click
import numpy as np

from ..errors import ConfigError
from ..estimator.parameters import TOP_C
from .app import (
    COLUMNS_OPTION,
    NAN_POLICY_OPTION,
    STORAGE_OPTION,
    feature_columns,
    finite,
    handle_errors,
    main,
    storage,
)
from .config import CLI_SEED

TOP_C_OPTION = click.option("--top-c", type=click.IntRange(min=1), help="a classifier: " + TOP_C.help)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--output", "-o", required=True, help="Parquet file to write")
@click.option("--proba", is_flag=True, help="also write proba_0..proba_{K-1}")
@click.option("--log-likelihood", "log_likelihood", is_flag=True, help="also write each row's log-likelihood")
@click.option("--keep-columns", default="", help="input columns to copy to the output, e.g. id")
@click.option(
    "--group-column",
    default=None,
    help="a classifier's decision per group of rows (e.g. utterance): one output row per group",
)
@click.option(
    "--reduce",
    type=click.Choice(["mean", "sum"]),
    default="mean",
    help="with --group-column: each class's score of a group, the mean or sum of its rows'",
)
@click.option("--ratio", is_flag=True, help="with --group-column: scores against the background model")
@TOP_C_OPTION
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@COLUMNS_OPTION
@NAN_POLICY_OPTION
@STORAGE_OPTION
@handle_errors("predict")
def predict(
    model_path: str,
    data: str,
    output: str,
    proba: bool,
    log_likelihood: bool,
    keep_columns: str,
    group_column: str | None,
    reduce: str,
    ratio: bool,
    top_c: int | None,
    overwrite: bool,
    columns: str | None,
    nan_policy: str | None,
    storage_options: tuple[str, ...],
) -> None:
    """Write the most probable component (a classifier's class) of every row of DATA, in input order
    (null for dropped rows); with --group-column one row per group."""
    from ..data.outputs import predict_to_parquet
    from ..estimator.files import load_model

    options = storage(storage_options)
    model = load_model(model_path, options)
    model.set_params(nan_policy=nan_policy or model.nan_policy)
    with_top_c(model, top_c)
    if group_column:
        return predict_groups(
            model, scoring_data(model, data, columns, options), output, group_column, reduce, ratio, overwrite, options
        )
    keep = [c.strip() for c in keep_columns.split(",") if c.strip()]
    n = predict_to_parquet(
        model,
        data,
        output,
        proba=proba,
        log_likelihood=log_likelihood,
        keep_columns=keep,
        overwrite=overwrite,
        columns=feature_columns(columns),
    )
    click.echo(f"wrote {n} rows to {output}", err=True)


def with_top_c(model, top_c: int | None) -> None:
    """--top-c: a classifier's Gaussian selection; refused in one line for a one-mixture model."""
    if top_c is None:
        return
    if not hasattr(model, "classes_"):
        raise ConfigError("--top-c needs a classifier model with a background model; this model is one mixture")
    model.set_params(top_c=top_c)


def scoring_data(model, data: str, columns: str | None, options: dict | None, exclude: str | None = None):
    """DATA as a command scores it: the Parquet path itself, or with --columns the data set of those
    feature columns (a model fitted with feature names reads those names; --columns must agree); ``exclude``
    (a label column) is never a feature."""
    from ..data.parquet import ParquetDataset

    chosen = feature_columns(columns)
    if chosen is None and (exclude is None or getattr(model, "feature_names_in_", None) is not None):
        return data
    return ParquetDataset.open(
        data,
        chosen,
        nan_policy=model.nan_policy,
        storage_options=options,
        exclude_columns=[exclude] if exclude and chosen is None else None,
    )


def predict_groups(
    model, data, output: str, group_column: str, reduce: str, ratio: bool, overwrite: bool, options: dict | None
) -> None:
    """``dgmm predict --group-column``: a classifier's decision and scores per group, as Parquet."""
    import pyarrow as pa

    from ..data.outputs import check_destination, model_summary, write_table

    if not hasattr(model, "classes_"):
        raise ConfigError(
            "--group-column needs a classifier model (fitted with --label-column); this model is one mixture"
        )
    check_destination(output, overwrite, options)
    frame = model.predict_groups(data, group_column, reduce=reduce, ratio=ratio)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({b"dgmm": json.dumps(model_summary(model), sort_keys=True).encode()})
    write_table(table, output, overwrite, storage_options=options)
    click.echo(f"wrote {len(frame)} groups to {output}", err=True)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option(
    "--label-column", help="a classifier: column (or hive key) of each row's class, for the accuracy (not a feature)"
)
@TOP_C_OPTION
@COLUMNS_OPTION
@NAN_POLICY_OPTION
@STORAGE_OPTION
@handle_errors("score")
def score(
    model_path: str,
    data: str,
    as_json: bool,
    label_column: str | None,
    top_c: int | None,
    columns: str | None,
    nan_policy: str | None,
    storage_options: tuple[str, ...],
) -> None:
    """Mean log-likelihood, BIC and AIC of a mixture on DATA (over the rows not dropped); of a classifier, the mean
    log-likelihood under its classes and, with --label-column, its accuracy."""
    from ..estimator.files import load_model

    options = storage(storage_options)
    model = load_model(model_path, options)
    model.set_params(nan_policy=nan_policy or model.nan_policy)
    with_top_c(model, top_c)
    if hasattr(model, "classes_"):
        summary = model.score_summary(scoring_data(model, data, columns, options, exclude=label_column), label_column)
    elif label_column is not None:
        raise ConfigError("--label-column needs a classifier model (fitted with --label-column); this model is one "
                          "mixture: leave --label-column out")  # fmt: skip
    else:
        summary = model.score_summary(scoring_data(model, data, columns, options))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key:20s} {value}")


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--n-samples", "-n", type=click.IntRange(min=1), required=True)
@click.option("--output", "-o", required=True, help="Parquet file to write")
@click.option("--seed", type=click.IntRange(min=0), default=CLI_SEED, show_default=True, help="seed of the draws")
@click.option("--class", "label", help="a classifier: draw every row from this class (default: classes by prior)")
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@STORAGE_OPTION
@handle_errors("sample")
def sample(
    model_path: str,
    n_samples: int,
    output: str,
    seed: int | None,
    label: str | None,
    overwrite: bool,
    storage_options: tuple[str, ...],
) -> None:
    """Draw rows from the model; columns are its features plus `component` (a mixture) or `class` (a classifier)."""
    import pyarrow as pa

    from ..data.outputs import check_destination, model_summary, write_table
    from ..estimator.files import load_model

    options = storage(storage_options)
    model = load_model(model_path, options)
    classifier = hasattr(model, "classes_")
    if label is not None and not classifier:
        raise ConfigError("--class needs a classifier model (fitted with --label-column); this model is one mixture")
    check_destination(output, overwrite, options)
    model.set_params(random_state=seed)
    if classifier:
        X, labels = model.sample(n_samples, label=label)
        last = {"class": labels.tolist() if labels.dtype.kind in "OU" else labels}
    else:
        X, labels = model.sample(n_samples)
        last = {"component": labels}
    names = getattr(model, "feature_names_in_", None)
    names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
    table = pa.table(
        {**{n: X[:, j] for j, n in enumerate(names)}, **last},
        metadata={b"dgmm": json.dumps(model_summary(model), sort_keys=True).encode()},
    )
    write_table(table, output, overwrite, storage_options=options)
    click.echo(f"wrote {n_samples} rows to {output}", err=True)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@STORAGE_OPTION
@handle_errors("inspect")
def inspect(model_path: str, as_json: bool, storage_options: tuple[str, ...]) -> None:
    """Weights, means, covariance summaries, convergence and the input fingerprint of a model."""
    from ..estimator.files import load_model_with_metadata

    model, metadata = load_model_with_metadata(model_path, storage(storage_options))
    if hasattr(model, "classes_"):
        return inspect_classifier(model, metadata, as_json)
    report = {**mixture_report(model), "input": metadata.get("extra", {}).get("input")}
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{model.n_components} components, {model.covariance_type} covariances, {model.n_features_in_} features "
        f"({', '.join(report['feature_names']) or 'unnamed'})"
    )
    dropped = "" if report["n_rows_dropped"] is None else f", {report['n_rows_dropped']} rows dropped"
    seed = "" if report["seed"] is None else f", seed {report['seed']}"
    click.echo(
        f"converged: {report['converged']} after {report['n_iter']} iterations, "
        f"mean log-likelihood {report['mean_log_likelihood']}{dropped}{seed}"
    )
    if report["cmvn"] is not None:
        click.echo(f"features normalised per group of column {report['cmvn']!r} (cmvn), in fitting and scoring")
    click.echo(components_text(report))
    print_input(report["input"])


INSPECT_FEATURES = 12  # feature columns shown in inspect's tables (--json has every one)


def components_text(report: dict) -> str:
    """The components of a :func:`mixture_report` as aligned tables: weights and condition numbers, then
    the means and standard deviations by feature (the first :data:`INSPECT_FEATURES` of them)."""
    from ..estimator.tables import format_table

    components = report["components"]
    names = report["feature_names"] or [f"x{j}" for j in range(report["n_features"])]
    shown = names[:INSPECT_FEATURES]
    more = "" if len(names) <= len(shown) else f" (first {len(shown)} of {len(names)} features; --json has all)"
    summary = format_table(
        ["component", "weight", "log det covariance", "condition number"],
        [[k, c["weight"], c["log_det_covariance"], c["condition_number"]] for k, c in enumerate(components)],
        indent="  ",
    )
    parts = [summary]
    for title, key, transform in (("means", "mean", float), ("standard deviations", "variances", np.sqrt)):
        rows = [[k, *(float(transform(v)) for v in c[key][: len(shown)])] for k, c in enumerate(components)]
        parts += [f"{title}{more}:", format_table(["component", *shown], rows, indent="  ")]
    return "\n".join(parts)


def mixture_report(model) -> dict:
    """What ``inspect`` reports of one mixture: settings, convergence and every component."""
    components = []
    for k, cov in enumerate(model.fitted_params().dense_covariances):
        eig = np.linalg.eigvalsh(cov)
        components.append(
            {
                "weight": float(model.weights_[k]),
                "mean": model.means_[k].tolist(),
                "variances": np.diag(cov).tolist(),
                "log_det_covariance": float(np.sum(np.log(eig))),
                "condition_number": float(eig[-1] / eig[0]),
            }
        )
    return {
        "covariance_type": model.covariance_type,
        "n_components": model.n_components,
        "n_features": model.n_features_in_,
        "feature_names": list(getattr(model, "feature_names_in_", [])),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "mean_log_likelihood": finite(model.lower_bound_),
        "n_rows_dropped": getattr(model, "n_rows_dropped_", None),
        "seed": model.random_state if isinstance(model.random_state, int) else None,
        "cmvn": getattr(model, "cmvn", None),
        "components": components,
    }


def inspect_classifier(model, metadata: dict, as_json: bool) -> None:
    """``inspect`` of a classifier file: its classes, priors, each class's mixture and the background model."""
    classes = [c.item() if isinstance(c, np.generic) else c for c in model.classes_]
    background = getattr(model, "ubm_", None)
    report = {
        "kind": "classifier",
        "classes": classes,
        "priors": [float(p) for p in model.class_prior_],
        "n_features": model.n_features_in_,
        "feature_names": list(getattr(model, "feature_names_in_", [])),
        "mixtures": [mixture_report(m) for m in model.estimators_],
        "background_model": None if background is None else mixture_report(background),
        "input": metadata.get("extra", {}).get("input"),
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    first = model.estimators_[0]
    click.echo(
        f"classifier: {len(classes)} classes, {first.n_components} {first.covariance_type} components each, "
        f"{model.n_features_in_} features ({', '.join(report['feature_names']) or 'unnamed'}); "
        f"{'MAP-adapted from a background model' if background is not None else 'each class fitted by EM'}"
    )
    for label, prior, mixture in zip(classes, report["priors"], report["mixtures"]):
        click.echo(
            f"  class {label!r}: prior {prior:.4f}, converged {mixture['converged']} after "
            f"{mixture['n_iter']} iterations, mean log-likelihood {mixture['mean_log_likelihood']}"
        )
    print_input(report["input"])


def print_input(source: dict | None) -> None:
    """The input line of ``inspect``."""
    if source:
        n_files = source["n_files"] if "n_files" in source else len(source.get("files", []))  # older files list them
        click.echo(f"input: {source['n_rows']} rows in {n_files} files, columns {', '.join(source['columns'])}")


@main.command()
@click.option("--n-samples", "-n", type=click.IntRange(min=1), required=True)
@click.option("--n-features", "-d", type=click.IntRange(min=1), required=True)
@click.option("--n-components", "-k", type=click.IntRange(min=1), required=True)
@click.option("--output", "-o", required=True, help="directory to write the Parquet files to")
@click.option("--seed", type=click.IntRange(min=0), default=CLI_SEED, show_default=True, help="seed of the data")
@click.option("--row-group-size", type=click.IntRange(min=1), default=65_536)
@click.option("--n-files", type=click.IntRange(min=1), default=1)
@click.option("--overwrite", is_flag=True, help="replace an existing output directory")
@handle_errors("generate")
def generate(
    n_samples: int,
    n_features: int,
    n_components: int,
    output: str,
    seed: int,
    row_group_size: int,
    n_files: int,
    overwrite: bool,
) -> None:
    """Synthetic mixture data as Parquet (columns x0..x{d-1}), written in blocks."""
    from ..data.synthetic import write_mixture_parquet

    write_mixture_parquet(
        output,
        n_samples,
        n_features,
        n_components,
        seed=seed,
        row_group_size=row_group_size,
        n_files=n_files,
        overwrite=overwrite,
    )
    click.echo(f"wrote {n_samples} rows x {n_features} features ({n_components} components) to {output}", err=True)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data", required=False)
@click.option("--output", "-o", required=True, help="PNG file to write")
@click.option(
    "--sample-rows",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="rows of DATA to draw (from randomly chosen row groups)",
)
@click.option("--seed", type=click.IntRange(min=0), default=CLI_SEED, show_default=True, help="seed of the row sample")
@click.option(
    "--features",
    default=None,
    metavar="A,B",
    help="two features to plot against each other [default: the first two principal axes of the "
    "standardised features, when there are more than two]",
)
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@COLUMNS_OPTION
@STORAGE_OPTION
@handle_errors("plot")
def plot(
    model_path: str,
    data: str | None,
    output: str,
    sample_rows: int,
    seed: int,
    features: str | None,
    overwrite: bool,
    columns: str | None,
    storage_options: tuple[str, ...],
) -> None:
    """Plot the convergence curve and the components (over a sample of DATA) as a PNG; a classifier's
    classes in one colour each."""
    from ..data.outputs import check_destination
    from ..errors import DataError
    from ..estimator.files import load_model
    from ..estimator.plots import plot_model
    from ..estimator.plots import sample_rows as read_sample

    options = storage(storage_options)
    model = load_model(model_path, options)
    if not output.lower().endswith(".png"):
        raise ConfigError(f"{output}: --output must be a .png file")
    check_destination(output, overwrite, options)
    pair = feature_columns(features)
    X = None
    if data is not None:
        names = getattr(model, "feature_names_in_", None)
        chosen = list(names) if names is not None else feature_columns(columns)
        X = read_sample(data, chosen, sample_rows, seed=seed, storage_options=options, nan_policy=model.nan_policy)
        if X.shape[1] != model.n_features_in_:
            raise DataError(f"{data}: input has {X.shape[1]} feature columns, the model expects {model.n_features_in_}")
    plot_model(model, X, output, overwrite, options, pair)
    click.echo(f"wrote {output}", err=True)
