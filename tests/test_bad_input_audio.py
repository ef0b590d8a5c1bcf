"""Bad-input corpus for audio (issue 16, item 3): every bad path in a folder is an issue that names the
file and the reason, and the good files of the same folder are embedded exactly as without it; no
non-finite value reaches the scaler or the index."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrecall.audio import AudioConfig, AudioIndex, EmbeddingScaler, embed_files, embed_folder

SR = 22_050


def _tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = 0.25 * np.sin(2 * np.pi * f0 * t) * (1 + 0.6 * np.sin(2 * np.pi * 1.5 * t))
    return (y + 0.03 * np.random.default_rng(seed).normal(size=len(t))).astype(np.float32)


def _cut(folder: Path, name: str, fmt: str, subtype: str, frac: float, sr: int = SR) -> Path:
    full = folder / f"_full_{name}"
    y = _tone(12.0, 330.0, 7)
    if sr != SR:
        import librosa

        y = librosa.resample(y, orig_sr=SR, target_sr=sr)
    sf.write(full, y, sr, format=fmt, subtype=subtype)
    data = full.read_bytes()
    full.unlink()
    path = folder / name
    path.write_bytes(data[: int(len(data) * frac)])
    return path


def _wav(folder: Path, name: str, y: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> Path:
    sf.write(folder / name, y, sr, subtype=subtype)
    return folder / name


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.mp3")
    return folder / "pipe.mp3"


def _link(folder: Path) -> Path:
    (folder / "gone.ogg").symlink_to(folder / "does_not_exist.ogg")
    return folder / "gone.ogg"


def _folder_link(folder: Path) -> Path:
    (folder / "elsewhere").symlink_to(folder.parent, target_is_directory=True)
    return folder / "elsewhere"


def _dir(folder: Path) -> Path:
    (folder / "album.wav").mkdir()
    return folder / "album.wav"


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return make


def _with(value_at: float) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        y = _tone(6.0, 440.0, 3)
        y[len(y) // 2] = value_at
        return _wav(folder, "holes.wav", y)
    return make


# case -> (builder, expected level, expected kind, words the message must contain)
CASES: dict[str, tuple[Callable[[Path], Path], str, str, str]] = {
    "float_wav_int16_scale": (lambda f: _wav(f, "int16_as_float.wav", _tone(6.0, 440.0, 1) * 32767), "error",
                              "out_of_range", "peak"),
    "nan_samples": (_with(np.nan), "error", "non_finite", "NaN"),
    "inf_samples": (_with(np.inf), "error", "non_finite", "inf"),
    "ogg_cut_50": (lambda f: _cut(f, "cut50.ogg", "OGG", "VORBIS", 0.5), "warning", "truncated", "Ogg"),
    "ogg_cut_90": (lambda f: _cut(f, "cut90.ogg", "OGG", "VORBIS", 0.9), "warning", "truncated", "Ogg"),
    "ogg_cut_at_header": (lambda f: _cut(f, "cut05.ogg", "OGG", "VORBIS", 0.05), "error", "truncated", "Ogg"),
    "opus_cut_60": (lambda f: _cut(f, "cut60.opus", "OGG", "OPUS", 0.6, sr=48_000), "warning", "truncated", "Ogg"),
    "mp3_cut_50": (lambda f: _cut(f, "cut50.mp3", "MP3", "MPEG_LAYER_III", 0.5), "warning", "truncated", "announced"),
    "wav_cut_50": (lambda f: _cut(f, "cut50.wav", "WAV", "PCM_16", 0.5), "warning", "truncated", "header"),
    "flac_cut_50": (lambda f: _cut(f, "cut50.flac", "FLAC", "PCM_16", 0.5), "warning", "truncated", "announced"),
    "aiff_cut_50": (lambda f: _cut(f, "cut50.aiff", "AIFF", "PCM_16", 0.5), "warning", "truncated", "header"),
    "constant": (lambda f: _wav(f, "constant.wav", np.full(5 * SR, 0.5, np.float32)), "error", "constant", "constant"),
    "dc_offset": (lambda f: _wav(f, "dc.wav", _tone(6.0, 440.0, 2) + 0.3), "warning", "dc_offset", "removed"),
    "silent": (lambda f: _wav(f, "silent.wav", np.zeros(5 * SR, np.float32)), "error", "silent", "RMS"),
    "folder_named_wav": (_dir, "error", "not_a_file", "folder"),
    "broken_symlink": (_link, "error", "broken_link", "does not exist"),
    "fifo_named_mp3": (_fifo, "error", "not_a_file", "FIFO"),
    "link_to_folder": (_folder_link, "skipped", "link_to_folder", "not followed"),
    "unknown_extension": (_write("notes.txt", b"track list\n"), "skipped", "not_audio", ".txt"),
    "zero_bytes": (_write("empty.wav", b""), "error", "empty", "0 bytes"),
    "random_bytes_mp3": (_write("noise.mp3", np.random.default_rng(0).integers(0, 256, 40_000, np.uint8).tobytes()),
                         "error", "undecodable", "soundfile"),
    "text_named_wav": (_write("readme.wav", b"this is not a wave file\n" * 100), "error", "undecodable", "soundfile"),
    "wav_without_frames": (lambda f: _wav(f, "no_frames.wav", np.zeros(0, np.float32)), "error", "empty", "no audio"),
    "too_short": (lambda f: _wav(f, "short.wav", _tone(1.0, 440.0, 4)), "warning", "too_short", "segment"),
    "odd_sample_rate": (lambda f: _wav(f, "odd.wav", _tone(5.0, 440.0, 5)[::3], sr=7_350), "warning",
                        "odd_sample_rate", "7350"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Two good files and their embedding on their own (no cache)."""
    folder = tmp_path_factory.mktemp("good")
    paths = [_wav(folder, "a_good.wav", _tone(4.5, 220.0, 10), subtype="PCM_16"),
             _wav(folder, "b_good.wav", _tone(4.5, 660.0, 11), subtype="PCM_16")]
    ref = embed_files(paths, cache=False)
    assert ref.files == [str(p) for p in paths] and not ref.issues
    return paths, ref


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_path_is_an_issue_and_good_files_are_unchanged(case, good, tmp_path):
    build, level, kind, words = CASES[case]
    folder = tmp_path / "corpus"
    folder.mkdir()
    goods, ref = good
    for p in goods:
        (folder / p.name).write_bytes(p.read_bytes())
    bad = build(folder)
    corpus = embed_folder(folder, cache=False)
    mine = [i for i in corpus.issues if i.file == str(bad)]
    assert [(i.level, i.kind) for i in mine if i.kind == kind] == [(level, kind)], (case, corpus.issues)
    assert words in mine[0].message and str(bad) == mine[0].file, mine[0]
    assert all(i.file == str(bad) for i in corpus.issues), corpus.issues  # nothing said about the good files
    # the good files: embedded, with exactly the features they have on their own
    rows = [corpus.files.index(str(folder / p.name)) for p in goods]
    np.testing.assert_array_equal(corpus.raw[rows], ref.raw)
    assert (str(bad) in corpus.files) == (level == "warning")
    # accounting: every path under the folder is embedded, an error or skipped, exactly once
    n_paths = sum(1 for _ in folder.iterdir())
    count = corpus.accounting()
    assert count["paths"] == n_paths and count["embedded"] == len(goods) + (level == "warning"), count
    # nothing non-finite downstream: the scaler and the index see a clean corpus
    emb = EmbeddingScaler().fit_transform(corpus.raw)
    assert np.isfinite(emb).all()
    ids, _ = AudioIndex(np.arange(len(emb)), emb).neighbours(np.arange(len(emb)), 1)
    assert (ids >= 0).all()


def test_unreadable_file_is_an_issue(good, tmp_path, monkeypatch):
    """A file the process may not read (EACCES; simulated, since the tests may run as root)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for p in good[0]:
        (folder / p.name).write_bytes(p.read_bytes())
    locked = _wav(folder, "locked.wav", _tone(5.0, 500.0, 9))
    locked.chmod(0)
    real_open = pathlib.Path.open

    def deny(self, *args, **kwargs):
        if self.name == "locked.wav":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", deny)
    corpus = embed_folder(folder, cache=False)
    assert [(i.file, i.level, i.kind) for i in corpus.issues] == [(str(locked), "error", "unreadable")]
    np.testing.assert_array_equal(corpus.raw, good[1].raw)


def test_a_poisoned_file_cannot_reach_the_cache(tmp_path, good):
    """The int16-scale float WAV is cached as an error: the second run lists it again, no features."""
    bad = _wav(tmp_path, "loud.wav", _tone(6.0, 440.0, 1) * 32767)
    for _ in range(2):
        corpus = embed_files([*good[0], bad], cache_dir=tmp_path / "cache")
        assert [(i.file, i.kind) for i in corpus.issues] == [(str(bad), "out_of_range")]
        assert np.isfinite(corpus.raw).all() and corpus.raw.shape == (2, 84)
    assert corpus.seconds_cpu == 0  # the second run read the cache, the error included
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 2 and all(np.isfinite(np.load(p)["attrs"]).all() for p in cached)
    assert len(list((tmp_path / "cache").glob("*.error.json"))) == 1


def test_scaler_and_index_refuse_non_finite_rows():
    x = np.random.default_rng(0).normal(size=(5, 84))
    x[3, 10] = np.nan
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        EmbeddingScaler().fit(x)
    scaler = EmbeddingScaler().fit(np.delete(x, 3, axis=0))
    with pytest.raises(ValueError, match="NaN or inf"):
        scaler.transform(x)
    with pytest.raises(ValueError, match="AudioIndex"):
        AudioIndex(np.arange(5), x)


def test_ogg_cut_at_every_fraction_is_reported(tmp_path):
    """The container that gave no warning before: cut anywhere from 25% to 95%, always an issue."""
    for frac in (0.25, 0.4, 0.6, 0.75, 0.95):
        path = _cut(tmp_path, f"cut{int(frac * 100)}.ogg", "OGG", "VORBIS", frac)
        corpus = embed_files([path], cache=False)
        assert [i.kind for i in corpus.issues if i.kind == "truncated"] == ["truncated"], (frac, corpus.issues)


def _ogg_crc(page: bytes) -> int:
    """Ogg's page CRC-32 (polynomial 0x04C11DB7, not reflected, initial 0), checksum field zeroed."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def test_intact_ogg_whose_last_granule_overstates_is_not_called_cut(tmp_path):
    """Real encoders leave a last granule position a few frames beyond the decodable samples (three
    hyperrogue tracks: 104 frames, a wesnoth track: 5806); libsndfile then announces more frames than it decodes. The pages
    are intact, so this is no truncation, in a whole or a partial decode."""
    import struct

    path = tmp_path / "intact.ogg"
    sf.write(path, _tone(8.0, 330.0, 12), SR, format="OGG", subtype="VORBIS")
    data = bytearray(path.read_bytes())
    last = data.rfind(b"OggS")
    granule = struct.unpack_from("<q", data, last + 6)[0]
    struct.pack_into("<q", data, last + 6, granule + 5000)
    struct.pack_into("<I", data, last + 22, 0)
    page_end = last + 27 + data[last + 26] + sum(data[last + 27:last + 27 + data[last + 26]])
    struct.pack_into("<I", data, last + 22, _ogg_crc(bytes(data[last:page_end])))
    path.write_bytes(bytes(data))
    with sf.SoundFile(path) as fh:
        assert fh.frames > len(fh.read())  # the quirk is reproduced
    for max_seconds in (None, 5.0):
        corpus = embed_files([path], cfg=AudioConfig(max_seconds=max_seconds), cache=False)
        assert corpus.files == [str(path)] and not corpus.issues, corpus.issues
