"""How the device kernels cut a chunk into row tiles, and the weight totals of a chunk on its device."""

from __future__ import annotations

# A tile costs ~10 kernel launches per component, each ~10 µs of Python and driver time holding the GIL:
# tiles are as large as keeping their intermediates within XP_TILE_SHARE of the chunk's bytes allows
# (GPU memory ≈ 1.25x the data), and never smaller than XP_MIN_TILE_ROWS rows or 1 GiB of intermediates.
XP_TILE_SHARE = 0.25
XP_MIN_TILE_ROWS, XP_MIN_TILE_BYTES = 1 << 20, 1 << 30


def xp_tile_rows(n_rows: int, n_features: int, n_components: int, covariance_type: str) -> int:
    """Rows per tile of a chunk of ``n_rows``; a tile's intermediates peak at about ``4d + 7K`` float64 values
    a row (``Z`` and a component's temporaries; log-probabilities, responsibilities and their temporaries),
    ``6d + 7K`` for diag/spherical, whose ``[Z, Z∘Z]`` is twice as wide."""
    width = (6 if covariance_type in ("diag", "spherical") else 4) * n_features + 7 * n_components
    return rows_for_width(n_rows, n_features, width)


def rows_for_width(n_rows: int, n_features: int, width: int) -> int:
    """Rows per tile of a chunk (n_rows, n_features) whose tiles hold ``width`` float64 intermediates a row."""
    smallest = min(XP_MIN_TILE_ROWS, XP_MIN_TILE_BYTES // (8 * max(width, 1)))
    return max(1, smallest, int(XP_TILE_SHARE * n_rows * n_features / max(width, 1)))


def row_tiles(n_rows: int, tile_rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` of consecutive tiles of ``tile_rows`` covering ``n_rows`` (one empty tile for 0)."""
    return [(start, min(start + tile_rows, n_rows)) for start in range(0, max(n_rows, 1), max(1, tile_rows))]
