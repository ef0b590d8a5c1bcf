"""OLAP overview of a play log with DuckDB (the talk's stack uses ClickHouse + Superset for this).

Each function runs one SQL query over a polars frame (handed to DuckDB as Arrow, zero-copy) and returns
a polars frame ready for seaborn.
"""

from __future__ import annotations

import duckdb
import polars as pl

from musicrecall.config import n_threads


def _query(sql: str, **tables: pl.DataFrame) -> pl.DataFrame:
    con = duckdb.connect()
    con.execute(f"SET threads TO {n_threads()}")
    for name, frame in tables.items():
        con.register(name, frame.to_arrow())
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def plays_per_day(events: pl.DataFrame) -> pl.DataFrame:
    """Plays, active users and full-play rate per UTC day."""
    return _query("""
        SELECT CAST(ts AS DATE) AS day, COUNT(*) AS plays, COUNT(DISTINCT user_id) AS users,
               AVG(CAST(full_play AS DOUBLE)) AS full_play_rate
        FROM events GROUP BY day ORDER BY day""", events=events.select("ts", "user_id", "full_play"))


def entry_mix(events: pl.DataFrame) -> pl.DataFrame:
    """Share of plays and skip rate by entry point."""
    return _query("""
        SELECT COALESCE(entry, 'unknown') AS entry, COUNT(*) AS plays,
               COUNT(*) / SUM(COUNT(*)) OVER () AS share, AVG(CAST(skip AS DOUBLE)) AS skip_rate
        FROM events GROUP BY 1 ORDER BY plays DESC""", events=events.select("entry", "skip"))


def hour_of_day(events: pl.DataFrame) -> pl.DataFrame:
    """Plays by UTC hour of day (the diurnal clock)."""
    return _query("""
        SELECT EXTRACT(hour FROM ts) AS hour, COUNT(*) AS plays FROM events GROUP BY 1 ORDER BY 1""",
                  events=events.select("ts"))


def popularity_long_tail(events: pl.DataFrame) -> pl.DataFrame:
    """Songs ranked by plays with the cumulative share of plays (the head-heavy long tail)."""
    return _query("""
        SELECT ROW_NUMBER() OVER (ORDER BY plays DESC, song_id) AS rank, song_id, plays,
               SUM(plays) OVER (ORDER BY plays DESC, song_id) / SUM(plays) OVER () AS cum_share
        FROM (SELECT song_id, COUNT(*) AS plays FROM events GROUP BY song_id)
        ORDER BY rank""", events=events.select("song_id"))


def repeat_ratio(events: pl.DataFrame) -> pl.DataFrame:
    """Per day: the share of plays whose (user, song) pair was already played on an earlier day or
    earlier that day — music consumption is highly repetitive."""
    return _query("""
        WITH ranked AS (
            SELECT CAST(ts AS DATE) AS day,
                   ROW_NUMBER() OVER (PARTITION BY user_id, song_id ORDER BY ts) > 1 AS is_repeat
            FROM events)
        SELECT day, AVG(CAST(is_repeat AS DOUBLE)) AS repeat_ratio, COUNT(*) AS plays
        FROM ranked GROUP BY day ORDER BY day""", events=events.select("ts", "user_id", "song_id"))


def head_share(long_tail: pl.DataFrame, top_fraction: float = 0.01) -> float:
    """Share of all plays that go to the top ``top_fraction`` of played songs."""
    n_top = max(1, int(round(long_tail.height * top_fraction)))
    return float(long_tail["cum_share"][n_top - 1])
