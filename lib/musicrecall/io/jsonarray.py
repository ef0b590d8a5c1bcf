"""Reading a file that holds one JSON array of records, so that one broken record costs only itself.

The whole file is parsed with :func:`json.loads` first (the normal case). When that fails, or the file
holds bytes that are not UTF-8, it is read record by record: a record that cannot be parsed is one
quarantined row, and the reader **resynchronises** at the next record (the next ``{`` after a ``,``
that parses as an object followed by ``,`` or ``]``), so the records after it are kept and
``rows_read`` is the true record count. Bytes that are not UTF-8 are kept as lone surrogates while parsing, so the record that holds
them is found and quarantined as ``bad_encoding`` (its ``raw`` shows the bytes as ``\\xNN``); they are
never turned into replacement characters.

Reasons: ``bad_encoding``, ``malformed_json`` (a record, or data after the closing ``]``, that is not
valid JSON), ``truncated`` (the file ends inside a record: the fragment is quarantined, not kept),
``duplicate_key`` (a record names the same field twice, e.g. two ``ms_played``, at its top level or
inside a nested object (named by its dotted path, ``extra.a``): :func:`json.loads` would silently keep
the last; which one is meant cannot be known).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from musicrecall.io.errors import InputError

RAW_MAX_CHARS = 10_000
_WS = re.compile(r"\s*")
_NEXT_RECORD = re.compile(r",\s*(?=\{)")
BROKEN = object()  # placeholder for a record that could not be read


class _Record(dict):  # type: ignore[type-arg]
    """A parsed JSON object that remembers the keys it held more than once."""

    duplicates: tuple[str, ...] = ()


# How many objects (at any depth) repeated a key so far: a parse that did not change it has no nested
# duplicate, so nested objects are searched only in the rare files that have one.
_DUP_OBJECTS = [0]


def dup_objects() -> int:
    """The running count of parsed objects that repeated a key (compare before and after a parse)."""
    return _DUP_OBJECTS[0]


def record_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :mod:`json`: a dict; one that lists the keys given more than once."""
    rec = dict(pairs)
    if len(rec) != len(pairs):  # rare: only then the slower subclass
        _DUP_OBJECTS[0] += 1
        rec = _Record(pairs)
        seen: set[str] = set()
        rec.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return rec


def _nested_duplicates(obj: Any, path: str) -> list[str]:
    """Dotted paths of the keys repeated inside the objects nested in ``obj`` (not ``obj``'s own keys)."""
    out: list[str] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        where = f"{path}[{k}]" if isinstance(obj, list) else f"{path}.{k}" if path else str(k)
        if isinstance(v, dict):
            out += [f"{where}.{d}" for d in getattr(v, "duplicates", ())]
        if isinstance(v, (dict, list)):
            out += _nested_duplicates(v, where)
    return out


def duplicate_note(rec: Any, deep: bool = False) -> str | None:
    """``"field(s) 'x' given twice: "`` for a record parsed with :func:`record_pairs`, else None.

    ``deep``: also the keys repeated inside nested objects (dotted paths); pass
    ``dup_objects() != before`` so that only a parse that met a repeated key pays for the search.
    """
    dups = list(getattr(rec, "duplicates", ()))
    if deep:
        dups += _nested_duplicates(rec, "")
    return f"field(s) {', '.join(map(repr, dups))} given twice: " if dups else None


@dataclass
class JsonBreak:
    """A record that could not be read: its index, why, and its raw text."""

    row: int
    reason: str  # bad_encoding / malformed_json / truncated
    raw: str
    where: str = ""  # "byte B (line L, column C)" where the record starts, when known


@dataclass
class JsonRecords:
    """``records[i]`` is record ``i`` (:data:`BROKEN` for those in ``breaks``); ``len(records)`` = rows read."""

    records: list[Any]
    breaks: list[JsonBreak] = field(default_factory=list)
    note: str | None = None


def _visible(text: str) -> str:
    """Text holding surrogate-escaped bytes, with those bytes spelt ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _has_bad_bytes(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    byte = len(text[:pos].encode("utf-8", "surrogateescape"))
    return f"byte {byte} (line {line}, column {col})"


def read_json_array(path: Path, on_error: Literal["raise", "quarantine"] = "raise") -> JsonRecords:
    """Read ``path`` (one JSON array) record by record; see the module docstring.

    With ``on_error="raise"`` the first broken record raises :class:`InputError` naming the file, the
    record index (= number of records before it), the byte, line and column. A file that is missing,
    empty, or not an array raises in both modes.
    """
    if on_error not in ("raise", "quarantine"):
        raise ValueError(f"on_error must be 'raise' or 'quarantine', not {on_error!r}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(path, None, f"cannot be read: {err}") from err
    if not data.strip():
        raise InputError(path, None, f"empty file ({len(data)} bytes): expected a JSON array of records")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", "surrogateescape")
    before = dup_objects()
    try:
        obj = json.loads(text, object_pairs_hook=record_pairs)
    except json.JSONDecodeError:
        out = _scan(path, text)
    else:
        if not isinstance(obj, list):
            raise InputError(path, None, f"top-level JSON value is a {type(obj).__name__}, expected an array")
        out = JsonRecords(obj)
        deep = dup_objects() != before
        try:
            text.encode("utf-8")
            bad_bytes = False
        except UnicodeEncodeError:  # bytes that are not UTF-8 somewhere: find their records
            bad_bytes = True
        for i, rec in enumerate(obj):
            if bad_bytes and _has_bad_bytes(rec):
                out.records[i] = BROKEN
                out.breaks.append(JsonBreak(i, "bad_encoding", _visible(json.dumps(rec, ensure_ascii=False))
                                            [:RAW_MAX_CHARS]))
            elif duplicate_note(rec, deep):
                out.records[i] = BROKEN
                out.breaks.append(JsonBreak(i, "duplicate_key", (duplicate_note(rec, deep) or "") + _visible(
                    json.dumps(rec, ensure_ascii=False))[:RAW_MAX_CHARS]))
    if on_error == "raise" and out.breaks:
        b = out.breaks[0]
        what = {"bad_encoding": "bytes that are not UTF-8", "truncated": "the file ends inside a record",
                "malformed_json": "invalid JSON", "duplicate_key": "a field given twice"}[b.reason]
        at = f" at {b.where}" if b.where else ""
        raise InputError(path, b.row, f"{what} in record {b.row}{at}; {b.row} complete record(s) "
                         f"before it ({len(out.breaks)} broken record(s); on_error='quarantine' keeps the others): "
                         f"{b.raw[:200]!r}")
    if out.breaks and out.note is None:
        out.note = f"{len(out.breaks)} broken record(s) quarantined: " + ", ".join(
            f"{b.reason} at record {b.row}" for b in out.breaks[:5])
    return out


def _scan(path: Path, text: str) -> JsonRecords:
    """Record-by-record reading with resynchronisation after a broken record."""
    decoder = json.JSONDecoder(object_pairs_hook=record_pairs)
    n = len(text)
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if i >= n or text[i] != "[":
        raise InputError(path, 0 if i < n else None, f"expected a JSON array ('[') at {_where(text, i)}")
    out = JsonRecords([])
    i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    if i < n and text[i] == "]":
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        if i < n:
            _broken(out, text, i, n, "malformed_json")
        return out
    while i < n:
        before = dup_objects()
        try:
            obj, j = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            j = None
        if j is not None:
            if _has_bad_bytes(obj):
                _broken(out, text, i, j, "bad_encoding")
            elif duplicate_note(obj, dup_objects() != before):
                _broken(out, text, i, j, "duplicate_key")
            else:
                out.records.append(obj)
            k = _WS.match(text, j).end()  # type: ignore[union-attr]
            if k >= n:
                out.note = "the file ends after a complete record, without ']' (cut between records?)"
                return out
            if text[k] == ",":
                i = _WS.match(text, k + 1).end()  # type: ignore[union-attr]
                if i >= n:
                    out.note = "the file ends after ',' (cut between records?)"
                continue
            if text[k] == "]":
                k2 = _WS.match(text, k + 1).end()  # type: ignore[union-attr]
                if k2 < n:
                    _broken(out, text, k2, n, "malformed_json")
                return out
            # garbage between two records: quarantine it as one record, go on at the next one
            m = _resync(decoder, text, k)
            _broken(out, text, k, m if m is not None else n, "malformed_json" if m is not None else _tail(text))
            if m is None:
                return out
            i = m
            continue
        m = _resync(decoder, text, i)
        end = m if m is not None else n
        chunk = text[i:end]
        try:
            chunk.encode("utf-8")
            reason = "malformed_json" if m is not None else _tail(text)
        except UnicodeEncodeError:
            reason = "bad_encoding"
        _broken(out, text, i, end, reason)
        if m is None:
            return out
        i = m
    return out


def _tail(text: str) -> str:
    """Reason for a broken last record: cut (no closing ``]``) or malformed."""
    return "malformed_json" if text.rstrip().endswith("]") else "truncated"


def _resync(decoder: json.JSONDecoder, text: str, start: int) -> int | None:
    """Start of the next record after ``start``: a ``{`` after ``,`` that parses as an object and is
    followed by ``,``, ``]`` or the end, as an array element is. (A record that lost its closing brace
    is followed directly by the next record, so the search does not require one.)"""
    n = len(text)
    for m in _NEXT_RECORD.finditer(text, start + 1):
        p = m.end()
        try:
            obj, j = decoder.raw_decode(text, p)
        except json.JSONDecodeError:
            continue
        k = _WS.match(text, j).end()  # type: ignore[union-attr]
        if isinstance(obj, dict) and (k >= n or text[k] in ",]"):
            return p
    return None


def _broken(out: JsonRecords, text: str, start: int, end: int, reason: str) -> None:
    chunk = text[start:end].rstrip().rstrip(",").rstrip()
    out.breaks.append(JsonBreak(len(out.records), reason, _visible(chunk[:RAW_MAX_CHARS]), _where(text, start)))
    out.records.append(BROKEN)
