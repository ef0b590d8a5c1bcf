"""The canonical tables every importer and the simulator produce.

Ids are contiguous-friendly ``Int64`` (importers map the source's string keys, e.g. Spotify URIs, to
integers and keep the original in ``song_key`` / ``user_key``). Every event row carries
``source_file`` and ``source_row`` so that any row can be traced back, and so that cleaning can
account for every row it keeps or quarantines.
"""

from __future__ import annotations

import polars as pl

ENTRIES: tuple[str, ...] = ("radio", "daily_30", "single_song_rec", "ugc_playlist", "ai_playlist", "search")
ACTIONS: tuple[str, ...] = ("collect", "block", "follow_artist", "playlist_add")

EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "song_id": pl.Int64(),
    "ts": pl.Datetime("ms", "UTC"),  # null when the source timestamp could not be parsed
    "play_ms": pl.Int64(),
    "song_ms": pl.Int64(),  # null when the source does not know the track length
    "entry": pl.String(),  # one of ENTRIES, a source-specific value, or null
    "action": pl.String(),  # one of ACTIONS or null (a plain play)
    "reason_start": pl.String(),  # Spotify-style: clickrow, trackdone, fwdbtn, autoplay, ...
    "reason_end": pl.String(),  # Spotify-style: trackdone, fwdbtn, endplay, logout, ...
    "skipped": pl.Boolean(),  # only when the source records it
    "source_file": pl.String(),
    "source_row": pl.Int64(),  # 0-based record index inside source_file
}

ITEMS_SCHEMA: dict[str, pl.DataType] = {
    "song_id": pl.Int64(),
    "song_key": pl.String(),  # id in the source system (Spotify URI, MBID, world id ...)
    "title": pl.String(),
    "artist": pl.String(),
    "album": pl.String(),
    "genre": pl.String(),
    "language": pl.String(),
    "version": pl.String(),  # original / live / cover / remix
    "duration_ms": pl.Int64(),
    "release_year": pl.Int32(),
}

USERS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "user_key": pl.String(),
    "age_bucket": pl.String(),
    "gender": pl.String(),
    "region": pl.String(),
}

TRIPLES_SCHEMA: dict[str, pl.DataType] = {
    "head": pl.String(),  # e.g. "song:17"
    "relation": pl.String(),  # e.g. "song_artist"
    "tail": pl.String(),  # e.g. "artist:Jay Chou"
}

SCHEMAS = {"events": EVENTS_SCHEMA, "items": ITEMS_SCHEMA, "users": USERS_SCHEMA, "triples": TRIPLES_SCHEMA}


def empty(table: str) -> pl.DataFrame:
    """An empty frame with the canonical columns of ``table``."""
    return pl.DataFrame(schema=SCHEMAS[table])


def conform(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Select and cast ``df`` to the canonical schema of ``table``; missing optional columns become null.

    Raises ``ValueError`` naming the table and column when a cast is impossible (strict cast), so a
    wrong type is never silently turned into nulls.
    """
    schema = SCHEMAS[table]
    exprs = []
    for name, dtype in schema.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype, strict=True).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    try:
        return df.select(exprs)
    except pl.exceptions.InvalidOperationError as err:  # pragma: no cover - message re-raised
        raise ValueError(f"{table}: cannot cast to the canonical schema: {err}") from err
