"""Numeric epoch timestamps: unit detection and a plausible range, so seconds never pass as milliseconds.

An epoch-seconds value read as milliseconds lands in January 1970 (1.7e9 ms = 1970-01-20), and one read
as nanoseconds is a few seconds after 1970; both look like valid dates. :func:`epoch_to_ts` therefore
takes the unit from ``unit`` or, when it is not given, from the magnitude of the column's median
(a listening log's clock times are after 1990: below 1e11 they are seconds, below 1e14 milliseconds,
below 1e17 microseconds, else nanoseconds), and rejects every value outside
``PLAUSIBLE_TS`` in that unit (reason ``ts_out_of_range``), e.g. a row written in another unit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from musicrecall.io.errors import InputError

PLAUSIBLE_TS = (datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
UNITS_MS: dict[str, float] = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_TS_DTYPE = pl.Datetime("ms", "UTC")

# Timestamp formats accepted for string timestamps, tried in order. Formats without an offset are
# read as UTC. ``%.f`` also matches "no fractional part".
TS_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def parse_ts(expr: pl.Expr) -> pl.Expr:
    """Parse an ISO-8601-like string expression to ``Datetime("ms", "UTC")``; unparseable -> null.

    Strings with a ``Z`` or a numeric offset are converted to UTC; strings without one are taken as
    UTC. Callers must turn the resulting nulls into rejections (or errors), never keep them silently.
    """
    s = expr.str.strip_chars()
    return pl.coalesce(
        [s.str.to_datetime(fmt, time_unit="ms", time_zone="UTC", strict=False) for fmt in TS_FORMATS]
    )


def detect_unit(values: pl.Series) -> str | None:
    """``"s"``, ``"ms"``, ``"us"`` or ``"ns"`` from the median magnitude of the finite values (None if none)."""
    v = values.cast(pl.Float64, strict=False)
    v = v.filter(v.is_finite())
    if v.len() == 0:
        return None
    med = float(v.abs().median())  # type: ignore[arg-type]
    return "s" if med < 1e11 else "ms" if med < 1e14 else "us" if med < 1e17 else "ns"


def epoch_to_ts(
    values: pl.Series, unit: str | None, path: Path | str, column: str
) -> tuple[pl.Series, pl.Series]:
    """Convert numeric epoch values to ``Datetime("ms", "UTC")``; return ``(ts, reason)``.

    ``reason`` is ``"bad_ts"`` for null / non-finite values, ``"ts_out_of_range"`` for values outside
    :data:`PLAUSIBLE_TS` in the unit, else null (and ``ts`` is null wherever ``reason`` is set).
    Raises :class:`InputError` naming ``path`` and ``column`` for an unknown ``unit``.
    """
    if unit is not None and unit not in UNITS_MS:
        raise InputError(path, None, f"column {column!r}: ts_unit {unit!r} is not one of {', '.join(UNITS_MS)}")
    v = values.cast(pl.Float64, strict=False)
    unit = unit or detect_unit(v) or "ms"
    ms = v * UNITS_MS[unit]
    lo, hi = (t.timestamp() * 1000 for t in PLAUSIBLE_TS)
    finite = v.is_not_null() & v.is_finite()
    ok = finite & (ms >= lo) & (ms < hi)
    reason = (pl.DataFrame({"finite": finite, "ok": ok}).select(
        pl.when(~pl.col("finite")).then(pl.lit("bad_ts")).when(~pl.col("ok")).then(pl.lit("ts_out_of_range"))
        .alias("ts_reason")).to_series())
    ms_int = pl.Series(values.name, ms.round(0)).set(~ok.fill_null(False), None).cast(pl.Int64)
    ts = pl.from_epoch(ms_int, time_unit="ms").dt.replace_time_zone("UTC").cast(_TS_DTYPE)
    return ts, reason


# A play or a track longer than a day is not a listening record: 1e13 ms (317 years), 2**63-1 or 1e20
# would overflow sums and wrap in int64 arithmetic later; they are rejected as ``*_out_of_range``.
PLAY_MS_MAX = 86_400_000


def exact_int(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """``values`` (any dtype) as exact Int64: ``(ints, ok)``; ``ok`` is False for non-integral / non-numeric.

    Strings are stripped; ``"12"`` and ``"12.0"`` are 12, ``"2.5"``, ``"abc"``, ``"1e400"`` are not ok.
    Floats must be integral and within int64. Nulls are null with ``ok`` True (missing is not bad).
    """
    s = values
    if s.dtype == pl.Boolean:
        return pl.Series(s.name, [None] * s.len(), dtype=pl.Int64), s.is_null()
    if s.dtype.is_integer():
        return s.cast(pl.Int64, strict=False), s.is_null() | s.cast(pl.Int64, strict=False).is_not_null()
    if s.dtype == pl.String:
        txt = s.str.strip_chars().replace("", None)
        as_int = txt.cast(pl.Int64, strict=False)
        as_f = txt.cast(pl.Float64, strict=False)
    elif s.dtype.is_float() or s.dtype.is_decimal():
        txt = s
        as_int = pl.Series(s.name, [None] * s.len(), dtype=pl.Int64)
        as_f = s.cast(pl.Float64)
    else:
        return pl.Series(s.name, [None] * s.len(), dtype=pl.Int64), s.is_null()
    integral = as_f.is_not_null() & as_f.is_finite() & (as_f == as_f.round(0)) & (as_f.abs() < 2.0**63)
    from_f = pl.Series(s.name, as_f).set(~integral.fill_null(False), None).cast(pl.Int64, strict=False)
    out = as_int.fill_null(from_f)
    ok = txt.is_null() | out.is_not_null()
    return out.alias(s.name), ok


def ms_values(values: pl.Series, name: str = "play_ms") -> tuple[pl.Series, pl.Series]:
    """A millisecond count column: ``(Int64 values, reason)``.

    ``reason`` is ``bad_<name>`` for a value that is not an exact integer (text, 2.5, true),
    ``<name>_out_of_range`` for a number whose magnitude exceeds :data:`PLAY_MS_MAX` (a day; e.g. 1e13,
    2**63-1, 1e20), else null. Null stays null (unknown). Negative values within range are kept:
    cleaning quarantines them as ``negative_play_ms``.
    """
    ints, ok = exact_int(values)
    if values.dtype == pl.String:
        as_f = values.str.strip_chars().cast(pl.Float64, strict=False)
    elif values.dtype.is_numeric():
        as_f = values.cast(pl.Float64)
    else:
        as_f = pl.Series(values.name, [None] * values.len(), dtype=pl.Float64)
    big = as_f.is_not_null() & (as_f.abs() > PLAY_MS_MAX)
    # compare the exact integer too: 2**63-1 as a float rounds, as an int it is exact
    big = big | (ints.is_not_null() & (ints.abs() > PLAY_MS_MAX)).fill_null(False)
    reason = pl.DataFrame({"ok": ok, "big": big.fill_null(False)}).select(
        pl.when(pl.col("big")).then(pl.lit(f"{name}_out_of_range"))
        .when(~pl.col("ok")).then(pl.lit(f"bad_{name}")).alias("reason")).to_series()
    return ints.set(reason.is_not_null(), None), reason


def text_ts(values: pl.Series, unit: str | None, path: Path, column: str) -> tuple[pl.Series, pl.Series]:
    """A time column of any dtype as ``Datetime("ms","UTC")`` with a ``bad_ts`` / ``ts_out_of_range`` reason."""
    s = values
    if isinstance(s.dtype, pl.Datetime):
        ts = (s.dt.replace_time_zone("UTC") if s.dtype.time_zone is None else s.dt.convert_time_zone("UTC"))
        ts = ts.cast(pl.Datetime("ms", "UTC"))
    elif s.dtype == pl.Date:
        ts = s.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    elif s.dtype.is_numeric():
        return epoch_to_ts(s, unit, path, column)
    elif s.dtype == pl.String:
        txt = s.str.strip_chars()
        num = txt.cast(pl.Float64, strict=False)
        numeric = num.is_not_null()
        if numeric.any():
            ets, ereason = epoch_to_ts(num.filter(numeric), unit, path, column)
            iso_ts = pl.select(parse_ts(pl.lit(txt))).to_series()
            ts = iso_ts.scatter(numeric.arg_true(), ets)
            reason_num = pl.Series("ts_reason", [None] * s.len(), dtype=pl.String).scatter(numeric.arg_true(), ereason)
        else:
            ts = pl.select(parse_ts(pl.lit(txt))).to_series()
            reason_num = pl.Series("ts_reason", [None] * s.len(), dtype=pl.String)
        lo, hi = PLAUSIBLE_TS
        out = pl.DataFrame({"ts": ts, "rn": reason_num, "num": numeric}).select(
            pl.when(pl.col("num")).then(pl.col("rn"))
            .when(pl.col("ts").is_null()).then(pl.lit("bad_ts"))
            .when((pl.col("ts") < lo) | (pl.col("ts") >= hi)).then(pl.lit("ts_out_of_range"))
            .alias("ts_reason")).to_series()
        return ts.set(out.is_not_null(), None), out
    else:
        ts = pl.Series(s.name, [None] * s.len(), dtype=pl.Datetime("ms", "UTC"))
    lo, hi = PLAUSIBLE_TS
    reason = pl.DataFrame({"ts": ts}).select(
        pl.when(pl.col("ts").is_null()).then(pl.lit("bad_ts"))
        .when((pl.col("ts") < lo) | (pl.col("ts") >= hi)).then(pl.lit("ts_out_of_range")).alias("ts_reason")
    ).to_series()
    return ts.set(reason.is_not_null(), None), reason
