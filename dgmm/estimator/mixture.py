"""``GaussianMixture``: scikit-learn's estimator API over the distributed EM of dgmm."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import numbers
import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.base import DensityMixin

from ..algorithms.em import EMResult, IterationCallback
from ..algorithms.smem import AcceptedMove
from ..data.inputs import Input, as_input, on_device, warn_id_like
from ..data.validation import NanPolicy
from ..errors import ConvergenceWarning, DataError, ParameterError
from ..execution.deadlines import STALL_TIMEOUT
from ..kernels import posterior
from ..kernels.estep import ComputeDType
from ..kernels.gaussian import CovarianceType
from ..kernels.init import InitMethod
from ..kernels.sampling import draw
from ..persist.checkpoint import Checkpoint, FitState
from ..persist.fitted import PARAMETER_ARRAYS, FittedState
from ..persist.formats import read_model_file, save_model
from ..persist.model_file import fitted_state
from . import interop, plots
from .base import Estimator
from .fitting import restarts_reached, run_fit, starting_model
from .normalisation import cmvn_column, normalised, without_group_column
from .parameters import (
    CachePolicy,
    Device,
    check_n_samples,
    check_random_state,
    checked_inits,
    param_error,
    passes_device,
    validate_params,
)
from .scoring import ScoringMixin

logger = logging.getLogger("dgmm")


class GaussianMixture(ScoringMixin, DensityMixin, Estimator):
    """Gaussian mixture fitted by exact EM, one pass over the data per iteration.

    Parameters have scikit-learn's names and meanings, plus:

    init_model : str, os.PathLike or GaussianMixture, optional
        A model file (a path or an fsspec URL, read with ``storage_options``), or a fitted mixture, to start EM
        from: yesterday's model for today's data. Its weights, means and covariances (and its lower bound, for
        the first convergence test) start EM as a warm start does, so ``n_init`` and ``init_params`` are ignored,
        and a warm start from a file equals a warm start from the same model in memory bit for bit. Its
        components, covariance type and features (count, and names when both have them) must be this model's:
        each difference is refused in one line. A checkpoint may be combined with it.
    client : distributed.Client, optional
        Cluster to fit on. Defaults: the current client if there is one; else a
        local cluster of worker processes on 127.0.0.1 for Parquet input; else
        Dask's threaded scheduler in this process (see :mod:`dgmm.execution.executor`).
    scheduler_address : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) to connect to for the
        fit when no ``client`` is given; the connection is closed afterwards.
    split_every : int, default 8
        Fan-in of the tree reduce of the per-chunk statistics.
    chunk_rows : int, optional
        Most rows per chunk: Parquet row groups larger than this are split; in-memory
        input is cut into chunks of this size (default 65,536).
    cache : "auto", "memory" or "none", default "auto"
        For Parquet and Dask input: "memory" persists the data in the cluster's memory
        once, "none" reads it again every iteration (memory bounded by a few chunks),
        "auto" persists only when it takes at most a quarter of the workers' free memory.
        The choice is the fitted attribute ``cache_used_`` (and is logged and printed
        when verbose); "device" when Parquet is fitted on GPUs, whose workers keep
        ``device_cache_gib`` of chunks there (none with "none"). In-memory input on a
        cluster is always sent once.
    nan_policy : "raise", "drop" or "marginalize", default "raise"
        Rows holding nulls or NaN: "raise" refuses them (naming file, column and row);
        "drop" leaves them out of the fit and of ``score``/``bic``/``aic``, and gives them
        label -1 and NaN probabilities and log-likelihoods; "marginalize" fits and scores every row on its
        observed values (exact EM over the observed margin, :mod:`dgmm.kernels.missing`; ``impute`` and
        ``sample_missing`` fill the holes), leaving out only rows with nothing observed. Infinities are always
        refused.
    dtype : "float64" or "float32", default "float64"
        Compute dtype of the E-step (densities and responsibilities, tile by tile);
        "float32" is faster, while the statistics are still accumulated in float64 and
        the parameters stay float64 (see :mod:`dgmm.kernels.estep`). Diag and spherical
        iterations whose component means lie ~100 σ or more apart run in float64,
        where float32 would lose the variances.
    split_merge : int, default 0
        After EM converges, try this many split-and-merge moves per round (Ueda et al.'s
        SMEM; 5 is their choice, 0 turns it off): merge two components whose
        responsibilities overlap most and split the least Gaussian one along its principal
        axis, run a few EM iterations from each move (sharing passes), and keep the best
        only when it raises the log-likelihood; repeat until no move helps. Needs K >= 3.
        The kept moves are the fitted attribute ``split_merge_moves_`` (see :mod:`dgmm.algorithms.smem`).
    stall_timeout : float, default 60
        On a cluster: seconds in a row without a running worker (all paused at their memory
        limit, or none connected) after which the fit ends with a ClusterError instead of
        waiting forever (see :mod:`dgmm.execution.deadlines`). A checkpoint, if given, is kept.
    cmvn : str, optional
        The name of a column of group ids (utterances) of DataFrame or Parquet input, never a feature: each
        group's rows are normalised to mean 0 and variance 1 per feature (cepstral mean and variance
        normalisation), computed in one pass before the fit and applied to every chunk as it is read, in
        the fit and whenever the model scores (the model file keeps the column's name). A feature constant
        within a group is only centred. On the CPU only.
    storage_options : dict, optional
        fsspec options (credentials, ``endpoint_url``, ...) for Parquet input and model files
        given as URLs (``s3://...``); never written to model files or checkpoints.
    device : "auto", "cpu" or "cuda", default "auto"
        Where the passes run. "auto": where the data lies (CuPy, torch and other array-API
        arrays on their device, in this process; CuPy-backed Dask arrays on their GPUs; Parquet
        on GPU workers when CuPy sees a GPU and the workers do; the rest on the CPU). "cpu":
        device arrays are copied to NumPy. "cuda": NumPy input is copied to the GPU, Parquet and
        Dask chunks are streamed to it (see :mod:`dgmm.data.devices`).
    device_cache_gib : float, optional
        With Parquet on GPUs: GiB of chunks each GPU worker keeps on its device; the rest are
        read every iteration. Default: half the device's free memory.

    ``init_params`` defaults to "kmeans", as scikit-learn's: k-means|| seeding (each of several restarts
    reducing its candidates by its own draw, so restarts explore) and a few Lloyd passes over all rows, out
    of core (:mod:`dgmm.algorithms.seeding`); "k-means||" stops after the seeding; "k-means++",
    "random_from_data" and "random" work on a row sample.

    Attributes
    ----------
    weights_ : (K,), means_ : (K, d), covariances_, precisions_, precisions_cholesky_
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, feature_names_in_
    n_rows_dropped_ : rows the fit left out: with nulls or NaN under ``nan_policy="drop"``, or of sample weight 0
    restart_lower_bounds_ : (n_init,) each restart's final lower bound; n_distinct_optima_ : how many optima they
        reached (gaps wider than ``tol``), None for one restart; logged, printed when verbose (not in model files)
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: CovarianceType = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: InitMethod = "kmeans",
        weights_init: np.ndarray | None = None,
        means_init: np.ndarray | None = None,
        precisions_init: np.ndarray | None = None,
        random_state: Any = None,
        init_model: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        client: Any = None,
        scheduler_address: str | None = None,
        split_every: int = 8,
        chunk_rows: int | None = None,
        cache: CachePolicy = "auto",
        nan_policy: NanPolicy = "raise",
        cmvn: str | None = None,
        dtype: ComputeDType = "float64",
        split_merge: int = 0,
        stall_timeout: float = STALL_TIMEOUT,
        storage_options: dict | None = None,
        device: Device = "auto",
        device_cache_gib: float | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.init_model = init_model
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.client = client
        self.scheduler_address = scheduler_address
        self.split_every = split_every
        self.chunk_rows = chunk_rows
        self.cache = cache
        self.nan_policy = nan_policy
        self.cmvn = cmvn
        self.dtype = dtype
        self.split_merge = split_merge
        self.stall_timeout = stall_timeout
        self.storage_options = storage_options
        self.device = device
        self.device_cache_gib = device_cache_gib

    # ------------------------------------------------------------------ validation
    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        columns: Sequence[str] | None = None,
        sample_weight: Any = None,
        on_iteration: IterationCallback | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> "GaussianMixture":
        """Fit by EM, keeping the best of ``n_init`` runs.

        Parameters
        ----------
        X : ndarray or DataFrame of shape (n, d), Dask array or DataFrame, Parquet path(s),
            or an opened :class:`~dgmm.data.parquet.ParquetDataset`
        columns : feature columns to read from Parquet input (default: all)
        sample_weight : per-row weights >= 0, shape (n,) (NumPy or Dask), or the name of a
            weight column of Parquet or DataFrame input (never a feature). A row of weight w
            counts as w rows: integer weights fit exactly as rows repeated that often.
        on_iteration : called with an :class:`~dgmm.algorithms.em.IterationReport` after every iteration
        checkpoint : a :class:`~dgmm.persist.checkpoint.Checkpoint`; the state is saved after every
            iteration, and with ``resume`` an interrupted fit continues exactly where it stopped
        """
        self._fit(X, columns, on_iteration, checkpoint, sample_weight)
        return self

    def fit_predict(self, X: Any, y: Any = None, *, columns: Sequence[str] | None = None, sample_weight: Any = None):
        """Fit, then label ``X`` with the fitted model, in the kind :meth:`predict` returns for ``X``."""
        data = self._fit(X, columns, sample_weight=sample_weight)
        if hasattr(X, "columns") and hasattr(X, "map_partitions"):  # a Dask DataFrame: a Series on its partitions
            return self.predict(X.drop(columns=[sample_weight]) if isinstance(sample_weight, str) else X)
        return self._apply(data, posterior.labels, "component", np.int64)

    def _fit(
        self,
        X: Any,
        columns: Sequence[str] | None,
        on_iteration: IterationCallback | None = None,
        checkpoint: Checkpoint | None = None,
        sample_weight: Any = None,
    ) -> Input:
        with checkpoint.claimed() if checkpoint is not None else contextlib.nullcontext():  # read once it is ours
            data, inits, state, do_init = self._start(X, columns, sample_weight, checkpoint)
            warn_id_like(data, stacklevel=3)  # the user's fit > _fit > here
            if state.finished is not None:  # the fit is over: its model, without a pass over the data
                moves = [AcceptedMove((i, j, k), before, after) for i, j, k, before, after in state.finished]
                best, self.cache_used_ = state.best, "none"
            else:
                best, moves, self.cache_used_ = run_fit(self, data, inits, state, do_init, on_iteration, checkpoint)
                if checkpoint is not None:
                    finished = tuple((*m.move, m.before, m.after) for m in moves)
                    checkpoint.save(FitState(state.seeds, len(state.seeds), None, best, finished), self.covariance_type)
        self.restart_lower_bounds_, self.n_distinct_optima_ = restarts_reached(self, best.restart_bounds)
        self._report_moves(moves)
        self._set_fitted(best, data)
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, "
                "or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return data

    def _start(
        self, X: Any, columns: Sequence[str] | None, sample_weight: Any, checkpoint: Checkpoint | None
    ) -> tuple[Input, tuple, FitState, bool]:
        """Every check a fit makes before touching the data: parameters, input, initial arrays, checkpoint.

        Returns the input, the initial arrays, where the fit stands (a resumed checkpoint's state)
        and whether it initialises (not a warm start).
        """
        validate_params(self)
        X, cmvn_groups = cmvn_column(X, self.cmvn)
        data = on_device(
            as_input(
                X,
                columns,
                self.chunk_rows,
                sample_weight,
                self.nan_policy,
                self.storage_options,
                exclude_columns=without_group_column(columns, self.cmvn),
            ),
            passes_device(self),
        )
        data = normalised(self, data, cmvn_groups)
        check_n_samples(data.n_rows, self.n_components)
        inits = checked_inits(self, data.n_features)
        source = starting_model(self, data)
        if source is not None:
            FittedState.of(source).apply(self)
        do_init = source is None and not (self.warm_start and hasattr(self, "converged_"))
        if not do_init and self.means_.shape[1] != data.n_features:
            raise DataError(f"X has {data.n_features} features, but the warm-started model has {self.means_.shape[1]}")
        if not do_init and checkpoint is not None and source is None:
            raise ParameterError(
                "checkpoint cannot be combined with a warm start from memory; fit without warm_start, or start "
                "from a model file (init_model=, --init-model)"
            )
        random_state = check_random_state(self.random_state)
        seeds = tuple(int(random_state.randint(np.iinfo(np.int32).max)) for _ in range(self.n_init if do_init else 1))
        state = FitState(seeds, 0)
        if checkpoint is not None:
            checkpoint.bind(self._settings(inits), data.fingerprint())
            state = checkpoint.load() or state
        return data, inits, state, do_init

    def check_checkpoint(
        self, X: Any, checkpoint: Checkpoint, *, columns: Sequence[str] | None = None, sample_weight: Any = None
    ) -> bool:
        """Raise, before any cluster starts, what ``fit(X, checkpoint=checkpoint)`` would refuse.

        A checkpoint of another run (without resume) or one written for other input or settings
        is a CheckpointError naming the difference; bad parameters or input their usual errors.
        Returns whether the fit is already over (its model is in the checkpoint: ``fit`` reads no data).
        """
        return self._start(X, columns, sample_weight, checkpoint)[2].finished is not None

    def _report_moves(self, moves: list) -> None:
        self.split_merge_moves_ = [(*m.move, m.before, m.after) for m in moves]
        for (i, j, k), before, after in ((m.move, m.before, m.after) for m in moves):
            message = (
                f"split/merge: merged components {i} and {j}, split {k}: "
                f"mean log-likelihood {before:.6f} -> {after:.6f}"
            )
            logger.info(message)
            if self.verbose:
                print(message)

    def _settings(self, inits: tuple) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed: parameters and initial arrays."""
        ignored = (
            "client",
            "scheduler_address",
            "verbose",
            "verbose_interval",
            "cache",
            "stall_timeout",
            "storage_options",
            "device_cache_gib",
        )
        settings = {k: v for k, v in self.get_params().items() if k not in ignored}
        if settings["init_model"] is not None:  # what it holds, not where it was read from
            arrays = (np.ascontiguousarray(getattr(self, f"{name}_")).tobytes() for name in PARAMETER_ARRAYS)
            settings["init_model"] = hashlib.sha256(b"".join(arrays)).hexdigest()
        for name, value in zip(("weights_init", "means_init", "precisions_init"), inits):
            settings[name] = (
                None if value is None else hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            )
        if not (settings["random_state"] is None or isinstance(settings["random_state"], numbers.Integral)):
            settings["random_state"] = "RandomState"
        return settings

    def _set_fitted(self, result: EMResult, data: Input) -> None:
        FittedState(
            result.params,
            result.converged,
            result.n_iter,
            result.lower_bound,
            tuple(result.lower_bounds),
            data.n_features,
            data.feature_names,
            result.n_zero_weight,
        ).apply(self)

    def to_sklearn(self):
        """A fitted ``sklearn.mixture.GaussianMixture`` of this model (same predictions; see :mod:`.interop`)."""
        return interop.to_sklearn(self)

    def to_onnx(self):
        """The fitted model as an ONNX graph (predict, predict_proba, score_samples; see :mod:`.interop`)."""
        return interop.to_onnx(self)

    @classmethod
    def from_sklearn(cls, fitted: Any, **params: Any) -> "GaussianMixture":
        """This estimator, fitted, from a fitted ``sklearn.mixture.GaussianMixture`` (see :mod:`.interop`)."""
        return interop.from_sklearn(cls, fitted, **params)

    def save(self, path: str, extra: dict | None = None, *, overwrite: bool = False) -> None:
        """Write the fitted model to a safe, versioned ``.npz`` file (see :mod:`dgmm.persist.model_file`).

        An existing file is replaced only with ``overwrite``.
        """
        save_model(self, path, extra, overwrite=overwrite, storage_options=self.storage_options)

    @classmethod
    def load(cls, path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> "GaussianMixture":
        """Read a model written by :meth:`save` (a path or an fsspec URL); every inconsistency is a ModelFileError,
        and so is a classifier file (:func:`dgmm.load_model` reads either)."""
        arrays, metadata = read_model_file(path, storage_options, classifier=False)
        return cls.from_file_contents(arrays, metadata, storage_options)

    @classmethod
    def from_file_contents(
        cls,
        arrays: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any],
        storage_options: Mapping[str, Any] | None = None,
    ) -> "GaussianMixture":
        """The fitted model of a model file's checked arrays and metadata (:func:`dgmm.persist.formats.read_model_file`);
        it reads data with ``storage_options``."""
        model = cls(**metadata["params"], storage_options=dict(storage_options) if storage_options else None)
        fitted_state(arrays, metadata).apply(model)
        return model

    def plot(self, X: Any = None, path: str | None = None, overwrite: bool = False):
        """Convergence curve and components over a sample ``X`` (n, d) of the data; a PNG at ``path``.

        Returns the matplotlib Figure (needs the ``plot`` extra). See :mod:`dgmm.estimator.plots`.
        """
        return plots.plot_model(self, None if X is None else np.asarray(X, dtype=np.float64), path, overwrite)

    def plot_convergence(self, ax: Any = None):
        """Mean log-likelihood per iteration on a matplotlib Axes."""
        return plots.plot_convergence(self, ax)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` rows from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, d)
        y : ndarray of shape (n_samples,), the component of each row
        """
        params = self.fitted_params()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise param_error("n_samples", n_samples, "an int >= 1")
        return draw(params, n_samples, check_random_state(self.random_state))
