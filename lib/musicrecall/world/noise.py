"""Row-level corruption (clock skew, invalid rows), duplicates, final ordering and the events frame."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..schema import ACTIONS, ENTRIES, EVENTS_SCHEMA
from .catalog import Catalog
from .profiles import DAY_MS, WorldConfig
from .sessions import CLOCK_SKEW, DUPLICATE, NOISE_KINDS, REASONS

NEG_PLAY, BEYOND, UNKNOWN_SONG, MISSING_USER, NULL_TS = 6, 7, 8, 9, 10
_NULL = np.iinfo(np.int64).max


def _gather(cats: tuple[str, ...], codes: np.ndarray, name: str) -> pl.Series:
    """String column from small integer codes; negative codes become null."""
    idx = pl.Series(name, codes.astype(np.int32))
    out = pl.Series(name, cats, dtype=pl.String).gather(idx.clip(0, None))
    if (codes < 0).any():
        out = pl.select(pl.when(pl.lit(idx) >= 0).then(pl.lit(out))).to_series().alias(name)
    return out


def _nullable(name: str, values: np.ndarray, dtype: pl.DataType) -> pl.Series:
    """Int64 values where ``_NULL`` marks null, cast to ``dtype``."""
    s = pl.Series(name, values, dtype=pl.Int64)
    if (values == _NULL).any():
        s = pl.select(pl.when(pl.lit(s) != _NULL).then(pl.lit(s))).to_series().alias(name)
    return s.cast(dtype)


def corrupt_and_assemble(
    cfg: WorldConfig, cat: Catalog, rows: dict[str, np.ndarray]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply row corruption and duplicates, order by ts (nulls last) and build the events frame.

    Returns ``(events, event_noise)``.
    """
    rng = np.random.default_rng([cfg.seed, 20])
    noise = rows["noise"].copy()
    user = rows["user"].astype(np.int64)
    song = cat.song_id[rows["li"]]
    ts = rows["ts"].astype(np.int64)
    play_ms = rows["play_ms"].astype(np.int64).copy()
    n = len(noise)
    # corrupt distinct genuine rows in place, one noise kind per row
    genuine = np.flatnonzero(noise == 0)
    counts = [round(cfg.clock_skew_rate * n)] + [round(cfg.invalid_rate * n)] * 5
    picked = rng.choice(genuine, size=min(sum(counts), len(genuine)), replace=False)
    bounds = np.cumsum([0, *counts])
    kinds = (CLOCK_SKEW, NEG_PLAY, BEYOND, UNKNOWN_SONG, MISSING_USER, NULL_TS)
    sel = {k: picked[bounds[i] : bounds[i + 1]] for i, k in enumerate(kinds)}
    for k, r in sel.items():
        noise[r] = k
    r = sel[CLOCK_SKEW]
    ts[r] += (rng.uniform(1.0, 5.0, len(r)) * 365.25 * DAY_MS).astype(np.int64)
    r = sel[NEG_PLAY]
    play_ms[r] = -rng.integers(1, 100_000, len(r))
    r = sel[BEYOND]
    play_ms[r] = (1.5 * rows["song_ms"][r] + 10_000).astype(np.int64) + rng.integers(1_000, 600_000, len(r))
    r = sel[UNKNOWN_SONG]
    song[r] = cat.n + rng.integers(0, cat.n, len(r))
    user[sel[MISSING_USER]] = _NULL
    ts[sel[NULL_TS]] = _NULL
    # duplicates: exact copies of clean genuine rows, appended so a stable sort keeps them after the original
    clean = np.flatnonzero(noise == 0)
    dup = np.sort(rng.choice(clean, size=min(round(cfg.duplicate_rate * n), len(clean)), replace=False))
    src = np.concatenate([np.arange(n), dup])
    noise = np.concatenate([noise, np.full(len(dup), DUPLICATE, np.int8)])
    start_ms = int(cfg.start.timestamp() * 1000)
    ts_abs = np.where(ts == _NULL, _NULL, ts + start_ms)[src]
    # stable sort, nulls (int64 max) last; polars' single-threaded sort is ~3x numpy's stable argsort
    key = pl.DataFrame({"k": ts_abs})
    order = key.select(pl.arg_sort_by("k", maintain_order=True)).to_series().to_numpy()
    take = src[order]
    noise = noise[order]
    m = len(take)
    events = pl.DataFrame(
        [
            _nullable("user_id", user[take], pl.Int64()),
            pl.Series("song_id", song[take], dtype=pl.Int64),
            _nullable("ts", ts_abs[order], pl.Datetime("ms", "UTC")),
            pl.Series("play_ms", play_ms[take], dtype=pl.Int64),
            pl.Series("song_ms", rows["song_ms"][take], dtype=pl.Int64),
            _gather(ENTRIES, rows["entry"][take], "entry"),
            _gather(ACTIONS, rows["action"][take], "action"),
            _gather(REASONS, rows["rs"][take], "reason_start"),
            _gather(REASONS, rows["re"][take], "reason_end"),
            pl.Series("skipped", rows["skipped"][take], dtype=pl.Boolean),
        ]
    ).with_columns(
        pl.lit(cfg.source_file, dtype=pl.String).alias("source_file"),
        pl.int_range(0, m, dtype=pl.Int64).alias("source_row"),
    )
    assert events.schema == pl.Schema(EVENTS_SCHEMA), events.schema
    event_noise = pl.DataFrame(
        [
            pl.Series("source_row", np.arange(m, dtype=np.int64)),
            _gather(NOISE_KINDS, noise.astype(np.int16) - 1, "noise"),
        ]
    )
    return events, event_noise
