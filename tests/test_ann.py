"""ANN indexes for serving at catalogue scale (musicrecall.evaluation.search): IVF / IVF-PQ with the MIPS
transform, and the serving defaults. Recall is measured against exact search on clustered vectors whose
norms vary (as trained song vectors' do: popular songs have longer vectors)."""

from __future__ import annotations

import numpy as np
import pytest

from musicrecall.evaluation.search import ExactIndex, FaissIndex, ann_recall


def _songs(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d)).astype(np.float32)
    p = 1.0 / np.arange(1, 41)
    items = centres[rng.choice(40, n, p=p / p.sum())] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    items *= rng.lognormal(0, 0.35, n).astype(np.float32)[:, None] / np.linalg.norm(items, axis=1, keepdims=True)
    queries = centres[rng.integers(0, 40, 200)] + 0.3 * rng.standard_normal((200, d)).astype(np.float32)
    return items.astype(np.float32), queries.astype(np.float32)


def test_ivf_with_the_mips_transform_beats_a_raw_inner_product_ivf() -> None:
    items, queries = _songs(8000, 32, 0)
    _, exact = ExactIndex(items).search(queries, 50)
    mips = FaissIndex(items, "ivf", nlist=64, nprobe=8)
    raw = FaissIndex(items, "ivf", nlist=64, nprobe=8, mips_transform=False)
    s, i = mips.search(queries, 50)
    r_mips, r_raw = ann_recall(i, exact), ann_recall(raw.search(queries, 50)[1], exact)
    assert r_mips > 0.9 and r_mips > r_raw
    # returned scores are the exact inner products of the returned songs
    np.testing.assert_allclose(s, np.take_along_axis(queries @ items.T, i, axis=1), rtol=1e-4, atol=1e-4)


def test_ivfpq_reranks_exactly_and_its_recall_grows_with_nprobe() -> None:
    items, queries = _songs(8000, 32, 1)
    _, exact = ExactIndex(items).search(queries, 50)
    index = FaissIndex(items, "ivfpq", nlist=64, nprobe=16, pq_m=11)  # 33 dims with the transform: 3 per sub-quantiser
    s, i = index.search(queries, 50)
    assert ann_recall(i, exact) > 0.85
    np.testing.assert_allclose(s, np.take_along_axis(queries @ items.T, i, axis=1), rtol=1e-4, atol=1e-4)
    index.set_params(nprobe=1)
    assert ann_recall(index.search(queries, 50)[1], exact) < ann_recall(i, exact)
    with pytest.raises(ValueError, match="must divide"):
        FaissIndex(items, "ivfpq", nlist=64, pq_m=5, mips_transform=False)


def test_serving_defaults_work_from_a_handful_of_songs_up() -> None:
    for n in (5, 300, 8000):
        items, queries = _songs(n, 16, 2)
        index = FaissIndex(items)  # the serving defaults: IVF + MIPS transform, nprobe 128
        assert index.kind == "ivf" and index.ntotal == n
        k = min(20, n)
        _, exact = ExactIndex(items).search(queries, k)
        # with at most 128 lists every list is probed: exact; at 8000 songs (205 lists) ANN, still >= 0.95
        assert ann_recall(index.search(queries, k)[1], exact) >= (0.999 if n < 128 * 39 else 0.95)


def test_per_interest_queries_go_in_one_batched_search_call() -> None:
    """MIND serving (serving.search_interests): every active interest of every user in one search call."""
    from musicrecall.serving import search_interests

    items, _ = _songs(500, 8, 3)
    calls: list[int] = []

    class Counting(ExactIndex):
        def search(self, queries, k, exclude=None):  # noqa: ANN001, ANN202 - the Index protocol
            calls.append(len(queries))
            return super().search(queries, k, exclude)

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((6, 4, 8)).astype(np.float32)
    active = rng.random((6, 4)) < 0.6
    active[:, 0] = True
    scores, idx = search_interests(Counting(items), vecs, active, 10)
    assert calls == [int(active.sum())]
    assert (idx[~active] == -1).all() and (idx[active] >= 0).all()


def _catalogue(n: int, d: int, seed: int, nq: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """The 1M bench's catalogue at a smaller size (bench/bench_retrieval_1m.py ``synthetic``): Zipf-sized
    styles inside genres, log-normal popularity norms, queries mixing one to three styles."""
    rng = np.random.default_rng(seed)
    genres = rng.standard_normal((20, d)).astype(np.float32)
    n_cl = 400
    centres = genres[rng.integers(0, 20, n_cl)] + 0.6 * rng.standard_normal((n_cl, d)).astype(np.float32)
    p = 1.0 / np.arange(1, n_cl + 1)
    p /= p.sum()
    items = centres[rng.choice(n_cl, n, p=p)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    items *= rng.lognormal(0, 0.35, n).astype(np.float32)[:, None] / np.linalg.norm(items, axis=1, keepdims=True)
    taste = rng.integers(1, 4, nq)
    queries = 0.3 * rng.standard_normal((nq, d)).astype(np.float32)
    for j in range(3):
        has = taste > j
        queries[has] += rng.uniform(0.3, 1.0, (int(has.sum()), 1)).astype(np.float32) * centres[rng.choice(n_cl, int(has.sum()), p=p)]
    return items.astype(np.float32), queries


def test_serving_defaults_keep_recall_at_a_fifth_of_the_exact_work() -> None:
    """The bar of issue 18 (recall@200 >= 0.95 at >= 5x the speed of exact search), pinned without timing:
    speed as faiss's own count of distance computations per query (the scanned list entries + the ``nlist``
    coarse distances + the ``k`` exact re-scores) against the ``n`` of exact search. At 60,000 songs the
    defaults (4*sqrt(n) = 979 lists, nprobe 128) gave recall 0.999 at 8.6x less work (nprobe 64: 0.992 at
    15.8x; 13:30 UTC 5 Dec); nprobe 16 gives 0.885 (fails the recall half), nprobe 256 4.2x (the work half)."""
    import faiss

    items, queries = _catalogue(60_000, 32, 5)
    k = 200
    _, exact = ExactIndex(items).search(queries, k)
    index = FaissIndex(items)

    def recall_and_work() -> tuple[float, float]:
        faiss.cvar.indexIVF_stats.reset()
        _, idx = index.search(queries, k)
        work = faiss.cvar.indexIVF_stats.ndis / len(queries) + index._ivf.nlist + k
        return ann_recall(idx, exact), len(items) / work

    recall, less_work = recall_and_work()
    assert recall >= 0.95 and less_work >= 5, (recall, less_work)
    # the same build probing too few or too many lists misses the bar: each half of the test can fail
    index.set_params(nprobe=16)
    assert recall_and_work()[0] < 0.95
    index.set_params(nprobe=256)
    assert recall_and_work()[1] < 5


def test_transformed_search_is_blind_to_the_query_scale() -> None:
    """Inner-product order does not depend on a query's norm, so neither may the index's answer. Trained user /
    interest vectors are often much shorter than the longest song vector (30Music SASRec: songs' norms up to
    1.3, queries about 0.4); before queries went onto the items' sphere, IVF's coarse step then ranked lists by
    their centroid's norm, and recall@200 fell to 0.31 at nprobe 64 (200k tiled SASRec vectors)."""
    items, queries = _catalogue(20_000, 16, 6, nq=200)
    _, exact = ExactIndex(items).search(queries, 100)
    for kind in ("ivf", "hnsw"):
        index = FaissIndex(items, kind, nprobe=16) if kind == "ivf" else FaissIndex(items, kind, efConstruction=40)
        _, base = index.search(queries, 100)
        for scale in (0.01, 100.0):
            s, idx = index.search(queries * scale, 100)
            assert ann_recall(idx, base) >= 0.99, (kind, scale)
            np.testing.assert_allclose(s, scale * np.take_along_axis(queries @ items.T, idx, axis=1), rtol=1e-3, atol=1e-4)
        assert ann_recall(base, exact) >= 0.8, kind
