"""Information criteria of a fitted mixture (pure arithmetic)."""

from __future__ import annotations

import math


def information_criteria(log_likelihood: float, n_parameters: int, n_samples: float) -> tuple[float, float]:
    """BIC and AIC (lower is better).

    Parameters
    ----------
    log_likelihood : total log-likelihood of the rows, Σ_n w_n log p(x_n)
    n_parameters : free parameters of the mixture (:meth:`MixtureParams.n_free_parameters`)
    n_samples : number of rows (their total weight with sample weights)
    """
    return (-2 * log_likelihood + n_parameters * math.log(n_samples), -2 * log_likelihood + 2 * n_parameters)
