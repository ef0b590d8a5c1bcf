"""Multi-channel recall fusion with per-channel quotas (notebook 08; the talk's Q&A).

The Q&A of the talk: recall samples are shared by every entry point; **long-term** interest comes from
deep sequence models, **short-term** interest from *single-point* recall on the last few plays, and
each interest cluster gets a **quota**. Here each recall channel is a :data:`Channel`, a function
``(users, k, exclude) -> (song ids [U, k], scores [U, k])`` (``-1`` / ``-inf`` for empty slots), and
:func:`quota_merge` fuses them:

* channel ``c`` gets ``q_c`` of the ``k`` slots (:func:`channel_quotas`, largest remainder, Σ q_c = k);
* slots are handed out in the *smooth interleave* order of the quotas: the next slot goes to the channel
  with the smallest ``(taken_c + ½) / q_c``, so each channel advances at the pace of its quota;
* a song already taken is skipped, the channel moves down its own list (**de-duplication**; the channel
  that reached a song first keeps it);
* a channel that runs short gives its unused slots back: they go to the channels that still have
  candidates (in the same interleave order), then to the **back-fill** list (popularity), so every list
  is full whenever the catalogue allows.

The channels (thin adapters, so the notebooks that own the models can change their internals):
:class:`ShortTermI2I` (KG Song2Vec neighbours of the last ``n_recent`` full plays, recency-weighted),
:func:`embedding_channel` (SASRec long-term, federated DSSM), :func:`mind_quota_channel` (MIND
interests, each with its own quota), :class:`AudioI2I` (audio neighbours of recent plays) and
:func:`popularity_channel`. :func:`memoize` keeps one channel's lists so that the evaluation, the
beyond-accuracy metrics and the ranking samples do not recompute them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrecall.evaluation import UserItemCSR, evaluate_lists, summarize, topk_scores

# (users, k, exclude rows aligned with users or None) -> (ids int64 [U, k], scores float32 [U, k])
Channel = Callable[[np.ndarray, int, UserItemCSR | None], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------------
# The quota merge
# --------------------------------------------------------------------------------------------------


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


def quota_merge(cands: np.ndarray, quotas: np.ndarray, k: int, backfill: np.ndarray | None = None,
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
    """Slot-by-slot greedy merge of one batch of users, vectorised over users (see :func:`quota_merge`).

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


# --------------------------------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------------------------------


def _scored_topk(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n_rows: int, k: int,
                 exclude: UserItemCSR | None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` distinct items per row from (row, item, score) triples, with their scores."""
    if exclude is not None and len(rows):
        from musicrecall.kg.recall import _in_rows

        drop = _in_rows(rows, items, exclude.indptr, exclude.indices)
        rows, items, scores = rows[~drop], items[~drop], scores[~drop]
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if len(rows) == 0:
        return ids, val
    base = int(items.max()) + 1
    key = rows.astype(np.int64) * base + items
    uniq, inv = np.unique(key, return_inverse=True)
    agg = np.full(len(uniq), -np.inf)
    np.maximum.at(agg, inv, scores)  # callers pass already-summed scores; max keeps one copy per pair
    r, it = uniq // base, uniq % base
    order = np.lexsort((it, -agg, r))
    r, it, s = r[order], it[order], agg[order]
    rank = np.arange(len(r)) - np.searchsorted(r, r)
    keep = rank < k
    ids[r[keep], rank[keep]], val[r[keep], rank[keep]] = it[keep], s[keep]
    return ids, val


def recent_plays(fit: pl.DataFrame, n_recent: int) -> pl.DataFrame:
    """Per user the ``n_recent`` most recent distinct full-played songs: ``user_id, song_id, rank`` (0 = last)."""
    return (fit.filter(pl.col("full_play").fill_null(False))
            .sort(["user_id", "ts"], descending=[False, True])
            .unique(["user_id", "song_id"], keep="first", maintain_order=True)
            .with_columns(rank=pl.int_range(pl.len()).over("user_id"))
            .filter(pl.col("rank") < n_recent)
            .select("user_id", "song_id", "rank"))


@dataclass
class ShortTermI2I:
    """Short-term single-point recall: neighbours of each of the user's last ``n_recent`` full plays.

    ``score(u, j) = Σ_h 0.5^(rank_h / half_life) · cos(h, j)`` over the recent plays ``h`` (rank 0 = the
    last play), with neighbour tables ``nb_ids`` / ``nb_sims`` [n_items, n] (e.g. KG Song2Vec or audio).
    No fallback: a user without recent plays gets an empty list (the fusion back-fills).
    """

    nb_ids: np.ndarray
    nb_sims: np.ndarray
    seeds: pl.DataFrame
    half_life: float = 2.0

    @classmethod
    def build(cls, nb_ids: np.ndarray, nb_sims: np.ndarray, fit: pl.DataFrame, n_recent: int = 5,
              half_life: float = 2.0) -> ShortTermI2I:
        return cls(nb_ids, nb_sims, recent_plays(fit, n_recent), half_life)

    def __call__(self, users: np.ndarray, k: int, exclude: UserItemCSR | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        pos = pl.DataFrame({"user_id": users, "row": np.arange(len(users), dtype=np.int64)})
        s = self.seeds.join(pos, on="user_id")
        row, song, rank = s["row"].to_numpy(), s["song_id"].to_numpy(), s["rank"].to_numpy()
        nb, sim = self.nb_ids[song], self.nb_sims[song]
        w = (0.5 ** (rank / self.half_life))[:, None] * np.where(np.isfinite(sim), sim, 0.0)
        ok = nb >= 0
        r, it, sc = np.broadcast_to(row[:, None], nb.shape)[ok], nb[ok], w[ok]
        if len(r):  # sum the contributions of all recent plays to each (user, song)
            base = int(it.max()) + 1
            uniq, inv = np.unique(r * base + it, return_inverse=True)
            r, it, sc = uniq // base, uniq % base, np.bincount(inv, weights=sc)
        return _scored_topk(r, it, sc, len(users), k, exclude)


def neighbour_table_for(vectors: np.ndarray, has_vector: np.ndarray, n_neighbors: int = 50
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Cosine i2i table (exact faiss search) of the songs with a vector: ``(ids, sims)`` [n_items, n]."""
    from musicrecall.kg.recall import neighbour_table

    return neighbour_table(np.ascontiguousarray(vectors, dtype=np.float32), has_vector, n_neighbors, index="flat")


def audio_neighbour_table(song_ids: np.ndarray, emb: np.ndarray, n_items: int, n_neighbors: int = 50
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The same i2i table over the songs with audio (``emb`` rows aligned with ``song_ids``)."""
    vecs = np.zeros((n_items, emb.shape[1]), dtype=np.float32)
    vecs[song_ids] = emb
    has = np.zeros(n_items, dtype=bool)
    has[song_ids] = True
    return neighbour_table_for(vecs, has, n_neighbors)


def embedding_channel(user_vecs: Callable[[np.ndarray], np.ndarray], item_vecs: np.ndarray,
                      eligible: Callable[[np.ndarray], np.ndarray] | None = None) -> Channel:
    """Inner-product channel (SASRec, DSSM): exact full-catalogue top-k; users outside ``eligible``
    (e.g. only cold-start users for the federated DSSM) get an empty list."""

    def channel(users: np.ndarray, k: int, exclude: UserItemCSR | None = None) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        ids = np.full((len(users), k), -1, dtype=np.int64)
        val = np.full((len(users), k), -np.inf, dtype=np.float32)
        ok = np.ones(len(users), dtype=bool) if eligible is None else np.asarray(eligible(users), dtype=bool)
        if ok.any():
            ex = None if exclude is None else _rows_of(exclude, np.flatnonzero(ok))
            ids[ok], val[ok] = topk_scores(user_vecs(users[ok]), item_vecs, k, exclude=ex)
        return ids, val

    return channel


def _rows_of(csr: UserItemCSR, rows: np.ndarray) -> UserItemCSR:
    """Rows ``rows`` of a CSR."""
    m = csr.to_scipy(int(csr.indices.max(initial=0)) + 1)[rows]
    return UserItemCSR(csr.users[rows], m.indptr.astype(np.int64), m.indices.astype(np.int64))


def mind_quota_channel(interests: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
                       item_vecs: np.ndarray, floor_share: float = 0.05, batch: int = 1024) -> Channel:
    """MIND served per interest, each interest with its own quota (:mod:`musicrecall.serving`);
    the score of a song is its best inner product over the user's active interests."""
    from musicrecall.evaluation import ExactIndex
    from musicrecall.serving import merged_lists

    index = ExactIndex(np.ascontiguousarray(item_vecs, dtype=np.float32))

    def channel(users: np.ndarray, k: int, exclude: UserItemCSR | None = None) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        ids = np.full((len(users), k), -1, dtype=np.int64)
        val = np.full((len(users), k), -np.inf, dtype=np.float32)
        for b0 in range(0, len(users), batch):  # batches bound the [users, k, dim] gather below
            b1 = min(b0 + batch, len(users))
            vecs, active, weights = interests(users[b0:b1])
            ex = None if exclude is None else _rows_of(exclude, np.arange(b0, b1))
            lists = merged_lists(index, vecs, active, weights, k, floor_share, exclude=ex)[0]["quota"]
            s = np.einsum("ukd,ujd->ukj", item_vecs[np.maximum(lists, 0)], vecs)
            s = np.where(active[:, None, :], s, -np.inf).max(axis=2)
            ids[b0:b1], val[b0:b1] = lists, np.where(lists >= 0, s, -np.inf)
        return ids, val

    return channel


def popularity_channel(popularity: np.ndarray) -> Channel:
    """Every user gets the most popular songs (fit window); the back-fill of the fusion."""
    order = np.lexsort((np.arange(len(popularity)), -np.asarray(popularity, dtype=np.float64)))

    def channel(users: np.ndarray, k: int, exclude: UserItemCSR | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(users)
        if exclude is None:
            ids = np.broadcast_to(order[:k], (n, k)).copy()
        else:
            extra = int(exclude.sizes.max(initial=0))
            cand = np.broadcast_to(order[: k + extra], (n, min(len(order), k + extra)))
            from musicrecall.serving import _compact, _row_member

            ids = _compact(cand, ~_row_member(cand, exclude.indptr, exclude.indices), k)
        return ids, np.where(ids >= 0, np.asarray(popularity, np.float32)[np.maximum(ids, 0)], -np.inf)

    return channel


def memoize(channel: Channel, max_entries: int = 4) -> Channel:
    """Cache a channel's last ``max_entries`` answers per (users, k, exclusion) so repeated calls are free;
    a shorter ``k`` reuses a longer cached list (lists are ranked, so the prefix is the shorter list)."""
    memo: dict[tuple, tuple[int, tuple[np.ndarray, np.ndarray]]] = {}

    def key_of(users: np.ndarray, exclude: UserItemCSR | None) -> tuple:
        ex = None if exclude is None else hash((exclude.indptr.tobytes(), exclude.indices.tobytes()))
        return (hash(np.asarray(users, dtype=np.int64).tobytes()), len(users), ex)

    def cached(users: np.ndarray, k: int, exclude: UserItemCSR | None = None) -> tuple[np.ndarray, np.ndarray]:
        key = key_of(users, exclude)
        if key in memo and memo[key][0] >= k:
            memo[key] = memo.pop(key)  # most recently used last
            ids, val = memo[key][1]
            return ids[:, :k], val[:, :k]
        out = channel(users, k, exclude)
        memo[key] = (k, out)
        while len(memo) > max_entries:  # bounded memory: drop the least recently used answer
            memo.pop(next(iter(memo)))
        return out

    return cached


# --------------------------------------------------------------------------------------------------
# The fused recall
# --------------------------------------------------------------------------------------------------


@dataclass
class FusedRecall:
    """Channels fused by :func:`quota_merge`; ``recommend`` fits :func:`musicrecall.experiment.evaluate_recommender`."""

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
        return quota_merge(cands, np.array([quotas[n] for n in self.channels]), k, backfill=fill)

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
        return quota_merge(ids[:, None, :], np.array([k]), k, backfill=fill)[0]

    return recommend


# --------------------------------------------------------------------------------------------------
# Beyond accuracy and contribution
# --------------------------------------------------------------------------------------------------


def known_genres(fit: pl.DataFrame, users: np.ndarray, genre_of: np.ndarray) -> sp.csr_matrix:
    """Binary users x genres: the genres each user full-played in the fit window."""
    users = np.asarray(users, dtype=np.int64)
    fp = fit.filter(pl.col("full_play").fill_null(False)).select("user_id", "song_id")
    pos = pl.DataFrame({"user_id": users, "row": np.arange(len(users), dtype=np.int64)})
    fp = fp.join(pos, on="user_id")
    m = sp.csr_matrix((np.ones(fp.height), (fp["row"].to_numpy(), genre_of[fp["song_id"].to_numpy()])),
                      shape=(len(users), int(genre_of.max()) + 1))
    m.data[:] = 1.0
    return m


def list_beyond_accuracy(lists: np.ndarray, known: sp.csr_matrix, genre_of: np.ndarray, popularity: np.ndarray,
                         n_fit_users: int) -> dict[str, np.ndarray]:
    """Per user: ``genre_diversity`` (distinct genres in the list / genres in the catalogue),
    ``surprise`` (share of listed songs outside the user's known genres; users without history count
    every song as a surprise) and ``novelty`` (mean self-information ``-log2 p``)."""
    from musicrecall.evaluation import novelty

    valid = lists >= 0
    g = np.where(valid, genre_of[np.maximum(lists, 0)], -1)
    n_genres = int(genre_of.max()) + 1
    present = np.zeros((lists.shape[0], n_genres + 1), dtype=bool)
    present[np.arange(lists.shape[0])[:, None], g] = True  # -1 lands in the spare last column
    r, c = np.nonzero(valid)
    inside = np.asarray(known[r, g[r, c]]).ravel()
    outside = np.bincount(r, weights=1.0 - inside, minlength=lists.shape[0])
    return {"genre_diversity": present[:, :n_genres].sum(1) / n_genres,
            "surprise": outside / np.maximum(valid.sum(1), 1),
            "novelty": novelty(lists, popularity, n_fit_users, per_user=True)}


def beyond_accuracy_table(lists: Mapping[str, np.ndarray], users: np.ndarray, fit: pl.DataFrame,
                          genre_of: np.ndarray, popularity: np.ndarray, n_fit_users: int, n_items: int,
                          n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Coverage, genre diversity, novelty and surprise (bootstrap CIs over users) per model."""
    from musicrecall.evaluation import coverage

    known = known_genres(fit, users, genre_of)
    tables = []
    for name, lst in lists.items():
        vals = list_beyond_accuracy(lst, known, genre_of, popularity, n_fit_users)
        vals["novelty"] = np.nan_to_num(vals["novelty"], nan=0.0)
        tables.append(summarize(vals, n_boot=n_boot, seed=seed, scalars={"coverage": coverage(lst, n_items)},
                                model=name, k=lst.shape[1]))
    return pl.concat(tables)


def contribution(lists: np.ndarray, source: np.ndarray, names: Sequence[str], targets: UserItemCSR
                 ) -> pl.DataFrame:
    """Per channel (and back-fill): share of the fused slots it filled and share of the hits it supplied
    (``lists`` rows aligned with ``targets.users``)."""
    from musicrecall.evaluation.metrics import _hit_matrix

    hits = _hit_matrix(lists, targets)
    labels = [*names, "backfill"]
    filled = lists >= 0
    slots = np.bincount(source[filled], minlength=len(labels))
    hit = np.bincount(source[hits & filled], minlength=len(labels))
    return pl.DataFrame({"channel": labels, "slot_share": slots / max(slots.sum(), 1),
                         "hit_share": hit / max(hit.sum(), 1), "hits": hit})


def entry_hitrates(lists: Mapping[str, np.ndarray], users: np.ndarray, fit: pl.DataFrame, window: pl.DataFrame,
                   ks: Sequence[int] = (200, 500), n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """HitRate@K per entry point: targets are the full plays *at that entry* in the window; lists are
    the users' lists of the "all" kind (rows aligned with ``users``)."""
    from musicrecall.evaluation import build_targets

    users = np.asarray(users, dtype=np.int64)
    rows = []
    for entry in sorted(e for e in window["entry"].unique().to_list() if e is not None):
        t = build_targets(fit, window.filter(pl.col("entry") == entry), users=users, kind="all")
        if t.n_users == 0:
            continue
        pos = np.searchsorted(users, t.users) if np.all(np.diff(users) > 0) else \
            np.array([np.flatnonzero(users == u)[0] for u in t.users])
        for name, lst in lists.items():
            vals = evaluate_lists(lst[pos], t, [kk for kk in ks if kk <= lst.shape[1]])
            rows.append(summarize({m: v for m, v in vals.items() if m.startswith("hr@")}, n_boot=n_boot,
                                  seed=seed, model=name, entry=entry))
    return pl.concat(rows)



# --------------------------------------------------------------------------------------------------
# Thin adapters to the models of notebooks 02-07 (same functions and parameters => cache hits)
# --------------------------------------------------------------------------------------------------


def kg_vectors(setup, triples: pl.DataFrame, *, dim: int = 32, gamma: float = 0.2, s2v_changes: dict | None = None,
               workers: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """KG Song2Vec (notebook 02's ``kg.fit_model``) on ``setup.fit``: ``(vectors, has_vector)``.

    With notebook 02's configuration (its tuned variant ``s2v_changes`` and gamma) the embedding is a
    cache hit of the gensim run keyed by the corpus content.
    """
    from musicrecall import kg

    s2v = kg.Song2VecConfig(dim=dim, seed=seed).with_(**(s2v_changes or {}))
    corpus = kg.build_corpus(setup.fit, triples, setup.n_items, kg.KGConfig(gamma=gamma), seed=seed)
    emb = kg.fit_song2vec(corpus, setup.n_items, s2v, workers=workers, triples=triples, kg=kg.KGConfig(gamma=gamma))
    return emb.vectors, emb.has_vector.astype(bool)


@dataclass
class SequenceChannel:
    """A trained SASRec (notebook 03) and the histories it is served on at each stage."""

    model: object
    inputs: object

    def user_vecs(self, stage: str) -> Callable[[np.ndarray], np.ndarray]:
        from musicrecall import sequences as sq

        hist = self.inputs.hist_valid if stage == "valid" else self.inputs.hist_test
        return lambda users: sq.user_vectors(self.model, hist, users)

    def item_vecs(self) -> np.ndarray:
        from musicrecall import sequences as sq

        return sq.item_vectors(self.model)


def sasrec_adapter(prep, *, max_len: int = 30, dim: int = 48, n_blocks: int = 1, n_heads: int = 1,
                   dropout: float = 0.1, batch_size: int = 256, n_neg: int = 256, lr: float = 3e-3,
                   max_epochs: int = 4, patience: int = 1, seed: int = 0, valid_days: int = 7,
                   test_days: int = 7) -> SequenceChannel:
    """SASRec trained exactly as notebook 03 trains it (same defaults, same checkpoint key): on the train
    window with early stopping on the validation window; served on histories up to each stage's cut."""
    from musicrecall import sequences as sq
    from musicrecall.models.sasrec import SASRec
    from musicrecall.training import TrainConfig, seed_everything

    ds = prep.dataset
    inputs = sq.sequence_inputs(prep.clean.events, ds.users, ds.items.height, max_len, valid_days=valid_days,
                                test_days=test_days)
    seed_everything(seed)  # as notebook 03: the initial weights come from the seed, not the process
    model = SASRec(inputs.n_items, dim, max_len, n_blocks, n_heads, dropout)
    cfg = TrainConfig(epochs=max_epochs, lr=lr, patience=patience, seed=seed, progress=False)
    hp = {"cfg": asdict(cfg), "batch_size": batch_size, "n_neg": n_neg, "feats": False, "model": repr(model),
          "max_len": max_len}
    key = sq.cache_key(ds.key, "sasrec", hp)
    sq.fit_sequence_model(model, inputs, cfg, name="sasrec", batch_size=batch_size, n_neg=n_neg, cache_key=key)
    model.eval()
    return SequenceChannel(model, inputs)


def mind_adapter(valid, items: pl.DataFrame, data_key: str, *, axis: str = "interest", dim: int = 48, k_max: int = 4,
                 max_len: int = 30, pow_p: float = 2.0, sigma: float = 1.0, epochs: int = 3, lr: float = 3e-3,
                 patience: int = 1, per_user: int = 6, batch_size: int = 1024, n_neg: int = 256,
                 valid_users: int = 1000, seed: int = 0):
    """MIND as notebook 04's "both" variant (genre/language side info, re-drawn routing logits, routing
    softmax over ``axis``; same defaults and checkpoint key, so its trained model is reused), trained on
    the train window; ``served_on(recall, setup.fit)`` serves it at a stage."""
    from musicrecall.models.mind import MINDConfig, fit_mind, mind_cache_key
    from musicrecall.models.mind_data import side_codes
    from musicrecall.training import TrainConfig

    cfg = MINDConfig(dim=dim, k_max=k_max, max_len=max_len, pow_p=pow_p, sigma=sigma, routing_axis=axis,
                     routing_init="redraw")
    side = side_codes(items)
    tc = TrainConfig(epochs=epochs, lr=lr, patience=patience, seed=seed, progress=False)
    hp = {"per_user": per_user, "batch_size": batch_size, "n_neg": n_neg, "valid_users": valid_users,
          "train": asdict(tc)}
    name = f"both_{axis}"
    key = mind_cache_key(data_key, name, cfg, side, hp)
    recall, _ = fit_mind(valid.fit, valid.targets["all"], valid.n_items, cfg, side, tc, per_user=per_user,
                         batch_size=batch_size, n_neg=n_neg, valid_users=valid_users, name=f"mind_{name}",
                         cache_key=key, seed=seed)
    return recall


def audio_adapter(prep, setup, n_audio: int, clip_s: float = 8.0, seed: int = 0, cold_share: float = 0.0):
    """Audio embeddings of ``n_audio`` songs (per-song cache of the rendered-and-embedded audio):
    ``(song_ids, standardised emb)``.

    The songs are the most full-played before ``setup``'s cut (:func:`musicrecall.audio.simulated.select_songs`).
    For ranking, pass the *earliest* stage the models see (validation) and ``cold_share = 0``: which songs
    have audio is then decided by plays before every label the rankers train or are tested on. Notebook
    06's set (test cut, plus cold songs drawn among songs played in the test week) is right for its own
    cold-start evaluation but would make ``audio_has`` carry the validation labels and future plays.
    """
    from musicrecall.audio import EmbeddingScaler
    from musicrecall.audio import simulated as S

    songs, _ = S.select_songs(prep.clean.events, setup.split.cut(setup.stage), n_audio, cold_share=cold_share, seed=seed)
    emb = EmbeddingScaler().fit_transform(S.world_embeddings(prep.dataset.world, songs, clip_s))
    return songs, emb.astype(np.float32)


@dataclass
class DSSMVectors:
    """User vectors of the federated DSSM's aligned users (fetched once from party B) and item vectors."""

    users: np.ndarray  # sorted user ids with a vector
    vecs: np.ndarray
    items: np.ndarray

    def known(self, users: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.users, users), 0, len(self.users) - 1)
        return self.users[pos] == users

    def user_vecs(self, users: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.users, users), 0, len(self.users) - 1)
        return np.where(self.known(users)[:, None], self.vecs[pos], 0.0).astype(np.float32)


def federated_dssm_adapter(dataset: str, profile: str, seed: int = 0, *, max_plays: int = 5, coverage: float = 0.9,
                           b_extra_share: float = 0.1, epochs: int = 3, batch_size: int = 2048, n_neg: int = 256,
                           max_per_user: int = 10, mode: str = "process") -> DSSMVectors:
    """The federated DSSM of notebook 07 (same settings and run key, so its checkpoint is reused): party B
    is started, the model trained or restored, every aligned user's vector fetched, and B shut down."""
    import torch

    from musicrecall.federated import RemoteUserTower
    from musicrecall.federated import pipeline as fp
    from musicrecall.models.dssm import DSSM, ItemTower

    epochs = min(epochs, 2) if profile == "tiny" else epochs  # as notebook 07
    rc = fp.RunConfig(epochs=epochs, batch_size=batch_size, n_neg=n_neg, max_per_user=max_per_user, seed=seed)
    data = fp.load_cold_start(dataset, profile, seed, max_plays)
    fed = fp.open_federation(data, coverage, round(b_extra_share * data.ds.users.height), seed, mode=mode)
    try:
        _, demo = fp.a_alone(data)
        torch.manual_seed(seed)
        tower = RemoteUserTower(fed.endpoint, "fed_dssm", dim=rc.dim, hidden=rc.hidden, seed=seed, lr=rc.lr,
                                run_key=fp.run_key(data.ds.key, "fed_dssm", rc=rc))
        model = DSSM(tower, ItemTower(data.codes, data.cards, dim=rc.dim, hidden=rc.hidden))
        with fp.threads(1):
            fp.train_and_report(model, data, fed, lambda idx: idx, rc, "fed_dssm", demo)
            model.eval()
            ids = np.array(sorted(fed.aligned), dtype=np.int64)
            with torch.no_grad():
                vecs = model.user_vecs(np.array([fed.aligned[int(u)] for u in ids], dtype=np.int64)).numpy()
                items = model.item_tower.all_items().numpy()
    finally:
        fed.party_b.close()
    return DSSMVectors(ids, vecs.astype(np.float32), items.astype(np.float32))


def cold_users_mask(fit: pl.DataFrame, max_plays: int) -> Callable[[np.ndarray], np.ndarray]:
    """``eligible(users)``: at most ``max_plays`` plays before the cut (the DSSM channel's audience)."""
    counts = fit.group_by("user_id").len()
    known = dict(zip(counts["user_id"].to_list(), counts["len"].to_list(), strict=True))
    return lambda users: np.array([known.get(int(u), 0) <= max_plays for u in users], dtype=bool)


@dataclass
class Stage:
    """Every recall channel served at one stage ("valid": models see the train window; "test": train +
    valid), the fused recall, and pair scorers for the ranking features."""

    name: str
    setup: object
    channels: dict[str, Channel]
    scorers: dict
    fused: FusedRecall
    popularity: Channel


def build_stage(name: str, setup, shares: Mapping[str, float], *, kg: tuple[np.ndarray, np.ndarray],
                seq: SequenceChannel | None = None, mind=None, audio: tuple[np.ndarray, np.ndarray] | None = None,
                dssm: DSSMVectors | None = None, n_recent: int = 5, half_life: float = 2.0,
                n_neighbors: int = 200, audio_recent: int = 10, max_plays: int = 5) -> Stage:
    """Channels (memoised) and scorers of one stage; channels whose model is ``None`` are left out, and so
    are their shares."""
    from musicrecall.models.mind import served_on
    from musicrecall.ranking import dot_scorer, max_interest_scorer, profile_scorer

    fit = setup.fit
    channels: dict[str, Channel] = {}
    scorers: dict = {}
    nb = neighbour_table_for(kg[0], kg[1], n_neighbors)
    channels["short_term"] = ShortTermI2I.build(*nb, fit, n_recent, half_life)
    scorers["short_term"] = profile_scorer(kg[0], kg[1], recent_plays(fit, n_recent), half_life)
    if seq is not None:
        uv = seq.user_vecs(name)
        channels["sasrec"] = embedding_channel(uv, seq.item_vecs())
        scorers["sasrec"] = dot_scorer(uv, seq.item_vecs())
    if mind is not None:
        served = served_on(mind, fit)
        items = served.item_vectors()
        channels["mind"] = mind_quota_channel(served.interests, items)
        scorers["mind"] = max_interest_scorer(served.interests, items)
    if audio is not None:  # neighbours of the last plays that have audio; its score is the audio_sim feature
        songs, emb = audio
        with_audio = fit.filter(pl.col("song_id").is_in(songs.tolist()))
        channels["audio_i2i"] = ShortTermI2I.build(*audio_neighbour_table(songs, emb, setup.n_items, n_neighbors),
                                                   with_audio, audio_recent, half_life=5.0)
    if dssm is not None:
        cold = cold_users_mask(fit, max_plays)
        channels["dssm"] = embedding_channel(dssm.user_vecs, dssm.items, eligible=lambda u: cold(u) & dssm.known(u))
        base = dot_scorer(dssm.user_vecs, dssm.items)
        scorers["dssm"] = lambda u, j: np.where(dssm.known(u), base(u, j), np.nan)
    channels = {n: memoize(c) for n, c in channels.items()}
    pop = memoize(popularity_channel(setup.popularity))
    fused = FusedRecall(channels, {n: shares[n] for n in channels}, pop)
    return Stage(name, setup, channels, scorers, fused, pop)


def restrict_stage(stage: Stage, keep: Sequence[str], shares: Mapping[str, float]) -> Stage:
    """``stage`` with only the channels in ``keep`` (their memoised lists and scorers are shared, the
    fusion re-normalises ``shares`` over them): the like-for-like pipeline of a placebo world that runs
    only those channels."""
    channels = {n: c for n, c in stage.channels.items() if n in keep}
    scorers = {n: s for n, s in stage.scorers.items() if n in keep}
    fused = FusedRecall(channels, {n: shares[n] for n in channels}, stage.popularity)
    return Stage(stage.name, stage.setup, channels, scorers, fused, stage.popularity)
