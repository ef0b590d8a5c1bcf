"""Audit of the channel: every message is checked against a whitelist and against both parties' raw data.

The auditor is a trusted observer (the test harness, or the notebook acting as one): it may read both
parties' raw tables, which the parties themselves never do. For each message it checks:

1. **schema**: the type is known, comes from the party allowed to send it, and carries only the
   declared arrays with the declared dtypes (``float32`` embeddings/gradients, ``int64`` aligned
   indices, ``uint8`` PSI protobufs / aligned ids);
2. **no raw feature row**: no two values that are adjacent in a row of party B's raw feature table
   appear adjacent anywhere in the bytes (at every 4-byte alignment for opaque ``uint8`` blobs, at
   the word alignment of typed arrays) — a 64-bit pattern that chance essentially never reproduces;
3. **no raw feature column**: the share of float32 words equal to some raw feature value stays below
   ``max_value_share`` (chance coincidences exist and grow with the table; a leaked column matches
   every word);
4. **ids**: every user id string found in an opaque ``uint8`` blob is in the intersection (no party
   learns the other's non-overlapping ids), and indices A sends are valid aligned indices;
5. **party A's raw data**: no song or artist key of A's catalogue (``item_key_pattern``) appears in
   any ``uint8`` blob or header string, and A's only float traffic, ``grad``, has exactly the shape of the
   training embeddings it answers (one gradient row per released embedding row: no room for item
   features or labels to ride along);
6. **meta**: header scalars are config values, never raw feature values.

Text keys are searched where text can be: opaque byte blobs and header strings. Typed ``float32`` and
``int64`` arrays are checked by value (2, 3, 5), not as text: the exponent byte of a float between about
1e-9 and 1e-4 is an ASCII digit, so a gradient spells ``s`` plus six digits by chance (it did, about
once per run at profile small).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from musicrecall.federated.channel import LogEntry, Message, decode

# type -> (sender, {array name: dtype})
SCHEMA: dict[str, tuple[str, dict[str, str]]] = {
    "psi_request": ("A", {"request": "uint8"}),
    "psi_reply": ("B", {"setup": "uint8", "response": "uint8"}),
    "psi_aligned": ("A", {"keys": "uint8"}),
    "init_tower": ("A", {}),
    "embed": ("A", {"idx": "int64"}),
    "embeddings": ("B", {"emb": "float32"}),
    "grad": ("A", {"grad": "float32"}),
    "snapshot": ("A", {}),
    "restore": ("A", {}),
    "privacy_request": ("A", {}),
    "privacy": ("B", {}),
    "ok": ("B", {}),
    "shutdown": ("A", {}),
}


def _pair_keys(words: np.ndarray) -> np.ndarray:
    """64-bit keys of adjacent uint32 words (along the last axis)."""
    return (words[..., :-1].astype(np.uint64) << np.uint64(32)) | words[..., 1:].astype(np.uint64)


_FILTER_BITS = 23  # an 8 MB bitmap: ~5% of its slots are set by a table of 500k keys


class _KeySet:
    """Exact membership counts in a set of uint32/uint64 keys. A bitmap of the keys' low bits rejects
    ~95% of the queries in one gather; only the rest are binary-searched (sorted first, so the search
    walks the table once). Same answers as searching every word; the audit of a training batch
    (embed, embeddings, grad) drops from ~7.4 to ~4.9 ms."""

    def __init__(self, keys: np.ndarray):
        self.keys = np.unique(keys)
        self._mask = self.keys.dtype.type((1 << _FILTER_BITS) - 1)
        self._bits = np.zeros(1 << _FILTER_BITS, dtype=bool)
        self._bits[self.keys & self._mask] = True

    def count(self, queries: np.ndarray) -> int:
        """How many of ``queries`` are in the set."""
        if self.keys.shape[0] == 0:
            return 0
        cand = np.sort(queries[self._bits[queries & self._mask]])
        pos = np.minimum(np.searchsorted(self.keys, cand), self.keys.shape[0] - 1)
        return int(np.count_nonzero(self.keys[pos] == cand))


@dataclass
class ChannelAuditor:
    """Checks messages one by one (usable online as a channel inspector, or offline on a log)."""

    raw_features: np.ndarray  # party B's raw float features [n_users, n_features]
    aligned_keys: set[str] = field(default_factory=set)
    n_aligned: int = 0
    key_pattern: str = r"u\d{7}"
    item_key_pattern: str = r"s\d{6}|artist_\d{4}"  # A's song and artist keys (the simulated world's)
    max_value_share: float = 0.25  # chance is ~0.1-1% on N(0,1)-like data, a leaked column ~100%
    violations: list[str] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    by_type: dict[str, list[int]] = field(default_factory=dict)
    value_matches: int = 0
    float_words: int = 0

    def __post_init__(self) -> None:
        raw = np.ascontiguousarray(self.raw_features, dtype=np.float32)
        words = raw.view(np.uint32)
        self._pairs = _KeySet(_pair_keys(words).ravel())
        vals = np.unique(words.ravel())
        self._values = _KeySet(vals[(vals != 0) & (vals != 0x3F800000)])  # 0.0 and 1.0 are not information
        self._key_re = re.compile(self.key_pattern.encode())
        self._item_re = re.compile(self.item_key_pattern.encode()) if self.item_key_pattern else None
        self._train_shape: dict[str, tuple[int, ...]] = {}  # tower -> shape of its last training embeddings
        self._pending: tuple[str, bool, int] | None = None  # the embed request awaiting its reply

    def set_alignment(self, keys: list[str]) -> None:
        """The intersection, once PSI is done (ids outside it must never appear)."""
        self.aligned_keys, self.n_aligned = set(keys), len(keys)

    def _fail(self, entry: LogEntry, what: str) -> None:
        self.violations.append(f"#{entry.seq} {entry.sender}:{entry.type}: {what}")

    def __call__(self, entry: LogEntry, msg: Message) -> None:
        if entry.direction == "received" and entry.sender == "A":
            return  # each message is audited once, on the side that logs it
        self.messages += 1
        self.bytes += entry.nbytes
        row = self.by_type.setdefault(f"{msg.sender}->{'B' if msg.sender == 'A' else 'A'}:{msg.type}", [0, 0])
        row[0], row[1] = row[0] + 1, row[1] + entry.nbytes
        if msg.type == "error":
            return
        sender, arrays = SCHEMA.get(msg.type, (None, None))
        if sender is None:
            return self._fail(entry, "unknown message type")
        if msg.sender != sender:
            self._fail(entry, f"sent by {msg.sender}, only {sender} may")
        got = {k: v.dtype.name for k, v in msg.arrays.items()}
        if got != arrays:
            self._fail(entry, f"arrays {got} != schema {arrays}")
        for arr in msg.arrays.values():
            blob = arr.dtype == np.uint8
            self._check_bytes(entry, np.ascontiguousarray(arr).tobytes(), offsets=4 if blob else 1, text=blob)
        for name, arr in msg.arrays.items():
            if arr.dtype == np.float32 and arr.size:
                hits = self._raw_values(np.ascontiguousarray(arr).view(np.uint32).ravel())
                self.value_matches, self.float_words = self.value_matches + hits, self.float_words + arr.size
                if hits > self.max_value_share * arr.size:
                    self._fail(entry, f"{name}: {hits}/{arr.size} words equal raw feature values")
            if msg.type == "embed" and arr.size and (arr.min() < 0 or arr.max() >= max(self.n_aligned, 1)):
                self._fail(entry, "indices outside the aligned range")
        if got == arrays:
            self._check_shapes(entry, msg)
        for key, value in msg.meta.items():
            if isinstance(value, str) and self._item_re is not None and self._item_re.search(value.encode()):
                self._fail(entry, f"meta {key} carries a song/artist key of party A")
            if isinstance(value, float) and self._raw_values(np.float32(value).reshape(1).view(np.uint32)):
                self._fail(entry, f"meta {key}={value} equals a raw feature value")
        return None

    def _check_shapes(self, entry: LogEntry, msg: Message) -> None:
        """``embeddings`` has one row per requested index; ``grad`` answers the last *training*
        ``embeddings`` of its tower with exactly its shape (the protocol is request/reply, in order)."""
        if msg.type == "embed":
            idx = msg.arrays["idx"]
            self._pending = (str(msg.meta.get("name")), bool(msg.meta.get("train")), idx.shape[0])
            if idx.ndim != 1:
                self._fail(entry, "indices must be a vector")
        elif msg.type == "embeddings":
            name, train, n = self._pending or ("", False, -1)
            self._pending = None
            if msg.arrays["emb"].shape[0] != n:
                self._fail(entry, f"{msg.arrays['emb'].shape[0]} embedding rows for {n} requested users")
            if train:
                self._train_shape[name] = tuple(msg.arrays["emb"].shape)
        elif msg.type == "grad":
            want = self._train_shape.pop(str(msg.meta.get("name")), None)
            got = tuple(msg.arrays["grad"].shape)
            if got != want:
                self._fail(entry, f"grad of shape {got} answers no training embeddings (expected {want})")

    def _raw_values(self, words: np.ndarray) -> int:
        """How many of the uint32 ``words`` are the bit pattern of a raw feature value."""
        return self._values.count(words)

    def _check_bytes(self, entry: LogEntry, body: bytes, offsets: int = 4, text: bool = True) -> None:
        for offset in range(offsets):
            n = (len(body) - offset) // 4
            if n < 2:
                continue
            words = np.frombuffer(body, dtype=np.uint32, count=n, offset=offset)
            if self._pairs.count(_pair_keys(words)):
                self._fail(entry, "two adjacent raw feature values of one user cross the channel")
                break
        if not text:
            return
        if self._item_re is not None and self._item_re.search(body):
            self._fail(entry, "a song/artist key of party A crosses the channel")
        found = {m.decode() for m in self._key_re.findall(body)}
        outside = found - self.aligned_keys
        if outside:
            self._fail(entry, f"{len(outside)} user ids outside the intersection (e.g. {sorted(outside)[:3]})")

    def audit_log(self, log: list[LogEntry]) -> ChannelAuditor:
        """Run the checks over a log that kept its payloads."""
        for entry in log:
            if entry.payload is None:
                raise ValueError("this log did not keep payloads; audit online with an inspector")
            self(entry, decode(entry.payload))
        return self

    @property
    def passed(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, float]:
        """Messages, bytes, violations and the chance rate of single-value coincidences."""
        return {"messages": self.messages, "bytes": self.bytes, "violations": len(self.violations),
                "value_match_share": self.value_matches / max(self.float_words, 1)}
