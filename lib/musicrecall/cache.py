"""Content-hash keys for cached artefacts under ``data/``.

A key covers the parameters *and* the source code that builds the artefact, so editing the simulator
or a cleaning rule can never serve a stale cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


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


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock while building the cached artefact ``target``.

    Notebooks run side by side and each builds what it misses: the caller checks the cache again once it
    holds the lock, so the second kernel to miss waits and reads what the first built instead of building
    it too (at profile medium, two kernels cleaning the log at once would need ~30 GB). ``flock`` locks go
    with the process, so a killed builder never leaves a lock behind.
    """
    lock = target.parent / f".{target.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a temp file or folder named after a dead writer is stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class IdentityMemo:
    """A small in-process LRU memo keyed by the identity of some objects (data frames, evaluation setups: too
    large to hash by content on every call) and hashable arguments. The objects are kept alive in their entry,
    so an id cannot be reused by another object while the entry exists."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple, tuple[tuple, Any]] = OrderedDict()

    def get(self, objects: tuple, args: Hashable, build: Callable[[], T]) -> T:
        """The value memoised for (``objects`` by identity, ``args``), or ``build()`` (then memoised)."""
        key = (tuple(id(o) for o in objects), args)
        hit = self._entries.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], objects, strict=True)):
            self._entries.move_to_end(key)
            return hit[1]
        value = build()
        self._entries[key] = (objects, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value
