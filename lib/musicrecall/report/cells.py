"""Helpers the notebooks' cells share: pick an effect out of a result table, format it with its interval.

They used to be re-typed in each notebook (``pick`` and ``fmt`` in notebooks 02-04 and 06-08). An effect
is ``(value, lo, hi)``: a value with its 95% interval, as the verdicts of
:mod:`musicrecall.report.verdicts` take them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # polars is imported where a table is read: `musicrecall.report` stays light
    import polars as pl

# Keys a mapping may carry its value under (first found wins), and its interval bounds.
VALUE_KEYS = ("diff", "value", "lift", "mean", "r")
LO_KEYS, HI_KEYS = ("lo", "ci_lo"), ("hi", "ci_hi")


def _number(x: Any) -> float:
    return math.nan if x is None else float(x)


def pick_ci(frame: pl.DataFrame | None, col: str = "lift", *, missing_ok: bool = False,
            **where: Any) -> tuple[float, float, float]:
    """``(row[col], row["ci_lo"], row["ci_hi"])`` of the first row of ``frame`` whose columns equal
    ``where`` (e.g. ``pick_ci(lifts, model="both", baseline="base", kind="all", metric="hr@200")``).

    Nulls read as NaN. No matching row (or no frame) raises ``LookupError``, unless ``missing_ok``: then the
    effect is ``(nan, nan, nan)``, which every verdict treats as not measured (e.g. a lift table leaves out
    a row whose baseline scores 0 on this data)."""
    import polars as pl

    rows = frame if frame is not None else pl.DataFrame()
    for name, value in where.items():
        if rows.is_empty():
            break
        rows = rows.filter(pl.col(name) == value)
    if rows.is_empty():
        if missing_ok:
            return math.nan, math.nan, math.nan
        raise LookupError(f"no row with {where} in the table" if frame is not None else "no table")
    row = rows.row(0, named=True)
    return _number(row[col]), _number(row["ci_lo"]), _number(row["ci_hi"])


def fmt_ci(effect: Sequence[float] | Mapping[str, Any], pct: bool = True, digits: int | None = None) -> str:
    """``"+8.1% [+5.2%, +11.0%]"``: an effect with its interval, signed.

    ``effect`` is ``(value, lo, hi)`` or a mapping with its value under the first of :data:`VALUE_KEYS`
    present (``diff`` of :func:`musicrecall.evaluation.ranking_stats.seeded_diff`, a table row's ``lift``,
    ``mean`` or ``r``) and its bounds under ``lo``/``hi`` or ``ci_lo``/``ci_hi``. ``pct``: a fraction shown
    as a percentage with ``digits`` decimals (default 1); otherwise a number with ``digits`` decimals
    (default 4). NaN reads ``nan``, as Python formats it."""
    if isinstance(effect, Mapping):
        key = next(k for k in VALUE_KEYS if k in effect)
        lo, hi = (next(effect[k] for k in keys if k in effect) for keys in (LO_KEYS, HI_KEYS))
        effect = (effect[key], lo, hi)
    spec = f"+.{1 if digits is None else digits}%" if pct else f"+.{4 if digits is None else digits}f"
    value, lo, hi = (format(_number(x), spec) for x in effect)
    return f"{value} [{lo}, {hi}]"
