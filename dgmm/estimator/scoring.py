"""What a fitted mixture computes on data: labels, probabilities, log-densities, scores, BIC and AIC."""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable

import numpy as np

from ..data.devices import device_route
from ..data.inputs import IN_MEMORY_CHUNK_ROWS, Input, as_input
from ..data.parquet import is_path_input
from ..errors import DataError, NotFittedError, ParameterError
from ..execution.rows import finite_total, map_block_rows, map_partitions_rows, map_rows
from ..kernels import missing, posterior
from ..kernels.arrays import to_numpy
from ..kernels.criteria import information_criteria
from ..kernels.device.posterior import xp_posterior
from ..kernels.params import MixtureParams
from .normalisation import FROM_X, cmvn_column, normalised, without_group_column
from .parameters import check_random_state, passes_device
from .runtime import scoring_input


class ScoringMixin:
    """Inference of a fitted mixture, on NumPy (eagerly, by blocks of rows) or lazily on Dask and Parquet input.

    The class using it has ``n_components``, ``covariance_type``, ``nan_policy``, ``storage_options``
    and, once fitted, the attributes ``weights_``, ``means_``, ``covariances_``,
    ``precisions_cholesky_`` and ``n_features_in_`` (``feature_names_in_`` when fitted on named columns).
    """

    def fitted_params(self) -> MixtureParams:
        """The fitted parameters as one :class:`~dgmm.MixtureParams`; NotFittedError before ``fit``."""
        if not hasattr(self, "means_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )
        return MixtureParams(
            self.weights_, self.means_, self.covariances_, self.precisions_cholesky_, self.covariance_type
        )

    def predict(self, X: Any):
        """Most probable component of each row, shape (n,).

        In the input's kind: NumPy for in-memory input; a lazy Dask array of the same row chunks
        for a Dask array or Parquet; a lazy Dask Series named ``component`` with the partitions
        and index of a Dask DataFrame (likewise below).
        """
        return self._apply(self._scoring_input(X), posterior.labels, "component", np.int64)

    def predict_proba(self, X: Any):
        """Posterior probability of each component, shape (n, K); columns ``proba_k`` for a Dask DataFrame."""
        return self._apply(
            self._scoring_input(X),
            posterior.responsibilities,
            [f"proba_{k}" for k in range(self.n_components)],
            np.float64,
        )

    def score_samples(self, X: Any):
        """Log-likelihood ``log p(x_n)`` of each row, shape (n,); a Series ``log_likelihood`` for a Dask DataFrame."""
        return self._apply(self._scoring_input(X), posterior.log_density, "log_likelihood", np.float64)

    def impute(self, X: Any):
        """``X`` with each missing value (NaN; null in Parquet) replaced by its conditional mean under the mixture,
        ``E[x_m | x_o] = Σ_k p(k | x_o) (μ_km + Σ_k,mo Σ_k,oo⁻¹ (x_o − μ_ko))``, shape (n, d), in the input's kind
        (lazy for Dask and Parquet input; :func:`dgmm.impute_to_parquet` writes Parquet). A row with nothing observed
        gets the mixture's mean. Needs ``nan_policy="marginalize"`` (missing values are otherwise refused)."""
        self._needs_marginalize("impute")
        columns = [str(c) for c in getattr(self, "feature_names_in_", range(self.n_features_in_))]
        return self._apply(self._scoring_input(X), missing.conditional_means, columns, np.float64)

    def sample_missing(self, X: Any, n_imputations: int = 5, random_state: Any = None):
        """Multiple imputation: ``n_imputations`` completions of ``X``, each missing value drawn from p(x_m | x_o)
        under the mixture (a component from p(k | x_o), then its conditional Gaussian), shape
        (n_imputations, n, d); observed values are kept. NumPy for in-memory input, a lazy Dask array of the same
        row chunks for Dask and Parquet input; the draws are functions of the seed and the global row index, so
        no chunking changes them. Needs ``nan_policy="marginalize"``."""
        self._needs_marginalize("sample_missing")
        if not (isinstance(n_imputations, numbers.Integral) and n_imputations >= 1):
            raise ParameterError(f"n_imputations must be an int >= 1, got {n_imputations!r}")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        data, params = self._scoring_input(X, keep_frame=False), self.fitted_params()
        if data.kind == "numpy":
            return missing.draw_imputations(data.values, params, seed, int(n_imputations))
        return data.array.map_blocks(
            missing.draw_imputations,  # (its block_info places each block among the rows)
            params,
            seed,
            int(n_imputations),
            new_axis=0,
            chunks=((int(n_imputations),), data.array.chunks[0], data.array.chunks[1]),
            dtype=np.float64,
        )

    def _needs_marginalize(self, what: str) -> None:
        if getattr(self, "nan_policy", "raise") != "marginalize":
            raise ParameterError(
                f"{what} needs nan_policy='marginalize' (this model has {getattr(self, 'nan_policy', 'raise')!r}): "
                "set_params(nan_policy='marginalize') first; a model fitted otherwise imputes just as well"
            )

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per row (a float; lazy input is computed)."""
        return self.score_summary(X)["mean_log_likelihood"]

    def score_summary(self, X: Any) -> dict[str, float]:
        """Rows, mean log-likelihood, BIC and AIC of ``X`` in one pass (rows dropped by nan_policy not counted)."""
        data = self._scoring_input(X)
        total, n = finite_total(self._apply(data, posterior.log_density, "log_likelihood", np.float64))
        if n == 0:
            raise DataError("every row holds nulls or NaN and was dropped; nothing to score")
        mean = float(total) / n
        bic, aic = information_criteria(mean * n, self.fitted_params().n_free_parameters(), n)
        return {"n_samples": n, "mean_log_likelihood": mean, "bic": bic, "aic": aic}

    def bic(self, X: Any) -> float:
        """Bayesian information criterion; lower is better."""
        return self.score_summary(X)["bic"]

    def aic(self, X: Any) -> float:
        """Akaike information criterion; lower is better."""
        return self.score_summary(X)["aic"]

    def _scoring_input(
        self,
        X: Any,
        keep_frame: bool = True,
        nan_policy: str | None = None,
        device: str | None = None,
        cmvn_groups: Any = FROM_X,
    ) -> Input:
        """``X`` as input to score, its features checked against the fit's, placed where ``device`` (default:
        the model's) says (a Dask DataFrame kept as it is unless ``keep_frame`` is False; ``nan_policy``
        default: the model's), normalised per group as the fit was (``cmvn``: the groups are the column of
        ``X`` the model names, unless ``cmvn_groups`` gives them, taken from ``X`` already)."""
        self.fitted_params()
        names = getattr(self, "feature_names_in_", None)
        if cmvn_groups is FROM_X:
            X, cmvn_groups = cmvn_column(X, getattr(self, "cmvn", None))
        chosen = list(names) if names is not None and is_path_input(X) else None
        data = as_input(
            X,
            chosen,
            nan_policy=nan_policy or getattr(self, "nan_policy", "raise"),
            storage_options=self.storage_options,
            keep_frame=keep_frame and cmvn_groups is None,
            exclude_columns=without_group_column(chosen, getattr(self, "cmvn", None)),
        )
        data = scoring_input(data, device or passes_device(self))
        if data.n_features != self.n_features_in_:
            raise DataError(
                f"X has {data.n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        if names is not None and data.feature_names is not None and list(data.feature_names) != list(names):
            raise DataError(f"feature names {list(data.feature_names)} differ from those seen in fit {list(names)}")
        return normalised(self, data, cmvn_groups)

    def _apply(self, data: Input, kernel: Callable, columns: str | list[str], dtype) -> Any:
        """Apply a posterior kernel by row blocks: NumPy in, NumPy out; Dask in, lazy Dask out.

        ``columns``: the output's name (one value per row) or column names (several).
        """
        params = self.fitted_params()
        if data.kind == "xp":  # on the array's device, in its library (NumPy input placed there: back as NumPy)
            out = device_posterior(data, kernel, params)
            return to_numpy(out) if data.host_output else out
        if data.device is not None:  # Parquet or Dask chunks scored on a GPU, each output back on the host
            return map_block_rows(
                device_chunks(data),
                functools.partial(host_rows, kernel.__name__, data.n_features, data.weighted),
                params,
                None if isinstance(columns, str) else len(columns),
                dtype,
            )
        if data.frame is not None:
            policy = "drop" if data.weighted else getattr(self, "nan_policy", "raise")
            return map_partitions_rows(data.frame, kernel, params, columns, dtype, policy)
        if data.weighted:  # rows dropped by nan_policy get -1 / NaN
            kernel = functools.partial(posterior.kept_rows_only, kernel)
        if data.kind == "numpy":
            values = data.values
            step = IN_MEMORY_CHUNK_ROWS
            return np.concatenate([kernel(values[i : i + step], params) for i in range(0, len(values), step)])
        return map_rows(data.array, kernel, params, None if isinstance(columns, str) else len(columns), dtype)


def device_posterior(data: Input, kernel: Callable, params: MixtureParams) -> Any:
    """A posterior kernel's output for array-API input, computed on its device (rows dropped by
    nan_policy get -1 or NaN, as :func:`dgmm.kernels.posterior.kept_rows_only` gives them)."""
    return device_rows(data.values, params, kernel.__name__, data.n_features, data.weighted)


def device_rows(values: Any, params: MixtureParams, output: str, n_features: int, weighted: bool) -> Any:
    """:func:`~dgmm.kernels.device.posterior.xp_posterior` of a block of features [and a weight column]."""
    dropped = values[:, n_features] == 0 if weighted else None
    return xp_posterior(values[:, :n_features], params, output, dropped)


def host_rows(output: str, n_features: int, weighted: bool, block: Any, params: MixtureParams) -> np.ndarray:
    """:func:`device_rows` of a chunk on a GPU, copied back as NumPy (a task of :func:`map_block_rows`)."""
    return to_numpy(device_rows(block, params, output, n_features, weighted))


def device_chunks(data: Input) -> Any:
    """The Dask array of ``data``'s chunks on its GPU: Parquet read by the device reader (no cache: one
    pass), CuPy chunks as they are, NumPy chunks copied."""
    route = device_route(data)
    if route == "reader":
        return data.dataset.to_dask(data.device, 0)
    return data.lazy if route == "device" else data.device.copied(data.lazy)
