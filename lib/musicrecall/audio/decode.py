"""Decoding with per-file issues: wav/ogg/opus/mp3/flac through soundfile (libsndfile >= 1.1), other
containers through librosa's audioread fallback; resampled (soxr) to one rate, mixed to mono.

Bad files never stop a run: :func:`load_audio` raises :class:`AudioDecodeError` for files that cannot
give features (corrupt, empty, silent, constant, non-finite or out-of-range samples, nothing decodable
before a cut) and returns :class:`AudioIssue` warnings for files that can (truncated, shorter than one
segment, odd sample rate, clipped, DC offset).

Only what is analysed is decoded: with ``max_seconds`` the decoder stops after that many seconds (the
throughput of long files is bounded by the part used, not the file's length). Truncation is still
checked for the whole file, per container, without decoding it all:

* WAV/AIFF: the header announces more data than the file holds (libsndfile's log says "should be");
* FLAC/MP3 (and any format with a declared frame count): the stream ends, or the decoder loses sync,
  before the announced number of frames (a short read at the announced end);
* Ogg (Vorbis, Opus): the page structure is walked (headers only): a page cut short, or a stream
  whose last page lacks the end-of-stream flag, is a cut file. Ogg has no declared length, and
  libsndfile derives its frame count from the last page it finds, so the length test cannot see it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".ogg", ".oga", ".opus", ".mp3", ".flac", ".aiff", ".aif")
COMMON_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
SILENCE_RMS = 1e-4  # about -80 dBFS
MAX_PEAK = 2.0  # float samples beyond +-2 (6 dB over full scale) are not audio in [-1, 1]: e.g. int16 values
DC_OFFSET = 0.01  # a mean above -40 dBFS is a DC offset (music is centred within ~1e-3)
_BLOCK = 1 << 16  # frames per read: a decoder that fails mid-file keeps what it decoded
_MARGIN_S = 0.25  # extra seconds decoded past max_seconds, so resampling does not see an edge


@dataclass(frozen=True)
class AudioIssue:
    """One problem with one path: ``level`` is ``"error"`` (no features), ``"warning"`` (features
    computed) or ``"skipped"`` (not an audio file, or beyond a limit: not analysed)."""

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


def ogg_truncation(path: str | Path) -> str | None:
    """Why an Ogg file is cut (a page runs past the end of the file, or the last page lacks the
    end-of-stream flag), or None. Reads page headers only (RFC 3533 section 6)."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos, n, last_flags, pages = 0, len(data), None, 0
    while pos < n:
        if data[pos:pos + 4] != b"OggS":
            return f"no Ogg page at byte {pos} of {n} (garbage, or a cut inside a page)"
        if pos + 27 > n:
            return f"Ogg page header at byte {pos} cut by the end of the file ({n} bytes)"
        n_seg = data[pos + 26]
        if pos + 27 + n_seg > n:
            return f"Ogg page header at byte {pos} cut by the end of the file ({n} bytes)"
        body = sum(data[pos + 27:pos + 27 + n_seg])
        end = pos + 27 + n_seg + body
        if end > n:
            return f"Ogg page {pages} at byte {pos} needs {end - n} bytes more than the file holds"
        last_flags, pos, pages = data[pos + 5], end, pages + 1
    if last_flags is None:
        return "no Ogg page"
    if not last_flags & 0x04:
        return f"the last of {pages} Ogg pages has no end-of-stream flag: the file stops mid-stream"
    return None


def _read(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int, str | None]:
    """(samples (n, channels) float32, sample rate, a truncation note or None); decodes at most
    ``max_seconds`` (plus a small margin) and checks the rest of the file for truncation."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as fh:
            native, declared = int(fh.samplerate), int(fh.frames)
            want = declared if declared > 0 else None
            if max_seconds is not None:
                cap = int(math.ceil((max_seconds + _MARGIN_S) * native))
                want = cap if want is None else min(want, cap)
            blocks, got, note = [], 0, None
            # a known length is read block by block into one array (no per-block copies to join)
            buf = np.empty((want, fh.channels), dtype=np.float32) if want is not None else None
            try:
                while want is None or got < want:
                    n = _BLOCK if want is None else min(_BLOCK, want - got)
                    block = fh.read(n, dtype="float32", always_2d=True,
                                    out=None if buf is None else buf[got:got + n])
                    if not len(block):
                        break
                    if buf is None:
                        blocks.append(block)
                    got += len(block)
                    if len(block) < n:  # the stream ended early (a short read)
                        break
            except (sf.LibsndfileError, RuntimeError) as err:
                if got == 0:
                    raise
                note = f"decoder stopped after {got} of {declared} announced frames ({err})"
            if buf is not None:
                data = buf[:got]
            else:
                data = np.concatenate(blocks) if blocks else np.zeros((0, fh.channels), dtype=np.float32)
            # an MP3 without a Xing/LAME header announces an estimate (off by a few tenths of a second)
            end = int(declared * (0.99 if fh.format == "MP3" else 1.0))
            if note is None and "should be" in fh.extra_info:
                note = "header announces more data than the file holds"
            elif note is None and fh.format == "OGG":
                # Ogg declares no length: libsndfile's count comes from the last granule position, which
                # can exceed the decodable samples by a few frames in intact files; the pages tell
                note = ogg_truncation(path)
            elif note is None and declared > 0 and want == declared and got < end:
                note = f"decoded {got} of {declared} announced frames"
            elif note is None and declared > 0 and got < end:
                note = _short_tail(fh, end, declared)
            return data, native, note
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_err:
        if _is_ogg(path) and (why := ogg_truncation(path)):  # cut before the first audio page
            raise AudioDecodeError(AudioIssue(str(path), "error", "truncated",
                                              f"{why}; nothing decodable: {sf_err}")) from sf_err
        try:  # containers libsndfile does not read (e.g. m4a) go through audioread
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=False, duration=max_seconds)
            y = np.atleast_2d(y).T.astype(np.float32)
            return y, int(sr), None
        except Exception as err:  # noqa: BLE001 - every decoder failure is one per-file error
            raise AudioDecodeError(AudioIssue(str(path), "error", "undecodable",
                                              f"soundfile: {sf_err}; audioread: {type(err).__name__}: {err}")) from err


def _is_ogg(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"OggS"


def _short_tail(fh, end: int, declared: int, n: int = 2048) -> str | None:
    """After a partial decode: read the ``n`` frames before frame ``end`` (the announced length, less a
    tolerance for estimates); a short read (or a failed seek or decode there) means the stream ends
    before its announced length."""
    import soundfile as sf

    start = max(0, end - n)
    try:
        fh.seek(start)
        tail = fh.read(end - start, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        return f"the stream cannot be read near its announced end ({declared} frames): {err}"
    if len(tail) < end - start:
        return f"the stream ends before its announced {declared} frames"
    return None


def _mix_mono(data: np.ndarray) -> np.ndarray:
    """The mean over channels of ``(n, channels)`` samples, bit for bit ``data.mean(axis=1)`` (a float32
    sum channel by channel, then one division) but without numpy's slow reduction over a short axis
    (about 0.1 s for 120 s of stereo)."""
    y = data[:, 0].copy()
    for c in range(1, data.shape[1]):
        y += data[:, c]
    if data.shape[1] > 1:
        y /= np.float32(data.shape[1])
    return y


def load_audio(path: str | Path, sr: int = 16_000, min_seconds: float = 4.0,
               max_seconds: float | None = None) -> tuple[np.ndarray, list[AudioIssue]]:
    """Mono float32 samples at ``sr`` (at most the first ``max_seconds``) and the file's warnings;
    raises :class:`AudioDecodeError`."""
    import librosa

    path = Path(path)
    name = str(path)
    if not path.exists() or path.stat().st_size == 0:
        raise AudioDecodeError(AudioIssue(name, "error", "empty", "file missing or 0 bytes"))
    data, native_sr, truncated = _read(path, max_seconds)
    issues = []
    if data.shape[0] == 0:
        kind = "truncated" if truncated else "empty"
        raise AudioDecodeError(AudioIssue(name, "error", kind, f"no audio frames decoded{'; ' + truncated if truncated else ''}"))
    if not np.isfinite(data).all():
        raise AudioDecodeError(AudioIssue(name, "error", "non_finite", "NaN or inf samples"))
    peak = float(np.abs(data).max())
    if peak > MAX_PEAK:
        raise AudioDecodeError(AudioIssue(name, "error", "out_of_range",
                                          f"peak |sample| {peak:.4g} where full scale is 1 (integer-scale values "
                                          f"stored as float?): rescale the file"))
    if truncated:
        issues.append(AudioIssue(name, "warning", "truncated", f"{truncated}; {data.shape[0] / native_sr:.2f} s decoded"))
    y = _mix_mono(data)
    if max_seconds is not None:
        y = y[: int(math.ceil((max_seconds + _MARGIN_S) * native_sr))]
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms < SILENCE_RMS:
        raise AudioDecodeError(AudioIssue(name, "error", "silent", f"RMS {rms:.1e} below {SILENCE_RMS:.0e}"))
    dc = float(np.mean(y, dtype=np.float64))
    ac = float(np.sqrt(max(rms ** 2 - dc ** 2, 0.0)))
    if ac < SILENCE_RMS:
        raise AudioDecodeError(AudioIssue(name, "error", "constant",
                                          f"constant signal at {dc:+.4g} (variation RMS {ac:.1e}): no audio content"))
    if abs(dc) > DC_OFFSET:  # a DC offset biases loudness and the lowest bands: removed, and said so
        issues.append(AudioIssue(name, "warning", "dc_offset", f"mean {dc:+.4g} (above {DC_OFFSET:g}) removed"))
        y = y - np.float32(dc)
    if native_sr not in COMMON_RATES:
        issues.append(AudioIssue(name, "warning", "odd_sample_rate", f"{native_sr} Hz resampled to {sr} Hz"))
    elif native_sr < sr:
        issues.append(AudioIssue(name, "warning", "low_sample_rate",
                                 f"{native_sr} Hz upsampled to {sr} Hz: no content above {native_sr // 2} Hz"))
    if native_sr != sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    if max_seconds is not None:
        y = y[: int(max_seconds * sr)]
    if np.mean(np.abs(y) >= 0.999) > 0.01:
        issues.append(AudioIssue(name, "warning", "clipped", "more than 1% of samples at full scale"))
    seconds = len(y) / sr
    if seconds < min_seconds:
        issues.append(AudioIssue(name, "warning", "too_short",
                                 f"{seconds:.2f} s < one {min_seconds:g} s segment: repeat-padded"))
    return y.astype(np.float32), issues
