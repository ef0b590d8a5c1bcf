"""A tiny unsorted listening log shared by the sequence-data and sequence-model tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N_ITEMS = 10


def events(rows: list[tuple[int, int, int, bool]]) -> pl.DataFrame:
    """(user, song, minute, full_play) rows, deliberately unsorted."""
    u, s, m, f = zip(*rows, strict=True)
    return pl.DataFrame({"user_id": list(u), "song_id": list(s),
                         "ts": [T0 + timedelta(minutes=x) for x in m], "full_play": list(f)})


EV = events([(1, 5, 3, True), (0, 2, 1, True), (0, 3, 2, False), (0, 4, 0, True), (1, 6, 1, True),
             (0, 7, 5, True), (1, 8, 2, True), (1, 9, 9, True)])
