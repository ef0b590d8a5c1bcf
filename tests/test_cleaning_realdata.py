"""Cleaning order-only logs (positions written as times): no bot rule on a missing clock, one session per user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from musicrecall.cleaning import CleaningConfig, clean_log, config_for_time_kind
from musicrecall.evaluation import detect_time_kind
from musicrecall.schema import conform


def _ordinal_log(n_users: int = 3, plays: int = 450) -> tuple[pl.DataFrame, pl.DataFrame]:
    # the sequence importers' convention: ts = epoch + position seconds, no play duration
    t0 = datetime(1970, 1, 1, tzinfo=UTC)
    rows = [{"user_id": u, "song_id": (7 * p + u) % 50, "ts": t0 + timedelta(seconds=p), "source_file": "seq.txt",
             "source_row": u * plays + p} for u in range(n_users) for p in range(plays)]
    items = conform(pl.DataFrame({"song_id": list(range(50))}), "items")
    return conform(pl.DataFrame(rows), "events"), items


def test_order_only_log_keeps_heavy_listeners_and_says_why():
    events, items = _ordinal_log()
    assert detect_time_kind(events) == "ordinal"
    # with clock rules every user (450 plays "in one day", perfectly regular gaps) is a bot
    assert clean_log(events, items, datetime.now(UTC)).events.height == 0
    cfg, notes = config_for_time_kind(CleaningConfig(), "ordinal")
    res = clean_log(events, items, datetime.now(UTC), cfg)
    assert res.events.height == events.height and res.removed.height == 0
    assert res.events.group_by("user_id").agg(pl.col("session_id").n_unique())["session_id"].to_list() == [1, 1, 1]
    assert res.events["full_play"].all()  # scrobbles without a duration are full plays
    assert len(notes) == 1 and "bot rules" in notes[0] and "order" in notes[0]


def test_clock_logs_keep_every_rule():
    cfg = CleaningConfig()
    assert config_for_time_kind(cfg, "clock") == (cfg, [])
