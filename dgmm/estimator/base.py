"""scikit-learn's estimator conventions (get_params / set_params / clone / repr) without depending on it."""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import ParameterError


class EstimatorMixin:
    """Parameters are exactly the keyword arguments of ``__init__``, stored unchanged."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any):
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid parameters: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not _same(value, defaults.get(name))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or a == b)
    except (ValueError, TypeError):
        return False
