"""Writing results as Parquet: streamed row group by row group, published atomically.

Outputs are written to a hidden temporary file beside the destination and
renamed onto it only when complete, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import posterior
from .errors import DataError
from .io import ParquetDataset, PathLike, read_row_group
from .weights import split_weights


def check_destination(dest: PathLike, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; the parent directory must exist."""
    dest = Path(dest)
    if dest.is_dir():
        raise DataError(f"{dest}: output is a directory; give a file name such as {dest / 'out.parquet'}")
    if dest.exists() and not overwrite:
        raise DataError(f"{dest}: output exists; remove it or pass --overwrite")
    if not dest.parent.is_dir():
        raise DataError(f"{dest.parent}: output directory does not exist; create it first")
    if not os.access(dest.parent, os.W_OK):
        raise DataError(f"{dest.parent}: output directory is not writable")
    return dest


@contextlib.contextmanager
def atomic_parquet_writer(dest: PathLike, schema: pa.Schema, overwrite: bool = False) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter on a temporary file that replaces ``dest`` only on success."""
    dest = check_destination(dest, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            yield writer
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_table(table: pa.Table, dest: PathLike, overwrite: bool = False, row_group_size: int = 65_536) -> None:
    """Write one table atomically."""
    with atomic_parquet_writer(dest, table.schema, overwrite) as writer:
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
) -> int:
    """Label every row of a Parquet input and write the labels, in input order.

    Output columns: ``keep_columns`` copied from the input (e.g. ids), ``component``
    (int64, as ``predict``), with ``proba`` ``proba_0 … proba_{K-1}`` (as
    ``predict_proba``), with ``log_likelihood`` the column ``log_likelihood`` (as
    ``score_samples``). Memory holds one row group at a time. With the model's
    ``nan_policy="drop"``, rows holding nulls or NaN get null in every output column.

    Returns
    -------
    n_rows : rows written
    """
    names = getattr(model, "feature_names_in_", None)
    nan_policy = getattr(model, "nan_policy", "raise")
    dataset = ParquetDataset.open(source, list(names) if names is not None else None, nan_policy=nan_policy)
    if len(dataset.columns) != model.n_features_in_:
        raise DataError(
            f"{dataset.files[0]}: input has {len(dataset.columns)} feature columns, the model expects {model.n_features_in_}"
        )
    keep = list(keep_columns)
    for f in dataset.files:
        present = pq.read_schema(f).names
        for name in keep:
            if name not in present:
                raise DataError(f"{f}: column {name!r} (from --keep-columns) not found; columns are {', '.join(present)}")
    params = model._params()
    fields = [pq.read_schema(dataset.files[0]).field(n) for n in keep] + [pa.field("component", pa.int64())]
    fields += [pa.field(f"proba_{k}", pa.float64()) for k in range(params.n_components)] if proba else []
    fields += [pa.field("log_likelihood", pa.float64())] if log_likelihood else []
    n_rows = 0
    with atomic_parquet_writer(dest, pa.schema(fields), overwrite) as writer:
        for rg in dataset.row_groups:
            X, weights = split_weights(read_row_group(rg, dataset.columns, nan_policy=nan_policy), len(dataset.columns))
            dropped = None if weights is None else weights == 0
            columns = {}
            if keep:
                kept = pq.ParquetFile(rg.path).read_row_group(rg.index, columns=keep)
                columns.update({n: kept.column(n) for n in keep})
            log_norm, log_resp = posterior.log_responsibilities(X, params)
            columns["component"] = pa.array(np.argmax(log_resp, axis=1).astype(np.int64), mask=dropped)
            if proba:
                resp = np.exp(log_resp)
                columns.update({f"proba_{k}": pa.array(resp[:, k], mask=dropped) for k in range(params.n_components)})
            if log_likelihood:
                columns["log_likelihood"] = pa.array(log_norm, mask=dropped)
            writer.write_table(pa.table(columns, schema=writer.schema))
            n_rows += X.shape[0]
    return n_rows
