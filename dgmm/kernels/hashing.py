"""Random numbers that are pure functions of global row indices (pure NumPy).

A draw that must not depend on how the rows are chunked, nor on which worker reads
them, is a hash of (seed, global row index, …) by the SplitMix64 finaliser (Steele,
Lea & Flood 2014), never a draw from a sequential generator:

- :func:`row_uniforms`: one uniform per row and k-means|| round (``stream``);
- :func:`random_resp`: uniform responsibilities per row and component ("random" init);
- :func:`heldout_rows`: the deterministic held-out split of ``select``.

The three mix their inputs in different ways; each keeps the formula it was released
with, so seeded results stay the same. Arithmetic on ``uint64`` wraps modulo 2⁶⁴.
"""

from __future__ import annotations

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 of every element of ``x`` (uint64 array or scalar), same shape, uint64."""
    with np.errstate(over="ignore"):
        x = x + _GAMMA
        x = (x ^ (x >> np.uint64(30))) * _MIX_1
        x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


def seed_key(seed: int) -> np.uint64:
    """The key every stream of ``seed`` (an int in [0, 2⁶⁴)) is mixed with: SplitMix64 of the seed."""
    return splitmix64(np.full(1, seed, dtype=np.uint64))[0]


def row_indices(row_offset: int, n_rows: int) -> np.ndarray:
    """Global indices of ``n_rows`` rows from ``row_offset``, shape (n_rows,), uint64."""
    return np.arange(row_offset, row_offset + n_rows, dtype=np.uint64)


def top_bits(bits: np.ndarray) -> np.ndarray:
    """The top 53 bits of uint64 hashes as float64 integers in [0, 2⁵³), exactly; same shape."""
    return (bits >> np.uint64(11)).astype(np.float64)


def open_uniforms(bits: np.ndarray) -> np.ndarray:
    """Uniforms in the open interval (0, 1) from uint64 hashes, same shape, float64."""
    return (top_bits(bits) + 0.5) * 2.0**-53


def row_uniforms(seed: int, stream: int, row_offset: int, n_rows: int) -> np.ndarray:
    """Uniforms in (0, 1), shape (n_rows,), a pure function of (seed, stream, global row index)."""
    with np.errstate(over="ignore"):
        key = splitmix64(seed_key(seed) + np.uint64(stream))
    return open_uniforms(splitmix64(splitmix64(row_indices(row_offset, n_rows)) ^ key))


def random_resp(n_rows: int, n_components: int, row_offset: int, seed: int) -> np.ndarray:
    """Uniform random responsibilities normalised per row, a pure function of (seed, global row index).

    Returns
    -------
    resp : ndarray of shape (n_rows, n_components)
    """
    rows = row_indices(row_offset, n_rows)[:, None]
    cols = np.arange(n_components, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        uniform = open_uniforms(splitmix64(rows * np.uint64(n_components) + cols + seed_key(seed)))
    return uniform / uniform.sum(axis=1, keepdims=True)


def heldout_rows(n_rows: int, row_offset: int, seed: int, fraction: float) -> np.ndarray:
    """Which rows a deterministic hash split holds out, shape (n_rows,), bool.

    A pure function of (seed, global row index): the split does not depend on the chunking,
    and about ``fraction`` of the rows are held out.
    """
    bits = splitmix64(row_indices(row_offset, n_rows) ^ seed_key(seed))
    return top_bits(bits) * 2.0**-53 < fraction
