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
URI, so ``song_key`` is ``"<artist> — <track>"``; podcast episodes in the music files cannot be
told apart from songs.

Rows that cannot become events are rejected with a reason (first matching, in this order):

==================  ===========================================================================
``not_a_record``    the array element is not a JSON object
``not_music``       a podcast episode or audiobook (no track URI; episode/audiobook fields set)
``missing_track``   no track URI (extended) / null or "Unknown Track"/"Unknown Artist" (basic)
``bad_ts``          ``ts`` / ``endTime`` missing, not a string, or not a valid date-time
``bad_play_ms``     ``ms_played`` / ``msPlayed`` missing or not an integer (negative values are
                    kept: :func:`musicrecall.cleaning.clean_log` quarantines them)
``bad_skipped``     ``skipped`` is neither a boolean, 0/1 nor null
``truncated``       (``on_error="quarantine"``) the unparseable tail of a file cut mid-record
``malformed_json``  (``on_error="quarantine"``) invalid JSON before the end of the file
``bad_encoding``    (``on_error="quarantine"``) bytes that are not UTF-8
==================  ===========================================================================

File-level problems (missing, 0 bytes, not a JSON array, and with the default ``on_error="raise"``
malformed / truncated JSON) raise :class:`~musicrecall.io.errors.InputError` naming the file, the
index of the record where parsing stopped (= number of complete records before it) and the byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from musicrecall.io.errors import InputError
from musicrecall.io.generic import (
    FILES_SCHEMA,
    RAW_MAX_CHARS,
    REJECTED_SCHEMA,
    ImportResult,
    OnError,
    PathLike,
    assemble_result,
    parse_ts,
    resolve_inputs,
)

EXTENDED_PATTERNS = ("Streaming_History_Audio_*.json", "endsong_*.json")
BASIC_PATTERNS = ("StreamingHistory*.json",)
UNKNOWN_TRACK = "Unknown Track"
UNKNOWN_ARTIST = "Unknown Artist"
_WS = re.compile(r"\s*")


@dataclass
class JsonBreak:
    """Where a JSON array stopped parsing: the index of the first incomplete record and why."""

    row: int
    reason: str  # truncated / malformed_json / bad_encoding
    raw: str


def _fail_message(text: str, pos: int, row: int, msg: str) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    byte = len(text[:pos].encode("utf-8"))
    return f"{msg} at byte {byte} (line {line}, column {col}); {row} complete record(s) before it"


def read_json_records(path: Path, on_error: OnError = "raise") -> tuple[list[Any], JsonBreak | None]:
    """Read a file holding one JSON array; return its elements and, in quarantine mode, the break.

    The whole file is parsed with :func:`json.loads` first; only if that fails is it re-scanned
    element by element with :meth:`json.JSONDecoder.raw_decode` to find how many complete records
    precede the problem. With ``on_error="raise"`` that becomes an :class:`InputError`; with
    ``"quarantine"`` the complete records are returned together with a :class:`JsonBreak`.
    """
    if on_error not in ("raise", "quarantine"):
        raise ValueError(f"on_error must be 'raise' or 'quarantine', not {on_error!r}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(path, None, f"cannot be read: {err}") from err
    if not data.strip():
        raise InputError(path, None, f"empty file ({len(data)} bytes): expected a JSON array of records")
    forced_reason = None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if on_error == "raise":
            raise InputError(path, None, f"not UTF-8 at byte {err.start}: {err.reason}") from err
        text = data[: err.start].decode("utf-8-sig")
        forced_reason = "bad_encoding"
    if forced_reason is None:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            if not isinstance(obj, list):
                raise InputError(path, None, f"top-level JSON value is a {type(obj).__name__}, expected an array")
            return obj, None
    return _scan(path, text, on_error, forced_reason)


def _scan(path: Path, text: str, on_error: OnError, forced_reason: str | None) -> tuple[list[Any], JsonBreak | None]:
    decoder = json.JSONDecoder()
    records: list[Any] = []
    n = len(text)
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if i >= n or text[i] != "[":  # not an array at all: nothing to keep, an error in every mode
        raise InputError(path, 0 if i < n else None, _fail_message(text, i, 0, "expected a JSON array ('[')"))
    i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    start = i
    after_close = False
    err_pos, msg = n, "file ends inside the array"
    if i < n and text[i] == "]":
        j = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        start, err_pos, msg, after_close = j, j, "unexpected data after the closing ']'", True
    else:
        while i < n:
            start = i
            try:
                obj, j = decoder.raw_decode(text, i)
            except json.JSONDecodeError as err:
                err_pos, msg = err.pos, f"invalid JSON ({err.msg})"
                break
            records.append(obj)
            i = _WS.match(text, j).end()  # type: ignore[union-attr]
            if i >= n:
                start, err_pos, msg = i, i, "file ends after a record (no ',' or ']')"
                break
            if text[i] == ",":
                i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
                start = i
                err_pos, msg = n, "file ends after ','"
                continue
            if text[i] == "]":
                j = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
                start, err_pos, msg, after_close = j, j, "unexpected data after the closing ']'", True
                break
            start, err_pos, msg = i, i, f"expected ',' or ']' after a record, found {text[i]!r}"
            break
    row = len(records)
    if forced_reason == "bad_encoding":
        msg = "bytes that are not UTF-8"
        err_pos = n
    if on_error == "raise":
        raise InputError(path, row, _fail_message(text, err_pos, row, msg))
    if forced_reason:
        reason = forced_reason
    elif not after_close and not text.rstrip().endswith("]"):
        reason = "truncated"  # a complete array ends with ']': the file was cut
    else:
        reason = "malformed_json"
    raw = text[start : start + RAW_MAX_CHARS]
    return records, JsonBreak(row=row, reason=reason, raw=raw)


# --------------------------------------------------------------------------------------------------
# record normalisation
# --------------------------------------------------------------------------------------------------


def _text(v: Any) -> str | None:
    """A text field: strings as they are, other scalars as their JSON text, null stays null."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _int_ms(v: Any) -> tuple[int | None, bool]:
    """(value, ok) for a millisecond count: ints and integral floats are ok; anything else is not."""
    if isinstance(v, bool):
        return None, False
    if isinstance(v, int):
        return v, True
    if isinstance(v, float) and v.is_integer():
        return int(v), True
    return None, False


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


def _split(
    df: pl.DataFrame, records: list[Any], brk: JsonBreak | None, source_file: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a per-record frame with a ``reason`` column into accepted rows and rejected rows."""
    bad = df.filter(pl.col("reason").is_not_null()).select("source_row", "reason")
    raws = [_raw(records[i]) for i in bad.get_column("source_row").to_list()]
    rej = bad.with_columns(pl.lit(source_file).alias("source_file"), pl.Series("raw", raws, dtype=pl.String))
    if brk is not None:
        rej = pl.concat(
            [rej, pl.DataFrame({"source_row": [brk.row], "reason": [brk.reason], "raw": [brk.raw],
                                "source_file": [source_file]}, schema_overrides={"source_row": pl.Int64})],
            how="diagonal_relaxed",
        )
    rej = rej.select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items())
    ok = df.filter(pl.col("reason").is_null()).drop("reason")
    return ok, rej


def _note(n_records: int, brk: JsonBreak | None) -> str | None:
    if brk is not None:
        return f"{brk.reason} at record {brk.row}: {brk.row} complete record(s) kept"
    return "empty array: no records" if n_records == 0 else None


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
        ms, ms_ok = _int_ms(r.get("ms_played"))
        skipped, sk_ok = _bool(r.get("skipped"))
        if not ms_ok:
            post[i] = "bad_play_ms"
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
        pl.coalesce("pre", pl.when(pl.col("end_ts").is_null()).then(pl.lit("bad_ts")), "post").alias("reason"),
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
        ms, ok = _int_ms(r.get("msPlayed"))
        if not ok:
            post[i] = "bad_play_ms"
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
        (pl.col("artist") + pl.lit(" — ") + pl.col("title")).alias("song_key"),
        "title", "artist", pl.lit(None, dtype=pl.String).alias("album"),
        (pl.col("end_ts") - pl.duration(milliseconds=pl.col("play_ms").fill_null(0))).alias("ts"),
        "play_ms",
        pl.coalesce("pre", pl.when(pl.col("end_ts").is_null()).then(pl.lit("bad_ts")), "post").alias("reason"),
    )


def _import(
    paths_or_dir: PathLike | Sequence[PathLike], user_key: str | None, on_error: OnError,
    patterns: Sequence[str], make_frame: Callable[[list[Any], str, str], pl.DataFrame],
) -> ImportResult:
    root, groups = resolve_inputs(paths_or_dir, patterns, user_key)
    frames, rejected, files, users = [], [], [], []
    for ukey, paths in groups:
        users.append(ukey)
        for p in paths:
            source_file = p.relative_to(root).as_posix()
            records, brk = read_json_records(p, on_error)
            ok, rej = _split(make_frame(records, ukey, source_file), records, brk, source_file)
            frames.append(ok)
            rejected.append(rej)
            files.append({"source_file": source_file, "user_key": ukey,
                          "rows_read": len(records) + (brk is not None), "note": _note(len(records), brk)})
    kind = "spotify-extended" if make_frame is _extended_frame else "spotify-basic"
    return _finish(frames, rejected, files, users, kind)


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
