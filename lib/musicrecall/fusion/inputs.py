"""What a dataset lacks for notebook 08, each with the one-line reason a skipped cell prints.

The general list (audio, a clock, entry points, play durations) is :func:`musicrecall.yardsticks.lacks`,
shared by every model notebook; notebook 08 adds what only it needs: a second party (party B's features
exist only in the simulated world), collect actions (the collect label) and genres (genre diversity and
surprise). The recall and ranking models never need these; the cells that do are skipped with the reason.
"""

from __future__ import annotations

import polars as pl

from musicrecall.yardsticks import lacks

SHARED = ("audio", "clock", "entries", "durations")  # the keys of yardsticks.lacks notebook 08 reads


def _has(df: pl.DataFrame, col: str) -> bool:
    return col in df.columns and df[col].drop_nulls().len() > 0


def missing_inputs(dataset, events: pl.DataFrame) -> dict[str, str]:
    """``{input: reason}`` for every input of notebook 08 that ``dataset`` (a :class:`musicrecall.data.Dataset`)
    lacks; ``events`` are its cleaned plays. Keys: those of :data:`SHARED`, ``party_b``, ``collect``, ``genre``."""
    general = lacks(dataset, events)
    out = {k: general[k] for k in SHARED if k in general}
    if "durations" not in out and (not _has(events, "full_play") or events["full_play"].drop_nulls().n_unique() < 2):
        out["durations"] = "every play has the same outcome (full play or not): impression labels are constant"
    if dataset.cross_business is None:
        out["party_b"] = "no second party: party B's user features exist only in the simulated world"
    if not (_has(events, "action") and (events["action"] == "collect").any()):
        out["collect"] = "no collect actions in the log: the collect label is constant, so no collect model"
    if not _has(dataset.items, "genre"):
        out["genre"] = "no genre in the catalogue: genre diversity and surprise are skipped"
    return out
