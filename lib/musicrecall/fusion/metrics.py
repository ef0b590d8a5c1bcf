"""Beyond-accuracy metrics, channel contributions and per-entry hit rates of recall lists (notebook 08)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrecall.evaluation import UserItemCSR, build_targets, coverage, evaluate_lists, novelty, summarize
from musicrecall.fusion.channels import csr_contains


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
                          genre_of: np.ndarray | None, popularity: np.ndarray, n_fit_users: int, n_items: int,
                          n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Coverage, genre diversity, novelty and surprise (bootstrap CIs over users) per model; without
    genres (``genre_of`` None, or no song with a genre: codes all -1) only coverage and novelty."""
    if genre_of is not None and genre_of.max(initial=-1) < 0:
        genre_of = None
    known = known_genres(fit, users, genre_of) if genre_of is not None else None
    tables = []
    for name, lst in lists.items():
        if genre_of is None:
            vals = {"novelty": novelty(lst, popularity, n_fit_users, per_user=True)}
        else:
            vals = list_beyond_accuracy(lst, known, genre_of, popularity, n_fit_users)
        vals["novelty"] = np.nan_to_num(vals["novelty"], nan=0.0)
        tables.append(summarize(vals, n_boot=n_boot, seed=seed, scalars={"coverage": coverage(lst, n_items)},
                                model=name, k=lst.shape[1]))
    return pl.concat(tables)


def contribution(lists: np.ndarray, source: np.ndarray, names: Sequence[str], targets: UserItemCSR
                 ) -> pl.DataFrame:
    """Per channel (and back-fill): share of the fused slots it filled and share of the hits it supplied
    (``lists`` rows aligned with ``targets.users``)."""
    hits = csr_contains(np.arange(len(lists), dtype=np.int64)[:, None], lists, targets.indptr, targets.indices)
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
