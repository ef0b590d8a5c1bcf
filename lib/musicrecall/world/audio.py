"""Procedural audio for a song from its latent style (for audio-embedding recall experiments).

The clip follows the song's style: tempo/energy/brightness/vocalness come from the "feel" dims
(4-7), harmonic timbre (partial weights, odd/even balance, detune, tremolo) from the "timbre" dims
(0-3). Non-instrumental songs get a voice-like component (formant-filtered vibrato tone with a syllable
envelope) only in verse/chorus sections, so vocal-segment detection has a ground truth:
:func:`vocal_sections`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

from .profiles import INSTRUMENTAL, LANGUAGES

if TYPE_CHECKING:
    from .core import World

_TABLE = 2048
_PROGRESSIONS = np.array([[0, 5, 7, 0], [0, 9, 5, 7], [0, 7, 9, 5], [9, 5, 0, 7], [0, 3, 5, 7]])
_VOWELS = np.array([[730, 1090], [270, 2290], [530, 1840], [570, 840], [440, 1020]], dtype=np.float64)
# section plan in bars after the intro: (bars, voiced)
_FORM = ((8, True), (2, False), (8, True), (4, False), (8, True), (2, False), (8, True))


@dataclass(frozen=True)
class _Plan:
    tempo: float  # bpm
    energy: float  # 0..1
    brightness: float  # 0..1
    vocal: bool
    timbre: np.ndarray  # 4 dims
    root_midi: int
    progression: np.ndarray
    intro_bars: int
    seed: tuple[int, ...]


def _sig(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _plan(world: World, song_id: int) -> _Plan:
    styles = world.truth["song_style"]
    if not 0 <= song_id < styles.height:
        raise ValueError(f"song_id {song_id} not in the catalogue (0..{styles.height - 1})")
    row = styles.row(song_id, named=True)
    assert row["song_id"] == song_id
    style = np.array([row[f"style_{d}"] for d in range(8)], dtype=np.float64)
    seed = (world.config.seed, 1000, song_id)
    rng = np.random.default_rng(seed)
    return _Plan(
        tempo=60.0 + 120.0 * _sig(style[4]),
        energy=_sig(style[5]),
        brightness=_sig(style[6]),
        vocal=int(row["pref_cluster"]) % len(LANGUAGES) != INSTRUMENTAL,
        timbre=style[:4],
        root_midi=int(rng.integers(45, 57)),
        progression=_PROGRESSIONS[rng.integers(0, len(_PROGRESSIONS))],
        intro_bars=int(rng.integers(2, 5)),
        seed=seed,
    )


def _sections(plan: _Plan, seconds: float) -> list[tuple[float, float]]:
    bar = 4 * 60.0 / plan.tempo
    out, t = [], plan.intro_bars * bar
    i = 0
    while t < seconds:
        bars, voiced = _FORM[i % len(_FORM)]
        if voiced and plan.vocal:
            out.append((t, min(t + bars * bar, seconds)))
        t += bars * bar
        i += 1
    return out


def vocal_sections(world: World, song_id: int, seconds: float = 30.0) -> list[tuple[float, float]]:
    """Truth: the ``(start_s, end_s)`` intervals of the first ``seconds`` where the voice sings."""
    return _sections(_plan(world, song_id), seconds)


def _wavetable(timbre: np.ndarray, brightness: float) -> np.ndarray:
    """One cycle of the instrument: partial weights from the timbre dims."""
    h = np.arange(1, 13)
    decay = 0.25 + 0.6 * _sig(timbre[0]) - 0.3 * brightness
    amp = np.exp(-decay * (h - 1)) * np.where(h % 2 == 0, _sig(timbre[1]) * 1.5, 1.0)
    phase = np.linspace(0.0, 2 * np.pi, _TABLE, endpoint=False)
    tab = (amp[:, None] * np.sin(h[:, None] * phase[None, :])).sum(axis=0)
    return tab / np.abs(tab).max()


def _osc(table: np.ndarray, freq: np.ndarray, sr: int) -> np.ndarray:
    phase = np.cumsum(freq / sr)
    return table[((phase % 1.0) * _TABLE).astype(np.int64)]


def render_audio(world: World, song_id: int, seconds: float = 30.0, sr: int = 22050) -> np.ndarray:
    """Render ``seconds`` of mono float32 audio in [-1, 1] for a song (deterministic per seed and song)."""
    plan = _plan(world, song_id)
    rng = np.random.default_rng((*plan.seed, sr, int(seconds * 1000)))
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    beat = 60.0 / plan.tempo
    bar = 4 * beat
    # harmony: chord per 2 bars, three chord tones through the song's wavetable (+ detune, tremolo)
    chord_i = (t // (2 * bar)).astype(np.int64) % len(plan.progression)
    root = plan.root_midi + plan.progression[chord_i]
    table = _wavetable(plan.timbre, plan.brightness)
    detune = 1.0 + 0.004 * _sig(plan.timbre[2])
    harm = np.zeros(n)
    for k, interval in enumerate((0, 4, 7)):  # 3 oscillators, not a per-sample loop
        f = 440.0 * 2.0 ** ((root + interval - 69) / 12.0) * (detune if k == 1 else 1.0)
        harm += _osc(table, f, sr)
    harm *= 1.0 + 0.3 * _sig(plan.timbre[3]) * np.sin(2 * np.pi * 4.0 * t)
    # percussion: kick on each beat, noise hat on off-beats, strength from energy
    tb = t % beat
    kick = np.sin(2 * np.pi * (50.0 + 80.0 * np.exp(-tb / 0.03)) * tb) * np.exp(-tb / 0.08)
    toff = (t + beat / 2) % beat
    hat = rng.standard_normal(n) * np.exp(-toff / 0.02)
    hat = signal.lfilter([1.0, -1.0], [1.0], hat)  # crude high-pass: hats are bright
    perc = plan.energy * (0.8 * kick + 0.25 * plan.brightness * hat)
    mix = 0.3 * harm / 3.0 + 0.5 * perc
    # voice: vibrato tone, syllable envelope, two vowel formants; only inside vocal sections
    if plan.vocal:
        gate = np.zeros(n)
        for a, b in _sections(plan, seconds):
            i0, i1 = int(a * sr), int(b * sr)
            ramp = np.minimum(
                1.0, np.minimum(np.arange(i1 - i0) + 1, i1 - i0 - np.arange(i1 - i0)) / (0.05 * sr)
            )
            gate[i0:i1] = ramp
        syl = t / (beat / 2)  # two syllables per beat
        syl_i = syl.astype(np.int64)
        melody = np.array([0, 2, 4, 7, 9, 12, 7, 4])[rng.integers(0, 8, syl_i.max() + 1)][syl_i]
        f0 = 440.0 * 2.0 ** ((plan.root_midi + 12 + melody - 69) / 12.0)
        f0 *= 2.0 ** (0.5 / 12 * np.sin(2 * np.pi * 5.5 * t))
        src = _osc(np.linspace(1.0, -1.0, _TABLE), f0, sr)  # sawtooth source
        env = np.sin(np.pi * (syl % 1.0)) ** 2
        voice = np.zeros(n)
        for fc in _VOWELS[plan.seed[2] % len(_VOWELS)]:  # the song's vowel: two formant band-passes
            sos = signal.butter(2, [fc * 0.8, fc * 1.25], btype="bandpass", fs=sr, output="sos")
            voice += signal.sosfilt(sos, src)
        mix = mix + 0.9 * voice * env * gate
    mix += 0.003 * rng.standard_normal(n)
    return (0.9 * mix / max(np.abs(mix).max(), 1e-9)).astype(np.float32)
