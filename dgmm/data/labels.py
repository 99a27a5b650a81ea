"""Class labels of the rows, for per-class fits: the sorted classes and one code per row, aligned
with the data's row chunks.

Labels come as an array (NumPy, pandas, a list, Dask) or as the name of a label column of Parquet
input (a file column or a hive partition key such as ``speaker=alice/``). Codes are the index of
each row's class in the sorted classes, as float64 (exact for any realistic number of classes), so
they travel as one more column of the data's chunks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ..errors import COLUMNS_HINT, DataError, spell
from .devices import is_device_array
from .inputs import Input
from .parquet import ParquetDataset, read_table
from .sources import RowGroup, find_parquet_files, open_input


@dataclass(frozen=True)
class Labels:
    """The classes (C,), sorted; rows per class (C,); codes (n,) float64, NumPy or Dask on the data's chunks."""

    classes: np.ndarray
    counts: np.ndarray
    codes: Any


def as_labels(y: Any, data: Input, what: str = "y") -> Labels:
    """Validate ``y`` against ``data`` (one label per row, no nulls) and code it.

    ``y`` is an array-like of n labels, or, for Parquet input, the name of a label column. An
    (n, 1) column is flattened with scikit-learn's DataConversionWarning. Dask labels cost one pass
    over them for the classes and one for the counts. ``what`` names them in messages ("y", "groups").
    """
    if isinstance(y, str):
        if data.dataset is None:
            raise DataError(
                f"{what}={y!r} names a column, which needs Parquet input; give one value per row as an array"
            )
        return _lazy_labels(label_column(data.dataset, y), data, f"column {y!r}")
    if type(y).__module__.split(".")[0] in ("dask", "dask_expr"):
        labels = y.to_dask_array() if hasattr(y, "to_dask_array") else y
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        return _lazy_labels(labels, data, what)
    if y is None:
        raise DataError(f"requires {what} to be passed, but the target {what} is None; give the class of every row")
    labels = _column_vector(np.asarray(y))
    if labels.shape[0] != data.n_rows:
        raise DataError(f"{what} has {labels.shape[0]} values but X has {data.n_rows} rows; give one per row")
    _check_no_nulls(labels, what)
    _check_discrete(labels)
    classes, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(classes))
    codes = codes.astype(np.float64)
    if data.kind not in ("numpy", "xp"):
        import dask.array as da

        codes = da.from_array(codes, chunks=(data.array.chunks[0],))
    return Labels(classes, counts, codes)


def label_positions(wanted: Any, known: np.ndarray) -> np.ndarray:
    """The index in ``known`` of each of ``wanted`` (int64), -1 where it is not there. Labels match as they are;
    numbers whatever their type (a group read back as ``3.0`` is ``3``); others as text when the types differ
    (``1`` read from Parquet as ``"1"``)."""
    wanted, known = np.asarray(wanted), np.asarray(known)
    if wanted.dtype.kind in "iuf" and known.dtype.kind in "iuf":
        key = float
    elif wanted.dtype.kind != known.dtype.kind:
        key = str
    else:
        key = lambda value: value  # noqa: E731
    index = {key(value): i for i, value in enumerate(known.tolist())}
    return np.asarray([index.get(key(value), -1) for value in wanted.tolist()], dtype=np.int64)


def no_codes(data: Input) -> Any:
    """A code of -1 (no class) for every row, on the data's chunks: NumPy for in-memory data, else Dask."""
    codes = np.full(data.n_rows, -1.0)
    if data.kind in ("numpy", "xp"):
        return codes
    import dask.array as da

    return da.from_array(codes, chunks=(data.array.chunks[0],))


def with_codes(data: Input, codes: Any) -> Input:
    """The data with the class codes as its last column, chunk for chunk (the layout of ``class_rows``); data on a
    device (an array-API array, a Dask array of CuPy chunks) gets its codes there, and lazy data keeps its GPU."""
    if data.kind == "numpy":
        return Input(
            "numpy",
            data.feature_names,
            np.column_stack([data.values, codes]),
            chunk_rows=data.chunk_rows,
            weighted=data.weighted,
        )
    if data.kind == "xp":
        from ..kernels.arrays import namespace

        xp = namespace(data.values)
        on_device = xp.asarray(np.asarray(codes, dtype=np.float64), device=data.values.device)
        return Input(
            "xp",
            data.feature_names,
            xp.concat([xp.astype(data.values, xp.float64), on_device[:, None]], axis=1),
            chunk_rows=data.chunk_rows,
            weighted=data.weighted,
        )
    import dask.array as da

    column = codes[:, None]
    if data.device is not None and is_device_array(data.lazy._meta):  # CuPy chunks: the codes join them there
        column = data.device.copied(column)
    array = da.concatenate([data.array, column], axis=1).rechunk({1: -1})
    return Input(
        data.kind,
        data.feature_names,
        lazy=array,
        dataset=data.dataset,
        chunk_rows=data.chunk_rows,
        weighted=data.weighted,
        device=data.device,
    )


def frame_column(X: Any, name: Any) -> tuple[Any, Any]:
    """For a pandas or Dask DataFrame and a column name: the frame without that column, and the column
    (labels or groups are never features); anything else is returned as it is."""
    if not (isinstance(name, str) and hasattr(X, "columns") and hasattr(X, "drop")):
        return X, name
    if name not in X.columns:
        raise DataError(f"column {name!r} not found; columns are {', '.join(map(str, X.columns))}")
    return X.drop(columns=[name]), X[name]


def _column_vector(labels: np.ndarray) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        from sklearn.exceptions import DataConversionWarning

        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
            "(n_samples,), for example using ravel().",
            DataConversionWarning,
            stacklevel=4,
        )
        return labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"y has shape {labels.shape}; expected one label per row, shape (n_samples,)")
    return labels


def _check_discrete(labels: np.ndarray) -> None:
    """Refuse continuous targets (a regression's y), as scikit-learn's classifiers do."""
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise DataError(
            "Unknown label type: continuous. y holds non-integer numbers; a classifier needs class "
            "labels (integers or strings)"
        )


def _check_no_nulls(labels: np.ndarray, where: str) -> None:
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise DataError(f"{where} holds NaN at row {int(np.argmax(np.isnan(labels)))}; every row needs a class")
    if labels.dtype.kind == "O":
        missing = np.asarray([v is None or (isinstance(v, float) and v != v) for v in labels])
        if missing.any():
            raise DataError(f"{where} holds a null at row {int(np.argmax(missing))}; every row needs a class")


def _chunk_classes(block: np.ndarray) -> np.ndarray:
    _check_no_nulls(block, "the labels")
    return np.unique(block)


def _lazy_labels(labels: Any, data: Input, where: str) -> Labels:
    """Classes and counts of Dask labels (two passes over them), codes on the data's chunks."""
    import dask
    import dask.array as da

    if any(np.isnan(c) for c in labels.chunks[0]):
        labels = labels.compute_chunk_sizes()
    if labels.shape[0] != data.n_rows:
        raise DataError(f"{where} has {labels.shape[0]} values but X has {data.n_rows} rows; give one per row")
    parts = dask.compute(*[dask.delayed(_chunk_classes)(block) for block in labels.to_delayed().ravel()])
    classes = np.unique(np.concatenate(parts)) if parts else np.empty(0)
    codes = labels.map_blocks(_codes, classes, dtype=np.float64)
    if data.kind != "numpy":
        codes = codes.rechunk((data.array.chunks[0],))
    counts = da.bincount(codes.astype(np.int64), minlength=len(classes)).compute()
    return Labels(classes, counts, codes.compute() if data.kind == "numpy" else codes)


def _codes(block: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, block).astype(np.float64)


def label_column(dataset: ParquetDataset, name: str):
    """The values of column ``name`` (a file column or a hive partition key) as a Dask array (n,),
    one chunk per chunk of ``dataset``; a missing column is a DataError listing the columns."""
    import dask.array as da
    from dask.base import tokenize

    first = dataset.row_groups[0]
    _check_label(first.path, first.partitions, name, dataset.storage_options)
    if name in dataset.columns:
        raise DataError(f"column {name!r} is also a feature column; leave it out of {spell(*COLUMNS_HINT)}")
    reader = LabelReader(dataset, name)
    return da.from_array(
        reader,
        chunks=(dataset.chunks,),
        name="labels-" + tokenize(dataset.fingerprint(), name, dataset.chunks),
        meta=np.empty((0,), dtype=object),
        asarray=False,
        lock=False,
        fancy=False,
        inline_array=False,
    )


def check_label_column(path: Any, name: str, storage_options: Any = None) -> None:
    """Refuse (DataError, listing the columns) a label column the first file of ``path`` lacks."""
    first = find_parquet_files(path, storage_options)[0]
    _check_label(first.path, first.partitions, name, storage_options)


def _check_label(path: str, partitions: tuple, name: str, storage_options: Any) -> None:
    if name in dict(partitions):
        return
    with open_input(path, storage_options) as handle:
        names = pq.read_schema(handle).names
    if name not in names:
        keys = [key for key, _ in partitions]
        raise DataError(f"{path}: column {name!r} not found; columns are {', '.join(names + keys)}")


class LabelReader:
    """Array-like (n,) of one column's values over row groups, for ``dask.array.from_array``."""

    def __init__(self, dataset: ParquetDataset, name: str):
        self.row_groups, self.name = dataset.row_groups, name
        self.starts = np.cumsum([0] + [rg.n_rows for rg in self.row_groups])
        self.shape, self.dtype, self.ndim = (int(self.starts[-1]),), np.dtype(object), 1

    def __getitem__(self, key) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        start, stop, _ = rows.indices(self.shape[0])
        pieces = []
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        while i < len(self.row_groups) and self.starts[i] < stop:
            values = _read_labels(self.row_groups[i], self.name)
            pieces.append(values[max(start - self.starts[i], 0) : min(stop, self.starts[i + 1]) - self.starts[i]])
            i += 1
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0]


def _read_labels(row_group: RowGroup, name: str) -> np.ndarray:
    partitions = dict(row_group.partitions)
    if name in partitions:
        return np.full(row_group.n_rows, partitions[name], dtype=object)
    column = read_table(row_group, [name]).column(name)
    if column.null_count:
        raise DataError(
            f"{row_group.path}: column {name!r} holds {column.null_count} nulls in row group "
            f"{row_group.index}; every row needs a value (drop those rows first)"
        )
    return column.to_numpy(zero_copy_only=False)


def shown(label: Any) -> str:
    """A class label as users wrote it (``'ann'``, not ``np.str_('ann')``)."""
    return repr(label.item() if isinstance(label, np.generic) else label)
