"""Tests of the real-log importers (musicrecall.io) on the shared Spotify exports and on bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from musicrecall.config import SHARED_DIR
from musicrecall.io import (
    ImportResult,
    InputError,
    import_events,
    import_items,
    import_lastfm_1k,
    import_spotify_basic,
    import_spotify_extended,
    import_triples,
    load_dataset_dir,
    save_dataset,
)
from musicrecall.schema import EVENTS_SCHEMA, ITEMS_SCHEMA, TRIPLES_SCHEMA, USERS_SCHEMA

SPOTIFY = SHARED_DIR / "data" / "spotify"
A_FILE = "user_a/Streaming_History_Audio_2024-2025.json"
B_FILES = ("user_b/Streaming_History_Audio_2022.json", "user_b/Streaming_History_Audio_2023.json")
C_FILES = ("user_c/StreamingHistory0.json", "user_c/StreamingHistory1.json")


def assert_balanced(res: ImportResult) -> pl.DataFrame:
    """Schemas are canonical and every row read is either an event or a rejected row."""
    assert res.events.schema == pl.Schema(EVENTS_SCHEMA)
    assert res.items.schema == pl.Schema(ITEMS_SCHEMA)
    assert res.users.schema == pl.Schema(USERS_SCHEMA)
    assert res.triples.schema == pl.Schema(TRIPLES_SCHEMA)
    acc = res.accounting()
    assert (acc["rows_read"] == acc["events"] + acc["rejected"]).all(), acc
    assert acc["events"].sum() == res.events.height
    assert acc["rejected"].sum() == res.rejected.height
    by_reason = [c for c in acc.columns if c.startswith("rejected_")]
    assert (acc.select(pl.sum_horizontal(by_reason) if by_reason else pl.lit(0))
            .to_series() == acc["rejected"]).all()
    assert res.events["source_file"].null_count() == 0 and res.events["source_row"].null_count() == 0
    assert res.events["ts"].null_count() == 0  # unparseable ts is rejected, never null
    # ids are contiguous and every event points at a known user and song
    assert res.items["song_id"].to_list() == list(range(res.items.height))
    assert res.users["user_id"].to_list() == list(range(res.users.height))
    assert res.events["song_id"].is_in(res.items["song_id"].implode()).all()
    assert res.events["user_id"].is_in(res.users["user_id"].implode()).all()
    assert res.items["song_key"].is_unique().all()
    return acc


def rows_read(acc: pl.DataFrame) -> dict[str, int]:
    return dict(zip(acc["source_file"], acc["rows_read"], strict=True))


# ------------------------------------------------------------------------------------------------
# the real exports
# ------------------------------------------------------------------------------------------------


def test_shared_data_present() -> None:
    """The real exports must be there: a missing shared folder fails the suite instead of skipping."""
    for rel in (A_FILE, *B_FILES):
        assert (SPOTIFY / "extended" / rel).is_file(), f"missing {SPOTIFY / 'extended' / rel}"
    for rel in C_FILES:
        assert (SPOTIFY / "basic" / rel).is_file(), f"missing {SPOTIFY / 'basic' / rel}"


@pytest.fixture(scope="module")
def spotify_dir() -> Path:
    if not (SPOTIFY / "extended").is_dir() or not (SPOTIFY / "basic").is_dir():
        pytest.fail(f"shared Spotify exports missing under {SPOTIFY} (set MUSICRECALL_SHARED)")
    return SPOTIFY


@pytest.fixture(scope="module")
def extended(spotify_dir: Path) -> ImportResult:
    return import_spotify_extended(spotify_dir / "extended")


@pytest.fixture(scope="module")
def basic(spotify_dir: Path) -> ImportResult:
    return import_spotify_basic(spotify_dir / "basic")


def test_extended_counts_and_users(extended: ImportResult) -> None:
    acc = assert_balanced(extended)
    assert rows_read(acc) == {A_FILE: 1538, B_FILES[0]: 35, B_FILES[1]: 1470}
    assert extended.users["user_key"].to_list() == ["user_a", "user_b"]
    # user_b's two files merge into one user
    per_file = extended.events.group_by("source_file").agg(pl.col("user_id").unique())
    ids = {f: sorted(u) for f, u in per_file.iter_rows()}
    assert ids[B_FILES[0]] == ids[B_FILES[1]] == [1] and ids[A_FILE] == [0]
    # podcast episodes are rejected (13 in user_b 2023), never silently dropped
    assert extended.rejected["reason"].to_list() == ["not_music"] * 13
    assert (extended.rejected["source_file"] == B_FILES[1]).all()
    assert all("spotify_episode_uri" in json.loads(r) for r in extended.rejected["raw"])
    assert extended.events.height == 1538 + 35 + 1457


def test_extended_values(extended: ImportResult) -> None:
    ev = extended.events
    lo, hi = ev["ts"].min(), ev["ts"].max()
    assert datetime(2022, 1, 1, tzinfo=UTC) <= lo and hi < datetime(2026, 1, 1, tzinfo=UTC)
    assert (ev["play_ms"] >= 0).all()
    for col in ("skipped", "reason_start", "reason_end"):
        assert ev[col].null_count() == 0, col
    assert ev["skipped"].any() and not ev["skipped"].all()
    assert ev["entry"].null_count() == ev.height and ev["action"].null_count() == ev.height
    assert extended.items["song_key"].str.starts_with("spotify:track:").all()
    assert extended.items["song_key"].is_sorted()
    # first record of user_a: ts (end) 2024-07-03T14:26:57Z, ms_played 8191 -> start 14:26:48.809
    first = ev.filter((pl.col("source_file") == A_FILE) & (pl.col("source_row") == 0)).row(0, named=True)
    assert first["ts"] == datetime(2024, 7, 3, 14, 26, 48, 809000, tzinfo=UTC) and first["play_ms"] == 8191
    item = extended.items.filter(pl.col("song_id") == first["song_id"]).row(0, named=True)
    assert (item["title"], item["artist"], item["album"]) == ("Tera Fitoor", "Arijit Singh", "Genius")
    heads = {f"song:{i}" for i in extended.items["song_id"]}
    assert set(extended.triples["head"]) <= heads
    assert set(extended.triples["relation"]) == {"song_artist", "song_album"}
    assert f"artist:{item['artist']}" in set(extended.triples["tail"])


def test_extended_input_forms_agree(spotify_dir: Path, extended: ImportResult) -> None:
    b_dir = spotify_dir / "extended" / "user_b"
    by_dir = import_spotify_extended(b_dir)
    by_list = import_spotify_extended([b_dir / Path(f).name for f in reversed(B_FILES)])
    one = import_spotify_extended(b_dir / Path(B_FILES[0]).name, user_key="someone")
    for res in (by_dir, by_list, one):
        assert_balanced(res)
    assert rows_read(by_dir.accounting()) == {Path(f).name: n for f, n in zip(B_FILES, (35, 1470), strict=True)}
    assert_frame_equal(by_dir.events, by_list.events)
    assert by_dir.users["user_key"].to_list() == ["user_b"]
    assert one.users["user_key"].to_list() == ["someone"] and one.events.height == 35
    # ids are stable: importing user_b alone gives the same song_key -> id ranking as by_list
    keys = extended.events.filter(pl.col("user_id") == 1).join(extended.items, on="song_id")["song_key"]
    assert keys.to_list() == by_dir.events.join(by_dir.items, on="song_id")["song_key"].to_list()
    with pytest.raises(ValueError, match="user_key"):
        import_spotify_extended(spotify_dir / "extended", user_key="x")


def test_basic_counts_and_values(basic: ImportResult) -> None:
    acc = assert_balanced(basic)
    assert rows_read(acc) == {C_FILES[0]: 9990, C_FILES[1]: 10000}
    assert basic.rejected["reason"].unique().to_list() == ["missing_track"]
    assert basic.rejected.height == 21
    assert basic.users["user_key"].to_list() == ["user_c"]
    ev = basic.events
    assert ev.height == 9990 + 10000 - 21
    assert (ev["play_ms"] >= 0).all()
    lo, hi = ev["ts"].min(), ev["ts"].max()
    assert datetime(2022, 1, 1, tzinfo=UTC) <= lo and hi < datetime(2026, 1, 1, tzinfo=UTC)
    # endTime "2022-09-21 00:02" (taken as UTC) minus msPlayed 268919 is the start
    first = ev.row(0, named=True)
    assert first["ts"] == datetime(2022, 9, 20, 23, 57, 31, 81000, tzinfo=UTC)
    item = basic.items.filter(pl.col("song_id") == first["song_id"]).row(0, named=True)
    assert item["song_key"] == "Motionless In White — Meltdown" and item["album"] is None
    assert ev["skipped"].null_count() == ev.height  # the basic export does not log skips
    assert set(basic.triples["relation"]) == {"song_artist"}


def test_round_trip(tmp_path: Path, extended: ImportResult, basic: ImportResult) -> None:
    for name, res in (("ext", extended), ("basic", basic)):
        out = save_dataset(res, tmp_path / name)
        assert sorted(p.name for p in out.iterdir()) == [
            "events.parquet", "items.parquet", "meta.json", "rejected.parquet", "triples.parquet", "users.parquet"]
        back = load_dataset_dir(out)
        for table in ("events", "items", "users", "triples", "rejected"):
            assert_frame_equal(back[table], getattr(res, table))
        assert back["meta"]["time_kind"] == "clock" and back["meta"]["source"].startswith("spotify")
        assert back["meta"]["accounting"]["rows_read"] == res.events.height + res.rejected.height
    (tmp_path / "ext" / "users.parquet").unlink()
    with pytest.raises(InputError, match="users.parquet"):
        load_dataset_dir(tmp_path / "ext")
    save_dataset({"events": basic.events, "items": basic.items, "users": basic.users,
                  "triples": basic.triples}, tmp_path / "tables")
    assert_frame_equal(load_dataset_dir(tmp_path / "tables")["events"], basic.events)


# ------------------------------------------------------------------------------------------------
# bad input (small files written to tmp_path)
# ------------------------------------------------------------------------------------------------


def ext_record(i: int, **over: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "ts": f"2024-01-0{1 + i % 9}T10:00:{i % 60:02d}Z", "platform": "android", "ms_played": 1000 * (i + 1),
        "master_metadata_track_name": f"T{i % 3}", "master_metadata_album_artist_name": f"A{i % 2}",
        "master_metadata_album_album_name": "Al", "spotify_track_uri": f"spotify:track:{i % 3}",
        "episode_name": None, "spotify_episode_uri": None, "audiobook_uri": None,
        "reason_start": "clickrow", "reason_end": "trackdone", "shuffle": False, "skipped": False,
    }
    rec.update(over)
    return rec


def write_json(path: Path, records: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


def test_truncated_file_raises_or_quarantines(tmp_path: Path) -> None:
    full = json.dumps([ext_record(i) for i in range(6)], indent=1)
    cut = full.index('"ts"', full.index('"ts"', full.index("spotify:track:0", 300)) + 1)  # inside a record
    path = tmp_path / "u" / "Streaming_History_Audio_2024.json"
    path.parent.mkdir()
    path.write_text(full[:cut])
    n_complete = full[:cut].count('"reason_end"')
    with pytest.raises(InputError) as err:
        import_spotify_extended(path)
    assert err.value.row == n_complete and err.value.path == str(path)
    assert path.name in str(err.value) and f"record {n_complete}" in str(err.value) and "byte" in str(err.value)
    res = import_spotify_extended(path, on_error="quarantine")
    acc = assert_balanced(res)
    assert res.events.height == n_complete and res.events["source_row"].to_list() == list(range(n_complete))
    assert res.rejected.select("source_row", "reason").rows() == [(n_complete, "truncated")]
    assert acc["rows_read"].to_list() == [n_complete + 1] and "truncated" in acc["note"][0]


def test_malformed_json_mid_file(tmp_path: Path) -> None:
    text = json.dumps([ext_record(0), ext_record(1)])[:-1] + ', {"ts": oops}, ' + json.dumps(ext_record(3)) + "]"
    path = tmp_path / "u" / "Streaming_History_Audio_x.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(InputError, match=r"record 2\b") as err:
        import_spotify_extended(path)
    assert err.value.row == 2
    res = import_spotify_extended(path, on_error="quarantine")
    acc = assert_balanced(res)
    # the reader resynchronises after the broken record: record 3 is kept, not lost with the tail
    assert res.events["source_row"].to_list() == [0, 1, 3] and acc["rows_read"].to_list() == [4]
    assert res.rejected.select("source_row", "reason").rows() == [(2, "malformed_json")]
    assert '"ts": oops' in res.rejected["raw"][0]


def test_empty_files(tmp_path: Path) -> None:
    zero = tmp_path / "z" / "Streaming_History_Audio_0.json"
    zero.parent.mkdir()
    zero.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        import_spotify_extended(zero)
    assert zero.name in str(err.value)
    arr = write_json(tmp_path / "e" / "Streaming_History_Audio_0.json", [])
    res = import_spotify_extended(arr)
    acc = assert_balanced(res)
    assert res.events.height == 0 and res.users["user_key"].to_list() == ["e"]
    assert acc.row(0, named=True) == {"source_file": arr.name, "user_key": "e", "rows_read": 0, "events": 0,
                                          "rejected": 0, "note": "empty array: no records"}
    with pytest.raises(InputError, match="expected an array"):
        import_spotify_extended(write_json(tmp_path / "o" / "Streaming_History_Audio_0.json", {"ts": 1}))
    with pytest.raises(InputError, match="no files matching"):
        import_spotify_basic(tmp_path / "o")
    with pytest.raises(InputError, match="does not exist"):
        import_spotify_basic(tmp_path / "nowhere")


def test_wrong_types_are_rejected_per_row(tmp_path: Path) -> None:
    recs = [
        ext_record(0),
        ext_record(1, ms_played="abc"),
        ext_record(2, ts="not a date"),
        42,
        ext_record(4, ts=1704103200),
        ext_record(5, spotify_track_uri=None, episode_name="Ep", spotify_episode_uri="spotify:episode:x"),
        ext_record(6, spotify_track_uri=None, master_metadata_track_name=None),
        ext_record(7, skipped="maybe"),
        ext_record(8, ts="2024-02-30T10:00:00Z"),
        ext_record(9, ms_played=-5),  # kept: cleaning quarantines negative play_ms
        ext_record(10, skipped=None, ms_played=2000.0),
    ]
    path = write_json(tmp_path / "u" / "Streaming_History_Audio_2024.json", recs)
    res = import_spotify_extended(path)
    assert_balanced(res)
    got = dict(res.rejected.select("source_row", "reason").iter_rows())
    assert got == {1: "bad_play_ms", 2: "bad_ts", 3: "not_a_record", 4: "bad_ts", 5: "not_music",
                   6: "missing_track", 7: "bad_skipped", 8: "bad_ts"}
    assert (res.rejected["source_file"] == path.name).all()
    assert json.loads(res.rejected.filter(pl.col("source_row") == 1)["raw"][0])["ms_played"] == "abc"
    assert res.events["source_row"].to_list() == [0, 9, 10]
    assert res.events["play_ms"].to_list() == [1000, -5, 2000]
    assert res.events["skipped"].to_list() == [False, False, None]


def test_basic_bad_rows_and_encoding(tmp_path: Path) -> None:
    recs = [
        {"endTime": "2023-01-01 10:00", "artistName": "A", "trackName": "T", "msPlayed": 60000},
        {"endTime": "2023-01-01 10:05", "artistName": "Unknown Artist", "trackName": "Unknown Track", "msPlayed": 1},
        {"endTime": "2023-01-01 10:06", "artistName": None, "trackName": "T", "msPlayed": 1},
        {"endTime": "yesterday", "artistName": "A", "trackName": "T", "msPlayed": 1},
        {"endTime": "2023-01-01 10:07", "artistName": "A", "trackName": "T", "msPlayed": "1"},
        {"endTime": "2023-01-01 10:08", "podcastName": "P", "episodeName": "E", "msPlayed": 5},
        ["not", "a", "record"],
    ]
    path = write_json(tmp_path / "me" / "StreamingHistory0.json", recs)
    res = import_spotify_basic(tmp_path / "me")
    assert_balanced(res)
    assert dict(res.rejected.select("source_row", "reason").iter_rows()) == {
        1: "missing_track", 2: "missing_track", 3: "bad_ts", 4: "bad_play_ms", 5: "not_music", 6: "not_a_record"}
    assert res.events["ts"].to_list() == [datetime(2023, 1, 1, 9, 59, tzinfo=UTC)]
    assert res.items["song_key"].to_list() == ["A — T"]
    bad = path.read_bytes().replace(b'"yesterday"', b'"\xff\xfe"')
    path.write_bytes(bad)
    with pytest.raises(InputError, match="not UTF-8"):
        import_spotify_basic(path)
    res = import_spotify_basic(path, on_error="quarantine")
    assert_balanced(res)
    assert res.events.height == 1 and dict(res.rejected.select("source_row", "reason").iter_rows()) == {
        1: "missing_track", 2: "missing_track", 3: "bad_encoding", 4: "bad_play_ms", 5: "not_music", 6: "not_a_record"}
    assert "\\xff\\xfe" in res.rejected.filter(pl.col("source_row") == 3)["raw"][0]


# ------------------------------------------------------------------------------------------------
# Last.fm-1K and generic tables
# ------------------------------------------------------------------------------------------------


def test_lastfm_1k(tmp_path: Path) -> None:
    lines = [
        "user_000001\t2009-05-04T23:08:57Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\t\tFuck Me Im Famous",
        "user_000001\t2009-05-04T13:54:10Z\ta7f7df4a\tCeltic Frost\tb7d1e5f8\tThe \"Usurper\"",
        "user_000001\t2009-05-04T13:54:10Z\ta7f7df4a\tCeltic Frost\tb7d1e5f8",  # 5 columns
        "user_000002\tnot-a-time\t\tX\t\tY",
        "",
        "user_000002\t2008-01-01T00:00:00Z\t\tCeltic Frost\tb7d1e5f8\tThe Usurper",
        "user_000002\t2008-01-01T00:00:01Z\t\tNobody\t\t",
    ]
    path = tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = import_lastfm_1k(path)
    acc = assert_balanced(res)
    assert acc["rows_read"].to_list() == [7]
    assert dict(res.rejected.select("source_row", "reason").iter_rows()) == {
        2: "bad_columns", 3: "bad_ts", 4: "bad_columns", 6: "missing_track"}
    assert res.rejected.filter(pl.col("source_row") == 2)["raw"][0] == lines[2]
    assert res.users["user_key"].to_list() == ["user_000001", "user_000002"]
    keys = res.events.join(res.items, on="song_id").sort("source_row")["song_key"].to_list()
    assert keys == ["Deep Dish — Fuck Me Im Famous", "b7d1e5f8", "b7d1e5f8"]
    assert res.events["play_ms"].null_count() == res.events.height
    assert res.events["ts"][0] == datetime(2009, 5, 4, 23, 8, 57, tzinfo=UTC)
    assert res.items.filter(pl.col("song_key") == "b7d1e5f8")["title"][0] == 'The "Usurper"'
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        import_lastfm_1k(empty)


def test_generic_tables(tmp_path: Path) -> None:
    iso = tmp_path / "events.csv"
    iso.write_text("user_id,song_id,ts,play_ms,extra,skipped\n"
                   "0,1,2024-01-01T10:00:00Z,1000,x,true\n"
                   "1,2,2024-01-01 11:00:00,,y,\n")
    ev = import_events(iso)
    assert ev.schema == pl.Schema(EVENTS_SCHEMA) and "extra" not in ev.columns
    assert ev["ts"].to_list() == [datetime(2024, 1, 1, 10, tzinfo=UTC), datetime(2024, 1, 1, 11, tzinfo=UTC)]
    assert ev["play_ms"].to_list() == [1000, None] and ev["skipped"].to_list() == [True, None]
    assert ev["source_file"].to_list() == ["events.csv"] * 2 and ev["source_row"].to_list() == [0, 1]
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("user_id,song_id,ts,play_ms\n0,1,1704103200000,5\n")
    assert import_events(epoch)["ts"][0] == datetime(2024, 1, 1, 10, tzinfo=UTC)
    pq = tmp_path / "events.parquet"
    ev.write_parquet(pq)
    assert_frame_equal(import_events(pq), ev)

    missing = tmp_path / "nomissing.csv"
    missing.write_text("user_id,song_id,ts\n0,1,2024-01-01T10:00:00Z\n")
    with pytest.raises(InputError, match="play_ms") as err:
        import_events(missing)
    assert missing.name in str(err.value)
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,song_id,ts,play_ms\n0,1,2024-01-01T10:00:00Z,5\n0,1,never,5\n")
    with pytest.raises(InputError, match="'ts'") as err:
        import_events(bad)
    assert err.value.row == 1 and "file line 3" in str(err.value)

    items = tmp_path / "items.csv"
    items.write_text("song_id,song_key,title,release_year,duration_ms\n0,k0,Song,1999,200000.0\n")
    it = import_items(items)
    assert it.schema == pl.Schema(ITEMS_SCHEMA) and it.row(0)[:3] == (0, "k0", "Song")
    assert it["release_year"][0] == 1999 and it["duration_ms"][0] == 200000
    triples = tmp_path / "kg.parquet"
    pl.DataFrame({"head": ["song:0"], "relation": ["song_artist"], "tail": ["artist:X"]}).write_parquet(triples)
    assert import_triples(triples).rows() == [("song:0", "song_artist", "artist:X")]
    with pytest.raises(InputError, match="relation"):
        items_only = tmp_path / "t.csv"
        items_only.write_text("head,tail\nsong:0,artist:X\n")
        import_triples(items_only)
