"""Reference: the cleaning rules of ``musicrecall.cleaning`` written in pandas, the way most
recommendation pipelines do it. Used only to measure the polars path (bench_cleaning.py) and to check
that both give the same result (tests/test_cleaning_reference.py)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from musicrecall.cleaning import CleaningConfig

CONTENT = ["user_id", "song_id", "ts", "play_ms", "song_ms", "entry", "action", "reason_start", "reason_end", "skipped"]


def clean_pandas(events: pd.DataFrame, items: pd.DataFrame, now: datetime, cfg: CleaningConfig) -> pd.DataFrame:
    """Return ``events`` with a ``reason`` column (None for kept rows) and ``session_id`` for kept rows."""
    df = events.merge(items[["song_id", "duration_ms"]].assign(_known=True), on="song_id", how="left")
    df["song_ms"] = df["song_ms"].fillna(df["duration_ms"])
    df["_known"] = df["_known"].fillna(False).astype(bool)
    limit = pd.Timestamp(now) + pd.Timedelta(seconds=cfg.future_tolerance_s)
    reason = pd.Series(None, index=df.index, dtype=object)

    def mark(mask: pd.Series, name: str) -> None:
        reason[mask.fillna(False).astype(bool) & reason.isna()] = name

    mark(df["user_id"].isna(), "missing_user")
    mark(df["ts"].isna(), "unparseable_ts")
    mark(df["ts"] > limit, "future_ts")
    mark(df["play_ms"] < 0, "negative_play_ms")
    mark(df["song_ms"].notna() & (df["play_ms"] > df["song_ms"] * cfg.beyond_length_factor + cfg.beyond_length_slack_ms),
         "play_beyond_length")
    mark(~df["_known"], "unknown_song")
    mark(df.duplicated(subset=CONTENT, keep="first"), "duplicate")
    valid = df[reason.isna()].sort_values(["user_id", "ts"])
    gaps = valid.groupby("user_id")["ts"].diff().dt.total_seconds() * 1000
    stats = valid.assign(gap=gaps, day=valid["ts"].dt.date).groupby("user_id").agg(
        n=("ts", "size"), days=("day", "nunique"), gap_mean=("gap", "mean"), gap_std=("gap", "std"))
    cv = stats["gap_std"] / stats["gap_mean"]
    bots = stats.index[(stats["n"] / stats["days"] > cfg.bot_max_plays_per_day)
                       | ((stats["n"] >= cfg.bot_min_plays) & (cv < cfg.bot_max_gap_cv))]
    mark(df["user_id"].isin(bots), "bot")
    mark(df["play_ms"] < cfg.accidental_ms, "accidental")
    kept = df[reason.isna()].sort_values(["user_id", "ts", "source_file", "source_row"])
    end = kept["ts"] + pd.to_timedelta(kept["play_ms"].fillna(0).clip(lower=0), unit="ms")
    prev_end = end.groupby(kept["user_id"]).shift(1)
    new = prev_end.isna() | ((kept["ts"] - prev_end).dt.total_seconds() * 1000 > cfg.session_gap_min * 60_000)
    session = new.cumsum() - 1
    auto = (kept["reason_start"] == "autoplay").fillna(False)
    non_auto_after = (~auto).astype(int)[::-1].groupby(session[::-1]).cumsum()[::-1]
    in_tail = auto & (non_auto_after == 0)
    tail_len = in_tail.astype(int).groupby(session).transform("sum")
    mark(pd.Series(in_tail & (tail_len >= cfg.autoplay_min_run), index=kept.index).reindex(df.index), "autoplay")
    df["reason"] = reason
    return df


def accounting_pandas(df: pd.DataFrame) -> dict[str, int]:
    counts = df["reason"].value_counts().to_dict()
    counts["kept"] = int(df["reason"].isna().sum())
    return {k: int(v) for k, v in counts.items()}

