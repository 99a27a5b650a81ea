"""``GaussianMixtureClassifier``: one Gaussian mixture per class, all classes fitted in the same passes.

Orchestration only::

    1. the features as any fit takes them; the labels as an array or a label column, coded by
       their sorted classes (dgmm.data.labels) and carried as one more column of every chunk
    2. per class: the program of a GaussianMixture fit (initialisation, restarts, EM, split/merge),
       seeing only that class's rows (dgmm.algorithms.classes.for_class); all classes together
       (dgmm.algorithms.programs.together): each pass reads every chunk once for every class still
       initialising or iterating, so S classes cost the passes of the slowest, not S times them
    2'. or, with a background model (``ubm``): fit it on all rows first when ``ubm="fit"``, then
       one pass adapts it to every class by MAP (dgmm.algorithms.classes.adapt_steps)
    3. priors: the classes' shares of the row weight ("empirical"), equal ("uniform") or given

Each class's mixture is bit-identical to ``GaussianMixture(...).fit(X, sample_weight=w * (y == c))``
on the same chunks. Prediction: ``argmax_c log prior_c + log p(x | c)``; verification scores are
``score_ratio``, ``log p(x | c) − log p(x | UBM)``.

``device`` works as for a GaussianMixture: CuPy input, CuPy-backed Dask arrays and (``"cuda"``, or
``"auto"`` where CuPy sees a GPU) NumPy, Dask and Parquet input are fitted and scored on the GPU, the
class codes travelling with each chunk there (dgmm.kernels.device.classes).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.base import ClassifierMixin

from ..algorithms.classes import ClassView, adapt_steps, for_class
from ..algorithms.em import EMResult
from ..algorithms.programs import run_steps, run_together
from ..algorithms.smem import best_fit_steps
from ..data.inputs import Input, as_input, on_device, warn_id_like
from ..data.labels import Labels, as_labels, check_label_column, shown, with_codes
from ..data.parquet import ParquetDataset, is_path_input
from ..data.validation import NanPolicy
from ..errors import COLUMNS_HINT, ConvergenceWarning, DataError, ParameterError, spell
from ..execution.deadlines import STALL_TIMEOUT
from ..execution.executor import CountingExecutor
from ..kernels.adapt import check_adapt
from ..kernels.arrays import to_numpy
from ..kernels.estep import ComputeDType
from ..kernels.gaussian import CovarianceType
from ..kernels.init import InitMethod
from ..kernels.row_weights import no_rows_left
from ..persist import classes_file
from ..persist.formats import read_model_file, save_model
from .base import Estimator
from .class_scoring import ClassScoringMixin
from .fitting import init_settings
from .mixture import GaussianMixture
from .normalisation import label_and_groups, normalised, without_group_column
from .parameters import (
    BY_NAME,
    CLASSIFIER_BY_NAME,
    PRIORS,
    CachePolicy,
    Device,
    check_n_samples,
    check_random_state,
    passes_device,
    validate_params,
)
from .runtime import runtime


class GaussianMixtureClassifier(ClassScoringMixin, ClassifierMixin, Estimator):
    """A Gaussian mixture per class; predicts the class of highest posterior probability.

    Parameters are those of :class:`~dgmm.GaussianMixture` (each class's mixture uses them all:
    ``n_components``, ``covariance_type``, ``init_params``, ``n_init``, ``split_merge``, ...), but the
    initial arrays and ``warm_start``, plus:

    priors : "empirical", "uniform" or an array of shape (n_classes,), default "empirical"
        Class prior probabilities: each class's share of the (weighted) rows, equal, or given
        (in the order of ``classes_``; positive, normalised to sum 1).
    ubm : None, "fit", a fitted mixture or a model file path, default None
        A universal background model to MAP-adapt to every class instead of fitting each class
        by EM (Reynolds et al. 2000). "fit" fits one on all rows first, with these parameters; a
        fitted mixture (dgmm's or scikit-learn's GaussianMixture) should come wrapped in
        ``sklearn.frozen.FrozenEstimator`` so that ``clone`` keeps it fitted. The classes' mixtures
        then have the background model's ``n_components`` and ``covariance_type``.
    relevance_factor : float, default 16
        MAP's ``r``: a component moves from the background model towards the class's rows by
        ``n_k / (n_k + r)`` of the way, ``n_k`` its responsibility mass there (0: all the way).
    adapt : "means", "weights", "covariances", or several (a list or "means,weights"), default "means"
        Which parts of the background model are adapted; the others are kept.
    top_c : int or None, default None
        Gaussian selection when scoring (Reynolds et al. 2000): each row scored against every class on the
        ``top_c`` components of the background model that score it highest (5 is usual); None scores every
        component (exact). Needs a background model and diagonal or spherical covariances; on the CPU.

    Attributes
    ----------
    classes_ : (C,) the sorted class labels
    estimators_ : list of C fitted GaussianMixture, one per class, in the order of ``classes_``
    class_prior_ : (C,) the priors used
    class_count_ : (C,) the row weight of each class (rows, without sample weights)
    n_iter_ : (C,) EM iterations of each class's mixture (1 for a MAP adaptation)
    ubm_ : the background model (a fitted GaussianMixture), when ``ubm`` is given
    n_features_in_, feature_names_in_, passes_ (passes over the data the fit took)
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
        random_state: Any = None,
        init_model: Any = None,
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
        priors: Any = "empirical",
        ubm: Any = None,
        relevance_factor: float = 16.0,
        adapt: Any = "means",
        top_c: int | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.init_model = init_model
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
        self.priors = priors
        self.ubm = ubm
        self.relevance_factor = relevance_factor
        self.adapt = adapt
        self.top_c = top_c

    # ------------------------------------------------------------------ fitting
    def fit(
        self, X: Any, y: Any, *, columns: Sequence[str] | None = None, sample_weight: Any = None
    ) -> "GaussianMixtureClassifier":
        """Fit one mixture per class of ``y``, all in the same passes over ``X``.

        Parameters
        ----------
        X : any input ``GaussianMixture.fit`` takes (NumPy, pandas, Dask, Parquet paths)
        y : the class of every row, shape (n,) (NumPy, pandas, Dask, a list), or the name of a label
            column of a DataFrame or of Parquet input (a file column or a hive partition key), never a feature
        columns : feature columns of Parquet input (default: every column but the label column)
        sample_weight : as for ``GaussianMixture.fit``
        """
        validate_params(self)
        background = self._background()
        adapt = check_adapt(self.adapt)
        CLASSIFIER_BY_NAME["relevance_factor"].validate(self.relevance_factor)  # the others may be Python objects
        if isinstance(background, GaussianMixture) and getattr(background, "cmvn", None) != self.cmvn:
            raise ParameterError(
                f"the background model (ubm) was fitted with cmvn={background.cmvn!r} and this classifier has "
                f"cmvn={self.cmvn!r}; both normalise the features the same way or neither does"
            )
        if self.init_model is not None:
            raise ParameterError(
                "init_model starts one mixture; a classifier starts every class from its background model (ubm=)"
            )
        X, y, cmvn_groups = label_and_groups(X, y, self.cmvn)  # a DataFrame's label and group columns
        data = normalised(
            self, on_device(self._features(X, y, columns, sample_weight), passes_device(self)), cmvn_groups
        )
        warn_id_like(data, stacklevel=2)
        labels = as_labels(y, data)
        self._check_classes(labels, data)
        priors = self._check_priors(len(labels.classes))
        if isinstance(background, GaussianMixture):
            background.fitted_params()  # NotFittedError for an unfitted one
            self._check_background(background, data)
        runs, ubm, passes = self._fit_classes(data, labels, background, adapt)
        self._set_fitted(runs, ubm, labels, data, priors, passes)
        late = [str(c) for c, run in zip(labels.classes, runs) if not run.converged]
        if late and self.max_iter > 0:
            warnings.warn(
                f"the mixtures of classes {', '.join(late)} did not converge in {self.max_iter} "
                "iterations; increase max_iter or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _check_classes(self, labels: Labels, data: Input) -> None:
        """At least two classes, each with rows of weight > 0 (in-memory weights are checked now) and
        at least ``n_components`` rows."""
        if len(labels.classes) < 2:
            raise DataError(f"y holds one class ({shown(labels.classes[0])}); a classifier needs at least 2 classes")
        if data.kind in ("numpy", "xp") and data.weighted:  # a class of total weight 0 has nothing to fit
            weights = to_numpy(data.values[:, data.n_features])
            totals = np.bincount(labels.codes.astype(np.int64), weights=weights, minlength=len(labels.classes))
            if not np.any(totals > 0):
                raise no_rows_left()
            if not np.all(totals > 0):
                raise DataError(
                    f"class {shown(labels.classes[int(np.argmin(totals > 0))])}: every row has weight "
                    "zero (sample weight 0, or dropped for NaN); leave the class out or give its rows weight"
                )
        for label, count in zip(labels.classes, labels.counts):
            try:
                check_n_samples(int(count), self.n_components)
            except DataError as exc:
                raise DataError(f"class {shown(label)}: {exc}") from None

    def _set_fitted(
        self,
        runs: list[EMResult],
        ubm: GaussianMixture | None,
        labels: Labels,
        data: Input,
        priors: np.ndarray | None,
        passes: int,
    ) -> None:
        """The fitted attributes: one GaussianMixture per class, the background model, classes and priors."""
        settings = self._mixture_params()
        if ubm is not None:
            self.ubm_ = ubm
            settings.update(n_components=ubm.n_components, covariance_type=ubm.covariance_type)
        elif hasattr(self, "ubm_"):
            del self.ubm_
        self.classes_ = labels.classes
        self.estimators_ = []
        for run in runs:
            mixture = GaussianMixture(**settings)
            mixture._set_fitted(run, data)
            self.estimators_.append(mixture)
        weights = np.asarray([run.weight for run in runs], dtype=np.float64)  # what the last pass saw
        self.class_count_ = weights if np.all(np.isfinite(weights)) else labels.counts.astype(np.float64)
        self.class_prior_ = self.class_count_ / self.class_count_.sum() if priors is None else priors
        self.n_features_in_ = data.n_features
        if data.feature_names is not None:
            self.feature_names_in_ = data.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_iter_ = np.asarray([run.n_iter for run in runs])
        self.passes_ = passes

    def _mixture_params(self) -> dict[str, Any]:
        """The parameters every class's GaussianMixture gets."""
        return {name: getattr(self, name) for name in BY_NAME}

    def _features(self, X: Any, y: Any, columns: Sequence[str] | None, sample_weight: Any) -> Input:
        """The features: Parquet input without its label column, as a fit reads them."""
        if isinstance(y, str) and is_path_input(X):
            if columns is not None and y in columns:
                raise DataError(f"label column {y!r} is also a feature column; leave it out of {spell(*COLUMNS_HINT)}")
            check_label_column(X, y, self.storage_options)
            weight = sample_weight if isinstance(sample_weight, str) else None
            X = ParquetDataset.open(
                X,
                columns,
                self.chunk_rows,
                weight,
                self.nan_policy,
                self.storage_options,
                exclude_columns=None if columns is not None else [y, *(without_group_column(None, self.cmvn) or [])],
            )
            sample_weight = None if weight is not None else sample_weight
            columns = None
        return as_input(X, columns, self.chunk_rows, sample_weight, self.nan_policy, self.storage_options)

    def _check_priors(self, n_classes: int) -> np.ndarray | None:
        """The given priors, normalised; None for "empirical" (known after the fit)."""
        if isinstance(self.priors, str):
            if self.priors not in PRIORS:
                raise ParameterError(
                    f"priors={self.priors!r} is invalid; expected one of {', '.join(PRIORS)} "
                    "or an array of one probability per class"
                )
            return np.full(n_classes, 1.0 / n_classes) if self.priors == "uniform" else None
        priors = np.asarray(self.priors, dtype=np.float64)
        if priors.shape != (n_classes,) or not np.all(np.isfinite(priors)) or not np.all(priors > 0):
            raise ParameterError(
                f"priors has shape {priors.shape} or values that are not positive; expected "
                f"({n_classes},) positive values, one per class in the order of classes_"
            )
        return priors / priors.sum()

    def _background(self) -> Any:
        """``ubm`` resolved: None, "fit" or a GaussianMixture (read from a file, unwrapped, converted)."""
        ubm = self.ubm
        if ubm is None or (isinstance(ubm, str) and ubm == "fit"):
            return ubm
        if isinstance(ubm, (str, os.PathLike)):
            return GaussianMixture.load(ubm, self.storage_options)
        ubm = getattr(ubm, "estimator", ubm)  # FrozenEstimator(model)
        if type(ubm).__module__.startswith("sklearn.mixture"):
            return GaussianMixture.from_sklearn(ubm)
        if not isinstance(ubm, GaussianMixture):
            raise ParameterError(
                f"ubm={self.ubm!r} is invalid; expected None, 'fit', a model file path or a fitted "
                "GaussianMixture (wrapped in sklearn.frozen.FrozenEstimator)"
            )
        return ubm

    def _check_background(self, ubm: GaussianMixture, data: Input) -> None:
        if ubm.n_features_in_ != data.n_features:
            raise DataError(
                f"X has {data.n_features} features, but the background model (ubm) has {ubm.n_features_in_}"
            )
        names = getattr(ubm, "feature_names_in_", None)
        if names is not None and data.feature_names is not None and list(names) != list(data.feature_names):
            raise DataError(
                f"feature names {list(data.feature_names)} differ from the background model's {list(names)}"
            )

    def _fit_classes(
        self, data: Input, labels: Labels, background: Any, adapt: frozenset[str]
    ) -> tuple[list[EMResult], GaussianMixture | None, int]:
        """Every class's fit (restarts, EM, split/merge) in shared passes, or the background model
        (fitted first for ``"fit"``) adapted to every class in one pass; the results, the background
        model and the pass count."""
        d = data.n_features
        mixture = GaussianMixture(**self._mixture_params())
        rng = check_random_state(self.random_state)
        # the seeds a GaussianMixture with this random_state draws: each class's fit is that fit's
        seeds = tuple(int(rng.randint(np.iinfo(np.int32).max)) for _ in range(self.n_init))
        coded = with_codes(data, labels.codes)
        with runtime(self, coded) as where:
            counted, array = CountingExecutor(where.executor), where.array
            shape = (coded.n_rows, d + 1)  # as each class sees the rows: features and a weight
            em = dict(tol=self.tol, max_iter=self.max_iter, reg_covar=self.reg_covar, dtype=self.dtype)

            def fit_steps(code: int | None):
                rows = shape if code is not None else (coded.n_rows, d + data.weighted)  # None: the data as it is
                return for_class(
                    best_fit_steps(
                        rows, seeds, init_settings(mixture, d, (None, None, None)), split_merge=self.split_merge, **em
                    ),
                    ClassView(code, d, data.weighted),
                )

            if background is None:
                programs = [fit_steps(code) for code in range(len(labels.classes))]
                runs = [run for run, _ in run_together(counted, array, self.split_every, programs)]
                return runs, None, counted.passes
            if isinstance(background, str):  # "fit": on every row, as a GaussianMixture would
                run, _ = run_steps(counted, array, self.split_every, fit_steps(None))
                background = GaussianMixture(**self._mixture_params())
                background._set_fitted(run, data)
            adapted = run_steps(
                counted,
                array,
                self.split_every,
                adapt_steps(
                    background.fitted_params(),
                    len(labels.classes),
                    data.weighted,
                    relevance_factor=float(self.relevance_factor),
                    adapt=adapt,
                    reg_covar=self.reg_covar,
                ),
            )
        runs = [
            EMResult(
                params,
                True,
                1,
                stats.loglik / stats.weight if stats.weight > 0 else math.nan,
                [stats.loglik / stats.weight if stats.weight > 0 else math.nan],
                stats.weight,
                stats.n_zero_weight,
            )
            for params, stats in adapted
        ]
        return runs, background, counted.passes

    def save(self, path: str, extra: dict | None = None, *, overwrite: bool = False) -> None:
        """Write every class's mixture (and the background model) to one safe file (see
        :mod:`dgmm.persist.classes_file`); :func:`dgmm.load_model` reads it back."""
        save_model(self, path, extra, overwrite=overwrite, storage_options=self.storage_options)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ) -> "GaussianMixtureClassifier":
        """Read a classifier written by :meth:`save` (a path or an fsspec URL); every inconsistency is a
        ModelFileError, and so is a model file of one mixture (:func:`dgmm.load_model` reads either)."""
        arrays, metadata = read_model_file(path, storage_options, classifier=True)
        return cls.from_file_contents(arrays, metadata, storage_options)

    @classmethod
    def from_file_contents(
        cls,
        arrays: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any],
        storage_options: Mapping[str, Any] | None = None,
    ) -> "GaussianMixtureClassifier":
        """The fitted classifier of a classifier file's checked arrays and metadata: every class's mixture, and
        the background model, built as mixtures."""
        class_members, ubm = classes_file.mixtures(arrays, metadata)
        members = [GaussianMixture.from_file_contents(a, m, storage_options) for a, m in class_members]
        settings = {k: v for k, v in members[0].get_params().items() if k in cls().get_params()}
        model = cls(**{**settings, **metadata["params"]})
        model.estimators_ = members
        model.classes_ = np.asarray(metadata["classes"])
        model.class_prior_ = classes_file.priors(arrays, metadata)
        model.n_iter_ = np.asarray([m.n_iter_ for m in members])
        model.n_features_in_ = members[0].n_features_in_
        if hasattr(members[0], "feature_names_in_"):
            model.feature_names_in_ = members[0].feature_names_in_
        if ubm is not None:
            model.ubm_ = GaussianMixture.from_file_contents(*ubm, storage_options)
        return model

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.nan_policy in ("drop", "marginalize")
        return tags
