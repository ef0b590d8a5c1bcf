"""Importers for order-only listening data: per-user sequences and ``user item`` lines.

Most public sequential-recommendation datasets hold the order of plays and nothing else. Two layouts:

* :func:`import_sequences`: one line per user, ``user,song:song:song:...`` (30Music as published with
  the GASM code, ``../shared/data/30music/sequences.txt``). A user may appear on several lines; the
  lines continue the user's sequence in file order.
* :func:`import_user_item`: one play per line, ``user item`` separated by whitespace or a tab, lines in
  listening order (the SASRec / RecBole convention). A RecBole ``.inter`` header
  (``user_id:token item_id:token [rating:float] [timestamp:float]``) or a plain header naming the
  columns is recognised; with a ``timestamp`` column the times are real (``time_kind="clock"``).

Without a clock the dataset gets **ordinal time**: ``ts = ORDINAL_EPOCH + p seconds`` where ``p`` is the
play's 0-based position in its user's sequence, so time order is listening order, and
``meta["time_kind"] == "ordinal"`` records that the times are positions, not a clock ("order only, no
clock"). ``play_ms`` is null (unknown). Song and user ids of any form become contiguous ``0..n-1``
ids (numeric source ids keep their order) and the source id is kept in ``song_key`` / ``user_key``.
``catalog`` (a :class:`~musicrecall.io.catalog.Catalog` or a path for
:func:`~musicrecall.io.catalog.import_catalog`) adds items and triples; catalogue songs nobody played
are kept as items.

**Records and accounting.** A record is one play; a line that cannot be read is one record. So for a
sequences file ``rows_read`` = plays on readable lines + unreadable lines, and ``source_row`` is the
record's 0-based index in that count (the rejected ``raw`` names the file line). Reasons:

=================  =======================================================================
``bad_encoding``   the line holds bytes that are not UTF-8 (``raw`` shows them as ``\\x..``): each play
                   on it is one quarantined record (a line that cannot be split, one record)
``blank_line``     an empty line inside the file
``bad_format``     no ``,`` between user and songs (sequences) / wrong number of fields
``missing_user``   empty user id
``no_items``       a user with no songs after the ``,``
``empty_item``     an empty song id between two ``:`` (that one play is rejected)
``bad_ts``         (user-item with a timestamp column) not a number
``ts_out_of_range``  timestamp outside 1990-01-01 .. 2100-01-01 in the detected / given unit
``truncated``      the file does not end with a line break, so its last record may be cut: the
                   last play (sequences) or the last line (user-item) is rejected, never kept
=================  =======================================================================

With ``on_error="raise"`` (default) the first record whose *structure* is broken (``bad_encoding``,
``blank_line``, ``bad_format``, ``truncated``) raises :class:`InputError` naming the file, the line and
the reason; ``"quarantine"`` rejects it and goes on with the next line. Records with a bad *value*
(``missing_user``, ``no_items``, ``empty_item``, ``bad_ts``, ``ts_out_of_range``) are rejected with
their reason in both modes, as the Spotify importers do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from musicrecall.io.catalog import Catalog, import_catalog
from musicrecall.io.errors import InputError
from musicrecall.io.generic import (
    FILES_SCHEMA,
    REJECTED_SCHEMA,
    ImportResult,
    OnError,
    PathLike,
    assemble_result,
)
from musicrecall.io.text import ends_with_newline, read_lines
from musicrecall.io.timeconv import epoch_to_ts

# Positions are written as seconds from the Unix epoch: no music log is that old, so
# musicrecall.evaluation.detect_time_kind also recognises the data as ordinal without meta.json.
ORDINAL_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
USER_NAMES = ("user_id", "user", "userid", "user_key", "uid")
ITEM_NAMES = ("item_id", "item", "song_id", "song", "song_key", "track_id", "track", "iid")
TS_NAMES = ("timestamp", "ts", "time", "datetime")


def check_on_error(on_error: str) -> None:
    """``ValueError`` unless ``on_error`` is ``"raise"`` or ``"quarantine"``."""
    if on_error not in ("raise", "quarantine"):
        raise ValueError(f"on_error must be 'raise' or 'quarantine', not {on_error!r}")


def as_catalog(catalog: Catalog | PathLike | None) -> Catalog | None:
    """A :class:`Catalog` as it is, a path read with :func:`import_catalog`, or None."""
    if catalog is None or isinstance(catalog, Catalog):
        return catalog
    return import_catalog(catalog)


def ordinal_ts(user_col: str = "user_key") -> pl.Expr:
    """``ORDINAL_EPOCH`` + the row's 0-based position among its user's rows (frame order), in seconds."""
    pos = pl.int_range(pl.len(), dtype=pl.Int64).over(user_col)
    return (pl.lit(ORDINAL_EPOCH).dt.cast_time_unit("ms") + pl.duration(seconds=pos)).alias("ts")


def ordinal_meta(source: str, path: Path) -> dict[str, Any]:
    """The ``meta`` of an order-only import: ``time_kind="ordinal"`` and how ``ts`` was made."""
    return {"time_kind": "ordinal", "source": source, "file": path.name,
            "ordinal_epoch": ORDINAL_EPOCH.isoformat(),
            "ordinal_note": "order only, no clock: ts = ordinal_epoch + the play's position in its user's "
                            "sequence, in seconds; play_ms unknown"}


# Reasons that mean the file itself is broken (``on_error="raise"`` raises on them); the others are
# values of a well-formed record (an empty id, a bad time) and are rejected per record in both modes.
STRUCTURAL = ("bad_encoding", "blank_line", "bad_format", "truncated", "malformed_json", "duplicate_key")


def raise_first(path: Path, rejected: pl.DataFrame) -> None:
    """``on_error="raise"``: an :class:`InputError` for the first structural rejection, if any."""
    broken = rejected.filter(pl.col("reason").is_in(STRUCTURAL))
    if broken.height == 0:
        return
    first = broken.sort("source_row").row(0, named=True)
    line = first.get("line_no")
    where = f" (file line {line + 1})" if line is not None else ""
    raise InputError(path, int(first["source_row"]), f"{first['reason']}{where}: {str(first['raw'])[:200]!r}; "
                     f"{broken.height} broken record(s) in the file; on_error='quarantine' keeps the good ones "
                     f"and lists these in rejected.parquet")


def _line_reasons(df: pl.DataFrame) -> pl.Expr:
    return (pl.when(pl.col("raw").is_not_null()).then(pl.lit("bad_encoding"))
            .when(pl.col("line").str.strip_chars() == "").then(pl.lit("blank_line")))


def import_sequences(
    path: PathLike, catalog: Catalog | PathLike | None = None, on_error: OnError = "raise",
    sep: str = ",", item_sep: str = ":",
) -> ImportResult:
    """Import ``user<sep>song<item_sep>song...`` lines (one user's plays in listening order per line).

    Args:
        path: the sequences file (UTF-8 text).
        catalog: a catalogue (path or :class:`Catalog`) giving items and triples.
        on_error: ``"raise"`` or ``"quarantine"`` (see the module docstring).
        sep, item_sep: the separators between user and songs and between songs.

    Returns:
        An :class:`ImportResult` with ordinal time (``meta["time_kind"] == "ordinal"``).
    """
    check_on_error(on_error)
    p = Path(path)
    lines = read_lines(p)
    # a line with bad bytes is parsed from its escaped text, so each of its plays is one quarantined record
    df = lines.with_columns(pl.coalesce("line", "raw").str.strip_chars().alias("s"),
                            pl.col("raw").is_not_null().alias("bad_bytes"))
    df = df.with_columns(pl.col("s").str.splitn(sep, 2).struct.rename_fields(["u", "rest"]).alias("parts")).unnest("parts")
    df = df.with_columns(pl.col("u").str.strip_chars(), pl.col("rest").str.strip_chars())
    df = df.with_columns(
        pl.coalesce(
            pl.when(pl.col("s") == "").then(pl.lit("blank_line")),
            pl.when(pl.col("rest").is_null()).then(pl.lit("bad_format")),
            pl.when(pl.col("u") == "").then(pl.lit("missing_user")),
            pl.when(pl.col("rest") == "").then(pl.lit("no_items")),
        ).alias("reason")
    ).with_columns(
        pl.when(pl.col("reason").is_null()).then(pl.col("rest").str.split(item_sep)).alias("songs")
    ).with_columns(
        pl.when(pl.col("reason").is_null()).then(pl.col("songs").list.len()).otherwise(1)
        .cast(pl.Int64).alias("n_rows")
    ).with_columns((pl.col("n_rows").cum_sum() - pl.col("n_rows")).alias("offset"))
    source_file = p.name
    bad_lines = df.filter(pl.col("reason").is_not_null()).select(
        pl.lit(source_file).alias("source_file"), pl.col("offset").alias("source_row"),
        pl.when(pl.col("bad_bytes")).then(pl.lit("bad_encoding")).otherwise("reason").alias("reason"),
        pl.format("file line {}: {}", pl.col("line_no") + 1, pl.coalesce("raw", "line")).alias("raw"), "line_no")
    plays = (
        df.filter(pl.col("reason").is_null())
        .select("line_no", "offset", "bad_bytes", pl.col("u").alias("user_key"), "songs",
                pl.int_ranges(0, pl.col("songs").list.len(), dtype=pl.Int64).alias("pos"))
        .explode("songs", "pos")
        .with_columns((pl.col("offset") + pl.col("pos")).alias("source_row"),
                      pl.col("songs").str.strip_chars().alias("song_key"))
    )
    cut = not ends_with_newline(p) and plays.height > 0 and df.get_column("reason")[-1] is None
    # no line break at the end: the file may be cut inside the last song id ("2702" of "27024")
    is_last = pl.int_range(pl.len()) == plays.height - 1
    plays = plays.with_columns(
        pl.when(pl.col("bad_bytes")).then(pl.lit("bad_encoding"))
        .when(pl.col("song_key") == "").then(pl.lit("empty_item"))
        .when(is_last & pl.lit(cut)).then(pl.lit("truncated")).alias("reason"))
    bad_plays = plays.filter(pl.col("reason").is_not_null()).select(
        pl.lit(source_file).alias("source_file"), "source_row", "reason",
        pl.format("file line {}, play {} of user {}: {}{}", pl.col("line_no") + 1, "pos", "user_key",
                  pl.col("song_key"), pl.when(pl.col("bad_bytes")).then(pl.lit(" (the line holds bytes that are "
                                                                              "not UTF-8, shown as \\xNN)"))
                  .otherwise(pl.lit(""))).alias("raw"),
        "line_no")
    rejected = pl.concat([bad_lines, bad_plays]).sort("source_row")
    if on_error == "raise":
        raise_first(p, rejected)
    ok = plays.filter(pl.col("reason").is_null()).sort("source_row").select(
        "user_key", "song_key", "source_row", pl.lit(source_file).alias("source_file"),
    ).with_columns(ordinal_ts())
    n_rows = int(df.get_column("n_rows").sum())
    files = pl.DataFrame({"source_file": [source_file], "user_key": [None], "rows_read": [n_rows],
                          "note": [f"{df.height} line(s); order only (ordinal time)"]}, schema=FILES_SCHEMA)
    users = ok.get_column("user_key").unique().to_list()
    return assemble_result(ok, rejected.select(list(REJECTED_SCHEMA)), files, users, as_catalog(catalog),
                           ordinal_meta("sequences", p))


def _header_names(tokens: list[str]) -> list[str] | None:
    """Column names if ``tokens`` is a header line (RecBole ``name:type`` or known names), else None."""
    names = [t.split(":", 1)[0].strip().lower() for t in tokens]
    typed = all(":" in t for t in tokens) and all(t.split(":", 1)[1] in ("token", "float", "token_seq", "float_seq")
                                                  for t in tokens)
    known = set(USER_NAMES) | set(ITEM_NAMES) | set(TS_NAMES) | {"rating"}
    if typed or (names and all(n in known for n in names) and any(n in USER_NAMES for n in names)):
        return names
    return None


def import_user_item(
    path: PathLike, catalog: Catalog | PathLike | None = None, on_error: OnError = "raise",
    ts_unit: str | None = None,
) -> ImportResult:
    """Import ``user item`` lines in listening order (SASRec / RecBole ``.inter``); see the module docstring.

    Args:
        path: the text file; fields separated by a tab (if the first line has one) or by whitespace.
        catalog: a catalogue (path or :class:`Catalog`) giving items and triples.
        on_error: ``"raise"`` or ``"quarantine"``.
        ts_unit: unit of a ``timestamp`` column (``"s"``, ``"ms"``, ``"us"``, ``"ns"``); default: detected
            from the magnitude of the values (see :func:`musicrecall.io.timeconv.epoch_to_ts`).

    Every data line must have as many fields as the first (header or first data line); a line with
    another count is ``bad_format``. Without a header the first two fields are user and item and any
    further fields are ignored (recorded in ``meta``).
    """
    check_on_error(on_error)
    p = Path(path)
    lines = read_lines(p)
    first_good = lines.filter(pl.col("raw").is_null() & (pl.col("line").str.strip_chars() != "")).head(1)
    if first_good.height == 0:
        raise InputError(p, None, "no readable line")
    first_line = first_good.get_column("line")[0]
    tab = "\t" in first_line
    split = (lambda e: e.str.strip_chars("\r\n").str.split("\t")) if tab else (  # noqa: E731
        lambda e: e.str.strip_chars().str.replace_all(r"\s+", " ").str.split(" "))
    first_tokens = pl.select(split(pl.lit(first_line))).item().to_list()
    names = _header_names(first_tokens)
    meta_extra: dict[str, Any] = {}
    if names is not None:
        header_no = int(first_good.get_column("line_no")[0])
        lines = lines.filter(pl.col("line_no") != header_no)
        u_i = next((names.index(n) for n in USER_NAMES if n in names), None)
        i_i = next((names.index(n) for n in ITEM_NAMES if n in names), None)
        t_i = next((names.index(n) for n in TS_NAMES if n in names), None)
        if u_i is None or i_i is None:
            raise InputError(p, None, f"header {first_line!r} names no user column ({'/'.join(USER_NAMES)}) or no "
                             f"item column ({'/'.join(ITEM_NAMES)})")
        meta_extra["columns"] = names
    else:
        u_i, i_i, t_i = 0, 1, None
        if len(first_tokens) > 2:
            meta_extra["ignored_fields"] = f"{len(first_tokens) - 2} field(s) after user and item"
    n_fields = len(first_tokens)
    source_file = p.name
    df = lines.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
    df = df.with_columns(split(pl.col("line")).alias("f"))
    df = df.with_columns(
        pl.col("f").list.get(u_i, null_on_oob=True).str.strip_chars().alias("user_key"),
        pl.col("f").list.get(i_i, null_on_oob=True).str.strip_chars().alias("song_key"),
        (pl.col("f").list.get(t_i, null_on_oob=True).str.strip_chars() if t_i is not None
         else pl.lit(None, dtype=pl.String)).alias("ts_raw"),
    )
    reason = pl.coalesce(
        _line_reasons(df),
        pl.when(pl.col("f").list.len() != n_fields).then(pl.lit("bad_format")),
        pl.when(pl.col("user_key") == "").then(pl.lit("missing_user")),
        pl.when(pl.col("song_key") == "").then(pl.lit("empty_item")),
    )
    df = df.with_columns(reason.alias("reason"))
    if df.height and not ends_with_newline(p):  # the last line may be cut mid-field
        df = df.with_columns(pl.when(pl.int_range(pl.len()) == df.height - 1).then(pl.lit("truncated"))
                             .otherwise(pl.col("reason")).alias("reason"))
    if t_i is not None:
        df = df.with_columns(pl.col("ts_raw").cast(pl.Float64, strict=False).alias("ts_num"))
        ts, ts_reason = epoch_to_ts(df.get_column("ts_num"), ts_unit, p, "timestamp")
        df = df.with_columns(ts.alias("ts"), ts_reason).with_columns(
            pl.coalesce("reason", pl.when(pl.col("ts_num").is_null()).then(pl.lit("bad_ts")), "ts_reason")
            .alias("reason"))
        meta = {"time_kind": "clock", "source": "user-item", "file": p.name, **meta_extra}
    else:
        meta = {**ordinal_meta("user-item", p), **meta_extra}
    rejected = df.filter(pl.col("reason").is_not_null()).select(
        pl.lit(source_file).alias("source_file"), "source_row", "reason", pl.format("file line {}: {}", pl.col("line_no") + 1, pl.coalesce("raw", "line")).alias("raw"),
        "line_no")
    if on_error == "raise":
        raise_first(p, rejected)
    ok = df.filter(pl.col("reason").is_null()).select(
        "user_key", "song_key", "source_row", pl.lit(source_file).alias("source_file"),
        *(["ts"] if t_i is not None else []))
    if t_i is None:
        ok = ok.with_columns(ordinal_ts())
    files = pl.DataFrame({"source_file": [source_file], "user_key": [None], "rows_read": [df.height],
                          "note": ["header line not counted" if names is not None else None]}, schema=FILES_SCHEMA)
    users = ok.get_column("user_key").unique().to_list()
    return assemble_result(ok, rejected.select(list(REJECTED_SCHEMA)), files, users, as_catalog(catalog), meta)
