"""Tests of the procedural song audio and its vocal-section truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import signal

from musicrecall.world import World, generate_world, render_audio, vocal_sections
from musicrecall.world.profiles import LANGUAGES

SR = 22050


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world("tiny", seed=3)


def _songs(world: World, vocal: bool, k: int) -> list[int]:
    instr = LANGUAGES.index("instrumental")
    lang = pl.col("pref_cluster") % len(LANGUAGES)
    cond = (lang != instr) if vocal else (lang == instr)
    return world.truth["song_style"].filter(cond)["song_id"].head(k).to_list()


def test_deterministic_finite_in_range(world: World) -> None:
    y = render_audio(world, 5)
    assert y.dtype == np.float32 and y.shape == (30 * SR,)
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0 and y.std() > 0.01
    assert np.array_equal(y, render_audio(world, 5))
    assert not np.array_equal(y, render_audio(world, 6))
    assert render_audio(world, 5, seconds=2.0, sr=16000).shape == (32000,)
    with pytest.raises(ValueError):
        render_audio(world, world.config.n_songs)


def test_styles_sound_different(world: World) -> None:
    """Songs with different timbre dims have different spectra (audio carries the latent style)."""
    spec = []
    for s in range(6):
        _, p = signal.welch(render_audio(world, s, seconds=8.0), fs=SR, nperseg=2048)
        spec.append(np.log(p + 1e-12))
    d = [np.abs(spec[i] - spec[j]).mean() for i in range(6) for j in range(i + 1, 6)]
    assert min(d) > 0.1


def _band_energy(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f, t, z = signal.stft(y, fs=SR, nperseg=1024)
    band = (f >= 300) & (f <= 3400)
    return t, (np.abs(z[band]) ** 2).sum(axis=0)


def test_vocal_sections_have_voice_band_energy(world: World) -> None:
    for sid in _songs(world, vocal=True, k=4):
        secs = vocal_sections(world, sid)
        assert secs and all(0 <= a < b <= 30.0 for a, b in secs)
        assert secs[0][0] > 0  # instrumental intro
        t, e = _band_energy(render_audio(world, sid))
        inside = np.zeros(len(t), dtype=bool)
        for a, b in secs:
            inside |= (t >= a + 0.2) & (t <= b - 0.2)
        outside = ~np.zeros(len(t), dtype=bool)
        for a, b in secs:
            outside &= (t < a - 0.2) | (t > b + 0.2)
        assert e[inside].mean() > 1.5 * e[outside].mean(), sid


def test_instrumental_songs_have_no_vocals(world: World) -> None:
    for sid in _songs(world, vocal=False, k=3):
        assert vocal_sections(world, sid) == []
