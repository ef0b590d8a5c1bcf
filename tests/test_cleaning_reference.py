"""The polars cleaning and the pandas reference used by bench/bench_cleaning.py agree row for row,
so the benchmark compares equal work."""

from __future__ import annotations

import sys

import polars as pl

from musicrecall.cleaning import CleaningConfig, clean_log
from musicrecall.config import REPO_ROOT
from musicrecall.world import generate_world

sys.path.insert(0, str(REPO_ROOT / "bench"))
from reference_pandas_cleaning import clean_pandas  # noqa: E402


def test_polars_and_pandas_cleaning_remove_the_same_rows_for_the_same_reasons():
    world = generate_world("tiny", seed=3)
    cfg = CleaningConfig()
    res = clean_log(world.events, world.items, world.end_ts, cfg)
    ref = clean_pandas(world.events.to_pandas(), world.items.to_pandas(), world.end_ts, cfg)
    ours = pl.concat([res.removed.select("source_row", "reason"),
                      res.events.select("source_row", pl.lit(None, dtype=pl.String).alias("reason"))]).sort("source_row")
    theirs = pl.from_pandas(ref[["source_row", "reason"]]).with_columns(pl.col("reason").cast(pl.String)).sort("source_row")
    assert ours.height == world.events.height
    assert ours.equals(theirs)
    assert res.removed.height > 0 and set(res.removed["reason"]) >= {"duplicate", "bot", "accidental", "autoplay"}
