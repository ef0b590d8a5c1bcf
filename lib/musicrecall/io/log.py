"""A generic play log in CSV / TSV / Parquet / JSON, with source ids of any form.

:func:`import_log` reads one file with a user column and a song column (names below; any id form:
text, sparse integers, URIs) and optionally ``ts``, ``play_ms`` and the other canonical event columns,
and maps the ids to contiguous ``0..n-1`` (kept as ``user_key`` / ``song_key``). Without a time column
the rows' order is the listening order and the dataset gets ordinal time, as for
:func:`musicrecall.io.import_sequences`.

=============  ==================================================================================
user           ``user_id``, ``user``, ``user_key``, ``userid``, ``uid``, ``username``
song           ``song_id``, ``song``, ``song_key``, ``item_id``, ``item``, ``track_id``, ``track``,
               ``spotify_track_uri``, ``iid``
time           ``ts``, ``timestamp``, ``time``, ``played_at``, ``datetime``: ISO-8601 text, or epoch
               numbers whose unit is ``ts_unit`` or detected from their magnitude
play length    ``play_ms``, ``ms_played``, ``msplayed``
=============  ==================================================================================

Also read when present: ``song_ms``, ``entry``, ``action``, ``reason_start``, ``reason_end``, ``skipped``,
``title``, ``artist``, ``album`` (item information). Each row is one record; a bad row is rejected with
the first reason that applies: ``bad_encoding``, ``blank_line``, ``bad_format`` (wrong field count),
``truncated`` (the last record of a text file that does not end with a line break, when it is
incomplete: too few fields, an unclosed quote, a bad value, a character cut in half; a complete one is kept),
``missing_user``, ``missing_track``, ``bad_ts``, ``ts_out_of_range``, ``bad_play_ms``,
``play_ms_out_of_range``, ``bad_song_ms``, ``song_ms_out_of_range``, ``bad_skipped``; the rejected
``raw`` names the column and holds the row. With ``on_error="raise"`` the first record whose structure
is broken (the first five reasons, and ``malformed_json``) raises :class:`InputError` naming file and
row; bad values are rejected per row in both modes (as the Spotify importers do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from musicrecall.io.catalog import Catalog
from musicrecall.io.errors import InputError
from musicrecall.io.generic import (
    FILES_SCHEMA,
    REJECTED_SCHEMA,
    ImportResult,
    OnError,
    PathLike,
    assemble_result,
)
from musicrecall.io.sequences import as_catalog, check_on_error, ordinal_meta, ordinal_ts, raise_first
from musicrecall.io.tables import read_records
from musicrecall.io.timeconv import exact_int, ms_values, text_ts

USER_COLS = ("user_id", "user", "user_key", "userid", "uid", "username")
SONG_COLS = ("song_id", "song", "song_key", "item_id", "item", "track_id", "track", "spotify_track_uri", "iid")
TS_COLS = ("ts", "timestamp", "time", "played_at", "datetime")
PLAY_COLS = ("play_ms", "ms_played", "msplayed")
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    low = {c.lower(): c for c in columns}
    return next((low[n] for n in names if n in low), None)


def _bool_values(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    if s.dtype == pl.Boolean:
        return s, pl.Series([None] * s.len(), dtype=pl.String)
    txt = s.cast(pl.String).str.strip_chars().str.to_lowercase().replace("", None)
    out = pl.DataFrame({"v": txt}).select(
        pl.when(pl.col("v").is_in(_TRUE)).then(True).when(pl.col("v").is_in(_FALSE)).then(False).alias("b")
    ).to_series()
    reason = pl.DataFrame({"v": txt, "b": out}).select(
        pl.when(pl.col("v").is_not_null() & pl.col("b").is_null()).then(pl.lit("bad_skipped")).alias("r")).to_series()
    return out, reason


def _key(s: pl.Series) -> pl.Series:
    """Source ids as text keys; integral floats (``12.0`` from a JSON or Parquet float column) as ``12``."""
    if s.dtype.is_float():
        ints, _ = exact_int(s)
        return ints.cast(pl.String).fill_null(s.cast(pl.String))
    if s.dtype == pl.String:
        return s.str.strip_chars().replace("", None)
    return s.cast(pl.String)


def import_log(
    path: PathLike, catalog: Catalog | PathLike | None = None, on_error: OnError = "raise",
    ts_unit: str | None = None,
) -> ImportResult:
    """Import a generic play log file (see the module docstring for the columns and reasons).

    Args:
        path: ``.csv``, ``.tsv``/``.txt`` (tab), ``.parquet``, ``.json`` (an array of objects) or
            ``.jsonl``/``.ndjson`` (one object per line).
        catalog: a catalogue (path or :class:`Catalog`) giving items and triples.
        on_error: ``"raise"`` (the first broken record raises :class:`InputError` naming file and row)
            or ``"quarantine"`` (broken records go to ``rejected`` with their reason too).
        ts_unit: unit of numeric timestamps (``s``, ``ms``, ``us``, ``ns``); default: detected.
    """
    check_on_error(on_error)
    p = Path(path)
    table = read_records(p)
    df, rej = table.frame, table.rejected
    user_c, song_c = _find(df.columns, USER_COLS), _find(df.columns, SONG_COLS)
    if user_c is None or song_c is None:
        raise InputError(p, None, f"needs a user column ({'/'.join(USER_COLS)}) and a song column "
                         f"({'/'.join(SONG_COLS)}); found: {', '.join(df.columns) or 'none'}")
    for c in (user_c, song_c):
        dt = df.schema[c]
        if dt.is_nested() or dt == pl.Object or dt == pl.Null:
            raise InputError(p, None, f"column {c!r} has type {dt}; ids must be text or numbers")
    ts_c, play_c = _find(df.columns, TS_COLS), _find(df.columns, PLAY_COLS)
    n = df.height
    cols: dict[str, pl.Series] = {"source_row": df.get_column("_row"), "user_key": _key(df.get_column(user_c)),
                                  "song_key": _key(df.get_column(song_c))}
    reasons: list[tuple[pl.Series, str | None]] = [
        (pl.Series([None] * n, dtype=pl.String).set(cols["user_key"].is_null(), "missing_user"), user_c),
        (pl.Series([None] * n, dtype=pl.String).set(cols["song_key"].is_null(), "missing_track"), song_c),
    ]
    if ts_c is not None:
        cols["ts"], r = text_ts(df.get_column(ts_c), ts_unit, p, ts_c)
        reasons.append((r, ts_c))
    for canon, c in (("play_ms", play_c), ("song_ms", _find(df.columns, ("song_ms",)))):
        if c is not None:
            cols[canon], r = ms_values(df.get_column(c), canon)
            reasons.append((r, c))
    sk = _find(df.columns, ("skipped",))
    if sk is not None:
        cols["skipped"], r = _bool_values(df.get_column(sk))
        reasons.append((r, sk))
    for c in ("entry", "action", "reason_start", "reason_end", "title", "artist", "album"):
        found = _find(df.columns, (c,))
        if found is not None:
            cols[c] = df.get_column(found).cast(pl.String)
    frame = pl.DataFrame(cols)
    reason_df = pl.DataFrame({f"r{i}": r for i, (r, _) in enumerate(reasons)})
    first = reason_df.select(pl.coalesce(reason_df.columns).alias("reason")).to_series()
    column = reason_df.select(pl.coalesce(
        [pl.when(pl.col(f"r{i}").is_not_null()).then(pl.lit(c)) for i, (_, c) in enumerate(reasons)]
    ).alias("column")).to_series()
    data_cols = [c for c in df.columns if c != "_row"]
    raw = df.select(pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in data_cols], separator=",")
                    .alias("raw")).to_series()
    frame = frame.with_columns(first, column, raw)
    if table.open_row is not None:  # a bad value in the last record of a file without a final line break: a cut
        cut = (pl.col("source_row") == table.open_row) & pl.col("reason").is_not_null()
        frame = frame.with_columns(
            pl.when(cut).then(pl.lit("truncated")).otherwise("reason").alias("reason"),
            pl.when(cut).then(pl.format("{} (last record, no line break after it: the file was cut here?); {}",
                                        "reason", "raw")).otherwise("raw").alias("raw"))
    bad = frame.filter(pl.col("reason").is_not_null())
    value_rej = bad.select(pl.lit(p.name).alias("source_file"), "source_row",
                           "reason", (pl.lit("column ") + pl.col("column") + pl.lit(": ") + pl.col("raw")).alias("raw"))
    rejected = pl.concat([rej.with_columns(pl.lit(p.name).alias("source_file")).select(list(REJECTED_SCHEMA)),
                          value_rej.select(list(REJECTED_SCHEMA))]).sort("source_row")
    if on_error == "raise":
        raise_first(p, rejected)
    ok = frame.filter(pl.col("reason").is_null()).drop("reason", "column", "raw").with_columns(
        pl.lit(p.name).alias("source_file"))
    if ts_c is None:
        ok = ok.sort("source_row").with_columns(ordinal_ts())
        meta: dict[str, Any] = ordinal_meta("log", p)
    else:
        meta = {"time_kind": "clock", "source": "log", "file": p.name,
                "ts_unit": ts_unit or ("detected" if df.get_column(ts_c).dtype != pl.String else "text or detected")}
    meta["columns"] = {"user": user_c, "song": song_c, "ts": ts_c, "play_ms": play_c}
    note = table.note
    if table.open_row is not None and "truncated" in frame.get_column("reason").to_list()[-1:]:
        from musicrecall.io.tables import OPEN_CUT

        note = OPEN_CUT
    files = pl.DataFrame({"source_file": [p.name], "user_key": [None], "rows_read": [table.rows_read],
                          "note": [note]}, schema=FILES_SCHEMA)
    users = ok.get_column("user_key").unique().to_list()
    return assemble_result(ok, rejected, files, users, as_catalog(catalog), meta)

