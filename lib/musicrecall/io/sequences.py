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
``truncated``      the file does not end with a line break and its last record is incomplete: a
                   last line without ``,`` or songs, an empty last song (``u,1:``), a last user-item
                   line with too few fields or a bad value, or a character cut in half at the end.
                   A complete last record without a line break after it is kept (many tools write
                   files that way); a cut that leaves a complete-looking record ("270" of "27024")
                   cannot be told from it. The accounting note says which of the two it was.
=================  =======================================================================

Without a header, a ``user item`` file with a third field uses it as the clock when it is one
(numeric, never decreasing per user, epoch times: ``time_kind="clock"``, unit detected or
``ts_unit``); any other extra field is an :class:`InputError` naming file, row and column unless
``extra_columns="ignore"``.

With ``on_error="raise"`` (default) the first record whose *structure* is broken (``bad_encoding``,
``blank_line``, ``bad_format``, ``truncated``) raises :class:`InputError` naming the file, the line and
the reason; ``"quarantine"`` rejects it and goes on with the next line. Records with a bad *value*
(``missing_user``, ``no_items``, ``empty_item``, ``bad_ts``, ``ts_out_of_range``) are rejected with
their reason in both modes, as the Spotify importers do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

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
from musicrecall.io.text import TextFile, read_text
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


_CUT = " (last record, no line break after it: the file was cut here?)"


def open_note(text: TextFile, last_truncated: bool) -> str:
    """The accounting note's part about the file's end: nothing when it ends with a line break."""
    if text.newline:
        return ""
    if last_truncated:
        return "; no line break after the last record, which is incomplete (cut?) and quarantined as truncated"
    return "; no line break after the last record, which is complete and kept"


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
    text = read_text(p)
    lines = text.lines
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
        # no line break after the last line: a broken last line is a prefix of a line (cut), not bad data
        pl.when((pl.int_range(pl.len()) == pl.len() - 1) & pl.lit(not text.newline)
                & pl.col("reason").is_in(["bad_format", "missing_user", "no_items"]))
        .then(pl.lit("truncated")).otherwise("reason").alias("reason")
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
        pl.format("file line {}: {}{}", pl.col("line_no") + 1, pl.coalesce("raw", "line"),
                  pl.when(pl.col("reason") == "truncated").then(pl.lit(_CUT)).otherwise(pl.lit(""))).alias("raw"),
        "line_no")
    plays = (
        df.filter(pl.col("reason").is_null())
        .select("line_no", "offset", "bad_bytes", pl.col("u").alias("user_key"), "songs",
                pl.int_ranges(0, pl.col("songs").list.len(), dtype=pl.Int64).alias("pos"))
        .explode("songs", "pos")
        .with_columns((pl.col("offset") + pl.col("pos")).alias("source_row"),
                      pl.col("songs").str.strip_chars().alias("song_key"))
    )
    # no line break at the end: the last play is kept when it is complete; an empty last song ("u,1:")
    # or a character cut in half shows a cut (a cut inside a song id, "2702" of "27024", cannot be seen)
    open_last = not text.newline and plays.height > 0 and df.get_column("reason")[-1] is None
    is_last = (pl.int_range(pl.len()) == plays.height - 1) & pl.lit(open_last)
    plays = plays.with_columns(
        pl.when(pl.col("bad_bytes")).then(pl.lit("bad_encoding"))
        .when(is_last & ((pl.col("song_key") == "") | pl.lit(text.cut_char))).then(pl.lit("truncated"))
        .when(pl.col("song_key") == "").then(pl.lit("empty_item")).alias("reason"))
    bad_plays = plays.filter(pl.col("reason").is_not_null()).select(
        pl.lit(source_file).alias("source_file"), "source_row", "reason",
        pl.format("file line {}, play {} of user {}: {}{}", pl.col("line_no") + 1, "pos", "user_key",
                  pl.col("song_key"), pl.when(pl.col("bad_bytes")).then(pl.lit(" (the line holds bytes that are "
                                                                              "not UTF-8, shown as \\xNN)"))
                  .when(pl.col("reason") == "truncated").then(pl.lit(_CUT))
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
                          "note": [f"{df.height} line(s); order only (ordinal time)"
                                   + open_note(text, rejected.get_column("reason").to_list()[-1:] == ["truncated"]
                                               and int(rejected.get_column("source_row")[-1]) == n_rows - 1)]},
                         schema=FILES_SCHEMA)
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


def _clock_column(p: Path, df: pl.DataFrame, col: int, skip_last: bool) -> None:
    """:class:`InputError` unless field ``col`` of a headerless file reads as a clock: numeric on every line,
    never decreasing within a user (the lines are in listening order) and a median that is an epoch time
    between 1990 and 2100 in the unit its magnitude gives (a position or a rating is not). The lines already
    rejected (and a last line that may be cut) are not judged. The values are then converted as a
    ``timestamp`` column is (a given ``ts_unit`` wins; values outside the range are ``ts_out_of_range``)."""
    from musicrecall.io.timeconv import PLAUSIBLE_TS, UNITS_MS, detect_unit

    d = df.filter(pl.col("reason").is_null())
    if skip_last and d.height and int(d.get_column("source_row")[-1]) == df.height - 1:
        d = d.head(d.height - 1)
    d = d.with_columns(pl.col("ts_raw").cast(pl.Float64, strict=False).alias("v"))
    fix = ("; without a header a third field is read as a timestamp only when it is one. Add a header line "
           "naming the columns (RecBole: user_id:token item_id:token timestamp:float) or pass "
           "extra_columns='ignore' (CLI: --extra-columns ignore) to import user and item only")
    bad = d.filter(pl.col("v").is_null() | ~pl.col("v").is_finite())
    if bad.height:
        r = bad.row(0, named=True)
        raise InputError(p, r["source_row"], f"column {col + 1}: {r['ts_raw']!r} (file line {r['line_no'] + 1}) is "
                         f"not a number ({bad.height} such line(s)){fix}")
    down = d.with_columns(pl.col("v").shift(1).over("user_key").alias("prev")).filter(pl.col("v") < pl.col("prev"))
    if down.height:
        r = down.row(0, named=True)
        raise InputError(p, r["source_row"], f"column {col + 1}: {r['ts_raw']} (file line {r['line_no'] + 1}) is "
                         f"smaller than user {r['user_key']!r}'s previous value {r['prev']:g}, so it is not a clock "
                         f"of lines in listening order ({down.height} such line(s)){fix}")
    unit = detect_unit(d.get_column("v")) or "s"
    med = d.get_column("v").median()
    lo, hi = (t.timestamp() * 1000 for t in PLAUSIBLE_TS)
    if med is not None and not lo <= float(med) * UNITS_MS.get(unit, 1.0) < hi:  # type: ignore[arg-type]
        raise InputError(p, None, f"column {col + 1}: numeric and never decreasing per user, but its median "
                         f"{float(med):g} is no epoch time between 1990 and 2100 in {unit!r} (a position or a "
                         f"count?){fix}")


def import_user_item(
    path: PathLike, catalog: Catalog | PathLike | None = None, on_error: OnError = "raise",
    ts_unit: str | None = None, extra_columns: Literal["detect", "ignore"] = "detect",
) -> ImportResult:
    """Import ``user item`` lines in listening order (SASRec / RecBole ``.inter``); see the module docstring.

    Args:
        path: the text file; fields separated by a tab (if the first line has one) or by whitespace.
        catalog: a catalogue (path or :class:`Catalog`) giving items and triples.
        on_error: ``"raise"`` or ``"quarantine"``.
        ts_unit: unit of a ``timestamp`` column (``"s"``, ``"ms"``, ``"us"``, ``"ns"``); default: detected
            from the magnitude of the values (see :func:`musicrecall.io.timeconv.epoch_to_ts`).
        extra_columns: fields after user and item in a file **without a header**. ``"detect"`` (default):
            a third field that is numeric, never decreasing within a user and epoch times (after 1990
            in ``ts_unit`` or the detected unit) is the clock (``time_kind="clock"``); any other extra
            field raises :class:`InputError` naming file, row and column. ``"ignore"``: extra fields are
            ignored (ordinal time; recorded in ``meta``).

    Every data line must have as many fields as the first (header or first data line); a line with
    another count is ``bad_format``. A last line without a line break after it is kept when it is
    complete and valid, and quarantined as ``truncated`` otherwise (the file was cut).
    """
    check_on_error(on_error)
    if extra_columns not in ("detect", "ignore"):
        raise ValueError(f"extra_columns must be 'detect' or 'ignore', not {extra_columns!r}")
    p = Path(path)
    text = read_text(p)
    lines = text.lines
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
    guess_clock = False
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
        n_extra = len(first_tokens) - 2
        if n_extra > 0 and extra_columns == "ignore":
            meta_extra["ignored_fields"] = f"{n_extra} field(s) after user and item (extra_columns='ignore')"
        elif n_extra > 1:
            raise InputError(p, 0, f"column 4: {n_extra + 2} fields per line and no header; without one only "
                             f"'user item [timestamp]' is understood. Add a header line naming the columns "
                             f"(RecBole: user_id:token item_id:token rating:float timestamp:float) or pass "
                             f"extra_columns='ignore' (CLI: --extra-columns ignore) to import user and item only")
        elif n_extra == 1:
            t_i, guess_clock = 2, True
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
    if guess_clock:
        _clock_column(p, df, 2, skip_last=not text.newline)
        meta_extra["clock"] = ("column 3 (no header): numeric, never decreasing per user, epoch times in "
                               f"{ts_unit or 'the detected unit'}")
    if t_i is not None:
        df = df.with_columns(pl.col("ts_raw").cast(pl.Float64, strict=False).alias("ts_num"))
        ts, ts_reason = epoch_to_ts(df.get_column("ts_num"), ts_unit, p, "timestamp")
        df = df.with_columns(ts.alias("ts"), ts_reason).with_columns(
            pl.coalesce("reason", pl.when(pl.col("ts_num").is_null()).then(pl.lit("bad_ts")), "ts_reason")
            .alias("reason"))
        meta = {"time_kind": "clock", "source": "user-item", "file": p.name, **meta_extra}
    else:
        meta = {**ordinal_meta("user-item", p), **meta_extra}
    df = df.with_columns(pl.format("file line {}: {}", pl.col("line_no") + 1, pl.coalesce("raw", "line")).alias("raw"))
    df = mark_cut_last_record(df, text)
    rejected = df.filter(pl.col("reason").is_not_null()).select(
        pl.lit(source_file).alias("source_file"), "source_row", "reason", "raw", "line_no")
    if on_error == "raise":
        raise_first(p, rejected)
    ok = df.filter(pl.col("reason").is_null()).select(
        "user_key", "song_key", "source_row", pl.lit(source_file).alias("source_file"),
        *(["ts"] if t_i is not None else []))
    if t_i is None:
        ok = ok.with_columns(ordinal_ts())
    last_cut = bool(df.height) and df.get_column("reason")[-1] == "truncated"
    note = ("header line not counted" if names is not None else "") + open_note(text, last_cut)
    files = pl.DataFrame({"source_file": [source_file], "user_key": [None], "rows_read": [df.height],
                          "note": [note.removeprefix("; ") or None]}, schema=FILES_SCHEMA)
    users = ok.get_column("user_key").unique().to_list()
    return assemble_result(ok, rejected.select(list(REJECTED_SCHEMA)), files, users, as_catalog(catalog), meta)


def mark_cut_last_record(df: pl.DataFrame, text: TextFile) -> pl.DataFrame:
    """The last record of a file without a final line break: kept when complete and valid, ``truncated``
    when it is not (its first reason stays in ``raw``) or when the file ends inside a character."""
    if text.newline or df.height == 0:
        return df
    last = pl.int_range(pl.len()) == pl.len() - 1
    cut = last & (pl.lit(text.cut_char) | (pl.col("reason").is_not_null()
                                           & ~pl.col("reason").is_in(["bad_encoding", "blank_line"])))
    return df.with_columns(
        pl.when(cut).then(pl.lit("truncated")).otherwise("reason").alias("reason"),
        pl.when(cut).then(pl.format("{}{}: {}", pl.col("reason").fill_null("cut inside a character"), pl.lit(_CUT),
                                    "raw")).otherwise("raw").alias("raw"))
