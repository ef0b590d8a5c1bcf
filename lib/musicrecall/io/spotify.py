"""Importers for Spotify's two personal-data exports.

The canonical ``ts`` is the *start* of a play (cleaning takes ``ts + play_ms`` as its end), while
both Spotify exports log the *end*, so both importers set ``ts = end - ms_played``.

**Extended streaming history** (``Streaming_History_Audio_*.json``, older ``endsong_*.json``): one
record per play with ``ts`` (ISO-8601 UTC ``Z``; per Spotify's documentation the time the track
*stopped* playing, which the real exports confirm: read as start times, 925 of 3030 consecutive
plays would overlap, read as end times 26 do), ``ms_played``, ``master_metadata_*``,
``spotify_track_uri``, episode / audiobook fields, ``reason_start``, ``reason_end``, ``shuffle``,
``skipped``, ``offline``, ... We set ``ts = ts - ms_played``, map ``ms_played`` -> ``play_ms``,
keep ``reason_start`` / ``reason_end`` / ``skipped``; ``entry`` and ``action`` are null (Spotify
logs no entry point and no explicit feedback). ``platform``, ``shuffle``, ``offline``,
``conn_country``, ``ip_addr`` and ``incognito_mode`` have no canonical column and are dropped.

**Account data** (``StreamingHistory*.json``): ``endTime`` ("YYYY-MM-DD HH:MM"), ``artistName``,
``trackName``, ``msPlayed``. ``endTime`` is the *end* of the play, at minute resolution, in a time
zone the file does not state. **Assumption: it is UTC** (if your export is in local time, shift
``events.ts`` by your offset; sessions and ordering are unaffected by a constant shift).
``ts = endTime - msPlayed``, exact to within the minute rounding of ``endTime``. There is no track
URI, so ``song_key`` is ``"<artist> — <track>"`` (a ``—`` or ``\\`` inside a name is escaped with ``\\``,
so an artist or title containing " — " cannot merge two songs); podcast episodes in the music files
cannot be told apart from songs.

Rows that cannot become events are rejected with a reason (first matching, in this order):

==================  ===========================================================================
``bad_encoding``    the record holds bytes that are not UTF-8 (``raw`` shows them as ``\\xNN``)
``malformed_json``  the record (or data after the closing ``]``) is not valid JSON
``truncated``       the file ends inside this record (cut): the fragment is never kept
``duplicate_key``   the record names a field twice (two ``ms_played``): which one is meant is unknown
``not_a_record``    the array element is not a JSON object
``not_music``       a podcast episode or audiobook (no track URI; episode/audiobook fields set)
``missing_track``   no track URI (extended) / null or "Unknown Track"/"Unknown Artist" (basic)
``bad_ts``          ``ts`` / ``endTime`` missing, not a string, or not a valid date-time
``ts_out_of_range``  a date-time before 1990 or from 2100 on
``bad_play_ms``     ``ms_played`` / ``msPlayed`` missing or not an exact integer (2.5, "1000", true;
                    negative values are kept: :func:`musicrecall.cleaning.clean_log` quarantines them)
``play_ms_out_of_range``  more than a day in magnitude (1e13, 2**63-1, 1e20 would overflow later)
``bad_skipped``     ``skipped`` is neither a boolean, 0/1 nor null
==================  ===========================================================================

The first four are found by the reader (:mod:`musicrecall.io.jsonarray`), which resynchronises at the
next record, so one broken record never costs the records after it and ``rows_read`` is the true
record count. With the default ``on_error="raise"`` they raise
:class:`~musicrecall.io.errors.InputError` naming the file, the record index (= number of records
before it) and the byte; with ``"quarantine"`` they are rejected like the others. File-level problems
(missing, 0 bytes, not a JSON array) raise in both modes. Streaming-history files of another export
kind in the folder (extended, account data, video) are listed in the accounting as skipped, with the
reason; a file reached by two paths is read once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from musicrecall.io.errors import InputError
from musicrecall.io.generic import (
    FILES_SCHEMA,
    REJECTED_SCHEMA,
    ImportResult,
    OnError,
    PathLike,
    assemble_result,
    natural_key,
    parse_ts,
    resolve_inputs,
)
from musicrecall.io.jsonarray import JsonRecords, read_json_array
from musicrecall.io.timeconv import PLAUSIBLE_TS, PLAY_MS_MAX

EXTENDED_PATTERNS = ("Streaming_History_Audio_*.json", "endsong_*.json")
BASIC_PATTERNS = ("StreamingHistory*.json",)
VIDEO_PATTERNS = ("Streaming_History_Video_*.json",)
# Streaming-history files of each export kind: found beside the kind being imported, they are listed
# in the accounting as skipped (rows_read null) with the importer that reads them.
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "extended": (EXTENDED_PATTERNS, "Spotify extended streaming history: import with import_spotify_extended "
                                    "(python -m musicrecall.io spotify-extended)"),
    "basic": (BASIC_PATTERNS, "Spotify account-data streaming history: import with import_spotify_basic "
                              "(python -m musicrecall.io spotify-basic)"),
    "video": (VIDEO_PATTERNS, "Spotify video streaming history: video plays are not music listening"),
}
UNKNOWN_TRACK = "Unknown Track"
UNKNOWN_ARTIST = "Unknown Artist"


def read_json_records(path: Path, on_error: OnError = "raise") -> JsonRecords:
    """The records of one export file (see :func:`musicrecall.io.jsonarray.read_json_array`)."""
    return read_json_array(path, on_error)


# --------------------------------------------------------------------------------------------------
# record normalisation
# --------------------------------------------------------------------------------------------------


def _text(v: Any) -> str | None:
    """A text field: strings as they are, other scalars as their JSON text, null stays null."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _int_ms(v: Any) -> tuple[int | None, str | None]:
    """(value, reason) for a millisecond count: ints and integral floats within a day are kept.

    ``"bad_play_ms"`` for anything that is not an exact integer (text, 2.5, true, null, NaN);
    ``"play_ms_out_of_range"`` beyond :data:`~musicrecall.io.timeconv.PLAY_MS_MAX` in magnitude (1e13,
    2**63-1 or 1e20 would overflow or wrap in int64 sums later).
    """
    if type(v) is int and -PLAY_MS_MAX <= v <= PLAY_MS_MAX:  # the common case, first
        return v, None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None, "bad_play_ms"
    if isinstance(v, float) and v == v and abs(v) > PLAY_MS_MAX:  # also inf; NaN is not a number of ms
        return None, "play_ms_out_of_range"
    if isinstance(v, float) and not v.is_integer():
        return None, "bad_play_ms"
    if abs(int(v)) > PLAY_MS_MAX:
        return None, "play_ms_out_of_range"
    return int(v), None


def _bool(v: Any) -> tuple[bool | None, bool]:
    if v is None or isinstance(v, bool):
        return v, True
    if isinstance(v, int) and v in (0, 1):
        return bool(v), True
    return None, False


def _raw(rec: Any) -> str:
    try:
        return json.dumps(rec, ensure_ascii=False)
    except (TypeError, ValueError):  # pragma: no cover - json.loads output is always dumpable
        return repr(rec)


def _finish(
    frames: list[pl.DataFrame], rejected: list[pl.DataFrame], files: list[dict[str, Any]], users: list[str],
    source: str = "spotify",
) -> ImportResult:
    parsed = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    if parsed.is_empty() and not parsed.columns:
        parsed = pl.DataFrame(
            schema={"user_key": pl.String(), "song_key": pl.String(), "title": pl.String(), "artist": pl.String(),
                    "album": pl.String(), "source_file": pl.String(), "source_row": pl.Int64()}
        )
    rej = pl.concat(rejected) if rejected else pl.DataFrame(schema=REJECTED_SCHEMA)
    return assemble_result(parsed, rej, pl.DataFrame(files, schema=FILES_SCHEMA), users,
                           meta={"time_kind": "clock", "source": source})


def _split(df: pl.DataFrame, read: JsonRecords, source_file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a per-record frame with a ``reason`` column into accepted rows and rejected rows.

    Records the reader could not parse (``read.breaks``) are rejected with the reader's reason and raw
    text instead of the frame's.
    """
    records = read.records
    if read.breaks:
        brk = pl.DataFrame({"source_row": [b.row for b in read.breaks], "b_reason": [b.reason for b in read.breaks]},
                           schema={"source_row": pl.Int64, "b_reason": pl.String})
        df = df.join(brk, on="source_row", how="left", maintain_order="left").with_columns(
            pl.coalesce("b_reason", "reason").alias("reason")).drop("b_reason")
    broken_raw = {b.row: b.raw for b in read.breaks}
    bad = df.filter(pl.col("reason").is_not_null()).select("source_row", "reason")
    raws = [broken_raw[i] if i in broken_raw else _raw(records[i]) for i in bad.get_column("source_row").to_list()]
    rej = bad.with_columns(pl.lit(source_file).alias("source_file"), pl.Series("raw", raws, dtype=pl.String))
    rej = rej.select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items())
    ok = df.filter(pl.col("reason").is_null()).drop("reason")
    return ok, rej


def _note(read: JsonRecords) -> str | None:
    if read.note is not None:
        return read.note
    return "empty array: no records" if not read.records else None


def _ts_reason(end_ts: pl.Expr) -> pl.Expr:
    lo, hi = PLAUSIBLE_TS
    return (pl.when(end_ts.is_null()).then(pl.lit("bad_ts"))
            .when((end_ts < lo) | (end_ts >= hi)).then(pl.lit("ts_out_of_range")))


def song_key_expr(*parts: pl.Expr) -> pl.Expr:
    """``"<part> — <part>"`` with ``\\`` and ``—`` inside the parts escaped, so no two different
    (artist, title) pairs share a key: "A — B" + "C" and "A" + "B — C" stay two songs."""
    esc = [p.str.replace_all("\\", "\\\\", literal=True).str.replace_all("—", "\\—", literal=True) for p in parts]
    return pl.concat_str(esc, separator=" — ")


def _extended_frame(records: list[Any], user_key: str, source_file: str) -> pl.DataFrame:
    """One row per record with normalised values and a pre-``ts`` / post-``ts`` rejection reason."""
    n = len(records)
    pre: list[str | None] = [None] * n
    post: list[str | None] = [None] * n
    cols: dict[str, list[Any]] = {k: [None] * n for k in (
        "ts_raw", "play_ms", "song_key", "title", "artist", "album", "reason_start", "reason_end", "skipped")}
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            pre[i] = "not_a_record"
            continue
        uri = _text(r.get("spotify_track_uri"))
        if not uri:
            episode = any(r.get(k) for k in ("spotify_episode_uri", "episode_name", "episode_show_name",
                                              "audiobook_uri", "audiobook_title", "audiobook_chapter_uri"))
            pre[i] = "not_music" if episode else "missing_track"
            continue
        ts = r.get("ts")
        cols["ts_raw"][i] = ts if isinstance(ts, str) else None
        ms, ms_reason = _int_ms(r.get("ms_played"))
        skipped, sk_ok = _bool(r.get("skipped"))
        if ms_reason:
            post[i] = ms_reason
        elif not sk_ok:
            post[i] = "bad_skipped"
        cols["play_ms"][i] = ms
        cols["skipped"][i] = skipped
        cols["song_key"][i] = uri
        cols["title"][i] = _text(r.get("master_metadata_track_name"))
        cols["artist"][i] = _text(r.get("master_metadata_album_artist_name"))
        cols["album"][i] = _text(r.get("master_metadata_album_album_name"))
        cols["reason_start"][i] = _text(r.get("reason_start"))
        cols["reason_end"][i] = _text(r.get("reason_end"))
    df = pl.DataFrame(
        {**cols, "pre": pre, "post": post},
        schema={"ts_raw": pl.String, "play_ms": pl.Int64, "song_key": pl.String, "title": pl.String,
                "artist": pl.String, "album": pl.String, "reason_start": pl.String, "reason_end": pl.String,
                "skipped": pl.Boolean, "pre": pl.String, "post": pl.String},
    )
    return df.with_columns(parse_ts(pl.col("ts_raw")).alias("end_ts")).select(
        pl.lit(user_key).alias("user_key"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
        pl.lit(source_file).alias("source_file"),
        "song_key", "title", "artist", "album",
        (pl.col("end_ts") - pl.duration(milliseconds=pl.col("play_ms").fill_null(0))).alias("ts"),
        "play_ms", "reason_start", "reason_end", "skipped",
        pl.coalesce("pre", _ts_reason(pl.col("end_ts")), "post").alias("reason"),
    )


def _basic_frame(records: list[Any], user_key: str, source_file: str) -> pl.DataFrame:
    """Like :func:`_extended_frame` for account-data records (``endTime`` is the end of the play)."""
    n = len(records)
    pre: list[str | None] = [None] * n
    post: list[str | None] = [None] * n
    end_raw: list[str | None] = [None] * n
    play: list[int | None] = [None] * n
    artist: list[str | None] = [None] * n
    title: list[str | None] = [None] * n
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            pre[i] = "not_a_record"
            continue
        a, t = _text(r.get("artistName")), _text(r.get("trackName"))
        if t is None and a is None and ("episodeName" in r or "podcastName" in r):
            pre[i] = "not_music"
            continue
        if not a or not t or a == UNKNOWN_ARTIST or t == UNKNOWN_TRACK:
            pre[i] = "missing_track"
            continue
        end = r.get("endTime")
        end_raw[i] = end if isinstance(end, str) else None
        ms, ms_reason = _int_ms(r.get("msPlayed"))
        post[i] = ms_reason
        play[i] = ms
        artist[i], title[i] = a, t
    df = pl.DataFrame(
        {"end_raw": end_raw, "play_ms": play, "artist": artist, "title": title, "pre": pre, "post": post},
        schema={"end_raw": pl.String, "play_ms": pl.Int64, "artist": pl.String, "title": pl.String,
                "pre": pl.String, "post": pl.String},
    )
    end_ts = parse_ts(pl.col("end_raw"))
    return df.with_columns(end_ts.alias("end_ts")).select(
        pl.lit(user_key).alias("user_key"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
        pl.lit(source_file).alias("source_file"),
        song_key_expr(pl.col("artist"), pl.col("title")).alias("song_key"),
        "title", "artist", pl.lit(None, dtype=pl.String).alias("album"),
        (pl.col("end_ts") - pl.duration(milliseconds=pl.col("play_ms").fill_null(0))).alias("ts"),
        "play_ms",
        pl.coalesce("pre", _ts_reason(pl.col("end_ts")), "post").alias("reason"),
    )


def _import(
    paths_or_dir: PathLike | Sequence[PathLike], user_key: str | None, on_error: OnError,
    patterns: Sequence[str], make_frame: Callable[[list[Any], str, str], pl.DataFrame],
) -> ImportResult:
    try:
        root, groups = resolve_inputs(paths_or_dir, patterns, user_key)
    except InputError as err:
        others = _other_kinds(paths_or_dir, patterns, None)
        if others:
            kinds = sorted({note.split(":")[0] for _, _, note in others})
            raise InputError(err.path, None, f"{err}; it holds {len(others)} file(s) of another kind "
                             f"({'; '.join(kinds)})") from err
        raise
    frames, rejected, files, users = [], [], [], []
    for ukey, paths in groups:
        users.append(ukey)
        for p in paths:
            source_file = p.relative_to(root).as_posix()
            read = read_json_records(p, on_error)
            ok, rej = _split(make_frame(read.records, ukey, source_file), read, source_file)
            frames.append(ok)
            rejected.append(rej)
            files.append({"source_file": source_file, "user_key": ukey,
                          "rows_read": len(read.records), "note": _note(read)})
    for rel, ukey, note in _other_kinds(paths_or_dir, patterns, root):
        files.append({"source_file": rel, "user_key": ukey, "rows_read": None, "note": f"skipped: {note}"})
    kind = "spotify-extended" if make_frame is _extended_frame else "spotify-basic"
    return _finish(frames, rejected, files, users, kind)


def _other_kinds(
    paths_or_dir: PathLike | Sequence[PathLike], own: Sequence[str], root: Path | None
) -> list[tuple[str, str, str]]:
    """Streaming-history files of another export kind under a folder input: ``(path, user, note)``."""
    if not isinstance(paths_or_dir, (str, os.PathLike)) or not Path(paths_or_dir).is_dir():
        return []
    base = Path(paths_or_dir)
    out = []
    for f in sorted(base.rglob("*.json"), key=natural_key):
        if not f.is_file() or any(f.match(p) for p in own):
            continue
        for _kind, (pats, note) in KINDS.items():
            if any(f.match(p) for p in pats):
                rel = f.relative_to(root if root is not None else base).as_posix()
                out.append((rel, f.parent.name, note))
                break
    return out


def import_spotify_extended(
    paths_or_dir: PathLike | Sequence[PathLike], user_key: str | None = None, on_error: OnError = "raise"
) -> ImportResult:
    """Import Spotify "Extended streaming history" files (``Streaming_History_Audio_*.json``).

    Args:
        paths_or_dir: a file, a list of files, a folder holding the files (one user), or a folder of
            user folders (one user per folder, files found recursively and read in natural order).
        user_key: the user's key; default the name of the folder holding the files.
        on_error: ``"raise"`` (default) raises :class:`InputError` for a malformed / truncated file;
            ``"quarantine"`` keeps the complete records before the break and rejects the rest as one
            row (reason ``truncated`` / ``malformed_json`` / ``bad_encoding``).

    Returns:
        An :class:`ImportResult`; ``ts`` is the play's start (the export's end ``ts`` minus
        ``ms_played``), songs are keyed by ``spotify_track_uri`` and podcast / audiobook records are
        rejected as ``not_music``. See the module docstring for the field mapping.
    """
    return _import(paths_or_dir, user_key, on_error, EXTENDED_PATTERNS, _extended_frame)


def import_spotify_basic(
    paths_or_dir: PathLike | Sequence[PathLike], user_key: str | None = None, on_error: OnError = "raise"
) -> ImportResult:
    """Import Spotify account-data streaming history (``StreamingHistory*.json``).

    ``endTime`` is taken as UTC (the export does not say; see the module docstring) and ``ts`` is
    ``endTime - msPlayed``. ``song_key`` is ``"<artistName> — <trackName>"``; "Unknown Track" /
    "Unknown Artist" / null rows are rejected as ``missing_track``. Arguments as in
    :func:`import_spotify_extended`.
    """
    return _import(paths_or_dir, user_key, on_error, BASIC_PATTERNS, _basic_frame)
