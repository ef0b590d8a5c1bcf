"""Item-CF's sparse neighbour search gives the neighbours of the dense computation it replaced."""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrecall.evaluation import ItemCFRecall


def _dense_neighbours(x: sp.csr_matrix, xw: sp.csr_matrix, n: int, alpha: float, kn: int) -> np.ndarray:
    """The former dense block computation: full co-occurrence, asymmetric cosine, no self, top-kn > 0."""
    c = (x.T @ xw).toarray().astype(np.float64)
    deg = np.asarray(xw.sum(axis=0)).ravel()
    with np.errstate(divide="ignore"):
        left = np.where(deg > 0, deg ** (-alpha), 0.0)
        right = np.where(deg > 0, deg ** (alpha - 1.0), 0.0)
    s = c * left[:, None] * right[None, :]
    np.fill_diagonal(s, 0.0)
    return s


def test_sparse_neighbours_equal_the_dense_top_k():
    rng = np.random.default_rng(0)
    n_units, n = 300, 500
    u = rng.integers(0, n_units, 6000)
    it = (rng.zipf(1.6, 6000) - 1) % n  # popular songs co-occur a lot: ties and long rows
    x = sp.csr_matrix((np.ones(len(u), np.float32), (u, it)), shape=(n_units, n))
    x.data[:] = 1.0
    w = 1.0 / np.log2(1.0 + np.maximum(np.diff(x.indptr), 1))
    xw = sp.csr_matrix(sp.diags(w.astype(np.float32)) @ x)
    for alpha, kn, block in ((0.5, 10, 64), (0.8, 40, 4096)):
        cf = ItemCFRecall(n_neighbors=kn, alpha=alpha, block=block)
        got = cf._neighbours(x, xw, n).toarray()
        ref = _dense_neighbours(x, xw, n, alpha, kn)
        for i in range(n):
            row = ref[i]
            pos = np.flatnonzero(row > 0)
            kth = np.sort(row[pos])[::-1][min(kn, len(pos)) - 1] if len(pos) else np.inf
            kept = np.flatnonzero(got[i])
            assert len(kept) == min(kn, len(pos))
            np.testing.assert_allclose(got[i, kept], row[kept], rtol=1e-5)
            assert (row[kept] >= kth * (1 - 1e-5)).all()  # only songs at or above the k-th best
            strictly = pos[row[pos] > kth * (1 + 1e-5)]
            assert set(strictly) <= set(kept)  # every song strictly above the cut is kept


def test_item_cf_recommends_from_sparse_neighbours():
    ev = pl.DataFrame({"user_id": [0, 0, 0, 1, 1, 2, 2], "song_id": [0, 1, 2, 0, 1, 1, 2], "ts": list(range(7)),
                       "full_play": [True] * 7})
    cf = ItemCFRecall(n_neighbors=2, unit="user").fit(ev, 4)
    assert cf.sim is not None and cf.sim[0, 0] == 0 and cf.sim[0, 1] > 0
    lists = cf.recommend(np.array([2]), 4)
    assert lists[0, 0] == 0  # song 0 co-occurs with both of user 2's songs


def _markov_events(rng: np.random.Generator, n_users: int = 90, n: int = 70) -> pl.DataFrame:
    rows = []
    for u in range(n_users):
        songs = (rng.zipf(1.5, rng.integers(2, 40)) - 1) % n
        rows += [{"user_id": u, "song_id": int(s), "ts": t, "full_play": bool(rng.random() < 0.9)} for t, s in enumerate(songs)]
    return pl.DataFrame(rows)


def test_markov_sparse_lists_equal_ranking_the_dense_scores():
    from musicrecall.evaluation.baselines import MarkovRecall, _topk_dense_rows

    rng = np.random.default_rng(1)
    n = 70
    mk = MarkovRecall().fit(_markov_events(rng, n=n), n)
    users = np.r_[rng.permutation(90)[:60], [500]]  # one user without any play: popularity
    lengths = rng.integers(0, 69, len(users))
    lengths[0] = n  # every song excluded: the list is all -1
    exclude = (np.r_[0, np.cumsum(lengths)], np.concatenate([rng.permutation(n)[:m] for m in lengths]))
    for k in (5, 30, n):
        for ex in (None, exclude):
            ref = _topk_dense_rows(mk._scores_from_last(mk.last_play(users)), k,
                                   None if ex is None else (np.asarray(ex[0]), np.asarray(ex[1])), 0, len(users))
            got = MarkovRecall.recommend(mk, users, k, ex, batch=17)
            np.testing.assert_array_equal(got, ref)
    assert (MarkovRecall.recommend(mk, users, n, exclude)[0] == -1).all()


def test_repeat_targets_reuse_the_lists_of_all_and_a_refit_forgets_them():
    rng = np.random.default_rng(2)
    ev = _markov_events(rng)
    from musicrecall.evaluation.baselines import MarkovRecall
    from musicrecall.models.puresvd import PureSVD

    for model in (MarkovRecall().fit(ev, 70), ItemCFRecall(unit="user").fit(ev, 70), PureSVD(factors=4).fit(ev, 70)):
        users = np.arange(0, 80, 3)
        first = model.recommend(users, 20)
        sub = users[[5, 1, 2]]
        assert model._memo.get(sub, 20) is not None  # a subset of the users ranked without exclusion
        np.testing.assert_array_equal(model.recommend(sub, 20), first[[5, 1, 2]])
        assert model._memo.get(np.array([1000]), 20) is None and model._memo.get(sub, 10) is None
        ex = (np.array([0, 1, 1, 1]), np.array([int(first[5, 0])]))
        assert model.recommend(sub, 20, ex)[0, 0] != first[5, 0]  # exclusion: computed, not looked up
        model.fit(ev.filter(pl.col("user_id") < 40), 70)
        assert model._memo.get(sub, 20) is None
