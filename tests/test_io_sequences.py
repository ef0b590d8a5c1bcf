"""Order-only importers (sequences, user-item), catalogues, the generic log importer and ordinal time."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from musicrecall.config import SHARED_DIR
from musicrecall.io import (
    ORDINAL_EPOCH,
    ImportResult,
    InputError,
    import_catalog,
    import_log,
    import_sequences,
    import_user_item,
    load_dataset_dir,
    save_dataset,
)
from musicrecall.schema import EVENTS_SCHEMA, ITEMS_SCHEMA

THIRTY = SHARED_DIR / "data" / "30music"


def balanced(res: ImportResult) -> pl.DataFrame:
    acc = res.accounting()
    assert (acc["rows_read"] == acc["events"] + acc["rejected"]).all(), acc
    assert acc["events"].sum() == res.events.height and acc["rejected"].sum() == res.rejected.height
    assert res.events.schema == pl.Schema(EVENTS_SCHEMA) and res.items.schema == pl.Schema(ITEMS_SCHEMA)
    assert res.items["song_id"].to_list() == list(range(res.items.height))
    assert res.users["user_id"].to_list() == list(range(res.users.height))
    assert res.events["song_id"].null_count() == 0 and res.events["user_id"].null_count() == 0
    assert res.items["song_key"].is_unique().all() and res.users["user_key"].is_unique().all()
    return acc


def keyed(res: ImportResult) -> pl.DataFrame:
    """Events with their source keys, in source order."""
    return (res.events.join(res.items.select("song_id", "song_key"), on="song_id")
            .join(res.users.select("user_id", "user_key"), on="user_id").sort("source_row"))


def test_shared_30music_present() -> None:
    for name in ("sequences.txt", "songs.csv"):
        assert (THIRTY / name).is_file(), f"missing {THIRTY / name} (set MUSICRECALL_SHARED)"


@pytest.fixture(scope="module")
def thirty() -> ImportResult:
    if not (THIRTY / "sequences.txt").is_file():
        pytest.fail(f"shared 30Music data missing under {THIRTY}")
    return import_sequences(THIRTY / "sequences.txt", catalog=THIRTY / "songs.csv")


def test_30music_full_import(thirty: ImportResult, tmp_path: Path) -> None:
    lines = (THIRTY / "sequences.txt").read_text().splitlines()
    seqs = {u: s.split(":") for u, s in (ln.split(",", 1) for ln in lines)}
    with open(THIRTY / "songs.csv", newline="") as fh:
        cat = list(csv.DictReader(fh))
    acc = balanced(thirty)
    # the README's figures, and the same figures counted independently from the files
    assert thirty.users.height == len(seqs) == 2965
    assert thirty.events.height == sum(map(len, seqs.values())) == 630_906
    assert thirty.events["song_id"].n_unique() == len({s for v in seqs.values() for s in v}) == 82_219
    assert thirty.items.height == len(cat) == 90_868  # catalogue songs nobody played are kept
    assert thirty.rejected.height == 0 and acc["rows_read"].to_list() == [630_906]
    rel = dict(thirty.triples.group_by("relation").len().iter_rows())
    assert rel == {"song_artist": sum(bool(r["artist"]) for r in cat), "song_album": sum(bool(r["album"]) for r in cat)}
    # every user's sequence comes back in order; ids keep the numeric order of the source ids
    ev = keyed(thirty)
    for u in (lines[0].split(",")[0], lines[1234].split(",")[0], lines[-1].split(",")[0]):
        assert ev.filter(pl.col("user_key") == u)["song_key"].to_list() == seqs[u]
    assert thirty.items["song_key"].cast(pl.Int64).is_sorted()
    assert thirty.items.filter(pl.col("song_key") == cat[5]["song"])["artist"][0] == cat[5]["artist"]
    # ordinal time: epoch + position in the user's sequence, strictly increasing per user
    first = ev.group_by("user_key").agg(pl.col("ts").first(), pl.col("ts").diff().drop_nulls().min().alias("step"),
                                        pl.len())
    assert (first["ts"] == ORDINAL_EPOCH).all() and (first["step"] == timedelta(seconds=1)).all()
    assert thirty.meta["time_kind"] == "ordinal" and thirty.events["play_ms"].null_count() == thirty.events.height
    back = load_dataset_dir(save_dataset(thirty, tmp_path / "30m"))
    assert back["meta"]["time_kind"] == "ordinal" and back["meta"]["source"] == "sequences"
    assert back["meta"]["accounting"]["rows_read"] == 630_906 and back["events"].height == 630_906
    assert back["meta"]["catalog"]["relations"] == ["artist", "album"]
    assert back["meta"]["catalog"]["played_songs_not_in_catalogue"] == 0
    assert back["meta"]["catalog"]["catalogue_songs_not_played"] == 90_868 - 82_219


def test_sequences_any_ids_bad_lines_and_catalogue(tmp_path: Path) -> None:
    seq = tmp_path / "seq.txt"
    seq.write_text("u9,100:7:100\nalice,zz:7\n\nno separator here\n,5:6\nbob,\nu9,3::7\n", encoding="utf-8")
    cat = tmp_path / "cat.csv"
    cat.write_text("song,artist,album,mood,year,title\n7,a7,al7,calm,1999,Seven\n100,a1,,loud,,Hundred\n"
                   "555,a5,al5,,2001,Never played\n")
    with pytest.raises(InputError) as err:
        import_sequences(seq, catalog=cat)
    assert "seq.txt" in str(err.value) and "blank_line" in str(err.value) and "file line 3" in str(err.value)
    res = import_sequences(seq, catalog=cat, on_error="quarantine")
    acc = balanced(res)
    # records: 3 + 2 plays, 1 blank, 1 unreadable, 1 no user, 1 no songs, 3 plays (one empty)
    assert acc["rows_read"].to_list() == [3 + 2 + 1 + 1 + 1 + 1 + 3]
    assert sorted(res.rejected["reason"].to_list()) == ["bad_format", "blank_line", "empty_item", "missing_user",
                                                        "no_items"]
    ev = keyed(res)
    assert ev.filter(pl.col("user_key") == "u9")["song_key"].to_list() == ["100", "7", "100", "3", "7"]
    assert ev.filter(pl.col("user_key") == "u9")["ts"].to_list() == [ORDINAL_EPOCH + timedelta(seconds=i)
                                                                      for i in range(5)]
    # mixed id forms: text order; the never-played catalogue song is an item with its triples
    assert res.items["song_key"].to_list() == sorted(["100", "7", "zz", "3", "555"])
    assert res.meta["catalog"]["played_songs_not_in_catalogue"] == 2  # zz and 3
    assert res.meta["catalog"]["catalogue_songs_not_played"] == 1  # 555
    never = res.items.filter(pl.col("song_key") == "555").row(0, named=True)
    assert never["artist"] == "a5" and never["title"] == "Never played" and never["release_year"] == 2001
    t = set(res.triples.iter_rows())
    sid = never["song_id"]
    assert {(f"song:{sid}", "song_artist", "artist:a5"), (f"song:{sid}", "song_album", "album:al5")} <= t
    seven = res.items.filter(pl.col("song_key") == "7")["song_id"][0]
    assert (f"song:{seven}", "song_mood", "mood:calm") in t
    assert not any(r[1] == "song_title" for r in t)


def test_user_item_plain_and_recbole(tmp_path: Path) -> None:
    plain = tmp_path / "train.txt"
    plain.write_text("1 10\n1   11\n2\t10\n1 10\n")
    res = import_user_item(plain)
    balanced(res)
    assert res.meta["time_kind"] == "ordinal"
    ev = keyed(res)
    assert ev["song_key"].to_list() == ["10", "11", "10", "10"] and ev["user_key"].to_list() == ["1", "1", "2", "1"]
    assert ev["ts"].to_list() == [ORDINAL_EPOCH + timedelta(seconds=s) for s in (0, 1, 0, 2)]
    inter = tmp_path / "ml.inter"
    inter.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "u1\ti1\t4\t1704103200\nu1\ti2\t5\t1704103260.5\nu2\ti1\t3\t978300760\n")
    res = import_user_item(inter)
    balanced(res)
    assert res.meta["time_kind"] == "clock"
    assert keyed(res)["ts"].to_list() == [datetime(2024, 1, 1, 10, tzinfo=UTC),
                                          datetime(2024, 1, 1, 10, 1, 0, 500000, tzinfo=UTC),
                                          datetime(2000, 12, 31, 22, 12, 40, tzinfo=UTC)]
    res_ms = import_user_item(inter, ts_unit="ms", on_error="quarantine")  # seconds read as ms: 1970
    assert res_ms.events.height == 0 and set(res_ms.rejected["reason"]) == {"ts_out_of_range"}


def test_catalogue_errors(tmp_path: Path) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text("song,artist\n1,a\n2,b\n1,c\n")
    with pytest.raises(InputError, match="duplicate song id '1'") as err:
        import_catalog(dup)
    assert err.value.row == 2 and "dup.csv" in str(err.value) and "'song'" in str(err.value)
    col = tmp_path / "col.csv"
    col.write_text("song,artist,Artist\n1,a,b\n")
    with pytest.raises(InputError, match="duplicate column name"):
        import_catalog(col)
    assert import_catalog(THIRTY / "songs.csv").relations == ["artist", "album"]


def test_log_importer_any_ids(tmp_path: Path) -> None:
    p = tmp_path / "plays.csv"
    p.write_text("user,item_id,timestamp,ms_played,extra\nann,spotify:track:x,1704103200,1000,q\n"
                 "bob,spotify:track:y,1704103260,2.5,q\nann,spotify:track:y,1704103300,,q\n")
    res = import_log(p, on_error="quarantine")
    balanced(res)
    assert res.events["ts"].to_list() == [datetime(2024, 1, 1, 10, tzinfo=UTC),
                                          datetime(2024, 1, 1, 10, 1, 40, tzinfo=UTC)]
    assert res.rejected.select("source_row", "reason").rows() == [(1, "bad_play_ms")]
    assert "ms_played" in res.rejected["raw"][0]
    assert res.events["play_ms"].to_list() == [1000, None]
    pq = tmp_path / "plays.parquet"
    pl.DataFrame({"user_id": [900, 5, 900], "song_id": [70000, 3, 3]}).write_parquet(pq)
    res = import_log(pq)
    balanced(res)
    assert res.meta["time_kind"] == "ordinal"
    assert keyed(res).select("user_key", "song_key").rows() == [("900", "70000"), ("5", "3"), ("900", "3")]
    assert res.items["song_key"].to_list() == ["3", "70000"] and res.users["user_key"].to_list() == ["5", "900"]


def test_save_dataset_without_users_and_meta(tmp_path: Path) -> None:
    ev = pl.DataFrame({"user_id": [0, 1, 1], "song_id": [0, 0, 1], "ts": [datetime(2024, 1, 1, tzinfo=UTC)] * 3,
                       "play_ms": [1, 2, 3]})
    items = pl.DataFrame({"song_id": [0, 1]})
    triples = pl.DataFrame(schema={"head": pl.String, "relation": pl.String, "tail": pl.String})
    out = save_dataset({"events": ev, "items": items, "triples": triples}, tmp_path / "d")
    back = load_dataset_dir(out)
    assert back["users"]["user_id"].to_list() == [0, 1] and back["meta"]["time_kind"] == "clock"
    assert json.loads((out / "meta.json").read_text())["time_kind"] == "clock"
    with pytest.raises(InputError, match="already holds a dataset"):
        save_dataset({"events": ev, "items": items, "triples": triples}, out, overwrite=False)


def test_cli_sequences_and_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from musicrecall.io.__main__ import main

    seq = tmp_path / "s.txt"
    seq.write_text("a,1:2:3\nb,2:3\nbroken\n")
    cat = tmp_path / "c.csv"
    cat.write_text("song,artist\n1,x\n2,y\n3,y\n4,z\n")
    out = tmp_path / "ds"
    assert main(["sequences", str(seq), str(out), "--catalog", str(cat)]) == 2
    assert "bad_format" in capsys.readouterr().err and not out.exists()
    assert main(["sequences", str(seq), str(out), "--catalog", str(cat), "--on-error", "quarantine"]) == 0
    printed = capsys.readouterr().out
    assert "5 events, 4 songs, 2 users, 1 rejected" in printed and "order only" in printed
    back = load_dataset_dir(out)
    assert back["meta"]["time_kind"] == "ordinal" and back["rejected"]["reason"].to_list() == ["bad_format"]
    assert main(["sequences", str(seq), str(out), "--on-error", "quarantine"]) == 2
    err = capsys.readouterr().err
    assert "already holds a dataset" in err and "--overwrite" in err and "Traceback" not in err
    assert main(["sequences", str(seq), str(out), "--on-error", "quarantine", "--overwrite"]) == 0
    afile = tmp_path / "file.parquet"
    afile.write_text("x")
    assert main(["user-item", str(seq), str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["sequences", str(seq), str(tmp_path / "one"), "--on-error", "quarantine", "--sample-users", "1"]) == 0
    assert "subset: 1 of 2 users (seed 0)" in capsys.readouterr().out
    assert load_dataset_dir(tmp_path / "one")["users"].height == 1
    csvf = tmp_path / "plays.csv"
    csvf.write_text("user_id,song_id,ts,play_ms\n7,70,2024-01-01T10:00:00Z,1000\n")
    assert main(["log", str(csvf), str(tmp_path / "log")]) == 0
    assert load_dataset_dir(tmp_path / "log")["events"].height == 1


def test_large_text_files_read_by_polars_equal_the_exact_reader(tmp_path: Path) -> None:
    """Files over 1 MB that are valid UTF-8 take polars' line reader; it must give the same lines."""
    from musicrecall.io.text import decode_lines, read_lines

    body = "u1\t2009-05-04T23:08:57Z\t\tArtist é\t\tTrack\r\n" * 30_000 + "\n" + "last"
    p = tmp_path / "big.tsv"
    p.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert p.stat().st_size > 1 << 20
    fast, exact = read_lines(p), decode_lines(p.read_bytes())
    assert fast.equals(exact) and fast.height == 30_002 and fast["line"][0].startswith("u1")
    p.write_bytes(body.encode() + b"\nCaf\xe9\n")  # one bad byte: the exact path finds it
    bad = read_lines(p).filter(pl.col("raw").is_not_null())
    assert bad["line_no"].to_list() == [30_002] and bad["raw"].to_list() == ["Caf\\xe9"]


def test_log_csv_quoted_fields_and_line_breaks_inside_them(tmp_path: Path) -> None:
    p = tmp_path / "plays.csv"
    p.write_text('user,song,title\r\na,1,"two\nlines, and a comma"\r\nb,2,"say ""hi"""\r\n')
    res = import_log(p)
    balanced(res)
    assert res.rejected.height == 0
    assert keyed(res).join(res.items.select("song_id", "title"), on="song_id")["title"].to_list() == [
        "two\nlines, and a comma", 'say "hi"']


def test_sample_users_of_30music(thirty: ImportResult, tmp_path: Path) -> None:
    from musicrecall.io import sample_users

    lines = (THIRTY / "sequences.txt").read_text().splitlines()
    seqs = {u: s.split(":") for u, s in (ln.split(",", 1) for ln in lines)}
    sub = sample_users(thirty, 100, seed=3)
    back = load_dataset_dir(save_dataset(sub, tmp_path / "sub"))  # passes the loading checks: ids 0..n-1
    users = back["users"]["user_key"].to_list()
    assert len(users) == 100 and back["users"]["user_id"].to_list() == list(range(100))
    assert back["events"].height == sum(len(seqs[u]) for u in users)
    assert back["items"].height == len({s for u in users for s in seqs[u]})  # the songs they played
    ev = (back["events"].join(back["items"].select("song_id", "song_key"), on="song_id")
          .join(back["users"].select("user_id", "user_key"), on="user_id").sort("source_row"))
    for u in users[:5]:  # whole sequences, in order, with their ordinal times
        mine = ev.filter(pl.col("user_key") == u)
        assert mine["song_key"].to_list() == seqs[u]
        assert mine["ts"].to_list() == [ORDINAL_EPOCH + timedelta(seconds=i) for i in range(len(seqs[u]))]
    # triples follow their songs: the artist of a kept song is the catalogue's
    with open(THIRTY / "songs.csv", newline="") as fh:
        artist = {r["song"]: r["artist"] for r in csv.DictReader(fh)}
    key0 = back["items"]["song_key"][0]
    assert ("song:0", "song_artist", f"artist:{artist[key0]}") in set(back["triples"].iter_rows())
    meta = back["meta"]
    assert meta["time_kind"] == "ordinal" and meta["subset"]["of_users"] == 2965 and meta["subset"]["seed"] == 3
    assert sample_users(thirty, 100, seed=3)["users"]["user_key"].to_list() == users  # seeded


def test_csv_fast_path_equals_the_record_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quote-free CSVs are split by polars; the result must be what the record-by-record reader gives."""
    import musicrecall.io.tables as tables

    p = tmp_path / "t.csv"
    p.write_bytes(b"song,artist,album\r\n0,98785,115058\r\n1,,\r\n2,x y,z\r\n")
    fast = tables.read_csv_records(p, ",")
    monkeypatch.setattr(tables, "_fast_csv", lambda *a: None)
    slow = tables.read_csv_records(p, ",")
    assert fast.frame.equals(slow.frame) and fast.rows_read == slow.rows_read == 3
    assert fast.frame.row(1) == ("1", "", "", 1)


def test_user_item_headerless_third_field_is_the_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``user item ts`` without a header: a numeric third field that never decreases per user is the clock,
    in the detected unit (seconds, milliseconds) or the one given; with ``extra_columns='ignore'`` it is
    not read and the time is ordinal."""
    from musicrecall.io.__main__ import main

    sec = tmp_path / "s.txt"
    sec.write_text("u1 a 1704103200\nu2 b 978300760\nu1 b 1704103260\nu1 a 1704103260\n")  # ties are fine
    res = import_user_item(sec)
    balanced(res)
    assert res.meta["time_kind"] == "clock" and "column 3" in res.meta["clock"]
    assert keyed(res)["ts"].to_list() == [datetime(2024, 1, 1, 10, tzinfo=UTC), datetime(2000, 12, 31, 22, 12, 40,
                                                                                          tzinfo=UTC),
                                          datetime(2024, 1, 1, 10, 1, tzinfo=UTC), datetime(2024, 1, 1, 10, 1,
                                                                                            tzinfo=UTC)]
    ms = tmp_path / "ms.tsv"
    ms.write_text("u1\ta\t1704103200000\nu1\tb\t1704103260000\n")
    assert keyed(import_user_item(ms))["ts"].to_list() == [datetime(2024, 1, 1, 10, tzinfo=UTC),
                                                           datetime(2024, 1, 1, 10, 1, tzinfo=UTC)]
    as_s = import_user_item(ms, ts_unit="s", on_error="quarantine")  # the user's unit wins: year 55970 -> out
    assert as_s.events.height == 0 and set(as_s.rejected["reason"]) == {"ts_out_of_range"}
    rating = tmp_path / "r.txt"
    rating.write_text("u1 a 5\nu1 b 3\n")
    with pytest.raises(InputError, match="column 3") as err:
        import_user_item(rating)
    assert err.value.row == 1 and "r.txt" in str(err.value) and "file line 2" in str(err.value)
    res = import_user_item(rating, extra_columns="ignore")
    balanced(res)
    assert res.meta["time_kind"] == "ordinal" and "extra_columns='ignore'" in res.meta["ignored_fields"]
    assert res.events.height == 2
    with pytest.raises(ValueError, match="extra_columns"):
        import_user_item(rating, extra_columns="drop")  # type: ignore[arg-type]
    assert main(["user-item", str(rating), str(tmp_path / "ds")]) == 2
    assert "column 3" in capsys.readouterr().err
    assert main(["user-item", str(rating), str(tmp_path / "ds"), "--extra-columns", "ignore"]) == 0
    assert load_dataset_dir(tmp_path / "ds")["meta"]["time_kind"] == "ordinal"
    with pytest.raises(SystemExit):  # only user-item takes it
        main(["log", str(rating), str(tmp_path / "ds2"), "--extra-columns", "ignore"])
    assert "--extra-columns is not used by log" in capsys.readouterr().err
