"""Bad-input corpus for the importers and the catalogue checks (issue 16, items 1, 2 and 6).

Each case builds a small hostile input in ``tmp_path`` and asserts one of two outcomes:

* ``Err``: an :class:`~musicrecall.io.InputError` (or a CLI exit code 2 with the message on stderr)
  that names the file, the row and, where one is involved, the column;
* ``Quar``: an import that quarantines the bad record with its reason, keeps the records around it,
  and balances its accounting (rows read = events + rejected, for every file).

The importers are looked up when a case runs, so each case fails on its own (not the whole module)
on code that lacks the behaviour. Every case here failed on the importers as they were before this
corpus (checked by running it against that tree).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from musicrecall.config import SHARED_DIR

REAL_EXT = SHARED_DIR / "data" / "spotify" / "extended" / "user_a" / "Streaming_History_Audio_2024-2025.json"


def io(name: str) -> Any:
    """``musicrecall.io.<name>`` (or a submodule attribute ``"mod:name"``), looked up at run time."""
    if ":" in name:
        mod, attr = name.split(":")
        return getattr(importlib.import_module(f"musicrecall.io.{mod}"), attr)
    return getattr(importlib.import_module("musicrecall.io"), name)


@dataclass
class Err:
    file: str  # file name the message must name
    row: int | None  # InputError.row (0-based record / data row); None: not checked
    column: str | None = None  # a column the message must name
    match: str | None = None  # text the message must contain


@dataclass
class Quar:
    file: str  # source_file of the quarantined record
    row: int  # its source_row
    reason: str
    events: int | None = None  # events kept (None: not checked)
    rows_read: int | None = None  # rows read for that file (None: not checked)


@dataclass
class Case:
    id: str
    run: Callable[[Path], Any]  # builds the input under tmp_path and imports it
    expect: Err | Quar


# ------------------------------------------------------------------------------------------------
# input builders
# ------------------------------------------------------------------------------------------------


def ext_rec(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "ts": f"2024-01-0{1 + i % 9}T10:00:{i % 60:02d}Z", "platform": "android", "ms_played": 1000 * (i + 1),
        "master_metadata_track_name": f"T{i}", "master_metadata_album_artist_name": "A",
        "master_metadata_album_album_name": "Al", "spotify_track_uri": f"spotify:track:{i}",
        "episode_name": None, "spotify_episode_uri": None, "reason_start": "clickrow", "reason_end": "trackdone",
        "skipped": False,
    }
    rec.update(over)
    return rec


def basic_rec(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"endTime": f"2023-01-01 10:{i:02d}", "artistName": "A", "trackName": f"T{i}",
                           "msPlayed": 60_000}
    rec.update(over)
    return rec


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def ext_file(tmp: Path, records: list[dict[str, Any]], name: str = "Streaming_History_Audio_2024.json") -> Path:
    return write(tmp / "u" / name, json.dumps(records, indent=1))


def ext_text(tmp: Path, text: str | bytes) -> Path:
    return write(tmp / "u" / "Streaming_History_Audio_2024.json", text)


def five_with(tmp: Path, i: int, **over: Any) -> Any:
    recs = [ext_rec(k, **(over if k == i else {})) for k in range(5)]
    return io("import_spotify_extended")(ext_file(tmp, recs))


def broken_json(tmp: Path, broken: str) -> Path:
    """Records 0, 1, then ``broken`` as record 2, then records 3, 4."""
    parts = [json.dumps(ext_rec(k)) for k in range(5)]
    parts[2] = broken
    return ext_text(tmp, "[\n" + ",\n".join(parts) + "\n]\n")


def real_with_bad_byte(tmp: Path, on_error: str) -> Any:
    """The 1,538-record real export with one byte of record 3 (its platform) made invalid UTF-8."""
    data = REAL_EXT.read_bytes()
    at = 0
    for _ in range(4):
        at = data.index(b'"platform": "', at) + 1
    at += len(b'"platform": "') - 1
    path = write(tmp / "a" / REAL_EXT.name, data[:at] + b"\xff" + data[at + 1:])
    return io("import_spotify_extended")(path, on_error=on_error)


def lfm(tmp: Path, data: bytes, **kw: Any) -> Any:
    return io("import_lastfm_1k")(write(tmp / "lfm.tsv", data), **kw)


LFM_OK = "u1\t2009-05-04T23:08:57Z\t\tArtist\t\tTrack\n"


def events_csv(tmp: Path, body: str, name: str = "events.csv") -> Any:
    return io("import_events")(write(tmp / name, body))


def events_parquet(tmp: Path, **cols: list[Any]) -> Any:
    base: dict[str, list[Any]] = {"user_id": [0, 0, 1], "song_id": [0, 1, 2],
                                  "ts": ["2024-01-01T10:00:00Z"] * 3, "play_ms": [1000, 2000, 3000]}
    base.update(cols)
    path = tmp / "events.parquet"
    pl.DataFrame(base).write_parquet(path)
    return io("import_events")(path)


def log(tmp: Path, name: str, data: str | bytes, **kw: Any) -> Any:
    return io("import_log")(write(tmp / name, data), on_error=kw.pop("on_error", "quarantine"), **kw)


LOG_HEAD = "user,song,ts,play_ms\n"


def seq(tmp: Path, data: str | bytes, on_error: str = "quarantine") -> Any:
    return io("import_sequences")(write(tmp / "seq.txt", data), on_error=on_error)


def saved_dataset(tmp: Path, items: pl.DataFrame | None = None, users: pl.DataFrame | None = None,
                  events: pl.DataFrame | None = None, triples: pl.DataFrame | None = None) -> Any:
    """A valid small dataset folder with one table replaced by a tampered one, then loaded."""
    from musicrecall.schema import conform

    ev = pl.DataFrame({"user_id": [0, 1, 1, 0], "song_id": [0, 1, 2, 2], "play_ms": [1, 2, 3, 4],
                       "ts": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 4), "1d",
                                               time_zone="UTC", eager=True)})
    tables = {
        "events": conform(ev, "events"),
        "items": conform(pl.DataFrame({"song_id": [0, 1, 2], "song_key": ["a", "b", "c"]}), "items"),
        "users": conform(pl.DataFrame({"user_id": [0, 1], "user_key": ["x", "y"]}), "users"),
        "triples": conform(pl.DataFrame({"head": ["song:0"], "relation": ["song_artist"], "tail": ["artist:A"]}),
                           "triples"),
    }
    folder = tmp / "ds"
    folder.mkdir()
    for name, df in tables.items():
        df.write_parquet(folder / f"{name}.parquet")
    for name, df in (("items", items), ("users", users), ("events", events), ("triples", triples)):
        if df is not None:
            df.write_parquet(folder / f"{name}.parquet")
    return io("load_dataset_dir")(folder)


def cli(tmp: Path, *args: str) -> Any:
    from musicrecall.io.__main__ import main

    return main([a.replace("{tmp}", str(tmp)) for a in args])


def symlinked_twice(tmp: Path) -> Any:
    f = ext_file(tmp, [ext_rec(k) for k in range(3)])
    link = tmp / "u" / "Streaming_History_Audio_2024_copy.json"
    os.symlink(f, link)
    return io("import_spotify_extended")([f, tmp / "u" / ".." / "u" / f.name], on_error="quarantine")


# ------------------------------------------------------------------------------------------------
# the cases
# ------------------------------------------------------------------------------------------------

EXT = "Streaming_History_Audio_2024.json"

CASES: list[Case] = [
    # --- Spotify extended: one broken record costs only itself -------------------------------------
    Case("ext_real_bad_utf8_record3", lambda t: real_with_bad_byte(t, "quarantine"),
         Quar(REAL_EXT.name, 3, "bad_encoding", rows_read=1538)),
    Case("ext_real_bad_utf8_record3_raise", lambda t: real_with_bad_byte(t, "raise"),
         Err(REAL_EXT.name, 3, match="not UTF-8")),
    Case("ext_malformed_record_mid_file",
         lambda t: io("import_spotify_extended")(broken_json(t, '{"ts": oops}'), on_error="quarantine"),
         Quar(EXT, 2, "malformed_json", events=4, rows_read=5)),
    Case("ext_unquoted_key_mid_file",
         lambda t: io("import_spotify_extended")(broken_json(t, '{ts: "2024-01-01T00:00:00Z"}'), on_error="quarantine"),
         Quar(EXT, 2, "malformed_json", events=4, rows_read=5)),
    Case("ext_bad_utf8_in_a_key",
         lambda t: io("import_spotify_extended")(ext_text(t, broken_json(t, "{}").read_bytes().replace(
             b"{}", b'{"pl\xe4tform": "x", "ts": "2024-01-01T00:00:00Z"}')), on_error="quarantine"),
         Quar(EXT, 2, "bad_encoding", events=4, rows_read=5)),
    Case("ext_bad_byte_between_records",
         lambda t: io("import_spotify_extended")(ext_text(t, broken_json(t, "{}").read_bytes().replace(
             b",\n{}", b",\n\xff{}")), on_error="quarantine"),
         Quar(EXT, 2, "bad_encoding", events=4, rows_read=5)),
    Case("ext_missing_comma_between_records", lambda t: io("import_spotify_extended")(ext_text(
        t, "[" + ", ".join(json.dumps(ext_rec(k)) for k in range(2)) + " " + ", ".join(
            json.dumps(ext_rec(k)) for k in range(2, 4)) + "]"), on_error="quarantine"),
        Quar(EXT, 2, "malformed_json", events=3, rows_read=4)),
    Case("ext_record_lost_its_closing_brace", lambda t: io("import_spotify_extended")(broken_json(
        t, json.dumps(ext_rec(2))[:-1]), on_error="quarantine"),
        Quar(EXT, 2, "malformed_json", events=4, rows_read=5)),
    Case("ext_same_file_by_a_hard_link_read_once", lambda t: io("import_spotify_extended")(
        [f := ext_file(t, [ext_rec(k) for k in range(3)]), (os.link(f, t / "u" / "x.json"), t / "u" / "x.json")[1]],
        on_error="quarantine"),
        Quar(EXT, -1, "read_once", events=3, rows_read=3)),
    Case("ext_field_given_twice", lambda t: io("import_spotify_extended")(broken_json(
        t, json.dumps(ext_rec(2))[:-1] + ', "ms_played": 99}'), on_error="quarantine"),
        Quar(EXT, 2, "duplicate_key", events=4, rows_read=5)),
    Case("ext_field_given_twice_raises", lambda t: io("import_spotify_extended")(broken_json(
        t, json.dumps(ext_rec(2))[:-1] + ', "ms_played": 99}')),
        Err(EXT, 2, "ms_played", match="given twice")),
    Case("ext_field_given_twice_in_a_nested_object", lambda t: io("import_spotify_extended")(broken_json(
        t, json.dumps(ext_rec(2))[:-1] + ', "extra": {"a": 1, "b": [{"c": 1, "c": 2}], "a": 2}}'), on_error="quarantine"),
        Quar(EXT, 2, "duplicate_key", events=4, rows_read=5)),
    Case("ext_nested_field_given_twice_raises", lambda t: io("import_spotify_extended")(broken_json(
        t, json.dumps(ext_rec(2))[:-1] + ', "extra": {"a": 1, "a": 2}}')),
        Err(EXT, 2, "extra.a", match="given twice")),
    Case("ext_nested_field_given_twice_beside_a_broken_record", lambda t: io("import_spotify_extended")(ext_text(
        t, "[" + ", ".join([json.dumps(ext_rec(0)), '{"ts": oops}', json.dumps(ext_rec(2))[:-1]
                            + ', "extra": {"a": {"x": 1, "x": 2}}}', json.dumps(ext_rec(3))]) + "]"),
        on_error="quarantine"),
        Quar(EXT, 2, "duplicate_key", events=2, rows_read=4)),
    Case("ext_ms_played_1e13", lambda t: five_with(t, 1, ms_played=1e13),
         Quar(EXT, 1, "play_ms_out_of_range", events=4)),
    Case("ext_ms_played_int64_max", lambda t: five_with(t, 1, ms_played=2**63 - 1),
         Quar(EXT, 1, "play_ms_out_of_range", events=4)),
    Case("ext_ms_played_1e20", lambda t: five_with(t, 4, ms_played=1e20),
         Quar(EXT, 4, "play_ms_out_of_range", events=4)),
    Case("ext_ms_played_beyond_int64", lambda t: five_with(t, 0, ms_played=2**70),
         Quar(EXT, 0, "play_ms_out_of_range", events=4)),
    Case("ext_ts_in_year_1900", lambda t: five_with(t, 2, ts="1900-01-01T00:00:00Z"),
         Quar(EXT, 2, "ts_out_of_range", events=4)),
    Case("ext_other_kinds_in_folder_listed_as_skipped", lambda t: (
        ext_file(t, [ext_rec(0)]),
        write(t / "u" / "StreamingHistory0.json", json.dumps([basic_rec(0)])),
        write(t / "u" / "Streaming_History_Video_2024.json", "[]"),
        io("import_spotify_extended")(t / "u"))[-1],
        Quar("", -1, "skipped")),
    Case("ext_same_file_by_two_paths_read_once", symlinked_twice, Quar(EXT, -1, "read_once", events=3, rows_read=3)),
    # --- Spotify account data -----------------------------------------------------------------------
    Case("basic_msplayed_1e20", lambda t: io("import_spotify_basic")(write(
        t / "me" / "StreamingHistory0.json", json.dumps([basic_rec(0), basic_rec(1, msPlayed=1e20), basic_rec(2)]))),
        Quar("StreamingHistory0.json", 1, "play_ms_out_of_range", events=2)),
    Case("basic_bad_utf8_keeps_the_tail", lambda t: io("import_spotify_basic")(write(
        t / "me" / "StreamingHistory0.json",
        json.dumps([basic_rec(k) for k in range(6)]).encode().replace(b'"T2"', b'"T\xe92"')), on_error="quarantine"),
        Quar("StreamingHistory0.json", 2, "bad_encoding", events=5, rows_read=6)),
    # --- Last.fm ------------------------------------------------------------------------------------
    Case("lastfm_latin1_name_quarantined", lambda t: lfm(
        t, (LFM_OK + "u1\t2009-05-04T23:09:57Z\t\tCaf\xe9 Tacvba\t\tEres\n" + LFM_OK).encode("latin-1"),
        on_error="quarantine"),
        Quar("lfm.tsv", 1, "bad_encoding", events=2, rows_read=3)),
    Case("lastfm_latin1_name_raises", lambda t: lfm(
        t, (LFM_OK + "u1\t2009-05-04T23:09:57Z\t\tCaf\xe9 Tacvba\t\tEres\n").encode("latin-1")),
        Err("lfm.tsv", 1, match="bad_encoding")),
    # a cut that leaves a complete-looking line ("Track" cut to "Tr") cannot be told from a complete file
    # whose last line has no line break (that one is kept: see test_last_record_without_line_break_*)
    Case("lastfm_file_cut_mid_record", lambda t: lfm(t, (LFM_OK * 2 + LFM_OK[:20]).encode(), on_error="quarantine"),
         Quar("lfm.tsv", 2, "truncated", events=2, rows_read=3)),
    Case("lastfm_file_cut_inside_a_character", lambda t: lfm(
        t, (LFM_OK + "u1\t2009-05-04T23:09:57Z\t\tArtist\t\tCafé").encode()[:-1], on_error="quarantine"),
        Quar("lfm.tsv", 1, "truncated", events=1, rows_read=2)),
    Case("lastfm_file_cut_inside_a_character_raises", lambda t: lfm(
        t, (LFM_OK + "u1\t2009-05-04T23:09:57Z\t\tArtist\t\tCafé").encode()[:-1]),
        Err("lfm.tsv", 1, match="truncated")),
    Case("lastfm_ts_year_1900", lambda t: lfm(t, (LFM_OK + LFM_OK.replace("2009", "1900")).encode()),
         Quar("lfm.tsv", 1, "ts_out_of_range", events=1, rows_read=2)),
    # --- canonical tables (import_events): exact types on every path --------------------------------
    Case("events_parquet_song_id_2_5", lambda t: events_parquet(t, song_id=[0.0, 2.5, 1.0]),
         Err("events.parquet", 1, "song_id")),
    Case("events_parquet_play_ms_100_9", lambda t: events_parquet(t, play_ms=[100.0, 200.0, 100.9]),
         Err("events.parquet", 2, "play_ms")),
    Case("events_parquet_play_ms_1e13", lambda t: events_parquet(t, play_ms=[1.0, 1e13, 3.0]),
         Err("events.parquet", 1, "play_ms")),
    Case("events_csv_play_ms_1e13", lambda t: events_csv(t, "user_id,song_id,ts,play_ms\n0,0,2024-01-01,1\n"
                                                            "0,1,2024-01-01,10000000000000\n"),
         Err("events.csv", 1, "play_ms")),
    Case("events_csv_play_ms_int64_max", lambda t: events_csv(t, "user_id,song_id,ts,play_ms\n"
                                                                 f"0,0,2024-01-01,{2**63 - 1}\n"),
         Err("events.csv", 0, "play_ms")),
    Case("events_csv_epoch_seconds_beside_ms", lambda t: events_csv(
        t, "user_id,song_id,ts,play_ms\n0,0,1704103200000,1\n0,1,1704103260000,1\n0,2,1704103300,1\n"),
        Err("events.csv", 2, "ts")),
    Case("events_csv_duplicate_column", lambda t: events_csv(t, "user_id,song_id,ts,play_ms,play_ms\n"
                                                                "0,0,2024-01-01,1,2\n"),
         Err("events.csv", None, "play_ms", match="duplicate column")),
    Case("events_csv_latin1_row", lambda t: events_csv(t, b"user_id,song_id,ts,play_ms,entry\n0,0,2024-01-01,1,a\n"
                                                          b"0,1,2024-01-01,1,caf\xe9\n"),
         Err("events.csv", 1, match="not UTF-8")),
    Case("items_csv_duplicate_song_id", lambda t: io("import_items")(write(t / "items.csv", "song_id,title\n0,a\n"
                                                                         "1,b\n0,c\n")),
         Err("items.csv", 2, "song_id", match="duplicate id 0")),
    # --- generic log (import_log): a bad row is quarantined, the next one read ----------------------
    Case("log_csv_bad_utf8_row", lambda t: log(t, "plays.csv", (LOG_HEAD + "a,1,2024-01-01T00:00:00Z,5\n").encode()
                                                + b"b,caf\xe9,2024-01-01T00:01:00Z,5\nc,3,2024-01-01T00:02:00Z,5\n"),
         Quar("plays.csv", 1, "bad_encoding", events=2, rows_read=3)),
    Case("log_csv_wrong_field_count", lambda t: log(t, "plays.csv", LOG_HEAD + "a,1,2024-01-01T00:00:00Z,5\n"
                                                    "b,2,2024-01-01T00:01:00Z\nc,3,2024-01-01T00:02:00Z,5\n"),
         Quar("plays.csv", 1, "bad_format", events=2, rows_read=3)),
    Case("log_csv_quote_never_closed", lambda t: log(t, "q.csv", 'user,song,title\na,1,"ok, fine"\nb,2,"broken\n'
                                                     'c,3,x\nd,4,"multi\nline"\ne,5,y\n'),
         Quar("q.csv", 1, "bad_format", events=3, rows_read=6)),
    Case("log_parquet_struct_user_column", lambda t: io("import_log")(
        (pl.DataFrame({"user": [{"a": 1}], "song": ["x"]}).write_parquet(t / "p.parquet"), t / "p.parquet")[1]),
        Err("p.parquet", None, "user", match="has type")),
    Case("log_csv_cut_mid_record", lambda t: log(t, "plays.csv", LOG_HEAD + "a,1,2024-01-01T00:00:00Z,5\n"
                                                 "b,2,2024-01-01T00:0"),
         Quar("plays.csv", 1, "truncated", events=1, rows_read=2)),
    Case("log_csv_cut_inside_the_last_field", lambda t: log(t, "plays.csv", "user,song,play_ms,ts\n"
                                                            "a,1,5,2024-01-01T00:00:00Z\nb,2,10,2024-01-01T0"),
         Quar("plays.csv", 1, "truncated", events=1, rows_read=2)),
    Case("log_csv_cut_inside_an_open_quote", lambda t: log(t, "plays.csv", 'user,song,title\na,1,x\nb,2,"Hello, '),
         Quar("plays.csv", 1, "truncated", events=1, rows_read=2)),
    Case("log_ndjson_cut_mid_record", lambda t: log(t, "plays.jsonl", '{"user": "a", "song": 1}\n{"user": "b", "so'),
         Quar("plays.jsonl", 1, "truncated", events=1, rows_read=2)),
    Case("log_json_malformed_record", lambda t: log(t, "plays.json", '[{"user": "a", "song": 1}, {"user": "b", '
                                                    '"song": 2, "x": oops}, {"user": "c", "song": 3}]'),
         Quar("plays.json", 1, "malformed_json", events=2, rows_read=3)),
    Case("log_json_field_given_twice", lambda t: log(t, "plays.json", '[{"user": "a", "song": 1, "song": 2}, '
                                                     '{"user": "b", "song": 3}]'),
         Quar("plays.json", 0, "duplicate_key", events=1, rows_read=2)),
    Case("log_ndjson_field_given_twice", lambda t: log(t, "plays.jsonl", '{"user": "a", "user": "b", "song": 1}\n'
                                                       '{"user": "c", "song": 3}\n'),
         Quar("plays.jsonl", 0, "duplicate_key", events=1, rows_read=2)),
    Case("log_ndjson_nested_field_given_twice", lambda t: log(t, "plays.jsonl", '{"user": "a", "song": 1}\n'
                                                              '{"user": "b", "song": 2, "m": {"k": 1, "k": 2}}\n'),
         Quar("plays.jsonl", 1, "duplicate_key", events=1, rows_read=2)),
    Case("log_ndjson_malformed_line", lambda t: log(t, "plays.jsonl", '{"user": "a", "song": 1}\n{"user": "b"\n'
                                                    '{"user": "c", "song": 3}\n'),
         Quar("plays.jsonl", 1, "malformed_json", events=2, rows_read=3)),
    Case("log_parquet_play_ms_2_5", lambda t: io("import_log")(
        (pl.DataFrame({"user": ["a", "b"], "song": ["x", "y"], "play_ms": [1.0, 2.5]})
         .write_parquet(t / "p.parquet"), t / "p.parquet")[1], on_error="quarantine"),
        Quar("p.parquet", 1, "bad_play_ms", events=1, rows_read=2)),
    Case("log_seconds_among_milliseconds", lambda t: log(t, "plays.csv", "user,song,timestamp\na,1,1704103200000\n"
                                                         "a,2,1704103260000\nb,3,1704103300\n"),
         Quar("plays.csv", 2, "ts_out_of_range", events=2, rows_read=3)),
    Case("log_ms_played_1e20_in_json", lambda t: log(t, "plays.json", '[{"user": "a", "song": 1, "ms_played": 1e20},'
                                                     ' {"user": "a", "song": 2, "ms_played": 5}]'),
         Quar("plays.json", 0, "play_ms_out_of_range", events=1, rows_read=2)),
    Case("log_missing_user", lambda t: log(t, "plays.csv", "user,song\na,1\n,2\n"),
         Quar("plays.csv", 1, "missing_user", events=1, rows_read=2)),
    Case("log_duplicate_column", lambda t: log(t, "plays.csv", "user,song,song\na,1,2\n"),
         Err("plays.csv", None, "song", match="duplicate column")),
    Case("log_broken_row_raises", lambda t: log(t, "plays.csv", "user,song\na,1\nb,2,3\n", on_error="raise"),
         Err("plays.csv", 1, match="bad_format")),
    # --- order-only sequences and user-item lines ---------------------------------------------------
    Case("seq_bad_utf8_line", lambda t: seq(t, b"u1,1:2\nu\xe92,3:4\nu3,5\n"),  # each play on it is a record
         Quar("seq.txt", 3, "bad_encoding", events=3, rows_read=5)),
    Case("seq_no_separator", lambda t: seq(t, "u1,1:2\nu2 3 4\nu3,5\n"),
         Quar("seq.txt", 2, "bad_format", events=3, rows_read=4)),
    Case("seq_empty_song_between_separators", lambda t: seq(t, "u1,1::2\n"),
         Quar("seq.txt", 1, "empty_item", events=2, rows_read=3)),
    # a cut inside a song id ("270" of "27024") cannot be seen: the file may be complete without a line break
    Case("seq_file_cut_after_a_separator", lambda t: seq(t, "u1,1:2\nu2,3:"),
         Quar("seq.txt", 3, "truncated", events=3, rows_read=4)),
    Case("seq_file_cut_after_the_user", lambda t: seq(t, "u1,1:2\nu2"),
         Quar("seq.txt", 2, "truncated", events=2, rows_read=3)),
    Case("seq_broken_line_raises", lambda t: seq(t, "u1,1:2\nnothing\n", on_error="raise"),
         Err("seq.txt", 2, match="file line 2")),
    Case("user_item_wrong_field_count", lambda t: io("import_user_item")(
        write(t / "ui.txt", "1 10\n2 20 30\n3 30\n"), on_error="quarantine"),
        Quar("ui.txt", 1, "bad_format", events=2, rows_read=3)),
    Case("user_item_cut_mid_line", lambda t: io("import_user_item")(
        write(t / "ui.txt", "1 10\n2 20\n3"), on_error="quarantine"),
        Quar("ui.txt", 2, "truncated", events=2, rows_read=3)),
    Case("user_item_cut_inside_the_clock", lambda t: io("import_user_item")(
        write(t / "ui.txt", "1 10 1704103200\n2 20 1704103260\n3 30 17041"), on_error="quarantine"),
        Quar("ui.txt", 2, "truncated", events=2, rows_read=3)),
    Case("user_item_third_field_not_a_number", lambda t: io("import_user_item")(
        write(t / "ui.txt", "1 10 1704103200\n2 20 rock\n")),
        Err("ui.txt", 1, "column 3", match="not a number")),
    Case("user_item_third_field_decreases_for_a_user", lambda t: io("import_user_item")(
        write(t / "ui.txt", "1 10 1704103200\n2 20 1704103100\n1 30 1704103100\n")),
        Err("ui.txt", 2, "column 3", match="smaller than user '1'")),
    Case("user_item_third_field_positions", lambda t: io("import_user_item")(
        write(t / "ui.txt", "1 10 0\n1 20 1\n2 10 0\n")),
        Err("ui.txt", None, "column 3", match="no epoch time")),
    Case("user_item_four_fields_without_header", lambda t: io("import_user_item")(
        write(t / "ui.txt", "1 10 4 1704103200\n2 20 5 1704103260\n")),
        Err("ui.txt", 0, "column 4", match="extra_columns='ignore'")),
    Case("cli_user_item_third_field_not_a_number", lambda t: cli(
        t, "user-item", str(write(t / "ui.txt", "1 10 x\n")), str(t / "ds")),
        Err("ui.txt", None, match="column 3")),
    Case("user_item_ms_read_as_seconds", lambda t: io("import_user_item")(
        write(t / "ui.inter", "user_id:token\titem_id:token\ttimestamp:float\na\tx\t1704103200000\n"), ts_unit="s"),
        Quar("ui.inter", 0, "ts_out_of_range", events=0, rows_read=1)),
    # --- catalogue files ------------------------------------------------------------------------------
    Case("catalog_duplicate_song_id", lambda t: io("import_catalog")(write(t / "songs.csv", "song,artist\n1,a\n1,b\n")),
         Err("songs.csv", 1, "song", match="duplicate song id")),
    Case("catalog_empty_song_id", lambda t: io("import_catalog")(write(t / "songs.csv", "song,artist\n1,a\n,b\n")),
         Err("songs.csv", 1, "song", match="empty song id")),
    Case("catalog_latin1", lambda t: io("import_catalog")(write(t / "songs.csv", b"song,artist\n1,a\n2,Caf\xe9\n")),
         Err("songs.csv", 1, match="not UTF-8")),
    Case("catalog_row_with_extra_field", lambda t: io("import_catalog")(write(t / "songs.csv",
                                                                              "song,artist\n1,a\n2,b,c\n3,d\n")),
         Err("songs.csv", 1, match="bad_format")),
    # --- catalogue checks when a dataset folder is loaded (before cleaning) ----------------------------
    Case("load_duplicate_song_id", lambda t: saved_dataset(t, items=pl.DataFrame({"song_id": [0, 1, 1]})),
         Err("items.parquet", 2, "song_id", match="duplicate")),
    Case("load_song_ids_with_gaps", lambda t: saved_dataset(t, items=pl.DataFrame({"song_id": [0, 1, 7]})),
         Err("items.parquet", 2, "song_id", match="0..n-1")),
    Case("load_events_with_unmapped_song_ids", lambda t: saved_dataset(t, events=pl.DataFrame(
        {"user_id": [0, 1, 1], "song_id": [0, 905, 906], "ts": [None] * 3, "play_ms": [1, 2, 3]},
        schema_overrides={"ts": pl.Datetime("ms", "UTC")})),
        Err("events.parquet", 1, "song_id", match="not in items")),
    Case("load_song_id_mixed_types", lambda t: saved_dataset(t, items=pl.DataFrame({"song_id": ["0", "1", "two"]})),
         Err("items.parquet", 2, "song_id", match="mixed types")),
    Case("load_song_id_2_5", lambda t: saved_dataset(t, items=pl.DataFrame({"song_id": [0.0, 2.5, 1.0]})),
         Err("items.parquet", 1, "song_id")),
    Case("load_duplicate_user_id", lambda t: saved_dataset(t, users=pl.DataFrame({"user_id": [1, 1]})),
         Err("users.parquet", 1, "user_id", match="duplicate")),
    Case("load_triple_head_outside_items", lambda t: saved_dataset(t, triples=pl.DataFrame(
        {"head": ["song:0", "song:9"], "relation": ["song_artist"] * 2, "tail": ["artist:A"] * 2})),
        Err("triples.parquet", 1, "head")),
    Case("save_items_with_gaps_is_refused", lambda t: io("save_dataset")(
        {"events": pl.DataFrame({"user_id": [0], "song_id": [5], "ts": [None], "play_ms": [1]},
                                schema_overrides={"ts": pl.Datetime("ms", "UTC")}),
         "items": pl.DataFrame({"song_id": [3, 5]}), "triples": pl.DataFrame({"head": [], "relation": [], "tail": []},
                                                                             schema={"head": pl.String,
                                                                                     "relation": pl.String,
                                                                                     "tail": pl.String})},
        t / "ds"),
        Err("items.parquet", 0, "song_id", match="0..n-1")),
    # --- the io command line ----------------------------------------------------------------------------
    Case("cli_output_is_a_file", lambda t: cli(t, "log", str(write(t / "p.csv", "user,song\na,1\n")),
                                               str(write(t / "out.parquet", "x"))),
         Err("out.parquet", None, match="is a file")),
    Case("cli_output_holds_a_dataset", lambda t: (
        cli(t, "log", str(write(t / "p.csv", "user,song\na,1\n")), str(t / "ds")),
        cli(t, "log", str(t / "p.csv"), str(t / "ds")))[-1],
        Err("ds", None, match="already holds a dataset")),
]


def _balanced(res: Any) -> pl.DataFrame:
    acc = res.accounting()
    read = acc.filter(pl.col("rows_read").is_not_null())
    assert (read["rows_read"] == read["events"] + read["rejected"]).all(), acc
    assert acc["events"].sum() == res.events.height and acc["rejected"].sum() == res.rejected.height
    return acc


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = case.expect
    if case.id.startswith("ext_real") and not REAL_EXT.is_file():
        pytest.fail(f"shared export missing: {REAL_EXT}")
    if isinstance(exp, Err):
        if case.id.startswith("cli_"):
            code = case.run(tmp_path)
            msg = capsys.readouterr().err
            assert code == 2, f"exit code {code}, expected 2 with a clear message"
            assert "Traceback" not in msg and exp.file in msg and (exp.match or "") in msg, msg
            return
        InputError = io("InputError")  # noqa: N806 - the class
        with pytest.raises(InputError) as info:
            case.run(tmp_path)
        msg = str(info.value)
        assert exp.file in msg, msg
        if exp.row is not None:
            assert info.value.row == exp.row, msg
        if exp.column is not None:
            assert f"'{exp.column}'" in msg or exp.column in msg, msg
        if exp.match is not None:
            assert exp.match in msg, msg
        return
    res = case.run(tmp_path)
    acc = _balanced(res)
    if exp.reason == "skipped":
        skipped = acc.filter(pl.col("note").str.starts_with("skipped"))
        assert sorted(skipped["source_file"].to_list()) == ["StreamingHistory0.json",
                                                            "Streaming_History_Video_2024.json"], acc
        assert skipped["rows_read"].null_count() == 2 and res.events.height == 1
        return
    if exp.reason == "read_once":
        assert acc.height == 1 and acc["rows_read"].to_list() == [exp.rows_read], acc
        assert res.events.height == exp.events
        return
    got = set(res.rejected.select("source_file", "source_row", "reason").iter_rows())
    assert (exp.file, exp.row, exp.reason) in got, res.rejected
    if exp.events is not None:
        assert res.events.height == exp.events, (res.events.height, res.rejected)
    if exp.rows_read is not None:
        assert dict(acc.select("source_file", "rows_read").iter_rows())[exp.file] == exp.rows_read, acc
    if exp.reason == "bad_encoding":  # raw shows the bytes, never a replacement character
        raw = res.rejected.filter(pl.col("source_row") == exp.row)["raw"][0]
        assert "\\x" in raw and "\ufffd" not in raw, raw


def test_corpus_size() -> None:
    assert len(CASES) >= 35 and len({c.id for c in CASES}) == len(CASES)


def test_real_export_with_one_bad_byte_keeps_every_other_record(tmp_path: Path) -> None:
    """The issue's example: 1,538 records, one bad byte in record 3 -> 1,537 read normally + 1 quarantined."""
    base = io("import_spotify_extended")(REAL_EXT)
    res = real_with_bad_byte(tmp_path, "quarantine")
    was_event = 3 in base.events["source_row"].to_list()
    assert res.events.height == base.events.height - int(was_event)
    assert res.rejected.height == base.rejected.height + int(was_event)
    assert res.events.height + res.rejected.height == 1538
    other = res.rejected.filter(pl.col("source_row") != 3).select("source_row", "reason")
    assert other.rows() == base.rejected.select("source_row", "reason").rows()


def test_separators_inside_names_do_not_merge_songs(tmp_path: Path) -> None:
    recs = [basic_rec(0, artistName="A — B", trackName="C"), basic_rec(1, artistName="A", trackName="B — C"),
            basic_rec(2, artistName="A", trackName="B — C")]
    res = io("import_spotify_basic")(write(tmp_path / "me" / "StreamingHistory0.json", json.dumps(recs)))
    assert res.items.height == 2 and res.events["song_id"].n_unique() == 2
    assert sorted(zip(res.items["artist"], res.items["title"], strict=True)) == [("A", "B — C"), ("A — B", "C")]


def test_epoch_seconds_are_not_1970(tmp_path: Path) -> None:
    ev = events_csv(tmp_path, "user_id,song_id,ts,play_ms\n0,0,1704103200,1\n0,1,1704103260,1\n")
    assert ev["ts"].dt.year().to_list() == [2024, 2024]


def test_random_local_corruptions_never_crash_and_always_balance(tmp_path: Path) -> None:
    """60 seeded corruptions (a byte flipped, 1-30 bytes deleted, a byte inserted, a cut, a stretch
    duplicated) of a Spotify export, a CSV log, a sequences file and a Last.fm TSV: each import either
    raises InputError or quarantines, with every file's rows read = events + rejected; a local change
    that does not cut the file costs at most a few records of the JSON, CSV and TSV files."""
    import random

    rng = random.Random(16)
    inputs = {
        "ext": ("u/Streaming_History_Audio_1.json", json.dumps([ext_rec(i) for i in range(40)], indent=1).encode(),
                "import_spotify_extended", 40),
        "csv": ("p.csv", (LOG_HEAD + "".join(f"u{i % 3},{i},2024-01-01T00:00:{i % 60:02d}Z,{i * 10}\n"
                                             for i in range(40))).encode(), "import_log", 40),
        "seq": ("s.txt", "".join(f"u{i},{':'.join(map(str, range(i, i + 5)))}\n" for i in range(10)).encode(),
                "import_sequences", None),
        "lfm": ("l.tsv", (LFM_OK * 40).encode(), "import_lastfm_1k", 40),
    }
    for trial in range(60):
        kind = rng.choice(sorted(inputs))
        name, base, importer, n_records = inputs[kind]
        data = bytearray(base)
        op, k = rng.choice(["flip", "del", "ins", "cut", "dup"]), rng.randrange(len(data))
        if op == "flip":
            data[k] = rng.choice([0xFF, 0xE9, ord('"'), ord(","), ord("{"), ord("}"), ord("\n"), ord(":"), 0])
        elif op == "del":
            del data[k:k + rng.randint(1, 30)]
        elif op == "ins":
            data[k:k] = rng.choice([b"\xff", b'"', b",", b"{", b"}", b"\n", b"]", b"\t"])
        elif op == "cut":
            data = data[:k]
        else:
            data[k:k] = data[max(0, k - 20):k]
        path = write(tmp_path / str(trial) / name, bytes(data))
        try:
            res = io(importer)(path, on_error="quarantine")
        except io("InputError"):
            continue
        acc = _balanced(res)
        if n_records is not None and op != "cut":
            assert abs(int(acc["rows_read"].sum()) - n_records) <= 3, (trial, kind, op, k, acc)


# A complete last record without a line break after it (many editors and tools write files that way) is
# kept: every row imported, accounting balanced, the file's note says so. Each input's last value is
# checked, so a kept-but-shortened record would fail too.
COMPLETE_WITHOUT_FINAL_LINE_BREAK: dict[str, tuple[Callable[[Path], Any], int, Callable[[Any], Any], Any]] = {
    "log_csv": (lambda t: log(t, "plays.csv", LOG_HEAD + "a,1,2024-01-01T00:00:00Z,5\nb,2,2024-01-01T00:01:00Z,10"),
                2, lambda r: r.events.sort("source_row")["play_ms"][-1], 10),
    "log_csv_quoted": (lambda t: log(t, "plays.csv", 'user,song,title\na,1,"x, y"\nb,2,"last, one"'),
                       2, lambda r: sorted(r.items["title"].to_list())[-1], "x, y"),
    "log_tsv": (lambda t: log(t, "plays.tsv", "user\tsong\tplay_ms\na\t1\t5\nb\t2\t10"),
                2, lambda r: r.events.sort("source_row")["play_ms"][-1], 10),
    "log_ndjson": (lambda t: log(t, "plays.jsonl", '{"user": "a", "song": 1}\n{"user": "b", "song": 27024}'),
                   2, lambda r: sorted(r.items["song_key"].to_list())[-1], "27024"),
    "sequences": (lambda t: seq(t, "u1,1:2\nu2,3:27024"),
                  4, lambda r: sorted(r.items["song_key"].to_list())[-1], "3"),
    "user_item": (lambda t: io("import_user_item")(write(t / "ui.txt", "1 10\n2 27024"), on_error="quarantine"),
                  2, lambda r: sorted(r.items["song_key"].to_list()), ["10", "27024"]),
    "user_item_clock": (lambda t: io("import_user_item")(write(t / "ui.txt", "1 10 1704103200\n2 20 1704103260")),
                        2, lambda r: r.events.sort("source_row")["ts"][-1].isoformat(), "2024-01-01T10:01:00+00:00"),
    "lastfm": (lambda t: lfm(t, (LFM_OK * 2 + LFM_OK[:-1]).encode()),
               3, lambda r: r.items["title"].to_list(), ["Track"]),
}


@pytest.mark.parametrize("kind", sorted(COMPLETE_WITHOUT_FINAL_LINE_BREAK))
def test_last_record_without_line_break_is_kept_when_complete(kind: str, tmp_path: Path) -> None:
    run, n_events, last_value, expected = COMPLETE_WITHOUT_FINAL_LINE_BREAK[kind]
    res = run(tmp_path)
    acc = _balanced(res)
    assert res.rejected.height == 0, res.rejected
    assert res.events.height == n_events and int(acc["rows_read"].sum()) == n_events, acc
    assert "complete and kept" in str(acc["note"][0]), acc
    assert last_value(res) == expected


def test_catalog_without_final_line_break_keeps_its_last_song(tmp_path: Path) -> None:
    cat = io("import_catalog")(write(tmp_path / "songs.csv", "song,artist\n1,a\n2,b"))
    assert cat.items["song_key"].to_list() == ["1", "2"] and cat.items["artist"].to_list() == ["a", "b"]
    with pytest.raises(io("InputError")) as err:  # cut mid-record: still an error naming file and row
        io("import_catalog")(write(tmp_path / "cut.csv", "song,artist,album\n1,a,x\n2,b"))
    assert "cut.csv" in str(err.value) and err.value.row == 1 and "truncated" in str(err.value)


def test_cut_last_record_is_an_error_in_raise_mode(tmp_path: Path) -> None:
    with pytest.raises(io("InputError")) as err:
        log(tmp_path, "plays.csv", LOG_HEAD + "a,1,2024-01-01T00:00:00Z,5\nb,2,2024-01-01T0", on_error="raise")
    assert "plays.csv" in str(err.value) and err.value.row == 1 and "truncated" in str(err.value)
    res = log(tmp_path, "plays2.csv", LOG_HEAD + "a,1,2024-01-01T00:00:00Z,5\nb,2,2024-01-01T0")
    acc = _balanced(res)
    assert "quarantined as truncated" in acc["note"][0], acc
    assert res.rejected.select("source_row", "reason").rows() == [(1, "truncated")]
    assert "b,2,2024-01-01T0" in res.rejected["raw"][0]


def test_nested_duplicate_named_by_its_path(tmp_path: Path) -> None:
    """A key repeated inside a nested object is named by its dotted path; records without one are kept
    (the search runs only when the parse met a repeated key, so other files pay nothing)."""
    recs = [json.dumps(ext_rec(k)) for k in range(3)]
    recs[1] = recs[1][:-1] + ', "extra": {"list": [{"c": 1, "c": 2}]}}'
    res = io("import_spotify_extended")(ext_text(tmp_path, "[" + ", ".join(recs) + "]"), on_error="quarantine")
    _balanced(res)
    assert res.rejected.select("source_row", "reason").rows() == [(1, "duplicate_key")]
    assert "'extra.list[0].c' given twice" in res.rejected["raw"][0]
    clean = io("import_spotify_extended")(ext_file(tmp_path / "b", [ext_rec(k, extra={"a": {"b": 1}}) for k in range(3)]))
    assert clean.rejected.height == 0 and clean.events.height == 3
