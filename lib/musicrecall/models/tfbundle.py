"""A minimal reader of TensorFlow V2 checkpoints ("tensor bundles") without TensorFlow.

A bundle is ``<prefix>.index``, an uncompressed LevelDB SSTable whose keys are variable names and whose
values are ``BundleEntryProto`` protobufs (dtype, shape, shard, offset, size), plus the raw tensor bytes
in ``<prefix>.data-00000-of-00001``. The format is documented in TensorFlow's
``tensorflow/core/util/tensor_bundle/tensor_bundle.h`` and LevelDB's ``doc/table_format.md``. Only what
the musicnn checkpoints need is implemented: one data shard, no compression, numeric dense tensors.
The PyPI ``tensorflow-checkpoint-reader`` would pin protobuf 3.18, which clashes with ``openmined-psi``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = 0xDB4775248B80FB57
# tensorflow/core/framework/types.proto DataType -> numpy
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 14: np.float16, 19: np.float16, 17: np.uint16, 22: np.uint32, 23: np.uint64}


class BundleError(ValueError):
    """The file is not a tensor bundle this reader understands."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Protobuf wire-format fields (number, value) of a message, in order."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 1:
            val, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            val, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        out.append((num, val))
    return out


def _block_entries(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one SSTable block (prefix-compressed keys; restart array at the end)."""
    if data[offset + size] != 0:  # 5-byte trailer: compression type (0 = none) + crc
        raise BundleError("compressed SSTable blocks are not supported")
    block = data[offset:offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 * (n_restarts + 1)
    pos, key, out = 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key, block[pos:pos + vlen]))
        pos += vlen
    return out


def read_index(index_path: str | Path) -> dict[str, tuple[np.dtype, tuple[int, ...], int, int]]:
    """``name -> (dtype, shape, offset, size)`` for every tensor of a bundle's ``.index`` file."""
    data = Path(index_path).read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise BundleError(f"{index_path}: not an SSTable (bad magic)")
    footer = data[-48:]
    _, pos = _varint(footer, 0)  # metaindex handle (unused)
    _, pos = _varint(footer, pos)
    idx_off, pos = _varint(footer, pos)
    idx_size, _ = _varint(footer, pos)
    entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
    for _, handle in _block_entries(data, idx_off, idx_size):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        for key, value in _block_entries(data, off, size):
            if not key:  # the BundleHeaderProto
                continue
            f = dict(_fields(value))
            if f.get(3, 0) != 0:
                raise BundleError("multi-shard bundles are not supported")
            dims = [dict(_fields(d)).get(1, 0) for n, d in _fields(f.get(2, b"")) if n == 2]
            dtype = _DTYPES.get(int(f.get(1, 0)))
            if dtype is None:
                raise BundleError(f"{key!r}: unsupported dtype {f.get(1)}")
            entries[key.decode()] = (np.dtype(dtype), tuple(int(d) for d in dims), int(f.get(4, 0)),
                                     int(f.get(5, 0)))
    return entries


def read_bundle(prefix: str | Path) -> dict[str, np.ndarray]:
    """All tensors of the bundle at ``prefix`` (``prefix + '.index'`` / ``'.data-00000-of-00001'``)."""
    prefix = str(prefix)
    raw = Path(prefix + ".data-00000-of-00001").read_bytes()
    out = {}
    for name, (dtype, shape, offset, size) in read_index(prefix + ".index").items():
        if offset + size > len(raw):
            raise BundleError(f"{name}: data file truncated")
        arr = np.frombuffer(raw, dtype=dtype, count=size // dtype.itemsize, offset=offset)
        out[name] = arr.reshape(shape).copy()
    return out
