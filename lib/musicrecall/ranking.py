"""LightGBM ranking on top of the fused recall, with and without audio features (notebook 08, claim C7).

The talk's Q&A: *recall samples are shared across entry points, ranking models use point-wise samples
specific to each entry*, and *audio features are heavily used in ranking models, improving collection
rates and user surprise*. Two kinds of samples, both built for one evaluation stage:

* **impressions** (:func:`impression_samples`): every play of the evaluation window is a point-wise
  sample of its entry point, labelled ``full_play`` and ``collect``. One binary LightGBM per entry and
  label (Ke et al., *LightGBM*, NeurIPS 2017) is trained on the validation window and scored on the
  test window: AUC per entry and pooled.
* **candidates** (:func:`candidate_samples`): the top ``n`` songs of the fused recall per user,
  labelled by a full play / a collect of that song in the window. A point-wise binary model and a
  **LambdaRank** model (Burges, *From RankNet to LambdaRank to LambdaMART*, MSR-TR-2010-82) re-rank them:
  NDCG@10 on full plays, collect hit rate@10 and surprise@10.

**Features** (:func:`build_features`) come only from events *before the cut* of the stage (checked by
:func:`musicrecall.evaluation.check_no_leakage`; tested by perturbing the window): channel scores and
ranks, user and song statistics, user–song history, the user's share of the song's genre / language /
artist, KG attributes (genre, language, version, year, duration) and, in the **audio group** (every
column named ``audio_*``), the song's audio embedding (principal components), whether it has audio
and the cosine between it and the user's recency-weighted audio profile. "Without audio" drops exactly
that group, including the audio recall channel's rank.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl

from musicrecall.config import n_threads
from musicrecall.evaluation import check_no_leakage

AUDIO_PREFIX = "audio_"
CATEGORICAL = ("kg_genre", "kg_language", "kg_version", "entry_code")
ATTRS = ("vocal", "instrumental", "percussive_share", "brightness", "tempo", "loudness")  # named audio attributes
ENTRIES = ("radio", "daily_30", "single_song_rec", "ugc_playlist", "ai_playlist", "search")

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (users, songs) -> scores, NaN = unknown


# --------------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------------


def impression_samples(window: pl.DataFrame) -> pl.DataFrame:
    """One point-wise sample per play of the window: ``user_id, song_id, entry, full_play, collect``."""
    return (window.select("user_id", "song_id", "entry", "ts",
                          pl.col("full_play").fill_null(False).cast(pl.Int8).alias("full_play"),
                          (pl.col("action") == "collect").fill_null(False).cast(pl.Int8).alias("collect"))
            .with_columns(entry=pl.col("entry").fill_null("unknown")))


def candidate_samples(lists: np.ndarray, users: np.ndarray, window: pl.DataFrame) -> pl.DataFrame:
    """Fused candidates (``lists`` rows aligned with ``users``) with labels from the window: ``full_play``
    (the user full-played the song in the window, any entry) and ``collect``; ``cand_rank`` = fused rank."""
    users = np.asarray(users, dtype=np.int64)
    ok = lists >= 0
    r, c = np.nonzero(ok)
    cand = pl.DataFrame({"user_id": users[r], "song_id": lists[r, c].astype(np.int64), "cand_rank": c.astype(np.int64)})
    lab = (window.group_by("user_id", "song_id")
           .agg(full_play=pl.col("full_play").fill_null(False).any().cast(pl.Int8),
                collect=(pl.col("action") == "collect").fill_null(False).any().cast(pl.Int8)))
    return (cand.join(lab, on=["user_id", "song_id"], how="left")
            .with_columns(pl.col("full_play", "collect").fill_null(0)))


# --------------------------------------------------------------------------------------------------
# Features (training window only)
# --------------------------------------------------------------------------------------------------


@dataclass
class AudioTable:
    """Audio embeddings of the songs that have audio (rows aligned with ``song_ids``), standardised."""

    song_ids: np.ndarray
    emb: np.ndarray
    n_pcs: int = 8
    _pcs: np.ndarray | None = field(default=None, repr=False)

    @property
    def unit(self) -> np.ndarray:
        """L2-normalised embeddings (for cosine similarity)."""
        return self.emb / np.maximum(np.linalg.norm(self.emb, axis=1, keepdims=True), 1e-9)

    def attribute_columns(self) -> dict[str, int]:
        """Embedding columns of the mean of each named attribute (tempo, brightness, ...), when the
        embedding is the 84-dim one of :mod:`musicrecall.audio.features`; empty otherwise."""
        from musicrecall.audio import embedding_names

        names = embedding_names()
        if self.emb.shape[1] != len(names):
            return {}
        return {n[: -len("_mean")]: i for i, n in enumerate(names) if n.endswith("_mean") and n[: -len("_mean")] in ATTRS}

    def pcs(self) -> np.ndarray:
        """The first ``n_pcs`` principal components of the embeddings (from the audio, not the log)."""
        if self._pcs is None:
            x = self.emb - self.emb.mean(axis=0)
            _, _, vt = np.linalg.svd(x, full_matrices=False)
            self._pcs = (x @ vt[: self.n_pcs].T).astype(np.float32)
        return self._pcs


def _codes(s: pl.Series) -> np.ndarray:
    """Integer codes of a categorical column (sorted values; nulls -> -1, treated as missing)."""
    vals = s.cast(pl.String)
    vocab = sorted(v for v in vals.unique().to_list() if v is not None)
    return vals.replace_strict(vocab, list(range(len(vocab))), default=-1, return_dtype=pl.Int64).to_numpy()


def item_attributes(items: pl.DataFrame) -> pl.DataFrame:
    """KG attributes of every song: genre, language and version codes, release year, duration (s)."""
    items = items.sort("song_id")
    return pl.DataFrame({"song_id": items["song_id"].cast(pl.Int64),
                         "kg_genre": _codes(items["genre"]), "kg_language": _codes(items["language"]),
                         "kg_version": _codes(items["version"]),
                         "kg_year": items["release_year"].cast(pl.Float64),
                         "kg_duration_s": items["duration_ms"].cast(pl.Float64) / 1000.0})


def user_stats(fit: pl.DataFrame, cut: datetime) -> pl.DataFrame:
    """Per user (fit window): plays, full-play / collect / skip rates, distinct songs, days since last play."""
    return fit.group_by("user_id").agg(
        u_plays=pl.len(), u_full_rate=pl.col("full_play").fill_null(False).mean(),
        u_collect_rate=(pl.col("action") == "collect").fill_null(False).mean(),
        u_songs=pl.col("song_id").n_unique(),
        u_days_idle=(pl.lit(cut) - pl.col("ts").max()).dt.total_seconds() / 86400.0)


def song_stats(fit: pl.DataFrame, cut: datetime) -> pl.DataFrame:
    """Per song (fit window): plays, listeners, full-play and collect rates, days since first play."""
    return fit.group_by("song_id").agg(
        s_plays=pl.len(), s_users=pl.col("user_id").n_unique(),
        s_full_rate=pl.col("full_play").fill_null(False).mean(),
        s_collect_rate=(pl.col("action") == "collect").fill_null(False).mean(),
        s_age_days=(pl.lit(cut) - pl.col("ts").min()).dt.total_seconds() / 86400.0)


def user_song_stats(fit: pl.DataFrame, cut: datetime) -> pl.DataFrame:
    """Per (user, song) played before the cut: plays, full plays, collects, days since the last play."""
    return fit.group_by("user_id", "song_id").agg(
        us_plays=pl.len(), us_full=pl.col("full_play").fill_null(False).sum(),
        us_collect=(pl.col("action") == "collect").fill_null(False).sum(),
        us_days_since=(pl.lit(cut) - pl.col("ts").max()).dt.total_seconds() / 86400.0)


def affinity_features(fit: pl.DataFrame, pairs: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Share of the user's full plays (fit window) in the candidate's genre and language, and the user's
    full plays of the candidate's artist: the KG relations seen from the user."""
    it = items.select(pl.col("song_id").cast(pl.Int64), "genre", "language", "artist")
    fp = fit.filter(pl.col("full_play").fill_null(False)).select("user_id", pl.col("song_id").cast(pl.Int64)).join(it, on="song_id")
    n = fp.group_by("user_id").agg(n_fp=pl.len())
    out = pairs.select("user_id", pl.col("song_id").cast(pl.Int64)).unique().join(it, on="song_id", how="left")
    for col, name in (("genre", "kg_user_genre_share"), ("language", "kg_user_language_share"),
                      ("artist", "kg_user_artist_plays")):
        cnt = fp.group_by("user_id", col).agg(pl.len().alias(name))
        out = out.join(cnt, on=["user_id", col], how="left")
    out = out.join(n, on="user_id", how="left").with_columns(
        pl.col("kg_user_genre_share", "kg_user_language_share", "kg_user_artist_plays").fill_null(0))
    return out.with_columns(kg_user_genre_share=pl.col("kg_user_genre_share") / pl.col("n_fp"),
                            kg_user_language_share=pl.col("kg_user_language_share") / pl.col("n_fp")
                            ).select("user_id", "song_id", "kg_user_genre_share", "kg_user_language_share",
                                     "kg_user_artist_plays")


def audio_features(fit: pl.DataFrame, pairs: pl.DataFrame, audio: AudioTable, recent: int = 10,
                   half_life: float = 5.0) -> pl.DataFrame:
    """The audio group: ``audio_has``, ``audio_pc*`` of the song and ``audio_sim``, the cosine between the
    song's embedding and the user's recency-weighted profile of their last ``recent`` full plays with
    audio (fit window); NaN where the song or the user's history has no audio."""
    from musicrecall.fusion import recent_plays

    row_of = np.full(int(max(audio.song_ids.max(), pairs["song_id"].max() or 0)) + 1, -1, dtype=np.int64)
    row_of[audio.song_ids] = np.arange(len(audio.song_ids))
    with_audio = fit.filter(pl.col("song_id").is_in(audio.song_ids.tolist()))
    seeds = recent_plays(with_audio, recent)
    users = np.unique(pairs["user_id"].to_numpy())
    pos = np.searchsorted(users, seeds["user_id"].to_numpy())
    inside = (pos < len(users)) & (users[np.minimum(pos, len(users) - 1)] == seeds["user_id"].to_numpy())
    w = 0.5 ** (seeds["rank"].to_numpy()[inside] / half_life)
    prof = np.zeros((len(users), audio.emb.shape[1]))
    np.add.at(prof, pos[inside], w[:, None] * audio.unit[row_of[seeds["song_id"].to_numpy()[inside]]])
    has_prof = np.linalg.norm(prof, axis=1) > 0
    prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
    u, s = pairs["user_id"].to_numpy(), pairs["song_id"].to_numpy()
    r = row_of[np.minimum(s, len(row_of) - 1)]
    r = np.where(s < len(row_of), r, -1)
    up = np.searchsorted(users, u)
    sim = np.einsum("ij,ij->i", prof[up], audio.unit[np.maximum(r, 0)])
    sim = np.where((r >= 0) & has_prof[up], sim, np.nan)
    pcs = np.where((r >= 0)[:, None], audio.pcs()[np.maximum(r, 0)], np.nan)
    cols = {"audio_has": (r >= 0).astype(np.float32), "audio_sim": sim.astype(np.float32)}
    cols.update({f"audio_pc{j}": pcs[:, j] for j in range(pcs.shape[1])})
    # the talk's named audio attributes: the song's mean value and its gap to the user's recent mean, so
    # a taste for e.g. fast or bright songs is one split away instead of hidden in an 84-dim cosine
    mean_prof = np.zeros((len(users), audio.emb.shape[1]))
    wsum = np.zeros(len(users))
    np.add.at(mean_prof, pos[inside], w[:, None] * audio.emb[row_of[seeds["song_id"].to_numpy()[inside]]])
    np.add.at(wsum, pos[inside], w)
    mean_prof /= np.maximum(wsum, 1e-12)[:, None]
    for name, j in audio.attribute_columns().items():
        song_val = np.where(r >= 0, audio.emb[np.maximum(r, 0), j], np.nan)
        cols[f"audio_attr_{name}"] = song_val.astype(np.float32)
        cols[f"audio_gap_{name}"] = np.where(has_prof[up], np.abs(song_val - mean_prof[up, j]), np.nan).astype(np.float32)
    return pl.DataFrame(cols)


def rank_features(channel_lists: Mapping[str, tuple[np.ndarray, np.ndarray]], users: np.ndarray,
                  pairs: pl.DataFrame) -> pl.DataFrame:
    """``<channel>_rank`` of each pair in each channel's list (NaN when the channel did not recall it);
    ``channel_lists[name] = (ids [U, k], scores [U, k])`` with rows aligned with ``users``."""
    users = np.asarray(users, dtype=np.int64)
    out = pairs.select("user_id", "song_id").with_row_index("__i")
    for name, (ids, _) in channel_lists.items():
        r, c = np.nonzero(ids >= 0)
        ranks = pl.DataFrame({"user_id": users[r], "song_id": ids[r, c].astype(np.int64),
                              f"{name}_rank": c.astype(np.float64)}).unique(["user_id", "song_id"], keep="first")
        out = out.join(ranks, on=["user_id", "song_id"], how="left", maintain_order="left")
    return out.sort("__i").drop("__i", "user_id", "song_id")


def build_features(events: pl.DataFrame, cut: datetime, pairs: pl.DataFrame, items: pl.DataFrame,
                   audio: AudioTable | None = None, scorers: Mapping[str, PairScorer] | None = None,
                   channel_lists: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   list_users: np.ndarray | None = None, recent: int = 10) -> pl.DataFrame:
    """Features of ``pairs`` (``user_id, song_id`` [+ ``entry``]) from the events strictly before ``cut``.

    ``scorers`` (channel scores of models fitted before the cut) and ``channel_lists`` (their ranked
    lists, rows aligned with ``list_users``) are the caller's responsibility; everything else is computed
    here from ``events`` filtered to ``ts < cut``, so later events cannot change a feature.
    """
    fit = events.filter(pl.col("ts") < cut)
    check_no_leakage(fit, cut, name="ranking features")
    pairs = pairs.with_columns(pl.col("user_id").cast(pl.Int64), pl.col("song_id").cast(pl.Int64))
    base = pairs.select("user_id", "song_id").with_row_index("__i")
    keys = pairs.select("user_id", "song_id")
    df = (base.join(user_stats(fit, cut), on="user_id", how="left")
          .join(song_stats(fit, cut), on="song_id", how="left")
          .join(user_song_stats(fit, cut), on=["user_id", "song_id"], how="left")
          .join(item_attributes(items), on="song_id", how="left")
          .join(affinity_features(fit, keys, items), on=["user_id", "song_id"], how="left")
          .sort("__i").with_columns(pl.col("us_plays", "us_full", "us_collect").fill_null(0)))
    if "entry" in pairs.columns:
        df = df.with_columns(entry_code=pl.Series([ENTRIES.index(e) if e in ENTRIES else -1
                                                   for e in pairs["entry"].to_list()], dtype=pl.Int64))
    extra = []
    for name, scorer in (scorers or {}).items():
        extra.append(pl.Series(f"{name}_score", np.asarray(scorer(keys["user_id"].to_numpy(), keys["song_id"].to_numpy()),
                                                           dtype=np.float64)))
    if channel_lists:
        extra.extend(rank_features(channel_lists, list_users, keys).get_columns())
    if audio is not None:
        extra.extend(audio_features(fit, keys, audio, recent).get_columns())
    return df.drop("__i").with_columns(extra) if extra else df.drop("__i")


def feature_columns(df: pl.DataFrame, audio: bool = True) -> list[str]:
    """Model inputs of a feature frame; ``audio=False`` drops every ``audio_*`` column."""
    skip = {"user_id", "song_id", "entry", "ts", "full_play", "collect", "cand_rank_label"}
    return [c for c in df.columns if c not in skip and (audio or not c.startswith(AUDIO_PREFIX))]


# --------------------------------------------------------------------------------------------------
# Channel scores for any (user, song) pair
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


# --------------------------------------------------------------------------------------------------
# LightGBM
# --------------------------------------------------------------------------------------------------


def lgb_threads(n_rows: int, rows_per_thread: int = 50_000) -> int:
    """Threads for one LightGBM fit: :func:`musicrecall.config.n_threads`, but one per ``rows_per_thread``
    rows at most. On small per-entry samples OpenMP start-up and spinning cost more than they give
    (measured 7x slower with 2 threads than 1 on 1,000 rows on a busy 2-core machine)."""
    return max(1, min(n_threads(), -(-n_rows // rows_per_thread)))


def lgb_params(objective: str = "binary", seed: int = 0, n_rows: int | None = None, **overrides) -> dict:
    """LightGBM parameters; the thread count comes from :func:`musicrecall.config.n_threads` (capped by
    :func:`lgb_threads` when ``n_rows`` is given)."""
    params = {"objective": objective, "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 40,
              "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
              "seed": seed, "deterministic": True, "force_col_wise": True, "verbose": -1,
              "num_threads": n_threads() if n_rows is None else lgb_threads(n_rows)}
    if objective == "lambdarank":
        params.update({"metric": "ndcg", "eval_at": [10], "lambdarank_truncation_level": 20})
    params.update(overrides)
    return params


def _matrix(df: pl.DataFrame, cols: Sequence[str]) -> np.ndarray:
    return df.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy().astype(np.float32)


@dataclass
class Ranker:
    """A trained LightGBM booster and its feature columns."""

    booster: object
    features: list[str]

    def predict(self, df: pl.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(_matrix(df, self.features)), dtype=np.float64)

    def importance(self) -> pl.DataFrame:
        """Gain importance per feature (share of the total)."""
        gain = np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=np.float64)
        return pl.DataFrame({"feature": self.features, "gain_share": gain / max(gain.sum(), 1e-12)}
                            ).sort("gain_share", descending=True)


def fit_ranker(df: pl.DataFrame, label: str, features: Sequence[str], objective: str = "binary",
               rounds: int = 150, seed: int = 0, group_col: str | None = None) -> Ranker:
    """Train LightGBM; ``objective="lambdarank"`` needs ``group_col`` (rows of a group contiguous)."""
    import lightgbm as lgb

    features = list(features)
    if group_col is not None:
        df = df.sort(group_col, maintain_order=True)
    cats = [c for c in features if c in CATEGORICAL]
    ds = lgb.Dataset(_matrix(df, features), label=df[label].to_numpy().astype(np.float64), feature_name=features,
                     categorical_feature=cats or "auto", free_raw_data=True)
    if group_col is not None:
        ds.set_group(df.group_by(group_col, maintain_order=True).len()["len"].to_numpy())
    booster = lgb.train(lgb_params(objective, seed, n_rows=df.height), ds, num_boost_round=rounds)
    return Ranker(booster, features)


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _auc_parts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense score rank (ties share a rank) and labels, for weighted AUCs."""
    _, g = np.unique(s, return_inverse=True)
    return g, y.astype(np.float64)


def _weighted_auc(g: np.ndarray, y: np.ndarray, w: np.ndarray, n_groups: int) -> float:
    """Mann-Whitney AUC with sample weights (ties count one half)."""
    wp = np.bincount(g, weights=w * y, minlength=n_groups)
    wn = np.bincount(g, weights=w * (1.0 - y), minlength=n_groups)
    below = np.cumsum(wn) - wn
    den = wp.sum() * wn.sum()
    return float((wp * (below + 0.5 * wn)).sum() / den) if den > 0 else float("nan")


def auc_ci(y: np.ndarray, scores: Mapping[str, np.ndarray], users: np.ndarray, n_boot: int = 1000,
           seed: int = 0, pairs: Sequence[tuple[str, str]] = ()) -> tuple[dict, dict]:
    """AUC of each score with a bootstrap over users (a user's samples stay together), and for each
    ``(a, b)`` in ``pairs`` the paired difference ``AUC_a - AUC_b`` on the same resamples.

    Returns ``({name: (auc, lo, hi)}, {(a, b): (diff, lo, hi)})``.
    """
    y = np.asarray(y, dtype=np.float64)
    _, uinv = np.unique(users, return_inverse=True)
    n_u = int(uinv.max()) + 1 if len(uinv) else 0
    parts = {n: _auc_parts(y, np.asarray(s)) for n, s in scores.items()}
    sizes = {n: int(p[0].max()) + 1 for n, p in parts.items()}
    point = {n: _weighted_auc(p[0], y, np.ones_like(y), sizes[n]) for n, p in parts.items()}
    rng = np.random.default_rng(seed)
    reps = {n: np.empty(n_boot) for n in parts}
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, n_u, n_u), minlength=n_u)[uinv].astype(np.float64)
        for n, p in parts.items():
            reps[n][b] = _weighted_auc(p[0], y, w, sizes[n])
    q = lambda v: tuple(np.nanquantile(v, [0.025, 0.975]).tolist())  # noqa: E731
    single = {n: (point[n], *q(reps[n])) for n in parts}
    diffs = {(a, b): (point[a] - point[b], *q(reps[a] - reps[b])) for a, b in pairs}
    return single, diffs


def per_user_ranking(df: pl.DataFrame, score: np.ndarray, known: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     k: int = 10) -> pl.DataFrame:
    """Per user of a candidate frame re-ranked by ``score``: ``ndcg`` (NDCG@k on full plays; users with a
    full-played candidate), ``collect_hit`` (a collected song in the top k; users with a collected
    candidate) and ``surprise`` (share of the top k outside the user's known genres, ``known(users,
    songs) -> bool``). Missing values are NaN."""
    d = df.select("user_id", "song_id", "full_play", "collect").with_columns(score=pl.Series(score))
    d = d.sort(["user_id", "score"], descending=[False, True]).with_columns(
        pos=pl.int_range(pl.len()).over("user_id"))
    top = d.filter(pl.col("pos") < k)
    kn = known(top["user_id"].to_numpy(), top["song_id"].to_numpy())
    top = top.with_columns(disc=pl.col("full_play") / (pl.col("pos") + 2).log(2), outside=pl.Series(1.0 - kn))
    got = top.group_by("user_id").agg(dcg=pl.col("disc").sum(), chit=pl.col("collect").max(),
                                      surprise=pl.col("outside").mean())
    ideal = d.group_by("user_id").agg(n_rel=pl.col("full_play").sum(), n_col=pl.col("collect").sum())
    out = got.join(ideal, on="user_id").with_columns(
        idcg=pl.col("n_rel").clip(upper_bound=k).map_elements(lambda n: float(sum(1 / np.log2(np.arange(2, n + 2)))),
                                                              return_dtype=pl.Float64))
    return out.sort("user_id").select(
        "user_id", ndcg=pl.when(pl.col("n_rel") > 0).then(pl.col("dcg") / pl.col("idcg")),
        collect_hit=pl.when(pl.col("n_col") > 0).then(pl.col("chit").cast(pl.Float64)), surprise="surprise")


def known_genre_lookup(fit: pl.DataFrame, items: pl.DataFrame) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``known(users, songs)``: the song's genre is one the user full-played before the cut."""
    it = items.select(pl.col("song_id").cast(pl.Int64), "genre")
    kg = (fit.filter(pl.col("full_play").fill_null(False)).select("user_id", pl.col("song_id").cast(pl.Int64))
          .join(it, on="song_id").select("user_id", "genre").unique().with_columns(k=pl.lit(1.0)))

    def known(users: np.ndarray, songs: np.ndarray) -> np.ndarray:
        q = pl.DataFrame({"user_id": users, "song_id": songs.astype(np.int64)}).join(it, on="song_id", how="left")
        return q.join(kg, on=["user_id", "genre"], how="left", maintain_order="left")["k"].fill_null(0.0).to_numpy()

    return known


def c7_verdict(collect_auc_diff: tuple[float, float, float], collect_hit_lift: tuple[float, float, float],
               placebo_auc_diff: tuple[float, float, float]) -> str:
    """``reproduced`` when audio features raise the collect AUC (paired CI above 0) *and* the collect hit
    rate (point lift > 0) while the placebo world shows no AUC gain (its CI reaches 0); ``partly`` when
    the AUC gain holds but the hit rate does not rise or the placebo also gains; ``not reproduced``
    otherwise."""
    gain = collect_auc_diff[1] > 0
    placebo_gain = placebo_auc_diff[1] > 0
    if gain and collect_hit_lift[0] > 0 and not placebo_gain:
        return "reproduced"
    if gain:
        return "partly"
    return "not reproduced"


# --------------------------------------------------------------------------------------------------
# One stage's samples and the with/without-audio experiment
# --------------------------------------------------------------------------------------------------


@dataclass
class StageSamples:
    """Feature frames of one stage: the window's impressions and the fused candidates."""

    impressions: pl.DataFrame
    candidates: pl.DataFrame
    users: np.ndarray


def stage_samples(stage, events: pl.DataFrame, items: pl.DataFrame, audio: AudioTable | None, n_cand: int = 50,
                  rank_depth: int = 100, max_users: int | None = None, seed: int = 0) -> StageSamples:
    """Impressions and fused candidates of the users active in ``stage``'s window (at most ``max_users``,
    a seeded sample), with features from the events before the stage's cut."""
    setup = stage.setup
    cut, window = setup.split.cut(stage.name), setup.split.eval_frame(stage.name)
    users = np.unique(window["user_id"].to_numpy()).astype(np.int64)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng([seed, 8]).choice(users, max_users, replace=False))
    window = window.filter(pl.col("user_id").is_in(users.tolist()))
    lists_by_channel = {n: c(users, rank_depth) for n, c in stage.channels.items()}
    lists = stage.fused.recommend(users, n_cand)

    def with_features(samples: pl.DataFrame) -> pl.DataFrame:
        f = build_features(events, cut, samples, items, audio, stage.scorers, lists_by_channel, users)
        return pl.concat([samples, f.drop("user_id", "song_id")], how="horizontal")

    return StageSamples(with_features(impression_samples(window)),
                        with_features(candidate_samples(lists, users, window)), users)


@dataclass
class RankingRun:
    """Test-window predictions of every ranking model, keyed ``(model, audio)``, and the boosters."""

    impressions: dict[tuple[str, bool], np.ndarray]
    candidates: dict[tuple[str, bool], np.ndarray]
    rankers: dict[tuple[str, bool], Ranker]


def run_ranking(train: StageSamples, test: StageSamples, rounds: int = 150, seed: int = 0) -> RankingRun:
    """Train on the validation stage, predict the test stage, with and without the audio group.

    Impressions: one binary model per entry point and label (``full_play``, ``collect``). Candidates:
    point-wise binary on full play, LambdaRank on full play (groups = users), binary on collect.
    """
    imp, cand, rankers = {}, {}, {}
    entries = sorted(set(train.impressions["entry"].unique().to_list()) & set(test.impressions["entry"].unique().to_list()))
    for audio in (True, False):
        cols = [c for c in feature_columns(train.impressions, audio) if c != "entry_code"]
        for label in ("full_play", "collect"):
            pred = np.full(test.impressions.height, np.nan)
            for entry in entries:
                tr = train.impressions.filter(pl.col("entry") == entry)
                mask = (test.impressions["entry"] == entry).to_numpy()
                if 0 < tr[label].sum() < tr.height:
                    r = fit_ranker(tr, label, cols, rounds=rounds, seed=seed)
                    rankers[(f"{label}@{entry}", audio)] = r
                    pred[mask] = r.predict(test.impressions.filter(pl.Series(mask)))
                else:  # a label without both classes: no model, a constant score
                    pred[mask] = float(tr[label].mean()) if tr.height else 0.0
            imp[(label, audio)] = pred
        ccols = [c for c in feature_columns(train.candidates, audio) if c != "cand_rank"] + ["cand_rank"]
        for name, label, objective in (("pointwise", "full_play", "binary"), ("lambdarank", "full_play", "lambdarank"),
                                       ("collect", "collect", "binary")):
            r = fit_ranker(train.candidates, label, ccols, objective=objective, rounds=rounds, seed=seed,
                           group_col="user_id" if objective == "lambdarank" else None)
            rankers[(name, audio)] = r
            cand[(name, audio)] = r.predict(test.candidates)
    return RankingRun(imp, cand, rankers)


def impression_auc_table(test: StageSamples, run: RankingRun, n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """AUC (full play, collect) with and without audio, and their paired difference: pooled (``all``), on
    the impressions of songs that have audio (``songs_with_audio``) and per entry point."""
    df = test.impressions
    masks = {"all": np.ones(df.height, bool)}
    if "audio_has" in df.columns:  # where audio features can act at all: songs that have audio
        masks["songs_with_audio"] = df["audio_has"].to_numpy() > 0
    masks.update({e: (df["entry"] == e).to_numpy() for e in sorted(df["entry"].unique().to_list())})
    rows = []
    for entry, mask in masks.items():
        for label in ("full_play", "collect"):
            y = df[label].to_numpy()[mask]
            if y.min(initial=1) == y.max(initial=0):
                continue
            scores = {a: run.impressions[(label, a)][mask] for a in (True, False)}
            single, diff = auc_ci(y, scores, df["user_id"].to_numpy()[mask], n_boot, seed, pairs=[(True, False)])
            d = diff[(True, False)]
            rows.append({"entry": entry, "label": label, "samples": int(mask.sum()), "positives": int(y.sum()),
                         "auc_audio": single[True][0], "auc_no_audio": single[False][0], "diff": d[0],
                         "diff_lo": d[1], "diff_hi": d[2], "ci_lo_audio": single[True][1], "ci_hi_audio": single[True][2],
                         "ci_lo_no_audio": single[False][1], "ci_hi_no_audio": single[False][2]})
    return pl.DataFrame(rows)


def candidate_tables(test: StageSamples, run: RankingRun, known: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     k: int = 10, n_boot: int = 1000, seed: int = 0) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Per-user NDCG@k / collect hit@k / surprise@k of the fused order and each re-ranker; returns the
    summary (bootstrap CIs over users) and the per-user frames (for paired lifts)."""
    from musicrecall.evaluation import bootstrap_ci

    cand = test.candidates
    orders = {"fused_order": -cand["cand_rank"].to_numpy().astype(np.float64)}
    for (name, audio), p in run.candidates.items():
        orders[f"{name}{'' if audio else '_no_audio'}"] = p
    per_user, rows = {}, []
    for name, s in orders.items():
        pu = per_user_ranking(cand, s, known, k)
        per_user[name] = pu
        for m in ("ndcg", "collect_hit", "surprise"):
            v = pu[m].drop_nulls().to_numpy()
            mean, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed) if len(v) else (np.nan,) * 3
            rows.append({"model": name, "metric": f"{m}@{k}", "mean": mean, "ci_lo": lo, "ci_hi": hi, "n_users": len(v)})
    return pl.DataFrame(rows), per_user


def paired_lift(per_user: Mapping[str, pl.DataFrame], a: str, b: str, metric: str, n_boot: int = 1000,
                seed: int = 0) -> tuple[float, float, float]:
    """Relative lift of ranker ``a`` over ``b`` on ``metric`` (same users, paired bootstrap)."""
    from musicrecall.evaluation import paired_bootstrap_lift

    j = per_user[a].select("user_id", pl.col(metric).alias("a")).join(
        per_user[b].select("user_id", pl.col(metric).alias("b")), on="user_id").drop_nulls()
    if j.height == 0 or j["b"].sum() == 0:
        return (float("nan"),) * 3
    return paired_bootstrap_lift(j["a"].to_numpy(), j["b"].to_numpy(), n_boot=n_boot, seed=seed)
