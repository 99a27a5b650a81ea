"""Writing results as Parquet: streamed row group by row group, published atomically.

Outputs are published by :mod:`dgmm.data.publish`: written whole under a temporary name, then
made visible at once, never over a file this run did not create unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, spell
from ..kernels import posterior
from ..kernels.arrays import to_numpy
from ..kernels.device.posterior import xp_posteriors
from ..kernels.missing import conditional_means, nothing_observed
from ..kernels.row_weights import split_weights
from .devices import device_target
from .parquet import ParquetDataset, PathLike, read_row_group, read_table
from .parquet_checks import not_parquet
from .publish import check_destination, published
from .sources import open_input, storage_error

__all__ = ["atomic_parquet_writer", "check_destination", "impute_to_parquet", "predict_to_parquet", "write_table"]


@contextlib.contextmanager
def atomic_parquet_writer(
    dest: PathLike, schema: pa.Schema, overwrite: bool = False, storage_options: dict | None = None
) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter whose file is published at ``dest`` only on success (:func:`dgmm.data.publish.published`)."""
    with published(dest, overwrite, storage_options) as file, pq.ParquetWriter(file, schema) as writer:
        yield writer


def write_table(
    table: pa.Table,
    dest: PathLike,
    overwrite: bool = False,
    row_group_size: int = 65_536,
    storage_options: dict | None = None,
) -> None:
    """Write one table atomically (``dest`` a path or an fsspec URL)."""
    with atomic_parquet_writer(dest, table.schema, overwrite, storage_options) as writer:
        writer.write_table(table, row_group_size=row_group_size)


def predict_to_parquet(
    model,
    source: PathLike | Sequence[PathLike],
    dest: PathLike,
    *,
    proba: bool = False,
    log_likelihood: bool = False,
    keep_columns: Sequence[str] = (),
    overwrite: bool = False,
    storage_options: dict | None = None,
    columns: Sequence[str] | None = None,
    impute: bool = False,
) -> int:
    """Label every row of a Parquet input and write the labels, in input order.

    ``columns``: the feature columns, for a model fitted without feature names (default: every column);
    a model with feature names reads those, and ``columns``, if given, must name the same.

    For a GaussianMixtureClassifier the columns are ``class`` (the label), with ``proba``
    ``proba_<class>`` and with ``log_likelihood`` ``log_likelihood_<class>`` (each class's mixture).

    Output columns: ``keep_columns`` copied from the input (e.g. ids), ``component``
    (int64, as ``predict``), with ``proba`` ``proba_0 … proba_{K-1}`` (as
    ``predict_proba``), with ``log_likelihood`` the column ``log_likelihood`` (as
    ``score_samples``). Memory holds one row group at a time. With the model's
    ``nan_policy="drop"``, rows holding nulls or NaN get null in every output column; with
    ``"marginalize"`` rows are scored on their observed values, and rows with nothing observed get null.
    With ``impute`` (:func:`impute_to_parquet`) the output columns are the features instead, each missing value
    replaced by its conditional mean (``GaussianMixture.impute``). ``dest`` may be an fsspec URL; ``storage_options`` (default: the model's) serve the input
    and the output. An existing ``dest`` is never replaced unless ``overwrite``.

    Returns
    -------
    n_rows : rows written
    """
    names = getattr(model, "feature_names_in_", None)
    nan_policy = getattr(model, "nan_policy", "raise")
    options = storage_options if storage_options is not None else getattr(model, "storage_options", None)
    check_destination(dest, overwrite, options)  # before reading a byte: the publish checks again
    if names is not None and columns is not None and list(columns) != list(names):
        raise DataError(
            f"{spell('columns', '--columns')} {list(columns)} differ from the model's feature names "
            f"{list(names)}; leave them out: the model reads its own"
        )
    dataset = ParquetDataset.open(
        source, list(names) if names is not None else columns, nan_policy=nan_policy, storage_options=options
    )
    if len(dataset.columns) != model.n_features_in_:
        raise DataError(
            f"{dataset.files[0]}: input has {len(dataset.columns)} feature columns, the model expects {model.n_features_in_}"
        )
    keep = list(keep_columns)
    schemas = [_schema(f, options) for f in dataset.files] if keep else []
    keys = {rg.path: dict(rg.partitions) for rg in dataset.row_groups}  # hive keys: key=value folders
    for f, schema in zip(dataset.files, schemas):
        for name in keep:
            if name not in schema.names and name not in keys.get(f, {}):
                raise DataError(
                    f"{f}: column {name!r} (from --keep-columns) not found; columns are "
                    f"{', '.join([*schema.names, *keys.get(f, {})])}"
                )
    file_keep = [n for n in keep if n in schemas[0].names] if keep else []
    fields = [schemas[0].field(n) if n in file_keep else pa.field(n, pa.string()) for n in keep]
    if impute:
        if hasattr(model, "classes_"):
            raise DataError("impute needs one mixture; a classifier's mixtures disagree on the missing values")
        rows = _ImputedRows(model, dataset.columns)
        clash = sorted(set(keep) & set(dataset.columns))
        if clash:
            raise DataError(f"--keep-columns {clash} are features: the output has them, imputed; keep other columns")
    else:
        rows = _ClassRows(model) if hasattr(model, "classes_") else _ComponentRows(model)
    fields += rows.fields(proba, log_likelihood)
    n_rows = 0
    schema = pa.schema(fields, metadata={b"dgmm": json.dumps(model_summary(model), sort_keys=True).encode()})
    with atomic_parquet_writer(dest, schema, overwrite, options) as writer:
        for rg in dataset.row_groups:
            X, weights = split_weights(read_row_group(rg, dataset.columns, nan_policy=nan_policy), len(dataset.columns))
            dropped = None if weights is None else weights == 0
            if nan_policy == "marginalize":
                dropped = nothing_observed(X) if dropped is None else dropped | nothing_observed(X)
            columns = {}
            if keep:
                kept = read_table(rg, file_keep)
                values = dict(rg.partitions)
                columns.update(
                    {
                        n: kept.column(n) if n in file_keep else pa.repeat(pa.scalar(values[n], pa.string()), rg.n_rows)
                        for n in keep
                    }
                )
            columns.update(rows.columns(X, dropped, proba, log_likelihood))
            writer.write_table(pa.table(columns, schema=writer.schema))
            n_rows += X.shape[0]
    return n_rows


class _ComponentRows:
    """The output columns of a mixture: ``component``, ``proba_k``, ``log_likelihood``."""

    def __init__(self, model: Any):
        self.params = model.fitted_params()
        # a model for a GPU ("cuda", or "auto" with one) scores each row group there
        self.device = device_target(getattr(model, "device", "cpu"))

    def fields(self, proba: bool, log_likelihood: bool) -> list[pa.Field]:
        fields = [pa.field("component", pa.int64())]
        fields += [pa.field(f"proba_{k}", pa.float64()) for k in range(self.params.n_components)] if proba else []
        return fields + ([pa.field("log_likelihood", pa.float64())] if log_likelihood else [])

    def columns(self, X: np.ndarray, dropped: np.ndarray | None, proba: bool, log_likelihood: bool) -> dict:
        if self.device is not None:
            return self.device_columns(X, dropped, proba, log_likelihood)
        log_norm, log_resp = posterior.log_responsibilities(X, self.params)
        columns = {"component": pa.array(np.argmax(log_resp, axis=1).astype(np.int64), mask=dropped)}
        if proba:
            resp = np.exp(log_resp)
            columns.update({f"proba_{k}": pa.array(resp[:, k], mask=dropped) for k in range(self.params.n_components)})
        if log_likelihood:
            columns["log_likelihood"] = pa.array(log_norm, mask=dropped)
        return columns

    def device_columns(self, X: np.ndarray, dropped: np.ndarray | None, proba: bool, log_likelihood: bool) -> dict:
        """:meth:`columns`, computed on the GPU (:func:`~dgmm.kernels.device.posterior.xp_posterior`)."""
        on_gpu = self.device.put(X)
        outputs = ["labels", *(["responsibilities"] if proba else []), *(["log_density"] if log_likelihood else [])]
        got = {name: to_numpy(out) for name, out in xp_posteriors(on_gpu, self.params, tuple(outputs)).items()}
        columns = {"component": pa.array(got["labels"].astype(np.int64), mask=dropped)}
        if proba:
            columns.update(
                {
                    f"proba_{k}": pa.array(got["responsibilities"][:, k], mask=dropped)
                    for k in range(self.params.n_components)
                }
            )
        if log_likelihood:
            columns["log_likelihood"] = pa.array(got["log_density"], mask=dropped)
        return columns


def impute_to_parquet(
    model,
    source: PathLike | Sequence[PathLike],
    dest: PathLike,
    *,
    keep_columns: Sequence[str] = (),
    overwrite: bool = False,
    storage_options: dict | None = None,
    columns: Sequence[str] | None = None,
) -> int:
    """Write a Parquet input's rows with every missing value (null or NaN) replaced by its conditional mean under
    ``model`` (a mixture with ``nan_policy="marginalize"``), in input order, one row group in memory at a time:
    the ``keep_columns`` then the features, under their names. Arguments as :func:`predict_to_parquet`'s.
    Returns the rows written."""
    if getattr(model, "nan_policy", "raise") != "marginalize":
        raise DataError(
            f"impute needs a model with nan_policy='marginalize' (this one has {model.nan_policy!r}): "
            "set it (--nan-policy marginalize); the fitted parameters impute whatever policy fitted them"
        )
    return predict_to_parquet(
        model,
        source,
        dest,
        keep_columns=keep_columns,
        overwrite=overwrite,
        storage_options=storage_options,
        columns=columns,
        impute=True,
    )


class _ImputedRows:
    """The output columns of imputation: the features, missing values replaced by conditional means."""

    def __init__(self, model: Any, names: Sequence[str]):
        self.params = model.fitted_params()
        self.names = list(names)

    def fields(self, proba: bool, log_likelihood: bool) -> list[pa.Field]:
        return [pa.field(n, pa.float64()) for n in self.names]

    def columns(self, X: np.ndarray, dropped: np.ndarray | None, proba: bool, log_likelihood: bool) -> dict:
        filled = conditional_means(X, self.params)
        return {n: pa.array(filled[:, j]) for j, n in enumerate(self.names)}


class _ClassRows:
    """The output columns of a classifier: ``class``, ``proba_<class>``, ``log_likelihood_<class>``."""

    def __init__(self, model: Any):
        self.classes = model.classes_
        self.params = tuple(m.fitted_params() for m in model.estimators_)
        self.log_prior = np.log(model.class_prior_)
        self.type = pa.string() if self.classes.dtype.kind in "OUS" else pa.int64()

    def fields(self, proba: bool, log_likelihood: bool) -> list[pa.Field]:
        fields = [pa.field("class", self.type)]
        fields += [pa.field(f"proba_{c}", pa.float64()) for c in self.classes] if proba else []
        return fields + (
            [pa.field(f"log_likelihood_{c}", pa.float64()) for c in self.classes] if log_likelihood else []
        )

    def columns(self, X: np.ndarray, dropped: np.ndarray | None, proba: bool, log_likelihood: bool) -> dict:
        class_ll = posterior.class_log_likelihoods(X, self.params)
        joint = class_ll + self.log_prior
        labels = self.classes[np.argmax(joint, axis=1)]
        columns = {"class": pa.array(labels.tolist(), type=self.type, mask=dropped)}
        if proba:
            resp = np.exp(posterior.normalised_rows(joint))
            columns.update({f"proba_{c}": pa.array(resp[:, j], mask=dropped) for j, c in enumerate(self.classes)})
        if log_likelihood:
            columns.update(
                {f"log_likelihood_{c}": pa.array(class_ll[:, j], mask=dropped) for j, c in enumerate(self.classes)}
            )
        return columns


def model_summary(model: Any) -> dict[str, Any]:
    """What an output file records about the model that wrote it (schema metadata key ``dgmm``)."""
    from ..version import __version__

    names = getattr(model, "feature_names_in_", None)
    if hasattr(model, "classes_"):  # a classifier
        return {
            "dgmm_version": __version__,
            "kind": "classifier",
            "classes": [c.item() if isinstance(c, np.generic) else c for c in model.classes_],
            "priors": [float(p) for p in model.class_prior_],
            "n_features": int(model.n_features_in_),
            "feature_names": None if names is None else [str(n) for n in names],
            "n_components": [int(m.n_components) for m in model.estimators_],
            "covariance_type": model.estimators_[0].covariance_type,
            "background_model": getattr(model, "ubm_", None) is not None,
        }
    return {
        "dgmm_version": __version__,
        "n_components": int(model.n_components),
        "covariance_type": model.covariance_type,
        "n_features": int(model.n_features_in_),
        "feature_names": None if names is None else [str(n) for n in names],
        "nan_policy": getattr(model, "nan_policy", "raise"),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "mean_log_likelihood": float(model.lower_bound_) if np.isfinite(model.lower_bound_) else None,
        "weights": [float(w) for w in model.weights_],
    }


def _schema(path: str, storage_options: dict | None) -> pa.Schema:
    """The Arrow schema of one Parquet file, read through fsspec for URLs."""
    try:
        with open_input(path, storage_options) as handle:
            return pq.read_schema(handle)
    except (OSError, pa.ArrowException) as exc:
        raise storage_error(path, exc) or not_parquet(path, exc) from None
