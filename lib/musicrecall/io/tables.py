"""Reading a generic table file record by record, so one bad record never costs the ones after it.

:func:`read_records` returns every readable record as a row (columns as text for text formats, native
types for Parquet) with its 0-based record index ``_row``, plus the records it could not read, each with
a reason: ``bad_encoding`` (bytes that are not UTF-8), ``blank_line``, ``bad_format`` (a CSV record
with the wrong number of fields), ``truncated`` (the last record of a text file without a final line
break when it is incomplete: wrong field count, unclosed quote, a JSON line that does not parse, a
character cut in half; a complete one is kept and ``Records.open_row`` names it; or the last record of
a JSON array cut mid-record), ``malformed_json``, ``not_a_record`` (a JSON value that is
not an object). ``rows_read`` is the true record count: rows + rejected. A duplicate column name
raises :class:`~musicrecall.io.errors.InputError` (which of the two is meant cannot be known).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from musicrecall.io.errors import InputError
from musicrecall.io.jsonarray import BROKEN, dup_objects, duplicate_note, read_json_array, record_pairs
from musicrecall.io.text import bad_utf8_positions, cut_char_bytes, decode_lines, read_bytes

_REJ = {"source_row": pl.Int64, "reason": pl.String, "raw": pl.String}


@dataclass
class Records:
    """What :func:`read_records` read: ``frame`` (with ``_row``), ``rejected`` rows, counts and a note."""

    frame: pl.DataFrame
    rejected: pl.DataFrame
    rows_read: int
    note: str | None = None
    # the last record of a text file without a final line break, kept because it is complete: a value
    # the importer finds invalid in it is a sign of a cut (``truncated``), e.g. "2024-01-01T1"
    open_row: int | None = None


def check_columns(path: Path, names: list[str]) -> None:
    """:class:`InputError` for an empty or duplicate column name (compared without case and spaces)."""
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        key = str(n).strip().lower()
        if not key:
            raise InputError(path, None, f"header column {i + 1} has no name")
        if key in seen:
            raise InputError(path, None, f"duplicate column name {n!r} (columns {seen[key] + 1} and {i + 1}): "
                             "which one holds the data is ambiguous; rename one")
        seen[key] = i


def _one_line(line: str, sep: str) -> list[str] | None:
    """One CSV line parsed on its own (None when its quoting is broken)."""
    try:
        return next(csv.reader([line.rstrip("\r")], delimiter=sep, strict=True), [])
    except csv.Error:
        return None


def _bad_lines(data: bytes) -> set[int]:
    pos = bad_utf8_positions(data)
    if not pos:
        return set()
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return set(np.searchsorted(newlines, np.array(pos), side="left").tolist())


def _fast_csv(path: Path, data: bytes, sep: str) -> Records | None:
    """The common case in polars: no quote characters, every line with the header's field count, a final
    line break. Anything else (None) goes to the record-by-record reader, which finds the bad rows."""
    if b'"' in data or not data.endswith(b"\n") or b"\r" in data.replace(b"\r\n", b""):
        return None
    lines = pl.Series([data.decode("utf-8")[:-1]]).str.split("\n").explode().str.strip_suffix("\r")
    header = lines[0].split(sep)
    names = [h.strip() for h in header]
    check_columns(path, names)
    body = lines.slice(1)
    if body.len() == 0 or not (body.str.count_matches(sep, literal=True) == len(names) - 1).all():
        return None
    if (body.str.strip_chars() == "").any():
        return None
    frame = pl.DataFrame({"_l": body}).select(
        pl.col("_l").str.split(sep).list.to_struct(fields=names).alias("_s")
    ).unnest("_s")
    frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
    return Records(frame, pl.DataFrame(schema=_REJ), body.len())


OPEN_KEPT = "no line break after the last record, which is complete and kept"
OPEN_CUT = "no line break after the last record, which is incomplete (file cut?) and quarantined as truncated"


def _read_csv(path: Path, sep: str) -> Records:
    data = read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    ends_nl = data.endswith((b"\n", b"\r"))
    cut_char = 0 if ends_nl else cut_char_bytes(data)
    if cut_char:  # the file ends inside a character: it was cut, its last record is incomplete
        data = data[:-cut_char]
    bad = _bad_lines(data)
    if not bad and not cut_char:
        fast = _fast_csv(path, data if ends_nl else data + b"\n", sep)
        if fast is not None:
            if not ends_nl:
                fast.note, fast.open_row = OPEN_KEPT, fast.rows_read - 1
            return fast
    text = data.decode("utf-8", errors="replace")
    # strict: a quote that is never closed makes an error (not one record swallowing the next lines)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(path, None, "no header line") from None
    if any(line < reader.line_num for line in bad):
        raise InputError(path, None, "the header line holds bytes that are not UTF-8")
    names = [h.strip() for h in header]
    check_columns(path, names)
    width = len(names)
    cols: list[list[str | None]] = [[] for _ in names]
    rows: list[int] = []
    rej: list[tuple[int, str, str]] = []
    prev = reader.line_num
    idx = 0
    last_ok = False
    text_lines: list[str] | None = None
    while True:
        try:
            rec: list[str] | None = next(reader)
        except StopIteration:
            break
        except csv.Error:
            rec = None
        cur = reader.line_num
        span = range(prev, cur)  # 0-based file lines of this record
        pieces: list[tuple[list[str] | None, range]] = [(rec, span)]
        if rec is None or (len(span) > 1 and len(rec) != width):
            # bad quoting: read the lines it spans one by one, so it costs only the lines that are bad
            if text_lines is None:
                text_lines = text.split("\n")
            pieces = [(_one_line(text_lines[k], sep), range(k, k + 1)) for k in span]
        for fields, lines in pieces:
            raw = sep.join(fields or [])
            bad_here = [k for k in lines if k in bad] if bad else []
            if bad_here:
                raw_bytes = data.split(b"\n")[bad_here[0]]
                rej.append((idx, "bad_encoding", f"file line {bad_here[0] + 1}: " +
                            raw_bytes.rstrip(b"\r").decode("utf-8", "backslashreplace")))
                last_ok = False
            elif fields is None:
                rej.append((idx, "bad_format", f"file line {lines[0] + 1}: bad quoting (a quote that is never "
                            f"closed, or text after a closing quote): {text_lines[lines[0]] if text_lines else ''}"))
                last_ok = False
            elif not fields or (len(fields) == 1 and not fields[0].strip() and width > 1):
                rej.append((idx, "blank_line", f"file line {lines[0] + 1}"))
                last_ok = False
            elif len(fields) != width:
                rej.append((idx, "bad_format", f"file line {lines[0] + 1}: {len(fields)} field(s), the header has "
                            f"{width}: {raw}"))
                last_ok = False
            else:
                for c, v in zip(cols, fields, strict=True):
                    c.append(v)
                rows.append(idx)
                last_ok = True
            idx += 1
        prev = cur
    idx -= 1
    n = idx + 1
    note = None
    open_row = None
    if n and not ends_nl:
        # a complete last record (right field count, quoting closed) is kept; an incomplete one is a cut
        if last_ok and not cut_char:
            note, open_row = OPEN_KEPT, n - 1
        elif last_ok:
            rows.pop()
            values = [c.pop() or "" for c in cols]
            rej.append((n - 1, "truncated", "a character cut in half at the end of the file; last record, no "
                        f"line break after it: {sep.join(values)}"))
            note = OPEN_CUT
        elif cut_char or rej[-1][1] == "bad_format":
            last = rej.pop()
            rej.append((last[0], "truncated", f"{last[1]}; last record, no line break after it: {last[2]}"))
            note = OPEN_CUT
    frame = pl.DataFrame({name: pl.Series(name, c, dtype=pl.String) for name, c in zip(names, cols, strict=True)})
    frame = frame.with_columns(pl.Series("_row", rows, dtype=pl.Int64))
    return Records(frame, pl.DataFrame(rej, schema=_REJ, orient="row"), n, note, open_row)


def read_csv_records(path: Path, sep: str) -> Records:
    """A CSV / TSV file record by record (text columns, ``_row``); see the module docstring."""
    return _read_csv(path, sep)


def _json_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v)


def _from_objects(path: Path, records: list[tuple[int, Any]]) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """Objects as text columns (non-strings as their JSON text, so types stay checkable)."""
    keys: dict[str, None] = {}
    rej: list[tuple[int, str, str]] = []
    good: list[tuple[int, dict[str, Any]]] = []
    for i, r in records:
        if isinstance(r, dict):
            good.append((i, r))
            keys.update(dict.fromkeys(r))
        else:
            rej.append((i, "not_a_record", json.dumps(r)[:10_000]))
    names = list(keys)
    check_columns(path, names)
    data = {k: pl.Series(k, [_json_text(r.get(k)) for _, r in good], dtype=pl.String) for k in names}
    frame = pl.DataFrame(data).with_columns(pl.Series("_row", [i for i, _ in good], dtype=pl.Int64))
    return frame, rej


def _read_ndjson(path: Path) -> Records:
    data = read_bytes(path)
    ends_nl = data.endswith(b"\n")
    cut_char = 0 if ends_nl else cut_char_bytes(data)
    lines = decode_lines(data[:len(data) - cut_char])
    objs: list[tuple[int, Any]] = []
    rej: list[tuple[int, str, str]] = []
    n = lines.height
    for i, line, raw in lines.iter_rows():
        if raw is not None:
            rej.append((i, "bad_encoding", raw))
        elif not line.strip():
            rej.append((i, "blank_line", ""))
        else:
            try:
                if cut_char and i == n - 1:
                    raise json.JSONDecodeError("a character cut in half at the end of the file", line, len(line))
                before = dup_objects()
                obj = json.loads(line, object_pairs_hook=record_pairs)
            except json.JSONDecodeError as err:
                reason = "truncated" if i == n - 1 and not ends_nl else "malformed_json"
                rej.append((i, reason, f"{err.msg}: {line[:10_000]}"))
                continue
            note = duplicate_note(obj, dup_objects() != before)
            if note:
                rej.append((i, "duplicate_key", f"{note}{line[:10_000]}"))
            else:
                objs.append((i, obj))
    frame, more = _from_objects(path, objs)
    note = None
    if n and not ends_nl:  # a JSON line is complete when it parses: a cut one cannot
        note = OPEN_CUT if rej and rej[-1][:2] == (n - 1, "truncated") else OPEN_KEPT
    return Records(frame, pl.DataFrame(rej + more, schema=_REJ, orient="row").sort("source_row"), n, note)


def _read_json(path: Path) -> Records:
    read = read_json_array(path, "quarantine")
    frame, rej = _from_objects(path, [(i, r) for i, r in enumerate(read.records) if r is not BROKEN])
    rej += [(b.row, b.reason, b.raw) for b in read.breaks]
    return Records(frame, pl.DataFrame(rej, schema=_REJ, orient="row").sort("source_row"), len(read.records),
                   read.note)


def read_records(path: Path) -> Records:
    """Read ``path`` by its suffix: ``.csv``; ``.tsv`` / ``.txt`` / ``.inter`` (tab); ``.parquet`` / ``.pq``;
    ``.json`` (an array of objects); ``.jsonl`` / ``.ndjson`` (one object per line)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        if not path.is_file():
            raise InputError(path, None, "does not exist or is not a file")
        try:
            df = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as err:
            raise InputError(path, None, f"cannot be read as Parquet: {err}") from err
        check_columns(path, df.columns)
        df = df.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
        return Records(df, pl.DataFrame(schema=_REJ), df.height)
    if suffix == ".csv":
        return _read_csv(path, ",")
    if suffix in (".tsv", ".txt", ".inter"):
        return _read_csv(path, "\t")
    if suffix == ".json":
        return _read_json(path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_ndjson(path)
    raise InputError(path, None, f"unknown table format {suffix!r} (expected .csv, .tsv, .parquet, .json, .jsonl)")
