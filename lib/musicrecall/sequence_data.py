"""Listening sequences as model inputs, one module for SASRec, YouTube-DNN and MIND (numpy and polars only).

Every builder starts from the same ordering, :func:`ordered_plays`: a user's plays with ``label`` true
(full plays by default: skips are negative feedback and stay out of a history), sorted by user then time,
stable. Build them from the *fit* window of :func:`musicrecall.evaluation.make_eval_setup`, so that no
sequence reaches the evaluation window. Padding uses the id ``n_items`` (the extra row of every item
table) and is masked by every model.

* :class:`Sequences` (:func:`user_sequences`): each user's time-ordered songs as CSR, optionally with
  per-play side columns;
* **histories**, the input a model is served on: :func:`last_histories` (the last ``max_len`` plays of the
  given users, right-aligned, left-padded; MIND) and :func:`last_n_histories` (the same for every user id
  ``0..n_users-1`` as a :class:`Histories` table, with per-position side features; SASRec, YouTube-DNN);
  :func:`shuffle_histories` is the order-shuffle-at-inference test;
* **training data**, two schemes over the same sequences:

  - :func:`training_windows` (:class:`Windows`; SASRec and YouTube-DNN here): every play but a user's
    first is a target, cut from the end into windows of ``max_len`` inputs with their **causal targets**
    (the song played next), as in SASRec's training (Kang & McAuley, *Self-Attentive Sequential
    Recommendation*, ICDM 2018, section III-E);
  - :func:`training_examples` (MIND): up to ``per_user`` sampled target positions per user, each with the
    ``max_len`` plays before it, as in YouTube-DNN and MIND (Covington et al., RecSys 2016; Li et al.,
    CIKM 2019): one target per example, which label-aware attention needs;

* **codes**: :func:`encode_categoricals` (user features, 0 = missing) and :func:`side_codes` (song side
  information: genre and language, else artist and album).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

__all__ = [
    "SIDE_FALLBACK",
    "SIDE_PREFERRED",
    "Histories",
    "Sequences",
    "Windows",
    "encode_categoricals",
    "last_histories",
    "last_n_histories",
    "ordered_plays",
    "shuffle_histories",
    "side_codes",
    "side_columns",
    "training_examples",
    "training_windows",
    "user_sequences",
]


# --------------------------------------------------------------------------------------------------
# Per-user sequences
# --------------------------------------------------------------------------------------------------


def ordered_plays(events: pl.DataFrame, label: str | None = "full_play",
                  side_cols: Sequence[str] = ()) -> pl.DataFrame:
    """Plays with ``label`` true (all plays when ``None``), sorted by user then time (stable)."""
    ev = events if label is None else events.filter(pl.col(label).fill_null(False))
    cols = ["user_id", "song_id", "ts", *side_cols]
    return ev.select(cols).sort(["user_id", "ts"], maintain_order=True)


@dataclass(frozen=True)
class Sequences:
    """Per-user time-ordered song ids as CSR: ``items[indptr[r]:indptr[r+1]]`` belong to ``users[r]``."""

    users: np.ndarray  # int64 [n_users], ascending
    indptr: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int64 [nnz]
    side: dict[str, np.ndarray] = field(default_factory=dict)  # name -> int64 [nnz], aligned with items

    @property
    def lengths(self) -> np.ndarray:
        """History length of every user."""
        return np.diff(self.indptr)

    def bounds(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(start, end)`` of each of ``users`` in ``items`` (``0, 0`` for a user without a sequence)."""
        users = np.asarray(users, dtype=np.int64)
        if self.users.shape[0] == 0:
            zero = np.zeros(users.shape[0], dtype=np.int64)
            return zero, zero.copy()
        r = np.minimum(np.searchsorted(self.users, users), self.users.shape[0] - 1)
        known = self.users[r] == users
        return np.where(known, self.indptr[r], 0), np.where(known, self.indptr[r + 1], 0)


def user_sequences(events: pl.DataFrame, label: str | None = "full_play", side_cols: Sequence[str] = ()
                   ) -> Sequences:
    """Time-ordered ``label`` plays per user (``label=None`` keeps every play), with integer ``side_cols``."""
    plays = ordered_plays(events, label, side_cols)
    uid = plays["user_id"].to_numpy().astype(np.int64)
    users, counts = np.unique(uid, return_counts=True)
    indptr = np.zeros(users.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    side = {c: plays[c].to_numpy().astype(np.int64) for c in side_cols}
    return Sequences(users, indptr, plays["song_id"].to_numpy().astype(np.int64), side)


def _windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int, pad: int) -> np.ndarray:
    """``[n, max_len]`` windows ``items[max(start, end - max_len):end]``, right-aligned, left-padded."""
    if items.shape[0] == 0:
        return np.full((starts.shape[0], max_len), pad, dtype=np.int64)
    offs = ends[:, None] - max_len + np.arange(max_len)[None, :]
    valid = offs >= starts[:, None]
    return np.where(valid, items[np.clip(offs, 0, items.shape[0] - 1)], pad).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Histories (what a model is served on)
# --------------------------------------------------------------------------------------------------


@dataclass
class Histories:
    """Left-padded last-N histories, one row per user id (``items[u]`` is user ``u``'s history)."""

    items: np.ndarray  # int64 [n_users, max_len], pad = ``pad``
    pad: int
    side: dict[str, np.ndarray] = field(default_factory=dict)  # name -> int64 [n_users, max_len], 0 at pads

    @property
    def lengths(self) -> np.ndarray:
        """Number of real (non-pad) positions per user."""
        return (self.items != self.pad).sum(axis=1)

    def rows(self, users: np.ndarray) -> np.ndarray:
        """Histories of ``users`` (ids beyond the table get an empty history)."""
        users = np.asarray(users, dtype=np.int64)
        out = np.full((users.shape[0], self.items.shape[1]), self.pad, dtype=np.int64)
        inside = (users >= 0) & (users < self.items.shape[0])
        out[inside] = self.items[users[inside]]
        return out


def last_histories(seqs: Sequences, users: np.ndarray, max_len: int, pad: int) -> np.ndarray:
    """The last ``max_len`` plays of each of ``users`` [len(users), max_len], right-aligned and left-padded
    with ``pad`` (all padding for a user without a sequence)."""
    starts, ends = seqs.bounds(users)
    return _windows(seqs.items, starts, ends, max_len, pad)


def last_n_histories(events: pl.DataFrame, n_users: int, n_items: int, max_len: int = 50,
                     label: str | None = "full_play", side_cols: Sequence[str] = ()) -> Histories:
    """The last ``max_len`` ``label`` plays of every user (rows = user ids ``0..n_users-1``), left-padded
    with ``n_items``.

    ``side_cols`` are integer columns of ``events`` (e.g. song genre codes joined in) carried along per
    position; their pads are 0, so code 0 must mean "missing".
    """
    seqs = user_sequences(events, label, side_cols)
    starts, ends = seqs.bounds(np.arange(n_users, dtype=np.int64))
    side = {c: _windows(seqs.side[c], starts, ends, max_len, 0) for c in side_cols}
    return Histories(_windows(seqs.items, starts, ends, max_len, n_items), n_items, side)


def shuffle_histories(hist: Histories, seed: int = 0) -> Histories:
    """The same songs per user in a random order (pads stay on the left): the shuffle-at-inference test."""
    rng = np.random.default_rng(seed)
    key = rng.random(hist.items.shape)
    key[hist.items == hist.pad] = -1.0  # pads sort first, real plays in random order after them
    order = np.argsort(key, axis=1, kind="stable")
    items = np.take_along_axis(hist.items, order, axis=1)
    side = {k: np.take_along_axis(v, order, axis=1) for k, v in hist.side.items()}
    return Histories(items, hist.pad, side)


# --------------------------------------------------------------------------------------------------
# Training data: causal windows (SASRec, YouTube-DNN) and sampled examples (MIND)
# --------------------------------------------------------------------------------------------------


@dataclass
class Windows:
    """Training windows: ``inputs[w, t]`` is followed by ``targets[w, t]`` (``pad`` where nothing follows)."""

    users: np.ndarray  # int64 [n_windows]
    inputs: np.ndarray  # int64 [n_windows, max_len]
    targets: np.ndarray  # int64 [n_windows, max_len]
    pad: int

    @property
    def n_targets(self) -> int:
        return int((self.targets != self.pad).sum())

    def target_counts(self, n_items: int) -> np.ndarray:
        """How often each song is a target (the proposal of the negative sampler)."""
        t = self.targets[self.targets != self.pad]
        return np.bincount(t, minlength=n_items)


def _rank_from_end(users: np.ndarray) -> np.ndarray:
    """For rows sorted by user: 0 for each user's last row, 1 for the one before, ..."""
    n = users.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    last = np.ones(n, dtype=bool)
    last[:-1] = users[1:] != users[:-1]
    end = np.flatnonzero(last)
    end_of_row = end[np.searchsorted(end, np.arange(n))]
    return (end_of_row - np.arange(n)).astype(np.int64)


def training_windows(events: pl.DataFrame, n_items: int, max_len: int = 50, label: str | None = "full_play",
                     max_windows_per_user: int | None = None) -> Windows:
    """Each user's play sequence as right-aligned windows of ``max_len`` (input, next-play target) pairs.

    As in SASRec's training (Kang & McAuley 2018; ``seq = s[:-1]``, ``pos = s[1:]`` in SASRec.pytorch),
    the inputs are the plays but the last and the targets the plays but the first, so the **last column
    of a user's most recent window predicts the user's last play**: the position a served user vector
    is read from (the last one) is trained. The target at rank ``r`` from the end (``r = 0`` is the last
    play) sits in window ``r // max_len`` at column ``max_len - 1 - r % max_len``, its input is the play
    before it. A user with one play has no target and no window. ``max_windows_per_user`` keeps only the
    most recent windows (bounds heavy users).
    """
    seqs = user_sequences(events, label)
    u = np.repeat(seqs.users, seqs.lengths)
    s = seqs.items
    has_prev = np.zeros(u.shape[0], dtype=bool)
    has_prev[1:] = u[1:] == u[:-1]
    prev = np.full_like(s, n_items)
    prev[1:] = s[:-1]
    # one row per target (a play with a previous play of the same user): input = the previous play
    u, x, y = u[has_prev], prev[has_prev], s[has_prev]
    r = _rank_from_end(u)
    w = r // max_len
    if max_windows_per_user is not None:
        keep = w < max_windows_per_user
        u, x, y, r, w = u[keep], x[keep], y[keep], r[keep], w[keep]
    # one row per (user, window); both are sorted within the frame, so a run-length id works
    key = np.stack([u, w])
    new = np.ones(u.shape[0], dtype=bool)
    new[1:] = (key[:, 1:] != key[:, :-1]).any(axis=0)
    row = np.cumsum(new) - 1
    n_rows = int(row[-1]) + 1 if row.shape[0] else 0
    col = max_len - 1 - r % max_len
    inputs = np.full((n_rows, max_len), n_items, dtype=np.int64)
    targets = np.full((n_rows, max_len), n_items, dtype=np.int64)
    inputs[row, col], targets[row, col] = x, y
    return Windows(u[new], inputs, targets, n_items)


def training_examples(seqs: Sequences, max_len: int, pad: int, per_user: int = 20,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(history [n, max_len], target [n], user [n])``: up to ``per_user`` random positions per user.

    Every position with at least one earlier play can be a target; positions are sampled uniformly within
    a user (seeded), so recent and old behaviour are both represented, and heavy users do not dominate the
    loss. The history is the ``max_len`` plays before the target, so no example sees its own future.
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


# --------------------------------------------------------------------------------------------------
# Categorical codes: user features, song side information
# --------------------------------------------------------------------------------------------------


def encode_categoricals(frame: pl.DataFrame, id_col: str, cols: Sequence[str], n_rows: int
                        ) -> tuple[np.ndarray, list[int]]:
    """Integer codes ``[n_rows, len(cols)]`` of categorical columns, row = ``frame[id_col]``.

    Code 0 is "missing" (null, or an id absent from ``frame``); values get codes ``1..`` in sorted
    order. Returns the codes and each column's cardinality (including the 0 code).
    """
    codes = np.zeros((n_rows, len(cols)), dtype=np.int64)
    cards = []
    ids = frame[id_col].to_numpy().astype(np.int64)
    inside = (ids >= 0) & (ids < n_rows)
    for j, c in enumerate(cols):
        values = frame[c].cast(pl.String)
        vocab = sorted(v for v in values.unique().to_list() if v is not None)
        mapping = {v: i + 1 for i, v in enumerate(vocab)}
        col = values.replace_strict(mapping, default=0, return_dtype=pl.Int64).to_numpy()
        codes[ids[inside], j] = col[inside]
        cards.append(len(vocab) + 1)
    return codes, cards


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
