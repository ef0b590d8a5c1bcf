"""Audio of the simulated world and the analyses of notebook 06 (claim C4).

* :func:`world_embeddings`: each selected song is rendered by the world's procedural renderer
  (:func:`musicrecall.world.render_audio`) and embedded exactly like a real file; cached per song by
  the content of its style, so a placebo world with the same catalogue reuses the audio.
* :func:`candidate_similarity`: for every *first* play of a song by a user, the cosine between the
  song's embedding and the mean embedding of the user's last ``recent`` full plays before it, with the
  genre/cluster overlap needed to control for genre confounding.
* :func:`pearson_ci`, :func:`partial_pearson_ci`: r with a bootstrap over users (the resampling unit),
  raw and after residualising on confounders (Fisher 1924 partial correlation via OLS residuals).
* :func:`cold_start_lists` / :func:`list_metrics`: distributing new songs by audio neighbours vs random
  and popularity; genre novelty ("surprise") and collect hit rate of recall lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrecall.audio.corpus import code_key
from musicrecall.audio.features import AudioConfig, EmbeddingScaler, segment_attributes, segment_statistics
from musicrecall.audio.recall import AudioIndex
from musicrecall.cache import content_key, source_fingerprint
from musicrecall.config import DATA_DIR, n_threads, threads


def select_songs(events: pl.DataFrame, t_test, n_songs: int, cold_share: float = 0.25,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(song ids to embed, cold ids)``: the most full-played songs before ``t_test`` plus a random
    sample of *cold* songs (no play before ``t_test``, at least one in the test window)."""
    fit = events.filter(pl.col("ts") < t_test)
    played = set(fit["song_id"].unique().to_list())
    cold_all = np.array(sorted(set(events.filter(pl.col("ts") >= t_test)["song_id"].unique().to_list()) - played))
    n_cold = min(len(cold_all), int(round(n_songs * cold_share)))
    cold = np.sort(np.random.default_rng(seed).choice(cold_all, n_cold, replace=False)) if n_cold else cold_all[:0]
    top = (fit.filter(pl.col("full_play")).group_by("song_id").len().sort(["len", "song_id"], descending=[True, False])
           .head(n_songs - n_cold)["song_id"].to_numpy())
    return np.union1d(top, cold).astype(np.int64), cold.astype(np.int64)


def world_embeddings(world, song_ids: np.ndarray, clip_s: float = 8.0, cfg: AudioConfig | None = None,
                     cache: bool = True) -> np.ndarray:
    """Raw 84-dim statistics ``(n, 84)`` of the first ``clip_s`` seconds of each song's rendered audio."""
    from musicrecall.world import audio as world_audio
    from musicrecall.world import render_audio

    cfg = cfg or AudioConfig(hop_s=1.0)
    folder = DATA_DIR / "interim" / "audio-world"
    code = content_key(code_key(), source_fingerprint(world_audio), cfg.key(), clip_s, world.config.seed)
    styles = world.truth["song_style"]
    cols = [c for c in styles.columns if c.startswith("style_")] + ["pref_cluster"]
    rows = styles.select("song_id", *cols).to_numpy()
    out = np.empty((len(song_ids), 84))
    paths = [folder / f"{content_key(code, rows[sid].tolist())}.npy" for sid in np.asarray(song_ids)]
    todo = []
    for i, path in enumerate(paths):
        if cache and path.exists():
            out[i] = np.load(path)
        else:
            todo.append(i)

    def embed(i: int) -> np.ndarray:
        attrs, _, _ = segment_attributes(render_audio(world, int(song_ids[i]), clip_s, cfg.sr), cfg)
        return segment_statistics(attrs)

    # songs are independent (each has its own seeded RNG) and numpy/scipy release the GIL in their
    # kernels, so threads give ~1.7x on 2 cores with bit-identical results (tested). One level of
    # parallelism: every library inside runs single-threaded (so the rows do not depend on the thread
    # count either); nested, the workers queued behind OpenBLAS's one helper thread, which on a loaded
    # machine rarely got a core, and spun (issue 18, bench: 30 songs, 2 threads, 2 busy processes, load ~18:
    # 172.5 s wall and 26.6 CPU s nested, 44.9 s and 6.0 CPU s so)
    workers = max(1, min(n_threads(), len(todo)))
    with threads(1), ThreadPoolExecutor(max_workers=workers) as pool:
        for i, emb in zip(todo, pool.map(embed, todo), strict=True):
            out[i] = emb
            if cache:
                paths[i].parent.mkdir(parents=True, exist_ok=True)
                tmp = paths[i].with_name(f"{paths[i].stem}.{os.getpid()}.tmp.npy")  # notebooks run side by side
                np.save(tmp, emb)
                tmp.replace(paths[i])  # atomic: a parallel reader never sees half a file
    return out


def candidate_similarity(events: pl.DataFrame, index: AudioIndex, items: pl.DataFrame, recent: int = 10) -> pl.DataFrame:
    """One row per first play of an indexed song by a user who has indexed full plays before it:
    ``sim`` (cosine to the mean of the last ``recent`` indexed full plays), ``full`` (0/1), the
    candidate's genre and the share of those recent plays in its genre / (genre, language) cluster."""
    ev = events.select("user_id", "song_id", "ts", "full_play", "entry").sort(["user_id", "ts"], maintain_order=True)
    ev = ev.with_columns(first=pl.int_range(pl.len()).over(["user_id", "song_id"]) == 0)
    items = items.sort("song_id")
    genre_codes, genre = np.unique(items["genre"].to_numpy().astype(str), return_inverse=True)
    cluster = np.unique(items["genre"].cast(pl.Utf8) + "/" + items["language"].cast(pl.Utf8), return_inverse=True)[1]
    user, song = ev["user_id"].to_numpy(), ev["song_id"].to_numpy()
    row = index.rows_of(song)
    fp = np.flatnonzero(ev["full_play"].to_numpy() & (row >= 0))
    g = np.searchsorted(fp, np.arange(len(ev)), side="left")  # indexed full plays before each play
    user_start = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    g0 = g[user_start][np.repeat(np.arange(len(user_start)), np.diff(np.r_[user_start, len(ev)]))]
    start = np.maximum(g0, g - recent)
    cnt = g - start
    keep = np.flatnonzero(ev["first"].to_numpy() & (row >= 0) & (cnt > 0))
    cs = np.vstack([np.zeros((1, index.vecs.shape[1])), np.cumsum(index.vecs[row[fp]], axis=0, dtype=np.float64)])
    prof = cs[g[keep]] - cs[start[keep]]
    prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
    sim = np.einsum("ij,ij->i", prof, index.vecs[row[keep]])
    shares = {}
    n_fp = len(fp) + 1
    for name, lab in (("genre", genre), ("cluster", cluster)):
        # count of window plays with the candidate's label: label-major sorted keys, two binary searches
        keys = np.sort(lab[song[fp]].astype(np.int64) * n_fp + np.arange(len(fp)))
        c = lab[song[keep]].astype(np.int64) * n_fp
        hits = np.searchsorted(keys, c + g[keep]) - np.searchsorted(keys, c + start[keep])
        shares[f"same_{name}_share"] = hits / cnt[keep]
    return pl.DataFrame({
        "user_id": user[keep], "song_id": song[keep], "ts": ev["ts"].to_numpy()[keep], "sim": sim,
        "full": ev["full_play"].to_numpy()[keep].astype(np.float64), "genre": genre_codes[genre[song[keep]]],
        "entry": ev["entry"].to_numpy()[keep].astype(str), "n_recent": cnt[keep], **shares,
    })


def pearson_ci(x: np.ndarray, y: np.ndarray, users: np.ndarray, n_boot: int = 1000, seed: int = 0,
               alpha: float = 0.05) -> tuple[float, float, float]:
    """Pearson r and a percentile bootstrap interval resampling *users* (plays of a user stay together).

    Vectorised through per-user sufficient statistics: each replicate is a weighted sum of them.
    """
    _, inv = np.unique(users, return_inverse=True)
    parts = np.column_stack([np.ones_like(x), x, y, x * y, x * x, y * y])
    stats = np.column_stack([np.bincount(inv, weights=parts[:, j]) for j in range(6)])
    rng = np.random.default_rng(seed)
    n_u = stats.shape[0]

    def r_of(t: np.ndarray) -> np.ndarray:
        n, sx, sy, sxy, sxx, syy = t.T
        cov = sxy - sx * sy / n
        return cov / np.sqrt(np.maximum((sxx - sx ** 2 / n) * (syy - sy ** 2 / n), 1e-300))

    reps = []
    for b0 in range(0, n_boot, 200):
        idx = rng.integers(0, n_u, size=(min(200, n_boot - b0), n_u))
        w = np.apply_along_axis(np.bincount, 1, idx, minlength=n_u).astype(np.float64)
        reps.append(r_of(w @ stats))
    lo, hi = np.quantile(np.concatenate(reps), [alpha / 2, 1 - alpha / 2])
    return float(r_of(stats.sum(axis=0, keepdims=True))[0]), float(lo), float(hi)


def residualize(v: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """OLS residual of ``v`` on ``[1, covariates]``."""
    z = np.column_stack([np.ones(len(v)), covariates])
    beta, *_ = np.linalg.lstsq(z, v, rcond=None)
    return v - z @ beta


def confounders(df: pl.DataFrame, popularity: np.ndarray, within_genre_only: bool = False) -> np.ndarray:
    """Covariate matrix: candidate-genre dummies (fixed effects); unless ``within_genre_only``, also the
    genre / cluster share of the recent plays, entry dummies and log popularity."""
    g = df.select(pl.col("genre").cast(pl.Categorical).to_physical()).to_numpy().ravel()
    cols = [np.eye(int(g.max()) + 1)[g][:, 1:]]
    if not within_genre_only:
        e = df.select(pl.col("entry").cast(pl.Categorical).to_physical()).to_numpy().ravel()
        cols += [df.select("same_genre_share", "same_cluster_share").to_numpy(), np.eye(int(e.max()) + 1)[e][:, 1:],
                 np.log1p(popularity[df["song_id"].to_numpy()])[:, None]]
    return np.column_stack(cols)


def partial_pearson_ci(df: pl.DataFrame, covariates: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """r of ``sim`` and ``full`` after residualising both on ``covariates`` (bootstrap over users)."""
    x = residualize(df["sim"].to_numpy(), covariates)
    y = residualize(df["full"].to_numpy(), covariates)
    return pearson_ci(x, y, df["user_id"].to_numpy(), n_boot, seed)


def binned(df: pl.DataFrame, n_bins: int = 10) -> pl.DataFrame:
    """Full-play rate per similarity decile, with a normal-approximation 95% interval."""
    q = np.quantile(df["sim"].to_numpy(), np.linspace(0, 1, n_bins + 1)[1:-1])
    out = (df.with_columns(bin=pl.Series(np.searchsorted(q, df["sim"].to_numpy())))
           .group_by("bin").agg(sim=pl.col("sim").mean(), rate=pl.col("full").mean(), n=pl.len()).sort("bin"))
    half = 1.96 * np.sqrt(out["rate"] * (1 - out["rate"]) / out["n"])
    return out.with_columns(lo=out["rate"] - half, hi=out["rate"] + half)


def user_audio_profiles(events: pl.DataFrame, index: AudioIndex, users: np.ndarray, recent: int = 10) -> np.ndarray:
    """Unit mean embedding of each user's last ``recent`` indexed full plays in ``events``."""
    fp = (events.filter(pl.col("full_play") & pl.col("song_id").is_in(index.song_ids.tolist())
                        & pl.col("user_id").is_in(users.tolist()))
          .sort("ts", descending=True).group_by("user_id", maintain_order=True).head(recent))
    pos = np.searchsorted(users, fp["user_id"].to_numpy())
    return index.profiles(pos, fp["song_id"].to_numpy(), len(users))


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores per row, best first (-inf entries become -1)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    return np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)


def ids_of(top: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Map column indices (-1 = empty) to song ids."""
    return np.where(top >= 0, ids[np.maximum(top, 0)], -1)


def cold_start_lists(profiles: np.ndarray, index: AudioIndex, cold: np.ndarray, artist_pop: np.ndarray,
                     k: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Lists of ``k`` cold songs per user: by audio similarity to the profile, at random, and by the
    popularity of the song's artist (the same list for everyone)."""
    cold_vecs = index.vecs[[index.row_of[int(s)] for s in cold]]
    audio = ids_of(top_k_rows(profiles @ cold_vecs.T, k), cold)
    rng = np.random.default_rng(seed)
    random = cold[np.argsort(rng.random((len(profiles), len(cold))), axis=1)[:, :k]]
    pop = np.broadcast_to(cold[np.argsort(-artist_pop, kind="stable")[:k]], random.shape).copy()
    return {"audio_neighbours": audio, "random": random, "popularity": pop}


def list_metrics(lists: np.ndarray, users: np.ndarray, test: pl.DataFrame, user_genres: sp.csr_matrix,
                 genre_of: np.ndarray) -> pl.DataFrame:
    """Per user: ``hit`` (a listed song full-played in ``test``), ``collect_hit`` (a listed song
    collected), ``exposed_full_rate`` (full-play share of the listed songs the user played; NaN when
    none) and ``genre_novelty`` (share of listed songs outside the user's known genres)."""
    n_items = len(genre_of)
    pos = {int(u): i for i, u in enumerate(users)}
    t = test.filter(pl.col("user_id").is_in(users.tolist()))
    r = np.array([pos[int(u)] for u in t["user_id"].to_numpy()], dtype=np.int64)
    key = r * n_items + t["song_id"].to_numpy()
    valid = lists >= 0
    listed = np.where(valid, np.arange(len(users))[:, None] * n_items + lists, -1)
    in_list = np.isin(key, listed[valid])
    full = t["full_play"].to_numpy()
    coll = (t["action"] == "collect").fill_null(False).to_numpy()
    hit = np.bincount(r[in_list & full], minlength=len(users)) > 0
    chit = np.bincount(r[in_list & coll], minlength=len(users)) > 0
    n_exp = np.bincount(r[in_list], minlength=len(users))
    n_full = np.bincount(r[in_list & full], minlength=len(users))
    known = np.asarray(user_genres[np.arange(len(users))[:, None].repeat(lists.shape[1], 1)[valid],
                                   genre_of[lists[valid]]]).ravel()
    nov = np.bincount(np.nonzero(valid)[0], weights=1.0 - known, minlength=len(users)) / np.maximum(valid.sum(1), 1)
    return pl.DataFrame({"user_id": users, "hit": hit.astype(float), "collect_hit": chit.astype(float),
                         "exposed_full_rate": np.where(n_exp > 0, n_full / np.maximum(n_exp, 1), np.nan),
                         "genre_novelty": nov})


def user_genre_matrix(events: pl.DataFrame, users: np.ndarray, genre_of: np.ndarray) -> sp.csr_matrix:
    """Binary users x genres: genres the user full-played in ``events``."""
    fp = events.filter(pl.col("full_play") & pl.col("user_id").is_in(users.tolist()))
    r = np.searchsorted(users, fp["user_id"].to_numpy())
    m = sp.csr_matrix((np.ones(len(r)), (r, genre_of[fp["song_id"].to_numpy()])),
                      shape=(len(users), int(genre_of.max()) + 1))
    m.data[:] = 1.0
    return m


def subset_recommender(user_vecs: Callable[[np.ndarray], np.ndarray], item_vecs: np.ndarray, song_ids: np.ndarray,
                       n_items: int) -> Callable:
    """A ``recommend(users, k, exclude)`` for :func:`musicrecall.evaluation.evaluate_recommender` that
    ranks only the songs with audio (``song_ids``) by ``user_vecs(users) @ item_vecs.T``."""

    def recommend(users: np.ndarray, k: int, exclude=None) -> np.ndarray:
        scores = np.asarray(user_vecs(np.asarray(users)), dtype=np.float32) @ item_vecs.T
        if exclude is not None:
            ex = exclude.to_scipy(n_items)[:, song_ids].tocoo()
            scores[ex.row, ex.col] = -np.inf
        top = ids_of(top_k_rows(scores, k), song_ids)
        return np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1)

    return recommend


def lookup_rows(users: np.ndarray, known: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rows of ``table`` (aligned with sorted ``known`` users) for ``users``; zeros for unknown users."""
    pos = np.clip(np.searchsorted(known, users), 0, len(known) - 1)
    ok = known[pos] == users
    out = np.zeros((len(users), table.shape[1]), dtype=np.float32)
    out[ok] = table[pos[ok]]
    return out


@dataclass
class AudioWorld:
    """One (placebo) world with audio for a subset of songs, and its similarity frame."""

    name: str
    prep: object
    setup: object
    songs: np.ndarray
    cold: np.ndarray
    emb: np.ndarray
    index: AudioIndex
    plays: pl.DataFrame


def audio_world(name: str, profile: str, seed: int, effects, n_audio: int, clip_s: float = 8.0,
                recent: int = 10) -> AudioWorld:
    """Load and clean a world, embed ``n_audio`` songs' rendered audio, build the similarity frame."""
    from musicrecall.data import prepare
    from musicrecall.evaluation import make_eval_setup

    # the cleaned plays and the world's song tables only: the raw log and its noise flags (half a world's
    # frames) are never read here, and notebook 06 holds two worlds at once
    prep = prepare("world", profile=profile, seed=seed, effects=effects, raw_log=False)
    ds, ev = prep.dataset, prep.clean.events
    setup = make_eval_setup(ev, ds.items.height)
    songs, cold = select_songs(ev, setup.split.t_test, n_audio, seed=seed)
    emb = EmbeddingScaler().fit_transform(world_embeddings(ds.world, songs, clip_s))
    index = AudioIndex(songs, emb)
    return AudioWorld(name, prep, setup, songs, cold, emb, index, candidate_similarity(ev, index, ds.items, recent))


def correlation_table(worlds: list[AudioWorld], n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Raw, within-genre and partial r (bootstrap CI over users) per world."""
    rows = []
    for w in worlds:
        df, pop = w.plays, w.setup.popularity
        x, y, u = df["sim"].to_numpy(), df["full"].to_numpy(), df["user_id"].to_numpy()
        for measure, (r, lo, hi) in (
            ("pearson_r", pearson_ci(x, y, u, n_boot, seed)),
            ("within_genre_r", partial_pearson_ci(df, confounders(df, pop, within_genre_only=True), n_boot, seed)),
            ("partial_r", partial_pearson_ci(df, confounders(df, pop), n_boot, seed)),
        ):
            rows.append({"world": w.name, "measure": measure, "r": r, "ci_lo": lo, "ci_hi": hi, "plays": df.height,
                         "users": int(df["user_id"].n_unique())})
    return pl.DataFrame(rows)
