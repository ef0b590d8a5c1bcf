"""Embedding a folder (or list) of audio files, with a content-hash cache and a per-file issue report.

Each file's segment attributes are cached under ``data/interim/audio/`` keyed by the SHA-256 of its
bytes, the :class:`~musicrecall.audio.features.AudioConfig` and the source of the feature code, so a
renamed file is not recomputed and an edited extractor never serves stale features. Errors are cached
too (a corrupt file stays corrupt), so every run lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from musicrecall.audio import features as feat_module
from musicrecall.audio.decode import AUDIO_EXTENSIONS, AudioDecodeError, AudioIssue, load_audio
from musicrecall.audio.features import AudioConfig, segment_attributes, segment_statistics
from musicrecall.cache import content_key, source_fingerprint
from musicrecall.config import DATA_DIR
from musicrecall.models import musicnn as musicnn_module


@dataclass
class Corpus:
    """Per-file results: raw 84-dim statistics of the files that gave features, and every issue.

    Every path given (or found in a folder) is accounted for: it is embedded (``files``, perhaps with
    warnings), or has an ``error`` issue, or a ``skipped`` issue (not an audio file, or over a limit).
    """

    files: list[str]
    raw: np.ndarray  # (n_ok, 84), finite
    segments: dict[str, np.ndarray]  # file -> (S, 14) attributes
    starts: dict[str, np.ndarray]  # file -> (S,) segment start seconds
    issues: list[AudioIssue] = field(default_factory=list)
    seconds_audio: float = 0.0
    seconds_cpu: float = 0.0  # process time spent extracting (0 when every file came from the cache)

    def issue_table(self) -> pl.DataFrame:
        """One row per error, warning or skipped path (``file``, ``level``, ``kind``, ``message``)."""
        schema = {"file": pl.Utf8, "level": pl.Utf8, "kind": pl.Utf8, "message": pl.Utf8}
        return pl.DataFrame([i.as_dict() for i in self.issues], schema=schema)

    def accounting(self) -> dict[str, int]:
        """Paths by outcome: ``embedded + errors + skipped == paths`` (a path is counted once)."""
        errors = {i.file for i in self.issues if i.level == "error"}
        skipped = {i.file for i in self.issues if i.level == "skipped"} - errors
        return {"paths": len(self.files) + len(errors) + len(skipped), "embedded": len(self.files),
                "errors": len(errors), "skipped": len(skipped)}


def scan_audio(folder: str | Path) -> tuple[list[Path], list[AudioIssue]]:
    """Audio files under ``folder`` (recursive, sorted; links to files followed, links to folders not)
    and an issue for every other path met: a non-audio extension (``skipped``), and an audio-named
    path that is not a readable regular file (directory, FIFO, broken link, unreadable: ``error``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], [AudioIssue(str(folder), "error", "missing", "no such folder")]
    files, issues = [], []
    for root, dirs, names in os.walk(folder):
        root_p = Path(root)
        for d in sorted(dirs):
            p = root_p / d
            if p.is_symlink():
                issues.append(AudioIssue(str(p), "skipped", "link_to_folder", "a link to a folder: not followed"))
            elif p.suffix.lower() in AUDIO_EXTENSIONS:
                issues.append(AudioIssue(str(p), "error", "not_a_file", "a folder named like an audio file"))
        dirs.sort()
        for n in sorted(names):
            p = root_p / n
            if p.suffix.lower() not in AUDIO_EXTENSIONS:
                issues.append(AudioIssue(str(p), "skipped", "not_audio",
                                         f"extension {p.suffix or '(none)'!r} is not one of {', '.join(AUDIO_EXTENSIONS)}"))
            elif (why := path_problem(p)) is not None:
                issues.append(AudioIssue(str(p), "error", *why))
            else:
                files.append(p)
    return sorted(files), issues


def list_audio(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted), by extension; :func:`scan_audio` also says
    why every other path was left out."""
    return scan_audio(folder)[0]


def path_problem(p: Path) -> tuple[str, str] | None:
    """``(kind, message)`` when ``p`` is not a readable regular file, else None (never raises)."""
    if p.is_symlink() and not p.exists():
        return "broken_link", f"a link to {os.readlink(p)!s}, which does not exist"
    if not p.exists():
        return "missing", "no such file"
    if p.is_dir():
        return "not_a_file", "a folder named like an audio file"
    if not p.is_file():
        return "not_a_file", "not a regular file (FIFO, socket or device)"
    try:
        with p.open("rb") as fh:
            fh.read(1)
    except OSError as err:
        return "unreadable", f"{type(err).__name__}: {err.strerror or err}"
    return None


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


def _features(p: Path, cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray, list[AudioIssue], float]:
    """``(attributes (S, 14), starts, warnings, seconds analysed)``; raises :class:`AudioDecodeError`,
    also when the features are not finite (they would poison the scaler and the index)."""
    y, file_issues = load_audio(p, cfg.sr, cfg.segment_s, cfg.max_seconds)
    attrs, _, st = segment_attributes(y, cfg)
    bad = ~np.isfinite(attrs)
    if bad.any():
        names = sorted({feat_module.ATTRIBUTES[j] for j in np.nonzero(bad)[1]})
        raise AudioDecodeError(AudioIssue(str(p), "error", "non_finite_features",
                                          f"{int(bad.any(axis=1).sum())} of {len(attrs)} segments give NaN/inf in "
                                          f"{', '.join(names)}"))
    return attrs, st, file_issues, len(y) / cfg.sr


def embed_files(paths: list[str | Path], cfg: AudioConfig | None = None, cache: bool = True,
                cache_dir: Path | None = None) -> Corpus:
    """Segment attributes and 84-dim statistics of every file; bad files become issues, never exceptions.

    A file gives a row of ``raw`` only when all its features are finite; anything else (a path that is
    not a readable file, a decode error, non-finite features) is an ``error`` issue for that file only.
    Decoding stops after ``cfg.max_seconds`` (the part analysed)."""
    cfg = cfg or AudioConfig()
    cache_dir = cache_dir or DATA_DIR / "interim" / "audio"
    code = code_key()
    files, raw, segs, starts, issues = [], [], {}, {}, []
    seconds_audio = seconds_cpu = 0.0
    for p in map(Path, paths):
        name = str(p)
        if (why := path_problem(p)) is not None:
            issues.append(AudioIssue(name, "error", *why))
            continue
        key = content_key(_file_hash(p), cfg.key(), code)
        npz, err = cache_dir / f"{key}.npz", cache_dir / f"{key}.error.json"
        cached = _load_cached(npz) if cache and npz.exists() else None
        if cached is not None:
            attrs, st, file_issues = cached
            issues += [AudioIssue(name, *row) for row in file_issues]
        elif cache and err.exists():
            issues.append(AudioIssue(name, *json.loads(err.read_text())))
            continue
        else:
            t0 = time.process_time()
            try:
                attrs, st, file_issues, seconds = _features(p, cfg)
            except AudioDecodeError as e:
                issues.append(e.issue)
                if cache:
                    err.parent.mkdir(parents=True, exist_ok=True)
                    err.write_text(json.dumps([e.issue.level, e.issue.kind, e.issue.message]))
                continue
            seconds_cpu += time.process_time() - t0
            seconds_audio += seconds
            issues += file_issues
            if cache:
                npz.parent.mkdir(parents=True, exist_ok=True)
                tmp = npz.with_suffix(f".{os.getpid()}.tmp.npz")  # notebooks run side by side
                np.savez(tmp, attrs=attrs, starts=st,
                         issues=json.dumps([[i.level, i.kind, i.message] for i in file_issues]))
                tmp.replace(npz)
        row = segment_statistics(attrs)
        if not np.isfinite(row).all():  # cannot happen with finite attributes; kept as the last guard
            issues.append(AudioIssue(name, "error", "non_finite_features", "the 84 statistics are not finite"))
            continue
        files.append(name)
        raw.append(row)
        segs[name], starts[name] = attrs, st
    raw_arr = np.vstack(raw) if raw else np.zeros((0, 84))
    return Corpus(files, raw_arr, segs, starts, issues, seconds_audio, seconds_cpu)


def _load_cached(npz: Path) -> tuple[np.ndarray, np.ndarray, list[list[str]]] | None:
    """A cached entry, or None when it is unreadable or not finite (then it is recomputed)."""
    try:
        with np.load(npz, allow_pickle=False) as z:
            attrs, st, rows = z["attrs"], z["starts"], json.loads(str(z["issues"]))
    except (OSError, ValueError, KeyError):
        return None
    return (attrs, st, rows) if np.isfinite(attrs).all() else None


def embed_folder(folder: str | Path, cfg: AudioConfig | None = None, limit: int | None = None,
                 cache: bool = True, cache_dir: Path | None = None) -> Corpus:
    """:func:`embed_files` over the audio files of ``folder`` (the first ``limit``), with every other
    path of the folder (non-audio, unreadable, links, files over the limit) as an issue."""
    found, issues = scan_audio(folder)
    use = found if limit is None else found[:limit]
    over = [AudioIssue(str(p), "skipped", "over_limit", f"beyond the first {limit} files") for p in found[len(use):]]
    corpus = embed_files(use, cfg, cache, cache_dir)
    corpus.issues = issues + corpus.issues + over
    return corpus
