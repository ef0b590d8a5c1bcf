"""Behaviour histories for MIND (private to notebook 04; vectorised numpy, no per-user Python loops).

A user's history is the time-ordered list of songs they **full-played** (skips are negative feedback
and stay out of the capsule input). Training examples follow YouTube-DNN / MIND (Covington et al.,
RecSys 2016; Li et al., CIKM 2019): the target is one full play, the input the ``max_len`` full plays
before it, so no example ever sees its own future. Heavy users are capped at ``per_user`` examples so
that they do not dominate the loss.

Padding uses the id ``n_items`` (one extra embedding row) and is masked everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Sequences:
    """Per-user time-ordered song ids as CSR: ``items[indptr[r]:indptr[r+1]]`` belong to ``users[r]``."""

    users: np.ndarray  # int64 [n_users], ascending
    indptr: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int64 [nnz]

    @property
    def lengths(self) -> np.ndarray:
        """History length of every user."""
        return np.diff(self.indptr)


def user_sequences(events: pl.DataFrame, positive: str | None = "full_play") -> Sequences:
    """Time-ordered positive plays per user (``positive=None`` keeps every play)."""
    ev = events if positive is None else events.filter(pl.col(positive).fill_null(False))
    ev = ev.select("user_id", "song_id", "ts").sort(["user_id", "ts"], maintain_order=True)
    uid = ev["user_id"].to_numpy().astype(np.int64)
    users, counts = np.unique(uid, return_counts=True)
    indptr = np.zeros(users.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Sequences(users, indptr, ev["song_id"].to_numpy().astype(np.int64))


def _windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int, pad: int) -> np.ndarray:
    """``[n, max_len]`` windows ``items[max(start, end - max_len):end]``, right-aligned, left-padded."""
    offs = ends[:, None] - max_len + np.arange(max_len)[None, :]
    valid = offs >= starts[:, None]
    return np.where(valid, items[np.clip(offs, 0, max(items.shape[0] - 1, 0))], pad).astype(np.int64)


def training_examples(seqs: Sequences, max_len: int, pad: int, per_user: int = 20,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(history [n, max_len], target [n], user [n])``: up to ``per_user`` random positions per user.

    Every position with at least one earlier full play can be a target; positions are sampled
    uniformly within a user (seeded), so recent and old behaviour are both represented.
    """
    lengths = seqs.lengths
    row = np.repeat(np.arange(lengths.shape[0]), lengths)
    pos = np.arange(seqs.items.shape[0]) - seqs.indptr[row]  # position within the user
    cand = np.nonzero(pos >= 1)[0]
    key = np.random.default_rng(seed).random(cand.shape[0])
    order = np.lexsort((key, row[cand]))
    cand, crow = cand[order], row[cand[order]]
    first = np.searchsorted(crow, crow, side="left")
    keep = cand[(np.arange(cand.shape[0]) - first) < per_user]
    keep.sort()
    hist = _windows(seqs.items, seqs.indptr[row[keep]], keep, max_len, pad)
    return hist, seqs.items[keep], seqs.users[row[keep]]


def last_histories(seqs: Sequences, users: np.ndarray, max_len: int, pad: int) -> np.ndarray:
    """The last ``max_len`` full plays of each of ``users`` (all padding for a user without history)."""
    users = np.asarray(users, dtype=np.int64)
    r = np.searchsorted(seqs.users, users)
    r = np.minimum(r, max(seqs.users.shape[0] - 1, 0))
    known = (seqs.users[r] == users) if seqs.users.shape[0] else np.zeros(users.shape[0], dtype=bool)
    starts = np.where(known, seqs.indptr[r], 0)
    ends = np.where(known, seqs.indptr[r + 1], 0)
    return _windows(seqs.items, starts, ends, max_len, pad)


SIDE_PREFERRED = ("genre", "language")  # the talk's side info
SIDE_FALLBACK = ("artist", "album")  # what real song->artist/album maps have instead


def side_columns(items: pl.DataFrame, preferred: tuple[str, ...] = SIDE_PREFERRED,
                 fallback: tuple[str, ...] = SIDE_FALLBACK) -> tuple[str, ...]:
    """The item columns worth feeding as side info: those of ``preferred`` with at least two distinct values,
    else those of ``fallback`` (a constant column is no information, only a bias). Empty when the catalogue
    has no relation at all (then a model runs without side info, and the notebook says so)."""
    def useful(col: str) -> bool:
        return col in items.columns and items[col].drop_nulls().n_unique() >= 2

    return tuple(c for c in preferred if useful(c)) or tuple(c for c in fallback if useful(c))


def side_codes(items: pl.DataFrame, columns: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Integer codes (``0..n_values-1``, nulls as their own code) of categorical item columns, by ``song_id``.

    ``columns=None`` picks them with :func:`side_columns`: genre and language when the catalogue has them,
    else artist and album."""
    items = items.sort("song_id")
    out = {}
    for col in side_columns(items) if columns is None else columns:
        values = items[col].cast(pl.String).fill_null("<null>").to_numpy()
        out[col] = np.unique(values, return_inverse=True)[1].astype(np.int64)
    return out
