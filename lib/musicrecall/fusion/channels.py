"""Recall channels (notebook 08) and the pair scorers of the same models for the ranking features.

A channel is a :data:`musicrecall.fusion.merge.Channel`, ``(users, k, exclude) -> (ids [U, k], scores [U, k])``
(``-1`` / ``-inf`` for empty slots); a pair scorer (:data:`PairScorer`) gives the same model's score of any
``(user, song)`` pair, NaN when the model cannot score it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from musicrecall.evaluation import ExactIndex, UserItemCSR, topk_scores
from musicrecall.fusion.merge import Channel
from musicrecall.kg.recall import NeighbourTable
from musicrecall.serving import merged_lists

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (users, songs) -> scores, NaN = unknown


def csr_contains(rows: np.ndarray, items: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``True`` where ``items[...]`` is in CSR row ``rows[...]`` (broadcast together); ``-1`` (empty slot)
    is never a member. One sorted-key search, so it costs O((n + nnz) log nnz)."""
    rows, items = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64))
    if len(indices) == 0:
        return np.zeros(items.shape, dtype=bool)
    base = int(max(items.max(initial=0), np.max(indices))) + 2  # +1 shift keeps -1 off every row's keys
    keys = np.sort(np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr)) * base
                   + np.asarray(indices, dtype=np.int64) + 1)
    q = rows * base + items + 1
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return (keys[pos] == q) & (items >= 0)


def compact_rows(ids: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Move the kept ids of each row to the front (order preserved), pad with -1, cut to ``k`` columns."""
    order = np.argsort(~keep, axis=1, kind="stable")
    out = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(ids, order, axis=1), -1)
    if out.shape[1] < k:
        out = np.hstack([out, np.full((out.shape[0], k - out.shape[1]), -1, dtype=out.dtype)])
    return out[:, :k]


def _scored_topk(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n_rows: int, k: int,
                 exclude: UserItemCSR | None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` distinct items per row from (row, item, score) triples, with their scores."""
    if exclude is not None and len(rows):
        drop = csr_contains(rows, items, exclude.indptr, exclude.indices)
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
    No fallback: a user without recent plays gets an empty list (the fusion back-fills). With ``table``
    (a :class:`musicrecall.kg.recall.NeighbourTable`, whose arrays ``nb_ids`` / ``nb_sims`` are) the rows
    are searched on demand: only the songs some user's recent plays hold, never the whole catalogue.
    """

    nb_ids: np.ndarray
    nb_sims: np.ndarray
    seeds: pl.DataFrame
    half_life: float = 2.0
    table: NeighbourTable | None = None

    @classmethod
    def build(cls, nb_ids: np.ndarray, nb_sims: np.ndarray, fit: pl.DataFrame, n_recent: int = 5,
              half_life: float = 2.0) -> ShortTermI2I:
        return cls(nb_ids, nb_sims, recent_plays(fit, n_recent), half_life)

    @classmethod
    def lazy(cls, table: NeighbourTable, fit: pl.DataFrame, n_recent: int = 5, half_life: float = 2.0) -> ShortTermI2I:
        """The channel over a table searched on demand (rows equal the full table's)."""
        return cls(table.ids, table.sims, recent_plays(fit, n_recent), half_life, table)

    def __call__(self, users: np.ndarray, k: int, exclude: UserItemCSR | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        pos = pl.DataFrame({"user_id": users, "row": np.arange(len(users), dtype=np.int64)})
        s = self.seeds.join(pos, on="user_id")
        row, song, rank = s["row"].to_numpy(), s["song_id"].to_numpy(), s["rank"].to_numpy()
        if self.table is not None:
            self.table.ensure(song)
        nb, sim = self.nb_ids[song], self.nb_sims[song]
        w = (0.5 ** (rank / self.half_life))[:, None] * np.where(np.isfinite(sim), sim, 0.0)
        ok = nb >= 0
        r, it, sc = np.broadcast_to(row[:, None], nb.shape)[ok], nb[ok], w[ok]
        if len(r):  # sum the contributions of all recent plays to each (user, song)
            base = int(it.max()) + 1
            uniq, inv = np.unique(r * base + it, return_inverse=True)
            r, it, sc = uniq // base, uniq % base, np.bincount(inv, weights=sc)
        return _scored_topk(r, it, sc, len(users), k, exclude)


def neighbour_table_for(vectors: np.ndarray, has_vector: np.ndarray, n_neighbors: int = 50) -> NeighbourTable:
    """Cosine i2i table (exact faiss search) of the songs with a vector, searched on demand: a row is computed
    the first time a channel asks for it (:class:`musicrecall.kg.recall.NeighbourTable`; ``.full()`` for all)."""
    return NeighbourTable(np.ascontiguousarray(vectors, dtype=np.float32), has_vector, n_neighbors, index="flat")


def audio_neighbour_table(song_ids: np.ndarray, emb: np.ndarray, n_items: int, n_neighbors: int = 50) -> NeighbourTable:
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
            rows = np.arange(n, dtype=np.int64)[:, None]
            ids = compact_rows(cand, ~csr_contains(rows, cand, exclude.indptr, exclude.indices), k)
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


def cold_users_mask(fit: pl.DataFrame, max_plays: int) -> Callable[[np.ndarray], np.ndarray]:
    """``eligible(users)``: at most ``max_plays`` plays before the cut (the DSSM channel's audience)."""
    counts = fit.group_by("user_id").len()
    known = dict(zip(counts["user_id"].to_list(), counts["len"].to_list(), strict=True))
    return lambda users: np.array([known.get(int(u), 0) <= max_plays for u in users], dtype=bool)



# --------------------------------------------------------------------------------------------------
# Channel scores for any (user, song) pair (ranking features)
# --------------------------------------------------------------------------------------------------


def profile_scorer(vectors: np.ndarray, has_vector: np.ndarray, seeds: pl.DataFrame, half_life: float = 2.0
                   ) -> PairScorer:
    """Short-term i2i score of any pair: cosine of the song with the user's recency-weighted profile
    ``Σ_h 0.5^(rank_h/half_life) v_h`` over the seeds (``user_id, song_id, rank``); NaN when unknown."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    ok = has_vector[seeds["song_id"].to_numpy()]
    s = seeds.filter(pl.Series(ok))
    users = np.unique(s["user_id"].to_numpy())
    pos = np.searchsorted(users, s["user_id"].to_numpy())
    prof = np.zeros((len(users), vectors.shape[1]))
    np.add.at(prof, pos, (0.5 ** (s["rank"].to_numpy() / half_life))[:, None] * unit[s["song_id"].to_numpy()])

    def score(u: np.ndarray, j: np.ndarray) -> np.ndarray:
        p = np.clip(np.searchsorted(users, u), 0, max(len(users) - 1, 0))
        known = (len(users) > 0) & (users[p] == u) if len(users) else np.zeros(len(u), bool)
        out = np.einsum("ij,ij->i", prof[p], unit[j]) if len(users) else np.zeros(len(u))
        return np.where(known & has_vector[j], out, np.nan)

    return score


def dot_scorer(user_vecs: Callable[[np.ndarray], np.ndarray], item_vecs: np.ndarray, batch: int = 65536
               ) -> PairScorer:
    """Inner product of a user vector (e.g. SASRec, DSSM) and a song vector, for pairs."""

    def score(u: np.ndarray, j: np.ndarray) -> np.ndarray:
        out = np.empty(len(u))
        for b0 in range(0, len(u), batch):
            uu, inv = np.unique(u[b0:b0 + batch], return_inverse=True)
            vecs = np.asarray(user_vecs(uu), dtype=np.float32)
            out[b0:b0 + batch] = np.einsum("ij,ij->i", vecs[inv], item_vecs[j[b0:b0 + batch]])
        return out

    return score


def max_interest_scorer(interests: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
                        item_vecs: np.ndarray) -> PairScorer:
    """MIND: the best inner product over the user's active interests."""

    def score(u: np.ndarray, j: np.ndarray) -> np.ndarray:
        uu, inv = np.unique(u, return_inverse=True)
        vecs, active, _ = interests(uu)
        s = np.einsum("nkd,nd->nk", vecs[inv], item_vecs[j])
        return np.where(active[inv], s, -np.inf).max(axis=1)

    return score
