"""One evaluation stage of notebook 08: every channel (memoised), its pair scorer and the fused recall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from musicrecall.fusion.adapters import DSSMVectors, SequenceChannel
from musicrecall.fusion.channels import (
    ShortTermI2I,
    audio_neighbour_table,
    cold_users_mask,
    dot_scorer,
    embedding_channel,
    max_interest_scorer,
    memoize,
    mind_quota_channel,
    neighbour_table_for,
    popularity_channel,
    profile_scorer,
    recent_plays,
)
from musicrecall.fusion.merge import Channel, FusedRecall
from musicrecall.multi_interest import served_on


@dataclass
class RecallStage:
    """Every recall channel served at one stage ("valid": models see the train window; "test": train +
    valid), the fused recall, and pair scorers for the ranking features."""

    name: str
    setup: object
    channels: dict[str, Channel]
    scorers: dict
    fused: FusedRecall
    popularity: Channel


def build_stage(name: str, setup, shares: Mapping[str, float], *, kg: tuple[np.ndarray, np.ndarray],
                seq: SequenceChannel | None = None, mind=None, audio: tuple[np.ndarray, np.ndarray] | None = None,
                dssm: DSSMVectors | None = None, n_recent: int = 5, half_life: float = 2.0,
                n_neighbors: int = 200, audio_recent: int = 10, max_plays: int = 5) -> RecallStage:
    """Channels (memoised) and scorers of one stage; channels whose model is ``None`` are left out, and so
    are their shares."""
    fit = setup.fit
    channels: dict[str, Channel] = {}
    scorers: dict = {}
    channels["short_term"] = ShortTermI2I.lazy(neighbour_table_for(kg[0], kg[1], n_neighbors), fit, n_recent, half_life)
    scorers["short_term"] = profile_scorer(kg[0], kg[1], recent_plays(fit, n_recent), half_life)
    if seq is not None:
        uv = seq.user_vecs(name)
        channels["sasrec"] = embedding_channel(uv, seq.item_vecs())
        scorers["sasrec"] = dot_scorer(uv, seq.item_vecs())
    if mind is not None:
        served = served_on(mind, fit)
        items = served.item_vectors()
        channels["mind"] = mind_quota_channel(served.interests, items)
        scorers["mind"] = max_interest_scorer(served.interests, items)
    if audio is not None:  # neighbours of the last plays that have audio; its score is the audio_sim feature
        songs, emb = audio
        with_audio = fit.filter(pl.col("song_id").is_in(songs.tolist()))
        channels["audio_i2i"] = ShortTermI2I.lazy(audio_neighbour_table(songs, emb, setup.n_items, n_neighbors),
                                                  with_audio, audio_recent, half_life=5.0)
    if dssm is not None:
        cold = cold_users_mask(fit, max_plays)
        channels["dssm"] = embedding_channel(dssm.user_vecs, dssm.items, eligible=lambda u: cold(u) & dssm.known(u))
        base = dot_scorer(dssm.user_vecs, dssm.items)
        scorers["dssm"] = lambda u, j: np.where(dssm.known(u), base(u, j), np.nan)
    channels = {n: memoize(c) for n, c in channels.items()}
    pop = memoize(popularity_channel(setup.popularity))
    fused = FusedRecall(channels, {n: shares[n] for n in channels}, pop)
    return RecallStage(name, setup, channels, scorers, fused, pop)


def restrict_stage(stage: RecallStage, keep: Sequence[str], shares: Mapping[str, float]) -> RecallStage:
    """``stage`` with only the channels in ``keep`` (their memoised lists and scorers are shared, the
    fusion re-normalises ``shares`` over them): the like-for-like pipeline of a placebo world that runs
    only those channels."""
    channels = {n: c for n, c in stage.channels.items() if n in keep}
    scorers = {n: s for n, s in stage.scorers.items() if n in keep}
    fused = FusedRecall(channels, {n: shares[n] for n in channels}, stage.popularity)
    return RecallStage(stage.name, stage.setup, channels, scorers, fused, stage.popularity)
