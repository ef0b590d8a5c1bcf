"""Importer for the Last.fm-1K dataset (``userid-timestamp-artid-artname-traid-traname.tsv``).

Format: UTF-8, tab-separated, no header, six columns
``userid, timestamp (ISO-8601 Z), artist MBID, artist name, track MBID, track name``. The timestamp is
the scrobble time (Last.fm records when the track started). Names may contain quotes, so the file is
read line by line (no CSV quoting) and split on tabs, vectorised in polars; one bad line never
affects the next.

* ``song_key`` = track MBID, or ``"<artist> — <track>"`` when the MBID is empty (``—`` and ``\\``
  inside names escaped with ``\\``, so names containing " — " cannot merge two songs);
* ``user_key`` = the Last.fm user id; ``play_ms`` and ``song_ms`` are unknown (null);
* rejected reasons: ``bad_encoding`` (the line holds bytes that are not UTF-8, e.g. a latin-1
  "Café": never decoded into a replacement character; ``raw`` shows ``Caf\\xe9``), ``truncated`` (the
  last line of a file that does not end with a line break, when it is incomplete: too few fields, a bad
  value, a character cut in half; a complete last line without a line break is kept), ``bad_columns`` (not
  exactly six tab-separated fields, including blank lines), ``missing_user`` (empty user id),
  ``bad_ts`` (timestamp not a date-time), ``ts_out_of_range`` (before 1990 or from 2100),
  ``missing_track`` (no track MBID and no track name). The first two stop the import with
  ``on_error="raise"`` (default) and are rejected with ``"quarantine"``; the others are rejected in
  both modes.

``source_row`` is the 0-based line number, so the rejected ``raw`` line can be found in the file.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrecall.io.generic import (
    FILES_SCHEMA,
    REJECTED_SCHEMA,
    ImportResult,
    OnError,
    PathLike,
    assemble_result,
    parse_ts,
)
from musicrecall.io.timeconv import PLAUSIBLE_TS

LASTFM_COLUMNS = ("user_key", "ts_raw", "artist_mbid", "artist", "track_mbid", "title")


def import_lastfm_1k(
    path: PathLike, source_root: PathLike | None = None, on_error: OnError = "raise"
) -> ImportResult:
    """Import a Last.fm-1K listening-history TSV.

    Args:
        path: the ``userid-timestamp-artid-artname-traid-traname.tsv`` file.
        source_root: ``source_file`` is the path relative to this folder (default: the file's folder).
        on_error: ``"raise"``: a line that is not UTF-8 or a cut last line raises :class:`InputError`
            naming file and line; ``"quarantine"``: it is rejected (``bad_encoding`` / ``truncated``).
            Lines with bad values (``bad_columns``, ``bad_ts``, ...) are rejected in both modes.

    Returns:
        An :class:`ImportResult` with one user per Last.fm user id; items carry ``title`` and
        ``artist`` (no album, so only ``song_artist`` triples).
    """
    from musicrecall.io.sequences import check_on_error, mark_cut_last_record, open_note, raise_first
    from musicrecall.io.spotify import song_key_expr
    from musicrecall.io.text import read_text

    check_on_error(on_error)
    p = Path(path)
    text = read_text(p)
    lines = text.lines
    root = Path(source_root) if source_root is not None else p.parent
    source_file = p.resolve().relative_to(root.resolve()).as_posix()
    df = lines.select(
        pl.col("line_no").alias("source_row"), pl.col("line").str.split("\t").alias("parts"), "line", "raw",
    )
    nonempty = lambda e: pl.when(e.str.strip_chars() != "").then(e.str.strip_chars())  # noqa: E731
    df = df.with_columns(
        (pl.col("parts").list.len() == len(LASTFM_COLUMNS)).fill_null(False).alias("shape_ok"),
        *[nonempty(pl.col("parts").list.get(i, null_on_oob=True)).alias(c) for i, c in enumerate(LASTFM_COLUMNS)],
    ).with_columns(parse_ts(pl.col("ts_raw")).alias("ts"))
    lo, hi = PLAUSIBLE_TS
    df = df.with_columns(
        pl.when(pl.col("raw").is_not_null()).then(pl.lit("bad_encoding"))
        .when(~pl.col("shape_ok")).then(pl.lit("bad_columns"))
        .when(pl.col("user_key").is_null()).then(pl.lit("missing_user"))
        .when(pl.col("ts").is_null()).then(pl.lit("bad_ts"))
        .when((pl.col("ts") < lo) | (pl.col("ts") >= hi)).then(pl.lit("ts_out_of_range"))
        .when(pl.col("track_mbid").is_null() & pl.col("title").is_null()).then(pl.lit("missing_track"))
        .alias("reason"),
        pl.coalesce("track_mbid", song_key_expr(pl.col("artist").fill_null(""), pl.col("title"))).alias("song_key"),
        pl.coalesce("raw", "line").alias("line"),
    )
    # a last line without a line break after it is kept when complete; cut (truncated) when it is not
    df = mark_cut_last_record(df.with_columns(pl.col("line").fill_null("").alias("raw")), text)
    rejected = df.filter(pl.col("reason").is_not_null()).select(
        pl.lit(source_file).alias("source_file"), "source_row", "reason", "raw"
    ).select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items())
    if on_error == "raise":
        raise_first(p, rejected.with_columns(pl.col("source_row").alias("line_no")))
    ok = df.filter(pl.col("reason").is_null()).select(
        "user_key", "song_key", "title", "artist", pl.lit(None, dtype=pl.String).alias("album"), "ts",
        pl.lit(None, dtype=pl.Int64).alias("play_ms"), pl.lit(source_file).alias("source_file"), "source_row",
    )
    users = ok.get_column("user_key").unique().to_list()
    files = pl.DataFrame(
        {"source_file": [source_file], "user_key": [None], "rows_read": [df.height],
         "note": [(("several users in one file" if len(users) > 1 else "")
                   + open_note(text, bool(df.height) and df.get_column("reason")[-1] == "truncated"))
                  .removeprefix("; ") or None]},
        schema=FILES_SCHEMA,
    )
    return assemble_result(ok, rejected, files, users, meta={"time_kind": "clock", "source": "lastfm-1k"})
