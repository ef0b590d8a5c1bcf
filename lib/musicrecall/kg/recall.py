"""Item-to-item recall: neighbours from a faiss index, merged over a user's recent full plays.

For each user, the ``max_seeds`` most recent distinct songs they fully played in the fit window are
the seeds ``h`` (rank 0 = most recent). Each seed brings its ``n_neighbors`` nearest songs ``j`` by
cosine (an i2i table from a faiss index over *song* vectors only; a row is searched the first time a
list needs it, :class:`NeighbourTable`), and the merged score is

    score(u, j) = sum_h 0.5 ** (rank_h / half_life) * cos(h, j)

Songs that only a fallback can supply (users without an embedded seed, lists shorter than ``k``) come
after, in fit-window popularity order, the same fallback for every model. Excluded songs (the history,
for discovery) are removed before the cut at ``k``. Everything is vectorised with (row, song) int64
keys; users are processed in batches to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from musicrecall.cache import IdentityMemo
from musicrecall.evaluation import FaissIndex
from musicrecall.evaluation.metrics import ExcludeLike, exclude_arrays


class NeighbourTable:
    """Top-``n_neighbors`` cosine neighbours of embedded songs among embedded songs (self excluded), computed
    **on demand**: a row is searched the first time it is asked for and kept.

    Evaluation needs the rows of the songs it merges (the recent plays of the evaluated users) and BadCase
    the rows of its seed songs, a fraction of the catalogue (on full 30Music about a third of 82k songs), so
    nothing else is searched. The index holds every embedded song and is built once, on first use. A row
    does not depend on which other rows were searched with it (query batches are padded to the same BLAS
    path), so lazy rows equal the full table's.

    Index like an array of shape ``[n_items, n_neighbors]`` (``table[songs]``, ``table[songs, :k]``, a boolean
    mask): the rows asked for are computed first. ``ids`` int64 / ``sims`` float32, ``-1`` / ``-inf`` for
    empty slots and for songs without a vector.
    """

    _MIN_BATCH = 32  # faiss's flat search takes another code path below 20 queries: pad small batches

    def __init__(self, vectors: np.ndarray, has_vector: np.ndarray, n_neighbors: int, index: str = "flat",
                 seed: int = 0, batch: int = 16_384):
        has_vector = np.asarray(has_vector, dtype=bool)
        self.n_items, self.n_neighbors = len(has_vector), n_neighbors
        self.songs = np.flatnonzero(has_vector)
        self.ids = np.full((self.n_items, n_neighbors), -1, dtype=np.int64)
        self.sims = np.full((self.n_items, n_neighbors), -np.inf, dtype=np.float32)
        self.done = ~has_vector if len(self.songs) >= 2 else np.ones(self.n_items, dtype=bool)
        self._vectors, self._kind, self._seed, self._batch = vectors, index, seed, batch
        self._index: FaissIndex | None = None
        self.n_searched = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.ids.shape

    def __len__(self) -> int:
        return self.n_items

    def _search(self, q: np.ndarray) -> None:
        if self._index is None:
            k = min(self.n_neighbors + 1, len(self.songs))
            self._k = k
            self._index = FaissIndex(self._vectors[self.songs], kind=self._kind, metric="cosine", seed=self._seed,  # type: ignore[arg-type]
                                     efSearch=max(128, 2 * k))
        songs, n = self.songs, self.n_neighbors
        for b0 in range(0, len(q), self._batch):
            part = q[b0 : b0 + self._batch]
            pad = max(0, self._MIN_BATCH - len(part))
            query = self._vectors[np.r_[part, np.repeat(part[:1], pad)]]
            s, pos = self._index.search(query, self._k)
            s, pos = s[: len(part)], pos[: len(part)]
            nb = np.where(pos >= 0, songs[np.maximum(pos, 0)], -1)
            s = np.where(pos >= 0, s, -np.inf)
            not_self = nb != part[:, None]
            # drop the query itself wherever it appears, keep the first n_neighbors others in order
            order = np.argsort(~not_self, axis=1, kind="stable")[:, :n]
            keep = np.take_along_axis(not_self, order, axis=1)
            nb, s = np.take_along_axis(nb, order, axis=1), np.take_along_axis(s, order, axis=1)
            self.ids[part, : nb.shape[1]] = np.where(keep, nb, -1)
            self.sims[part, : nb.shape[1]] = np.where(keep, s, -np.inf)
        self.done[q] = True
        self.n_searched += len(q)

    def ensure(self, songs: np.ndarray) -> None:
        """Search the rows of ``songs`` not searched yet."""
        songs = np.asarray(songs, dtype=np.int64).ravel()
        todo = np.unique(songs[~self.done[songs]]) if len(songs) else songs
        if len(todo):
            self._search(todo)

    def rows(self, songs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, sims)`` rows of ``songs``."""
        self.ensure(songs)
        return self.ids[songs], self.sims[songs]

    def full(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row (the whole table: the cost the lazy rows avoid)."""
        self.ensure(np.arange(self.n_items))
        return self.ids, self.sims

    def __getitem__(self, key):
        rows = key[0] if isinstance(key, tuple) else key
        if isinstance(rows, slice):
            rows = np.arange(self.n_items)[rows]
        rows = np.asarray(rows)
        self.ensure(np.flatnonzero(rows) if rows.dtype == bool else rows)
        return self.ids[key]

    def __array__(self, dtype=None, copy=None):
        ids = self.full()[0]
        return ids if dtype is None else ids.astype(dtype)


def neighbour_table(vectors: np.ndarray, has_vector: np.ndarray, n_neighbors: int, index: str = "hnsw",
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n_neighbors`` cosine neighbours of every embedded song among embedded songs (self excluded).

    Returns ``(ids int64 [n_items, n], sims float32 [n_items, n])``; ``-1`` / ``-inf`` for empty slots
    and for songs without a vector. (:class:`NeighbourTable` gives only the rows asked for.)
    """
    return NeighbourTable(vectors, has_vector, n_neighbors, index=index, seed=seed).full()


# recent_seeds' results of this process, by the identity of the fit frame: every model of notebook 02 on one
# window merges over the same seeds (a sort of the window: ~1 s of CPU).
_SEEDS_MEMO = IdentityMemo(size=4)


def recent_seeds(fit: pl.DataFrame, max_seeds: int) -> pl.DataFrame:
    """Per user the ``max_seeds`` most recent distinct full-played songs: ``user_id, song_id, rank``."""
    return _SEEDS_MEMO.get((fit,), max_seeds, lambda: _recent_seeds(fit, max_seeds))


def _recent_seeds(fit: pl.DataFrame, max_seeds: int) -> pl.DataFrame:
    return (fit.filter(pl.col("full_play").fill_null(False))
            .sort("user_id", "ts", descending=[False, True])
            .unique(["user_id", "song_id"], keep="first", maintain_order=True)
            .with_columns(rank=pl.int_range(pl.len()).over("user_id"))
            .filter(pl.col("rank") < max_seeds)
            .select("user_id", "song_id", "rank"))


def topk_from_candidates(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """Best ``k`` distinct items per row from (row, item, score) triples, ``-1`` padded; higher first,
    ties by lower item id. Duplicated (row, item) keep their highest score."""
    out = np.full((n_rows, k), -1, dtype=np.int64)
    if len(rows) == 0:
        return out
    order = np.lexsort((items, -scores, rows))
    r, it = rows[order], items[order]
    base = int(items.max()) + 1
    key = r * base + it
    _, first = np.unique(key, return_index=True)
    first.sort()  # keep the best-scored copy of each (row, item), in ranked order
    r, it = r[first], it[first]
    start = np.searchsorted(r, np.arange(n_rows))
    rank = np.arange(len(r)) - start[r]
    keep = rank < k
    out[r[keep], rank[keep]] = it[keep]
    return out


@dataclass
class ItemToItemRecall:
    """Merged i2i recall over recent seeds (module docstring); ``recommend`` fits
    :func:`musicrecall.evaluation.evaluate_recommender`."""

    table: NeighbourTable
    seeds: pl.DataFrame
    popularity: np.ndarray
    half_life: float = 5.0
    batch_users: int = 2048
    _memo: dict = field(default_factory=dict, repr=False)  # k -> (sorted users, their lists), no exclusion

    @classmethod
    def build(cls, vectors: np.ndarray, has_vector: np.ndarray, fit: pl.DataFrame, popularity: np.ndarray, *,
              n_neighbors: int = 100, max_seeds: int = 20, half_life: float = 5.0, index: str = "hnsw",
              seed: int = 0) -> ItemToItemRecall:
        table = NeighbourTable(vectors, has_vector, n_neighbors, index=index, seed=seed)
        return cls(table, recent_seeds(fit, max_seeds), np.asarray(popularity, dtype=np.float64), half_life)

    @property
    def nb_ids(self) -> np.ndarray:
        """The whole neighbour-id table (every row searched; ``recommend`` searches only its seeds' rows)."""
        return self.table.full()[0]

    @property
    def nb_sims(self) -> np.ndarray:
        """The whole neighbour-similarity table."""
        return self.table.full()[1]

    def _seed_arrays(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = pl.DataFrame({"user_id": users, "row": np.arange(len(users), dtype=np.int64)})
        s = self.seeds.join(pos, on="user_id")
        return s["row"].to_numpy(), s["song_id"].to_numpy(), s["rank"].to_numpy()

    def recommend(self, users: np.ndarray, k: int, exclude: ExcludeLike = None) -> np.ndarray:
        """Ranked lists ``int64 [len(users), k]`` (full ranking: the popularity fallback fills every list)."""
        users = np.asarray(users, dtype=np.int64)
        if exclude is None and k in self._memo:  # slices re-rank users already ranked for "all"
            known, lists = self._memo[k]
            pos = np.minimum(np.searchsorted(known, users), len(known) - 1)
            if len(known) and (known[pos] == users).all():
                return lists[pos].copy()
        out = self._recommend(users, k, exclude)
        if exclude is None:
            order = np.argsort(users)
            self._memo[k] = (users[order], out[order])
        return out

    def _recommend(self, users: np.ndarray, k: int, exclude: ExcludeLike) -> np.ndarray:
        ex = exclude_arrays(exclude, len(users))
        n = len(self.popularity)
        pop_order = np.lexsort((np.arange(n), -self.popularity))
        out = np.full((len(users), k), -1, dtype=np.int64)
        rows_all, songs_all, ranks_all = self._seed_arrays(users)
        self.table.ensure(songs_all)  # one search for every seed song of these users
        for b0 in range(0, len(users), self.batch_users):
            b1 = min(b0 + self.batch_users, len(users))
            sel = (rows_all >= b0) & (rows_all < b1)
            r, s, rk = rows_all[sel] - b0, songs_all[sel], ranks_all[sel]
            nb, sim = self.table.rows(s)
            w = (0.5 ** (rk / self.half_life))[:, None] * np.where(np.isfinite(sim), sim, 0.0)
            valid = nb >= 0
            cell = np.broadcast_to(r[:, None], nb.shape)[valid] * n + nb[valid]
            # the contributions of all seeds to each (user, song); cells in (user, song) order
            hit, inv = np.unique(cell, return_inverse=True)
            ex_ptr = None if ex is None else ex[0][b0 : b1 + 1] - ex[0][b0]
            ex_idx = None if ex is None else ex[1][ex[0][b0] : ex[0][b1]]
            n_ex = 0 if ex is None else int(np.diff(ex_ptr).max(initial=0))
            fill = pop_order[: min(n, k + n_ex)]
            merged = np.bincount(inv, weights=w[valid], minlength=len(hit))
            out[b0:b1] = _rank_batch(hit, merged, fill, n, b1 - b0, k, ex_ptr, ex_idx)
        return out


def _rank_batch(cells: np.ndarray, scores: np.ndarray, fill: np.ndarray, n: int, n_rows: int, k: int,
                ex_ptr: np.ndarray | None, ex_idx: np.ndarray | None) -> np.ndarray:
    """Lists ``[n_rows, k]``: each row's merged songs (``cells = row * n + song``, sorted, unique) by score,
    ties by lower id, then the ``fill`` songs it lacks, in order; excluded songs removed; ``-1`` padded.

    Same lists as :func:`topk_from_candidates` over the merged songs plus fallback scores below them all,
    without sorting every candidate: only each row's best ``k`` (and ties at the cut) are sorted.
    """
    rows, items = cells // n, cells % n
    if ex_idx is not None and len(ex_idx):
        keep = ~_in_rows(rows, items, ex_ptr, ex_idx)
        rows, items, scores, cells = rows[keep], items[keep], scores[keep], cells[keep]
    out = np.full((n_rows, k), -1, dtype=np.int64)
    counts = np.bincount(rows, minlength=n_rows)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    width = int(counts.max(initial=0))
    if width:  # rows padded to the longest: the k-th best score of each row bounds what must be sorted
        grid = np.full((n_rows, width), -np.inf)
        grid[rows, np.arange(len(rows)) - start[rows]] = scores
        kk = min(k, width)
        kth = -np.partition(-grid, kk - 1, axis=1)[:, kk - 1]
        top = scores >= kth[rows]  # ties at the cut included, so the id tie-break is exact
        tr, ti, ts = rows[top], items[top], scores[top]
        order = np.lexsort((ti, -ts, tr))
        tr, ti = tr[order], ti[order]
        rank = np.arange(len(tr)) - np.searchsorted(tr, np.arange(n_rows))[tr]
        ok = rank < k
        out[tr[ok], rank[ok]] = ti[ok]
    taken = np.minimum(counts, k)
    need = np.flatnonzero(taken < k)  # only rows with free slots get the fallback (most rows are full)
    if len(fill) and len(need):  # the fallback: songs the row has not merged, in popularity order
        fr = np.repeat(need, len(fill))
        fi = np.tile(fill, len(need))
        q = fr * n + fi
        pos = np.minimum(np.searchsorted(cells, q), max(len(cells) - 1, 0))
        new = cells[pos] != q if len(cells) else np.ones(len(q), dtype=bool)
        if ex_idx is not None and len(ex_idx):
            new &= ~_in_rows(fr, fi, ex_ptr, ex_idx)
        fr, fi = fr[new], fi[new]
        slot = taken[fr] + np.arange(len(fr)) - np.searchsorted(fr, np.arange(n_rows))[fr]
        ok = slot < k
        out[fr[ok], slot[ok]] = fi[ok]
    return out


def _in_rows(rows: np.ndarray, items: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``True`` where ``items[i]`` is in CSR row ``rows[i]``."""
    if len(indices) == 0:
        return np.zeros(len(rows), dtype=bool)
    base = int(max(items.max(initial=0), indices.max(initial=0))) + 1
    ex_keys = np.sort(np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)) * base + indices)
    q = rows * base + items
    pos = np.minimum(np.searchsorted(ex_keys, q), len(ex_keys) - 1)
    return ex_keys[pos] == q

