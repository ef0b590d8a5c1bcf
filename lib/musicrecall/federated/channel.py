"""The only link between the two parties: typed messages serialised to bytes, every one logged.

A message is ``type`` + JSON ``meta`` (scalars only) + named numpy arrays, encoded as::

    [4-byte header length][header JSON: type, sender, seq, meta, array specs][raw array bytes]

Only ``float32``, ``int64`` and ``uint8`` (opaque blobs, e.g. PSI protobufs) arrays may travel. Each
endpoint logs every message it sends or receives (:class:`LogEntry`: direction, type, size, sha256 and,
optionally, the bytes themselves) so that :mod:`musicrecall.federated.audit` can inspect the traffic.
``inspectors`` run on every message at send/receive time, which lets the audit run online at sizes
where keeping every payload would not fit in memory.

Two transports carry the bytes: a :func:`multiprocessing.Pipe` between two processes (the default in
the notebook), or a pair of queues between two threads of one process (tests; still only bytes cross).
"""

from __future__ import annotations

import hashlib
import json
import queue
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

ALLOWED_DTYPES = ("float32", "int64", "uint8")


@dataclass
class Message:
    """A decoded message: its type, the sender's name, JSON scalars and named arrays."""

    type: str
    sender: str
    seq: int
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class LogEntry:
    """One logged message as seen by one endpoint (``direction`` is "sent" or "received")."""

    seq: int
    direction: str
    sender: str
    type: str
    nbytes: int
    sha256: str
    seconds: float
    payload: bytes | None = None


def encode(msg: Message) -> bytes:
    """Serialise ``msg`` to bytes (raises on a dtype that may not travel, or a non-scalar meta value)."""
    specs, blobs, offset = [], [], 0
    for name, arr in msg.arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in ALLOWED_DTYPES:
            raise TypeError(f"array {name!r} has dtype {arr.dtype}; allowed: {ALLOWED_DTYPES}")
        raw = arr.tobytes()
        specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset,
                      "nbytes": len(raw)})
        blobs.append(raw)
        offset += len(raw)
    for key, value in msg.meta.items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise TypeError(f"meta {key!r} must be a scalar, got {type(value).__name__}")
    header = json.dumps({"type": msg.type, "sender": msg.sender, "seq": msg.seq, "meta": msg.meta,
                         "arrays": specs}).encode()
    return struct.pack("<I", len(header)) + header + b"".join(blobs)


def decode(data: bytes) -> Message:
    """Inverse of :func:`encode` (arrays are read-only views on ``data``)."""
    (n,) = struct.unpack_from("<I", data, 0)
    header = json.loads(data[4:4 + n])
    body = memoryview(data)[4 + n:]
    arrays = {}
    for s in header["arrays"]:
        if s["dtype"] not in ALLOWED_DTYPES:
            raise TypeError(f"array {s['name']!r}: dtype {s['dtype']} may not travel")
        buf = body[s["offset"]:s["offset"] + s["nbytes"]]
        arrays[s["name"]] = np.frombuffer(buf, dtype=s["dtype"]).reshape(s["shape"])
    return Message(header["type"], header["sender"], header["seq"], header["meta"], arrays)


class Transport(Protocol):
    """Moves opaque bytes one way and the other."""

    def send_bytes(self, data: bytes) -> None: ...

    def recv_bytes(self) -> bytes: ...


class QueueTransport:
    """One end of an in-process byte link (two queues), for running a party in a thread."""

    def __init__(self, inbox: queue.Queue, outbox: queue.Queue, timeout: float = 120.0):
        self.inbox, self.outbox, self.timeout = inbox, outbox, timeout

    def send_bytes(self, data: bytes) -> None:
        self.outbox.put(bytes(data))

    def recv_bytes(self) -> bytes:
        return self.inbox.get(timeout=self.timeout)


def queue_pair() -> tuple[QueueTransport, QueueTransport]:
    """Two connected in-process transports."""
    a, b = queue.Queue(), queue.Queue()
    return QueueTransport(a, b), QueueTransport(b, a)


Inspector = Callable[[LogEntry, Message], None]


class Endpoint:
    """A party's end of the channel: send/receive typed messages, log them, run inspectors."""

    def __init__(self, name: str, transport: Transport, keep_payloads: bool = True,
                 inspectors: list[Inspector] | None = None):
        self.name, self.transport, self.keep_payloads = name, transport, keep_payloads
        self.inspectors: list[Inspector] = list(inspectors or [])
        self.log: list[LogEntry] = []
        self._seq = 0

    def _record(self, direction: str, data: bytes, msg: Message) -> None:
        entry = LogEntry(msg.seq, direction, msg.sender, msg.type, len(data),
                         hashlib.sha256(data).hexdigest()[:16], time.perf_counter(),
                         data if self.keep_payloads else None)
        self.log.append(entry)
        for inspect in self.inspectors:
            inspect(entry, msg)

    def send(self, type_: str, arrays: dict[str, np.ndarray] | None = None, **meta: Any) -> None:
        """Encode and send one message."""
        msg = Message(type_, self.name, self._seq, meta, dict(arrays or {}))
        self._seq += 1
        data = encode(msg)
        self._record("sent", data, decode(data))
        self.transport.send_bytes(data)

    def recv(self, expect: str | None = None) -> Message:
        """Receive one message; with ``expect``, raise if it is of another type (errors are re-raised)."""
        data = self.transport.recv_bytes()
        msg = decode(data)
        self._record("received", data, msg)
        if msg.type == "error":
            raise RuntimeError(f"{msg.sender} failed: {msg.meta.get('error')}")
        if expect is not None and msg.type != expect:
            raise RuntimeError(f"expected a {expect!r} message, got {msg.type!r}")
        return msg

    def request(self, type_: str, arrays: dict[str, np.ndarray] | None = None, expect: str | None = None,
                **meta: Any) -> Message:
        """Send, then wait for the reply."""
        self.send(type_, arrays, **meta)
        return self.recv(expect)

    def summary(self) -> dict[str, dict[str, int]]:
        """Messages and bytes per (direction, type)."""
        out: dict[str, dict[str, int]] = {}
        for e in self.log:
            row = out.setdefault(f"{e.direction}:{e.type}", {"messages": 0, "bytes": 0})
            row["messages"] += 1
            row["bytes"] += e.nbytes
        return out
