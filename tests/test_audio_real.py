"""Validation on the shared real audio (fails, never skips, when ../shared/audio is missing)."""

from __future__ import annotations

import numpy as np
import pytest

from musicrecall.audio import ATTRIBUTES, AudioConfig, embed_files
from musicrecall.audio.validation import auc, read_lines, vocal_labels
from musicrecall.config import SHARED_DIR

AUDIO = SHARED_DIR / "audio"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    assert AUDIO.is_dir(), f"shared audio missing at {AUDIO}"
    songs, excerpts = sorted(AUDIO.glob("songs/*.mp3")), sorted(AUDIO.glob("excerpts/*.ogg"))
    assert len(songs) == 3 and len(excerpts) >= 10
    cfg = AudioConfig(hop_s=2.0, max_seconds=90.0)
    return songs, excerpts, embed_files([*songs, *excerpts], cfg, cache_dir=tmp_path_factory.mktemp("audio-cache"))


def test_vocal_auc_on_lyric_lines(corpus):
    songs, _, c = corpus
    vi = ATTRIBUTES.index("vocal")
    for song in songs:
        lab = vocal_labels(c.starts[str(song)], 4.0, read_lines(song.with_suffix(".lines.csv")))
        keep = lab >= 0
        assert lab[keep].sum() >= 5 and (lab == 0).sum() >= 3
        assert auc(c.segments[str(song)][keep, vi], lab[keep]) >= 0.85, song.name


def test_instrumental_excerpts_rank_below_songs(corpus):
    songs, excerpts, c = corpus
    vi = ATTRIBUTES.index("vocal")
    mean_vocal = {str(f): c.segments[str(f)][:, vi].mean() for f in [*songs, *excerpts]}
    assert max(mean_vocal[str(e)] for e in excerpts) < min(mean_vocal[str(s)] for s in songs)
    ii = ATTRIBUTES.index("instrumental")
    inst = np.array([c.segments[str(e)][:, ii].mean() for e in excerpts])
    assert np.mean(inst > np.array([mean_vocal[str(e)] for e in excerpts])) >= 0.9
