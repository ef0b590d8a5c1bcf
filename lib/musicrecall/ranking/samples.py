"""Point-wise samples of one stage (notebook 08): the window's impressions and the fused candidates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from musicrecall.ranking.features import AudioTable, build_features


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
