"""Notebook 05's labelled audio without ``../shared``: the simulated world's rendered songs, and ``auto``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from musicrecall.audio import ATTRIBUTES, AudioConfig, Corpus
from musicrecall.audio import sources as S
from musicrecall.audio import validation as V
from musicrecall.config import REPO_ROOT
from musicrecall.world import World, generate_world, render_audio, vocal_sections
from musicrecall.world.profiles import GENRES, INSTRUMENTAL, LANGUAGES

CFG = AudioConfig(hop_s=2.0)


def test_resolve_source(tmp_path) -> None:
    assert S.resolve_source("auto", tmp_path) == "world"
    assert S.resolve_source("world", tmp_path) == "world"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.resolve_source("shared", tmp_path)
    with pytest.raises(ValueError, match="audio_source"):
        S.resolve_source("real", tmp_path)
    (tmp_path / "audio").mkdir()
    assert S.resolve_source("auto", tmp_path) == "shared"
    assert S.resolve_source("shared", tmp_path) == "shared"
    assert S.resolve_source("world", tmp_path) == "world"


@pytest.mark.parametrize("with_audio", [False, True])
def test_auto_follows_musicrecall_shared(tmp_path, with_audio: bool) -> None:
    """``auto`` reads SHARED_DIR from ``MUSICRECALL_SHARED`` (the way a fresh machine or CI sets it)."""
    if with_audio:
        (tmp_path / "audio").mkdir()
    env = {**os.environ, "MUSICRECALL_SHARED": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "from musicrecall.audio import resolve_source; print(resolve_source())"],
                         env=env, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == ("shared" if with_audio else "world")


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world("tiny", seed=0)


@pytest.fixture(scope="module")
def world_set(world, tmp_path_factory) -> S.AudioSet:
    folder = tmp_path_factory.mktemp("world-audio")
    return S.world_audio(world, n_vocal=2, n_instrumental=4, song_seconds=30.0, instrumental_seconds=8.0, cfg=CFG,
                         folder=folder)


def test_world_set_files_and_truth(world, world_set) -> None:
    aset = world_set
    assert aset.source == "world" and len(aset.songs) == 2 and len(aset.excerpts) == 4
    clusters = world.truth["song_style"]["pref_cluster"].to_numpy()
    for path, sid in zip(aset.songs, aset.details["vocal_song_ids"], strict=True):
        y, sr = sf.read(path, dtype="float32")
        assert sr == 16_000 and len(y) == 30 * sr
        # the file is the renderer's output (16-bit FLAC: within one quantisation step)
        assert np.abs(y - render_audio(world, sid, seconds=30.0, sr=sr)).max() < 2.0 / 32768
        assert clusters[sid] % len(LANGUAGES) != INSTRUMENTAL
        assert np.allclose(aset.voiced[str(path)], np.array(vocal_sections(world, sid, 30.0)))
        lab = V.vocal_labels(np.arange(0.0, 26.0 + 1e-9, 2.0), 4.0, aset.voiced[str(path)])
        assert (lab == 1).sum() >= 5 and (lab == 0).sum() >= 3, path.name
        assert aset.style[str(path)] == "vocal song"
    genres = set()
    for path, sid in zip(aset.excerpts, aset.details["instrumental_song_ids"], strict=True):
        assert clusters[sid] % len(LANGUAGES) == INSTRUMENTAL and vocal_sections(world, sid) == []
        assert sf.info(str(path)).duration == pytest.approx(8.0)
        assert aset.style[str(path)] == GENRES[clusters[sid] // len(LANGUAGES)]
        genres.add(aset.style[str(path)])
    assert len(genres) == 3  # 4 songs spread over the 3 most instrumental genres
    assert aset.table().height == 6 and aset.label(aset.songs[0]).startswith("world_song_")


def test_world_set_is_cached_and_atomic(world, world_set) -> None:
    folder = world_set.songs[0].parent
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = S.world_audio(world, n_vocal=2, n_instrumental=4, song_seconds=30.0, instrumental_seconds=8.0, cfg=CFG,
                          folder=folder)
    assert again.files == world_set.files
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # nothing rewritten
    assert all(p.suffix == ".flac" and not p.name.startswith(".") for p in folder.iterdir())  # no temp files left
    longer = S.render_world_file(world, again.details["vocal_song_ids"][0], 31.0, folder=folder, kind="vocal")
    assert longer not in again.files and longer.exists()  # another length is another file


def _fake_corpus(aset: S.AudioSet, vocal_of) -> Corpus:
    """A corpus whose vocal attribute is ``vocal_of(file, starts)`` and other attributes are noise."""
    rng = np.random.default_rng(0)
    segs, starts, raw = {}, {}, []
    for p in aset.files:
        st = np.arange(0.0, 27.0, 2.0)
        a = rng.random((len(st), len(ATTRIBUTES)))
        a[:, ATTRIBUTES.index("vocal")] = vocal_of(p, st)
        segs[str(p)], starts[str(p)] = a, st
        raw.append(np.r_[a.mean(axis=0), rng.normal(size=70)])
    return Corpus([str(p) for p in aset.files], np.vstack(raw), segs, starts)


def test_checks_on_a_perfect_and_an_inverted_detector(world_set) -> None:
    aset = world_set

    def truth(p, st):
        if p in aset.excerpts:
            return np.zeros(len(st))
        return (V.vocal_labels(st, 4.0, aset.voiced[str(p)]) == 1).astype(float)

    table, pooled, s, y = V.vocal_auc_table(_fake_corpus(aset, truth), aset, 4.0)
    assert pooled == 1.0 and table["auc_vocal"].to_list() == [1.0, 1.0]
    files, file_auc, share, _ = V.instrumental_ranking(_fake_corpus(aset, truth), aset, s, y)
    assert file_auc == 1.0 and share == 1.0 and files.height == 6
    inverted = V.vocal_auc_table(_fake_corpus(aset, lambda p, st: 1.0 - truth(p, st)), aset, 4.0)[1]
    assert inverted == 0.0


def test_nn_style_check_finds_same_style_neighbours(world_set) -> None:
    aset = world_set
    style_code = {s: i for i, s in enumerate(sorted(set(aset.style.values())))}
    corpus = _fake_corpus(aset, lambda p, st: np.zeros(len(st)))
    corpus.raw[:] = 0.0  # embeddings: one direction per style
    for i, f in enumerate(corpus.files):
        corpus.raw[i, style_code[aset.style[f]]] = 1.0
    table, same, chance = V.nn_style_check(corpus, aset, k=2)
    singletons = sum(list(aset.style.values()).count(s) == 1 for s in set(aset.style.values()))
    assert same == pytest.approx(1.0 - singletons / len(aset.files)) and 0 < chance < same
    assert table.columns[:4] == ["file", "style", "nn1", "nn2"]


def test_notebook_runs_without_shared(tmp_path) -> None:
    """The default run on a machine without ``../shared``: notebook 05 at tiny with ``audio_source`` auto
    and ``MUSICRECALL_SHARED`` an empty folder falls back to the world source and says so."""
    empty, reports = tmp_path / "empty-shared", tmp_path / "reports"
    empty.mkdir()
    env = {**os.environ, "MUSICRECALL_SHARED": str(empty), "MUSICRECALL_REPORTS": str(reports)}
    cmd = [sys.executable, "-m", "musicrecall.report", "run", "--profile", "tiny", "--only", "05",
           "-p", "audio_source", "auto"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1800)
    run = json.loads((reports / "metrics.json").read_text())["notebooks"]["05_audio_features"]
    assert out.returncode == 0 and run["status"] == "ok", (run["error"], out.stdout[-2000:], out.stderr[-2000:])
    metrics = {m["name"]: m for rec in run["records"] for m in rec["metrics"]}
    assert metrics["audio_source_real"]["value"] == 0.0
    songs = [k for k in metrics if k.startswith("vocal_auc_world_song_")]
    assert len(songs) == 3
    for name in [*songs, "vocal_auc_pooled", "songs_over_excerpts_file_auc", "nn_same_style_share"]:
        assert "source=world" in metrics[name]["note"] and metrics[name]["world"] == "synthetic world audio"
    assert metrics["port_max_abs_tag_diff"]["value"] < 1e-3
    assert metrics["bad_file_errors"]["value"] == 2 and metrics["bad_file_warnings"]["value"] == 3
    # better than chance on the rendered voice and instrumental songs (a weak check, but one that can fail)
    assert metrics["vocal_auc_pooled"]["value"] > 0.5 and metrics["songs_over_excerpts_file_auc"]["value"] > 0.5
    html = (reports / "05_audio_features.html").read_text()
    assert "Audio source: <code>world</code>" in html and str(empty) not in html
    assert pl.DataFrame(run["records"][0]["metrics"]).height >= 10
