"""Segmenting, statistics and DSP attributes on synthetic signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from musicrecall.audio import (
    ATTRIBUTES,
    AudioConfig,
    EmbeddingScaler,
    embedding_names,
    segment_attributes,
    segment_statistics,
)
from musicrecall.audio.features import FPS, _tempo, repeat_pad, segment_starts
from musicrecall.audio.validation import auc, vocal_labels

SR = 16_000


def test_segment_starts_cover_the_clip_with_the_configured_hop():
    cfg = AudioConfig(segment_s=4.0, hop_s=2.0)
    assert cfg.segment_frames == 250 and cfg.hop_frames == 125
    starts = segment_starts(1000, cfg)
    np.testing.assert_array_equal(starts, [0, 125, 250, 375, 500, 625, 750])
    assert starts[-1] + cfg.segment_frames <= 1000
    assert segment_starts(100, cfg).tolist() == [0]  # shorter than a segment: one (padded) segment


def test_repeat_pad_repeats_short_clips():
    y = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(y, 7), [0, 1, 2, 0, 1, 2, 0])
    assert repeat_pad(np.ones(10), 4).shape == (10,)


def test_summarize_known_statistics():
    a = np.column_stack([np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 0.5), np.array([0.0, 0.0, 0.0, 1.0])])
    s = segment_statistics(a).reshape(3, 6)  # attribute-major: max, min, mean, var, kurtosis, skewness
    np.testing.assert_allclose(s[0], [4, 1, 2.5, 1.25, -1.36, 0.0], atol=1e-12)
    np.testing.assert_allclose(s[1], [0.5, 0.5, 0.5, 0.0, 0.0, 0.0])  # constant: no NaN moments
    assert s[2, 5] == pytest.approx(scipy.stats.skew([0, 0, 0, 1.0]))
    assert s[2, 4] == pytest.approx(scipy.stats.kurtosis([0, 0, 0, 1.0]))


def test_embedding_is_84_dims_and_standardised():
    assert len(ATTRIBUTES) == 14 and len(embedding_names()) == 84
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (50, 84))
    x[:, 5] = 1.0
    z = EmbeddingScaler().fit_transform(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.delete(z.std(0), 5), 1, atol=1e-4)
    assert np.all(z[:, 5] == 0)


def test_tempo_of_a_click_envelope():
    onset = np.zeros(2000)
    onset[np.round(np.arange(0, 2000, FPS * 60 / 120)).astype(int)] = 1.0  # 120 bpm
    bpm = _tempo(onset, np.array([0, 500, 1000]), 250) * 200
    np.testing.assert_allclose(bpm, 120, rtol=0.03)


def test_dsp_attributes_of_sines():
    t = np.arange(8 * SR) / SR
    quiet = segment_attributes(0.1 * np.sin(2 * np.pi * 1000 * t), AudioConfig(hop_s=4.0))[0]
    loud = segment_attributes(0.8 * np.sin(2 * np.pi * 3000 * t), AudioConfig(hop_s=4.0))[0]
    assert quiet.shape == (2, 14)
    b, ld = ATTRIBUTES.index("brightness"), ATTRIBUTES.index("loudness")
    np.testing.assert_allclose(quiet[:, b], 1000 / 8000, rtol=0.05)
    np.testing.assert_allclose(loud[:, b], 3000 / 8000, rtol=0.05)
    expected = (20 * np.log10(0.1 / np.sqrt(2)) + 80) / 80
    np.testing.assert_allclose(quiet[:, ld], expected, atol=0.02)
    # a steady tone is harmonic: almost no percussive energy; clicks are percussive
    clicks = np.zeros(8 * SR)
    clicks[:: SR // 4] = 1.0
    perc = segment_attributes(clicks, AudioConfig(hop_s=4.0))[0][:, ATTRIBUTES.index("percussive_share")]
    assert quiet[:, ATTRIBUTES.index("percussive_share")].max() < 0.2 < 0.6 < perc.min()


def test_vocal_labels_and_auc():
    lines = np.array([[4.0, 8.0], [9.0, 10.0]])
    lab = vocal_labels(np.array([0.0, 4.0, 6.0, 8.0, 12.0]), 4.0, lines)
    np.testing.assert_array_equal(lab, [0, 1, 1, -1, 0])  # [8, 12) is covered 1 s of 4: ambiguous
    assert auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    assert np.isnan(auc(np.array([0.1]), np.array([1])))


def test_running_median_equals_scipy_median_filter():
    import scipy.ndimage as ndi

    from musicrecall.audio.features import median_along

    x = np.random.default_rng(0).random((12, 50)).astype(np.float32) ** 3
    for size in (3, 9):
        np.testing.assert_array_equal(median_along(x, size, 1), ndi.median_filter(x, size=(1, size), mode="reflect"))
        np.testing.assert_array_equal(median_along(x, size, 0), ndi.median_filter(x, size=(size, 1), mode="reflect"))


@pytest.mark.parametrize(("fmt", "subtype", "ext"), [("WAV", "PCM_16", "wav"), ("OGG", "VORBIS", "ogg"),
                                                     ("MP3", "MPEG_LAYER_III", "mp3"), ("FLAC", "PCM_16", "flac")])
def test_decoding_only_the_analysed_part_gives_the_same_samples(tmp_path, fmt, subtype, ext):
    """``max_seconds`` stops the decoder early; the samples are those of the whole decode, cut."""
    import soundfile as sf

    from musicrecall.audio import load_audio

    sr = 44_100
    t = np.arange(20 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))).astype(np.float32)
    path = tmp_path / f"long.{ext}"
    sf.write(path, y, sr, format=fmt, subtype=subtype)
    whole, w_issues = load_audio(path, SR)
    part, p_issues = load_audio(path, SR, max_seconds=6.0)
    assert len(part) == 6 * SR and not w_issues and not p_issues
    np.testing.assert_allclose(part, whole[: len(part)], atol=1e-4)
