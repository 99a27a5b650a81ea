"""``GaussianMixture``: scikit-learn's estimator API over the distributed EM of dgmm."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import numbers
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ..kernels import posterior
from .base import EstimatorMixin
from ..persist.checkpoint import Checkpoint, FitState, saving_callback
from ..algorithms.em import EMResult, IterationCallback, IterationReport, initial_params, run_em
from ..algorithms.smem import AcceptedMove, best_fit_steps, split_merge_steps
from ..algorithms.steps import run_steps
from ..errors import ConvergenceWarning, DataError, NotFittedError, ParameterError
from .validation import check_n_samples, check_random_state, checked_inits, param_error, validate_params
from ..kernels.estep import COMPUTE_DTYPES
from ..execution.deadlines import STALL_TIMEOUT
from ..execution.executor import IN_MEMORY_CHUNK_ROWS, executor_for
from ..data.inputs import Input, as_input
from ..kernels.params import MixtureParams
from ..kernels.weights import split_weights

logger = logging.getLogger("dgmm")


class GaussianMixture(EstimatorMixin):
    """Gaussian mixture fitted by exact EM, one pass over the data per iteration.

    Parameters have scikit-learn's names and meanings, plus:

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
        when verbose). In-memory input on a cluster is always sent once.
    nan_policy : "raise" or "drop", default "raise"
        Rows holding nulls or NaN: "raise" refuses them (naming file, column and row);
        "drop" leaves them out of the fit and of ``score``/``bic``/``aic``, and gives them
        label -1 and NaN probabilities and log-likelihoods. Infinities are always refused.
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
    storage_options : dict, optional
        fsspec options (credentials, ``endpoint_url``, ...) for Parquet input and model files
        given as URLs (``s3://...``); never written to model files or checkpoints.

    ``init_params`` defaults to "kmeans", as scikit-learn's: k-means|| seeding and a few
    Lloyd passes over all rows, out of core (:mod:`dgmm.algorithms.seeding`); "k-means||" stops after
    the seeding; "k-means++", "random_from_data" and "random" work on a row sample.

    Attributes
    ----------
    weights_ : (K,), means_ : (K, d), covariances_, precisions_, precisions_cholesky_
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, feature_names_in_
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: np.ndarray | None = None,
        means_init: np.ndarray | None = None,
        precisions_init: np.ndarray | None = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        client: Any = None,
        scheduler_address: str | None = None,
        split_every: int = 8,
        chunk_rows: int | None = None,
        cache: str = "auto",
        nan_policy: str = "raise",
        dtype: str = "float64",
        split_merge: int = 0,
        stall_timeout: float = STALL_TIMEOUT,
        storage_options: dict | None = None,
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
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.client = client
        self.scheduler_address = scheduler_address
        self.split_every = split_every
        self.chunk_rows = chunk_rows
        self.cache = cache
        self.nan_policy = nan_policy
        self.dtype = dtype
        self.split_merge = split_merge
        self.stall_timeout = stall_timeout
        self.storage_options = storage_options

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
        """Fit, then label ``X`` with the fitted model (NumPy, or lazy Dask for Dask/Parquet)."""
        data = self._fit(X, columns, sample_weight=sample_weight)
        return self._apply(data, posterior.labels, n_out=None, dtype=np.int64)

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
            if state.finished is not None:  # the fit is over: its model, without a pass over the data
                moves = [AcceptedMove((i, j, k), before, after) for i, j, k, before, after in state.finished]
                best, self.cache_used_ = state.best, "none"
            else:
                best, moves = self._run(data, inits, state, do_init, on_iteration, checkpoint)
                if checkpoint is not None:
                    finished = tuple((*m.move, m.before, m.after) for m in moves)
                    checkpoint.save(FitState(state.seeds, len(state.seeds), None, best, finished), self.covariance_type)
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

    def _start(self, X: Any, columns: Sequence[str] | None, sample_weight: Any,
               checkpoint: Checkpoint | None) -> tuple[Input, tuple, FitState, bool]:
        """Every check a fit makes before touching the data: parameters, input, initial arrays, checkpoint.

        Returns the input, the initial arrays, where the fit stands (a resumed checkpoint's state)
        and whether it initialises (not a warm start).
        """
        validate_params(self)
        if self.dtype not in COMPUTE_DTYPES:
            raise param_error("dtype", self.dtype, f"one of {', '.join(COMPUTE_DTYPES)}")
        data = as_input(X, columns, self.chunk_rows, sample_weight, self.nan_policy, self.storage_options)
        check_n_samples(data.n_rows, self.n_components)
        inits = checked_inits(self, data.n_features)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        if not do_init and self.means_.shape[1] != data.n_features:
            raise DataError(f"X has {data.n_features} features, but the warm-started model has {self.means_.shape[1]}")
        if not do_init and checkpoint is not None:
            raise ParameterError("checkpoint cannot be combined with a warm start; fit without warm_start")
        random_state = check_random_state(self.random_state)
        seeds = tuple(int(random_state.randint(np.iinfo(np.int32).max)) for _ in range(self.n_init if do_init else 1))
        state = FitState(seeds, 0)
        if checkpoint is not None:
            checkpoint.bind(self._settings(inits), data.fingerprint())
            state = checkpoint.load() or state
        return data, inits, state, do_init

    def check_checkpoint(self, X: Any, checkpoint: Checkpoint, *, columns: Sequence[str] | None = None,
                         sample_weight: Any = None) -> bool:
        """Raise, before any cluster starts, what ``fit(X, checkpoint=checkpoint)`` would refuse.

        A checkpoint of another run (without resume) or one written for other input or settings
        is a CheckpointError naming the difference; bad parameters or input their usual errors.
        Returns whether the fit is already over (its model is in the checkpoint: ``fit`` reads no data).
        """
        return self._start(X, columns, sample_weight, checkpoint)[2].finished is not None

    def _run(self, data: Input, inits: tuple, state: FitState, do_init: bool,
             on_iteration: IterationCallback | None, checkpoint: Checkpoint | None) -> tuple[EMResult, list]:
        """Initialisations, EM and split/merge rounds on the executor the fit runs on; the best result and moves."""
        with executor_for(self.client, data.kind, data.chunk_rows, self.scheduler_address,
                          self.stall_timeout) as executor:
            array, self.cache_used_ = self._place_data(executor, data)
            em = dict(tol=self.tol, max_iter=self.max_iter, reg_covar=self.reg_covar, dtype=self.dtype)
            if len(state.seeds) > 1 and do_init and checkpoint is None and on_iteration is None and not self.verbose:
                # every restart, initialisation and EM alike, shares each pass
                program = best_fit_steps(array.shape, state.seeds, self._init_settings(data.n_features, inits),
                                         split_merge=self.split_merge, **em)
            else:
                for init in range(state.init_index, len(state.seeds)):
                    result = self._run_init(executor, array, data.n_features, state, init, inits, do_init,
                                            on_iteration, checkpoint)
                    best = state.best if state.best is not None and state.best.lower_bound >= result.lower_bound else result
                    state = FitState(state.seeds, init + 1, None, best)
                    if checkpoint is not None:
                        checkpoint.save(state, self.covariance_type)
                program = split_merge_steps(state.best, n_candidates=self.split_merge, **em)
            return run_steps(executor, array, self.split_every, program)

    def _place_data(self, executor, data: Input) -> tuple[Any, str]:
        """The array passes run over, cached per ``cache``; and what was chosen."""
        if data.kind == "numpy":
            if executor.client is None:
                return data.values, "memory"
            return executor.keep_in_memory(data.array), "memory"
        array, chosen = executor.cache(data.array, self.cache)
        message = f"cache={self.cache}: {'persisted in memory' if chosen == 'memory' else 'streamed every iteration'}"
        logger.info("%s (%.0f MiB of float64)", message, data.array.nbytes / 2**20)
        if self.verbose:
            print(message)
        return array, chosen

    def _run_init(self, executor, array, n_features: int, state: FitState, init: int, inits, do_init: bool,
                  on_iteration: IterationCallback | None, checkpoint: Checkpoint | None) -> EMResult:
        """One initialisation and its EM run, or the rest of it when resuming."""
        if self.verbose:
            print(f"Initialization {init}")
        current = state.current if state.init_index == init else None
        if current is not None and (current.converged or current.n_iter >= self.max_iter):
            return current
        if current is not None:
            params, start, history = current.params, current.lower_bound, current.lower_bounds
        elif do_init:
            params = initial_params(executor, array, split_every=self.split_every, seed=state.seeds[init],
                                    **self._init_settings(n_features, inits))
            start, history = -math.inf, []
        else:
            params, start, history = self._params(), self.lower_bound_, []
        if self.max_iter == 0:
            return EMResult(params, False, 0, -math.inf, [])
        callback = self._iteration_callback(on_iteration)
        if checkpoint is not None:
            callback = saving_callback(callback, checkpoint, state, init, self.covariance_type)
        result = run_em(
            executor,
            array,
            params,
            tol=self.tol,
            max_iter=self.max_iter,
            reg_covar=self.reg_covar,
            split_every=self.split_every,
            lower_bound=start,
            history=history,
            on_iteration=callback,
            dtype=self.dtype,
        )
        if self.verbose:
            outcome = "converged" if result.converged else "did not converge"
            print(f"Initialization {outcome}. lower bound {result.lower_bound:.5f}")
        return result

    def _init_settings(self, n_features: int, inits: tuple) -> dict[str, Any]:
        """:func:`~dgmm.algorithms.em.init_steps` keywords but the seed."""
        weights_init, means_init, precisions_init = inits
        return dict(n_components=self.n_components, n_features=n_features, covariance_type=self.covariance_type,
                    method=self.init_params, reg_covar=self.reg_covar, weights_init=weights_init,
                    means_init=means_init, precisions_init=precisions_init)

    def _report_moves(self, moves: list) -> None:
        self.split_merge_moves_ = [(*m.move, m.before, m.after) for m in moves]
        for (i, j, k), before, after in ((m.move, m.before, m.after) for m in moves):
            message = (f"split/merge: merged components {i} and {j}, split {k}: "
                       f"mean log-likelihood {before:.6f} -> {after:.6f}")
            logger.info(message)
            if self.verbose:
                print(message)

    def _settings(self, inits: tuple) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed: parameters and initial arrays."""
        ignored = ("client", "scheduler_address", "verbose", "verbose_interval", "cache", "stall_timeout",
                   "storage_options")
        settings = {k: v for k, v in self.get_params().items() if k not in ignored}
        for name, value in zip(("weights_init", "means_init", "precisions_init"), inits):
            settings[name] = None if value is None else hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        if not (settings["random_state"] is None or isinstance(settings["random_state"], numbers.Integral)):
            settings["random_state"] = "RandomState"
        return settings

    def _iteration_callback(self, extra: IterationCallback | None) -> IterationCallback | None:
        if self.verbose < 2:
            return extra

        def report(it: IterationReport) -> None:
            if it.n_iter % self.verbose_interval == 0 or it.n_iter == 1:
                print(f"  Iteration {it.n_iter}\t time lapse {it.seconds:.5f}s\t ll change {it.change:.5f}")
            if extra is not None:
                extra(it)

        return report

    def _set_fitted(self, result: EMResult, data: Input) -> None:
        p = result.params
        self.weights_ = p.weights
        self.means_ = p.means
        self.covariances_ = p.covariances
        self.precisions_cholesky_ = p.precisions_cholesky
        self.precisions_ = p.precisions
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = list(result.lower_bounds)
        self.n_features_in_ = data.n_features
        if data.feature_names is not None:
            self.feature_names_in_ = data.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _params(self) -> MixtureParams:
        if not hasattr(self, "means_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )
        return MixtureParams(
            self.weights_, self.means_, self.covariances_, self.precisions_cholesky_, self.covariance_type
        )

    # ------------------------------------------------------------------ inference
    def _scoring_input(self, X: Any) -> Input:
        self._params()
        names = getattr(self, "feature_names_in_", None)
        from ..data.parquet import is_path_input

        data = as_input(X, list(names) if names is not None and is_path_input(X) else None,
                        nan_policy=getattr(self, "nan_policy", "raise"), storage_options=self.storage_options)
        if data.n_features != self.n_features_in_:
            raise DataError(
                f"X has {data.n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        if names is not None and data.feature_names is not None and list(data.feature_names) != list(names):
            raise DataError(
                f"feature names {list(data.feature_names)} differ from those seen in fit {list(names)}"
            )
        return data

    def _apply(self, data: Input, kernel: Callable, n_out: int | None, dtype) -> Any:
        """Apply a posterior kernel by row blocks: NumPy in, NumPy out; Dask in, lazy Dask out."""
        params = self._params()
        if data.weighted:  # rows dropped by nan_policy get -1 / NaN
            kernel = functools.partial(_kept_rows_only, kernel)
        if data.kind == "numpy":
            values = data.values
            step = IN_MEMORY_CHUNK_ROWS
            return np.concatenate([kernel(values[i : i + step], params) for i in range(0, len(values), step)])
        from dask import delayed

        shared = delayed(params, traverse=False)
        chunks = {"drop_axis": 1} if n_out is None else {"chunks": (data.array.chunks[0], (n_out,))}
        return data.array.map_blocks(kernel, shared, dtype=dtype, **chunks)

    def predict(self, X: Any):
        """Most probable component of each row, shape (n,)."""
        return self._apply(self._scoring_input(X), posterior.labels, None, np.int64)

    def predict_proba(self, X: Any):
        """Posterior probability of each component, shape (n, K)."""
        return self._apply(self._scoring_input(X), posterior.responsibilities, self.n_components, np.float64)

    def score_samples(self, X: Any):
        """Log-likelihood ``log p(x_n)`` of each row, shape (n,)."""
        return self._apply(self._scoring_input(X), posterior.log_density, None, np.float64)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per row (a float; lazy input is computed)."""
        return self.score_summary(X)["mean_log_likelihood"]

    def score_summary(self, X: Any) -> dict[str, float]:
        """Rows, mean log-likelihood, BIC and AIC of ``X`` in one pass."""
        data = self._scoring_input(X)
        values = self._apply(data, posterior.log_density, None, np.float64)
        if data.kind == "numpy":  # rows dropped by nan_policy are NaN and not counted
            kept = ~np.isnan(values)
            total, n = float(values[kept].sum()), int(kept.sum())
        else:
            import dask
            import dask.array as da

            kept = ~da.isnan(values)
            total, n = dask.compute(da.where(kept, values, 0.0).sum(), kept.sum())
            total, n = float(total), int(n)
        if n == 0:
            raise DataError("every row holds nulls or NaN and was dropped; nothing to score")
        mean = float(total) / n
        n_params = self._params().n_free_parameters()
        return {
            "n_samples": n,
            "mean_log_likelihood": mean,
            "bic": -2 * mean * n + n_params * math.log(n),
            "aic": -2 * mean * n + 2 * n_params,
        }

    def bic(self, X: Any) -> float:
        """Bayesian information criterion; lower is better."""
        return self.score_summary(X)["bic"]

    def aic(self, X: Any) -> float:
        """Akaike information criterion; lower is better."""
        return self.score_summary(X)["aic"]

    def save(self, path: str, extra: dict | None = None, *, overwrite: bool = False) -> None:
        """Write the fitted model to a safe, versioned ``.npz`` file (see :mod:`dgmm.persist.model_file`).

        An existing file is replaced only with ``overwrite``.
        """
        from ..persist.model_file import save_model

        save_model(self, path, extra, overwrite=overwrite, storage_options=self.storage_options)

    @classmethod
    def load(cls, path: str) -> "GaussianMixture":
        """Read a model written by :meth:`save`; every inconsistency is a ModelFileError."""
        from ..persist.model_file import load_model

        return load_model(path)

    def plot(self, X: Any = None, path: str | None = None, overwrite: bool = False):
        """Convergence curve and components over a sample ``X`` (n, d) of the data; a PNG at ``path``.

        Returns the matplotlib Figure (needs the ``plot`` extra). See :mod:`dgmm.estimator.plots`.
        """
        from .plots import plot_model

        return plot_model(self, None if X is None else np.asarray(X, dtype=np.float64), path, overwrite)

    def plot_convergence(self, ax: Any = None):
        """Mean log-likelihood per iteration on a matplotlib Axes."""
        from .plots import plot_convergence

        return plot_convergence(self, ax)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` rows from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, d)
        y : ndarray of shape (n_samples,), the component of each row
        """
        params = self._params()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise param_error("n_samples", n_samples, "an int >= 1")
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, params.weights)
        d = params.n_features
        parts = []
        for k, count in enumerate(counts):
            if self.covariance_type in ("full", "tied"):
                cov = params.covariances[k] if self.covariance_type == "full" else params.covariances
                parts.append(rng.multivariate_normal(params.means[k], cov, int(count)))
            else:
                scale = np.sqrt(params.covariances[k])
                parts.append(params.means[k] + rng.standard_normal(size=(int(count), d)) * scale)
        y = np.concatenate([np.full(int(c), k, dtype=np.int64) for k, c in enumerate(counts)])
        return np.vstack(parts), y


def _kept_rows_only(kernel: Callable, block: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``kernel`` on the features of a weighted block; rows of weight 0 give -1 (labels) or NaN."""
    X, weights = split_weights(block, params.means.shape[1])
    out = kernel(X, params)
    dropped = weights == 0
    if dropped.any():
        out = out.astype(np.float64) if out.dtype.kind == "f" else out
        out[dropped] = -1 if out.dtype.kind in "iu" else np.nan
    return out

