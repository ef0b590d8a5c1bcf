"""Importer for the Last.fm-1K dataset (``userid-timestamp-artid-artname-traid-traname.tsv``).

Format: UTF-8, tab-separated, no header, six columns
``userid, timestamp (ISO-8601 Z), artist MBID, artist name, track MBID, track name``. The timestamp is
the scrobble time (Last.fm records when the track started). Names may contain quotes, so the file is
read line by line (no CSV quoting) and split on tabs, vectorised in polars.

* ``song_key`` = track MBID, or ``"<artist> — <track>"`` when the MBID is empty;
* ``user_key`` = the Last.fm user id; ``play_ms`` and ``song_ms`` are unknown (null);
* rejected reasons: ``bad_columns`` (not exactly six tab-separated fields, including blank lines),
  ``bad_ts`` (timestamp not a date-time), ``missing_user`` (empty user id), ``missing_track`` (no
  track MBID and no track name).

``source_row`` is the 0-based line number, so the rejected ``raw`` line can be found in the file.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrecall.io.errors import InputError
from musicrecall.io.generic import (
    FILES_SCHEMA,
    REJECTED_SCHEMA,
    ImportResult,
    PathLike,
    assemble_result,
    parse_ts,
)

LASTFM_COLUMNS = ("user_key", "ts_raw", "artist_mbid", "artist", "track_mbid", "title")


def _read_lines(path: Path) -> pl.Series:
    """Every line of ``path`` (blank lines as null), without the line terminator."""
    if not path.is_file():
        raise InputError(path, None, "does not exist or is not a file")
    if path.stat().st_size == 0:
        raise InputError(path, None, "empty file (0 bytes)")
    try:
        # A separator that never occurs in text and no quoting: each line is one string field.
        lines = pl.read_csv(
            path, has_header=False, separator="\x1f", quote_char=None, infer_schema=False,
            new_columns=["line"], encoding="utf8-lossy", truncate_ragged_lines=True,
        ).get_column("line")
    except pl.exceptions.PolarsError as err:
        raise InputError(path, None, f"cannot be read as text lines: {err}") from err
    return lines.str.strip_suffix("\r")


def import_lastfm_1k(path: PathLike, source_root: PathLike | None = None) -> ImportResult:
    """Import a Last.fm-1K listening-history TSV.

    Args:
        path: the ``userid-timestamp-artid-artname-traid-traname.tsv`` file.
        source_root: ``source_file`` is the path relative to this folder (default: the file's folder).

    Returns:
        An :class:`ImportResult` with one user per Last.fm user id; items carry ``title`` and
        ``artist`` (no album, so only ``song_artist`` triples).
    """
    p = Path(path)
    lines = _read_lines(p)
    root = Path(source_root) if source_root is not None else p.parent
    source_file = p.resolve().relative_to(root.resolve()).as_posix()
    df = pl.DataFrame({"line": lines}).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
        pl.col("line").str.split("\t").alias("parts"),
    )
    nonempty = lambda e: pl.when(e.str.strip_chars() != "").then(e.str.strip_chars())  # noqa: E731
    df = df.with_columns(
        (pl.col("parts").list.len() == len(LASTFM_COLUMNS)).fill_null(False).alias("shape_ok"),
        *[nonempty(pl.col("parts").list.get(i, null_on_oob=True)).alias(c) for i, c in enumerate(LASTFM_COLUMNS)],
    ).with_columns(parse_ts(pl.col("ts_raw")).alias("ts"))
    df = df.with_columns(
        pl.when(~pl.col("shape_ok")).then(pl.lit("bad_columns"))
        .when(pl.col("user_key").is_null()).then(pl.lit("missing_user"))
        .when(pl.col("ts").is_null()).then(pl.lit("bad_ts"))
        .when(pl.col("track_mbid").is_null() & pl.col("title").is_null()).then(pl.lit("missing_track"))
        .alias("reason"),
        pl.coalesce("track_mbid", pl.col("artist").fill_null("") + pl.lit(" — ") + pl.col("title")).alias("song_key"),
    )
    rejected = df.filter(pl.col("reason").is_not_null()).select(
        pl.lit(source_file).alias("source_file"), "source_row", "reason", pl.col("line").fill_null("").alias("raw")
    ).select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items())
    ok = df.filter(pl.col("reason").is_null()).select(
        "user_key", "song_key", "title", "artist", pl.lit(None, dtype=pl.String).alias("album"), "ts",
        pl.lit(None, dtype=pl.Int64).alias("play_ms"), pl.lit(source_file).alias("source_file"), "source_row",
    )
    users = ok.get_column("user_key").unique().to_list()
    files = pl.DataFrame(
        {"source_file": [source_file], "user_key": [None], "rows_read": [df.height],
         "note": ["several users in one file" if len(users) > 1 else None]},
        schema=FILES_SCHEMA,
    )
    return assemble_result(ok, rejected, files, users, meta={"time_kind": "clock", "source": "lastfm-1k"})
