"""scikit-learn's estimator base, with dgmm's one-line error for an unknown parameter."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator

from ..errors import ParameterError


class Estimator(BaseEstimator):
    """scikit-learn's ``BaseEstimator`` (get_params, set_params, clone, repr, tags, pickling).

    Parameters are exactly the keyword arguments of ``__init__``, stored unchanged; an unknown
    one in ``set_params`` is a :class:`~dgmm.ParameterError` (a ValueError, as scikit-learn raises).
    """

    def set_params(self, **params: Any):
        valid = self._get_param_names()
        for name in params:
            if name not in valid:
                raise ParameterError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid parameters: {', '.join(valid)}"
                )
        return super().set_params(**params)
