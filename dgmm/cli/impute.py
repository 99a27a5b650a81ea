"""``dgmm impute``: a Parquet input's missing values replaced by their conditional means, out of core."""

from __future__ import annotations

import click

from ..errors import ConfigError
from .app import COLUMNS_OPTION, STORAGE_OPTION, feature_columns, handle_errors, main, storage


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.option("--output", "-o", required=True, help="Parquet file to write: the kept columns, then the features")
@click.option("--keep-columns", default="", help="input columns to copy to the output, e.g. id")
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@COLUMNS_OPTION
@STORAGE_OPTION
@handle_errors("impute")
def impute(
    model_path: str,
    data: str,
    output: str,
    keep_columns: str,
    overwrite: bool,
    columns: str | None,
    storage_options: tuple[str, ...],
) -> None:
    """Write every row of DATA with each missing value (null or NaN) replaced by its conditional mean under
    MODEL, E[x_m | x_o], in input order (one row group in memory at a time)."""
    from ..data.outputs import impute_to_parquet
    from ..estimator.files import load_model

    options = storage(storage_options)
    model = load_model(model_path, options)
    if hasattr(model, "classes_"):
        raise ConfigError(
            f"{model_path}: a classifier; impute needs a one-mixture model (its mixtures disagree on the holes)"
        )
    model.set_params(nan_policy="marginalize")
    keep = [c.strip() for c in keep_columns.split(",") if c.strip()]
    n = impute_to_parquet(model, data, output, keep_columns=keep, overwrite=overwrite, columns=feature_columns(columns))
    click.echo(f"wrote {n} rows to {output}", err=True)
