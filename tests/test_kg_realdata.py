"""KG Song2Vec, BadCase and GraphSAGE on the shapes real logs have (no genre, one-play sessions, artist/album only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from musicrecall import kg


def _one_play_sessions(n_users: int = 5, plays: int = 6) -> pl.DataFrame:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"user_id": u, "song_id": (u + p) % 7, "session_id": u * plays + p, "ts": t0 + timedelta(hours=p),
             "full_play": True} for u in range(n_users) for p in range(plays)]
    return pl.DataFrame(rows)


def test_sessions_of_one_play_are_a_clear_error_naming_session_gap_min():
    corpus = kg.build_corpus(_one_play_sessions(), pl.DataFrame(schema={"head": pl.String, "relation": pl.String,
                                                                        "tail": pl.String}), 7)
    assert corpus.n_sessions == 0 and corpus.n_short_sessions == 30
    # gensim alone says "you must first build vocabulary before training the model"
    with pytest.raises(ValueError, match="session_gap_min") as err:
        kg.fit_song2vec(corpus, 7, kg.Song2VecConfig(dim=4, epochs=1), cache=False)
    assert "30 sessions" in str(err.value)
