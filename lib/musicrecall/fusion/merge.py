"""The quota merge of recall channels (notebook 08): quotas, the interleaved merge, the fused recall.

See :mod:`musicrecall.fusion` for the rule. Named ``merge_channel_lists`` (not ``merge_channel_lists``) because
:func:`musicrecall.serving.merge_channel_lists` is a different merge: MIND's interests of *one* model by score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from musicrecall.evaluation import UserItemCSR

# (users, k, exclude rows aligned with users or None) -> (ids int64 [U, k], scores float32 [U, k])
Channel = Callable[[np.ndarray, int, UserItemCSR | None], tuple[np.ndarray, np.ndarray]]


def channel_quotas(shares: Mapping[str, float], k: int) -> dict[str, int]:
    """Integer slots per channel from ``shares`` (normalised), largest-remainder rounding: Σ = ``k``."""
    names = list(shares)
    w = np.array([max(float(shares[n]), 0.0) for n in names])
    if w.sum() <= 0:
        raise ValueError("at least one channel needs a positive share")
    exact = k * w / w.sum()
    q = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - q), kind="stable")  # ties: the channel listed first
    q[order[: k - int(q.sum())]] += 1
    return dict(zip(names, q.tolist(), strict=True))


def merge_channel_lists(cands: np.ndarray, quotas: np.ndarray, k: int, backfill: np.ndarray | None = None,
                n_items: int | None = None, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Fuse channel lists with quotas (module docstring): ``(lists int64 [U, k], source int64 [U, k])``.

    ``cands`` int64 [U, C, M]: channel ``c``'s ranked candidates for user ``u`` (``-1`` = none);
    ``quotas`` int [C] or [U, C]; ``backfill`` int64 [U, B] or [B] (e.g. popularity order), used only
    when every channel has run out. ``source`` is the channel of each slot, ``C`` for back-fill and
    ``-1`` for an empty slot (only when channels and back-fill together have fewer than ``k`` songs).
    """
    cands = np.asarray(cands, dtype=np.int64)
    n_users, n_ch, _ = cands.shape
    q = np.broadcast_to(np.asarray(quotas, dtype=np.int64), (n_users, n_ch))
    if backfill is not None:
        bf = np.broadcast_to(np.asarray(backfill, dtype=np.int64).reshape(-1 if np.ndim(backfill) == 2 else 1,
                                                                            np.shape(backfill)[-1]),
                             (n_users, np.shape(backfill)[-1]))
        width = max(cands.shape[2], bf.shape[1])
        pad = lambda a: np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])], constant_values=-1)  # noqa: E731
        cands = np.concatenate([pad(cands), pad(bf)[:, None, :]], axis=1)
        q = np.hstack([q, np.zeros((n_users, 1), dtype=np.int64)])
    top = int(cands.max(initial=-1)) + 1
    n_items = max(n_items or 0, top)
    lists = np.full((n_users, k), -1, dtype=np.int64)
    source = np.full((n_users, k), -1, dtype=np.int64)
    for b0 in range(0, n_users, batch):
        b1 = min(b0 + batch, n_users)
        lists[b0:b1], source[b0:b1] = _merge_batch(cands[b0:b1], q[b0:b1], k, n_items, n_ch)
    return lists, source


def _merge_batch(cands: np.ndarray, q: np.ndarray, k: int, n_items: int, n_real: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Slot-by-slot greedy merge of one batch of users, vectorised over users (see :func:`merge_channel_lists`).

    Invariant between slots: every channel that still has candidates points at a song nobody has taken
    (``cur``). Taking a song only moves the channels that point at it, so a slot touches a few
    (user, channel) pairs instead of re-reading every pointer."""
    b, n_ch, m = cands.shape
    rows = np.arange(b)
    taken = np.zeros((b, n_items + 1), dtype=bool)
    taken[:, n_items] = True  # column n_items stands for "empty" (-1): always skipped
    ptr = np.zeros((b, n_ch), dtype=np.int64)
    cnt = np.zeros((b, n_ch), dtype=np.int64)
    cur = np.full((b, n_ch), n_items, dtype=np.int64)
    is_fill = np.arange(n_ch) >= n_real
    out = np.full((b, k), -1, dtype=np.int64)
    src = np.full((b, k), -1, dtype=np.int64)
    big = 1e9
    qf = np.maximum(q, 1).astype(np.float64)

    def advance(r: np.ndarray, c: np.ndarray) -> None:  # move pointers (r, c) to their next untaken song
        while len(r):
            p = ptr[r, c]
            live = p < m
            song = np.where(live, cands[r, c, np.minimum(p, m - 1)], n_items)
            song = np.where(song >= 0, song, n_items)
            cur[r, c] = song
            bad = live & taken[r, song]
            r, c = r[bad], c[bad]
            ptr[r, c] += 1

    advance(np.repeat(rows, n_ch), np.tile(np.arange(n_ch), b))
    for slot in range(k):
        alive = ptr < m
        under = alive & ~is_fill & (cnt < q)
        over = alive & ~is_fill & (cnt >= q)
        key = np.where(under, (cnt + 0.5) / qf, np.inf)
        key = np.minimum(key, np.where(over, big + (cnt - q + 0.5) / qf, np.inf))  # a channel ran short
        key = np.minimum(key, np.where(alive & is_fill, 2 * big, np.inf))  # every channel ran out
        pick = np.argmin(key, axis=1)  # ties: the channel listed first
        ok = np.isfinite(key[rows, pick])
        if not ok.any():
            break
        r, c = rows[ok], pick[ok]
        song = cur[r, c]
        out[r, slot], src[r, slot] = song, c
        taken[r, song] = True
        cnt[r, c] += 1
        rr, cc = np.nonzero((cur[r] == song[:, None]) & alive[r])  # the picked channel and any other at the song
        advance(r[rr], cc)
    return out, src


@dataclass
class FusedRecall:
    """Channels fused by :func:`merge_channel_lists`; ``recommend`` fits :func:`musicrecall.evaluation.evaluate_recommender`."""

    channels: dict[str, Channel]
    shares: dict[str, float]
    backfill: Channel
    fetch: float = 1.0  # each channel is asked for ceil(fetch * k) candidates
    _memo: dict = field(default_factory=dict, repr=False)

    def fuse(self, users: np.ndarray, k: int, exclude: UserItemCSR | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """``(lists [U, k], source [U, k])``: source indexes ``list(channels)``, ``len(channels)`` = back-fill.

        The last answers are kept: a shorter ``k`` for the same users is the prefix of the longer fused
        list (its top-k), so every table of a notebook reads the same lists.
        """
        users = np.asarray(users, dtype=np.int64)
        key = (hash(users.tobytes()), len(users),
               None if exclude is None else hash((exclude.indptr.tobytes(), exclude.indices.tobytes())))
        if key in self._memo and self._memo[key][0].shape[1] >= k:
            lists, source = self._memo[key]
            return lists[:, :k], source[:, :k]
        out = self._fuse(users, k, exclude)
        self._memo[key] = out
        while len(self._memo) > 4:  # bounded memory
            self._memo.pop(next(iter(self._memo)))
        return out

    def _fuse(self, users: np.ndarray, k: int, exclude: UserItemCSR | None) -> tuple[np.ndarray, np.ndarray]:
        quotas = channel_quotas(self.shares, k)
        m = int(np.ceil(self.fetch * k))
        cands = np.stack([self.channels[n](users, m, exclude)[0] for n in self.channels], axis=1)
        fill = self.backfill(users, k, exclude)[0]
        return merge_channel_lists(cands, np.array([quotas[n] for n in self.channels]), k, backfill=fill)

    def recommend(self, users: np.ndarray, k: int, exclude: UserItemCSR | None = None) -> np.ndarray:
        return self.fuse(users, k, exclude)[0]


def as_recommend(channel: Channel, backfill: Channel | None = None) -> Callable:
    """A channel alone as ``recommend(users, k, exclude)``; with ``backfill``, short lists are completed
    (the same popularity fallback as every model of the workbook), so HitRate@K compares full lists."""

    def recommend(users: np.ndarray, k: int, exclude: UserItemCSR | None = None) -> np.ndarray:
        ids = channel(users, k, exclude)[0]
        if backfill is None:
            return ids
        fill = backfill(users, k, exclude)[0]
        return merge_channel_lists(ids[:, None, :], np.array([k]), k, backfill=fill)[0]

    return recommend
