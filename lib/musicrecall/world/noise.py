"""Row-level corruption (clock skew, invalid rows), duplicates, final ordering and the events frame."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..schema import ACTIONS, ENTRIES, EVENTS_SCHEMA
from .catalog import Catalog
from .profiles import DAY_MS, WorldConfig
from .sessions import CLOCK_SKEW, DUPLICATE, NOISE_KINDS, REASONS

NEG_PLAY, BEYOND, UNKNOWN_SONG, MISSING_USER, NULL_TS = 6, 7, 8, 9, 10
_NULL = np.iinfo(np.int64).max  # null timestamp: sorts last
# One output row before the time sort (ts travels separately as the sort key).
_REC = np.dtype(
    [("user", np.int32), ("song", np.int32), ("play_ms", np.int32), ("song_ms", np.int32), ("entry", np.int8),
     ("action", np.int8), ("rs", np.int8), ("re", np.int8), ("skipped", np.bool_), ("noise", np.int8)]
)  # fmt: skip


def _strings(cats: tuple[str, ...], codes: np.ndarray, name: str) -> pl.Series:
    """String column from small integer codes; code -1 becomes null.

    Why: one gather from a tiny lookup series shares the category strings instead of building
    millions of Python strings; the trailing ``None`` is what index -1 (polars counts from the end) hits.
    """
    return pl.Series(name, [*cats, None], dtype=pl.String).gather(codes)


def _null_at(s: pl.Series, positions: np.ndarray) -> pl.Series:
    """``s`` with nulls at ``positions`` (few rows: an in-place scatter, not a full when/then pass)."""
    return s.scatter(positions, None) if len(positions) else s


def _corrupt(cfg: WorldConfig, cat: Catalog, rows: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """In place: corrupt distinct genuine rows, one noise kind per row; adds ``rows["song"]`` (public id).

    Null markers: user -1, ts ``_NULL``.
    """
    noise, ts, play_ms = rows["noise"], rows["ts"], rows["play_ms"]
    n = len(noise)
    rows["song"] = song = cat.song_id[rows.pop("li")]
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
    rows["user"][sel[MISSING_USER]] = -1
    ts[sel[NULL_TS]] = _NULL


def _stable_argsort(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, key[order])`` of a stable sort of int64 ``key`` (overwritten: it becomes ``key[order]``).

    Why: numpy's SIMD sort of plain uint64 is ~5x faster than any arg sort (numpy's or polars').
    Packing ``(key - min, index)`` into one uint64 makes that plain sort stable (ties break by
    index) and the permutation comes back from the low bits; falls back to polars' stable arg sort
    when the packed key would not fit in 64 bits.
    """
    n = len(key)
    lo = int(key.min()) if n else 0
    idx_bits = max(1, (n - 1).bit_length())
    if n and (int(key.max()) - lo).bit_length() + idx_bits > 64:  # pragma: no cover - huge worlds only
        order = pl.DataFrame({"k": key}).select(pl.arg_sort_by("k", maintain_order=True)).to_series()
        order = order.to_numpy().astype(np.int64)
        return order, key[order]
    key -= lo  # in place (the caller's scratch array): every extra 8-byte pass over 22M rows counts
    packed = key.view(np.uint64)
    packed <<= np.uint64(idx_bits)
    for i in range(0, n, 1 << 22):  # blockwise, so the index ramp needs no full-size temporary
        packed[i : i + (1 << 22)] |= np.arange(i, min(n, i + (1 << 22)), dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64((1 << idx_bits) - 1)).view(np.int64)
    packed >>= np.uint64(idx_bits)
    key += lo
    return order, key


def _sorted_order(
    cfg: WorldConfig, rows: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output rows in time order (nulls last): the original rows plus appended duplicates.

    Duplicates are exact copies of clean genuine rows, appended so that the stable sort keeps each
    copy after its original. Returns ``(take, is_copy, ts)``: the source row of every output row,
    whether it is a duplicate copy, and its ``ts`` (``_NULL`` for nulls).
    """
    noise, ts = rows["noise"], rows.pop("ts")
    n = len(noise)
    clean = np.flatnonzero(noise == 0)
    dup = np.sort(rng.choice(clean, size=min(round(cfg.duplicate_rate * n), len(clean)), replace=False))
    key = np.concatenate([ts, ts[dup]])
    del ts
    null = key == _NULL
    key[null] = key.max(initial=0, where=~null) + 1  # sorts after every real time, fits the packing
    take, ts_sorted = _stable_argsort(key)
    is_copy = take >= n
    take[is_copy] = dup[take[is_copy] - n]
    ts_sorted[len(ts_sorted) - int(null.sum()) :] = _NULL
    return take, is_copy, ts_sorted


def _records(rows: dict[str, np.ndarray]) -> np.ndarray:
    """Pack the row columns into one record array (consuming ``rows``).

    Why: the time sort gathers rows in random order; one gather of 22-byte records costs about as
    much as one gather of a single column, so this is ~8x cheaper than gathering column by column.
    """
    n = len(rows["noise"])
    rec = np.empty(n, dtype=_REC)
    for name in _REC.names:
        rec[name] = rows.pop(name)
    return rec


def corrupt_and_assemble(
    cfg: WorldConfig, cat: Catalog, rows: dict[str, np.ndarray]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply row corruption and duplicates, order by ts (nulls last) and build the events frame.

    ``rows`` (from :func:`simulate_sessions`) is consumed: columns are modified and dropped as the
    output is built, which keeps peak memory near the size of the output. Returns ``(events, event_noise)``.
    """
    rng = np.random.default_rng([cfg.seed, 20])
    _corrupt(cfg, cat, rows, rng)
    take, is_copy, ts = _sorted_order(cfg, rows, rng)
    out = np.take(_records(rows), take)  # np.take: fancy indexing of records is ~5x slower
    del take
    # split the sorted records into plain columns, so each can be freed once converted
    sorted_rows = {name: np.ascontiguousarray(out[name]) for name in _REC.names}
    del out
    sorted_rows["noise"][is_copy] = DUPLICATE
    sorted_rows["ts"] = ts
    del ts
    events = pl.DataFrame(_event_columns(cfg, sorted_rows)).with_columns(
        pl.lit(cfg.source_file, dtype=pl.String).alias("source_file"),
        pl.int_range(0, len(is_copy), dtype=pl.Int64).alias("source_row"),
    )
    assert events.schema == pl.Schema(EVENTS_SCHEMA), events.schema
    event_noise = pl.DataFrame(
        [
            events.get_column("source_row"),  # shares the buffer: no second 8-byte column
            _strings(NOISE_KINDS, sorted_rows.pop("noise") - 1, "noise"),  # genuine (0) -> -1 -> null
        ]
    )
    return events, event_noise


def _event_columns(cfg: WorldConfig, rows: dict[str, np.ndarray]) -> list[pl.Series]:
    """Events columns (all but source_file / source_row) from time-sorted rows, popping each one used.

    Each numpy column is dropped as soon as its polars column exists, so the peak stays near the
    size of the output frame.
    """

    def ints(name: str, values: np.ndarray) -> pl.Series:
        return pl.Series(name, values).cast(pl.Int64)

    ts = rows.pop("ts")
    null_ts = np.flatnonzero(ts == _NULL)  # all at the end: nulls sort last
    ts[: len(ts) - len(null_ts)] += int(cfg.start.timestamp() * 1000)
    cols = {"ts": _null_at(pl.Series("ts", ts).cast(pl.Datetime("ms", "UTC")), null_ts)}
    del ts
    user = rows.pop("user")
    cols["user_id"] = _null_at(ints("user_id", user), np.flatnonzero(user < 0))
    del user
    cols["song_id"] = ints("song_id", rows.pop("song"))
    cols["play_ms"] = ints("play_ms", rows.pop("play_ms"))
    cols["song_ms"] = ints("song_ms", rows.pop("song_ms"))
    cols["entry"] = _strings(ENTRIES, rows.pop("entry"), "entry")
    cols["action"] = _strings(ACTIONS, rows.pop("action"), "action")
    cols["reason_start"] = _strings(REASONS, rows.pop("rs"), "reason_start")
    cols["reason_end"] = _strings(REASONS, rows.pop("re"), "reason_end")
    cols["skipped"] = pl.Series("skipped", rows.pop("skipped"), dtype=pl.Boolean)
    return [cols[name] for name in EVENTS_SCHEMA if name in cols]
