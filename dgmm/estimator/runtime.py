"""Where a fit or a pass over data runs: one decision for every estimator and every kind of input.

:func:`runtime` resolves, for an estimator's settings (``client``, ``scheduler_address``, ``device``,
``cache``, ...) and its validated input, the executor the passes run on (a given or current client, a
remote scheduler, a local cluster of CPU or GPU workers, or this process: :func:`~dgmm.execution.executor.executor_for`)
and where the data lies for them (persisted, streamed, read into this process, kept on GPUs:
:func:`place_data`). ``fit``, ``select``, the classifier's fit and its per-group scoring all run here.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Any, Iterator

from ..data.devices import DEVICE_CACHE_SHARE, device_route
from ..data.inputs import Input, on_device
from ..errors import InputTypeError
from ..execution.executor import executor_for

logger = logging.getLogger("dgmm")
EVENT = "dgmm_event"  # a log record's (name, fields) for the command line's progress log (cli.app.events_to)


@dataclass(frozen=True)
class Runtime:
    """The executor passes run on, the array they run over, and the cache policy that placed it."""

    executor: Any
    array: Any
    cache_used: str


@contextlib.contextmanager
def runtime(estimator: Any, data: Input) -> Iterator[Runtime]:
    """Where ``estimator``'s passes over ``data`` run; a cluster started for them is closed on exit."""
    with executor_for(
        estimator.client,
        data.kind,
        data.chunk_rows,
        estimator.scheduler_address,
        estimator.stall_timeout,
        data.device,
        data.lazy_nbytes,
        estimator.cache,
    ) as executor:
        array, cache_used = place_data(estimator, executor, data)
        yield Runtime(executor, array, cache_used)


def scoring_input(data: Input, device: str) -> Input:
    """Where a fitted model scores ``data``: where its fit would run (:func:`~dgmm.data.inputs.on_device`), so
    ``device="cuda"`` scores NumPy input on the GPU as it fits it there, and the outputs come back as NumPy
    (NumPy in, NumPy out: ``Input.host_output``). An array on a device is scored there, in its library; a Dask
    DataFrame kept whole by its partitions on the CPU; Parquet and Dask input with ``device="cpu"`` on the CPU."""
    if data.kind == "xp" or data.frame is not None or (data.kind != "numpy" and device == "cpu"):
        return data
    placed = on_device(data, device)
    return replace(placed, host_output=True) if data.kind == "numpy" and placed.kind == "xp" else placed


def place_data(model: Any, executor, data: Input) -> tuple[Any, str]:
    """The array passes run over, cached per ``cache``; and what was chosen."""
    if data.kind in ("numpy", "xp"):
        if executor.client is None:
            return data.values, "memory"
        return executor.keep_in_memory(data.array), "memory"
    if data.device is not None and executor.device_count(data.device) < 1:
        if model.device == "cuda":
            raise InputTypeError(
                "device='cuda', but the cluster's workers see no GPU; connect to workers with "
                "GPUs (one per GPU, e.g. dask-cuda's), or use device='cpu'"
            )
        data = replace(data, device=None)  # "auto": the workers have no GPU, so the passes run on their CPUs
    if data.device is not None:
        array, chosen, message = device_array(model, executor, data)
    else:
        array, chosen = executor.cache(data.array, model.cache)
        where = (
            "read into this process"
            if executor.client is None and data.kind == "parquet"
            else "persisted in memory"
            if chosen == "memory"
            else "streamed every iteration"
        )
        message = f"cache={model.cache}: {where}"
    logger.info(
        "%s (%.0f MiB of float64)",
        message,
        data.array.nbytes / 2**20,
        extra={
            EVENT: ("cache", {"policy": model.cache, "used": chosen, "data_mib": round(data.array.nbytes / 2**20, 1)})
        },
    )
    if model.verbose:
        print(message)
    return array, chosen


def device_array(model: Any, executor, data: Input) -> tuple[Any, str, str]:
    """Parquet or Dask input whose passes run on a GPU: the array of device chunks, the cache chosen and
    a line saying so.

    - Parquet read by its own reader: chunks decoded into pinned memory and copied to the GPU; each
      worker keeps ``device_cache_gib`` of them there (half its free memory when None; nothing with
      ``cache="none"``) and reads the rest every iteration ("device").
    - Dask arrays whose chunks are on the GPU already (CuPy): persisted there per ``cache``, "auto"
      when they fit in the device cache budget of one worker.
    - Other input (Dask arrays of NumPy chunks, Parquet with an array of weights): cached on the host
      per ``cache``, each chunk copied to the GPU in every pass.
    """
    target = data.device
    budget = (
        0
        if model.cache == "none"
        else (None if model.device_cache_gib is None else int(model.device_cache_gib * 2**30))
    )
    route = device_route(data)
    if route == "reader":
        size = "half its free memory" if budget is None else f"{budget / 2**30:.3g} GiB"
        message = (
            f"cache=none: chunks read and copied to the {target} every iteration"
            if budget == 0
            else f"cache={model.cache}: chunks kept on the {target} up to {size} per worker, the rest read "
            "every iteration"
        )
        return executor.placed(data.dataset.to_dask(target, budget)), "device", message
    if route == "device":
        chosen = model.cache
        if chosen == "auto":
            room = budget if budget is not None else DEVICE_CACHE_SHARE * target.free_bytes()
            chosen = "memory" if data.lazy.nbytes <= room else "none"
        array = executor.keep_in_memory(data.lazy) if chosen == "memory" else data.lazy
        return array, chosen, f"cache={model.cache}: {'kept on' if chosen == 'memory' else 'streamed to'} the {target}"
    array, chosen = executor.cache(data.array, model.cache)
    where = "persisted in memory" if chosen == "memory" else "streamed every iteration"
    return (
        target.copied(array),
        chosen,
        f"cache={model.cache}: {where}, each chunk copied to the {target} in every pass",
    )
