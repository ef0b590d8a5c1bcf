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

**Noise** (:func:`run_ranking`, :func:`seeded_diff`): LightGBM's bagging and feature sampling make two
fits differ by their seed alone. The models behind a claim are trained with several seeds per arm and
an A/A arm (no audio, other seeds); AUCs are bootstrapped over users with one vectorised weighted
Mann-Whitney pass per score (:func:`boot_aucs`), and the interval of a difference is widened by the
seed spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp

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
    groups = None
    if group_col is not None:
        df = df.sort(group_col, maintain_order=True)
        groups = df.group_by(group_col, maintain_order=True).len()["len"].to_numpy()
    params = lgb_params(objective, seed, n_rows=df.height)
    ds = _dataset(_matrix(df, features), df[label].to_numpy(), features, params, groups)
    return Ranker(lgb.train(params, ds, num_boost_round=rounds), features)


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _auc_groups(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Ordered score groups for a Mann-Whitney AUC: ties share a group, and runs of groups that hold only
    the majority class are merged (pairs inside them never count), so a bootstrap works on at most
    ``2 x minority + 1`` groups. Uses ``AUC(y, s) = AUC(1 - y, -s)`` to make the minority the positives.
    Returns ``(group of each sample, labels, n_groups)``."""
    y, s = np.asarray(y, dtype=np.float64), np.asarray(s, dtype=np.float64)
    if y.mean() > 0.5:
        y, s = 1.0 - y, -s
    _, g = np.unique(s, return_inverse=True)
    pos = np.bincount(g, weights=y) > 0
    start = pos.copy()
    start[1:] |= pos[:-1]
    start[0] = True
    new = np.cumsum(start) - 1
    return new[g], y, int(new[-1]) + 1


def _auc_under_weights(g: np.ndarray, y: np.ndarray, n_groups: int, uinv: np.ndarray, w: np.ndarray,
                       chunk_cells: int = 4_000_000) -> np.ndarray:
    """Weighted AUC (ties count one half) under each row of user weights ``w`` [B, n_users]: every sample
    weighs its user's weight. Vectorised as sparse (user x group) counts times the weight matrix."""
    shape = (w.shape[1], n_groups)
    ap = sp.csc_matrix((y, (uinv, g)), shape=shape).T.tocsr()
    an = sp.csc_matrix((1.0 - y, (uinv, g)), shape=shape).T.tocsr()
    out = np.empty(w.shape[0])
    step = max(1, chunk_cells // max(n_groups, 1))
    for b0 in range(0, w.shape[0], step):
        wt = w[b0:b0 + step].T
        wp, wn = ap @ wt, an @ wt  # [groups, B]
        below = np.cumsum(wn, axis=0) - wn
        den = wp.sum(0) * wn.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b0:b0 + step] = np.where(den > 0, (wp * (below + 0.5 * wn)).sum(0) / den, np.nan)
    return out


def boot_weights(users: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(user index of each sample, weights [1 + n_boot, n_users])``: row 0 is all ones (the point
    estimate), the others count how often each user is drawn in a bootstrap resample of the users."""
    _, uinv = np.unique(users, return_inverse=True)
    n_u = int(uinv.max()) + 1 if len(uinv) else 0
    draws = np.random.default_rng(seed).integers(0, n_u, (n_boot, n_u))
    counts = np.bincount((draws + n_u * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n_u)
    return uinv, np.vstack([np.ones((1, n_u)), counts.reshape(n_boot, n_u)])


def boot_aucs(y: np.ndarray, scores: np.ndarray, users: np.ndarray, n_boot: int = 1000, seed: int = 0
              ) -> np.ndarray:
    """AUC of each row of ``scores`` [R, n] (e.g. R training seeds) on the full sample and on ``n_boot``
    resamples of the users (the same resamples for every row, so differences are paired): [R, 1 + n_boot]."""
    uinv, w = boot_weights(users, n_boot, seed)
    return np.stack([_auc_under_weights(*_auc_groups(y, s), uinv, w) for s in np.atleast_2d(scores)])


def seeded_diff(a: np.ndarray, b: np.ndarray, z: float = 1.96) -> dict[str, float]:
    """Difference of two arms from their :func:`boot_aucs` tables ``a``, ``b`` [R, 1 + n_boot] (row r =
    training seed r of each arm). ``diff`` = mean over seeds of the per-seed difference; ``boot_lo/hi`` =
    95% percentile interval over user resamples (test-sample noise only); ``sd_seed`` = standard deviation
    of the per-seed differences (training noise); ``lo/hi`` widen the bootstrap half-widths by the seed
    noise of the mean, ``sqrt(half^2 + (z sd_seed)^2 / R)`` (Bouthillier et al., *Accounting for Variance
    in Machine Learning Benchmarks*, MLSys 2021). With one seed ``lo/hi`` equal the bootstrap interval."""
    d = np.atleast_2d(a) - np.atleast_2d(b)
    r = d.shape[0]
    diff = float(d[:, 0].mean())
    blo, bhi = np.nanquantile(d[:, 1:].mean(axis=0), [0.025, 0.975])
    sd = float(d[:, 0].std(ddof=1)) if r > 1 else 0.0
    extra = z * sd / np.sqrt(r)
    return {"diff": diff, "lo": diff - float(np.hypot(diff - blo, extra)), "hi": diff + float(np.hypot(bhi - diff, extra)),
            "boot_lo": float(blo), "boot_hi": float(bhi), "sd_seed": sd}


def auc_ci(y: np.ndarray, scores: Mapping[str, np.ndarray], users: np.ndarray, n_boot: int = 1000,
           seed: int = 0, pairs: Sequence[tuple[str, str]] = ()) -> tuple[dict, dict]:
    """AUC of each score with a bootstrap over users (a user's samples stay together), and for each
    ``(a, b)`` in ``pairs`` the paired difference ``AUC_a - AUC_b`` on the same resamples.

    Returns ``({name: (auc, lo, hi)}, {(a, b): (diff, lo, hi)})``.
    """
    reps = {n: boot_aucs(y, np.asarray(s), users, n_boot, seed)[0] for n, s in scores.items()}
    q = lambda v: tuple(np.nanquantile(v[1:], [0.025, 0.975]).tolist())  # noqa: E731
    single = {n: (float(v[0]), *q(v)) for n, v in reps.items()}
    diffs = {(a, b): (float(reps[a][0] - reps[b][0]), *q(reps[a] - reps[b])) for a, b in pairs}
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


def c7_verdict(auc_gain: Mapping[str, float], collect_hit_lift: tuple[float, float, float],
               placebo_gain: Mapping[str, float], aa: Mapping[str, float]) -> str:
    """C7 from like-for-like comparisons (same channels in the real and the placebo world), each a
    :func:`seeded_diff` of the pooled collect AUC with the training-seed noise in its interval.

    The *noise floor* is the largest difference the A/A control (no audio vs no audio, other seeds)
    cannot tell from zero: ``max(|aa lo|, |aa hi|)``. ``reproduced`` when the real gain's interval is above
    0 *and* its point above the noise floor, the collect hit@10 lift is positive (point) and the placebo
    world's interval reaches 0 (no gain); ``partly`` when the real gain holds but the hit rate does not
    rise or the placebo gains too; ``not reproduced`` otherwise."""
    noise = max(abs(aa["lo"]), abs(aa["hi"]))
    gain = auc_gain["lo"] > 0 and auc_gain["diff"] > noise
    if gain and collect_hit_lift[0] > 0 and not placebo_gain["lo"] > 0:
        return "reproduced"
    return "partly" if gain else "not reproduced"


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
                  rank_depth: int = 100, max_users: int | None = None, seed: int = 0,
                  impressions_from: StageSamples | None = None) -> StageSamples:
    """Impressions and fused candidates of the users active in ``stage``'s window (at most ``max_users``,
    a seeded sample), with features from the events before the stage's cut.

    ``impressions_from``: the samples of the same stage built with *more* channels; the impressions (same
    users, same window) are then those rows without the extra channels' score and rank columns, which is
    exactly what building them again would give (channel features are computed channel by channel)."""
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

    if impressions_from is None:
        impressions = with_features(impression_samples(window))
    else:
        assert np.array_equal(impressions_from.users, users), "impressions_from must sample the same users"
        extra = [c for c in impressions_from.impressions.columns if (c.endswith("_rank") and c[:-5] not in stage.channels)
                 or (c.endswith("_score") and c[:-6] not in stage.scorers)]
        impressions = impressions_from.impressions.drop(extra)
    return StageSamples(impressions, with_features(candidate_samples(lists, users, window)), users)


@dataclass
class RankingRun:
    """Test-window predictions of the ranking models, keyed ``(model, arm)``: arm ``True`` = with the
    audio group, ``False`` = without, ``"aa"`` = without, trained with other seeds (the A/A control).
    Each value is [R, n], one row per training seed (``seeds[(model, arm)]``); ``rankers`` keeps the
    first seed's booster."""

    impressions: dict[tuple[str, object], np.ndarray]
    candidates: dict[tuple[str, object], np.ndarray]
    rankers: dict[tuple[str, object], Ranker]
    seeds: dict[tuple[str, object], list[int]]


def arm_seeds(seed: int, n_seeds: int) -> dict[object, list[int]]:
    """Training seeds per arm: with and without audio share ``seed .. seed+R-1`` (paired by index); the
    A/A arm (without audio) takes the next ``R`` seeds, so it differs from the no-audio arm *only* by
    LightGBM's random draws (bagging, feature fraction)."""
    base = list(range(seed, seed + n_seeds))
    return {True: base, False: base, "aa": list(range(seed + n_seeds, seed + 2 * n_seeds))}


def _dataset(x: np.ndarray, y: np.ndarray, features: Sequence[str], params: dict, groups: np.ndarray | None = None):
    """A constructed LightGBM Dataset (binned once, then shared by every seed and arm that trains on it)."""
    import lightgbm as lgb

    cats = [c for c in features if c in CATEGORICAL]
    ds = lgb.Dataset(x, label=np.asarray(y, dtype=np.float64), feature_name=list(features),
                     categorical_feature=cats or "auto", free_raw_data=False, params=params)
    if groups is not None:
        ds.set_group(groups)
    return ds.construct()


def _fit_all(jobs: list[tuple], rounds: int) -> list[tuple]:
    """``jobs`` = ``(dataset, x_test, objective, seed)``; returns ``(booster, test predictions)`` per job.
    Independent fits run in threads (LightGBM releases the GIL), as many at once as
    :func:`musicrecall.config.n_threads` allows given each fit's own thread count; the results do not
    depend on the number of threads (every booster is deterministic and seeded)."""
    from concurrent.futures import ThreadPoolExecutor

    import lightgbm as lgb

    def fit(job: tuple) -> tuple:
        ds, x_test, objective, s = job
        booster = lgb.train(lgb_params(objective, s, n_rows=ds.num_data()), ds, num_boost_round=rounds)
        return booster, np.asarray(booster.predict(x_test), dtype=np.float64)

    per_fit = max((lgb_threads(j[0].num_data()) for j in jobs), default=1)
    workers = max(1, n_threads() // per_fit)
    if workers == 1:
        return [fit(j) for j in jobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fit, jobs))


def run_ranking(train: StageSamples, test: StageSamples, rounds: int = 150, seed: int = 0, n_seeds: int = 1,
                seeded: Sequence[str] = ("collect",), labels: Sequence[str] = ("full_play", "collect"),
                cand_models: Sequence[str] = ("pointwise", "lambdarank", "collect"), cand_seeds: int | None = None
                ) -> RankingRun:
    """Train on the validation stage, predict the test stage, with and without the audio group.

    Impressions: one binary model per entry point and label (``full_play``, ``collect``). Candidates:
    point-wise binary on full play (``pointwise``), LambdaRank on full play (groups = users) and binary on
    collect (``collect``). Models named in ``seeded`` (labels / candidate models) are trained with
    ``n_seeds`` seeds per arm plus the A/A arm (:func:`arm_seeds`; seeded candidate models with
    ``cand_seeds``, default ``n_seeds``: a fit on all candidates costs ~10 per-entry fits); the others with
    ``seed`` only, with and without audio. Each training matrix is binned once per label and shared by
    seeds and arms; the fits run in parallel within the thread budget (:func:`_fit_all`).
    """
    one = {True: [seed], False: [seed]}
    arms = {m: arm_seeds(seed, n_seeds) if m in seeded else one for m in labels}
    arms |= {f"cand:{m}": arm_seeds(seed, cand_seeds or n_seeds) if m in seeded else one for m in cand_models}
    imp, cand, rankers, seeds = {}, {}, {}, {}
    tasks = []  # (predictions [R, n], test mask or None, ranker key, dataset, x_test, features, objective, seeds)
    entries = sorted(set(train.impressions["entry"].unique().to_list()) & set(test.impressions["entry"].unique().to_list()))
    for audio in (True, False):
        cols = [c for c in feature_columns(train.impressions, audio) if c != "entry_code"]
        for entry in entries:
            tr = train.impressions.filter(pl.col("entry") == entry)
            mask = (test.impressions["entry"] == entry).to_numpy()
            x_tr, x_te = _matrix(tr, cols), _matrix(test.impressions.filter(pl.Series(mask)), cols)
            for label in labels:
                ds = None
                for arm, ss in ((a, s) for a, s in arms[label].items() if (a is True) == audio):
                    seeds[(label, arm)] = ss
                    pred = imp.setdefault((label, arm), np.full((len(ss), test.impressions.height), np.nan))
                    if 0 < tr[label].sum() < tr.height:
                        ds = ds or _dataset(x_tr, tr[label].to_numpy(), cols, lgb_params("binary", ss[0], tr.height))
                        tasks.append((pred, mask, (f"{label}@{entry}", arm), ds, x_te, cols, "binary", ss))
                    else:  # a label without both classes: no model, a constant score
                        pred[:, mask] = float(tr[label].mean()) if tr.height else 0.0
        ccols = [c for c in feature_columns(train.candidates, audio) if c != "cand_rank"] + ["cand_rank"]
        ctrain = train.candidates.sort("user_id", maintain_order=True)  # LambdaRank: a user's rows contiguous
        x_tr, x_te = _matrix(ctrain, ccols), _matrix(test.candidates, ccols)
        groups = ctrain.group_by("user_id", maintain_order=True).len()["len"].to_numpy()
        dsets = {}
        for name in cand_models:
            label, objective = {"pointwise": ("full_play", "binary"), "lambdarank": ("full_play", "lambdarank"),
                                "collect": ("collect", "binary")}[name]
            for arm, ss in ((a, s) for a, s in arms[f"cand:{name}"].items() if (a is True) == audio):
                if label not in dsets:
                    dsets[label] = _dataset(x_tr, ctrain[label].to_numpy(), ccols, lgb_params(objective, ss[0], ctrain.height), groups)
                seeds[(name, arm)] = ss
                cand[(name, arm)] = np.empty((len(ss), test.candidates.height))
                tasks.append((cand[(name, arm)], None, (name, arm), dsets[label], x_te, ccols, objective, ss))
    jobs = [(t, r, s) for t in tasks for r, s in enumerate(t[-1])]
    for small in (True, False):  # per-entry fits (one thread each) apart from the fits on all candidates
        part = [j for j in jobs if (j[0][1] is not None) == small]
        for (t, r, _), (booster, p) in zip(part, _fit_all([(t[3], t[4], t[6], s) for t, _, s in part], rounds), strict=True):
            if t[1] is None:
                t[0][r] = p
            else:
                t[0][r, t[1]] = p
            if r == 0:
                rankers[t[2]] = Ranker(booster, t[5])
    return RankingRun(imp, cand, rankers, seeds)


def _arm_table(y: np.ndarray, scores: Mapping[object, np.ndarray], users: np.ndarray, n_boot: int, seed: int) -> dict:
    """One row of :func:`impression_auc_table`: seed-mean AUC per arm with its bootstrap interval, the
    audio gain (``diff*``) and, when the A/A arm is there, the A/A difference with the same machinery
    (``aa_*``) and the single-seed A/A difference with a bootstrap-only interval (``aa1_*``, the
    interval the notebook used before training noise was counted)."""
    t = {a: boot_aucs(y, s, users, n_boot, seed) for a, s in scores.items()}
    row = {}
    for a, name in ((True, "audio"), (False, "no_audio")):
        m = t[a].mean(axis=0)
        row.update({f"auc_{name}": float(m[0]), **dict(zip((f"ci_lo_{name}", f"ci_hi_{name}"),
                                                            np.nanquantile(m[1:], [0.025, 0.975]).tolist(), strict=True))})
    d = seeded_diff(t[True], t[False])
    row.update({"diff": d["diff"], "diff_lo": d["lo"], "diff_hi": d["hi"], "diff_boot_lo": d["boot_lo"],
                "diff_boot_hi": d["boot_hi"], "diff_sd_seed": d["sd_seed"], "n_seeds": t[True].shape[0]})
    if "aa" in t:
        aa, aa1 = seeded_diff(t["aa"], t[False]), seeded_diff(t["aa"][:1], t[False][:1])
        row.update({"aa_diff": aa["diff"], "aa_lo": aa["lo"], "aa_hi": aa["hi"], "aa_sd_seed": aa["sd_seed"],
                    "aa1_diff": aa1["diff"], "aa1_lo": aa1["lo"], "aa1_hi": aa1["hi"]})
    return row


def impression_auc_table(test: StageSamples, run: RankingRun, n_boot: int = 1000, seed: int = 0,
                         per_entry: bool = True) -> pl.DataFrame:
    """AUC (full play, collect) with and without audio and their paired difference (seed noise included,
    :func:`seeded_diff`): pooled (``all``), on the impressions of songs that have audio
    (``songs_with_audio``) and of songs without (``songs_without_audio``: every audio feature is constant
    there, so a difference is not audio information about the song) and, with ``per_entry``, per entry."""
    df = test.impressions
    masks = {"all": np.ones(df.height, bool)}
    if "audio_has" in df.columns:  # audio features vary only on songs with audio; elsewhere they are constant
        masks["songs_with_audio"] = df["audio_has"].to_numpy() > 0
        masks["songs_without_audio"] = ~masks["songs_with_audio"]
    if per_entry:
        masks.update({e: (df["entry"] == e).to_numpy() for e in sorted(df["entry"].unique().to_list())})
    rows = []
    for entry, mask in masks.items():
        for label in sorted({lab for lab, _ in run.impressions}, key=["full_play", "collect"].index):
            y = df[label].to_numpy()[mask]
            if y.min(initial=1) == y.max(initial=0):
                continue
            scores = {a: p[:, mask] for (lab, a), p in run.impressions.items() if lab == label}
            rows.append({"entry": entry, "label": label, "samples": int(mask.sum()), "positives": int(y.sum()),
                         **_arm_table(y, scores, df["user_id"].to_numpy()[mask], n_boot, seed)})
    return pl.DataFrame(rows)


ARM_SUFFIX = {True: "", False: "_no_audio", "aa": "_aa"}


def candidate_tables(test: StageSamples, run: RankingRun, known: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     k: int = 10, n_boot: int = 1000, seed: int = 0) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Per-user NDCG@k / collect hit@k / surprise@k of the fused order and each re-ranker (``<model>``,
    ``<model>_no_audio``, ``<model>_aa``); returns the summary (per-user values averaged over training
    seeds, bootstrap CIs over users) and the per-user frames with a ``rep`` column (the seed's index)."""
    from musicrecall.evaluation import bootstrap_ci

    cand = test.candidates
    orders = {"fused_order": -cand["cand_rank"].to_numpy().astype(np.float64)[None, :]}
    for (name, arm), p in run.candidates.items():
        orders[f"{name}{ARM_SUFFIX[arm]}"] = p
    per_user, rows = {}, []
    for name, s in orders.items():
        pu = pl.concat([per_user_ranking(cand, row, known, k).with_columns(rep=pl.lit(r)) for r, row in enumerate(s)])
        per_user[name] = pu
        mean = pu.group_by("user_id").agg(pl.col("ndcg", "collect_hit", "surprise").mean())
        for m in ("ndcg", "collect_hit", "surprise"):
            v = mean[m].drop_nulls().drop_nans().to_numpy()
            mu, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed) if len(v) else (np.nan,) * 3
            rows.append({"model": name, "metric": f"{m}@{k}", "mean": mu, "ci_lo": lo, "ci_hi": hi, "n_users": len(v),
                         "n_seeds": s.shape[0]})
    return pl.DataFrame(rows), per_user


def paired_lift(per_user: Mapping[str, pl.DataFrame], a: str, b: str, metric: str, n_boot: int = 1000,
                seed: int = 0, z: float = 1.96) -> tuple[float, float, float]:
    """Relative lift of ranker ``a`` over ``b`` on ``metric`` (same users, paired bootstrap over users of
    the per-user values averaged over seeds); with several seeds the interval is widened by the seed
    spread of the per-seed lifts as in :func:`seeded_diff`."""
    from musicrecall.evaluation import paired_bootstrap_lift

    j = per_user[a].select("user_id", "rep", pl.col(metric).alias("a")).join(
        per_user[b].select("user_id", "rep", pl.col(metric).alias("b")), on=["user_id", "rep"]).drop_nulls()
    if j.height == 0 or j["b"].sum() == 0:
        return (float("nan"),) * 3
    m = j.group_by("user_id").agg(pl.col("a", "b").mean())
    lift, lo, hi = paired_bootstrap_lift(m["a"].to_numpy(), m["b"].to_numpy(), n_boot=n_boot, seed=seed)
    per_rep = j.group_by("rep").agg(lift=pl.col("a").mean() / pl.col("b").mean() - 1.0)["lift"].to_numpy()
    extra = z * float(per_rep.std(ddof=1)) / np.sqrt(len(per_rep)) if len(per_rep) > 1 else 0.0
    return lift, lift - float(np.hypot(lift - lo, extra)), lift + float(np.hypot(hi - lift, extra))


def audio_comparison(train: StageSamples, test: StageSamples, known: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     *, rounds: int = 150, seed: int = 0, n_seeds: int = 3, n_boot: int = 1000, per_entry: bool = False,
                     seeded: Sequence[str] = ("collect",), labels: Sequence[str] = ("full_play", "collect"),
                     cand_models: Sequence[str] = ("lambdarank", "collect"), cand_seeds: int | None = None) -> dict:
    """One with/without-audio comparison (the same code for every world and pipeline): the ranking run,
    the impression AUC table, the candidate table and the paired lifts of collect hit@10 (``collect_hit``;
    its A/A control ``aa_collect_hit``) and LambdaRank NDCG@10 (``ndcg``)."""
    run = run_ranking(train, test, rounds, seed, n_seeds, seeded=seeded, labels=labels, cand_models=cand_models,
                      cand_seeds=cand_seeds)
    cand, pu = candidate_tables(test, run, known, n_boot=n_boot, seed=seed)
    lift = lambda a, b, m: paired_lift(pu, a, b, m, n_boot=n_boot, seed=seed) if a in pu and b in pu else (np.nan,) * 3  # noqa: E731
    return {"run": run, "auc": impression_auc_table(test, run, n_boot, seed, per_entry=per_entry), "cand": cand,
            "per_user": pu, "collect_hit": lift("collect", "collect_no_audio", "collect_hit"),
            "aa_collect_hit": lift("collect_aa", "collect_no_audio", "collect_hit"),
            "ndcg": lift("lambdarank", "lambdarank_no_audio", "ndcg"),
            "surprise": lift("lambdarank", "lambdarank_no_audio", "surprise")}


def pooled(tbl: pl.DataFrame, label: str = "collect", entry: str = "all", kind: str = "diff") -> dict[str, float]:
    """``{diff, lo, hi}`` of one row of :func:`impression_auc_table`: ``kind`` ``"diff"`` (audio gain),
    ``"aa"`` (A/A control, same machinery) or ``"aa1"`` (single-seed A/A, bootstrap-only interval)."""
    cols = {"diff": ("diff", "diff_lo", "diff_hi"), "aa": ("aa_diff", "aa_lo", "aa_hi"),
            "aa1": ("aa1_diff", "aa1_lo", "aa1_hi")}[kind]
    r = tbl.filter((pl.col("entry") == entry) & (pl.col("label") == label))
    if r.height == 0 or cols[0] not in r.columns:
        return dict.fromkeys(("diff", "lo", "hi"), float("nan"))
    return {k: float("nan") if r[c][0] is None else float(r[c][0]) for k, c in zip(("diff", "lo", "hi"), cols, strict=True)}


def comparison_metrics(cmp: Mapping) -> dict[str, tuple[float, float, float]]:
    """The headline figures of an :func:`audio_comparison` as ``{name: (value, lo, hi)}``: AUC gains and
    A/A differences per label, pooled and on the songs with audio, and the collect hit@10 / NDCG@10 lifts."""
    out = {}
    for label in ("full_play", "collect"):
        for entry in ("all", "songs_with_audio"):  # the C7 verdict reads songs_with_audio
            for kind, tag in (("diff", "audio"), ("aa", "aa")):
                d = pooled(cmp["auc"], label, entry=entry, kind=kind)
                out[f"auc_{label}_{entry}_{tag}_diff"] = (d["diff"], d["lo"], d["hi"])
    return out | {f"audio_lift_{k}": tuple(cmp[k]) for k in ("collect_hit", "aa_collect_hit", "ndcg")}


def audio_selection_check(samples: StageSamples) -> dict[str, float]:
    """What the audio group says besides sound, over the distinct candidate songs of a stage:
    ``pop_auc_has`` = AUC of the song's plays before the cut for telling songs with audio from songs
    without (0.5 = audio songs are a popularity-neutral set), ``audio_cold_share`` = share of the songs
    with audio that have no play before the cut, and ``pcs_pop_r2`` = R² of log(1 + plays) on the audio
    principal components over the songs with audio (0 = the components carry no popularity)."""
    songs = samples.candidates.unique("song_id").with_columns(pl.col("s_plays").fill_null(0))
    has = songs["audio_has"].to_numpy() > 0
    plays = songs["s_plays"].to_numpy().astype(np.float64)
    pcs = songs.filter(pl.Series(has)).select(pl.col("^audio_pc.*$")).to_numpy().astype(np.float64)
    x, y = np.c_[np.ones(len(pcs)), pcs], np.log1p(plays[has])
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    ok = 0 < has.sum() < len(has)
    return {"songs": len(has), "with_audio": int(has.sum()),
            "pop_auc_has": float(auc_ci(has.astype(float), {"p": plays}, np.arange(len(has)), n_boot=1)[0]["p"][0]) if ok else np.nan,
            "audio_cold_share": float((plays[has] == 0).mean()) if has.any() else np.nan,
            "pcs_pop_r2": float(1 - (resid ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)) if has.sum() > pcs.shape[1] + 1 else np.nan}
