"""``dgmm score-trials``: speaker verification trials scored out of core, normalised and measured."""

from __future__ import annotations

import json

import click

from ..errors import ConfigError
from ..kernels.detection import NORMS
from .app import STORAGE_OPTION, handle_errors, main, storage
from .commands import TOP_C_OPTION, scoring_data, with_top_c


@main.command("score-trials")
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--trials", required=True, help="Parquet trial list: columns model, test [, target]")
@click.option("--group-column", required=True, help="column (or hive key) of each row's utterance: a trial's test")
@click.option("--output", "-o", required=True, help="Parquet file of the scored trials (score, raw_score)")
@click.option("--norm", type=click.Choice(NORMS), default="none", show_default=True, help="score normalisation")
@click.option("--cohort", help="Parquet impostor utterances for Z-norm (and the S-norms)")
@click.option("--cohort-group-column", help="the cohort's utterance column (default: --group-column)")
@click.option("--cohort-models", help="comma-separated class labels of the T-norm cohort (default: every class)")
@click.option("--top-n", type=click.IntRange(min=1), default=200, show_default=True, help="adaptive S-norm's cohort")
@click.option("--det", help="a PNG of the DET curve (needs a target column)")
@TOP_C_OPTION
@click.option("--overwrite", is_flag=True, help="replace existing outputs")
@STORAGE_OPTION
@handle_errors("score-trials")
def score_trials(
    model_path: str,
    data: str,
    trials: str,
    group_column: str,
    output: str,
    norm: str,
    cohort: str | None,
    cohort_group_column: str | None,
    cohort_models: str | None,
    top_n: int,
    det: str | None,
    top_c: int | None,
    overwrite: bool,
    storage_options: tuple[str, ...],
) -> None:
    """Score every trial (MODEL's speaker, test utterance of DATA) as the utterance's mean log-likelihood ratio to
    the background model, normalised by --norm; print EER and minDCF (NIST SRE 2008 costs) when the trial list
    has a target column."""
    import pandas as pd
    import pyarrow as pa

    from ..data.outputs import check_destination, model_summary, write_table
    from ..data.sources import open_input
    from ..estimator.files import load_model
    from ..estimator.verification import plot_det, score_trials, verification_report

    options = storage(storage_options)
    model = load_model(model_path, options)
    if not hasattr(model, "ubm_"):
        raise ConfigError(f"{model_path}: verification scores against a background model; fit the classifier with "
                          "--ubm (a one-mixture model or a classifier without one cannot score trials)")  # fmt: skip
    with_top_c(model, top_c)
    check_destination(output, overwrite, options)
    if det is not None:
        check_destination(det, overwrite, options)
    with open_input(trials, options) as file:
        trial_list = pd.read_parquet(file)
    cohort_column = cohort_group_column or group_column
    cohort_data = None if cohort is None else scoring_data(model, cohort, None, options, exclude=cohort_column)
    models = None if cohort_models is None else [m.strip() for m in cohort_models.split(",") if m.strip()]
    scored = score_trials(
        model,
        scoring_data(model, data, None, options, exclude=group_column),
        group_column,
        trial_list,
        norm=norm,
        cohort=cohort_data,
        cohort_groups=cohort_column,
        cohort_models=models,
        top_n=top_n,
    )
    table = pa.Table.from_pandas(scored, preserve_index=False)
    table = table.replace_schema_metadata({b"dgmm": json.dumps(model_summary(model), sort_keys=True).encode()})
    write_table(table, output, overwrite, storage_options=options)
    click.echo(f"wrote {len(scored)} trials to {output}", err=True)
    if "target" in scored.columns:
        report = verification_report(scored)
        click.echo(json.dumps({"norm": norm, **report}))
        if det is not None:
            plot_det({f"norm={norm}": scored}, det, overwrite, options)
            click.echo(f"wrote {det}", err=True)
    elif det is not None:
        raise ConfigError("--det needs a target column in the trial list")
