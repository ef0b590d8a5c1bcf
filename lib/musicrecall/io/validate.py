"""Catalogue checks on a dataset folder, run by :func:`musicrecall.io.load_dataset_dir` before cleaning.

Models index arrays by ``song_id`` and ``user_id``, so ids must be exact integers running ``0..n-1``
with no duplicates, and events must point at known songs and users. Each failure raises
:class:`~musicrecall.io.errors.InputError` naming the file, the 0-based row and the column, instead
of surfacing later as an ``IndexError`` or a ``ShapeError`` inside a notebook.

Events pointing outside the tables: a few are log noise that cleaning quarantines row by row with a
reason (rules ``missing_user`` / ``unknown_song``, as the simulator's injected unknown songs are); more
than :data:`MAX_UNKNOWN_SHARE` of the events means the ids were never mapped to the tables (e.g. source
ids saved as they are) and is an error here, before cleaning would quietly drop most of the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from musicrecall.io.errors import InputError

MAX_UNKNOWN_SHARE = 0.01


def _int_ids(df: pl.DataFrame, column: str, path: Path) -> pl.Series:
    """``df[column]`` as Int64; :class:`InputError` at the first value that is not an exact integer."""
    if column not in df.columns:
        raise InputError(path, None, f"column {column!r} is missing (found: {', '.join(df.columns) or 'none'})")
    s = df.get_column(column)
    if s.dtype.is_integer():
        return s.cast(pl.Int64)
    if s.dtype.is_float():
        ok = s.is_null() | (s.is_finite() & (s == s.round(0)) & (s.abs() < 2.0**62))
        out = s.cast(pl.Int64, strict=False)
    elif s.dtype == pl.String:
        out = s.str.strip_chars().cast(pl.Int64, strict=False)
        ok = s.is_null() | out.is_not_null()
    else:
        raise InputError(path, None, f"column {column!r} has type {s.dtype}; ids must be integers")
    if not ok.all():
        row = int((~ok).arg_max() or 0)
        n_bad = int((~ok).sum())
        kind = "mixed types: " if s.dtype == pl.String and ok.sum() > s.null_count() else ""
        raise InputError(path, row, f"column {column!r} ({s.dtype}): {kind}value {s[row]!r} is not an integer id "
                         f"({n_bad} such value(s))")
    return out


def _check_ids(ids: pl.Series, column: str, path: Path) -> None:
    """``ids`` (a table's own key) must be non-null, unique and exactly ``0..n-1``."""
    if ids.null_count():
        row = int(ids.is_null().arg_max() or 0)
        raise InputError(path, row, f"column {column!r}: null id")
    dup = ids.is_duplicated()
    if dup.any():
        rows = (ids == ids[int(dup.arg_max() or 0)]).arg_true().to_list()
        raise InputError(path, rows[1], f"column {column!r}: duplicate id {ids[rows[0]]} (rows "
                         f"{', '.join(map(str, rows[:5]))}; {int(dup.sum())} rows share a duplicated id)")
    n = ids.len()
    out = (ids < 0) | (ids >= n)
    if out.any():
        row = int(out.arg_max() or 0)
        raise InputError(path, row, f"column {column!r}: id {ids[row]} is outside 0..{n - 1}; ids must run "
                         f"0..n-1 without gaps (re-import with musicrecall.io, which maps source ids to "
                         "contiguous ids and keeps them as song_key / user_key)")


def _check_refs(refs: pl.Series, n: int, column: str, path: Path, table: str) -> None:
    out = refs.is_not_null() & ((refs < 0) | (refs >= n))
    n_out = int(out.sum())
    if n_out and n_out > MAX_UNKNOWN_SHARE * max(refs.len(), 1):
        row = int(out.arg_max() or 0)
        raise InputError(path, row, f"column {column!r}: id {refs[row]} is not in {table} (ids 0..{n - 1}); "
                         f"{n_out} of {refs.len()} events point outside it: were the source ids mapped to the "
                         "table's ids? (the musicrecall.io importers do this)")


def validate_tables(tables: Mapping[str, pl.DataFrame], folder: Path | str) -> None:
    """Check the ids of ``events``, ``items``, ``users`` (and song heads of ``triples``) of a dataset folder.

    Raises :class:`InputError` naming ``<folder>/<table>.parquet``, row and column for: an id column
    that is not integer (or mixes text and numbers), a null or duplicate ``song_id`` / ``user_id`` in
    items / users, ids not running ``0..n-1``, more than :data:`MAX_UNKNOWN_SHARE` of the events
    pointing at songs or users the tables do not hold, and ``song:<id>`` triple heads outside items.
    """
    d = Path(folder)
    items, users, events = tables["items"], tables["users"], tables["events"]
    song_ids = _int_ids(items, "song_id", d / "items.parquet")
    _check_ids(song_ids, "song_id", d / "items.parquet")
    user_ids = _int_ids(users, "user_id", d / "users.parquet")
    _check_ids(user_ids, "user_id", d / "users.parquet")
    ev = d / "events.parquet"
    _check_refs(_int_ids(events, "song_id", ev), items.height, "song_id", ev, "items.parquet")
    _check_refs(_int_ids(events, "user_id", ev), users.height, "user_id", ev, "users.parquet")
    triples = tables.get("triples")
    if triples is not None and "head" in triples.columns and triples.height:
        heads = triples.get_column("head").cast(pl.String)
        is_song = heads.str.starts_with("song:")
        num = heads.str.strip_prefix("song:").cast(pl.Int64, strict=False)
        bad = is_song & (num.is_null() | (num < 0) | (num >= items.height))
        if bad.any():
            row = int(bad.arg_max() or 0)
            raise InputError(d / "triples.parquet", row, f"column 'head': {heads[row]!r} is not a song of "
                             f"items.parquet (song ids 0..{items.height - 1})")
