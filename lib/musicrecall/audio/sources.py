"""Where notebook 05's validation audio comes from: the shared real fixtures, or the simulated world.

The default run must work on a machine without ``../shared`` (:data:`musicrecall.config.SHARED_DIR`),
so the validation has two sources with the same shape, an :class:`AudioSet`:

* ``"shared"``: the read-only real fixtures in ``SHARED_DIR/audio`` (three vocal songs with sung lyric
  line timings ``*.lines.csv``, twelve instrumental excerpts with a coarse style in ``manifest.json``);
* ``"world"``: songs of the simulated world rendered by :func:`musicrecall.world.render_audio` and written
  as FLAC files under ``data/interim/audio-world-files/``; the vocal songs' ground truth is
  :func:`musicrecall.world.vocal_sections` (in place of the lyric lines) and an instrumental song's
  style is its genre (the timbre of the renderer follows the genre). Synthetic audio is a weaker check
  than real music: the voice is a formant-filtered sawtooth, not a singer.

``"auto"`` (:func:`resolve_source`) takes ``"shared"`` when ``SHARED_DIR/audio`` exists, else ``"world"``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from musicrecall import config
from musicrecall.audio.corpus import Corpus, embed_files
from musicrecall.audio.features import AudioConfig
from musicrecall.audio.validation import read_lines, vocal_labels
from musicrecall.cache import content_key, source_fingerprint

SOURCES = ("auto", "shared", "world")
DESCRIPTIONS = {
    "shared": "real audio: vocal songs with sung lyric-line timings and instrumental excerpts (SHARED_DIR/audio)",
    "world": "synthetic audio of the simulated world: rendered vocal songs with their vocal-section truth and "
             "instrumental songs (a weaker check than real music)",
}


@dataclass
class AudioSet:
    """Vocal songs with the ``(start_s, end_s)`` intervals where a voice sings, and instrumental files.

    ``voiced`` and ``style`` are keyed by ``str(path)``; a vocal song's style is ``"vocal song"``.
    """

    source: str  # "shared" or "world"
    songs: list[Path]
    excerpts: list[Path]
    voiced: dict[str, np.ndarray]  # song -> (n, 2) seconds
    style: dict[str, str]
    description: str = ""
    details: dict[str, object] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # short labels for tables and metric names

    def label(self, path: str | Path) -> str:
        """A short name of one file (its stem unless :attr:`names` has one)."""
        return self.names.get(str(path), Path(path).stem)

    @property
    def files(self) -> list[Path]:
        """Songs then instrumental files."""
        return [*self.songs, *self.excerpts]

    def table(self) -> pl.DataFrame:
        """One row per file: name, kind, style and the number of voiced intervals."""
        return pl.DataFrame({
            "file": [self.label(p) for p in self.files],
            "kind": ["song"] * len(self.songs) + ["instrumental"] * len(self.excerpts),
            "style": [self.style[str(p)] for p in self.files],
            "voiced_intervals": [len(self.voiced.get(str(p), ())) for p in self.files],
        })


def resolve_source(audio_source: str = "auto", shared_dir: str | Path | None = None) -> str:
    """``"shared"`` or ``"world"``: ``"auto"`` is ``"shared"`` exactly when ``shared_dir/audio`` exists."""
    if audio_source not in SOURCES:
        raise ValueError(f"audio_source must be one of {SOURCES}, not {audio_source!r}")
    folder = Path(shared_dir if shared_dir is not None else config.SHARED_DIR) / "audio"
    if audio_source == "auto":
        return "shared" if folder.is_dir() else "world"
    if audio_source == "shared" and not folder.is_dir():
        raise FileNotFoundError(f"audio_source='shared' but {folder} does not exist; use 'world' or 'auto'")
    return audio_source


def shared_audio(shared_dir: str | Path | None = None) -> AudioSet:
    """The real fixtures of ``shared_dir/audio`` (default :data:`musicrecall.config.SHARED_DIR`)."""
    folder = Path(shared_dir if shared_dir is not None else config.SHARED_DIR) / "audio"
    if not (folder / "manifest.json").exists():
        raise FileNotFoundError(f"no shared audio at {folder} (manifest.json missing)")
    manifest = {m["file"]: m for m in json.loads((folder / "manifest.json").read_text())}
    songs, excerpts = sorted(folder.glob("songs/*.mp3")), sorted(folder.glob("excerpts/*.ogg"))
    if not songs or not excerpts:
        raise FileNotFoundError(f"{folder} has {len(songs)} songs/*.mp3 and {len(excerpts)} excerpts/*.ogg")
    voiced = {str(s): read_lines(s.with_suffix(".lines.csv")) for s in songs}
    style = {str(p): manifest.get(p.relative_to(folder).as_posix(), {}).get("style") or "vocal song"
             for p in [*songs, *excerpts]}
    return AudioSet("shared", songs, excerpts, voiced, style, DESCRIPTIONS["shared"], {"folder": str(folder)})


def _labels_count(sections: list[tuple[float, float]], seconds: float, cfg: AudioConfig) -> tuple[int, int]:
    """(vocal, non-vocal) segments of a ``seconds`` clip under ``cfg`` (same rule as the validation)."""
    starts = np.arange(0.0, max(seconds - cfg.segment_s, 0.0) + 1e-9, cfg.hop_s)
    lab = vocal_labels(starts, cfg.segment_s, np.asarray(sections, dtype=np.float64).reshape(-1, 2))
    return int((lab == 1).sum()), int((lab == 0).sum())


def select_world_songs(world, n_vocal: int, n_instrumental: int, song_seconds: float, cfg: AudioConfig,
                       n_genres: int = 3, min_vocal: int = 5, min_non_vocal: int = 3) -> tuple[list[int], list[int]]:
    """``(vocal song ids, instrumental song ids)``, deterministic.

    Vocal songs: the first (by song id, a random permutation of the catalogue) whose truth gives at least
    ``min_vocal`` vocal and ``min_non_vocal`` non-vocal segments in the first ``song_seconds``, so that
    the AUC has both classes; the choice looks at the truth only, never at the audio. Instrumental songs:
    about equally many from each of the ``n_genres`` genres with the most instrumental songs, so the
    nearest-neighbour check has same-style pairs.
    """
    from musicrecall.world import vocal_sections
    from musicrecall.world.profiles import INSTRUMENTAL, LANGUAGES

    st = world.truth["song_style"].select("song_id", "pref_cluster").sort("song_id")
    st = st.with_columns(lang=pl.col("pref_cluster") % len(LANGUAGES), genre=pl.col("pref_cluster") // len(LANGUAGES))
    vocal = []
    for sid in st.filter(pl.col("lang") != INSTRUMENTAL)["song_id"].to_list():
        n_voc, n_non = _labels_count(vocal_sections(world, sid, song_seconds), song_seconds, cfg)
        if n_voc >= min_vocal and n_non >= min_non_vocal:
            vocal.append(int(sid))
            if len(vocal) == n_vocal:
                break
    inst = st.filter(pl.col("lang") == INSTRUMENTAL)
    top = inst.group_by("genre").len().sort(["len", "genre"], descending=[True, False]).head(n_genres)["genre"].to_list()
    per = -(-n_instrumental // max(len(top), 1))
    chosen = inst.filter(pl.col("genre").is_in(top)).group_by("genre", maintain_order=True).head(per)
    # interleave genres so a smaller n_instrumental still covers them all
    chosen = chosen.with_columns(rank=pl.int_range(pl.len()).over("genre")).sort(["rank", "song_id"])
    return vocal, chosen["song_id"].head(n_instrumental).cast(pl.Int64).to_list()


def _write_flac(path: Path, y: np.ndarray, sr: int) -> None:
    """Write ``y`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".flac", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, y, sr, format="FLAC", subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_world_file(world, song_id: int, seconds: float, sr: int = 16_000, folder: Path | None = None,
                      kind: str = "song") -> Path:
    """Render one song to ``folder/<kind>_<id>_<key>.flac`` unless that file exists; return its path.

    The key covers the simulator's source (renderer and language table), the song's style row, the
    world seed, length and rate, so a changed song or renderer gets a new file and an unchanged one is
    never rendered twice.
    """
    from musicrecall import world as world_pkg
    from musicrecall.world import render_audio

    folder = folder or config.DATA_DIR / "interim" / "audio-world-files"
    row = world.truth["song_style"].row(int(song_id), named=True)
    key = content_key(source_fingerprint(world_pkg), world.config.seed, row, float(seconds), int(sr))
    path = folder / f"{kind}_{int(song_id)}_{key}.flac"
    if not path.exists():
        _write_flac(path, render_audio(world, int(song_id), seconds=seconds, sr=sr), sr)
    return path


def world_audio(world, n_vocal: int = 3, n_instrumental: int = 6, song_seconds: float = 45.0,
                instrumental_seconds: float = 20.0, cfg: AudioConfig | None = None, sr: int = 16_000,
                n_genres: int = 3, folder: Path | None = None) -> AudioSet:
    """Rendered vocal songs (truth: their vocal sections) and instrumental songs (style: their genre)."""
    from musicrecall.world import vocal_sections
    from musicrecall.world.profiles import GENRES, LANGUAGES

    cfg = cfg or AudioConfig(hop_s=2.0)
    vocal_ids, inst_ids = select_world_songs(world, n_vocal, n_instrumental, song_seconds, cfg, n_genres)
    songs = [render_world_file(world, s, song_seconds, sr, folder, "vocal") for s in vocal_ids]
    excerpts = [render_world_file(world, s, instrumental_seconds, sr, folder, "instrumental") for s in inst_ids]
    voiced = {str(p): np.asarray(vocal_sections(world, s, song_seconds), dtype=np.float64).reshape(-1, 2)
              for p, s in zip(songs, vocal_ids, strict=True)}
    cluster = world.truth["song_style"]["pref_cluster"].to_numpy()  # row i is song i
    style = {str(p): "vocal song" for p in songs}
    style |= {str(p): GENRES[int(cluster[s]) // len(LANGUAGES)] for p, s in zip(excerpts, inst_ids, strict=True)}
    names = {str(p): f"world_song_{s}" for p, s in zip(songs, vocal_ids, strict=True)}
    names |= {str(p): f"world_instrumental_{s}" for p, s in zip(excerpts, inst_ids, strict=True)}
    return AudioSet("world", songs, excerpts, voiced, style, DESCRIPTIONS["world"],
                    {"vocal_song_ids": vocal_ids, "instrumental_song_ids": inst_ids, "world_seed": world.config.seed,
                     "n_songs_in_catalogue": world.truth["song_style"].height}, names)


def load_audio_set(audio_source: str = "auto", *, profile: str = "small", seed: int = 0,
                   shared_dir: str | Path | None = None, song_seconds: float = 45.0,
                   instrumental_seconds: float = 20.0, n_vocal: int = 3, n_instrumental: int = 6,
                   cfg: AudioConfig | None = None) -> AudioSet:
    """The :class:`AudioSet` of ``audio_source`` (``"auto"`` resolved by :func:`resolve_source`).

    The world source renders from the simulated world at ``profile`` / ``seed`` (cached under ``data/``
    like every notebook's world); ``song_seconds`` / ``instrumental_seconds`` / ``n_*`` apply to it only.
    """
    source = resolve_source(audio_source, shared_dir)
    if source == "shared":
        return shared_audio(shared_dir)
    from musicrecall.data import load_dataset

    world = load_dataset("world", profile=profile, seed=seed).world
    return world_audio(world, n_vocal, n_instrumental, song_seconds, instrumental_seconds, cfg)


def merge(*corpora: Corpus) -> Corpus:
    """One :class:`Corpus` from several (files in order; later duplicates are dropped)."""
    files, raw, segs, starts, issues, sa, sc = [], [], {}, {}, [], 0.0, 0.0
    for c in corpora:
        for f, r in zip(c.files, c.raw, strict=True):
            if f not in segs:
                files.append(f)
                raw.append(r)
                segs[f], starts[f] = c.segments[f], c.starts[f]
        issues += c.issues
        sa, sc = sa + c.seconds_audio, sc + c.seconds_cpu
    return Corpus(files, np.vstack(raw) if raw else np.zeros((0, 84)), segs, starts, issues, sa, sc)


def embed_audio_set(aset: AudioSet, cfg: AudioConfig, extra: list[str | Path] = (),
                    instrumental_seconds: float | None = None) -> Corpus:
    """Embed the songs and ``extra`` files with ``cfg``, the instrumental files with at most
    ``instrumental_seconds`` (None: ``cfg.max_seconds``), into one :class:`Corpus`."""
    inst_cfg = cfg if instrumental_seconds is None else replace(cfg, max_seconds=instrumental_seconds)
    return merge(embed_files(aset.songs, cfg), embed_files(aset.excerpts, inst_cfg), embed_files(list(extra), cfg))
