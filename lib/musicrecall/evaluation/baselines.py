"""Non-learned recall baselines every model must beat: popularity, item-based CF and a previous-song Markov chain.

* :class:`PopularityRecall` — most full-played songs in the fit window, optionally with an
  exponential recency decay (half-life in days).
* :class:`ItemCFRecall` — item-to-item collaborative filtering (Sarwar, Karypis, Konstan & Riedl,
  *Item-based collaborative filtering recommendation algorithms*, WWW 2001; Linden, Smith & York,
  *Amazon.com recommendations: item-to-item collaborative filtering*, IEEE Internet Computing 2003).
  Co-occurrence is counted within *units* — listening sessions when ``session_id`` exists, else
  users' recent histories — with each unit down-weighted by ``1/log2(1 + |unit|)`` (the "IUF"
  correction of Breese, Heckerman & Kadie, UAI 1998), and normalised by the asymmetric cosine
  ``C_ij / (d_i^alpha * d_j^(1-alpha))`` (Aiolli, *Efficient top-N recommendation for very large
  scale binary rated datasets*, RecSys 2013); ``alpha=0.5`` is the plain cosine and larger
  ``alpha`` damps popular neighbours less (so ``alpha<0.5`` favours niche neighbours). Only the
  top-``n_neighbors`` neighbours per song are kept (sparse). A user's score for song ``j`` is
  ``sum_h w_h * S[h, j]`` over their ``max_history`` most recent distinct full plays ``h`` with
  recency weights ``w_h = 0.5^(rank_h / recency_half_life)``.

* :class:`MarkovRecall` — the previous-song (first-order Markov, item-to-item transition) baseline: how
  often song ``j`` followed song ``i`` in the fit data, scored from the user's last play and backed off
  to popularity. The Markov-chain part of FPMC (Rendle, Freudenthaler & Schmidt-Thieme, *Factorizing
  personalized Markov chains for next-basket recommendation*, WWW 2010) without factorisation; simple
  transition rules of this kind are strong next-item baselines (Ludewig & Jannach, *Evaluation of
  session-based recommendation algorithms*, UMUAI 2018). A sequence model must beat it before it can
  claim that order matters.

All rank the entire catalogue (masking ``exclude``); ties and users without signal fall back to
popularity order, so every list is full and deterministic. Popularity and Markov also expose
``score(histories, lengths)`` for :func:`musicrecall.evaluation.rolling_next_play`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from .metrics import ExcludeLike, UserItemCSR, compact_rows, exclude_arrays, hit_matrix

__all__ = ["ItemCFRecall", "ListMemo", "MarkovRecall", "PopularityRecall"]


def _positives(events: pl.DataFrame, label: str | None) -> pl.DataFrame:
    if label is None or label not in events.columns:
        if label is not None:
            raise KeyError(f"events has no label column {label!r}")
        return events
    return events.filter(pl.col(label).fill_null(False))


def _n_items(events: pl.DataFrame, n_items: int | None, item_col: str) -> int:
    if n_items is not None:
        return int(n_items)
    m = events[item_col].max()
    return int(m) + 1 if m is not None else 0  # type: ignore[arg-type]


def _rank_scores(scores: np.ndarray) -> np.ndarray:
    """Strictly decreasing float64 tie-break scores in ``[0, 1]``: higher score first, then lower id."""
    order = np.lexsort((np.arange(scores.shape[0]), -scores))
    rank = np.empty(scores.shape[0], dtype=np.float64)
    rank[order] = np.arange(scores.shape[0], dtype=np.float64)
    return 1.0 - rank / max(scores.shape[0], 1)


def _topk_dense_rows(
    batch_scores: torch.Tensor, k: int, exclude: tuple[np.ndarray, np.ndarray] | None, b0: int, b1: int
) -> np.ndarray:
    """Mask ``exclude`` rows ``b0:b1`` in a dense score block and take the top ``k`` (-1 = no item left)."""
    if exclude is not None:
        indptr, indices = exclude
        lo, hi = indptr[b0], indptr[b1]
        if hi > lo:
            rows = np.repeat(np.arange(b1 - b0, dtype=np.int64), np.diff(indptr[b0 : b1 + 1]))
            batch_scores[torch.from_numpy(rows), torch.from_numpy(indices[lo:hi])] = float("-inf")
    val, idx = torch.topk(batch_scores, k, dim=1)
    out = idx.numpy().astype(np.int64)
    out[np.isneginf(val.numpy())] = -1
    return out


class ListMemo:
    """The lists of the last users ranked *without* exclusion, per ``k``.

    :func:`musicrecall.evaluation.evaluate_recommender` ranks every target user for ``all``, then a subset
    of them for ``repeat`` (also without exclusion): those lists are looked up, not recomputed. A model
    clears it when it is refitted."""

    def __init__(self) -> None:
        self._lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, users: np.ndarray, k: int) -> np.ndarray | None:
        """Copies of the stored lists of ``users`` when every one of them is stored, else None."""
        if k not in self._lists or len(users) == 0:
            return None
        known, lists = self._lists[k]
        pos = np.minimum(np.searchsorted(known, users), len(known) - 1)
        return lists[pos].copy() if (known[pos] == users).all() else None

    def put(self, users: np.ndarray, k: int, lists: np.ndarray) -> None:
        """Store the lists of ``users`` (replacing what was stored for ``k``)."""
        order = np.argsort(users, kind="stable")
        self._lists[k] = (users[order], lists[order])

    def clear(self) -> None:
        self._lists.clear()


def _pairs_in_rows(rows: np.ndarray, items: np.ndarray, indptr: np.ndarray, indices: np.ndarray, n: int) -> np.ndarray:
    """``True`` where ``items[i]`` is in CSR row ``rows[i]`` (items and indices below ``n``)."""
    if len(indices) == 0 or len(rows) == 0:
        return np.zeros(len(rows), dtype=bool)
    keys = np.sort(np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr)) * n + indices)
    q = rows.astype(np.int64) * n + items
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return keys[pos] == q


class PopularityRecall:
    """Most full-played songs in the fit window (optionally recency-decayed); same list for everyone."""

    def __init__(self, half_life_days: float | None = None, label: str | None = "full_play"):
        self.half_life_days = half_life_days
        self.label = label
        self.scores: np.ndarray | None = None

    def fit(
        self,
        train_events: pl.DataFrame,
        n_items: int | None = None,
        *,
        item_col: str = "song_id",
        ts_col: str = "ts",
        t_ref: datetime | None = None,
    ) -> PopularityRecall:
        """Count full plays per song; with ``half_life_days`` each play weighs ``0.5^(age/half_life)``.

        ``age`` is measured from ``t_ref`` (default: the last timestamp in ``train_events``).
        """
        ev = _positives(train_events, self.label)
        n = _n_items(train_events, n_items, item_col)
        items = ev[item_col].to_numpy().astype(np.int64)
        if self.half_life_days is None:
            w = None
        else:
            ts = ev[ts_col].dt.epoch("ms").to_numpy().astype(np.float64)
            ref = ts.max(initial=0.0) if t_ref is None else t_ref.timestamp() * 1000.0
            w = 0.5 ** ((ref - ts) / (self.half_life_days * 86_400_000.0))
        self.scores = np.bincount(items, weights=w, minlength=n).astype(np.float64)
        self._rank = _rank_scores(self.scores)
        self._order = np.argsort(-self._rank, kind="stable")
        return self

    def score(self, histories: np.ndarray, lengths: np.ndarray | None = None) -> torch.Tensor:
        """Rolling-evaluation scores: the same popularity order for every history (float32 ``[B, n_items]``,
        a read-only expanded view)."""
        if self.scores is None:
            raise RuntimeError("call fit() first")
        if not hasattr(self, "_rank_t"):
            self._rank_t = torch.from_numpy(self._rank.astype(np.float32))
        return self._rank_t.expand(len(histories), -1)  # a view: no [B, n_items] copy

    def recommend(
        self, users: np.ndarray | Sequence[int], k: int, exclude: ExcludeLike = None, batch: int = 2048
    ) -> np.ndarray:
        """``[len(users), k]`` song ids, most popular first, skipping each user's ``exclude`` row."""
        if self.scores is None:
            raise RuntimeError("call fit() first")
        n_users = len(users)
        ex = exclude_arrays(exclude, n_users)
        if ex is None:
            return np.broadcast_to(self._order[:k], (n_users, k)).copy()
        # Only the first k + (largest exclusion row in the batch) songs of the global order can be
        # chosen: take them, drop the excluded ones (order kept), keep the first k.
        indptr, indices = ex
        n = self._order.shape[0]
        out = np.empty((n_users, k), dtype=np.int64)
        for b0 in range(0, n_users, batch):
            b1 = min(b0 + batch, n_users)
            ptr = indptr[b0 : b1 + 1] - indptr[b0]
            c = min(n, k + int(np.diff(ptr).max(initial=0)))
            cand = np.broadcast_to(self._order[:c], (b1 - b0, c))
            rows = UserItemCSR(users=np.arange(b1 - b0), indptr=ptr, indices=indices[indptr[b0] : indptr[b1]])
            res = compact_rows(cand, hit_matrix(cand, rows))
            if res.shape[1] < k:
                res = np.hstack([res, np.full((b1 - b0, k - res.shape[1]), -1, dtype=np.int64)])
            out[b0:b1] = res[:, :k]
        return out


class ItemCFRecall:
    """Item-to-item CF recall with sparse top-N neighbour lists (see the module docstring)."""

    def __init__(
        self,
        n_neighbors: int = 200,
        alpha: float = 0.5,
        max_history: int = 50,
        recency_half_life: float | None = 10.0,
        max_unit_items: int = 200,
        unit: str = "auto",
        iuf: bool = True,
        label: str | None = "full_play",
        block: int = 512,
    ):
        if unit not in ("auto", "session", "user"):
            raise ValueError("unit must be 'auto', 'session' or 'user'")
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.max_history = max_history
        self.recency_half_life = recency_half_life
        self.max_unit_items = max_unit_items
        self.unit = unit
        self.iuf = iuf
        self.label = label
        self.block = block
        self.sim: sp.csr_matrix | None = None

    # ---------------------------------------------------------------------------------- fitting
    def fit(
        self,
        train_events: pl.DataFrame,
        n_items: int | None = None,
        *,
        user_col: str = "user_id",
        item_col: str = "song_id",
        ts_col: str = "ts",
    ) -> ItemCFRecall:
        """Build the neighbour matrix from full plays and keep each user's recent full-play history."""
        ev = _positives(train_events, self.label).select(
            [c for c in (user_col, item_col, ts_col, "session_id") if c in train_events.columns]
        )
        n = _n_items(train_events, n_items, item_col)
        self.n_items = n
        self._user_col, self._item_col = user_col, item_col
        pop = np.bincount(ev[item_col].to_numpy().astype(np.int64), minlength=n).astype(np.float64)
        self._pop_rank = _rank_scores(pop)

        use_sessions = self.unit == "session" or (self.unit == "auto" and "session_id" in ev.columns)
        if use_sessions and "session_id" not in ev.columns:
            raise KeyError("unit='session' needs a session_id column")
        unit_cols = [user_col, "session_id"] if use_sessions else [user_col]
        self.unit_used = "session" if use_sessions else "user"

        # Units: distinct songs per unit, the max_unit_items most recent (bounds the co-occurrence cost).
        units = (
            ev.group_by([*unit_cols, item_col])
            .agg(pl.col(ts_col).max())
            .sort([*unit_cols, ts_col], descending=[False] * len(unit_cols) + [True])
            .with_columns(pl.int_range(pl.len()).over(unit_cols).alias("__r"))
            .filter(pl.col("__r") < self.max_unit_items)
            .with_columns((pl.struct(unit_cols).rank("dense").cast(pl.Int64) - 1).alias("__u"))
        )
        u = units["__u"].to_numpy()
        it = units[item_col].to_numpy().astype(np.int64)
        n_units = int(u.max()) + 1 if u.shape[0] else 0
        size = np.bincount(u, minlength=n_units).astype(np.float64)
        w_unit = 1.0 / np.log2(1.0 + size) if self.iuf else np.ones(n_units)
        x = sp.csr_matrix((np.ones(u.shape[0], dtype=np.float32), (u, it)), shape=(n_units, n))
        xw = sp.csr_matrix(sp.diags(w_unit.astype(np.float32)) @ x)
        self.sim = self._neighbours(x, xw, n)
        self._memo = ListMemo()

        # User histories: most recent distinct full plays with recency weights.
        hist = (
            ev.group_by([user_col, item_col])
            .agg(pl.col(ts_col).max())
            .sort([user_col, ts_col], descending=[False, True])
            .with_columns(pl.int_range(pl.len()).over(user_col).alias("__r"))
            .filter(pl.col("__r") < self.max_history)
        )
        hu = hist[user_col].to_numpy().astype(np.int64)
        hr = hist["__r"].to_numpy().astype(np.float64)
        hw = np.ones_like(hr) if self.recency_half_life is None else 0.5 ** (hr / self.recency_half_life)
        self._hist_users = np.unique(hu)
        rows = np.searchsorted(self._hist_users, hu)
        self._hist = sp.csr_matrix(
            (hw.astype(np.float32), (rows, hist[item_col].to_numpy().astype(np.int64))),
            shape=(self._hist_users.shape[0], n),
        )
        return self

    def _neighbours(self, x: sp.csr_matrix, xw: sp.csr_matrix, n: int) -> sp.csr_matrix:
        """Top-``n_neighbors`` asymmetric-cosine neighbours per song, computed in item blocks.

        Sparse throughout: a block's co-occurrence rows are a sparse product, so the cost follows the
        co-occurring pairs, not ``block x n_items`` (a dense block of 82k columns per 512 songs dominated
        notebook 01 on full 30Music). Ties at the cut are broken by the lower song id.
        """
        xt = sp.csr_matrix(x.T)  # items x units
        deg = np.asarray(xw.sum(axis=0)).ravel().astype(np.float64)  # d_i = sum of unit weights
        with np.errstate(divide="ignore"):
            left = np.where(deg > 0, deg ** (-self.alpha), 0.0).astype(np.float32)
            right = np.where(deg > 0, deg ** (self.alpha - 1.0), 0.0).astype(np.float32)
        kn = min(self.n_neighbors, max(n - 1, 1))
        xw_t = sp.csr_matrix(xw)
        rows_l, cols_l, vals_l = [], [], []
        col_bits = max(int(n - 1).bit_length(), 1)
        row_bits = 62 - 32 - col_bits  # one int64 sort key: block row | inverted value bits | column
        block = 1 << min(row_bits, 12) if row_bits >= 9 else max(self.block, 4096)
        for b0 in range(0, n, block):
            b1 = min(b0 + block, n)
            c = sp.csr_matrix(xt[b0:b1] @ xw_t, dtype=np.float32)
            r = np.repeat(np.arange(b0, b1, dtype=np.int64), np.diff(c.indptr))
            col = c.indices.astype(np.int64)
            v = (c.data * left[r] * right[col]).astype(np.float32)
            ok = (v > 0) & (col != r)  # no self-similarity
            r, col, v = r[ok], col[ok], v[ok]
            if row_bits >= 9:  # per row: best first, ties by lower id; positive float32 bits sort like the values
                inv = np.int64(0xFFFFFFFF) - v.view(np.uint32).astype(np.int64)
                key = np.sort(((r - b0) << (32 + col_bits)) | (inv << col_bits) | col)
                r = (key >> (32 + col_bits)) + b0
                col = key & ((1 << col_bits) - 1)
                v = (np.int64(0xFFFFFFFF) - ((key >> col_bits) & 0xFFFFFFFF)).astype(np.uint32).view(np.float32)
            else:  # catalogues beyond 2^21 songs: three-key sort
                order = np.lexsort((col, -v, r))
                r, col, v = r[order], col[order], v[order]
            rank = np.arange(r.shape[0]) - np.searchsorted(r, r)
            top = rank < kn
            rows_l.append(r[top])
            cols_l.append(col[top])
            vals_l.append(v[top])
        rows = np.concatenate(rows_l) if rows_l else np.zeros(0, np.int64)
        cols = np.concatenate(cols_l) if cols_l else np.zeros(0, np.int64)
        vals = np.concatenate(vals_l) if vals_l else np.zeros(0, np.float32)
        return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))

    # ---------------------------------------------------------------------------------- serving
    def user_history(self, users: np.ndarray | Sequence[int]) -> sp.csr_matrix:
        """Recency-weighted history rows (``[len(users), n_items]``; empty for unseen users)."""
        if self.sim is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(users, dtype=np.int64)
        pos = np.searchsorted(self._hist_users, users)
        pos_c = np.minimum(pos, max(self._hist_users.shape[0] - 1, 0))
        known = (
            (self._hist_users[pos_c] == users) if self._hist_users.shape[0] else np.zeros(len(users), bool)
        )
        sel = sp.csr_matrix(
            (np.ones(int(known.sum()), np.float32), (np.flatnonzero(known), pos_c[known])),
            shape=(users.shape[0], self._hist_users.shape[0]),
        )
        return sp.csr_matrix(sel @ self._hist)

    def recommend(
        self, users: np.ndarray | Sequence[int], k: int, exclude: ExcludeLike = None, batch: int = 512
    ) -> np.ndarray:
        """``[len(users), k]`` song ids ranked by ``history @ S`` over the full catalogue.

        Songs with no CF score (and users with no history) follow in popularity order; ``exclude``
        rows (aligned with ``users``) are masked.
        """
        if self.sim is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(users, dtype=np.int64)
        if exclude is None and (hit := self._memo.get(users, k)) is not None:
            return hit
        n_users = users.shape[0]
        ex = exclude_arrays(exclude, n_users)
        sim_t = self.sim.astype(np.float32)
        # Popularity tie-break strictly below the smallest possible positive CF score.
        min_sim = float(self.sim.data.min()) if self.sim.nnz else 1.0
        min_w = (
            1.0
            if self.recency_half_life is None
            else 0.5 ** ((self.max_history - 1) / self.recency_half_life)
        )
        eps = 1e-3 * min_sim * min_w
        pop_t = torch.from_numpy((self._pop_rank * eps).astype(np.float32))
        out = np.empty((n_users, k), dtype=np.int64)
        for b0 in range(0, n_users, batch):
            b1 = min(b0 + batch, n_users)
            h = self.user_history(users[b0:b1])
            s = torch.from_numpy((h @ sim_t).toarray()) + pop_t[None, :]
            out[b0:b1] = _topk_dense_rows(s, k, ex, b0, b1)
        if exclude is None:
            self._memo.put(users, k, out)
        return out

    def similar_items(self, item_ids: np.ndarray | Sequence[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(idx int64 [n, k], sims float32 [n, k])`` nearest stored neighbours, ``-1``/0 padded."""
        if self.sim is None:
            raise RuntimeError("call fit() first")
        ids = np.asarray(item_ids, dtype=np.int64)
        sub = sp.csr_matrix(self.sim[ids])
        lens = np.diff(sub.indptr)
        rows = np.repeat(np.arange(ids.shape[0]), lens)
        order = np.lexsort((sub.indices, -sub.data, rows))  # by row, then sim desc, then id
        r, c, v = rows[order], sub.indices[order].astype(np.int64), sub.data[order]
        rank = np.arange(r.shape[0]) - np.repeat(sub.indptr[:-1], lens)
        keep = rank < k
        idx = np.full((ids.shape[0], k), -1, dtype=np.int64)
        sims = np.zeros((ids.shape[0], k), dtype=np.float32)
        idx[r[keep], rank[keep]] = c[keep]
        sims[r[keep], rank[keep]] = v[keep]
        return idx, sims


class MarkovRecall:
    """Previous-song transition counts, scored from the last play, backed off to popularity.

    ``score_ij`` = number of times song ``j`` directly followed song ``i`` in a user's ``label`` plays of
    the fit data (``within_session=True``: only when both plays are in the same session). The ranking of
    a user whose last play is ``i`` is row ``i`` by count, ties and unseen songs in popularity order
    (full plays of the fit data); a user without a last play gets popularity.
    """

    def __init__(self, label: str | None = "full_play", within_session: bool = False):
        self.label = label
        self.within_session = within_session
        self.trans: sp.csr_matrix | None = None

    def fit(
        self,
        train_events: pl.DataFrame,
        n_items: int | None = None,
        *,
        user_col: str = "user_id",
        item_col: str = "song_id",
        ts_col: str = "ts",
    ) -> MarkovRecall:
        """Count transitions between consecutive ``label`` plays of each user (ordered by time, stable)."""
        ev = _positives(train_events, self.label)
        if self.within_session and "session_id" not in ev.columns:
            raise KeyError("within_session=True needs a session_id column")
        n = _n_items(train_events, n_items, item_col)
        self.n_items = n
        cols = [user_col, item_col, ts_col] + (["session_id"] if self.within_session else [])
        ev = ev.select(cols).sort([user_col, ts_col], maintain_order=True)
        u = ev[user_col].to_numpy().astype(np.int64)
        it = ev[item_col].to_numpy().astype(np.int64)
        same = u[1:] == u[:-1]
        if self.within_session:
            sess = ev["session_id"].to_numpy()
            same &= sess[1:] == sess[:-1]
        prev, nxt = it[:-1][same], it[1:][same]
        self.trans = sp.csr_matrix((np.ones(prev.shape[0], dtype=np.float64), (prev, nxt)), shape=(n, n))
        self.trans.sum_duplicates()
        self.n_transitions = int(prev.shape[0])
        pop = np.bincount(it, minlength=n).astype(np.float64)
        # Back-off strictly below one transition: popularity rank scaled into (0, 0.5].
        self._backoff = 0.5 * _rank_scores(pop)
        self._pop_pos = np.empty(n, dtype=np.int64)  # 0 = most popular (ties: lower id first)
        self._pop_pos[np.argsort(-self._backoff, kind="stable")] = np.arange(n)
        last = ev.group_by(user_col, maintain_order=True).last()
        self._last_users = last[user_col].to_numpy().astype(np.int64)
        self._last_items = last[item_col].to_numpy().astype(np.int64)
        order = np.argsort(self._last_users)
        self._last_users, self._last_items = self._last_users[order], self._last_items[order]
        self._pop_order = np.argsort(self._pop_pos)  # songs, most popular first
        self._memo = ListMemo()
        return self

    def _scores_from_last(self, last: np.ndarray) -> torch.Tensor:
        """float64 ``[len(last), n_items]``: transition counts of each last song (``-1`` = none) + back-off.

        float64 because counts plus a popularity tie-break of resolution ``0.5 / n_items`` do not fit
        float32's 24-bit mantissa once counts reach a few hundred."""
        if self.trans is None:
            raise RuntimeError("call fit() first")
        if not hasattr(self, "_backoff_t"):
            self._backoff_t = torch.from_numpy(self._backoff)
        last = np.asarray(last, dtype=np.int64)
        out = self._backoff_t.expand(last.shape[0], -1).clone()
        known = np.flatnonzero((last >= 0) & (last < self.n_items))
        if known.shape[0]:
            sub = self.trans[last[known]]
            rows = np.repeat(known, np.diff(sub.indptr))
            r, c = torch.from_numpy(rows), torch.from_numpy(sub.indices.astype(np.int64))
            out[r, c] += torch.from_numpy(sub.data)
        return out

    def score(self, histories: np.ndarray, lengths: np.ndarray | None = None) -> torch.Tensor:
        """Rolling-evaluation scores from the last play of each left-padded history (pads are ids outside
        ``0..n_items-1``, e.g. ``n_items``): float64 ``[B, n_items]``."""
        h = np.asarray(histories)
        last = h[:, -1].astype(np.int64) if h.ndim == 2 and h.shape[1] else np.full(h.shape[0], -1)
        if lengths is not None:
            last = np.where(np.asarray(lengths) > 0, last, -1)
        return self._scores_from_last(last)

    def target_ranks(self, histories: np.ndarray, lengths: np.ndarray | None, items: np.ndarray) -> np.ndarray:
        """Full-catalogue rank of ``items[r]`` under :meth:`score` of ``histories[r]``, from the sparse
        transition rows alone (the same ranks as ranking the dense scores, at O(nonzeros) cost; used by
        :func:`musicrecall.evaluation.rolling_next_play`). Song ``j`` is above target ``t`` when its count
        from the last play is higher, or equal with ``j`` more popular."""
        if self.trans is None:
            raise RuntimeError("call fit() first")
        h = np.asarray(histories)
        items = np.asarray(items, dtype=np.int64)
        last = h[:, -1].astype(np.int64) if h.ndim == 2 and h.shape[1] else np.full(h.shape[0], -1)
        if lengths is not None:
            last = np.where(np.asarray(lengths) > 0, last, -1)
        b = items.shape[0]
        known = (last >= 0) & (last < self.n_items)
        sub = self.trans[np.where(known, last, 0)]
        nnz = np.where(known, np.diff(sub.indptr), 0)
        rr = np.repeat(np.arange(b), np.diff(sub.indptr))
        live = known[rr]
        rr, cols, data = rr[live], sub.indices[live].astype(np.int64), sub.data[live]
        pos_t = self._pop_pos[items]
        c_t = np.zeros(b)
        is_t = cols == items[rr]
        c_t[rr[is_t]] = data[is_t]
        greater = np.bincount(rr, weights=data > c_t[rr], minlength=b)
        earlier = self._pop_pos[cols] < pos_t[rr]
        eq_before = np.bincount(rr, weights=(data == c_t[rr]) & earlier, minlength=b)
        nz_before = np.bincount(rr, weights=earlier, minlength=b)
        # c_t > 0: only nonzeros can be above; c_t == 0: every nonzero, then zero-count songs more popular
        ranks = np.where(c_t > 0, greater + eq_before, nnz + pos_t - nz_before)
        return ranks.astype(np.int64)

    def last_play(self, users: np.ndarray | Sequence[int]) -> np.ndarray:
        """Each user's last ``label`` play in the fit data (``-1`` when none)."""
        if self.trans is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(users, dtype=np.int64)
        if self._last_users.shape[0] == 0:
            return np.full(users.shape[0], -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._last_users, users), self._last_users.shape[0] - 1)
        return np.where(self._last_users[pos] == users, self._last_items[pos], -1)

    def recommend(
        self, users: np.ndarray | Sequence[int], k: int, exclude: ExcludeLike = None, batch: int = 1024
    ) -> np.ndarray:
        """``[len(users), k]`` song ids from each user's last fit-window play (for
        :func:`musicrecall.evaluation.evaluate_recommender`); ``exclude`` rows are masked.

        The lists of ranking :meth:`score` (transition count, then popularity), built from the sparse
        transition row and the popularity order alone: no ``[users, n_items]`` score matrix."""
        if self.trans is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(users, dtype=np.int64)
        if exclude is None and (hit := self._memo.get(users, k)) is not None:
            return hit
        last = self.last_play(users)
        ex = exclude_arrays(exclude, users.shape[0])
        out = np.full((users.shape[0], k), -1, dtype=np.int64)
        for b0 in range(0, users.shape[0], batch):
            b1 = min(b0 + batch, users.shape[0])
            ex_b = None if ex is None else (ex[0][b0 : b1 + 1] - ex[0][b0], ex[1][ex[0][b0] : ex[0][b1]])
            out[b0:b1] = self._lists_from_last(last[b0:b1], k, ex_b)
        if exclude is None:
            self._memo.put(users, k, out)
        return out

    def _lists_from_last(self, last: np.ndarray, k: int, ex: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """Top-``k`` of each row of :meth:`_scores_from_last` (exclusions removed; ``-1`` when the catalogue
        runs out): the row's transitions by count then popularity, then the other songs in popularity order."""
        n, b = self.n_items, last.shape[0]
        out = np.full((b, k), -1, dtype=np.int64)
        known = (last >= 0) & (last < n)
        sub = self.trans[np.where(known, last, 0)]
        rr = np.repeat(np.arange(b, dtype=np.int64), np.diff(sub.indptr))
        live = known[rr]
        rr, cols, data = rr[live], sub.indices[live].astype(np.int64), sub.data[live]
        if ex is not None:
            keep = ~_pairs_in_rows(rr, cols, ex[0], ex[1], n)
            rr, cols, data = rr[keep], cols[keep], data[keep]
        order = np.lexsort((self._pop_pos[cols], -data, rr))
        rr, cols = rr[order], cols[order]
        rank = np.arange(rr.shape[0]) - np.searchsorted(rr, rr)
        ok = rank < k
        out[rr[ok], rank[ok]] = cols[ok]
        taken = np.minimum(np.bincount(rr, minlength=b), k)
        need = np.flatnonzero(taken < k)
        if need.shape[0]:  # the back-off: songs the row has no transition to, in popularity order
            nnz = np.bincount(rr, minlength=b)[need]
            n_ex = np.zeros(need.shape[0], dtype=np.int64) if ex is None else np.diff(ex[0])[need]
            m = int(min(n, k + (nnz + n_ex).max(initial=0)))
            fr, fi = np.repeat(need, m), np.tile(self._pop_order[:m], need.shape[0])
            drop = _pairs_in_rows(fr, fi, np.r_[0, np.cumsum(np.bincount(rr, minlength=b))], cols[np.lexsort((cols, rr))], n)
            if ex is not None:
                drop |= _pairs_in_rows(fr, fi, ex[0], ex[1], n)
            fr, fi = fr[~drop], fi[~drop]
            slot = taken[fr] + np.arange(fr.shape[0]) - np.searchsorted(fr, fr)
            ok = slot < k
            out[fr[ok], slot[ok]] = fi[ok]
        return out
