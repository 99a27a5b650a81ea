"""Tables a person reads (``dgmm inspect``, ``dgmm select``): aligned columns, one number format per column."""

from __future__ import annotations

import math
from typing import Any, Sequence

MISSING = "-"  # a cell with no value (NaN): a held-out score of a grid fitted without held-out rows


def column_format(values: Sequence[Any]) -> str:
    """The one format spec of a column's floats, from their magnitudes.

    Fixed-point with as many decimals as leave about six significant digits in the largest value
    (0 for 1,389,800.3, 5 for -4.17994), or scientific for every cell of a column whose values span
    more than fixed-point shows (above 1e12, or below 1e-4 of the largest).
    """
    finite = [abs(float(v)) for v in values if isinstance(v, float) and math.isfinite(v)]
    if not finite or max(finite) == 0.0:
        return ".1f"
    top = max(finite)
    smallest = min((v for v in finite if v > 0.0), default=top)
    if top >= 1e12 or top < 1e-4 or smallest < 1e-4 * top:
        return ".4e"
    return f".{min(6, max(0, 5 - math.floor(math.log10(top))))}f"


def cell(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return format(value, spec) if math.isfinite(value) else (MISSING if math.isnan(value) else str(value))


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], marks: Sequence[str] | None = None, indent: str = ""
) -> str:
    """``rows`` under ``header`` as aligned text: numbers right-aligned, text left-aligned, a column's floats
    in one format (:func:`column_format`); ``marks`` (one short string a row, e.g. "*") go before the rows."""
    columns = list(zip(*rows)) if rows else [[] for _ in header]
    specs = [column_format(column) for column in columns]
    text = [[cell(v, spec) for v, spec in zip(row, specs)] for row in rows]
    numeric = [all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column) for column in columns]
    widths = [max([len(h), *(len(r[j]) for r in text)]) for j, h in enumerate(header)]
    marks = list(marks) if marks is not None else [""] * len(rows)
    pad = max((len(m) for m in marks), default=0)
    pad = pad + 1 if pad else 0

    def line(cells: Sequence[str], mark: str = "") -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return (indent + mark.ljust(pad) + "  ".join(parts)).rstrip()

    return "\n".join([line(header), *(line(r, m) for r, m in zip(text, marks))])
