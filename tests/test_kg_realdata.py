"""KG Song2Vec, BadCase and GraphSAGE on the shapes real logs have (no genre, one-play sessions, artist/album only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
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


def _artist_album_catalogue(n: int = 12) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A real-log catalogue: song->artist/album maps only (genre and language unknown)."""
    items = pl.DataFrame({"song_id": list(range(n)), "artist": [f"a{s // 4}" for s in range(n)],
                          "album": [f"b{s // 2}" for s in range(n)], "genre": [None] * n, "language": [None] * n},
                         schema_overrides={"genre": pl.String, "language": pl.String})
    triples = pl.concat([items.select(head=pl.format("song:{}", "song_id"), relation=pl.lit(f"song_{r}"),
                                      tail=pl.format(f"{r}:{{}}", r)) for r in ("artist", "album")])
    return items, triples


def test_catalogue_relations_use_what_the_data_has():
    items, triples = _artist_album_catalogue()
    rel = kg.catalogue_relations(items, 12)
    assert sorted(rel) == ["album", "artist"]  # genre / language are unknown, so they are not relations here
    # the same relations from the triples alone (a catalogue kept only as a KG)
    from_kg = kg.catalogue_relations(items.select("song_id"), 12, triples)
    assert sorted(from_kg) == ["album", "artist"]
    np.testing.assert_array_equal(from_kg["artist"] >= 0, np.ones(12, dtype=bool))
    assert (from_kg["artist"][[0, 1, 2, 3]] == from_kg["artist"][0]).all() and from_kg["artist"][4] != from_kg["artist"][0]


def test_badcase_on_artist_album_only_data():
    items, _ = _artist_album_catalogue()
    codes = kg.catalogue_relations(items, 12)
    # song 0: neighbours 1 (same album), 3 (same artist), 8 (neither)
    rate = kg.badcase_per_seed(np.array([0]), np.array([[1, 3, 8]]), codes)
    assert rate.tolist() == [pytest.approx(1 / 3)]
    # with the old genre/language/artist columns it still works where only artist is known
    assert kg.badcase_per_seed(np.array([0]), np.array([[1, 3, 8]]), kg.attribute_codes(items, 12)).tolist() == [
        pytest.approx(1 / 3)]


def _graph_events() -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Two artists whose songs are played in separate sessions; songs 8-9 are cold (only in the KG)."""
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for s in range(60):
        group = s % 2
        for p, song in enumerate(rng.integers(0, 4, 6) + 4 * group):
            rows.append({"user_id": s % 7, "song_id": int(song), "session_id": s, "ts": t0 + timedelta(hours=s, minutes=p),
                         "full_play": True})
    artist = [0, 0, 0, 0, 1, 1, 1, 1, 0, 1]
    triples = pl.DataFrame({"head": [f"song:{i}" for i in range(10)], "relation": ["song_artist"] * 10,
                            "tail": [f"artist:{a}" for a in artist]})
    return pl.DataFrame(rows), triples, 10


def test_graphsage_graph_has_kg_and_coplay_edges_and_embeds_cold_songs():
    from musicrecall.models.graphsage import GraphSAGEConfig, build_graph, fit_graphsage, walk_pairs

    ev, triples, n = _graph_events()
    g = build_graph(ev, triples, n)
    assert g.n_nodes == n + 2 and g.n_kg_edges == 10 and g.n_coplay_edges > 0
    assert (g.degree[8:10] == 1).all()  # cold songs: one KG edge each, no co-play
    # no co-play edge ever joins the two artists' songs
    nb = [set(g.indices[g.indptr[v]:g.indptr[v + 1]].tolist()) for v in range(n)]
    assert all(u < 4 or u >= n for v in range(4) for u in nb[v])
    pairs = walk_pairs(g, walk_len=4, walks_per_node=2, window=2, seed=0)
    assert pairs.shape[1] == 2 and (pairs[:, 0] != pairs[:, 1]).all()
    cfg = GraphSAGEConfig(dim=8, fanouts=(4,), epochs=3, batch_size=64, max_pairs_per_epoch=5000, neg_weight=1.0, seed=0)
    vecs, has, hist, _ = fit_graphsage(ev, triples, n, cfg, cache=False)
    assert has.all() and vecs.shape == (n, 8)
    assert hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"]
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sim = unit @ unit.T
    # a cold song sits closer to its own artist's songs than to the other artist's
    assert sim[8, :4].mean() > sim[8, 4:8].mean() and sim[9, 4:8].mean() > sim[9, :4].mean()
