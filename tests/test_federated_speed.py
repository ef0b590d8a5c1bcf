"""Speed-ups of notebook 07 that must not change a result: the audit's key sets and the setups cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from musicrecall.federated import pipeline as fp
from musicrecall.federated.audit import _KeySet


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_key_set_counts_exactly_like_a_search_of_every_word(dtype):
    rng = np.random.default_rng(0)
    hi = np.iinfo(dtype).max
    keys = rng.integers(0, hi, 5000, dtype=dtype, endpoint=True)
    # members, near misses that share the low bits the bitmap looks at, and random words
    low_twins = keys[:300] ^ dtype(1 << 40 if dtype == np.uint64 else 1 << 30)
    queries = np.concatenate([keys[:700], low_twins, rng.integers(0, hi, 20_000, dtype=dtype, endpoint=True)])
    rng.shuffle(queries)
    assert _KeySet(keys).count(queries) == int(np.isin(queries, keys).sum())
    assert np.array_equal(_KeySet(keys).hits(queries.reshape(-1, 7)), np.isin(queries, keys).reshape(-1, 7))
    assert _KeySet(keys[:0]).count(queries) == 0 and _KeySet(keys).count(queries[:0]) == 0


def _frames(n_users: int = 30, n_songs: int = 40, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 3000
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ev = pl.DataFrame({"user_id": rng.integers(0, n_users, n), "song_id": rng.integers(0, n_songs, n),
                       "ts": [t0 + timedelta(minutes=int(m)) for m in rng.integers(0, 30 * 24 * 60, n)],
                       "full_play": rng.random(n) < 0.6, "play_ms": rng.integers(0, 300_000, n)})
    items = pl.DataFrame({"song_id": np.arange(n_songs), "artist": [f"a{i % 7}" for i in range(n_songs)],
                          "album": [f"b{i % 11}" for i in range(n_songs)], "genre": ["pop", "rock"] * (n_songs // 2),
                          "language": ["en"] * n_songs, "version": ["original"] * n_songs,
                          "duration_ms": np.linspace(60_000, 400_000, n_songs).astype(np.int64),
                          "release_year": np.full(n_songs, 2015, dtype=np.int32)})
    return ev, items


def test_eval_setups_are_read_back_by_content_and_rebuilt_when_it_changes(monkeypatch):
    import musicrecall.evaluation as evaluation

    calls = []
    real = evaluation.make_eval_setup
    monkeypatch.setattr(evaluation, "make_eval_setup", lambda *a, **kw: calls.append(kw["stage"]) or real(*a, **kw))
    monkeypatch.setattr(fp, "_SETUPS", {})
    ev, items = _frames()
    first = fp.eval_setups(ev, items, max_plays=5)
    assert len(calls) == 3
    # a copy with the same content (another world with the same plays, e.g. the placebo) is read back
    again = fp.eval_setups(ev.clone(), items.clone(), max_plays=5)
    assert len(calls) == 3 and all(a is b for a, b in zip(first, again, strict=True))
    # the key follows the plays, the songs and max_plays
    changed_ev = ev.with_columns(full_play=pl.when(pl.int_range(pl.len()) == 0).then(~pl.col("full_play"))
                                 .otherwise(pl.col("full_play")))
    changed_items = items.with_columns(release_year=pl.lit(2016, dtype=pl.Int32))
    keys = {fp.content_key(fp.frames_key(e, i), m) for e, i, m in
            ((ev, items, 5), (changed_ev, items, 5), (ev, changed_items, 5), (ev, items, 4))}
    assert len(keys) == 4
    fp.eval_setups(changed_ev, items, max_plays=5)
    assert len(calls) == 6
    fresh = fp.eval_setups(changed_ev, items, max_plays=5)
    assert len(calls) == 6 and fresh[0].targets["all"].n_users > 0


def test_cold_report_ranks_once_and_gives_the_harness_hr_and_the_full_ranking_duration():
    from musicrecall.evaluation import evaluate_recommender
    from musicrecall.federated.coldstart import EmbeddingScorer, duration_at_k

    ev, items = _frames(n_users=60, n_songs=80, seed=3)
    valid, test, cold, *_ = fp.eval_setups(ev, items, max_plays=40)
    rng = np.random.default_rng(1)
    uvec, ivec = rng.normal(size=(60, 4)).astype(np.float32), rng.normal(size=(80, 4)).astype(np.float32)
    calls = []

    def user_vecs(u):
        calls.append(len(u))
        return uvec[u]

    scorer = EmbeddingScorer(user_vecs, ivec)
    rep = fp.cold_report("m", scorer, cold, test.split.test, k=20)
    assert len(calls) == 2  # one ranking and the AUC's pair scores (was four rankings)
    _, per_user = evaluate_recommender("m", EmbeddingScorer(lambda u: uvec[u], ivec).recommend, cold, ks=(20,), n_boot=10)
    assert cold.targets["all"].n_users > 5 and np.array_equal(rep["hr@20"], per_user["all"]["hr@20"])
    users = cold.targets["all"].users
    lists = np.argsort(-(uvec[users] @ ivec.T), axis=1)[:, :20]
    window = test.split.test.filter(pl.col("user_id").is_in(users))
    assert np.allclose(rep["duration"], duration_at_k(lists, users, window))
