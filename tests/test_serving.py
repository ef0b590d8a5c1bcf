"""Multi-interest serving: per-interest queries, global merge vs quota merge, coverage measures."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from musicrecall.evaluation import ExactIndex, UserItemCSR
from musicrecall.serving import (
    genre_coverage,
    global_merge,
    history_interests,
    interest_coverage,
    interest_quotas,
    merged_lists,
    quota_merge,
    search_interests,
    true_song_clusters,
)


def _random_candidates(rng, n_users=40, k_max=4, c=30, n_items=60):
    """Overlapping candidate lists (many duplicates across interests), sorted by descending score."""
    idx = np.stack([np.stack([rng.choice(n_items, c, replace=False) for _ in range(k_max)]) for _ in range(n_users)])
    scores = -np.sort(rng.random((n_users, k_max, c)), axis=2)
    active = rng.random((n_users, k_max)) < 0.8
    active[:, 0] = True
    idx = np.where(active[:, :, None], idx, -1)
    scores = np.where(active[:, :, None], -scores, -np.inf)
    return scores, idx, active


def test_interest_quotas_sum_to_k_with_floor_and_proportional():
    w = np.array([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    active = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)
    q = interest_quotas(w, active, k=100, floor_share=0.05)
    assert (q.sum(1) == 100).all()
    assert (q[~active] == 0).all()
    assert (q[active] >= 5).all()  # the floor, even for an interest of weight 0
    assert q[0, 0] > q[0, 1] > q[0, 2]
    assert q[1].tolist() == [25, 25, 25, 25]
    assert q[2].tolist() == [95, 5, 0, 0]


def test_interest_quotas_floor_shrinks_when_too_many_interests():
    q = interest_quotas(np.full((1, 4), 0.25), np.ones((1, 4), bool), k=6, floor_share=0.5)
    assert q.sum() == 6 and (q >= 1).all()


@pytest.mark.parametrize("seed", range(5))
def test_quota_merge_respects_quotas_and_never_duplicates(seed):
    rng = np.random.default_rng(seed)
    scores, idx, active = _random_candidates(rng)
    k = 20
    quotas = interest_quotas(rng.random(active.shape), active, k, floor_share=0.1)
    lists, source = quota_merge(scores, idx, quotas, k)
    assert lists.shape == (idx.shape[0], k)
    for u in range(lists.shape[0]):
        row = lists[u][lists[u] >= 0]
        assert row.shape[0] == np.unique(row).shape[0], "duplicate song in a merged list"
        assert row.shape[0] == k  # 30 candidates per interest always suffice here
        counts = np.bincount(source[u][source[u] >= 0], minlength=idx.shape[1])
        assert (counts <= quotas[u]).all()
        for slot in range(k):  # every claimed song comes from its source interest's candidates
            if source[u, slot] >= 0:
                assert lists[u, slot] in idx[u, source[u, slot]]
    assert (source >= 0).mean() > 0.9  # back-fill by score is the exception, not the rule


def test_quota_merge_gives_a_minor_interest_its_slots_where_global_merge_does_not():
    # interest 0 dominates every score; interest 1 has weight 0.3
    idx = np.array([[np.arange(0, 10), np.arange(100, 110)]])
    scores = np.array([[np.linspace(10, 9, 10), np.linspace(1, 0.5, 10)]])
    glob = global_merge(scores, idx, 10)
    assert set(glob[0]) == set(range(10))
    quotas = interest_quotas(np.array([[0.7, 0.3]]), np.ones((1, 2), bool), 10, floor_share=0.0)
    lists, source = quota_merge(scores, idx, quotas, 10)
    assert quotas[0].tolist() == [7, 3]
    assert set(lists[0]) == set(range(7)) | {100, 101, 102}
    assert (source[0] == 1).sum() == 3


def test_quota_merge_replaces_claimed_duplicates_from_its_own_list_then_backfills():
    idx = np.array([[[1, 2, 3, 4], [1, 2, -1, -1]]])  # interest 1 shares its only candidates and runs short
    scores = np.where(idx >= 0, np.array([[[4.0, 3, 2, 1], [5, 4, 0, 0]]]), -np.inf)
    lists, source = quota_merge(scores, idx, np.array([[2, 2]]), 4)
    assert sorted(lists[0].tolist()) == [1, 2, 3, 4]
    assert len(set(lists[0].tolist())) == 4


def test_global_merge_sorts_by_score_and_deduplicates():
    idx = np.array([[[5, 6, 7], [6, 8, -1]]])
    scores = np.array([[[0.9, 0.5, 0.1], [0.8, 0.7, -np.inf]]])
    assert global_merge(scores, idx, 4)[0].tolist() == [5, 6, 8, 7]
    assert global_merge(scores, idx, 6)[0].tolist() == [5, 6, 8, 7, -1, -1]


def test_search_interests_one_query_per_active_interest_and_exclusion():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(50, 8)).astype(np.float32)
    vecs = rng.normal(size=(3, 2, 8)).astype(np.float32)
    active = np.array([[True, True], [True, False], [True, True]])
    scores, idx = search_interests(ExactIndex(items), vecs, active, 5)
    assert idx.shape == (3, 2, 5)
    assert (idx[1, 1] == -1).all() and np.isneginf(scores[1, 1]).all()
    expect = np.argsort(-(items @ vecs[0, 0]))[:5]
    assert idx[0, 0].tolist() == expect.tolist()
    excl = UserItemCSR(np.arange(3), np.array([0, 2, 2, 3]), np.array([*sorted(expect[:2]), 0], dtype=np.int64))
    _, idx_x = search_interests(ExactIndex(items), vecs, active, 5, exclude=excl)
    assert not set(expect[:2]) & set(idx_x[0].ravel().tolist())
    assert 0 not in idx_x[2]
    assert (idx_x[0, 0, :3] == expect[2:5]).all()


def test_merged_lists_both_ways_from_the_same_queries():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(80, 8)).astype(np.float32)
    vecs = rng.normal(size=(6, 3, 8)).astype(np.float32)
    active = np.ones((6, 3), bool)
    lists, source = merged_lists(ExactIndex(items), vecs, active, rng.random((6, 3)), 12)
    for name in ("global", "quota"):
        assert lists[name].shape == (6, 12)
        assert all(len(set(r)) == 12 for r in lists[name].tolist())
    assert source.shape == (6, 12)


def test_genre_and_interest_coverage():
    lists = np.array([[0, 1, 2, 3], [0, 0, -1, -1]])
    genre = np.array([0, 0, 1, 2])
    assert genre_coverage(lists, genre, 4).tolist() == [0.75, 0.25]
    cluster = np.array([10, 10, 11, 12])
    truth = pl.DataFrame({"user_id": [7, 7, 7, 9], "cluster": [10, 11, 13, 10]})
    cov = interest_coverage(lists, np.array([7, 9]), cluster, truth, min_songs=1)
    assert cov.tolist() == pytest.approx([2 / 3, 1.0])
    cov2 = interest_coverage(lists, np.array([7, 8]), cluster, truth, min_songs=2)
    assert cov2[0] == pytest.approx(1 / 3) and np.isnan(cov2[1])


def test_true_song_clusters_from_truth():
    style = pl.DataFrame({"song_id": [2, 0], "pref_cluster": [5, 3]})
    assert true_song_clusters(style, 3).tolist() == [3, -1, 5]


def test_relation_coverage_stays_a_share_when_the_relation_has_more_values_than_slots():
    # 1,000 artists, lists of 4 songs: the share is of the 4 artists a list could hold, not of 1,000
    artist = np.arange(1000)
    assert genre_coverage(np.array([[0, 1, 2, 3], [5, 5, 5, -1]]), artist, 1000).tolist() == [1.0, 0.25]


def test_history_interests_stand_in_for_ground_truth_on_real_data():
    # user 0: 6 plays of artist 0, 3 of artist 1, 1 of artist 2; user 1: only artist 2
    artist = np.array([0, 0, 1, 2])
    fit = pl.DataFrame({"user_id": [0] * 10 + [1] * 3, "song_id": [0, 1, 0, 1, 0, 1, 2, 2, 2, 3, 3, 3, 3],
                        "full_play": [True] * 13})
    truth = history_interests(fit, artist, max_interests=4, min_share=0.2)
    assert truth.sort("user_id", "cluster").rows() == [(0, 0), (0, 1), (1, 2)]  # artist 2 is 10% of user 0
    lists = np.array([[0, 1, 3], [3, 0, 1]])
    cov = interest_coverage(lists, np.array([0, 1]), artist, truth, min_songs=1)
    assert cov.tolist() == [0.5, 1.0]


def test_interest_ann_recall_checks_the_active_queries_against_exact_search():
    from musicrecall.serving import interest_ann_recall

    rng = np.random.default_rng(0)
    items = rng.normal(size=(300, 8)).astype(np.float32)
    vecs = rng.normal(size=(40, 3, 8)).astype(np.float32)
    active = np.ones((40, 3), bool)
    active[:, 2] = False

    class Spy:
        """Exact search that records the queries it was sent."""

        def __init__(self, shift: int = 0):
            self.exact, self.shift, self.sent = ExactIndex(items), shift, []

        def search(self, q, k):
            self.sent.append(q)
            s, i = self.exact.search(q, k + self.shift)
            return s[:, self.shift:], i[:, self.shift:]

    spy = Spy()
    assert interest_ann_recall(spy, items, vecs, active, k=20, max_queries=50) == 1.0
    sent = np.concatenate(spy.sent)
    assert sent.shape[0] == 50  # a sample of the 80 active queries, never an inactive one
    assert {tuple(r) for r in sent} <= {tuple(r) for r in vecs[:, :2].reshape(-1, 8)}
    # an index that misses each query's 5 best songs returns 15 of the exact 20
    assert interest_ann_recall(Spy(shift=5), items, vecs, active, k=20) == pytest.approx(0.75)
    assert np.isnan(interest_ann_recall(spy, items, vecs, np.zeros_like(active), k=20))
