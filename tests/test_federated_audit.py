"""The channel audit against re-encoded raw values: what it catches, and what bytes cannot show."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musicrecall.federated import ChannelAuditor, decode, encode
from musicrecall.federated.channel import LogEntry, Message

N_USERS, N_F = 400, 24
KEYS = [f"u{i:07d}" for i in range(N_USERS)]


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N_USERS, N_F)).astype(np.float32)


def audit(msgs: list[Message], feats: np.ndarray) -> ChannelAuditor:
    """A fresh auditor over ``msgs``, after A has sent the aligned ids (all users, in key order)."""
    a = ChannelAuditor(feats, raw_keys=KEYS)
    a.set_alignment(KEYS)
    aligned = Message("psi_aligned", "A", 0, {}, {"keys": np.frombuffer("\n".join(KEYS).encode(), np.uint8)})
    for msg in [aligned, *msgs]:
        data = encode(msg)
        a(LogEntry(msg.seq, "sent" if msg.sender == "A" else "received", msg.sender, msg.type, len(data), "", 0.0,
                   data), decode(data))
    return a


def reply(emb: np.ndarray, idx: np.ndarray | None = None) -> list[Message]:
    """An embed request for ``idx`` (default: the first rows) and B's answer ``emb``."""
    idx = np.arange(emb.shape[0], dtype=np.int64) % N_USERS if idx is None else idx  # valid aligned indices
    return [Message("embed", "A", 1, {"name": "t", "train": False}, {"idx": idx}),
            Message("embeddings", "B", 2, {}, {"emb": np.ascontiguousarray(emb, dtype=np.float32)})]


def embedding_like(n: int, dim: int = 16, seed: int = 1) -> np.ndarray:
    """What a tower sends: a nonlinear mix of all features, not any one of them."""
    rng = np.random.default_rng(seed)
    return np.tanh(rng.normal(size=(n, dim))).astype(np.float32)


def test_honest_embeddings_pass(feats):
    # a genuine function of the features (a random two-layer net) over every user, in batches
    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(size=(N_F, 32)) / 5, rng.normal(size=(32, 16)) / 6
    emb = np.maximum(feats @ w1, 0) @ w2
    msgs = []
    for b0 in range(0, N_USERS, 128):
        idx = np.arange(b0, min(b0 + 128, N_USERS), dtype=np.int64)
        msgs += reply(emb[idx], idx)
    a = audit(msgs, feats)
    assert a.passed, a.violations


RE_ENCODED_ROWS = {
    "verbatim": lambda r: r,
    "float16 in a float32 array": lambda r: r.astype(np.float16).view(np.float32),
    "rounded through float16": lambda r: r.astype(np.float16).astype(np.float32),
    "float64 in a float32 array": lambda r: r.astype(np.float64).view(np.float32),
    "scaled by 2": lambda r: r * np.float32(2),
    "scaled by -0.25": lambda r: r * np.float32(-0.25),
    "shifted by one ulp": lambda r: np.nextafter(r, np.float32(np.inf)),
    "shifted by two ulps down": lambda r: np.nextafter(np.nextafter(r, np.float32(-np.inf)), np.float32(-np.inf)),
}


@pytest.mark.parametrize("how", list(RE_ENCODED_ROWS))
def test_raw_rows_re_encoded_inside_an_embedding_are_caught(feats, how):
    rows = RE_ENCODED_ROWS[how](feats[:4].copy())
    emb = embedding_like(4, dim=rows.size // 4 + 8)
    emb[:, : rows.shape[1]] = rows.reshape(4, -1)  # a raw row hidden in the first columns of each embedding
    assert not audit(reply(emb), feats).passed, how


@pytest.mark.parametrize("how", ["verbatim", "float16 in a float32 array", "float64 in a float32 array", "scaled by 2"])
def test_raw_rows_re_encoded_inside_a_byte_blob_are_caught(feats, how):
    """In B's PSI reply (only B holds B's raw values; A can only forward them, caught where B sent them)."""
    body = RE_ENCODED_ROWS[how](feats[7:9].copy()).tobytes()
    blob = np.frombuffer(b"\x01\x02\x03" + body, np.uint8)  # at an odd byte offset
    empty = np.zeros(0, np.uint8)
    assert not audit([Message("psi_reply", "B", 1, {}, {"setup": empty, "response": blob})], feats).passed, how


COLUMNS = {
    "verbatim": lambda c: c,
    "scaled by 2": lambda c: c * 2,
    "scaled by 3 and shifted": lambda c: c * 3 + 0.5,
    "shifted by one ulp": lambda c: np.nextafter(c, np.float32(np.inf)),
    "through float16": lambda c: c.astype(np.float16).astype(np.float32),
    "through float64 and back": lambda c: c.astype(np.float64).astype(np.float32),
}


@pytest.mark.parametrize("how", list(COLUMNS))
def test_a_raw_column_inside_an_embedding_is_caught(feats, how):
    idx = np.arange(100, 164, dtype=np.int64)
    emb = embedding_like(len(idx))
    emb[:, 5] = COLUMNS[how](feats[idx, 11])
    a = audit(reply(emb, idx), feats)
    assert not a.passed, how
    assert any("column 5" in v for v in a.violations), a.violations


def test_the_whole_table_at_exactly_25_percent_of_the_words_is_caught(feats):
    # every raw value once, spread so that raw values are exactly 1 word in 4 and never adjacent
    filler = np.random.default_rng(2).uniform(10, 11, N_USERS * N_F * 4).astype(np.float32)  # never a raw value
    words = filler.copy()
    words[::4] = feats.ravel()
    a = ChannelAuditor(feats)
    assert a._values.count(words.view(np.uint32)) == len(words) // 4  # exactly the share the old rule let through
    shuffled = feats.ravel()[np.random.default_rng(2).permutation(feats.size)]
    for layout in (words, np.concatenate([filler[: 3 * len(shuffled)], shuffled])):
        emb = layout[: len(layout) // 16 * 16].reshape(-1, 16)
        assert not audit(reply(emb), feats).passed


def test_one_raw_row_scattered_in_a_large_message_is_caught(feats):
    emb = embedding_like(256, dim=32)
    pos = np.random.default_rng(3).choice(emb.size, N_F, replace=False)
    emb.ravel()[pos] = feats[42]
    assert not audit(reply(emb), feats).passed


def test_a_raw_row_as_json_text_in_a_meta_field_is_caught(feats):
    row = json.dumps([float(v) for v in feats[3]])
    assert not audit([Message("snapshot", "A", 1, {"name": "t", "note": row})], feats).passed
    few = json.dumps([round(float(v), 3) for v in feats[3][:2]])  # two values, exact digits lost
    rounded = json.dumps([round(float(v), 3) for v in feats[3]])
    assert not audit([Message("snapshot", "A", 1, {"name": "t", "note": rounded})], feats).passed  # too many numbers
    # what bytes cannot show: two rounded values are just two numbers
    assert audit([Message("snapshot", "A", 1, {"name": "t", "note": few})], feats).passed
    # and config strings with numbers stay legal
    assert audit([Message("snapshot", "A", 1, {"name": "fed_dssm_dp_s1.0_c1.0", "lr": 0.003})], feats).passed


def test_what_bytes_cannot_show(feats):
    """Stated plainly in the audit's docstring: a keyed invertible map of the rows, or noise beyond a few
    ulps outside the column layout, passes. (An honest embedding is such a map too: see the probe.)"""
    rng = np.random.default_rng(4)
    rot = np.linalg.qr(rng.normal(size=(N_F, N_F)))[0].astype(np.float32)
    assert audit(reply(feats[:64] @ rot), feats).passed  # rotated rows: every value changed
    noisy = feats[:4] * np.float32(1 + 1e-4)  # a relative change of 1e-4 is ~800 ulps
    assert audit(reply(np.hstack([noisy, embedding_like(4)])), feats).passed


@pytest.mark.parametrize("how", ["verbatim", "rounded through float16"])
def test_two_adjacent_raw_values_are_chance_three_are_a_leak(feats, how):
    """An honest embedding that holds two adjacent raw values (a float32 pair within a few ulps, or a pair
    rounded through float16) is what chance gives about once every few trainings at profile small; the
    audit flags three. The embeddings sit in other users' rows, so the per-row value count (check 3)
    does not fire either."""
    enc = RE_ENCODED_ROWS[how]
    for run, flagged in ((2, False), (3, True)):
        emb = embedding_like(8, dim=16)
        emb[5, 4:4 + run] = enc(feats[7, 10:10 + run].copy())  # user 7's values inside user 5's embedding
        a = audit(reply(emb), feats)
        assert a.passed is not flagged, (how, run, a.violations)
