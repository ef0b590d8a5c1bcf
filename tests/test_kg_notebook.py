"""Notebook 02 on imported data (generic events plus an artist/album-only triples file: no genre, no truth), and
its placebo world cleaned like the main world."""

from __future__ import annotations

import json

import polars as pl
import pytest

from musicrecall.io import load_dataset_dir, save_dataset
from musicrecall.report.runner import run_all, run_reports_dir
from musicrecall.world import generate_world


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A generated dataset shaped like a Spotify import: items with artist/album only, song_artist and
    song_album triples only, written and read back through musicrecall.io."""
    w = generate_world("tiny", seed=1)
    items = w.items.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in ("genre", "language", "version"))
    triples = w.triples.filter(pl.col("relation").is_in(["song_artist", "song_album"]))
    folder = save_dataset({"events": w.events, "items": items, "users": w.users, "triples": triples},
                          tmp_path_factory.mktemp("imported"))
    assert set(load_dataset_dir(folder)["triples"]["relation"].unique()) == {"song_artist", "song_album"}
    return folder


def test_kg_notebook_runs_on_imported_triples(imported, tmp_path):
    runs = run_all("tiny", only=["02"], extra={"dataset": str(imported)}, reports_dir=tmp_path)
    assert [r.status for r in runs] == ["ok"], [r.error for r in runs]
    metrics = json.loads((run_reports_dir(str(imported), tmp_path) / "metrics.json").read_text())  # its own folder
    rec = metrics["notebooks"]["02_kg_song2vec"]["records"][0]
    values = {m["name"]: m["value"] for m in rec["metrics"]}
    assert "kg_song2vec_all_hr@200" in values and "plain_song2vec_all_hr@200" in values
    assert not any(m["world"] == "placebo_kg" for m in rec["metrics"]), "no placebo world for imported data"
    (claim,) = rec["claims"]
    # the dataset's own figure and effect, no placebo, and so at most "not falsified" (report/record.py)
    assert claim["id"] == "C1" and (claim["ours"] or claim["real"]) and claim["effect"]["value"] is not None
    assert not claim.get("placebo_effect") and claim["verdict"] in ("not falsified", "not reproduced")


def test_the_placebo_world_is_cleaned_like_the_main_world(tmp_path):
    """With a session gap other than the default, the KG placebo world (same listening, shuffled KG) must be
    cleaned with the same gap: its cleaned plays then equal the main world's, and the notebook says so (when
    the placebo was cleaned with the default gap, its sessions differed and plain Song2Vec was refitted)."""
    import nbformat

    runs = run_all("tiny", only=["02"], extra={"session_gap_min": 20.0}, reports_dir=tmp_path)
    assert [r.status for r in runs] == ["ok"], [r.error for r in runs]
    nb = nbformat.read(tmp_path / "02_kg_song2vec.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "same listening log as the real world (plain Song2Vec reused): True" in text
