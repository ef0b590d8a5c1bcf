"""Knowledge-graph Song2Vec: corpus formula, gamma = 0 equivalence, no entity leak, BadCase, recall, EGES."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from musicrecall import kg
from musicrecall.models.eges import EGESConfig, fit_eges, side_index, skipgram_pairs

N_ITEMS = 60


def _events(n_users: int = 40, seed: int = 0) -> pl.DataFrame:
    """Sessions drawn inside 3 'artists' (songs 0-19, 20-39, 40-49); songs 50-59 are never played (cold)."""
    rng = np.random.default_rng(seed)
    rows, t0 = [], datetime(2026, 1, 1, tzinfo=UTC)
    for u in range(n_users):
        for s in range(4):
            group = rng.integers(0, 3)
            lo, hi = [(0, 20), (20, 40), (40, 50)][group]
            for p, song in enumerate(rng.integers(lo, hi, 8)):
                rows.append({"user_id": u, "song_id": int(song), "session_id": u * 10 + s,
                             "ts": t0 + timedelta(days=s, minutes=4 * p, seconds=u), "full_play": bool(p != 3)})
    return pl.DataFrame(rows)


def _triples() -> pl.DataFrame:
    artist = np.r_[np.zeros(20), np.ones(20), np.full(10, 2), np.zeros(5), np.ones(5)].astype(int)  # cold: 50-54 -> a0
    rows = [{"head": f"song:{s}", "relation": "song_artist", "tail": f"artist:{a}"} for s, a in enumerate(artist)]
    rows += [{"head": f"song:{s}", "relation": "song_genre", "tail": f"genre:{a % 2}"} for s, a in enumerate(artist)]
    rows += [{"head": "artist:0", "relation": "artist_genre", "tail": "genre:0"}]
    return pl.DataFrame(rows)


def test_gamma_zero_corpus_is_the_plain_corpus():
    ev = _events()
    plain = kg.session_sentences(ev, N_ITEMS, seed=3)
    zero = kg.build_corpus(ev, _triples(), N_ITEMS, kg.KGConfig(gamma=0.0), seed=3)
    some = kg.build_corpus(ev, _triples(), N_ITEMS, kg.KGConfig(gamma=0.5), seed=3)
    assert zero.sentences == plain.sentences and zero.n_walks == 0
    assert some.n_walks > 0 and some.n_tokens > plain.n_tokens
    # the sessions keep their relative order when walks are inserted
    assert [s for s in some.sentences if s[0].startswith("song:")] == plain.sentences


def test_gamma_zero_trains_exactly_plain_song2vec():
    ev, tr = _events(), _triples()
    cfg = kg.Song2VecConfig(dim=8, epochs=3, seed=7)
    plain = kg.fit_song2vec(kg.session_sentences(ev, N_ITEMS, seed=0), N_ITEMS, cfg, workers=1, cache=False)
    zero = kg.fit_song2vec(kg.build_corpus(ev, tr, N_ITEMS, kg.KGConfig(gamma=0.0), seed=0), N_ITEMS, cfg,
                           workers=1, triples=tr, kg=kg.KGConfig(gamma=0.0), cache=False)
    some = kg.fit_song2vec(kg.build_corpus(ev, tr, N_ITEMS, kg.KGConfig(gamma=0.3), seed=0), N_ITEMS, cfg,
                           workers=1, triples=tr, kg=kg.KGConfig(gamma=0.3), cold="walks", cache=False)
    np.testing.assert_array_equal(plain.vectors, zero.vectors)
    np.testing.assert_array_equal(plain.source, zero.source)
    assert not np.allclose(plain.vectors[plain.has_vector], some.vectors[plain.has_vector])
    assert not plain.has_vector[50:].any() and some.has_vector[50:55].all()  # cold songs only through the KG


def test_relation_statement_counts_follow_the_formula():
    counts = np.zeros(4, dtype=np.int64)
    counts[[0, 1]] = [3, 1]
    tr = pl.DataFrame({"head": ["song:0", "song:1", "song:2"], "relation": ["song_album"] * 3, "tail": ["album:x"] * 3})
    cfg = kg.KGConfig(gamma=1.0, weights={"song_album": 1.0}, prior_count=1.0, walk_len=100, per_play=True,
                      entity_every=1)
    walks = kg.relation_walks(tr, counts, cfg)
    assert len(walks) == 1
    w = walks[0]
    assert w[0::2] == ["album:x"] * (len(w) // 2)  # entity interleaved with songs
    songs = pl.Series(w[1::2]).value_counts().sort("")
    assert dict(zip(songs[""], songs["count"], strict=True)) == {"song:0": 4, "song:1": 2, "song:2": 1}  # gamma*w*(n_s+n_0)
    assert kg.relation_walks(tr, counts, kg.KGConfig(gamma=0.0)) == []
    prior = kg.relation_walks(tr, counts, kg.KGConfig(gamma=0.3, weights={"song_album": 1.0}, prior_count=10.0,
                                                      entity_every=1))
    assert pl.Series(prior[0][1::2]).value_counts()["count"].to_list() == [3, 3, 3]  # gamma*w*n_0, plays ignored
    half = kg.relation_walks(tr, counts, kg.KGConfig(gamma=1.0, weights={"song_album": 0.5}, walk_len=2, prior_count=4))
    assert all(len(x) <= 4 for x in half)  # walk_len songs per walk


def test_entity_token_before_every_kth_song_of_a_walk():
    tr = pl.DataFrame({"head": [f"song:{i}" for i in range(7)], "relation": ["song_album"] * 7,
                       "tail": ["album:a"] * 4 + ["album:b"] * 3})
    ones = np.ones(7, dtype=np.int64)
    for k in (1, 2, 3, 4):
        cfg = kg.KGConfig(gamma=1.0, weights={"song_album": 0.1}, prior_count=10, walk_len=3, entity_every=k)
        walks = kg.relation_walks(tr, ones, cfg)
        assert sorted(len([t for t in w if t.startswith("song:")]) for w in walks) == [1, 3, 3]  # album a: 3 + 1
        for w in walks:
            songs_before = 0
            for t in w:  # an entity token opens the walk and then precedes songs 1 + k, 1 + 2k, …
                if t.startswith("album:"):
                    assert songs_before % k == 0
                else:
                    songs_before += 1
            assert w[0].startswith("album:") and sum(t.startswith("album:") for t in w) == -(-songs_before // k)
        songs = sorted(t for w in walks for t in w if t.startswith("song:"))
        assert songs == [f"song:{i}" for i in range(7)]  # every statement once, each in its entity's walks


def test_entity_tokens_never_leak_into_recommendations():
    ev, tr = _events(), _triples()
    tr = pl.concat([tr, pl.DataFrame({"head": ["song:3"], "relation": ["song_label"], "tail": ["7"]})])  # bare-number entity
    cfg, kgc = kg.Song2VecConfig(dim=8, epochs=2), kg.KGConfig(gamma=1.0)
    corpus = kg.build_corpus(ev, tr, N_ITEMS, kgc)
    emb = kg.fit_song2vec(corpus, N_ITEMS, cfg, triples=tr, kg=kgc, cache=False)
    assert {"artist:0", "genre:1", "7"} <= set(emb.entity_tokens)
    assert emb.vectors.shape == (N_ITEMS, 8)
    rec = kg.ItemToItemRecall.build(emb.vectors, emb.has_vector, ev, np.ones(N_ITEMS), n_neighbors=20, index="flat")
    assert ((rec.nb_ids >= -1) & (rec.nb_ids < N_ITEMS)).all()
    lists = rec.recommend(np.arange(40), N_ITEMS, None)
    assert ((lists >= 0) & (lists < N_ITEMS)).all()  # k = every song: all slots filled by songs only
    assert all(len(set(row)) == N_ITEMS for row in lists.tolist())


def test_cold_songs_sit_with_their_entity():
    ev, tr = _events(n_users=80), _triples()
    kgc = kg.KGConfig(gamma=1.0)
    emb = kg.fit_song2vec(kg.build_corpus(ev, tr, N_ITEMS, kgc), N_ITEMS, kg.Song2VecConfig(dim=16, epochs=10),
                          triples=tr, kg=kgc, cache=False)
    assert (emb.source[50:] == 2).all() and (emb.source[:50] == 1).all()
    nb, _ = kg.neighbour_table(emb.vectors, emb.has_vector, 10, index="flat")
    warm_nb = nb[50:55][nb[50:55] < 50]
    assert (warm_nb < 20).mean() > 0.6  # cold songs of artist 0 land among artist 0's warm songs


def test_badcase_on_a_hand_made_case():
    codes = {"genre": np.array([0, 0, 1, 1, 2]), "language": np.array([0, 1, 1, 0, -1]), "artist": np.array([5, 6, 7, 8, 9])}
    seeds = np.array([0, 4])
    nb = np.array([[1, 2, 3, -1], [0, 1, 2, 3]])
    # song 0: 1 shares genre, 2 shares nothing, 3 shares language -> 1/3; song 4 (genre 2, unknown language): all bad
    np.testing.assert_allclose(kg.badcase_per_seed(seeds, nb, codes), [1 / 3, 1.0])
    assert np.isnan(kg.badcase_per_seed(np.array([0]), np.array([[-1, -1]]), codes))[0]
    with pytest.raises(ValueError):
        kg.badcase_per_seed(seeds, nb, {})
    items = pl.DataFrame({"song_id": [0, 1, 2], "genre": ["a", None, "a"], "language": [None, None, None]})
    c = kg.attribute_codes(items, 4)
    assert set(c) == {"genre"} and c["genre"].tolist() == [0, -1, 0, -1]


def test_topk_merge_and_exclusion():
    rows, items = np.array([0, 0, 0, 1, 1, 0]), np.array([5, 3, 2, 1, 4, 3])
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.3, 0.2])
    out = kg.topk_from_candidates(rows, items, scores, 3, 2)
    assert out.tolist() == [[3, 2], [1, 4], [-1, -1]]  # duplicate keeps its best score, ties by lower id
    ev = _events()
    emb = kg.fit_song2vec(kg.session_sentences(ev, N_ITEMS), N_ITEMS, kg.Song2VecConfig(dim=8, epochs=2), cache=False)
    rec = kg.ItemToItemRecall.build(emb.vectors, emb.has_vector, ev, np.arange(N_ITEMS, dtype=float), index="flat")
    users = np.array([0, 1, 99])  # 99 has no history: popularity fallback
    exclude = (np.array([0, 2, 3, 3]), np.array([1, 2, 7]))
    lists = rec.recommend(users, 30, exclude)
    assert lists.shape == (3, 30) and (lists >= 0).all()
    assert not {1, 2} & set(lists[0].tolist()) and 7 not in lists[1]
    assert lists[2].tolist() == list(range(59, 29, -1))
    full = rec.recommend(np.array([1, 0, 99]), 30, None)
    np.testing.assert_array_equal(rec.recommend(np.array([99, 1]), 30, None), full[[2, 0]])  # memoised rows
    assert not np.array_equal(full[1], lists[0])  # the exclusion changed user 0's list


def test_eges_pairs_side_info_and_cold_songs():
    ev, tr = _events(), _triples()
    corpus = kg.session_sentences(ev, N_ITEMS)
    pairs = skipgram_pairs(corpus, N_ITEMS, window=2, sample=0.0)
    same_sentence = {frozenset((int(a[5:]), int(b[5:]))) for s in corpus.sentences for i, a in enumerate(s)
                     for b in s[i + 1 : i + 3]}
    assert all(frozenset(p) in same_sentence or p[0] == p[1] for p in pairs.tolist())
    side, fields, cards = side_index(tr, N_ITEMS)
    assert fields == ["song_artist", "song_genre"] and cards == [3, 2] and side[55, 0] == 1
    vecs, has, hist, _ = fit_eges(corpus, tr, N_ITEMS, EGESConfig(dim=8, epochs=4, batch_size=256, lr=0.05), cache=False)
    assert has.all() and np.isfinite(vecs).all()
    assert hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"]
    # cold songs 50-54 and 55-59 differ only by artist: their vectors are the mean side-info embeddings
    assert np.allclose(vecs[50], vecs[54]) and not np.allclose(vecs[50], vecs[55])


def test_neighbour_slot_shares_finds_a_hub_of_rare_songs():
    # song 3 (one play) is in the lists of songs 0, 1 and 2; song 0 (50 plays) only in song 3's list
    ids = np.array([[3, 1], [3, 2], [3, -1], [0, -1], [-1, -1]])
    counts = np.array([50, 20, 20, 1, 0])
    t = kg.neighbour_slot_shares({"m": ids}, {"m": counts}, edges=(1, 3, 30))
    by_bin = {r["plays"]: r for r in t.iter_rows(named=True)}
    assert by_bin["[1, 3)"]["slot_share"] == pytest.approx(3 / 6)  # 3 of the 6 filled slots
    assert by_bin["[1, 3)"]["slots_per_song"] == pytest.approx(3.0)
    assert by_bin[">= 30"]["slot_share"] == pytest.approx(1 / 6)
    assert by_bin["[3, 30)"]["songs"] == 2 and by_bin["[0, 1)"]["slot_share"] == 0.0
    assert t["slot_share"].sum() == pytest.approx(1.0)


def test_median_popularity_rank():
    pop = np.array([5.0, 50.0, 1.0, 20.0])  # ranks: song1 0, song3 1, song0 2, song2 3
    assert kg.median_popularity_rank(np.array([[1, 3, -1], [2, 0, 1]]), pop) == 1.0


def _reference_recommend(rec: kg.ItemToItemRecall, users: np.ndarray, k: int, exclude) -> np.ndarray:
    """The former sparse path: every candidate (merged songs and the whole fallback) through
    :func:`kg.topk_from_candidates`. The fast path must give the very same lists."""
    from musicrecall.evaluation.metrics import exclude_arrays
    from musicrecall.kg.recall import _in_rows

    ex = exclude_arrays(exclude, len(users))
    n = len(rec.popularity)
    pop_order = np.lexsort((np.arange(n), -rec.popularity))
    r, s, rk = rec._seed_arrays(users)
    nb, sim = rec.nb_ids[s], rec.nb_sims[s]
    w = (0.5 ** (rk / rec.half_life))[:, None] * np.where(np.isfinite(sim), sim, 0.0)
    valid = nb >= 0
    cr, ci, cs = np.broadcast_to(r[:, None], nb.shape)[valid], nb[valid], w[valid]
    uniq, inv = np.unique(cr * n + ci, return_inverse=True)
    cr, ci, cs = uniq // n, uniq % n, np.bincount(inv, weights=cs)
    n_ex = 0 if ex is None else int(np.diff(ex[0]).max(initial=0))
    fill = pop_order[: min(n, k + n_ex)]
    floor = -(cs.max(initial=0.0) + abs(cs.min(initial=0.0)) + 2.0)
    fr, fi = np.repeat(np.arange(len(users)), len(fill)), np.tile(fill, len(users))
    fs = floor - np.tile(np.arange(len(fill)), len(users)) / (len(fill) + 1.0)
    rows, items, scores = np.r_[cr, fr], np.r_[ci, fi], np.r_[cs, fs]
    if ex is not None:
        keep = ~_in_rows(rows, items, ex[0], ex[1])
        rows, items, scores = rows[keep], items[keep], scores[keep]
    return kg.topk_from_candidates(rows, items, scores, len(users), k)


def test_fast_i2i_ranking_gives_the_reference_lists():
    rng = np.random.default_rng(3)
    n_items, n_users = 300, 120
    ev = pl.DataFrame({"user_id": rng.integers(0, n_users, 4000), "song_id": rng.integers(0, n_items, 4000),
                       "ts": [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=int(m)) for m in rng.integers(0, 10**5, 4000)],
                       "full_play": rng.random(4000) < 0.7})
    vecs = rng.normal(size=(n_items, 6)).astype(np.float32)
    vecs[::7] = vecs[1::7][: len(vecs[::7])]  # duplicated vectors: tied similarities
    has = rng.random(n_items) < 0.9
    popularity = rng.integers(0, 20, n_items).astype(float)  # many ties: the id breaks them
    users = np.r_[rng.permutation(n_users)[:100], [n_users + 5]]  # one user without any history
    for k, half_life, neighbours in ((10, 5.0, 8), (50, 2.0, 30), (400, 5.0, 30)):  # k > catalogue too
        rec = kg.ItemToItemRecall.build(vecs, has, ev, popularity, n_neighbors=neighbours, max_seeds=12,
                                        half_life=half_life, index="flat")
        rec.batch_users = 37  # several batches, the last one short
        lengths = rng.integers(0, 40, len(users))
        exclude = (np.r_[0, np.cumsum(lengths)], rng.integers(0, n_items, lengths.sum()))
        for ex in (None, exclude):
            got = rec._recommend(users, k, ex)
            np.testing.assert_array_equal(got, _reference_recommend(rec, users, k, ex))
        assert (got[:, : min(k, n_items - 40)] >= 0).all()


def test_lazy_neighbour_rows_equal_the_full_table_and_search_only_what_is_asked():
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(400, 8)).astype(np.float32)
    has = rng.random(400) < 0.8
    full_ids, full_sims = kg.neighbour_table(vecs, has, 15, index="flat")
    lazy = kg.NeighbourTable(vecs, has, 15, index="flat", batch=50)
    asked = np.array([3, 3, 17, 250, 399, 0])
    ids, sims = lazy.rows(asked)
    np.testing.assert_array_equal(ids, full_ids[asked])
    np.testing.assert_array_equal(sims, full_sims[asked])
    assert lazy.n_searched == len(np.unique(asked[has[asked]]))  # duplicates and songs without a vector: no search
    np.testing.assert_array_equal(lazy[[5], :4], full_ids[[5], :4])  # one query (a padded batch) and array indexing
    np.testing.assert_array_equal(lazy[has], full_ids[has])  # a boolean mask: those rows, then all of them
    np.testing.assert_array_equal(np.asarray(lazy), full_ids)
    assert (full_ids[~has] == -1).all() and not (full_ids[has] == np.flatnonzero(has)[:, None]).any()  # no self


def test_recall_searches_only_the_seed_songs_of_the_users_it_ranks():
    ev = _events()
    emb = kg.fit_song2vec(kg.session_sentences(ev, N_ITEMS), N_ITEMS, kg.Song2VecConfig(dim=8, epochs=2), cache=False)
    rec = kg.ItemToItemRecall.build(emb.vectors, emb.has_vector, ev, np.arange(N_ITEMS, dtype=float), max_seeds=3,
                                    index="flat")
    lists = rec.recommend(np.array([0, 1]), 20, None)
    seeds = set(rec.seeds.filter(pl.col("user_id").is_in([0, 1]))["song_id"].to_list())
    assert rec.table.n_searched == len(seeds) <= 6
    full = kg.ItemToItemRecall.build(emb.vectors, emb.has_vector, ev, np.arange(N_ITEMS, dtype=float), max_seeds=3,
                                     index="flat")
    full.nb_ids  # noqa: B018 - the whole table first: the lists must not change
    np.testing.assert_array_equal(full.recommend(np.array([0, 1]), 20, None), lists)


def test_weight_candidates_use_the_relations_the_data_carries():
    triples = pl.DataFrame({"head": ["song:0", "song:0", "song:1"], "relation": ["song_artist", "song_album", "song_artist"],
                            "tail": ["artist:a", "album:x", "artist:a"]})
    grid = [{"song_album": 1.0}, {"song_artist": 0.0, "song_album": 1.0}, {"song_genre": 0.0},  # genre: not in the data
            {"song_artist": 0.0}]  # nothing left: plain Song2Vec, dropped
    cands = kg.weight_candidates(triples, kg.KGConfig(), grid)
    assert cands == [{"song_album": 0.0, "song_artist": 1.0}, {"song_album": 1.0, "song_artist": 1.0},
                     {"song_album": 1.0, "song_artist": 0.0}]


def test_fit_model_is_not_repeated_and_gamma_zero_ignores_the_weights():
    from musicrecall.evaluation import make_eval_setup

    ev, tr = _events(), _triples()
    setup = make_eval_setup(ev, N_ITEMS, stage="test", split="position", min_window_users=1)
    s2v, rc = kg.Song2VecConfig(dim=8, epochs=1), kg.RecallConfig(n_neighbors=10)
    a = kg.fit_model("a", setup, tr, s2v, kg.KGConfig(gamma=0.0), rc)
    b = kg.fit_model("b", setup, tr, s2v, kg.KGConfig(gamma=0.0, weights={"song_artist": 0.0}), rc)
    c = kg.fit_model("c", setup, tr, s2v, kg.KGConfig(gamma=0.5), rc)
    d = kg.fit_model("d", setup, tr, s2v, kg.KGConfig(gamma=0.5, weights={"song_artist": 0.0, "song_genre": 1.0}), rc)
    assert b.recall is a.recall and b.name == "b"  # plain Song2Vec whatever the weights
    assert c.recall is not a.recall and d.recall is not c.recall
    assert kg.fit_model("e", setup, tr, s2v, kg.KGConfig(gamma=0.5), rc).recall is c.recall
    other = make_eval_setup(ev, N_ITEMS, stage="valid", split="position", min_window_users=1)
    assert kg.fit_model("f", other, tr, s2v, kg.KGConfig(gamma=0.5), rc).recall is not c.recall  # another fit window


def test_weight_search_keeps_the_prior_unless_a_candidate_is_significantly_better():
    from musicrecall.evaluation import make_eval_setup

    ev, tr = _events(n_users=60), _triples()
    setup = make_eval_setup(ev, N_ITEMS, stage="valid", split="position", min_window_users=1)
    codes = {"badcase": {"artist": np.r_[np.zeros(20), np.ones(20), np.full(10, 2), np.zeros(5), np.ones(5)].astype(np.int64)}}
    table, weights = kg.weight_search(setup, tr, kg.Song2VecConfig(dim=8, epochs=2), kg.KGConfig(),
                                      [{"song_genre": 0.0}, {"song_artist": 0.0}], 0.5, kg.RecallConfig(n_neighbors=10),
                                      codes, n_seeds=30, n_boot=200)
    assert table.height == 3 and table["chosen"].sum() == 1
    assert table["weights"][0] == "artist_genre 0.5, artist 1, genre 1"  # the prior comes first
    pick = int(np.flatnonzero(table["chosen"].to_numpy())[0])
    assert pick == 0 or table["ci_lo"][pick] > 0
    better = table.filter(pl.col("ci_lo") > 0)
    if better.height:  # the best significantly better candidate, never one within noise of the prior
        assert table["hr@200"][pick] == better["hr@200"].max()
    assert set(weights) == {"song_artist", "song_genre", "artist_genre"} and 0 <= table["badcase"].min() <= 1


def test_notebook_02_choice_is_saved_and_read_back_per_dataset(tmp_path, monkeypatch):
    import musicrecall.config

    monkeypatch.setattr(musicrecall.config, "DATA_DIR", tmp_path)
    assert kg.load_choice("abc", 0) is None  # 02 has not run: the caller uses its own defaults
    s2v, kgc = kg.Song2VecConfig(ns_exponent=-0.5), kg.KGConfig(gamma=0.1, weights={"song_artist": 1.0, "song_album": 1.0})
    kg.save_choice("abc", 0, s2v, kgc)
    got = kg.load_choice("abc", 0)
    assert got is not None and got[0] == s2v and got[1].gamma == 0.1 and dict(got[1].weights) == dict(kgc.weights)
    assert kg.load_choice("abc", 1) is None and kg.load_choice("other", 0) is None


def test_rate_change_is_the_paired_lift_and_undefined_without_cases():
    from musicrecall.evaluation import paired_bootstrap_lift
    from musicrecall.kg import rate_change

    rng = np.random.default_rng(0)
    kg_rate, plain_rate = rng.random(300) * 0.2, rng.random(300) * 0.4
    got = rate_change({"kg_song2vec": kg_rate, "plain_song2vec": plain_rate}, n_boot=200, seed=3)
    assert got == paired_bootstrap_lift(kg_rate, plain_rate, n_boot=200, seed=3)
    assert got[0] < 0 and got[2] < 0  # half the rate: a clear drop
    assert rate_change({"kg_song2vec": kg_rate, "plain_song2vec": np.zeros(300)}) is None


def test_session_corpus_and_recent_seeds_are_built_once_per_frame_and_equal_a_fresh_build():
    from musicrecall.corpus import _session_sentences
    from musicrecall.kg.recall import _recent_seeds

    ev = _events()
    a, b = kg.session_sentences(ev, N_ITEMS, seed=3), kg.session_sentences(ev, N_ITEMS, seed=3)
    fresh = _session_sentences(ev, N_ITEMS, 2, 3)
    assert a.sentences == b.sentences == fresh.sentences and a.sentences is not b.sentences  # each call its own list
    np.testing.assert_array_equal(a.song_counts, fresh.song_counts)
    a.sentences.append(["song:0", "song:1"])  # a caller's change never reaches the next call
    assert kg.session_sentences(ev, N_ITEMS, seed=3).sentences == fresh.sentences
    assert kg.session_sentences(ev, N_ITEMS, seed=4).sentences != fresh.sentences  # the seed is in the key
    other = _events(seed=1)
    assert kg.session_sentences(other, N_ITEMS, seed=3).sentences == _session_sentences(other, N_ITEMS, 2, 3).sentences
    s1 = kg.recent_seeds(ev, 5)
    assert kg.recent_seeds(ev, 5) is s1 and s1.equals(_recent_seeds(ev, 5))
    assert kg.recent_seeds(ev, 3).equals(_recent_seeds(ev, 3)) and kg.recent_seeds(other, 5).equals(_recent_seeds(other, 5))


def test_auto_weight_grid_tries_the_candidates_on_imported_data_only():
    from musicrecall.evaluation import make_eval_setup

    assert kg.auto_weight_grid(is_world=True) == []
    assert kg.auto_tune_grid(is_world=False) == [dict(c) for c in kg.TUNE_GRID]
    assert kg.auto_tune_grid(is_world=True) == [{}, {"ns_exponent": -0.5}]  # the losing sample=1e-5 left out
    assert kg.auto_gammas(is_world=False) == [0.0, 0.1, 0.2] and kg.auto_gammas(is_world=True) == [0.0, 0.2]
    grid = kg.auto_weight_grid(is_world=False)
    assert grid == [dict(c) for c in kg.WEIGHT_GRID] and grid and grid[0] is not kg.WEIGHT_GRID[0]
    ev, tr = _events(n_users=30), _triples()
    setup = make_eval_setup(ev, N_ITEMS, stage="valid", split="position", min_window_users=1)
    table, weights = kg.weight_search(setup, tr, kg.Song2VecConfig(dim=8, epochs=1), kg.KGConfig(), [], 0.5,
                                      kg.RecallConfig(n_neighbors=10), {}, n_seeds=20, n_boot=50)
    assert table.height == 1 and table["chosen"].to_list() == [True]  # no candidate: the prior alone
    assert weights == {r: kg.KGConfig().weight(r) for r in ("artist_genre", "song_artist", "song_genre")}


def test_identity_memo_hits_the_same_object_only_and_evicts_the_oldest():
    import polars as pl

    from musicrecall.cache import IdentityMemo

    memo, builds = IdentityMemo(size=2), []

    def build(tag):
        builds.append(tag)
        return tag

    a, b, c = pl.DataFrame({"x": [1]}), pl.DataFrame({"x": [1]}), pl.DataFrame({"x": [2]})
    assert memo.get((a,), 1, lambda: build("a1")) == "a1"
    assert memo.get((a,), 1, lambda: build("again")) == "a1"  # same object, same args: no rebuild
    assert memo.get((b,), 1, lambda: build("b1")) == "b1"  # equal content, another object: rebuilt
    assert memo.get((a,), 2, lambda: build("a2")) == "a2"  # other args
    assert memo.get((c,), 1, lambda: build("c1")) == "c1"  # evicts the least recently used (b)
    assert memo.get((b,), 1, lambda: build("b1 again")) == "b1 again"
    assert builds == ["a1", "b1", "a2", "c1", "b1 again"]
