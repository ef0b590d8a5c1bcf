"""Decoding with per-file issues: wav/ogg/opus/mp3/flac through soundfile (libsndfile >= 1.1), other
containers through librosa's audioread fallback; resampled (soxr) to one rate, mixed to mono.

Bad files never stop a run: :func:`load_audio` raises :class:`AudioDecodeError` for files that cannot
give features (corrupt, empty, silent, non-finite samples) and returns :class:`AudioIssue` warnings for
files that can (truncated, shorter than one segment, odd sample rate, clipped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".ogg", ".oga", ".opus", ".mp3", ".flac", ".aiff", ".aif")
COMMON_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
SILENCE_RMS = 1e-4  # about -80 dBFS


@dataclass(frozen=True)
class AudioIssue:
    """One problem with one file: ``level`` is ``"error"`` (no features) or ``"warning"``."""

    file: str
    level: str
    kind: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class AudioDecodeError(RuntimeError):
    """A file that cannot give features; ``issue`` says why."""

    def __init__(self, issue: AudioIssue) -> None:
        super().__init__(f"{issue.file}: {issue.kind}: {issue.message}")
        self.issue = issue


def _read(path: Path) -> tuple[np.ndarray, int, str | None]:
    """(samples (n, channels) float32, sample rate, a truncation note or None).

    libsndfile silently shortens a stream whose header announces more data than the file holds; its
    log (``extra_info``) then says "(should be N)", and a stream that ends mid-frame reads fewer
    frames than announced: both count as truncated.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as fh:
            data = fh.read(dtype="float32", always_2d=True)
            note = None
            if "should be" in fh.extra_info:
                note = "header announces more data than the file holds"
            elif fh.frames > 0 and data.shape[0] < 0.99 * fh.frames:
                note = f"decoded {data.shape[0]} of {fh.frames} announced frames"
            return data, int(fh.samplerate), note
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_err:
        try:  # containers libsndfile does not read (e.g. m4a) go through audioread
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=False)
            y = np.atleast_2d(y).T.astype(np.float32)
            return y, int(sr), None
        except Exception as err:  # noqa: BLE001 - every decoder failure is one per-file error
            raise AudioDecodeError(AudioIssue(str(path), "error", "undecodable",
                                              f"soundfile: {sf_err}; audioread: {type(err).__name__}: {err}")) from err


def load_audio(path: str | Path, sr: int = 16_000, min_seconds: float = 4.0) -> tuple[np.ndarray, list[AudioIssue]]:
    """Mono float32 samples at ``sr`` and the file's warnings; raises :class:`AudioDecodeError`."""
    import librosa

    path = Path(path)
    name = str(path)
    if not path.exists() or path.stat().st_size == 0:
        raise AudioDecodeError(AudioIssue(name, "error", "empty", "file missing or 0 bytes"))
    data, native_sr, truncated = _read(path)
    issues = []
    if data.shape[0] == 0:
        raise AudioDecodeError(AudioIssue(name, "error", "empty", "no audio frames decoded"))
    if not np.isfinite(data).all():
        raise AudioDecodeError(AudioIssue(name, "error", "non_finite", "NaN or inf samples"))
    if truncated:
        issues.append(AudioIssue(name, "warning", "truncated", f"{truncated}; {data.shape[0] / native_sr:.2f} s used"))
    y = data.mean(axis=1)
    if native_sr not in COMMON_RATES:
        issues.append(AudioIssue(name, "warning", "odd_sample_rate", f"{native_sr} Hz resampled to {sr} Hz"))
    elif native_sr < sr:
        issues.append(AudioIssue(name, "warning", "low_sample_rate",
                                 f"{native_sr} Hz upsampled to {sr} Hz: no content above {native_sr // 2} Hz"))
    if native_sr != sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms < SILENCE_RMS:
        raise AudioDecodeError(AudioIssue(name, "error", "silent", f"RMS {rms:.1e} below {SILENCE_RMS:.0e}"))
    if np.mean(np.abs(y) >= 0.999) > 0.01:
        issues.append(AudioIssue(name, "warning", "clipped", "more than 1% of samples at full scale"))
    seconds = len(y) / sr
    if seconds < min_seconds:
        issues.append(AudioIssue(name, "warning", "too_short",
                                 f"{seconds:.2f} s < one {min_seconds:g} s segment: repeat-padded"))
    return y.astype(np.float32), issues
