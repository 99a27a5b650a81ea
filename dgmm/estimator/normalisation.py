"""Per-group feature normalisation (``cmvn=``: cepstral mean and variance normalisation per utterance),
applied on the fly to whatever a model fits or scores.

One pass over the input gives every group's mean and variance (:mod:`dgmm.kernels.moments`, merged in the
pass's tree); the table of groups (groups x 2 x d) then enters the graph once, and every chunk read — in
each EM iteration, each scoring pass — is normalised as it is read. A group may span chunks and files. The
model records the column (``cmvn``), so scoring with it normalises as its fit did.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..data.group_tables import group_normalised
from ..data.inputs import Input
from ..data.labels import as_labels, frame_column, with_codes
from ..data.parquet import ParquetDataset, is_path_input
from ..errors import DataError, ParameterError
from ..execution.executor import executor_for
from ..kernels.moments import moments_kernel

FROM_X = object()  # the groups of cmvn are X's column, found where X is read


def cmvn_column(X: Any, cmvn: str | None) -> tuple[Any, Any]:
    """``X`` without its group column and the groups, for a DataFrame; for Parquet, ``X`` as it is and the column's
    name (read with the rows); ``(X, None)`` without ``cmvn``."""
    if cmvn is None:
        return X, None
    if not isinstance(cmvn, str):
        raise ParameterError(f"cmvn={cmvn!r} is invalid; expected the name of a column of group ids (utterances)")
    if hasattr(X, "columns") and hasattr(X, "drop"):
        return frame_column(X, cmvn)
    if isinstance(X, ParquetDataset) or is_path_input(X):
        return X, cmvn
    raise DataError(
        f"cmvn={cmvn!r} names a column of group ids, which needs a DataFrame or Parquet input; this input has "
        "no columns: normalise each group's rows before fitting, or give a DataFrame with the group column"
    )


def label_and_groups(X: Any, name: Any, cmvn: str | None) -> tuple[Any, Any, Any]:
    """``X`` without a DataFrame's column ``name`` (labels, groups to score) and its group column, then the
    column ``name`` (or ``name`` as it is) and the groups of ``cmvn`` (:func:`cmvn_column`); one column may be
    both."""
    if cmvn is not None and isinstance(name, str) and name == cmvn and hasattr(X, "columns"):
        X, values = frame_column(X, name)
        return X, values, values
    X, values = frame_column(X, name)
    X, groups = cmvn_column(X, cmvn)
    return X, values, groups


def without_group_column(columns: Sequence[str] | None, cmvn: str | None) -> list[str] | None:
    """Columns of Parquet input left out of the features when none are chosen: the group column."""
    return [cmvn] if cmvn is not None and columns is None else None


def normalised(estimator: Any, data: Input, groups: Any) -> Input:
    """``data`` with each row's features normalised by its group's mean and standard deviation (``groups``: one
    group per row, or the name of a Parquet column); ``data`` as it is when ``groups`` is None.

    In-memory input is normalised at once; Parquet and Dask input lazily, after one pass for the moments."""
    if groups is None:
        return data
    if data.kind == "xp" or data.device is not None:
        raise ParameterError(f"cmvn={estimator.cmvn!r} normalises on the CPU; use device='cpu', or leave cmvn unset")
    labels = as_labels(groups, data, what="cmvn groups")
    coded = with_codes(data, labels.codes)
    payload = (data.n_features, data.weighted)
    if data.kind == "numpy":
        moments = moments_kernel(coded.values, payload, 0)
    else:  # where the estimator's passes over lazy data run (its client, its scheduler, a current client), else
        # on Dask's local threads, chunk by chunk: no local cluster is started for one pass
        with executor_for(
            estimator.client, "dask", data.chunk_rows, estimator.scheduler_address, estimator.stall_timeout
        ) as executor:
            moments = executor.map_reduce(coded.array, moments_kernel, payload, estimator.split_every)
    return group_normalised(data, coded, moments.normaliser(len(labels.classes)))
