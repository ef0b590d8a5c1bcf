"""The :class:`World` container, :func:`generate_world`, and atomic save / load."""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from musicrecall.cache import pid_alive

from .catalog import build_catalog, items_frame, song_style_frame, triples_frame
from .noise import corrupt_and_assemble
from .profiles import Effects, WorldConfig, resolve_config
from .sessions import simulate_sessions
from .users import build_users, cross_business_frame, truth_frames, users_frame

_TABLES = ("events", "items", "users", "triples", "cross_business")


@dataclass
class World:
    """One generated world: published tables, party B's table, and ground truth (never in the log)."""

    config: WorldConfig
    events: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    triples: pl.DataFrame
    cross_business: pl.DataFrame
    truth: dict[str, pl.DataFrame]

    @property
    def end_ts(self) -> datetime:
        """Export time (UTC): ``start + n_days``; genuine events are strictly before it."""
        return self.config.end

    def save(self, path: str | Path) -> Path:
        """Write one parquet per table plus ``config.json`` into directory ``path`` atomically.

        Temporary folders that an interrupted save left beside ``path`` are removed first (see
        :func:`clean_interrupted_saves`).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_interrupted_saves(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
        try:
            for name in _TABLES:
                getattr(self, name).write_parquet(tmp / f"{name}.parquet")
            for name, df in self.truth.items():
                df.write_parquet(tmp / f"truth_{name}.parquet")
            (tmp / "config.json").write_text(self.config.to_json())
            old = None
            if path.exists():  # os.replace cannot overwrite a non-empty directory: swap it aside first
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path, raw_log: bool = True) -> World:
        """Read a world written by :meth:`save`. ``raw_log=False`` leaves out the raw log (``events`` is then an
        empty frame with its schema) and its noise flags (``truth["event_noise"]``): the two tables as long as
        the log, which only generation and cleaning read."""
        path = Path(path)
        config = WorldConfig.from_json((path / "config.json").read_text())
        tables = {name: pl.read_parquet(path / f"{name}.parquet") for name in _TABLES if raw_log or name != "events"}
        if not raw_log:
            tables["events"] = pl.DataFrame(schema=pl.read_parquet_schema(path / "events.parquet"))
        truth = {
            p.stem.removeprefix("truth_"): pl.read_parquet(p) for p in sorted(path.glob("truth_*.parquet"))
            if raw_log or p.stem != "truth_event_noise"
        }
        return cls(config=config, truth=truth, **tables)



def clean_interrupted_saves(path: Path, max_age_s: float = 3600.0) -> list[Path]:
    """Remove what a killed :meth:`World.save` of ``path`` left beside it: ``.<name>.tmp-<pid>-*``
    folders and ``.<name>.old-<pid>`` copies whose process is gone (a folder without a pid, from older
    versions, once it is ``max_age_s`` old). If the kill came between moving the old copy aside and
    moving the new one in, the old copy is put back instead. Returns the removed folders.
    """
    removed = []
    for leftover in sorted(path.parent.glob(f".{glob.escape(path.name)}.*")):
        match = re.fullmatch(rf"\.{re.escape(path.name)}\.(tmp|old)-(?:(\d+)(?:-.*)?|.*)", leftover.name)
        if match is None or not leftover.is_dir():
            continue
        pid = match.group(2)
        if pid is not None and pid_alive(int(pid)):
            continue  # a save in progress in another process
        if pid is None and time.time() - leftover.stat().st_mtime < max_age_s:
            continue
        if match.group(1) == "old" and not path.exists():
            os.replace(leftover, path)
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    return removed


def generate_world(
    profile: str = "tiny", seed: int = 0, effects: Effects | None = None, **overrides: object
) -> World:
    """Generate a world; same ``(profile, seed, effects, overrides)`` gives identical frames.

    ``overrides`` set any :class:`WorldConfig` field, e.g. ``n_users=1000`` or ``n_days=30``.
    """
    cfg = resolve_config(profile, seed, effects, **overrides)
    cat = build_catalog(cfg)
    users = build_users(cfg, cat)
    rows = simulate_sessions(cfg, cat, users)
    events, event_noise = corrupt_and_assemble(cfg, cat, rows)
    items = items_frame(cat)
    truth = {**truth_frames(users), "song_style": song_style_frame(cat), "event_noise": event_noise}
    return World(
        config=cfg,
        events=events,
        items=items,
        users=users_frame(cfg, users),
        triples=triples_frame(items, cat),
        cross_business=cross_business_frame(cfg, users),
        truth=truth,
    )
