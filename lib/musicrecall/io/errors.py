"""The one exception type importers raise for file-level problems."""

from __future__ import annotations

import os


class InputError(ValueError):
    """A file cannot be imported as a whole (missing, empty, malformed, missing a required column).

    The message always names the file and, when known, the record / row index (0-based) and the byte
    position, so the user can open the file at the right place. Row-level problems (one record with a
    wrong type) are *not* raised: importers reject those rows and keep the rest.

    Attributes:
        path: the offending file (as given / resolved by the importer).
        row: 0-based record or data-row index where the problem was found, or ``None``.
    """

    def __init__(self, path: str | os.PathLike[str], row: int | None, message: str) -> None:
        self.path = str(path)
        self.row = row
        where = f" (record {row})" if row is not None else ""
        super().__init__(f"{self.path}{where}: {message}")
