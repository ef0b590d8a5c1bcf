"""Audio feature extraction speed: times real time per core, including the musicnn tagger.

One thread (``set_threads(1)``), the shared real audio (12 instrumental excerpts of 30 s and the first
``--song-seconds`` of the 3 songs). For each file, per repeat: decode + resample, then the 14 segment
attributes (STFT, mel, musicnn front/mid-end and per-segment back-end, HPSS, REPET-SIM, tempo) and the
84 statistics. Reports medians over ``--repeats`` of CPU time (``time.process_time``: robust to other
processes on a shared machine) and wall time, as x real time, and the share of the tagger. The
reference measured in the same run is librosa's own ``load`` + ``melspectrogram`` (the input stage
every tagger needs): the ratio says what the whole pipeline costs relative to computing its input. The
bar is >= 50x real time per core. Usage: ``python bench/bench_audio.py [--repeats 3] [--out f.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from musicrecall.audio import AudioConfig, load_audio, segment_attributes, summarize
from musicrecall.audio.features import get_tagger
from musicrecall.config import SHARED_DIR, set_threads


def _time(fn) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--song-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    set_threads(1)
    import librosa
    import torch

    audio = SHARED_DIR / "audio"
    files = sorted(audio.glob("excerpts/*.ogg")) + sorted(audio.glob("songs/*.mp3"))
    if not files:
        raise SystemExit(f"no shared audio under {audio}")
    tagger, cfg = get_tagger(), AudioConfig()
    clips = []
    for f in files:
        y, _ = load_audio(f, cfg.sr)
        clips.append((f, y[: int(args.song_seconds * cfg.sr)]))
    seconds = sum(len(y) for _, y in clips) / cfg.sr
    runs = {"pipeline_cpu": [], "pipeline_wall": [], "decode_cpu": [], "features_cpu": [], "tagger_cpu": [],
            "reference_cpu": []}
    for _ in range(args.repeats):
        dec = sum(_time(lambda f=f: load_audio(f, cfg.sr))[0] for f, _ in clips if "songs" not in str(f))
        dec_s = sum(len(y) for f, y in clips if "songs" not in str(f)) / cfg.sr
        feat = [_time(lambda y=y: summarize(segment_attributes(y, cfg, tagger)[0])) for _, y in clips]
        mels = [np.log10(1e4 * librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=512, hop_length=256, n_mels=96) + 1)
                for _, y in clips]
        with torch.inference_mode():
            tag = sum(_time(lambda m=m: tagger.frame_features(torch.from_numpy(m.T[None].copy())))[0] for m in mels)
        ref = sum(_time(lambda f=f: librosa.feature.melspectrogram(y=librosa.load(f, sr=cfg.sr)[0], sr=cfg.sr,
                                                                    n_fft=512, hop_length=256, n_mels=96))[0]
                  for f, _ in clips if "songs" not in str(f))
        f_cpu = sum(c for c, _ in feat)
        runs["decode_cpu"].append(dec / dec_s)  # CPU seconds per audio second
        runs["features_cpu"].append(f_cpu / seconds)
        runs["tagger_cpu"].append(tag / seconds)
        runs["reference_cpu"].append(ref / dec_s)
        runs["pipeline_cpu"].append(dec / dec_s + f_cpu / seconds)
        runs["pipeline_wall"].append(sum(w for _, w in feat) / seconds + dec / dec_s)
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "audio_seconds": seconds, "repeats": args.repeats, "threads": 1,
        "x_realtime_per_core_cpu": 1.0 / med["pipeline_cpu"],
        "x_realtime_wall": 1.0 / med["pipeline_wall"],
        "x_realtime_features_only": 1.0 / med["features_cpu"],
        "x_realtime_tagger_only": 1.0 / med["tagger_cpu"],
        "tagger_share_of_pipeline": med["tagger_cpu"] / med["pipeline_cpu"],
        "pipeline_over_reference_ratio": med["pipeline_cpu"] / med["reference_cpu"],
        "bar_50x_met": bool(1.0 / med["pipeline_cpu"] >= 50),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
