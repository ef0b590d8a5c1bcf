"""Catalogue files: one row per song with any subset of song, artist, album, genre, language, ... columns.

:func:`import_catalog` reads a CSV / TSV / RecBole ``.item`` / Parquet table whose first column (or the
column named ``song``, ``song_id``, ``song_key``, ``item_id``, ``item``, ``track_id``, ``track`` or
``id``) holds the song's source id, and returns a :class:`Catalog`. Every other column is kept: the
canonical item columns (``title``, ``artist``, ``album``, ``genre``, ``language``, ``version``,
``duration_ms``, ``release_year``) fill the items table, and every column except the id, ``title``,
``duration_ms`` and ``release_year`` is a *relation*: the log importers turn it into triples
``(song:<id>, song_<relation>, <relation>:<value>)`` for Song2Vec-KG, MIND's side info and BadCase.
RecBole type suffixes (``artist_id:token``) are dropped from the names (``artist_id``), and columns
named ``artist_id`` / ``album_id`` / ... are read as ``artist`` / ``album`` / ...

Errors are raised, not quarantined (a catalogue is a reference table: a bad row would silently
detach songs from their artist), naming file, row (0-based data row and file line) and column:
a missing id, a duplicate id, bytes that are not UTF-8, a duplicate column name, a row with the
wrong number of fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from musicrecall.io.errors import InputError
from musicrecall.io.generic import PathLike
from musicrecall.io.tables import read_csv_records
from musicrecall.io.text import bad_utf8_positions, read_bytes

ID_NAMES = ("song", "song_id", "song_key", "item_id", "item", "track_id", "track", "id")
ITEM_COLUMNS = ("title", "artist", "album", "genre", "language", "version", "duration_ms", "release_year")
NOT_RELATIONS = ("title", "duration_ms", "release_year", "song_ms")
_ALIASES = {"artist_id": "artist", "album_id": "album", "genre_id": "genre", "language_id": "language",
            "track_name": "title", "song_name": "title", "name": "title", "year": "release_year"}


@dataclass
class Catalog:
    """Songs of a catalogue file.

    Attributes:
        items: ``song_key`` plus the catalogue's columns (canonical names where they apply), as text
            except ``duration_ms`` / ``release_year``; one row per song, in file order.
        relations: the columns that become ``song_<relation>`` triples.
        source: the file read.
    """

    items: pl.DataFrame
    relations: list[str]
    source: str

    def describe(self) -> dict[str, Any]:
        """What ``meta.json`` records about the catalogue."""
        return {"source": self.source, "songs": self.items.height, "relations": list(self.relations)}


def _clean_name(name: str) -> str:
    base = name.strip().split(":", 1)[0].strip().lower().replace(" ", "_")
    return _ALIASES.get(base, base)


def _check_header(path: Path, names: list[str]) -> list[str]:
    cleaned = [_clean_name(n) for n in names]
    seen: dict[str, int] = {}
    for i, n in enumerate(cleaned):
        if not n:
            raise InputError(path, None, f"header column {i + 1} has no name")
        if n in seen:
            raise InputError(path, None, f"duplicate column name {names[i]!r} (columns {seen[n] + 1} and {i + 1}): "
                             "which one is meant is ambiguous")
        seen[n] = i
    return cleaned


def _read_text_table(path: Path) -> pl.DataFrame:
    data = read_bytes(path)
    bad = bad_utf8_positions(data)
    if bad:
        line = data.count(b"\n", 0, bad[0])
        raise InputError(path, max(line - 1, 0), f"bytes that are not UTF-8 at byte {bad[0]} (file line {line + 1}; "
                         f"{len(bad)} bad sequence(s) in the file); re-save the file as UTF-8")
    first = data.decode("utf-8-sig").split("\n", 1)[0].rstrip("\r")
    suffix = path.suffix.lower()
    sep = "\t" if suffix in (".tsv", ".item", ".inter") or ("\t" in first and "," not in first) else ","
    recs = read_csv_records(path, sep)
    if recs.rejected.height:  # a reference table: a broken row is an error, not a quarantine
        row, reason, raw = recs.rejected.sort("source_row").row(0)
        raise InputError(path, row, f"{reason}: {raw} ({recs.rejected.height} bad row(s))")
    df = recs.frame.drop("_row")
    df.columns = _check_header(path, df.columns)
    return df


def import_catalog(path: PathLike) -> Catalog:
    """Read a catalogue file (see the module docstring) into a :class:`Catalog`.

    Raises :class:`InputError` naming the file, row and column for a missing, empty or duplicate id,
    a duplicate column name, bytes that are not UTF-8, or a non-integer ``duration_ms`` /
    ``release_year``.
    """
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".pq"):
        if not p.is_file():
            raise InputError(p, None, "does not exist or is not a file")
        try:
            df = pl.read_parquet(p)
        except (pl.exceptions.PolarsError, OSError) as err:
            raise InputError(p, None, f"cannot be read as Parquet: {err}") from err
        df.columns = _check_header(p, df.columns)
        header = 0
    else:
        df = _read_text_table(p)
        header = 1
    id_col = next((c for c in ID_NAMES if c in df.columns), df.columns[0])
    keys = df.get_column(id_col).cast(pl.String).str.strip_chars()
    empty = keys.is_null() | (keys == "")
    if empty.any():
        row = int(empty.arg_max() or 0)
        raise InputError(p, row, f"column {id_col!r}: empty song id (file line {row + 1 + header})")
    dup = keys.is_duplicated()
    if dup.any():
        row = int(dup.arg_max() or 0)
        rows = (keys == keys[row]).arg_true().to_list()
        raise InputError(p, rows[1], f"column {id_col!r}: duplicate song id {keys[row]!r} (data rows "
                         f"{', '.join(map(str, rows[:5]))}; file lines {', '.join(str(r + 1 + header) for r in rows[:5])})")
    others = [c for c in df.columns if c != id_col]
    cols: dict[str, pl.Series] = {"song_key": keys}
    for c in others:
        s = df.get_column(c)
        if c in ("duration_ms", "release_year"):
            txt = s.cast(pl.String).str.strip_chars().replace("", None)
            val = txt.cast(pl.Int64, strict=False)
            bad = txt.is_not_null() & val.is_null()
            if bad.any():
                row = int(bad.arg_max() or 0)
                raise InputError(p, row, f"column {c!r}: value {txt[row]!r} is not an integer "
                                 f"(file line {row + 1 + header})")
            cols[c] = val
        else:
            cols[c] = s.cast(pl.String).str.strip_chars().replace("", None)
    relations = [c for c in others if c not in NOT_RELATIONS]
    return Catalog(items=pl.DataFrame(cols), relations=relations, source=p.name)
