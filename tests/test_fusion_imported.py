"""Notebook 08 on an imported dataset: what the data lacks is skipped with a reason, the models still run.

The dataset is built from the tiny world's plays written out as an order-only sequence file (the
``user,song:song:...`` format) with a song -> artist/album catalogue, and read back by the importers of
:mod:`musicrecall.io`: no entry points, no collects, no play durations, no genre, no audio, no party B,
no clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from musicrecall.data import prepare
from musicrecall.fusion import missing_inputs
from musicrecall.io import import_log, import_sequences, save_dataset
from musicrecall.ranking.features import build_features, events_before
from musicrecall.report.runner import run_all, run_reports_dir


def world_log(tmp, n_users: int = 300) -> tuple:
    """The tiny world's plays of ``n_users`` users as a CSV log, a sequence file and a catalogue."""
    ds = prepare("world", profile="tiny", seed=0).dataset
    ev = (ds.events.join(ds.users.select("user_id", "user_key"), on="user_id")
          .join(ds.items.select("song_id", "song_key"), on="song_id").filter(pl.col("user_id") < n_users)
          .drop_nulls("ts"))
    ev.select(user="user_key", song="song_key", ts=pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
              ms_played="play_ms").write_csv(tmp / "log.csv")
    ds.items.select(song="song_key", artist=pl.col("artist").cast(pl.String),
                    album=pl.col("album").cast(pl.String)).write_csv(tmp / "catalog.csv")
    seq = ev.sort("user_key", "ts").group_by("user_key", maintain_order=True).agg("song_key")
    (tmp / "seq.txt").write_text("".join(f"{u},{':'.join(s)}\n" for u, s in seq.iter_rows()))
    return tmp / "log.csv", tmp / "seq.txt", tmp / "catalog.csv"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imported")
    log, seq, cat = world_log(tmp)
    return {"clock": save_dataset(import_log(log, catalog=cat), tmp / "clock"),
            "ordinal": save_dataset(import_sequences(seq, catalog=cat), tmp / "ordinal")}


def test_the_world_lacks_nothing():
    prep = prepare("world", profile="tiny", seed=0)
    assert missing_inputs(prep.dataset, prep.clean.events) == {}


def test_what_an_imported_log_lacks_is_named(imported):
    clock = prepare(str(imported["clock"]), profile="tiny", seed=0)
    assert set(missing_inputs(clock.dataset, clock.clean.events)) == {"audio", "party_b", "entries", "collect", "genre"}
    ordinal = prepare(str(imported["ordinal"]), profile="tiny", seed=0)
    assert set(missing_inputs(ordinal.dataset, ordinal.clean.events)) == {
        "audio", "party_b", "entries", "collect", "genre", "clock", "durations"}


def test_features_with_per_user_cuts_use_only_each_users_past():
    t0 = datetime(1970, 1, 1, tzinfo=UTC)
    ev = pl.DataFrame({"user_id": [1, 1, 1, 2, 2], "song_id": [0, 1, 2, 0, 2],
                       "ts": [t0 + timedelta(seconds=s) for s in (0, 1, 2, 0, 1)],
                       "full_play": [True] * 5, "action": [None] * 5}, schema_overrides={"action": pl.String})
    cut = pl.DataFrame({"user_id": [1], "cut": [t0 + timedelta(seconds=2)]})  # user 2 has no cut: all past
    assert events_before(ev, cut)[["user_id", "song_id"]].rows() == [(1, 0), (1, 1), (2, 0), (2, 2)]
    items = pl.DataFrame({"song_id": [0, 1, 2], "genre": [None] * 3, "language": [None] * 3, "version": [None] * 3,
                          "release_year": [None] * 3, "duration_ms": [None] * 3, "artist": ["a", "b", "c"]},
                         schema_overrides={c: pl.String for c in ("genre", "language", "version")})
    f = build_features(ev, cut, pl.DataFrame({"user_id": [1, 2], "song_id": [2, 2]}), items)
    assert f["us_plays"].to_list() == [0, 1]  # user 1's play of song 2 is at its cut; user 2's is before
    assert f["u_plays"].to_list() == [2, 2]


def test_notebook_08_completes_on_order_only_imported_data(imported, tmp_path):
    runs = run_all("tiny", only=["08"], extra={"dataset": str(imported["ordinal"])}, reports_dir=tmp_path)
    assert [(r.name, r.status) for r in runs] == [("08_fusion_and_ranking", "ok")], [r.error for r in runs]
    out = run_reports_dir(str(imported["ordinal"]), tmp_path)
    text = "".join("".join(o.get("text", "")) for c in json.loads((out / "08_fusion_and_ranking.ipynb").read_text())["cells"]
                   for o in c.get("outputs", []))
    for what in ("audio", "party_b", "entries", "clock", "durations"):
        assert f"skipped ({what}):" in text, what
    assert "skipped (per-entry hit rates):" in text
    assert "C7 not tested on this dataset" in text
    rec = json.loads((out / "metrics.json").read_text())["notebooks"]["08_fusion_and_ranking"]["records"][-1]
    names = {m["name"] for m in rec["metrics"]}
    assert {"recall_fused_all_hr@200", "recall_short_term_all_hr@200", "recall_sasrec_all_hr@200"} <= names
    assert any(n.startswith("rerank_lambdarank") for n in names)  # the ranking part ran
    assert not rec.get("claims"), "C7 cannot be tested without audio and must not be recorded"
