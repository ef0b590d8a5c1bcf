"""Party A's side of the cold-start experiment: the parties' tables, baselines, batches and measures.

* :func:`party_b_table` builds party B's own database file from the world: B knows a random
  ``coverage`` share of the music users plus ``n_extra`` users of its own business who never used the
  music app (so the PSI has something to hide on both sides).
* :class:`DemographicPopularity`: "A alone" — the most full-played songs among users of the same age
  bucket (A's sparse demographics), shrunk towards global popularity when the bucket is unknown/small.
* :func:`play_rows` / :func:`batches`: training rows (plays of aligned users) and seeded minibatches of
  unique users + per-row gathers, as the models' ``loss`` expects.
* :func:`per_user_auc` (full-play vs skip among the user's test plays) and :func:`duration_at_k`
  (the listening-duration measure of the notebook) are per-user arrays for bootstrap CIs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import torch

from musicrecall.cache import content_key
from musicrecall.config import DATA_DIR
from musicrecall.evaluation import topk_scores
from musicrecall.training import minibatches


def party_b_table(cross_business: pl.DataFrame, users: pl.DataFrame, coverage: float = 0.9, n_extra: int = 0,
                  seed: int = 0, key: str = "") -> Path:
    """Write party B's table (``user_key``, ``b_age_bucket``, ``f00..``) and return its path."""
    path = DATA_DIR / "interim" / f"party_b-{content_key(key, coverage, n_extra, seed)}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng([seed, 707])
    t = cross_business.join(users.select("user_id", "user_key"), on="user_id").sort("user_id")
    t = t.filter(pl.Series(rng.random(t.height) < coverage)).drop("user_id")
    if n_extra:
        fcols = [c for c in t.columns if c.startswith("f")]
        base = int(users["user_id"].max()) + 1
        extra = pl.DataFrame({"user_key": [f"u{base + i:07d}" for i in range(n_extra)],
                              "b_age_bucket": rng.choice(t["b_age_bucket"].to_numpy(), n_extra),
                              **{c: rng.normal(0, 1, n_extra).astype(np.float32) for c in fcols}})
        t = pl.concat([t, extra.select(t.columns)])
    t = t.sample(fraction=1.0, shuffle=True, seed=seed)  # B's own row order
    path.parent.mkdir(parents=True, exist_ok=True)
    t.write_parquet(path)
    return path


def cold_users(fit: pl.DataFrame, target_users: np.ndarray, max_plays: int) -> np.ndarray:
    """Target users with at most ``max_plays`` plays in the fit window (0 = never seen)."""
    n = pl.DataFrame({"user_id": np.asarray(target_users, np.int64)}).join(
        fit.group_by("user_id").agg(n=pl.len()), on="user_id", how="left").fill_null(0)
    return np.sort(n.filter(pl.col("n") <= max_plays)["user_id"].to_numpy())


class DemographicPopularity:
    """Full-play popularity per age bucket, shrunk to global popularity: ``(c_seg + m p_glob) / (n_seg + m)``."""

    def __init__(self, shrinkage: float = 200.0):
        self.m = shrinkage

    def fit(self, fit: pl.DataFrame, users: pl.DataFrame, n_items: int) -> DemographicPopularity:
        fp = fit.filter(pl.col("full_play")).join(users.select("user_id", "age_bucket"), on="user_id", how="left")
        glob = np.bincount(fp["song_id"].to_numpy(), minlength=n_items).astype(np.float64)
        glob /= max(glob.sum(), 1.0)
        self.buckets = sorted(fp["age_bucket"].drop_nulls().unique().to_list())
        table = np.tile(glob, (len(self.buckets) + 1, 1))  # last row: unknown bucket -> global
        for b, name in enumerate(self.buckets):
            songs = fp.filter(pl.col("age_bucket") == name)["song_id"].to_numpy()
            table[b] = (np.bincount(songs, minlength=n_items) + self.m * glob) / (songs.shape[0] + self.m)
        self.table = np.log(table + 1e-12).astype(np.float32)
        self.bucket_of = dict(zip(users["user_id"].to_list(),
                                  users["age_bucket"].replace_strict(self.buckets, list(range(len(self.buckets))),
                                                                     default=len(self.buckets)).to_list(),
                                  strict=True))
        return self

    def rows(self, users: np.ndarray) -> np.ndarray:
        return np.asarray([self.bucket_of.get(int(u), len(self.buckets)) for u in users], dtype=np.int64)

    def user_vecs(self, users: np.ndarray) -> np.ndarray:
        """One-hot bucket rows; with :attr:`item_vecs` the inner product is the bucket's log-share."""
        return np.eye(len(self.buckets) + 1, dtype=np.float32)[self.rows(users)]

    @property
    def item_vecs(self) -> np.ndarray:
        return np.ascontiguousarray(self.table.T)


class EmbeddingScorer:
    """Serve users with vectors: aligned users by the model's vectors, the others by a fallback scorer."""

    def __init__(self, user_vecs: Callable[[np.ndarray], np.ndarray], item_vecs: np.ndarray,
                 aligned: dict[int, int] | None = None, fallback: EmbeddingScorer | None = None):
        self._uv, self.item_vecs, self.aligned, self.fallback = user_vecs, item_vecs, aligned, fallback

    def _split(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.aligned is None:
            return np.ones(len(users), bool), np.asarray(users)
        has = np.asarray([int(u) in self.aligned for u in users], dtype=bool)
        return has, np.asarray([self.aligned.get(int(u), -1) for u in users], dtype=np.int64)

    def recommend(self, users: np.ndarray, k: int, exclude=None) -> np.ndarray:
        users = np.asarray(users, np.int64)
        has, arg = self._split(users)
        out = np.full((len(users), k), -1, dtype=np.int64)
        if has.any():
            ex = None if exclude is None else _subset_csr(exclude, has)
            out[has] = topk_scores(self._uv(arg[has]), self.item_vecs, k, exclude=ex)[0]
        if (~has).any():
            ex = None if exclude is None else _subset_csr(exclude, ~has)
            out[~has] = self.fallback.recommend(users[~has], k, ex)
        return out

    def pair_scores(self, users: np.ndarray, songs: np.ndarray) -> np.ndarray:
        """Score of each (user, song) pair (for AUC)."""
        users, songs = np.asarray(users, np.int64), np.asarray(songs, np.int64)
        uniq, inv = np.unique(users, return_inverse=True)
        has, arg = self._split(uniq)
        out = np.zeros(len(users), dtype=np.float64)
        if has.any():
            vec = np.zeros((len(uniq), self.item_vecs.shape[1]), dtype=np.float32)
            vec[has] = self._uv(arg[has])
            sel = has[inv]
            out[sel] = (vec[inv[sel]] * self.item_vecs[songs[sel]]).sum(1)
        if (~has).any():
            sel = ~has[inv]
            out[sel] = self.fallback.pair_scores(users[sel], songs[sel])
        return out


def _subset_csr(csr, mask: np.ndarray):
    from musicrecall.evaluation import UserItemCSR

    rows = np.flatnonzero(mask)
    sizes = np.diff(csr.indptr)[rows]
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    idx = np.concatenate([csr.indices[csr.indptr[r]:csr.indptr[r + 1]] for r in rows]) if len(rows) else \
        np.zeros(0, np.int64)
    return UserItemCSR(users=csr.users[rows], indptr=indptr.astype(np.int64), indices=idx.astype(np.int64))


def play_rows(events: pl.DataFrame, aligned: dict[int, int], max_per_user: int, seed: int,
              full_plays_only: bool) -> pl.DataFrame:
    """Training rows of aligned users: ``a_idx``, ``song_id``, ``full_play``, ``collect``, ``play_ms``.

    With ``full_plays_only`` (the DSSM): at most ``max_per_user`` full plays per user (a seeded random
    pick). Otherwise (the MMoE): *the same* full plays plus at most ``max_per_user`` of the user's other
    plays (skips, partial plays), so the multi-task model sees everything the DSSM sees, and more labels.
    """
    full = _pick(events.filter(pl.col("full_play").fill_null(False)), aligned, max_per_user, seed)
    if full_plays_only:
        return full
    other = _pick(events.filter(~pl.col("full_play").fill_null(False)), aligned, max_per_user, seed)
    return pl.concat([full, other]).sort("a_idx", maintain_order=True)


def _pick(ev: pl.DataFrame, aligned: dict[int, int], max_per_user: int, seed: int) -> pl.DataFrame:
    amap = pl.DataFrame({"user_id": list(aligned), "a_idx": list(aligned.values())},
                        schema={"user_id": pl.Int64, "a_idx": pl.Int64})
    ev = ev.join(amap, on="user_id", how="inner").select(
        "a_idx", "song_id", pl.col("full_play").fill_null(False),
        (pl.col("action") == "collect").fill_null(False).alias("collect"), pl.col("play_ms").clip(0, None))
    ev = ev.with_columns(r=pl.Series(np.random.default_rng([seed, 11]).random(ev.height)))
    return ev.sort("a_idx", "r").group_by("a_idx", maintain_order=True).head(max_per_user).drop("r")


def batches(rows: pl.DataFrame, batch_size: int, seed: int, user_input: Callable[[np.ndarray], object],
            parts: int = 1) -> Callable[[int], Iterator[dict]]:
    """``batches(epoch)`` for :func:`musicrecall.training.train`: each batch has the unique users'
    input (``user_input(aligned_idx)``), ``rows`` (row -> unique user) and the row tensors.

    ``parts``: an epoch of the loop is one ``parts``-th of a pass over ``rows`` (pass ``epoch // parts``,
    shuffled by ``(seed, pass)``, cut into ``parts`` runs of whole batches), so early stopping validates
    ``parts`` times per pass; with ``parts=1`` an epoch is a pass."""
    a = rows["a_idx"].to_numpy()
    cols = {c: torch.from_numpy(rows[c].to_numpy().copy()) for c in ("song_id", "full_play", "collect", "play_ms")}

    def gen(epoch: int) -> Iterator[dict]:
        one_pass = list(minibatches(rows.height, batch_size, seed=seed, epoch=epoch // parts))
        for b in np.array_split(np.arange(len(one_pass)), parts)[epoch % parts]:
            idx = one_pass[b]
            uniq, inv = np.unique(a[idx], return_inverse=True)
            t = torch.from_numpy(idx)
            yield {"user": user_input(uniq), "rows": torch.from_numpy(inv), **{c: v[t] for c, v in cols.items()}}

    return gen


def per_user_auc(users: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-user ROC AUC of ``scores`` for ``labels`` (users with both classes only); ties count half.

    Returns ``(user_ids, auc)``.
    """
    df = pl.DataFrame({"u": users, "s": scores, "y": labels.astype(bool)})
    df = df.with_columns(r=pl.col("s").rank("average").over("u"))
    g = df.group_by("u").agg(n1=pl.col("y").sum(), n=pl.len(), rsum=pl.col("r").filter(pl.col("y")).sum())
    g = g.with_columns(n0=pl.col("n") - pl.col("n1")).filter((pl.col("n1") > 0) & (pl.col("n0") > 0)).sort("u")
    auc = (g["rsum"] - g["n1"] * (g["n1"] + 1) / 2) / (g["n1"] * g["n0"])
    return g["u"].to_numpy(), auc.to_numpy().astype(np.float64)


def duration_at_k(lists: np.ndarray, users: np.ndarray, window: pl.DataFrame) -> np.ndarray:
    """Per user: sum of ``play_ms`` (minutes) of the user's plays in ``window`` of songs in their list."""
    rec = pl.DataFrame({"user_id": np.repeat(np.asarray(users, np.int64), lists.shape[1]),
                        "song_id": lists.ravel()}).filter(pl.col("song_id") >= 0).unique()
    got = window.join(rec, on=["user_id", "song_id"], how="semi").group_by("user_id").agg(
        ms=pl.col("play_ms").clip(0, None).sum())
    out = pl.DataFrame({"user_id": np.asarray(users, np.int64)}).join(got, on="user_id", how="left").fill_null(0)
    return out["ms"].to_numpy().astype(np.float64) / 60_000.0
