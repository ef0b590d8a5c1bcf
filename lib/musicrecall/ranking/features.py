"""Ranking features from the events before a cut (notebook 08): statistics, KG attributes and affinities,
channel scores and ranks, and the audio group (every column named ``audio_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl

from musicrecall.audio import embedding_names
from musicrecall.evaluation import check_no_leakage
from musicrecall.fusion.channels import PairScorer, recent_plays

AUDIO_PREFIX = "audio_"


CATEGORICAL = ("kg_genre", "kg_language", "kg_version", "entry_code")


ATTRS = ("vocal", "instrumental", "percussive_share", "brightness", "tempo", "loudness")  # named audio attributes


ENTRIES = ("radio", "daily_30", "single_song_rec", "ugc_playlist", "ai_playlist", "search")



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


def events_before(events: pl.DataFrame, cut: datetime | pl.DataFrame) -> pl.DataFrame:
    """The events strictly before ``cut``: a timestamp (global splits) or a per-user frame ``user_id, cut``
    (position splits; a user without a cut has every play before it)."""
    if isinstance(cut, pl.DataFrame):
        c = cut.select(pl.col("user_id").cast(events.schema["user_id"]), pl.col("cut").alias("__cut"))
        return (events.join(c, on="user_id", how="left", maintain_order="left")
                .filter(pl.col("__cut").is_null() | (pl.col("ts") < pl.col("__cut"))).drop("__cut"))
    return events.filter(pl.col("ts") < cut)


def build_features(events: pl.DataFrame, cut: datetime | pl.DataFrame, pairs: pl.DataFrame, items: pl.DataFrame,
                   audio: AudioTable | None = None, scorers: Mapping[str, PairScorer] | None = None,
                   channel_lists: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   list_users: np.ndarray | None = None, recent: int = 10) -> pl.DataFrame:
    """Features of ``pairs`` (``user_id, song_id`` [+ ``entry``]) from the events strictly before ``cut``.

    ``scorers`` (channel scores of models fitted before the cut) and ``channel_lists`` (their ranked
    lists, rows aligned with ``list_users``) are the caller's responsibility; everything else is computed
    here from ``events`` filtered to ``ts < cut``, so later events cannot change a feature. With a
    per-user ``cut`` (order-only data) the "days" features count from the last play before any cut.
    """
    fit = events_before(events, cut)
    check_no_leakage(fit, cut, name="ranking features")
    if isinstance(cut, pl.DataFrame):  # no common clock: recency is measured from the last fitted play
        cut = fit["ts"].max()
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
