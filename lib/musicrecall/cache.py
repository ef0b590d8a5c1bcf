"""Content-hash keys for cached artefacts under ``data/``.

A key covers the parameters *and* the source code that builds the artefact, so editing the simulator
or a cleaning rule can never serve a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any


def source_fingerprint(*modules: ModuleType) -> str:
    """Hash of the source files of ``modules`` (a package counts with all its ``.py`` files)."""
    digest = hashlib.sha256()
    for module in modules:
        path = Path(module.__file__)
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for file in files:
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def file_fingerprint(paths: list[Path]) -> str:
    """Hash of the bytes of ``paths`` (for user-provided datasets)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a temp file or folder named after a dead writer is stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
