"""Log cleaning on Apache Spark: the rules of :mod:`musicrecall.rules`, identical to the polars path.

:func:`clean_log_spark` is a lazy DataFrame program (no Python UDF, so executors need neither
musicrecall nor pandas): every input row comes out once, with ``reason`` and ``stage`` (``kept``,
``invalid`` or ``noise``); kept rows carry ``session_id``, ``pos_in_session`` and the labels.
:func:`write_clean` writes it in one pass as parquet partitioned by stage, and the accounting table;
:func:`read_clean_result` hands the result to polars as a :class:`musicrecall.cleaning.CleanResult`
through those parquet files (no ``toPandas``).

How the polars rules map to a cluster: the data is shuffled once by ``user_id``; duplicate detection
(the content includes user_id), bot statistics, sessions and autoplay tails are then windows and
aggregates inside that partitioning. Rule stages are partition keys of the windows (``_v`` valid,
``_k`` kept so far) rather than filters, so no branch of the plan is computed twice. Ties in time
are broken by source order (``_row`` if present, else ``source_file, source_row``), as the polars
path's stable sort does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from musicrecall.cleaning import CleanResult
from musicrecall.rules import (
    AUTOPLAY_START,
    CONTENT_COLUMNS,
    INVALID_REASONS,
    LABEL_COLUMNS,
    SESSION_COLUMNS,
    STRONG_NEG_ACTION,
    STRONG_POS_ACTIONS,
    TRACKDONE_END,
    CleaningConfig,
    accounting_from_counts,
    session_gap_ms,
)
from musicrecall.schema import EVENTS_SCHEMA

DAY_MS = 86_400_000
OUTPUT_COLUMNS = [*EVENTS_SCHEMA, *SESSION_COLUMNS, *LABEL_COLUMNS, "reason", "stage"]


def epoch_ms(now: datetime) -> int:
    """Milliseconds since the epoch, truncated like polars' ``cast_time_unit("ms")``; naive is UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def source_order(events: DataFrame) -> list[str]:
    """Columns that define source order: ``_row`` when the input has it, else file and row."""
    return ["_row"] if "_row" in events.columns else ["source_file", "source_row"]


def _invalid_or_duplicate(order: list[str], now_ms: int, cfg: CleaningConfig) -> Column:
    limit = now_ms + cfg.future_tolerance_s * 1000
    song_ms, play_ms = F.col("song_ms"), F.col("play_ms")
    too_long = song_ms.isNotNull() & (play_ms > song_ms * F.lit(float(cfg.beyond_length_factor))
                                      + F.lit(cfg.beyond_length_slack_ms))
    # first copy in source order stays; the content includes user_id, so this window needs no shuffle
    # beyond the one by user
    content = [c if c != "song_ms" else "_song_ms_raw" for c in CONTENT_COLUMNS]
    later_copy = F.row_number().over(Window.partitionBy(*content).orderBy(*order)) > 1
    return (F.when(F.col("user_id").isNull(), "missing_user")
            .when(F.col("ts").isNull(), "unparseable_ts")
            .when(F.col("_ts_ms") > F.lit(limit), "future_ts")
            .when(play_ms < 0, "negative_play_ms")
            .when(too_long, "play_beyond_length")
            .when(~F.col("_known"), "unknown_song")
            .when(later_copy, "duplicate"))


def _bot_users(frame: DataFrame, cfg: CleaningConfig) -> DataFrame:
    """``user_id, _bot`` for users whose volume or cadence is not human (valid rows only)."""
    stats = frame.filter("_v").groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.countDistinct(F.floor(F.col("_ts_ms") / DAY_MS)).alias("days"),
        F.stddev_samp("_gap").alias("sd"), F.avg("_gap").alias("mu"))
    # polars gives NaN for 0/0 (all gaps zero) and NaN < x is false; null behaves the same in the filter
    cv = F.when(F.col("mu") > 0, F.col("sd") / F.col("mu"))
    is_bot = (F.col("n") / F.col("days") > F.lit(float(cfg.bot_max_plays_per_day))) | (
        (F.col("n") >= cfg.bot_min_plays) & (cv < F.lit(float(cfg.bot_max_gap_cv))))
    return stats.filter(is_bot).select("user_id", F.lit(True).alias("_bot"))


def _labels(cfg: CleaningConfig) -> list[Column]:
    play_ms, song_ms = F.col("play_ms"), F.col("song_ms")
    trackdone = F.col("reason_end") == TRACKDONE_END
    by_length = (play_ms >= F.lit(float(cfg.full_play_share)) * song_ms) | F.coalesce(trackdone, F.lit(False))
    by_skip_flag = ~F.col("skipped") & (play_ms >= cfg.full_play_fallback_ms)
    full = F.coalesce(
        F.when(song_ms.isNotNull(), by_length)
        .when(F.col("reason_end").isNotNull(), trackdone)
        .when(F.col("skipped").isNotNull(), by_skip_flag)
        .when(play_ms.isNull(), F.lit(True))
        .otherwise(play_ms >= cfg.full_play_fallback_ms), F.lit(False))
    kept = F.col("_kept")
    return [F.when(kept, full).alias("full_play"), F.when(kept, ~full).alias("skip"),
            F.when(kept, F.coalesce(F.col("action").isin(*STRONG_POS_ACTIONS), F.lit(False))).alias("strong_pos"),
            F.when(kept, F.coalesce(F.col("action") == STRONG_NEG_ACTION, F.lit(False))).alias("strong_neg")]


def clean_log_spark(events: DataFrame, items: DataFrame, now: datetime,
                    config: CleaningConfig | None = None) -> DataFrame:
    """Every input row with ``reason``/``stage`` and, for kept rows, sessions and labels (lazy).

    ``events`` and ``items`` are canonical (see :func:`musicrecall.spark.io.read_table`). Columns:
    :data:`OUTPUT_COLUMNS`, plus ``_row`` when the input has it.
    """
    cfg = config or CleaningConfig()
    order = source_order(events)
    known = items.select("song_id", F.col("duration_ms").alias("_duration"), F.lit(True).alias("_known"))
    ev = (events.withColumn("_song_ms_raw", F.col("song_ms"))  # duplicates compare the logged value
          .join(known, on="song_id", how="left")
          .withColumns({"song_ms": F.coalesce("song_ms", "_duration"), "_known": F.coalesce("_known", F.lit(False)),
                        "_ts_ms": F.unix_millis("ts")})
          .repartition("user_id"))
    ev = ev.withColumn("_r1", _invalid_or_duplicate(order, epoch_ms(now), cfg)).withColumn("_v", F.col("_r1").isNull())
    by_time = [F.col("_ts_ms"), *[F.col(c) for c in order]]
    w_valid = Window.partitionBy("user_id", "_v").orderBy(*by_time)
    ev = ev.withColumn("_gap", (F.col("_ts_ms") - F.lag("_ts_ms").over(w_valid)).cast("double"))
    ev = ev.join(_bot_users(ev, cfg), on="user_id", how="left")
    ev = ev.withColumn("_r2", F.when(F.col("_v") & F.coalesce("_bot", F.lit(False)), "bot")
                       .when(F.col("_v") & (F.col("play_ms") < cfg.accidental_ms), "accidental"))
    ev = ev.withColumn("_k", F.col("_v") & F.col("_r2").isNull())
    # sessions: a gap of more than session_gap_ms between one play's end and the next start
    w_kept = Window.partitionBy("user_id", "_k").orderBy(*by_time)
    prev_end = F.lag(F.col("_ts_ms") + F.greatest(F.coalesce("play_ms", F.lit(0)), F.lit(0))).over(w_kept)
    new = prev_end.isNull() | (F.col("_ts_ms") - prev_end > session_gap_ms(cfg.session_gap_min))
    ev = ev.withColumn("_new", new.cast("long"))
    ev = ev.withColumn("_s", F.sum("_new").over(w_kept.rowsBetween(Window.unboundedPreceding, Window.currentRow)) - 1)
    w_sess = Window.partitionBy("user_id", "_k", "_s")
    ev = ev.withColumn("_pos", F.row_number().over(w_sess.orderBy(*by_time)) - 1)
    # trailing autoplay: autoplay rows after the session's last non-autoplay row, if there are enough
    auto = F.coalesce(F.col("reason_start") == AUTOPLAY_START, F.lit(False))
    last_chosen = F.coalesce(F.max(F.when(~auto, F.col("_pos"))).over(w_sess), F.lit(-1))
    tail_len = F.count(F.lit(1)).over(w_sess) - 1 - last_chosen
    autoplay = F.col("_k") & auto & (F.col("_pos") > last_chosen) & (tail_len >= cfg.autoplay_min_run)
    ev = ev.withColumn("reason", F.coalesce("_r1", "_r2", F.when(autoplay, "autoplay")))
    ev = ev.withColumn("_kept", F.col("reason").isNull())
    # dense session ids: within-user rank of the remaining sessions plus the sessions of earlier users
    ev = ev.withColumn("_ks", F.dense_rank().over(Window.partitionBy("user_id", "_kept").orderBy("_s")) - 1)
    per_user = ev.filter("_kept").groupBy("user_id").agg((F.max("_ks") + 1).alias("_n_sess"))
    # one global running sum over users (one row per user, not per play)
    offsets = per_user.select("user_id", F.coalesce(F.sum("_n_sess").over(
        Window.orderBy("user_id").rowsBetween(Window.unboundedPreceding, -1)), F.lit(0)).alias("_offset"))
    ev = ev.join(offsets, on="user_id", how="left")
    stage = F.when(F.col("_kept"), "kept").when(F.col("reason").isin(*INVALID_REASONS), "invalid").otherwise("noise")
    extra = ["_row"] if "_row" in events.columns else []
    return ev.select(
        *EVENTS_SCHEMA, *extra,
        F.when(F.col("_kept"), F.col("_offset") + F.col("_ks")).cast("long").alias("session_id"),
        F.when(F.col("_kept"), F.col("_pos")).cast("int").alias("pos_in_session"),
        *_labels(cfg), "reason", stage.alias("stage"))


@dataclass
class SparkCleanOutput:
    """Where :func:`write_clean` put the result, and its counts."""

    path: str  # folder: rows/stage=kept|invalid|noise/*.parquet, accounting/
    counts: dict[str, int]  # rows per reason, plus "kept"
    rows_in: int
    order: list[str]  # source-order columns (``_row`` is written with the rows when the input had it)

    @property
    def rows_kept(self) -> int:
        return self.counts.get("kept", 0)

    def accounting(self) -> pl.DataFrame:
        """The accounting table (same function as the polars path)."""
        removed = {k: v for k, v in self.counts.items() if k != "kept"}
        return accounting_from_counts(self.rows_in, self.rows_kept, removed)


def write_clean(spark: SparkSession, events: DataFrame, items: DataFrame, now: datetime, out: str | Path,
                config: CleaningConfig | None = None) -> SparkCleanOutput:
    """Clean and write ``out/rows`` (parquet partitioned by stage) and ``out/accounting`` in one pass.

    Raises if rows went missing (rows in != kept + removed), like the polars path.
    """
    out = str(out).rstrip("/")
    rows = clean_log_spark(events, items, now, config)
    rows.write.mode("overwrite").partitionBy("stage").parquet(f"{out}/rows")
    written = spark.read.parquet(f"{out}/rows")
    counts: dict[str, int] = {}
    for row in written.groupBy("stage", "reason").count().collect():
        counts["kept" if row["stage"] == "kept" else row["reason"]] = int(row["count"])
    result = SparkCleanOutput(out, counts, events.count(), source_order(events))
    if sum(counts.values()) != result.rows_in:
        raise AssertionError(f"cleaning lost rows: {result.rows_in} in, {sum(counts.values())} out")
    acc = result.accounting()
    spark.createDataFrame(acc.rows(), schema="reason string, stage string, rows long, share double") \
        .coalesce(1).write.mode("overwrite").parquet(f"{out}/accounting")
    return result


def _read_stage(folder: Path, stage: str, columns: list[str]) -> pl.DataFrame | None:
    files = sorted((folder / "rows" / f"stage={stage}").glob("*.parquet"))
    return pl.read_parquet(files, columns=columns) if files else None


def read_clean_result(output: SparkCleanOutput, config: CleaningConfig | None = None) -> CleanResult:
    """The written result as a polars :class:`CleanResult`, ordered as the polars path orders it.

    Kept rows in session order (= user, time, source order); removed rows in source order. Needs the
    output folder on a local (or mounted) file system.
    """
    cfg = config or CleaningConfig()
    folder = Path(output.path.removeprefix("file:"))
    events_cols, order = list(EVENTS_SCHEMA), output.order
    has_row = order == ["_row"]
    types = {**EVENTS_SCHEMA, **SESSION_COLUMNS, **dict.fromkeys(LABEL_COLUMNS, pl.Boolean()), "reason": pl.String()}
    kept_cols = [*events_cols, *SESSION_COLUMNS, *LABEL_COLUMNS]
    kept = _read_stage(folder, "kept", kept_cols)
    kept = (kept.sort("session_id", "pos_in_session") if kept is not None
            else pl.DataFrame(schema={c: types[c] for c in kept_cols}))
    parts = [p for p in (_read_stage(folder, s, [*events_cols, "reason", *(["_row"] if has_row else [])])
                         for s in ("invalid", "noise")) if p is not None]
    removed_cols = [*events_cols, "reason"]
    removed = (pl.concat(parts).sort(order).drop([c for c in ["_row"] if has_row]) if parts
               else pl.DataFrame(schema={c: types[c] for c in removed_cols}))
    kept = kept.select([pl.col(c).cast(types[c]) for c in kept_cols])
    removed = removed.select([pl.col(c).cast(types[c]) for c in removed_cols]).with_columns(
        stage=pl.when(pl.col("reason").is_in(list(INVALID_REASONS))).then(pl.lit("invalid")).otherwise(pl.lit("noise")))
    result = CleanResult(kept, removed, output.accounting(), cfg, output.rows_in)
    result.check_balance()
    return result
