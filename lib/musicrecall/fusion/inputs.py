"""What a dataset lacks for notebook 08, each with the one-line reason a skipped cell prints.

The simulated world has everything; an imported log may have no entry points, no collect actions, no
play durations, no genre, no audio (the world renders its songs; real logs come without audio), no
second party (party B's features exist only in the world) and no clock (order-only data: ordinal
time, per-user position splits). The model and recall parts never need these; the cells that do are skipped with the reason.
"""

from __future__ import annotations

import polars as pl

from musicrecall.evaluation import detect_time_kind


def _has(df: pl.DataFrame, col: str) -> bool:
    return col in df.columns and df[col].drop_nulls().len() > 0


def missing_inputs(dataset, events: pl.DataFrame, meta: dict | None = None) -> dict[str, str]:
    """``{input: reason}`` for every input of notebook 08 that ``dataset`` (a :class:`musicrecall.data.Dataset`)
    lacks; ``events`` are its cleaned plays."""
    lacks: dict[str, str] = {}
    if not dataset.is_world:
        lacks["audio"] = "no audio: imported logs come without audio (the simulated world renders its songs)"
    if dataset.cross_business is None:
        lacks["party_b"] = "no second party: party B's user features exist only in the simulated world"
    if not _has(events, "entry"):
        lacks["entry"] = "no entry points in the log: per-entry hit rates are skipped, ranking pools all plays"
    if not (_has(events, "action") and (events["action"] == "collect").any()):
        lacks["collect"] = "no collect actions in the log: the collect label is constant, so no collect model"
    if not _has(events, "full_play") or events["full_play"].drop_nulls().n_unique() < 2:
        lacks["play_outcome"] = ("no play outcome (no durations: every play counts as a full play): impression "
                                 "labels are constant, so impression AUCs are skipped; candidates are still ranked")
    if not _has(dataset.items, "genre"):
        lacks["genre"] = "no genre in the catalogue: genre diversity and surprise are skipped"
    if detect_time_kind(events, meta) == "ordinal":
        lacks["clock"] = ("order only, no clock: per-user position split; recency features count positions, "
                          "not days")
    return lacks
