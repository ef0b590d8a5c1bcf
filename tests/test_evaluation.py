"""Tests of musicrecall.evaluation: every metric against hand-computed values, split and leakage
guards, exact/approximate search, and the baselines on a planted structure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from musicrecall.evaluation import (
    ExactIndex,
    FaissIndex,
    ItemCFRecall,
    LeakageError,
    PopularityRecall,
    UserItemCSR,
    ann_recall,
    bootstrap_ci,
    build_targets,
    check_no_leakage,
    coverage,
    evaluate_lists,
    evaluate_scores,
    evaluate_topk,
    exclusion_csr,
    item_popularity,
    novelty,
    paired_bootstrap_lift,
    stage_targets,
    summarize,
    temporal_split,
    topk_scores,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _events(rows: list[tuple[int, int, int, bool]]) -> pl.DataFrame:
    """(user, song, hours after T0, full_play) -> an events frame with the canonical dtypes."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "song_id": [r[1] for r in rows],
            "ts": [T0 + timedelta(hours=r[2]) for r in rows],
            "full_play": [r[3] for r in rows],
        },
        schema={
            "user_id": pl.Int64(),
            "song_id": pl.Int64(),
            "ts": pl.Datetime("ms", "UTC"),
            "full_play": pl.Boolean(),
        },
    )


def _csr(sets: list[list[int]]) -> UserItemCSR:
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    indices = np.concatenate([np.sort(s) for s in sets]).astype(np.int64) if sets else np.zeros(0, np.int64)
    return UserItemCSR(users=np.arange(len(sets), dtype=np.int64), indptr=indptr, indices=indices)


def _random_events(seed: int = 0, n: int = 5000, days: int = 40) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    ms = rng.integers(0, days * 86_400_000, size=n)
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 100, size=n),
            "song_id": rng.integers(0, 300, size=n),
            "ts": [start + timedelta(milliseconds=int(m)) for m in ms],
            "full_play": rng.random(n) < 0.6,
        },
        schema_overrides={"ts": pl.Datetime("ms", "UTC")},
    )


# ------------------------------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    # user 0: targets {1, 5}; list [5, 2, 1, 9] -> hits at ranks 1 and 3
    # user 1: targets {7};    list [0, 1, 2, 3] -> no hit
    # user 2: targets {3, 4, 8}; list [4, 6, 7, 8] -> hits at ranks 1 and 4
    targets = _csr([[1, 5], [7], [3, 4, 8]])
    lists = np.array([[5, 2, 1, 9], [0, 1, 2, 3], [4, 6, 7, 8]])
    m = evaluate_topk(lists, targets, ks=(2, 4))
    np.testing.assert_allclose(m["hr@2"], [1, 0, 1])
    np.testing.assert_allclose(m["hr@4"], [1, 0, 1])
    np.testing.assert_allclose(m["recall@2"], [1 / 2, 0, 1 / 3])
    np.testing.assert_allclose(m["recall@4"], [2 / 2, 0, 2 / 3])
    d = [1 / math.log2(r + 1) for r in range(1, 5)]  # discount of ranks 1..4
    np.testing.assert_allclose(m["ndcg@2"], [d[0] / (d[0] + d[1]), 0, d[0] / (d[0] + d[1])])
    np.testing.assert_allclose(
        m["ndcg@4"], [(d[0] + d[2]) / (d[0] + d[1]), 0, (d[0] + d[3]) / (d[0] + d[1] + d[2])]
    )


def test_metrics_perfect_and_padding():
    targets = _csr([[3], [0, 1]])
    lists = np.array([[3, -1, -1], [1, 0, -1]])
    m = evaluate_topk(lists, targets, ks=(3,))
    np.testing.assert_allclose(m["ndcg@3"], [1, 1])
    np.testing.assert_allclose(m["recall@3"], [1, 1])
    with pytest.raises(ValueError):
        evaluate_topk(lists, targets, ks=(5,))  # lists too short for @5


def test_evaluate_lists_dedupe_realign_and_exclude():
    targets = _csr([[1, 2], [4]])
    lists = np.array([[4, 4, 0], [1, 1, 2]])  # rows belong to users [1, 0]
    m = evaluate_lists(lists, targets, ks=(2,), list_users=np.array([1, 0]))
    # user 0 gets [1, 2] after dedupe -> both hits; user 1 gets [4, 0] -> hit
    np.testing.assert_allclose(m["recall@2"], [1, 1])
    # exclusion removes song 1 from user 0's list: [2, -1] -> one of two targets
    ex = _csr([[1], []])
    m = evaluate_lists(lists, targets, ks=(2,), list_users=np.array([1, 0]), exclude=ex)
    np.testing.assert_allclose(m["recall@2"], [0.5, 1])
    # a target user without a list counts as a miss, it is not dropped
    m = evaluate_lists(lists[:1], targets, ks=(2,), list_users=np.array([1]))
    np.testing.assert_allclose(m["hr@2"], [0, 1])


def test_topk_matches_numpy_argsort():
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(37, 16)).astype(np.float32), rng.normal(size=(500, 16)).astype(np.float32)
    idx, val = topk_scores(u, v, 25, batch=8)
    ref = np.argsort(-(u @ v.T), axis=1)[:, :25]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(val, np.take_along_axis(u @ v.T, ref, axis=1), rtol=1e-5, atol=1e-5)


def test_topk_exclusion_masks():
    rng = np.random.default_rng(2)
    u, v = rng.normal(size=(20, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    base, _ = topk_scores(u, v, 5)
    ex = UserItemCSR(
        users=np.arange(20),
        indptr=np.arange(0, 21, dtype=np.int64) * 2,
        indices=np.sort(base[:, :2], axis=1).ravel(),
    )
    idx, _ = topk_scores(u, v, 5, exclude=ex, batch=7)
    for r in range(20):
        assert not set(base[r, :2]) & set(idx[r])
    np.testing.assert_array_equal(idx[:, :3], base[:, 2:5])  # everything else moves up by two
    # scipy input is accepted too, and excluding almost everything leaves -1 slots
    full = sp.csr_matrix(np.ones((20, 50), dtype=bool))
    full[:, 0] = False
    full.eliminate_zeros()
    idx2, val2 = topk_scores(u, v, 3, exclude=full)
    assert (idx2[:, 0] == 0).all() and (idx2[:, 1:] == -1).all() and np.isneginf(val2[:, 1:]).all()


def test_evaluate_scores_end_to_end():
    v = np.eye(6, dtype=np.float32)
    u = v[[2, 4]] + 0.1 * v[[3, 5]]  # user 0 prefers 2 then 3; user 1 prefers 4 then 5
    targets = _csr([[3], [4]])
    m = evaluate_scores(u, v, targets, ks=(1, 2))
    np.testing.assert_allclose(m["hr@1"], [0, 1])
    np.testing.assert_allclose(m["hr@2"], [1, 1])
    m = evaluate_scores(u, v, targets, ks=(1,), exclude=_csr([[2], []]))  # 2 known -> 3 moves up
    np.testing.assert_allclose(m["hr@1"], [1, 1])
    misaligned = UserItemCSR(users=np.array([1, 0]), indptr=np.array([0, 0, 1]), indices=np.array([2]))
    with pytest.raises(ValueError, match="aligned"):
        evaluate_scores(u, v, targets, ks=(1,), exclude=misaligned)


# ------------------------------------------------------------------------------------- targets
def test_discovery_repeat_split():
    history = _events([(1, 10, 0, True), (1, 11, 1, False), (2, 10, 2, True)])
    future = _events(
        [
            (1, 10, 100, True),  # repeat
            (1, 11, 101, True),  # repeat (history play was skipped but still a play)
            (1, 12, 102, True),  # discovery
            (1, 13, 103, False),  # not a full play -> not a target
            (2, 10, 104, True),  # repeat only -> user 2 has no discovery target
            (3, 14, 105, False),  # user 3 never full-plays -> no target of any kind
        ]
    )
    allt = build_targets(history, future, kind="all")
    disc = build_targets(history, future, kind="discovery")
    rep = build_targets(history, future, kind="repeat")
    assert allt.to_sets() == {1: {10, 11, 12}, 2: {10}}
    assert disc.to_sets() == {1: {12}}
    assert rep.to_sets() == {1: {10, 11}, 2: {10}}
    assert (allt.n_excluded, disc.n_excluded, rep.n_excluded) == (1, 2, 1)
    # explicit users keep their order and drop users without targets
    t = build_targets(history, future, users=np.array([2, 9, 1]), kind="all")
    assert t.users.tolist() == [2, 1] and t.n_excluded == 1
    ex = exclusion_csr(history, np.array([2, 9, 1]))
    assert ex.to_sets() == {2: {10}, 9: set(), 1: {10, 11}}


# ------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_mean_and_shrinks():
    rng = np.random.default_rng(3)
    small, big = rng.random(100), rng.random(10_000)
    m1, lo1, hi1 = bootstrap_ci(small, n_boot=500)
    m2, lo2, hi2 = bootstrap_ci(big, n_boot=500)
    assert lo1 < m1 < hi1 and lo2 < m2 < hi2
    assert (hi2 - lo2) < (hi1 - lo1) / 5  # width ~ 1/sqrt(n): 10x narrower expected
    assert bootstrap_ci(small, n_boot=500, seed=1) == bootstrap_ci(small, n_boot=500, seed=1)
    assert bootstrap_ci(np.full(50, 0.3))[1:] == pytest.approx((0.3, 0.3))


def test_bootstrap_cis_equal_bootstrap_ci_per_metric_exactly():
    from musicrecall.evaluation import bootstrap_cis

    rng = np.random.default_rng(5)
    per_user = {"hr@50": (rng.random(12_000) < 0.3).astype(float), "ndcg@50": rng.random(12_000),
                "other": rng.random(700)}  # another number of users: its own resamples
    got = bootstrap_cis(per_user, n_boot=400, seed=2)  # 12,000 users x 400: two chunks of resamples
    assert got == {k: bootstrap_ci(v, n_boot=400, seed=2) for k, v in per_user.items()}
    table = summarize(per_user, n_boot=400, seed=2)
    assert table.rows() == [(k, *got[k], len(v)) for k, v in per_user.items()]
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_cis({"x": np.array([1.0, np.nan])})


def test_paired_lift_sign_and_pairing():
    rng = np.random.default_rng(4)
    b = rng.random(2000)  # large user-level variance ...
    a = b * 1.03 + 0.001  # ... but A is consistently ~3% better for the same users
    lift, lo, hi = paired_bootstrap_lift(a, b, n_boot=500)
    assert lift == pytest.approx(a.mean() / b.mean() - 1)
    assert 0 < lo < lift < hi
    lift2, lo2, hi2 = paired_bootstrap_lift(b, a, n_boot=500)
    assert hi2 < 0 and lift2 < 0
    # unpaired resampling of the same data would give an interval straddling zero: pairing matters
    ma, la, ha = bootstrap_ci(a, n_boot=500, seed=0)
    mb, lb, hb = bootstrap_ci(b, n_boot=500, seed=1)
    assert la < hb  # marginal intervals overlap although the paired lift is clearly positive


# ------------------------------------------------------------------------------------- beyond accuracy
def test_coverage_novelty_summarize():
    lists = np.array([[0, 1], [0, 2], [0, -1]])
    assert coverage(lists, 10) == pytest.approx(0.3)
    pop = np.array([8, 2, 1, 0])
    n_users = 8
    per = novelty(lists, pop, n_users=n_users, per_user=True)
    np.testing.assert_allclose(per, [(0 + 2) / 2, (0 + 3) / 2, 0])
    assert novelty(lists, pop, n_users=n_users) == pytest.approx(np.mean([1, 1.5, 0]))
    ev = _events([(1, 0, 0, True), (2, 0, 1, False), (2, 0, 2, True), (3, 2, 3, True)])
    np.testing.assert_array_equal(item_popularity(ev, 4), [2, 0, 1, 0])
    df = summarize({"hr@2": np.array([1.0, 0.0, 1.0])}, n_boot=200, scalars={"coverage": 0.3}, model="pop")
    assert df.columns == ["model", "metric", "mean", "ci_lo", "ci_hi", "n_users"]
    assert df["mean"].to_list() == pytest.approx([2 / 3, 0.3])
    assert df["n_users"].to_list() == [3, None]


# ------------------------------------------------------------------------------------- search
def _clustered(n: int, d: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, d)).astype(np.float32)
    x = centers[rng.integers(0, n_clusters, size=n)] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    return x.astype(np.float32)


def test_faiss_hnsw_and_ivf_recall_vs_exact():
    items = _clustered(5000, 32, 50, seed=5)
    queries = _clustered(300, 32, 50, seed=6)
    exact_s, exact_i = ExactIndex(items).search(queries, 20)
    flat_s, flat_i = FaissIndex(items, kind="flat").search(queries, 20)
    assert ann_recall(flat_i, exact_i) > 0.99
    hnsw = FaissIndex(items, kind="hnsw", M=32, efConstruction=200, efSearch=128)
    h_s, h_i = hnsw.search(queries, 20)
    assert ann_recall(h_i, exact_i) > 0.9
    np.testing.assert_allclose(h_s, np.take_along_axis(queries @ items.T, h_i, axis=1), rtol=1e-4, atol=1e-4)
    raw = FaissIndex(items, kind="hnsw", M=32, efConstruction=200, efSearch=128, mips_transform=False)
    assert ann_recall(raw.search(queries, 20)[1], exact_i) < ann_recall(h_i, exact_i)
    ivf = FaissIndex(items, kind="ivf", nlist=64, nprobe=16)
    _, v_i = ivf.search(queries, 20)
    assert ann_recall(v_i, exact_i) > 0.9
    ivf.set_params(nprobe=1)
    assert ann_recall(ivf.search(queries, 20)[1], exact_i) < ann_recall(v_i, exact_i)
    # cosine = normalise + inner product
    c_s, c_i = ExactIndex(items, metric="cosine").search(queries, 5)
    nq = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    ni = items / np.linalg.norm(items, axis=1, keepdims=True)
    np.testing.assert_array_equal(c_i, np.argsort(-(nq @ ni.T), axis=1)[:, :5])


def test_ann_recall_hand_example():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert ann_recall(approx, exact) == pytest.approx((2 / 4 + 4 / 4) / 2)


# ------------------------------------------------------------------------------------- split
def test_temporal_split_boundaries_and_counts():
    ev = _random_events()
    ev = pl.concat([ev, ev.head(3).with_columns(pl.lit(None, dtype=pl.Datetime("ms", "UTC")).alias("ts"))])
    s = temporal_split(ev, valid_days=7, test_days=7)
    assert s.n_dropped_null_ts == 3
    assert s.train.height + s.valid.height + s.test.height + 3 == ev.height
    assert s.train["ts"].max() < s.t_valid
    assert s.valid["ts"].min() >= s.t_valid and s.valid["ts"].max() < s.t_test
    assert s.test["ts"].min() >= s.t_test
    assert s.t_test - s.t_valid == timedelta(days=7)
    assert s.t_test.hour == 0 and s.t_test.tzinfo is not None
    d = s.describe()
    assert d["rows"].to_list() == [s.train.height, s.valid.height, s.test.height]
    assert s.fit_frame("valid").height == s.train.height
    assert s.fit_frame("test").height == s.train.height + s.valid.height


def test_leakage_guard():
    s = temporal_split(_random_events(seed=7), valid_days=5, test_days=5)
    fit = s.fit_frame("test")
    # features built only from the fit frame cannot see a test event
    pop_features = fit.filter(pl.col("full_play")).group_by("song_id").agg(pl.len(), pl.col("ts").max())
    assert pop_features["ts"].max() < s.t_test
    check_no_leakage(fit, s.t_test)
    check_no_leakage(pop_features, s.t_test, name="popularity")
    check_no_leakage(s.fit_frame("valid"), s.t_valid)
    # a feature frame that (wrongly) used all events must be refused, at both stages
    leaky = pl.concat([fit, s.test])
    with pytest.raises(LeakageError):
        check_no_leakage(leaky, s.t_test)
    with pytest.raises(LeakageError):
        check_no_leakage(fit, s.t_valid)  # valid events are leakage when tuning on valid
    with pytest.raises(LeakageError):
        check_no_leakage(s.test["ts"].min(), s.t_test)


# ------------------------------------------------------------------------------------- baselines
def _planted(seed: int = 8, n_clusters: int = 10, per: int = 20, n_users: int = 300):
    """Users each like one cluster of songs; popularity is flat across clusters."""
    rng = np.random.default_rng(seed)
    n_items = n_clusters * per
    rows = []
    for u in range(n_users):
        c = u % n_clusters
        songs = rng.permutation(np.arange(c * per, (c + 1) * per))
        for h, s in enumerate(songs[:8]):
            rows.append((u, int(s), h, True))
        for h, s in enumerate(songs[8:12]):
            rows.append((u, int(s), 1000 + h, True))
    ev = _events(rows)
    return (
        ev,
        n_items,
        temporal_split(ev, t_test=T0 + timedelta(hours=500), t_valid=T0 + timedelta(hours=500)),
    )


def test_itemcf_recovers_planted_structure_and_beats_popularity():
    ev, n_items, s = _planted()
    fit, test = s.fit_frame("test"), s.test
    targets, ex = stage_targets(s, "test", kind="discovery")
    assert (
        targets.n_users == 300 and targets.to_sets() == build_targets(fit, test, kind="discovery").to_sets()
    )
    assert ex.to_sets() == exclusion_csr(fit, targets.users).to_sets()
    cf = ItemCFRecall(n_neighbors=30).fit(fit, n_items)
    idx, sims = cf.similar_items(np.array([0, 25]), 10)
    assert ((idx[0] >= 0) & (idx[0] < 20)).all() and ((idx[1] >= 20) & (idx[1] < 40)).all()
    assert (np.diff(sims, axis=1) <= 0).all()
    pop = PopularityRecall().fit(fit, n_items)
    k = 12
    # 12 unplayed songs remain in each user's cluster and the 4 targets are among them: a model that
    # learned the clusters fills its top 12 with exactly those songs
    m_cf = evaluate_lists(cf.recommend(targets.users, k, exclude=ex), targets, ks=(k,))
    m_pop = evaluate_lists(pop.recommend(targets.users, k, exclude=ex), targets, ks=(k,))
    assert m_cf[f"recall@{k}"].mean() > 0.98
    assert m_pop[f"recall@{k}"].mean() < 0.3
    lift, lo, _ = paired_bootstrap_lift(m_cf[f"recall@{k}"], m_pop[f"recall@{k}"], n_boot=200)
    assert lo > 1.0


def test_baselines_exclusion_and_fallback():
    ev = _events([(1, 0, 0, True), (1, 1, 1, True), (2, 0, 2, True), (2, 1, 3, True), (3, 2, 4, True)])
    pop = PopularityRecall().fit(ev, 5)
    assert pop.recommend([7], 3).tolist() == [[0, 1, 2]]  # counts 2, 2, 1; ties by id
    ex = _csr([[0, 2]])
    assert pop.recommend([7], 3, exclude=ex).tolist() == [[1, 3, 4]]
    cf = ItemCFRecall(n_neighbors=5).fit(ev, 5)
    # user 3 played song 2 only (no co-occurrence) -> pure popularity fallback, history excluded
    rec = cf.recommend([3, 99], 4, exclude=_csr([[2], []]))
    assert rec[0].tolist() == [0, 1, 3, 4]
    assert rec[1].tolist() == [0, 1, 2, 3]  # unseen user: popularity
    # recency-decayed popularity prefers recent plays
    dec = PopularityRecall(half_life_days=0.01).fit(ev, 5)
    assert dec.recommend([1], 1).tolist() == [[2]]


def test_itemcf_uses_sessions_when_present():
    """Each user listens to two clusters but never in the same session: session co-occurrence keeps
    the clusters apart, whole-history co-occurrence mixes them."""
    rng = np.random.default_rng(9)
    rows, sess = [], []
    for u in range(200):
        a, b = u % 5, (u + 1 + u // 5) % 5
        if a == b:
            b = (a + 1) % 5
        for si, c in enumerate((a, b)):
            for h, song in enumerate(rng.choice(np.arange(c * 10, c * 10 + 10), 4, replace=False)):
                rows.append((u, int(song), si * 10 + h, True))
                sess.append(si)
    ev = _events(rows).with_columns(pl.Series("session_id", sess, dtype=pl.Int64))
    by_session = ItemCFRecall(n_neighbors=20).fit(ev, 50)
    by_user = ItemCFRecall(n_neighbors=20, unit="user").fit(ev, 50)
    assert by_session.unit_used == "session" and by_user.unit_used == "user"
    cluster = np.arange(50)[:, None] // 10
    idx_s, _ = by_session.similar_items(np.arange(50), 20)
    idx_u, _ = by_user.similar_items(np.arange(50), 20)
    # session units: only same-cluster neighbours exist at all (9 per song)
    assert ((idx_s >= 0).sum(axis=1) == 9).all() and (
        idx_s[idx_s >= 0] // 10 == np.broadcast_to(cluster, idx_s.shape)[idx_s >= 0]
    ).all()
    # user units: cross-cluster neighbours appear, but the own cluster still ranks first
    assert (idx_u[:, 9:] >= 0).all()
    assert (idx_u[:, :9] // 10 == cluster).mean() > 0.9


def test_itemcf_similarity_hand_computed():
    # units (users): {0, 1}, {0, 1, 2}, {0, 2}; IUF weights 1/log2(1 + |unit|)
    ev = _events([(1, 0, 0, True), (1, 1, 1, True), (2, 0, 2, True), (2, 1, 3, True), (2, 2, 4, True)])
    ev = pl.concat([ev, _events([(3, 0, 5, True), (3, 2, 6, True), (3, 3, 7, False)])])
    w1, w2, w3 = 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(3)
    d0, d1, d2 = w1 + w2 + w3, w1 + w2, w2 + w3
    c01, c02, c12 = w1 + w2, w2 + w3, w2
    cf = ItemCFRecall(alpha=0.5).fit(ev, 4)
    s = cf.sim.toarray()
    np.testing.assert_allclose(s[0, 1], c01 / math.sqrt(d0 * d1), rtol=1e-5)
    np.testing.assert_allclose(s[1, 2], c12 / math.sqrt(d1 * d2), rtol=1e-5)
    assert s[:, 3].sum() == 0 and np.diag(s).sum() == 0  # song 3 never full-played; no self-similarity
    asym = ItemCFRecall(alpha=0.8).fit(ev, 4).sim.toarray()
    np.testing.assert_allclose(asym[0, 2], c02 / (d0**0.8 * d2**0.2), rtol=1e-5)
    np.testing.assert_allclose(asym[2, 0], c02 / (d2**0.8 * d0**0.2), rtol=1e-5)
    # recommendation = recency-weighted sum of neighbour similarities of the user's history
    rec = ItemCFRecall(alpha=0.5, recency_half_life=1.0).fit(ev, 4)
    h = rec.user_history([3]).toarray()[0]
    np.testing.assert_allclose(h[[2, 0]], [1.0, 0.5])  # song 2 is the most recent full play
    assert rec.recommend([3], 1, exclude=_csr([[0, 2]])).tolist() == [[1]]


def test_tie_aware_ann_recall_accepts_equal_scores_but_not_worse_ones():
    from musicrecall.evaluation import ann_recall, ann_recall_by_score

    exact_idx, exact_scores = np.array([[0, 1, 2]]), np.array([[3.0, 2.0, 1.0]])
    # The index returned item 5 instead of 2; item 5 ties with the exact 3rd score.
    assert ann_recall(np.array([[0, 1, 5]]), exact_idx) == pytest.approx(2 / 3)
    assert ann_recall_by_score(np.array([[3.0, 2.0, 1.0]]), exact_scores) == 1.0
    assert ann_recall_by_score(np.array([[3.0, 2.0, 0.5]]), exact_scores) == pytest.approx(2 / 3)
    assert ann_recall_by_score(np.array([[3.0, -np.inf, 1.0]]), exact_scores) == pytest.approx(2 / 3)


def test_paired_lift_interval_is_infinite_not_nan_when_b_is_often_zero():
    # B hits one user in 400: many resamples have mean(b) == 0, so the upper quantile is +inf, never NaN
    b = np.zeros(400)
    b[0] = 1.0
    a = np.ones(400)
    lift, lo, hi = paired_bootstrap_lift(a, b, n_boot=500, seed=0)
    assert lift == pytest.approx(399.0) and hi == math.inf and lo > 0


def test_evaluate_recommender_ranks_unexcluded_kinds_once_with_the_same_lists():
    """"all" and "repeat" (no exclusion) share one ranking call over the union of their users, and every
    kind's per-user values equal those of ranking its own users alone."""
    from musicrecall.evaluation import KINDS, evaluate_recommender, make_eval_setup

    setup = make_eval_setup(_random_events(3, n=8000), 300, stage="test", valid_days=5, test_days=5,
                            min_window_events=10, min_window_users=5)
    assert all(setup.targets[k].n_users > 0 for k in KINDS)
    calls = []

    def recommend(users, k, exclude):  # per user: a fixed pseudo-random ranking, then the exclusion
        calls.append((len(users), exclude is None))
        rows = [np.random.default_rng(int(u)).permutation(300) for u in users]
        if exclude is not None:
            ex = exclude.to_sets()
            rows = [r[~np.isin(r, list(ex.get(int(u), ())))] for u, r in zip(users, rows, strict=True)]
        return np.stack([r[:k] for r in rows])

    _, per_user = evaluate_recommender("m", recommend, setup, ks=(10, 50), n_boot=20)
    union = np.union1d(setup.targets["all"].users, setup.targets["repeat"].users)
    assert sorted(calls) == sorted([(len(union), True), (setup.targets["discovery"].n_users, False)])
    for kind in KINDS:
        t = setup.targets[kind]
        alone = evaluate_lists(recommend(t.users, 50, setup.exclude[kind]), t, (10, 50), exclude=setup.exclude[kind])
        for m, v in alone.items():
            np.testing.assert_array_equal(per_user[kind][m], v)
