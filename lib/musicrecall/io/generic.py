"""Shared importer machinery, the generic CSV/Parquet importers and the dataset folder format.

* :class:`ImportResult` is what every log importer returns: canonical ``events`` / ``items`` /
  ``users`` / ``triples`` (see :mod:`musicrecall.schema`) plus the ``rejected`` rows and a per-file
  :meth:`ImportResult.accounting` in which ``rows_read == events + rejected`` always holds.
* :func:`import_events`, :func:`import_items`, :func:`import_triples` read a CSV or Parquet file that
  already uses the canonical column names (extra columns are ignored). A missing required column or a
  value that cannot be converted raises :class:`~musicrecall.io.errors.InputError` naming the file,
  the column and the first bad row: nothing is silently turned into null.
* :func:`save_dataset` / :func:`load_dataset_dir` write and read a folder of parquet files
  (``events.parquet``, ``items.parquet``, ``users.parquet``, ``triples.parquet`` and, for an import,
  ``rejected.parquet``) plus ``meta.json`` (``time_kind`` clock / ordinal, source, accounting), so an
  export is imported once and the folder is passed to the notebooks. Both check the ids first
  (:mod:`musicrecall.io.validate`).
* :func:`key_ids` gives every importer its contiguous ids; :func:`sample_users` a seeded subset.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from musicrecall.io.errors import InputError
from musicrecall.io.timeconv import TS_FORMATS, parse_ts, text_ts  # noqa: F401 - parse_ts/TS_FORMATS re-exported
from musicrecall.schema import SCHEMAS, conform, empty

PathLike = str | os.PathLike[str]
OnError = Literal["raise", "quarantine"]

REJECTED_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "reason": pl.String(),
    "raw": pl.String(),  # the source record as JSON text (or the raw line for TSV sources)
}
FILES_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "user_key": pl.String(),
    "rows_read": pl.Int64(),
    "note": pl.String(),
}
TABLES: tuple[str, ...] = ("events", "items", "users", "triples")
RAW_MAX_CHARS = 10_000  # the raw text of a truncated tail is cut to this length



@dataclass
class ImportResult:
    """Canonical tables produced by one import, plus everything needed to account for every row.

    Attributes:
        events: :data:`~musicrecall.schema.EVENTS_SCHEMA`; ``source_file`` is the file name relative
            to the import root and ``source_row`` the 0-based record index inside it.
        items: :data:`~musicrecall.schema.ITEMS_SCHEMA`, built from what the export knows.
        users: :data:`~musicrecall.schema.USERS_SCHEMA`, one row per export folder / source user id.
        triples: :data:`~musicrecall.schema.TRIPLES_SCHEMA` (``song_artist`` and ``song_album``).
        rejected: rows that did not become events: ``source_file, source_row, reason, raw``.
        files: one row per file read: ``source_file, user_key, rows_read, note``.
        meta: what the dataset is: ``time_kind`` (``"clock"``: real timestamps; ``"ordinal"``: order
            only, ``ts`` is a fixed epoch plus the play's position in seconds), ``source`` (the
            importer), and whatever else the importer records. :func:`save_dataset` writes it to
            ``meta.json`` with the accounting; :func:`load_dataset_dir` returns it as ``"meta"``.
    """

    events: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    triples: pl.DataFrame
    rejected: pl.DataFrame
    files: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FILES_SCHEMA))
    meta: dict[str, Any] = field(default_factory=lambda: {"time_kind": "clock", "source": "unknown"})

    def accounting(self) -> pl.DataFrame:
        """Per ``source_file``: ``rows_read``, ``events``, ``rejected`` and ``rejected_<reason>`` columns.

        ``rows_read == events + rejected`` for every file (checked when the result is assembled). A
        file holding an empty array shows ``rows_read == 0`` and ``note == "empty array: no records"``.
        """
        reasons = sorted(self.rejected.get_column("reason").unique().drop_nulls().to_list())
        ev = self.events.group_by("source_file").agg(pl.len().cast(pl.Int64).alias("events"))
        rj = self.rejected.group_by("source_file").agg(
            pl.len().cast(pl.Int64).alias("rejected"),
            *[(pl.col("reason") == r).sum().cast(pl.Int64).alias(f"rejected_{r}") for r in reasons],
        )
        files = self.files.select("source_file", "user_key", "rows_read", "note")
        known = pl.concat([files.select("source_file"), ev.select("source_file"), rj.select("source_file")])
        base = known.unique(maintain_order=True).join(files, on="source_file", how="left")
        out = base.join(ev, on="source_file", how="left").join(rj, on="source_file", how="left")
        counts = ["events", "rejected", *[f"rejected_{r}" for r in reasons]]
        return out.with_columns(pl.col(counts).fill_null(0)).select(
            "source_file", "user_key", "rows_read", *counts, "note"
        )

    def tables(self) -> dict[str, pl.DataFrame]:
        """The four canonical tables plus ``rejected``, by name (the layout :func:`save_dataset` writes)."""
        return {"events": self.events, "items": self.items, "users": self.users, "triples": self.triples,
                "rejected": self.rejected}


# --------------------------------------------------------------------------------------------------
# helpers shared by the log importers
# --------------------------------------------------------------------------------------------------


def natural_key(path: Path) -> list[object]:
    """Sort key that orders ``StreamingHistory2.json`` before ``StreamingHistory10.json``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def file_identity(path: Path) -> tuple[int, int]:
    """(device, inode): equal for two paths to one file (symlink, hard link, ``..`` in the path)."""
    st = path.stat()
    return st.st_dev, st.st_ino


def resolve_inputs(
    paths_or_dir: PathLike | Sequence[PathLike], patterns: Sequence[str], user_key: str | None
) -> tuple[Path, list[tuple[str, list[Path]]]]:
    """Resolve importer input to ``(root, [(user_key, files), ...])``.

    * a file: one user (``user_key`` or the parent folder's name), root = its folder;
    * a folder holding files matching ``patterns``: one user (``user_key`` or the folder's name);
    * a folder of user folders: one user per sub-folder that holds matching files (searched
      recursively, so an unzipped export folder works); ``user_key`` must then be ``None``;
    * a list of files: grouped by parent folder name unless ``user_key`` is given; root = the
      deepest common folder.

    ``source_file`` values are the file paths relative to ``root``. A file reached by two paths
    (given twice, through a symlink or a hard link) is listed once (same device and inode).
    """

    def matches(p: Path) -> bool:
        return p.is_file() and any(p.match(pat) for pat in patterns)

    if isinstance(paths_or_dir, (str, os.PathLike)):
        p = Path(paths_or_dir)
        if not p.exists():
            raise InputError(p, None, "does not exist")
        if p.is_file():
            return p.parent, [(user_key or p.parent.name, [p])]
        seen: set[tuple[int, int]] = set()

        def once(fs: Iterable[Path]) -> list[Path]:  # the same file by two paths (a link) is read once
            out = []
            for f in sorted(fs, key=natural_key):
                if file_identity(f) not in seen:
                    seen.add(file_identity(f))
                    out.append(f)
            return out

        direct = once(f for f in p.iterdir() if matches(f))
        if direct:
            return p, [(user_key or p.name, direct)]
        groups = []
        for sub in sorted((d for d in p.iterdir() if d.is_dir()), key=natural_key):
            files = once(f for f in sub.rglob("*") if matches(f))
            if files:
                groups.append((sub.name, files))
        if not groups:
            raise InputError(p, None, f"no files matching {' or '.join(patterns)} in this folder or its sub-folders")
        if user_key is not None:
            if len(groups) > 1:
                raise ValueError(f"{p}: holds {len(groups)} user folders; user_key must be None")
            groups = [(user_key, groups[0][1])]
        return p, groups
    files = []
    for item in paths_or_dir:
        f = Path(item)
        if not f.is_file():
            raise InputError(f, None, "does not exist or is not a file")
        if file_identity(f) not in [file_identity(g) for g in files]:  # the same file twice is read once
            files.append(f)
    if not files:
        raise ValueError("no input files given")
    root = Path(os.path.commonpath([f.resolve().parent for f in files]))
    files = [f.resolve() for f in files]
    if user_key is not None:
        return root, [(user_key, sorted(files, key=natural_key))]
    by_user: dict[str, list[Path]] = {}
    for f in sorted(files, key=natural_key):
        by_user.setdefault(f.parent.name, []).append(f)
    return root, sorted(by_user.items())


def key_ids(keys: pl.Series, id_name: str) -> pl.DataFrame:
    """Contiguous ids ``0..n-1`` for the distinct non-null ``keys``: ``{key name, id_name}``.

    Keys that all read as integers (sparse source ids such as 30Music's) are numbered in numeric
    order, so the ids keep the source's order; any other keys in text order. Either way the mapping
    depends only on the set of keys, not on the order they were read in.
    """
    u = keys.drop_nulls().unique().to_frame()
    name = keys.name
    as_int = u.get_column(name).str.strip_chars().cast(pl.Int64, strict=False)
    if u.height and as_int.null_count() == 0:
        u = u.with_columns(as_int.alias("_n")).sort("_n", name).drop("_n")
    else:
        u = u.sort(name)
    return u.with_row_index(id_name).with_columns(pl.col(id_name).cast(pl.Int64)).select(name, id_name)


def assemble_result(
    parsed: pl.DataFrame, rejected: pl.DataFrame, files: pl.DataFrame, user_keys: Iterable[str],
    catalog: Any | None = None, meta: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Assign contiguous ids and build the canonical tables from normalised rows.

    Args:
        parsed: accepted rows with ``user_key``, ``song_key``, ``title``, ``artist``, ``album`` and any
            canonical event columns (``ts``, ``play_ms``, ..., ``source_file``, ``source_row``).
        rejected: :data:`REJECTED_SCHEMA` rows.
        files: :data:`FILES_SCHEMA` rows, in reading order (defines the event order).
        user_keys: every user imported, including users whose files held no valid rows.
        catalog: a :class:`musicrecall.io.catalog.Catalog`: its songs become items (also those never
            played), its item columns win over the log's, and its relation columns become triples.
        meta: recorded in :attr:`ImportResult.meta` (default ``time_kind="clock"``).

    Song ids are ``0..n-1`` over the played and catalogue songs (see :func:`key_ids`); user ids
    ``0..m-1`` likewise. An item's title / artist / album are the catalogue's, else the first non-null
    values in reading order. Triples: ``song_artist`` / ``song_album`` from those values plus one
    ``song_<relation>`` per catalogue relation column.
    """
    users = key_ids(pl.Series("user_key", sorted(set(user_keys)), dtype=pl.String), "user_id")
    order = files.select("source_file").with_row_index("_file_ord")
    parsed = parsed.join(order, on="source_file", how="left").sort("_file_ord", "source_row").drop("_file_ord")
    for c in ("title", "artist", "album"):
        if c not in parsed.columns:
            parsed = parsed.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    from_log = parsed.group_by("song_key", maintain_order=True).agg(
        pl.col(c).drop_nulls().first() for c in ("title", "artist", "album"))
    if catalog is not None:
        cat_items = catalog.items
        keys = pl.concat([from_log.get_column("song_key"), cat_items.get_column("song_key")])
        log_only = from_log.join(cat_items.select("song_key"), on="song_key", how="anti")
        items = pl.concat([cat_items, log_only], how="diagonal_relaxed")
        # the log fills what the catalogue leaves empty
        items = items.join(from_log, on="song_key", how="left", suffix="_log").with_columns(
            pl.coalesce(c, f"{c}_log").alias(c) for c in ("title", "artist", "album")
        ).drop([f"{c}_log" for c in ("title", "artist", "album")])
    else:
        keys = from_log.get_column("song_key")
        items = from_log
    ids = key_ids(keys, "song_id")
    items = items.join(ids, on="song_key", how="left").sort("song_id")
    events = parsed.join(users, on="user_key", how="left").join(
        ids, on="song_key", how="left", maintain_order="left"
    )
    head = pl.lit("song:") + pl.col("song_id").cast(pl.String)
    relations = [("song_artist", "artist:", "artist"), ("song_album", "album:", "album")]
    if catalog is not None:
        relations += [(f"song_{r}", f"{r}:", r) for r in catalog.relations if r not in ("artist", "album")]
    triples = pl.concat(
        [
            items.filter(pl.col(col).is_not_null()).select(
                head.alias("head"), pl.lit(rel).alias("relation"),
                (pl.lit(pre) + pl.col(col).cast(pl.String)).alias("tail"),
            )
            for rel, pre, col in relations if col in items.columns
        ]
    )
    info = {"time_kind": "clock", "source": "unknown"}
    info.update(meta or {})
    if catalog is not None:
        info["catalog"] = {
            **catalog.describe(),
            "played_songs_not_in_catalogue": log_only.height,  # items with no catalogue data (no triples)
            "catalogue_songs_not_played": catalog.items.height - (from_log.height - log_only.height),
        }
    result = ImportResult(
        events=conform(events, "events"),
        items=conform(items, "items"),
        users=conform(users, "users"),
        triples=conform(triples, "triples"),
        rejected=rejected.select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items()),
        files=files.select(pl.col(c).cast(t) for c, t in FILES_SCHEMA.items()),
        meta=info,
    )
    acc = result.accounting()
    bad = acc.filter(pl.col("rows_read") != pl.col("events") + pl.col("rejected"))
    if bad.height:  # an importer bug, never a data problem
        raise RuntimeError(f"import accounting does not balance:\n{bad}")
    return result


# --------------------------------------------------------------------------------------------------
# generic CSV / Parquet tables
# --------------------------------------------------------------------------------------------------

REQUIRED: dict[str, tuple[str, ...]] = {
    "events": ("user_id", "song_id", "ts", "play_ms"),
    "items": ("song_id",),
    "users": ("user_id",),
    "triples": ("head", "relation", "tail"),
}
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


def _read_table(path: Path) -> tuple[pl.DataFrame, int]:
    """Read CSV (all columns as strings) or Parquet; return the frame and the header line count.

    Bytes that are not UTF-8 and duplicate column names raise :class:`InputError` naming the file and
    the line / columns (polars would silently rename a duplicate to ``<name>_duplicated_0``).
    """
    from musicrecall.io.tables import check_columns
    from musicrecall.io.text import bad_utf8_positions

    if not path.is_file():
        raise InputError(path, None, "does not exist or is not a file")
    if path.stat().st_size == 0:
        raise InputError(path, None, "empty file (0 bytes)")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pl.read_parquet(path)
            check_columns(path, df.columns)
            return df, 0
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            data = path.read_bytes()
            bad = bad_utf8_positions(data)
            if bad:
                line = data.count(b"\n", 0, bad[0])
                raise InputError(path, max(line - 1, 0), f"bytes that are not UTF-8 at byte {bad[0]} (file line "
                                 f"{line + 1}, data row {max(line - 1, 0)}); {len(bad)} bad sequence(s); re-save as "
                                 "UTF-8 or use import_log(..., on_error='quarantine') to quarantine those rows")
            header = data.decode("utf-8-sig").split("\n", 1)[0].rstrip("\r")
            check_columns(path, next(csv.reader([header], delimiter=sep)))
            return pl.read_csv(path, separator=sep, infer_schema=False, encoding="utf8"), 1
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(path, None, f"cannot be read: {err}") from err
    raise InputError(path, None, f"unknown table format {suffix!r} (expected .csv, .tsv or .parquet)")


def _to_ts(s: pl.Series) -> pl.Series:
    """Convert a timestamp column of any sensible dtype to ``Datetime("ms", "UTC")`` (bad -> null).

    Numbers (and numeric strings) are epoch times whose unit is detected from the column's magnitude
    (:func:`musicrecall.io.timeconv.epoch_to_ts`: epoch seconds never become 1970-01-20); values
    outside 1990..2100 in that unit are bad.
    """
    ts, _reason = text_ts(s, None, "", s.name)
    return ts


def _to_dtype(s: pl.Series, dtype: pl.DataType, name: str = "") -> pl.Series:
    """Cast ``s`` to ``dtype`` leniently (bad -> null); the caller detects new nulls.

    Integers are exact on every path: 2.5 (text, float or Parquet) is bad, never 2; millisecond
    columns beyond a day (:data:`~musicrecall.io.timeconv.PLAY_MS_MAX`) are bad.
    """
    from musicrecall.io.timeconv import exact_int, ms_values

    if isinstance(dtype, pl.Datetime):
        return _to_ts(s)
    if dtype == pl.Boolean and s.dtype == pl.String:
        low = s.str.strip_chars().str.to_lowercase()
        return (
            low.to_frame("v")
            .select(
                pl.when(pl.col("v").is_in(_TRUE)).then(True).when(pl.col("v").is_in(_FALSE)).then(False)
                .otherwise(None).alias(s.name)
            )
            .to_series()
        )
    if dtype.is_integer():
        if name in ("play_ms", "song_ms", "duration_ms"):
            return ms_values(s, name)[0].cast(dtype, strict=False)
        ints, _ok = exact_int(s)
        return ints.cast(dtype, strict=False)
    return s.cast(dtype, strict=False)


_HINTS = {
    "ts": " (ISO-8601, or an epoch number in 1990..2100; seconds / ms / us / ns told apart by magnitude)",
    "play_ms": " (an exact integer of milliseconds within ±86,400,000)",
    "song_ms": " (an exact integer of milliseconds within ±86,400,000)",
    "duration_ms": " (an exact integer of milliseconds within ±86,400,000)",
    "song_id": " (an exact integer)", "user_id": " (an exact integer)",
}


def coerce_table(df: pl.DataFrame, table: str, path: Path, header_lines: int = 0) -> pl.DataFrame:
    """Check required columns and convert ``df`` to the canonical schema of ``table``, loudly.

    Raises :class:`InputError` naming ``path`` and the column when a required column is missing, or
    the column, first bad data row (0-based) and bad-value count when a value cannot be converted, or
    the column and rows of a duplicate ``song_id`` (items) / ``user_id`` (users).
    """
    missing = [c for c in REQUIRED[table] if c not in df.columns]
    if missing:
        raise InputError(
            path, None, f"missing required {table} column(s) {', '.join(map(repr, missing))} "
            f"(found: {', '.join(df.columns) or 'none'})"
        )
    if table == "events":
        if "source_file" not in df.columns:
            df = df.with_columns(pl.lit(path.name).alias("source_file"))
        if "source_row" not in df.columns:
            df = df.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
    cols = {}
    for name, dtype in SCHEMAS[table].items():
        if name not in df.columns:
            continue
        src = df.get_column(name)
        if src.dtype == pl.String and dtype != pl.String:
            src = src.str.strip_chars().replace("", None)  # a blank cell is a missing value, not a bad one
        out = _to_dtype(src, dtype, name)
        bad = src.is_not_null() & out.is_null()
        if bad.any():
            row = int(bad.arg_max() or 0)
            line = f", file line {row + 1 + header_lines}" if header_lines else ""
            raise InputError(
                path, row, f"column {name!r}: value {src[row]!r} is not a valid {dtype}{_HINTS.get(name, '')}{line} "
                f"({int(bad.sum())} bad value(s) in this column)"
            )
        cols[name] = out
    key = {"items": "song_id", "users": "user_id"}.get(table)
    if key is not None and key in cols:
        ids = cols[key]
        dup = ids.is_duplicated() & ids.is_not_null()
        if dup.any():
            rows = (ids == ids[int(dup.arg_max() or 0)]).arg_true().to_list()
            line = f", file lines {rows[0] + 1 + header_lines} and {rows[1] + 1 + header_lines}" if header_lines else ""
            raise InputError(path, rows[1], f"column {key!r}: duplicate id {ids[rows[0]]} (data rows {rows[0]} and "
                             f"{rows[1]}{line}; {int(dup.sum())} rows share a duplicated id)")
    return conform(pl.DataFrame(cols) if cols else df.head(0), table)


def _import_table(path: PathLike, table: str) -> pl.DataFrame:
    p = Path(path)
    df, header = _read_table(p)
    return coerce_table(df, table, p, header)


def import_events(path: PathLike) -> pl.DataFrame:
    """Read canonical events from CSV / TSV / Parquet; ``user_id, song_id, ts, play_ms`` are required.

    ``ts`` may be ISO-8601 strings (with ``Z`` / offset, or naive = UTC) or integer epoch
    milliseconds. Missing ``source_file`` / ``source_row`` are filled with the file name and the
    0-based data row. Extra columns are ignored. Any unconvertible value raises :class:`InputError`.
    """
    return _import_table(path, "events")


def import_items(path: PathLike) -> pl.DataFrame:
    """Read canonical items from CSV / TSV / Parquet; ``song_id`` is required (see :func:`import_events`)."""
    return _import_table(path, "items")


def import_triples(path: PathLike) -> pl.DataFrame:
    """Read KG triples from CSV / TSV / Parquet; ``head, relation, tail`` are required."""
    return _import_table(path, "triples")


def import_users(path: PathLike) -> pl.DataFrame:
    """Read canonical users from CSV / TSV / Parquet; ``user_id`` is required."""
    return _import_table(path, "users")


# --------------------------------------------------------------------------------------------------
# dataset folders
# --------------------------------------------------------------------------------------------------


def _atomic_write_parquet(df: pl.DataFrame, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        df.write_parquet(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


DATASET_FILES: tuple[str, ...] = (*(f"{t}.parquet" for t in TABLES), "rejected.parquet", "meta.json")


def existing_dataset(directory: PathLike) -> list[str]:
    """Names of dataset files already in ``directory`` (empty when it does not exist or holds none)."""
    d = Path(directory)
    return [n for n in DATASET_FILES if (d / n).exists()] if d.is_dir() else []


def minimal_users(events: pl.DataFrame) -> pl.DataFrame:
    """A users table with one row per ``user_id`` of ``events`` (``user_key`` = the id as text)."""
    ids = events.get_column("user_id").drop_nulls().unique().sort()
    return pl.DataFrame({"user_id": ids}).with_columns(pl.col("user_id").cast(pl.String).alias("user_key"))


def _accounting_summary(result: ImportResult) -> dict[str, Any]:
    acc = result.accounting()
    by_reason = result.rejected.group_by("reason").len().sort("reason")
    skipped = acc.filter(pl.col("rows_read").is_null() | pl.col("note").str.starts_with("skipped"))
    return {
        "rows_read": int(acc.get_column("rows_read").fill_null(0).sum()),
        "events": result.events.height,
        "rejected": result.rejected.height,
        "rejected_by_reason": {r: int(n) for r, n in by_reason.iter_rows()},
        "files": acc.height,
        "files_skipped": [{"source_file": f, "note": n} for f, n in skipped.select("source_file", "note").iter_rows()],
    }


def save_dataset(
    result_or_tables: ImportResult | Mapping[str, Any], directory: PathLike, overwrite: bool = True,
    validate: bool = True,
) -> Path:
    """Write ``events/items/users/triples.parquet``, ``rejected.parquet`` (if any) and ``meta.json``.

    ``users`` may be missing (tables from the generic importers): one row per ``user_id`` of the
    events is written instead. ``meta.json`` records ``time_kind`` (``"clock"`` or ``"ordinal"``),
    ``source`` and, for an :class:`ImportResult`, the accounting (rows read, events, rejected by
    reason, skipped files); for a mapping it is ``tables["meta"]`` or ``{"time_kind": "clock"}``.
    Each table is conformed to its canonical schema and written to a temporary file that is then
    moved into place with :func:`os.replace`, so a reader never sees a half-written file. With
    ``overwrite=False`` a folder that already holds a dataset (or a path that is a file) raises
    :class:`InputError`. With ``validate=True`` the tables must pass the checks
    :func:`load_dataset_dir` makes (:func:`musicrecall.io.validate.validate_tables`), so a folder that
    could not be loaded is never written. Returns the folder, which :func:`load_dataset_dir` (and the
    notebooks' ``dataset`` parameter) accept.
    """
    if isinstance(result_or_tables, ImportResult):
        tables: dict[str, Any] = dict(result_or_tables.tables())
        meta = dict(result_or_tables.meta)
        meta["accounting"] = _accounting_summary(result_or_tables)
    else:
        tables = dict(result_or_tables)
        meta = dict(tables.pop("meta", None) or {"time_kind": "clock", "source": "tables"})
    if tables.get("users") is None and tables.get("events") is not None:
        tables["users"] = minimal_users(tables["events"])
    missing = [t for t in TABLES if tables.get(t) is None]
    if missing:
        raise ValueError(f"save_dataset: missing table(s) {missing}")
    meta.setdefault("time_kind", "clock")
    if meta["time_kind"] not in ("clock", "ordinal"):
        raise ValueError(f"save_dataset: time_kind must be 'clock' or 'ordinal', not {meta['time_kind']!r}")
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise InputError(out, None, "exists and is a file: give a folder for the dataset")
    if not overwrite and existing_dataset(out):
        raise InputError(out, None, f"already holds a dataset ({', '.join(existing_dataset(out))}); "
                         "choose another folder or overwrite it (--overwrite)")
    if validate:
        from musicrecall.io.validate import validate_tables

        validate_tables({t: tables[t] for t in TABLES}, out)
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        _atomic_write_parquet(conform(tables[name], name), out / f"{name}.parquet")
    if tables.get("rejected") is not None:
        rej = tables["rejected"].select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items())
        _atomic_write_parquet(rej, out / "rejected.parquet")
    elif (out / "rejected.parquet").exists():  # a previous import's rejections are not this one's
        (out / "rejected.parquet").unlink()
    tmp = out / f".meta.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, out / "meta.json")
    return out


def load_meta(directory: PathLike) -> dict[str, Any]:
    """``meta.json`` of a dataset folder; a folder written before it existed is taken as clock time."""
    p = Path(directory) / "meta.json"
    if not p.is_file():
        return {"time_kind": "clock", "source": "unknown (no meta.json)"}
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(p, None, f"is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("time_kind") not in ("clock", "ordinal"):
        raise InputError(p, None, "needs an object with time_kind 'clock' or 'ordinal'")
    return meta


def load_dataset_dir(directory: PathLike, validate: bool = True) -> dict[str, Any]:
    """Read a folder written by :func:`save_dataset`: ``events``, ``items``, ``users``, ``triples`` frames.

    ``rejected`` is included when ``rejected.parquet`` exists, and ``meta`` (a dict, see
    :func:`load_meta`) always. Raises :class:`InputError` naming the file when a table is missing or
    does not fit the canonical schema, and (``validate=True``) when the catalogue is inconsistent
    (see :func:`musicrecall.io.validate.validate_tables`).
    """
    d = Path(directory)
    if not d.is_dir():
        raise InputError(d, None, "is not a dataset folder")
    out: dict[str, Any] = {}
    raw: dict[str, pl.DataFrame] = {}
    for name in TABLES:
        p = d / f"{name}.parquet"
        if not p.is_file():
            raise InputError(p, None, f"missing: a dataset folder needs {', '.join(t + '.parquet' for t in TABLES)}")
        try:
            raw[name] = pl.read_parquet(p)
        except (pl.exceptions.PolarsError, OSError) as err:
            raise InputError(p, None, f"cannot be read: {err}") from err
    if validate:
        from musicrecall.io.validate import validate_tables

        validate_tables(raw, d)
    for name, df in raw.items():
        try:
            out[name] = conform(df, name)
        except (ValueError, pl.exceptions.PolarsError) as err:
            raise InputError(d / f"{name}.parquet", None, f"does not fit the {name} schema: {err}") from err
    rej = d / "rejected.parquet"
    if rej.is_file():
        out["rejected"] = pl.read_parquet(rej)
    out["meta"] = load_meta(d)
    return out


def sample_users(result: ImportResult, n_users: int, seed: int = 0, keep_unplayed: bool = False) -> dict[str, Any]:
    """A smaller dataset for quick runs (CI, tiny profiles): ``n_users`` users drawn at random (seeded).

    Their events are kept whole (a user's sequence is never cut), items are the songs they played
    (plus every catalogue song with ``keep_unplayed=True``), and ids are renumbered ``0..n-1`` in the
    original order, keys kept; triples follow their songs. The tables go to :func:`save_dataset` as
    they are; ``meta["subset"]`` records what was drawn from what (the import's accounting is kept
    there too: the subset leaves rows out on purpose, so its own counts do not balance against the
    source file).
    """
    users = result.users
    if not 0 < n_users <= users.height:
        raise ValueError(f"sample_users: n_users must be in 1..{users.height}, not {n_users}")
    picked = users.sample(n_users, seed=seed).sort("user_id")
    new_users = picked.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_new"))
    events = result.events.join(new_users.select("user_id", "_new"), on="user_id", how="inner", maintain_order="left")
    played = events.get_column("song_id").unique()
    items = result.items if keep_unplayed else result.items.filter(pl.col("song_id").is_in(played.implode()))
    items = items.sort("song_id").with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_new"))
    song_map = items.select("song_id", pl.col("_new").alias("_song"))
    events = (events.join(song_map, on="song_id", how="inner", maintain_order="left")
              .with_columns(pl.col("_new").alias("user_id"), pl.col("_song").alias("song_id")).drop("_new", "_song"))
    head_map = items.select((pl.lit("song:") + pl.col("song_id").cast(pl.String)).alias("head"),
                            (pl.lit("song:") + pl.col("_new").cast(pl.String)).alias("_head"))
    triples = (result.triples.join(head_map, on="head", how="inner", maintain_order="left")
               .with_columns(pl.col("_head").alias("head")).drop("_head"))
    meta = dict(result.meta)
    meta["subset"] = {"users": n_users, "of_users": users.height, "seed": seed, "events": events.height,
                      "of_events": result.events.height, "songs": items.height, "of_songs": result.items.height,
                      "source_accounting": _accounting_summary(result)}
    return {
        "events": events,
        "items": items.with_columns(pl.col("_new").alias("song_id")).drop("_new"),
        "users": new_users.with_columns(pl.col("_new").alias("user_id")).drop("_new"),
        "triples": triples,
        "meta": meta,
    }


def empty_result() -> ImportResult:
    """An :class:`ImportResult` with no rows."""
    return ImportResult(
        events=empty("events"), items=empty("items"), users=empty("users"), triples=empty("triples"),
        rejected=pl.DataFrame(schema=REJECTED_SCHEMA),
    )
