"""Embedding a folder (or list) of audio files, with a content-hash cache and a per-file issue report.

Each file's segment attributes are cached under ``data/interim/audio/`` keyed by the SHA-256 of its
bytes, the :class:`~musicrecall.audio.features.AudioConfig` and the source of the feature code, so a
renamed file is not recomputed and an edited extractor never serves stale features. Errors are cached
too (a corrupt file stays corrupt), so every run lists them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from musicrecall.audio import features as feat_module
from musicrecall.audio.decode import AUDIO_EXTENSIONS, AudioDecodeError, AudioIssue, load_audio
from musicrecall.audio.features import AudioConfig, segment_attributes, summarize
from musicrecall.cache import content_key, source_fingerprint
from musicrecall.config import DATA_DIR
from musicrecall.models import musicnn as musicnn_module


@dataclass
class Corpus:
    """Per-file results: raw 84-dim statistics of the files that gave features, and every issue."""

    files: list[str]
    raw: np.ndarray  # (n_ok, 84)
    segments: dict[str, np.ndarray]  # file -> (S, 14) attributes
    starts: dict[str, np.ndarray]  # file -> (S,) segment start seconds
    issues: list[AudioIssue] = field(default_factory=list)
    seconds_audio: float = 0.0
    seconds_cpu: float = 0.0  # process time spent extracting (0 when every file came from the cache)

    def issue_table(self) -> pl.DataFrame:
        """One row per error or warning (``file``, ``level``, ``kind``, ``message``)."""
        schema = {"file": pl.Utf8, "level": pl.Utf8, "kind": pl.Utf8, "message": pl.Utf8}
        return pl.DataFrame([i.as_dict() for i in self.issues], schema=schema)


def list_audio(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted), by extension."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:20]


def code_key() -> str:
    """Fingerprint of the code that computes features (part of every cache key)."""
    return source_fingerprint(feat_module, musicnn_module) + source_fingerprint(
        __import__("musicrecall.audio.decode", fromlist=["x"]))


def embed_files(paths: list[str | Path], cfg: AudioConfig | None = None, cache: bool = True,
                cache_dir: Path | None = None) -> Corpus:
    """Segment attributes and 84-dim statistics of every file; bad files become issues, never exceptions."""
    cfg = cfg or AudioConfig()
    cache_dir = cache_dir or DATA_DIR / "interim" / "audio"
    code = code_key()
    files, raw, segs, starts, issues = [], [], {}, {}, []
    seconds_audio = seconds_cpu = 0.0
    for p in map(Path, paths):
        name = str(p)
        if not p.exists():
            issues.append(AudioIssue(name, "error", "missing", "no such file"))
            continue
        key = content_key(_file_hash(p), cfg.key(), code)
        npz, err = cache_dir / f"{key}.npz", cache_dir / f"{key}.error.json"
        if cache and npz.exists():
            z = np.load(npz, allow_pickle=False)
            attrs, st = z["attrs"], z["starts"]
            issues += [AudioIssue(name, *row) for row in json.loads(str(z["issues"]))]
        elif cache and err.exists():
            issues.append(AudioIssue(name, *json.loads(err.read_text())))
            continue
        else:
            t0 = time.process_time()
            try:
                y, file_issues = load_audio(p, cfg.sr, cfg.segment_s)
            except AudioDecodeError as e:
                issues.append(e.issue)
                if cache:
                    err.parent.mkdir(parents=True, exist_ok=True)
                    err.write_text(json.dumps([e.issue.level, e.issue.kind, e.issue.message]))
                continue
            if cfg.max_seconds is not None:
                y = y[: int(cfg.max_seconds * cfg.sr)]
            attrs, _, st = segment_attributes(y, cfg)
            seconds_cpu += time.process_time() - t0
            seconds_audio += len(y) / cfg.sr
            issues += file_issues
            if cache:
                npz.parent.mkdir(parents=True, exist_ok=True)
                tmp = npz.with_suffix(".tmp.npz")
                np.savez(tmp, attrs=attrs, starts=st,
                         issues=json.dumps([[i.level, i.kind, i.message] for i in file_issues]))
                tmp.replace(npz)
        files.append(name)
        raw.append(summarize(attrs))
        segs[name], starts[name] = attrs, st
    raw_arr = np.vstack(raw) if raw else np.zeros((0, 84))
    return Corpus(files, raw_arr, segs, starts, issues, seconds_audio, seconds_cpu)
