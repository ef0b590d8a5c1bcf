"""Reading line-oriented text files exactly: every line accounted for, bad bytes found, never replaced.

:func:`read_lines` gives one row per line with its 0-based line number, the text (``None`` when the
line holds bytes that are not UTF-8) and, for such lines, the raw bytes spelt with ``\\x..`` escapes.
A line with an invalid byte is a record the importer quarantines (reason ``bad_encoding``); the
next line is read normally, so one bad byte never costs the rest of the file. Decoding is done once
for the whole file in C; only the positions of bad bytes are visited in Python.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from musicrecall.io.errors import InputError

_BAD_POSITIONS: list[int] = []


def _record_bad(err: UnicodeError) -> tuple[str, int]:
    # Registered as a codec error handler: remember where the bad bytes are, keep decoding.
    assert isinstance(err, UnicodeDecodeError)
    _BAD_POSITIONS.append(err.start)
    return "\ufffd", err.end


codecs.register_error("musicrecall_record", _record_bad)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; :class:`InputError` when it is missing, a folder or empty."""
    if not path.is_file():
        raise InputError(path, None, "does not exist or is not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(path, None, f"cannot be read: {err}") from err
    if not data.strip():
        raise InputError(path, None, f"empty file ({len(data)} bytes)")
    return data


def decode_lines(data: bytes) -> pl.DataFrame:
    """Split ``data`` into lines: ``line_no`` (0-based), ``line`` (null if not UTF-8), ``raw`` (escaped text).

    A UTF-8 byte-order mark at the start is dropped, ``\\r\\n`` endings are accepted, and a final line
    terminator does not make an extra empty line. ``raw`` is set only for lines that are not UTF-8.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    _BAD_POSITIONS.clear()
    text = data.decode("utf-8", errors="musicrecall_record")
    bad_pos = np.array(_BAD_POSITIONS, dtype=np.int64)
    _BAD_POSITIONS.clear()
    if text.endswith("\n"):
        text = text[:-1]
    lines = pl.Series("line", [text], dtype=pl.String).str.split("\n").explode().str.strip_suffix("\r")
    df = pl.DataFrame({"line": lines}).with_row_index("line_no").with_columns(pl.col("line_no").cast(pl.Int64))
    if bad_pos.size == 0:
        return df.with_columns(pl.lit(None, dtype=pl.String).alias("raw"))
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    bad_lines = np.unique(np.searchsorted(newlines, bad_pos, side="left"))
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(data)]])
    raws = [data[starts[i]:ends[i]].rstrip(b"\r").decode("utf-8", "backslashreplace") for i in bad_lines]
    fix = pl.DataFrame({"line_no": bad_lines.astype(np.int64), "raw": raws}, schema={"line_no": pl.Int64, "raw": pl.String})
    df = df.join(fix, on="line_no", how="left", maintain_order="left")
    return df.with_columns(pl.when(pl.col("raw").is_null()).then(pl.col("line")).alias("line"))


def _is_utf8_file(path: Path, chunk: int = 1 << 24) -> bool:
    """Whether the whole file is valid UTF-8, checked in chunks (memory stays at one chunk)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as fh:
            while block := fh.read(chunk):
                dec.decode(block)
            dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def read_lines(path: Path) -> pl.DataFrame:
    """:func:`decode_lines` of the file at ``path`` (:class:`InputError` if missing or empty).

    A valid UTF-8 file (the normal case) is read by polars without holding the file as a Python string
    (a multi-GB Last.fm log stays about its own size in memory); only a file with bad bytes takes the
    byte-exact path that finds them.
    """
    if not path.is_file():
        raise InputError(path, None, "does not exist or is not a file")
    size = path.stat().st_size
    if size < (1 << 20) or not _is_utf8_file(path):
        return decode_lines(read_bytes(path))
    try:
        lines = pl.read_lines(path).get_column("line")
    except (pl.exceptions.PolarsError, OSError, AttributeError):  # read_lines is new in polars: fall back
        return decode_lines(read_bytes(path))
    if lines.len() and lines[0].startswith("\ufeff"):
        lines = lines.scatter(0, lines[0][1:])
    return pl.DataFrame({"line": lines.str.strip_suffix("\r")}).with_row_index("line_no").with_columns(
        pl.col("line_no").cast(pl.Int64), pl.lit(None, dtype=pl.String).alias("raw"))


def bad_utf8_positions(data: bytes) -> list[int]:
    """Byte offsets of every invalid UTF-8 sequence in ``data`` (empty when it is valid)."""
    _BAD_POSITIONS.clear()
    data.decode("utf-8", errors="musicrecall_record")
    out = list(_BAD_POSITIONS)
    _BAD_POSITIONS.clear()
    return out


def cut_char_bytes(data: bytes) -> int:
    """How many bytes at the end of ``data`` begin a UTF-8 character that never ends (0 if none).

    A file cut at an arbitrary byte often ends inside a multi-byte character ("Caf\\xc3"): that is the
    signature of a cut, not of a file in another encoding, so the importers treat the last record as
    ``truncated`` rather than ``bad_encoding``.
    """
    tail = data[-4:]
    for back in range(1, min(len(tail), 3) + 1):
        b = tail[-back]
        if b & 0xC0 == 0x80:  # a continuation byte: look further back for the lead byte
            continue
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 0
        return back if need > back else 0
    return 0


@dataclass
class TextFile:
    """:func:`read_text`'s result: the lines, and how the file ends."""

    lines: pl.DataFrame  # as :func:`decode_lines`
    newline: bool  # the file ends with a line break (its last record is certainly complete)
    cut_char: bool  # the file ends inside a UTF-8 character: it was cut, its last record is incomplete


def read_text(path: Path) -> TextFile:
    """:func:`read_lines` plus how the file ends (see :class:`TextFile`).

    The bytes of a character cut at the end of the file are left out of the last line (so a cut is
    reported as such, not as ``bad_encoding``); ``cut_char`` tells the importer to quarantine that line.
    """
    newline = ends_with_newline(path)
    cut = 0
    if not newline:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(fh.tell() - 4, 0))
            cut = cut_char_bytes(fh.read())
    if cut:
        data = read_bytes(path)[:-cut]
        if data.strip():
            return TextFile(decode_lines(data), False, True)
    return TextFile(read_lines(path), newline, False)


def ends_with_newline(path: Path) -> bool:
    """Whether the file's last byte is a line break (a text file cut mid-record usually is not)."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) in (b"\n", b"\r")
