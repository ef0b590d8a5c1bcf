"""Audio embedding throughput on long files: x real time per core, as a ratio to plain librosa.

What a corpus run does per file (:func:`musicrecall.audio.embed_files` without its cache): decode the
first ``--max-seconds`` (120 s, as notebook 05's corpus step) and resample to 16 kHz, then the 14
segment attributes (STFT, mel, musicnn front/mid-end and per-segment back-end, HPSS, REPET-SIM, tempo)
and the 84 statistics. "x real time" is analysed audio seconds per CPU second of one thread
(``set_threads(1)``; ``time.process_time``, so other processes on a shared machine count less than in
wall time, though a loaded machine still slows a thread through shared caches and cores).

Three timings per file and repeat, in the same run, interleaved:

* ``pipeline``: the code as it is (decoding stops after the part analysed);
* ``whole_decode``: the same, but decoding the whole file first (the behaviour before the
  decode limit; the features are identical, the decode is not);
* ``reference``: plain librosa feature extraction of the same audio: ``librosa.load(sr=16000,
  duration=max_seconds)``, a 96-band mel spectrogram, the spectral centroid and the onset strength.

Reported: medians over ``--repeats`` of each corpus total, the ratio ``pipeline / reference`` of
throughputs (the figure to compare across machines), and the tagger's share. The bar is >= 50x real time
per core. Corpus: ``--corpus`` (default ``data/raw/audio`` from ``make audio-corpus``, else long files
synthesised by concatenating the shared clips in ``SHARED_DIR/audio``), ``--files`` files longer than
``--min-seconds``, evenly spread over the sorted list. Usage: ``python bench/bench_audio.py [--files 4] [--repeats 3]
[--out f.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from musicrecall.audio import AudioConfig, load_audio, scan_audio, segment_attributes, segment_statistics
from musicrecall.audio.features import get_tagger
from musicrecall.config import DATA_DIR, SHARED_DIR, set_threads


def _cpu(fn) -> tuple[float, object]:
    c = time.process_time()
    out = fn()
    return time.process_time() - c, out


def long_files(corpus: Path | None, n: int, min_seconds: float, workdir: Path) -> tuple[list[Path], str]:
    """``n`` files longer than ``min_seconds`` spread over the sorted corpus, or synthesised ones."""
    import soundfile as sf

    if corpus is not None and corpus.is_dir():
        found = [p for p in scan_audio(corpus)[0] if sf.info(str(p)).duration >= min_seconds]
        if found:
            pick = [found[int(i)] for i in np.linspace(0, len(found) - 1, min(n, len(found)))]
            return sorted(set(pick)), f"{corpus} ({len(found)} files >= {min_seconds:g} s)"
    clips = sorted((SHARED_DIR / "audio").glob("*/*.ogg")) + sorted((SHARED_DIR / "audio").glob("*/*.mp3"))
    if not clips:
        raise SystemExit(f"no corpus at {corpus} and no shared audio under {SHARED_DIR / 'audio'}")
    out = []
    for i in range(n):  # each long file: the shared clips concatenated, rotated, as OGG or MP3
        parts = [load_audio(c, 44_100)[0] for c in clips[i % len(clips):] + clips[: i % len(clips)]]
        y = np.concatenate(parts)
        while len(y) < min_seconds * 44_100:
            y = np.concatenate([y, y])
        path = workdir / (f"long{i}.ogg" if i % 2 == 0 else f"long{i}.mp3")
        sf.write(path, 0.9 * y / max(1.0, float(np.abs(y).max())), 44_100,
                 **({"format": "OGG", "subtype": "VORBIS"} if i % 2 == 0 else {"format": "MP3"}))
        out.append(path)
    return out, f"{n} files synthesised from the shared clips ({min_seconds:g} s or more)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DATA_DIR / "raw" / "audio")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=180.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    set_threads(1)
    import librosa
    import soundfile as sf
    import torch

    cfg = AudioConfig(hop_s=4.0, max_seconds=args.max_seconds)
    tagger = get_tagger()
    with tempfile.TemporaryDirectory() as tmp:
        files, described = long_files(args.corpus, args.files, args.min_seconds, Path(tmp))
        durations = [sf.info(str(f)).duration for f in files]
        analysed = sum(min(d, args.max_seconds) for d in durations)
        runs: dict[str, list[float]] = {k: [] for k in ("pipeline", "whole_decode", "reference", "decode", "tagger")}
        for _ in range(args.repeats):
            tot = dict.fromkeys(runs, 0.0)
            for f in files:
                c_dec, (y, _) = _cpu(lambda f=f: load_audio(f, cfg.sr, cfg.segment_s, cfg.max_seconds))
                c_feat, _ = _cpu(lambda y=y: segment_statistics(segment_attributes(y, cfg, tagger)[0]))
                c_whole, _ = _cpu(lambda f=f: load_audio(f, cfg.sr, cfg.segment_s, None))
                mel = np.log10(1e4 * librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=512, hop_length=256,
                                                                     n_mels=96) + 1)
                with torch.inference_mode():
                    c_tag, _ = _cpu(lambda m=mel: tagger.frame_features(torch.from_numpy(m.T[None].copy())))

                def reference(f=f):
                    z, _ = librosa.load(f, sr=cfg.sr, duration=args.max_seconds)
                    librosa.feature.melspectrogram(y=z, sr=cfg.sr, n_fft=512, hop_length=256, n_mels=96)
                    librosa.feature.spectral_centroid(y=z, sr=cfg.sr, n_fft=512, hop_length=256)
                    librosa.onset.onset_strength(y=z, sr=cfg.sr, hop_length=256)

                c_ref, _ = _cpu(reference)
                tot["pipeline"] += c_dec + c_feat
                tot["whole_decode"] += c_whole + c_feat
                tot["reference"] += c_ref
                tot["decode"] += c_dec
                tot["tagger"] += c_tag
            for k, v in tot.items():
                runs[k].append(v)
    med = {k: statistics.median(v) for k, v in runs.items()}
    x = {k: analysed / med[k] for k in ("pipeline", "whole_decode", "reference")}
    result = {
        "corpus": described, "files": len(files), "file_hours": sum(durations) / 3600,
        "analysed_seconds": analysed, "max_seconds": args.max_seconds, "repeats": args.repeats, "threads": 1,
        "x_realtime_per_core": x["pipeline"],
        "x_realtime_per_core_whole_file_decode": x["whole_decode"],
        "x_realtime_reference_librosa": x["reference"],
        "pipeline_over_reference_throughput": x["pipeline"] / x["reference"],
        "decode_share_of_pipeline": med["decode"] / med["pipeline"],
        "tagger_share_of_pipeline": med["tagger"] / med["pipeline"],
        "bar_50x_met": bool(x["pipeline"] >= 50),
        "cpu_seconds_per_repeat": {k: v for k, v in runs.items()},
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
