"""Write ``audio_shared_embeddings.npz``: the segment attributes, tag probabilities and 84 statistics of
every clip of ``../shared/audio`` as computed by the code of the commit that ran this script (the
"before" of ``tests/test_audio_equivalence.py``; the npz records that commit). Two settings: whole
clips, and the first 120 s (notebook 05's corpus setting, which stops decoding early).

Usage: ``PYTHONPATH=lib MUSICRECALL_THREADS=1 .venv/bin/python tests/data/make_audio_shared_embeddings.py``
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from musicrecall.config import SHARED_DIR, set_threads

OUT = Path(__file__).with_name("audio_shared_embeddings.npz")
SETTINGS = {"whole": None, "first120": 120.0}


def shared_clips() -> list[Path]:
    root = SHARED_DIR / "audio"
    return sorted(root.glob("excerpts/*.ogg")) + sorted(root.glob("songs/*.mp3"))


def compute(max_seconds: float | None) -> dict[str, np.ndarray]:
    from musicrecall.audio import AudioConfig, load_audio, segment_attributes, segment_statistics

    cfg = AudioConfig(max_seconds=max_seconds)
    attrs, tags, raw, counts = [], [], [], []
    for p in shared_clips():
        y, _ = load_audio(p, cfg.sr, cfg.segment_s, cfg.max_seconds)
        a, t, _ = segment_attributes(y, cfg)
        attrs.append(a)
        tags.append(t)
        raw.append(segment_statistics(a))
        counts.append(len(a))
    return {"attrs": np.vstack(attrs), "tags": np.vstack(tags), "raw": np.vstack(raw), "counts": np.array(counts)}


def main() -> None:
    set_threads(1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    out: dict[str, np.ndarray] = {"files": np.array([p.relative_to(SHARED_DIR).as_posix() for p in shared_clips()]),
                                  "commit": np.array(commit)}
    for name, max_s in SETTINGS.items():
        for k, v in compute(max_s).items():
            out[f"{name}_{k}"] = v
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({len(out['files'])} clips, commit {commit})")


if __name__ == "__main__":
    main()
