"""Segment-level audio attributes and the 84-dim song embedding of the talk's audio recall.

Each clip is cut into ``segment_s`` (4 s) segments every ``hop_s`` seconds; each segment gets the 14
attributes of :data:`ATTRIBUTES`; each attribute is summarised over the segments with max, min, mean,
variance, kurtosis and skewness (:data:`STATISTICS`): 14 x 6 = 84 numbers, standardised over a corpus
by :class:`EmbeddingScaler`.

Sources of the attributes (the table is repeated in notebook 05):

* the musicnn MagnaTagATune tagger (Pons & Serra 2019; :mod:`musicrecall.models.musicnn`), whose
  front/mid-end runs once per clip and whose back-end pools each segment's frames: tag groups give
  vocal, instrumental, male, female and four genre families;
* DSP descriptors on the same 16 kHz STFT / 96-band mel spectrogram: percussive share from
  median-filter HPSS (Fitzgerald 2010), brightness from the spectral centroid, tempo from the
  autocorrelation of the onset envelope (Ellis 2007), loudness from the mean energy;
* two heuristics: pure vocal = vocal x foreground share and vocal+accompaniment = vocal x (1 -
  foreground share), where the foreground share is the energy not explained by the median of the
  most similar frames of the same clip (REPET-SIM, Rafii & Pardo 2012).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import scipy.stats

from musicrecall.models import musicnn

ATTRIBUTES: tuple[str, ...] = (
    "vocal", "instrumental", "pure_vocal", "vocal_accompaniment", "male_vocal", "female_vocal",
    "genre_rock_metal", "genre_electronic_dance", "genre_classical", "genre_pop",
    "percussive_share", "brightness", "tempo", "loudness",
)  # fmt: skip
STATISTICS: tuple[str, ...] = ("max", "min", "mean", "var", "kurtosis", "skewness")
# tag groups of the 50 MagnaTagATune labels (a group's probability is the mean of its tags)
TAG_GROUPS: dict[str, tuple[str, ...]] = {
    "vocal": ("vocal", "vocals", "singing", "voice", "male vocal", "female vocal", "male voice",
              "female voice", "man", "woman", "male", "female"),
    "instrumental": ("no vocals", "no vocal", "no voice"),
    "male_vocal": ("male", "man", "male vocal", "male voice"),
    "female_vocal": ("female", "woman", "female vocal", "female voice"),
    "genre_rock_metal": ("rock", "metal"),
    "genre_electronic_dance": ("electronic", "techno", "dance", "beat", "beats", "synth"),
    "genre_classical": ("classical", "classic", "strings", "violin", "cello", "harpsichord"),
    "genre_pop": ("pop",),
}
ATTRIBUTE_SOURCES: dict[str, str] = {
    **{k: "musicnn tags: mean of " + ", ".join(v) for k, v in TAG_GROUPS.items()},
    "pure_vocal": "heuristic: vocal x REPET-SIM foreground share",
    "vocal_accompaniment": "heuristic: vocal x (1 - REPET-SIM foreground share)",
    "percussive_share": "DSP: percussive / (harmonic + percussive) energy, median-filter HPSS on the mel spectrogram",
    "brightness": "DSP: spectral centroid / 8 kHz",
    "tempo": "DSP: onset-envelope autocorrelation peak in 60-200 bpm, bpm / 200",
    "loudness": "DSP: mean energy in dBFS, (dB + 80) / 80",
}
FPS = musicnn.SR / musicnn.HOP  # 62.5 frames per second


@dataclass(frozen=True)
class AudioConfig:
    """Segmenting and analysis settings (part of every cache key)."""

    sr: int = musicnn.SR
    segment_s: float = 4.0
    hop_s: float = 4.0
    hpss_kernel: int = 9
    repet_k: int = 10  # similar frames whose median is the repeating background
    repet_pool: int = 4  # frames pooled before REPET-SIM (keeps the similarity matrix small)
    max_seconds: float | None = None  # analyse only the first max_seconds of each file (None: all)

    @property
    def segment_frames(self) -> int:
        return int(round(self.segment_s * FPS))

    @property
    def hop_frames(self) -> int:
        return max(1, int(round(self.hop_s * FPS)))

    def key(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def get_tagger() -> musicnn.MusiCNN:
    """The MTT musicnn tagger, loaded once per process."""
    return musicnn.MusiCNN.from_checkpoint()


@lru_cache(maxsize=4)
def _mel_basis(sr: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=musicnn.N_FFT, n_mels=musicnn.N_MELS).astype(np.float32)


def _seg_mean(per_frame: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Mean of a per-frame series over each segment, via a cumulative sum (vectorised)."""
    cs = np.concatenate([[0.0], np.cumsum(per_frame, dtype=np.float64)])
    return (cs[starts + length] - cs[starts]) / length


def segment_starts(n_frames: int, cfg: AudioConfig) -> np.ndarray:
    """First frame of every segment: every ``hop_frames`` while a whole segment fits (at least one)."""
    return np.arange(0, max(n_frames - cfg.segment_frames, 0) + 1, cfg.hop_frames)


def median_along(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Running median of odd ``size`` along ``axis`` with half-sample symmetric edges: equal to
    ``scipy.ndimage.median_filter`` with a 1-D ``size`` and ``mode="reflect"``, about twice as fast."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (size // 2, size // 2)
    win = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="symmetric"), size, axis=axis)
    return np.partition(win, size // 2, axis=-1)[..., size // 2]


def repeat_pad(y: np.ndarray, n: int) -> np.ndarray:
    """Repeat a clip until it has ``n`` samples (musicnn's ``pad_short = repeat-pad``)."""
    return y if len(y) >= n else np.tile(y, int(np.ceil(n / len(y))))[:n]


def _foreground_share(mel: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Per-frame REPET-SIM foreground share (Rafii & Pardo 2012) of a mel power spectrogram (96, T)."""
    t = mel.shape[1]
    p = cfg.repet_pool
    n = int(np.ceil(t / p))
    pooled = np.pad(mel, ((0, 0), (0, n * p - t)), mode="edge").reshape(mel.shape[0], n, p).mean(axis=2)
    mag = np.sqrt(pooled)
    unit = mag / (np.linalg.norm(mag, axis=0, keepdims=True) + 1e-9)
    sim = unit.T @ unit
    np.fill_diagonal(sim, -np.inf)
    k = min(cfg.repet_k, n - 1)
    if k < 1:
        return np.zeros(t)
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # (n, k) most similar other frames
    background = np.minimum(np.median(mag[:, nn], axis=2), mag)
    share = 1.0 - (background ** 2).sum(axis=0) / ((mag ** 2).sum(axis=0) + 1e-12)
    return np.repeat(share, p)[:t]


def _tempo(onset: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """bpm / 200 of each segment: the autocorrelation peak of its onset envelope in 60-200 bpm."""
    win = onset[starts[:, None] + np.arange(length)[None, :]]
    win = win - win.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(win, n=2 * length, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :length]
    lo, hi = int(np.floor(FPS * 60 / 200)), int(np.ceil(FPS * 60 / 60))
    lag = lo + np.argmax(ac[:, lo:hi + 1], axis=1)
    return (60.0 * FPS / lag) / 200.0


def segment_attributes(y: np.ndarray, cfg: AudioConfig | None = None,
                       tagger: musicnn.MusiCNN | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(attributes (S, 14), tag probabilities (S, 50), segment start seconds (S,))`` of mono audio at
    ``cfg.sr``. Clips shorter than one segment are repeat-padded."""
    import librosa
    import torch

    cfg = cfg or AudioConfig()
    tagger = tagger or get_tagger()
    y = repeat_pad(np.asarray(y, dtype=np.float32), int(cfg.segment_s * cfg.sr))
    power = np.abs(librosa.stft(y, n_fft=musicnn.N_FFT, hop_length=musicnn.HOP, pad_mode="constant")) ** 2
    mel = _mel_basis(cfg.sr) @ power  # (96, T)
    log_mel = musicnn.log_mel(mel)
    n_frames, length = mel.shape[1], cfg.segment_frames
    starts = segment_starts(n_frames, cfg)
    with torch.inference_mode():
        feats = tagger.frame_features(torch.from_numpy(log_mel.T[None].copy()))[0]
        tags = tagger.pool_segments(feats, starts, length).numpy().astype(np.float64)
    idx = {name: i for i, name in enumerate(musicnn.MTT_LABELS)}
    group = {g: tags[:, [idx[t] for t in names]].mean(axis=1) for g, names in TAG_GROUPS.items()}
    # DSP on the same spectrogram
    harm = median_along(mel, cfg.hpss_kernel, axis=1)
    perc = median_along(mel, cfg.hpss_kernel, axis=0)
    perc_share = _seg_mean(perc.sum(axis=0), starts, length) / (
        _seg_mean(harm.sum(axis=0) + perc.sum(axis=0), starts, length) + 1e-12)
    freqs = np.linspace(0.0, cfg.sr / 2, power.shape[0])
    energy = power.sum(axis=0)
    centroid = (freqs @ power) / (energy + 1e-12)
    brightness = _seg_mean(centroid * (energy > 1e-8), starts, length) / (cfg.sr / 2)
    mean_sq = _seg_mean(energy, starts, length) * 2.0 / (musicnn.N_FFT * np.sum(np.hanning(musicnn.N_FFT) ** 2))
    loudness = np.clip((10.0 * np.log10(mean_sq + 1e-10) + 80.0) / 80.0, 0.0, None)
    onset = np.concatenate([[0.0], np.maximum(np.diff(log_mel, axis=1), 0.0).mean(axis=0)])
    tempo = _tempo(onset, starts, length)
    fg = _seg_mean(_foreground_share(mel, cfg), starts, length)
    attrs = np.column_stack([
        group["vocal"], group["instrumental"], group["vocal"] * fg, group["vocal"] * (1.0 - fg),
        group["male_vocal"], group["female_vocal"], group["genre_rock_metal"], group["genre_electronic_dance"],
        group["genre_classical"], group["genre_pop"], perc_share, brightness, tempo, loudness,
    ])
    return attrs, tags, starts / FPS


def segment_statistics(attrs: np.ndarray) -> np.ndarray:
    """The 84 statistics (attribute-major: 14 x [max, min, mean, var, kurtosis, skewness]) of ``(S, 14)``.

    Kurtosis is Fisher's (normal = 0) and both moments are the biased estimators; an attribute that is
    constant over the segments has kurtosis and skewness 0.
    """
    attrs = np.asarray(attrs, dtype=np.float64)
    mean = attrs.mean(axis=0)
    var = attrs.var(axis=0)
    flat = var <= 1e-10 * np.maximum(1.0, mean ** 2)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant attributes are zeroed below
        kurt = np.where(flat, 0.0, scipy.stats.kurtosis(attrs, axis=0, fisher=True, bias=True))
        skew = np.where(flat, 0.0, scipy.stats.skew(attrs, axis=0, bias=True))
    stats = np.stack([attrs.max(axis=0), attrs.min(axis=0), mean, var, kurt, skew], axis=1)
    return stats.reshape(-1)


def embedding_names() -> list[str]:
    """Names of the 84 dimensions, in :func:`segment_statistics` order."""
    return [f"{a}_{s}" for a in ATTRIBUTES for s in STATISTICS]


def check_finite(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as an array; a ValueError naming the rows when any value is NaN or inf (one bad file must
    never turn a whole corpus into NaN through a mean, a standard deviation or a search)."""
    x = np.asarray(x)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.nonzero(bad.reshape(len(x), -1).any(axis=1))[0]
        raise ValueError(f"{what}: {len(rows)} of {len(x)} rows hold NaN or inf (rows {rows[:10].tolist()}"
                         f"{' ...' if len(rows) > 10 else ''}); drop them first (embed_files reports such files as errors)")
    return x


@dataclass
class EmbeddingScaler:
    """Standardise embeddings with a corpus' mean and standard deviation (constant dims -> 0).
    Non-finite input is refused (:func:`check_finite`)."""

    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> EmbeddingScaler:
        x = check_finite(x, "EmbeddingScaler.fit")
        self.mean = x.mean(axis=0)
        sd = x.std(axis=0)
        self.std = np.where(sd > 1e-9, sd, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise RuntimeError("fit the scaler first")
        x = check_finite(x, "EmbeddingScaler.transform")
        return ((x - self.mean) / self.std).astype(np.float32)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)
