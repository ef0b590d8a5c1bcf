"""Multi-interest serving: one nearest-neighbour query per interest vector, then a merge.

MIND (Li et al., CIKM 2019, section 5.4) serves each interest vector with its own ANN query. The
results must be merged into one list of ``k`` songs; two ways are compared in notebook 04:

* **global merge** (:func:`global_merge`), what DeepMatch / torch-rechub / ComiRec do: pool every
  interest's candidates, sort by score, drop duplicates, keep the best ``k``. A dominant interest
  (large norm, popular region of the space) can take every slot.
* **per-interest quota** (:func:`quota_merge`), as QQ Music's Q&A describes: interest ``j`` of user
  ``u`` gets ``q_uj = floor + (k - K_u·floor)·w_uj`` slots (largest-remainder rounding, Σ_j q_uj = k),
  with ``w_uj`` its interest weight and ``floor = ⌈floor_share·k⌉``. Candidates are interleaved by
  ``(rank + ½) / q_uj`` (each interest advances at the pace of its quota), duplicates are dropped
  (the first interest to reach a song claims it) and an interest keeps at most ``q_uj`` songs; it
  then moves down its own list to replace songs another interest claimed. Only if an interest runs out
  of candidates are its leftover slots filled by the best remaining songs by score.

All functions are vectorised over users; ``-1`` marks an empty slot everywhere.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import polars as pl

from musicrecall.evaluation import ExactIndex, UserItemCSR, ann_recall


class Index(Protocol):
    """Anything with faiss's ``search(queries, k) -> (scores, idx)`` (FaissIndex, ExactIndex)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _first_occurrence(ids: np.ndarray) -> np.ndarray:
    """Bool [U, M]: True at the first (leftmost) occurrence of each id ≥ 0 in its row."""
    order = np.argsort(ids, axis=1, kind="stable")
    s = np.take_along_axis(ids, order, axis=1)
    first_sorted = np.ones_like(s, dtype=bool)
    first_sorted[:, 1:] = s[:, 1:] != s[:, :-1]
    out = np.empty_like(first_sorted)
    np.put_along_axis(out, order, first_sorted, axis=1)
    return out & (ids >= 0)


def _compact(ids: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Move the kept ids of each row to the front (order preserved), pad with -1, cut to ``k`` columns."""
    order = np.argsort(~keep, axis=1, kind="stable")
    out = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(ids, order, axis=1), -1)
    if out.shape[1] < k:
        out = np.hstack([out, np.full((out.shape[0], k - out.shape[1]), -1, dtype=out.dtype)])
    return out[:, :k]


def _row_member(ids: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Bool, same shape as ``ids`` [U, ...]: is ``ids[r, ...]`` in CSR row ``r``."""
    base = int(max(ids.max(initial=0), indices.max(initial=0))) + 2
    rows = np.arange(ids.shape[0], dtype=np.int64).reshape((-1,) + (1,) * (ids.ndim - 1))
    keys = rows * base + (ids.astype(np.int64) + 1)
    ex_rows = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
    return np.isin(keys, ex_rows * base + indices + 1)


def search_interests(index: Index, vecs: np.ndarray, active: np.ndarray, n_cand: int,
                     exclude: UserItemCSR | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One query per active interest vector: ``(scores [U, K, n_cand], idx [U, K, n_cand])``.

    Inactive interests get ``idx = -1`` / ``score = -inf``. With ``exclude`` (rows aligned with the
    users), ``n_cand`` plus the largest row of ``exclude`` are fetched and excluded songs removed.
    """
    n_users, k_max, d = vecs.shape
    extra = int(np.diff(exclude.indptr).max(initial=0)) if exclude is not None else 0
    fetch = n_cand + extra
    flat = np.flatnonzero(active.ravel())
    scores = np.full((n_users * k_max, fetch), -np.inf, dtype=np.float32)
    idx = np.full((n_users * k_max, fetch), -1, dtype=np.int64)
    if flat.size:
        s, i = index.search(np.ascontiguousarray(vecs.reshape(-1, d)[flat], dtype=np.float32), fetch)
        scores[flat], idx[flat] = s, i
    scores, idx = scores.reshape(n_users, k_max, fetch), idx.reshape(n_users, k_max, fetch)
    if exclude is not None and extra:
        drop = _row_member(idx, exclude.indptr, exclude.indices) | (idx < 0)
        order = np.argsort(drop, axis=2, kind="stable")
        idx = np.where(np.take_along_axis(drop, order, 2), -1, np.take_along_axis(idx, order, 2))[:, :, :n_cand]
        scores = np.where(idx >= 0, np.take_along_axis(scores, order, 2)[:, :, :n_cand], -np.inf)
    idx[~np.isfinite(scores)] = -1
    return scores, idx


def interest_ann_recall(index: Index, item_vecs: np.ndarray, vecs: np.ndarray, active: np.ndarray, k: int = 200,
                        max_queries: int = 500, seed: int = 0) -> float:
    """Recall@``k`` of ``index`` against exact inner-product search, on a seeded sample of at most
    ``max_queries`` of the queries serving sends (the active interest vectors ``vecs[active]``): how much
    of each interest's exact top-``k`` the ANN index returns. NaN when no interest is active."""
    queries = np.ascontiguousarray(vecs[np.asarray(active, dtype=bool)], dtype=np.float32)
    if queries.shape[0] == 0:
        return float("nan")
    queries = queries[np.sort(np.random.default_rng(seed).permutation(queries.shape[0])[:max_queries])]
    k = min(k, item_vecs.shape[0])
    return ann_recall(index.search(queries, k)[1], ExactIndex(item_vecs).search(queries, k)[1])


def global_merge(scores: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Pool all interests' candidates, sort by score, de-duplicate, keep ``k``: int64 [U, k]."""
    n = idx.shape[0]
    s, i = scores.reshape(n, -1), idx.reshape(n, -1)
    order = np.argsort(-np.where(i >= 0, s, -np.inf), axis=1, kind="stable")
    i = np.take_along_axis(i, order, axis=1)
    return _compact(i, _first_occurrence(i), k)


def interest_quotas(weights: np.ndarray, active: np.ndarray, k: int, floor_share: float = 0.05) -> np.ndarray:
    """Slots per interest [U, K]: ``floor + (k - K_u·floor)·w`` (largest remainder), Σ_j = k, 0 if inactive.

    ``floor = ceil(floor_share · k)``, shrunk for a user whose ``K_u · floor`` would exceed ``k``.
    """
    active = active.astype(bool)
    n_act = np.maximum(active.sum(1, keepdims=True), 1)
    floor = np.minimum(int(np.ceil(floor_share * k)), k // n_act)
    w = np.where(active, np.maximum(weights, 0.0), 0.0)
    w_sum = w.sum(1, keepdims=True)
    w = np.where(w_sum > 0, w / np.where(w_sum > 0, w_sum, 1.0), active / n_act)
    share = (k - n_act * floor) * w
    q = np.floor(share).astype(np.int64)
    left = k - n_act[:, 0] * floor[:, 0] - q.sum(1)  # slots still to hand out, < K_u
    rank = np.argsort(np.argsort(-np.where(active, share - q, -np.inf), axis=1, kind="stable"), axis=1)
    q += rank < left[:, None]
    return np.where(active, q + floor, 0)


def quota_merge(scores: np.ndarray, idx: np.ndarray, quotas: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-interest quota merge (module docstring): ``(lists int64 [U, k], source interest int64 [U, k])``.

    ``source`` is the interest that claimed each slot (``-1`` for back-fill by score or empty slots).
    """
    n, k_max, c = idx.shape
    rank = np.broadcast_to(np.arange(c)[None, None, :], idx.shape)
    with np.errstate(divide="ignore"):
        key = (rank + 0.5) / quotas[:, :, None].astype(np.float64)
    key = np.where((idx >= 0) & (quotas[:, :, None] > 0), key, np.inf).reshape(n, -1)
    order = np.argsort(key, axis=1, kind="stable")
    ids = np.take_along_axis(idx.reshape(n, -1), order, axis=1)
    src = np.take_along_axis(np.repeat(np.arange(k_max), c)[None, :].repeat(n, 0), order, axis=1)
    keep = _first_occurrence(ids) & np.isfinite(np.take_along_axis(key, order, axis=1))
    onehot = (src[:, :, None] == np.arange(k_max)[None, None, :]) & keep[:, :, None]
    used = np.take_along_axis(np.cumsum(onehot, axis=1), src[:, :, None], axis=2)[:, :, 0]
    keep &= used <= np.take_along_axis(quotas, src, axis=1)
    lists = _compact(ids, keep, k)
    source = _compact(np.where(keep, src, -1), keep, k)
    short = (lists < 0).any(1) & (lists >= 0).any(1)
    if short.any():  # an interest ran out of candidates: back-fill its slots by score
        rest = global_merge(scores[short], idx[short], k_max * c)
        rest = np.where(_row_member(rest, *_csr(lists[short])), -1, rest)
        fill = np.hstack([lists[short], rest])
        lists[short] = _compact(fill, fill >= 0, k)
    return lists, source


def _csr(lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of the non-empty slots of each row."""
    valid = lists >= 0
    indptr = np.zeros(lists.shape[0] + 1, dtype=np.int64)
    np.cumsum(valid.sum(1), out=indptr[1:])
    return indptr, lists[valid]


def genre_coverage(lists: np.ndarray, song_genre: np.ndarray, n_genres: int) -> np.ndarray:
    """Per user: share of all ``n_genres`` genres present in the list (float [U]).

    Works for any catalogue relation (artist, album, ...); when it has more values than a list has slots,
    the share is of the ``k`` values a list could at most hold, so it stays in [0, 1] and comparable.
    """
    g = np.where(lists >= 0, song_genre[np.maximum(lists, 0)], -1)
    present = np.zeros((lists.shape[0], n_genres + 1), dtype=bool)
    present[np.arange(lists.shape[0])[:, None], g] = True  # -1 lands in the spare last column
    return present[:, :n_genres].sum(1) / min(n_genres, lists.shape[1])


def history_interests(fit: pl.DataFrame, song_codes: np.ndarray, max_interests: int = 4,
                      min_share: float = 0.1) -> pl.DataFrame:
    """A stand-in for ground-truth interests on real data: each user's most played values of a catalogue
    relation (e.g. artists) among their full plays in ``fit``, at most ``max_interests`` of them, each
    with at least ``min_share`` of the user's plays. Columns ``user_id``, ``cluster`` (the relation code),
    the layout of the world's ``truth["user_interests"]``, so :func:`interest_coverage` reads either."""
    ev = fit.filter(pl.col("full_play").fill_null(False)).select("user_id", "song_id")
    code = song_codes[ev["song_id"].to_numpy()]
    ev = ev.with_columns(cluster=pl.Series(code, dtype=pl.Int64)).filter(pl.col("cluster") >= 0)
    per = ev.group_by("user_id", "cluster").len().with_columns(share=pl.col("len") / pl.col("len").sum().over("user_id"))
    per = per.filter(pl.col("share") >= min_share).sort(["user_id", "len", "cluster"], descending=[False, True, False])
    return per.group_by("user_id", maintain_order=True).head(max_interests).select("user_id", "cluster")


def interest_coverage(lists: np.ndarray, users: np.ndarray, song_cluster: np.ndarray,
                      user_interests: pl.DataFrame, min_songs: int = 2) -> np.ndarray:
    """Per user: share of their ground-truth interest clusters with at least ``min_songs`` songs in the list.

    ``user_interests`` has ``user_id`` and ``cluster`` (the world's truth); users without truth get NaN.
    """
    n, n_cl = lists.shape[0], int(song_cluster.max()) + 2
    counts = np.zeros((n, n_cl), dtype=np.int64)
    cl = np.where(lists >= 0, song_cluster[np.maximum(lists, 0)], n_cl - 1)
    np.add.at(counts, (np.repeat(np.arange(n), lists.shape[1]), cl.ravel()), 1)
    pos = pl.DataFrame({"user_id": np.asarray(users, dtype=np.int64), "row": np.arange(n)})
    truth = user_interests.select("user_id", "cluster").join(pos, on="user_id", how="inner")
    rows, clusters = truth["row"].to_numpy(), truth["cluster"].to_numpy()
    reached = np.bincount(rows, weights=counts[rows, clusters] >= min_songs, minlength=n)
    total = np.bincount(rows, minlength=n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, reached / total, np.nan)


def song_clusters(items: pl.DataFrame, genres: tuple[str, ...], languages: tuple[str, ...]) -> np.ndarray:
    """The world's (genre, language) cluster id of every song: ``genre_index · n_languages + language_index``."""
    items = items.sort("song_id")
    g = items["genre"].replace_strict(list(genres), list(range(len(genres))), default=-1).to_numpy()
    lang = items["language"].replace_strict(list(languages), list(range(len(languages))), default=-1).to_numpy()
    return np.where((g >= 0) & (lang >= 0), g * len(languages) + lang, -1).astype(np.int64)


def true_song_clusters(song_style: pl.DataFrame, n_items: int) -> np.ndarray:
    """The simulator's true preference cluster of every song id (``world.truth["song_style"]``), -1 if unknown.

    Taken from the truth rather than the published genre/language, which a placebo world may shuffle.
    """
    out = np.full(n_items, -1, dtype=np.int64)
    out[song_style["song_id"].to_numpy()] = song_style["pref_cluster"].to_numpy()
    return out


def merged_lists(index: Index, vecs: np.ndarray, active: np.ndarray, weights: np.ndarray, k: int,
                 floor_share: float = 0.05, exclude: UserItemCSR | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Serve ``k`` songs per user both ways from the same per-interest queries (``k`` candidates each).

    Returns ``({"global": lists, "quota": lists}, quota source interests)``.
    """
    scores, idx = search_interests(index, vecs, active, k, exclude=exclude)
    quota, source = quota_merge(scores, idx, interest_quotas(weights, active, k, floor_share), k)
    return {"global": global_merge(scores, idx, k), "quota": quota}, source


def merge_metrics(lists: np.ndarray, targets: UserItemCSR, song_genre: np.ndarray, n_genres: int,
                  song_cluster: np.ndarray | None, user_interests: pl.DataFrame | None, min_songs: int = 2,
                  coverage_name: str = "genre_coverage") -> dict[str, np.ndarray]:
    """Per-user ``hr@k``, ``genre_coverage`` and (with interests) ``interest_coverage`` of ``lists`` (rows
    aligned with ``targets.users``). Users without interests are dropped from ``interest_coverage``.

    ``song_genre`` may code any catalogue relation (``coverage_name`` names the metric, e.g.
    ``"artist_coverage"``); ``user_interests`` is the world's truth or, on real data, a stand-in such as
    :func:`history_interests` (then ``song_cluster`` codes the same relation)."""
    from musicrecall.evaluation import evaluate_lists

    k = lists.shape[1]
    out = {f"hr@{k}": evaluate_lists(lists, targets, (k,))[f"hr@{k}"],
           coverage_name: genre_coverage(lists, song_genre, n_genres)}
    if user_interests is not None and song_cluster is not None:
        cov = interest_coverage(lists, targets.users, song_cluster, user_interests, min_songs)
        out["interest_coverage"] = cov[np.isfinite(cov)]
    return out
