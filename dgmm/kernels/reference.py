"""The textbook E-step, written plainly: the oracle the tests check the production kernels against.

No fit runs it: fits run :mod:`dgmm.kernels.estep`. It computes every responsibility of a chunk
(n × K) with :mod:`dgmm.kernels.posterior`, then the centred statistics with
:func:`dgmm.kernels.stats.accumulate`, so each step can be checked against scipy on its own.
"""

from __future__ import annotations

import numpy as np

from .params import MixtureParams
from .posterior import log_responsibilities
from .stats import Stats, accumulate


def reference_chunk_stats(X: np.ndarray, params: MixtureParams, weights: np.ndarray | None = None) -> Stats:
    """E-step of one chunk, plainly: responsibilities under ``params`` and their statistics.

    The responsibilities live only inside this call (shape (n, K) for a chunk of
    n rows); what leaves is O(K·d²).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    params : the current (old) parameters; statistics are centred on ``params.means``.
    weights : ndarray of shape (n,) or None; row n counts ``weights[n]`` times
    """
    X = np.asarray(X, dtype=np.float64)
    log_prob_norm, log_resp = log_responsibilities(X, params)
    loglik = log_prob_norm.sum() if weights is None else weights @ log_prob_norm
    return accumulate(X, np.exp(log_resp), params.means, params.covariance_type, loglik, weights)
