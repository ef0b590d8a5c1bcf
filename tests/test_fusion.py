"""The quota merge of recall channels: exact quotas, no duplicates, back-fill when a channel runs short."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from musicrecall.evaluation import UserItemCSR
from musicrecall.fusion import (
    FusedRecall,
    ShortTermI2I,
    channel_quotas,
    memoize,
    merge_channel_lists,
    popularity_channel,
)


def reference_merge(cands: np.ndarray, quotas: np.ndarray, k: int, backfill: np.ndarray) -> tuple[list, list]:
    """Slow per-user statement of the rule, to check the vectorised one against."""
    lists, sources = [], []
    n_ch = cands.shape[1]
    for u in range(cands.shape[0]):
        chans = [[int(x) for x in cands[u, c] if x >= 0] for c in range(n_ch)] + [[int(x) for x in backfill]]
        ptr, cnt, taken, out, src = [0] * (n_ch + 1), [0] * (n_ch + 1), set(), [], []
        for _ in range(k):
            for c in range(n_ch + 1):
                while ptr[c] < len(chans[c]) and chans[c][ptr[c]] in taken:
                    ptr[c] += 1
            alive = [ptr[c] < len(chans[c]) for c in range(n_ch + 1)]
            keys = []
            for c in range(n_ch):
                q = max(int(quotas[c]), 1)
                if not alive[c]:
                    keys.append(np.inf)
                elif cnt[c] < quotas[c]:
                    keys.append((cnt[c] + 0.5) / q)
                else:
                    keys.append(1e9 + (cnt[c] - quotas[c] + 0.5) / q)
            keys.append(2e9 if alive[n_ch] else np.inf)
            c = int(np.argmin(keys))
            if not np.isfinite(keys[c]):
                break
            song = chans[c][ptr[c]]
            out.append(song)
            src.append(c)
            taken.add(song)
            ptr[c] += 1
            cnt[c] += 1
        lists.append(out + [-1] * (k - len(out)))
        sources.append(src + [-1] * (k - len(src)))
    return lists, sources


def test_channel_quotas_sum_to_k_and_follow_shares():
    q = channel_quotas({"a": 0.5, "b": 0.3, "c": 0.2, "d": 0.0}, 10)
    assert q == {"a": 5, "b": 3, "c": 2, "d": 0}
    q = channel_quotas({"a": 1, "b": 1, "c": 1}, 200)
    assert sum(q.values()) == 200 and max(q.values()) - min(q.values()) <= 1
    with pytest.raises(ValueError):
        channel_quotas({"a": 0.0}, 5)


def test_exact_quotas_and_no_duplicates_when_channels_overlap():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 50, 400, 40
    quotas = np.array([20, 12, 8])
    # heavily overlapping channels (all draw from the same 120 songs) with plenty of candidates each
    cands = np.stack([np.stack([rng.permutation(120)[:100] for _ in range(3)]) for _ in range(n_users)])
    lists, source = merge_channel_lists(cands, quotas, k, backfill=np.arange(n_items), n_items=n_items)
    assert lists.shape == (n_users, k) and (lists >= 0).all()
    for row, src in zip(lists, source, strict=True):
        assert len(set(row.tolist())) == k  # no duplicates
        assert np.bincount(src, minlength=4).tolist() == [20, 12, 8, 0]  # exact quotas, no back-fill
    # every listed song comes from the channel that the source says
    for u in range(n_users):
        for slot in range(k):
            assert lists[u, slot] in set(cands[u, source[u, slot]].tolist())


def test_backfill_when_a_channel_runs_short():
    cands = np.array([[[1, 2, 3, 4, 5, 6], [7, -1, -1, -1, -1, -1], [1, 2, 8, 9, 10, 11]]])
    lists, source = merge_channel_lists(cands, np.array([2, 2, 2]), 6, backfill=np.array([50, 51]))
    assert sorted(lists[0].tolist()) == sorted(set(lists[0].tolist()))
    counts = np.bincount(source[0], minlength=4)
    assert counts[1] == 1  # channel 1 had one song only ...
    assert counts[0] + counts[2] == 5  # ... its slot went to the channels that still had candidates
    assert counts[3] == 0  # so the back-fill was not needed
    # every channel empty: the back-fill list fills the slots, then slots stay empty
    lists, source = merge_channel_lists(np.full((1, 2, 3), -1), np.array([1, 1]), 4, backfill=np.array([9, 8]))
    assert lists[0].tolist() == [9, 8, -1, -1] and source[0].tolist() == [2, 2, -1, -1]


def test_backfill_skips_songs_already_listed():
    cands = np.array([[[3, 4], [4, 5]]])
    lists, source = merge_channel_lists(cands, np.array([2, 2]), 5, backfill=np.array([3, 5, 6, 7]))
    assert lists[0].tolist() == [3, 4, 5, 6, 7]
    assert source[0].tolist() == [0, 1, 1, 2, 2]  # channel 0 ran out (4 was taken): channel 1 took 5


def test_matches_the_slow_reference_on_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n_ch, m, k = int(rng.integers(1, 5)), int(rng.integers(1, 15)), int(rng.integers(1, 25))
        cands = rng.integers(-1, 30, size=(6, n_ch, m))
        quotas = np.array(list(channel_quotas({str(c): float(rng.random()) + 0.01 for c in range(n_ch)}, k).values()))
        backfill = rng.permutation(40)[: int(rng.integers(0, 40))]
        lists, source = merge_channel_lists(cands, quotas, k, backfill=backfill, batch=4)
        ref_lists, ref_sources = reference_merge(cands, quotas, k, backfill)
        assert lists.tolist() == ref_lists
        assert source.tolist() == ref_sources


def test_short_term_i2i_weights_recent_plays_more():
    # songs 0 (played last) and 1 (played before) each have one neighbour with the same similarity
    nb_ids = np.array([[10], [11]] + [[-1]] * 10)
    nb_sims = np.where(nb_ids >= 0, 0.9, -np.inf).astype(np.float32)
    ts = pl.datetime_range(pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 2), "1d", eager=True, time_zone="UTC")
    fit = pl.DataFrame({"user_id": [7, 7], "song_id": [1, 0], "ts": ts, "full_play": [True, True]})
    ch = ShortTermI2I.build(nb_ids, nb_sims, fit, n_recent=5, half_life=1.0)
    ids, scores = ch(np.array([7, 8]), 3)
    assert ids[0].tolist() == [10, 11, -1]  # the neighbour of the last play first
    assert scores[0, 0] == pytest.approx(0.9) and scores[0, 1] == pytest.approx(0.45)
    assert (ids[1] == -1).all()  # no recent plays, no candidates (the fusion back-fills)
    ex = UserItemCSR(np.array([7, 8]), np.array([0, 1, 1]), np.array([10]))
    assert ch(np.array([7, 8]), 3, ex)[0][0].tolist() == [11, -1, -1]


def test_short_term_i2i_searches_only_the_recent_plays_rows_and_equals_the_full_table():
    from musicrecall.fusion import neighbour_table_for

    rng = np.random.default_rng(3)
    n_items, n = 3000, 20
    vecs = rng.normal(size=(n_items, 16)).astype(np.float32)
    has = rng.random(n_items) < 0.9
    ts = pl.datetime_range(pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 1, 9, 59), "1m", eager=True, time_zone="UTC")
    fit = pl.DataFrame({"user_id": rng.integers(0, 60, 600), "song_id": rng.integers(0, n_items, 600), "ts": ts,
                        "full_play": rng.random(600) < 0.8})
    lazy_table = neighbour_table_for(vecs, has, n)
    lazy = ShortTermI2I.lazy(lazy_table, fit, n_recent=5)
    full = ShortTermI2I.build(*neighbour_table_for(vecs, has, n).full(), fit, n_recent=5)
    users = np.arange(70)  # ten of them without plays
    got, want = lazy(users, 50), full(users, 50)
    assert np.array_equal(got[0], want[0]) and np.allclose(got[1], want[1])
    seeds = np.unique(lazy.seeds["song_id"].to_numpy())
    assert lazy_table.n_searched == int(has[seeds].sum()) < int(has.sum()) // 5  # only the recent plays' rows


def test_fused_recall_respects_exclusion_and_memo():
    calls = []

    def ch_a(users, k, exclude=None):
        calls.append(k)
        ids = np.tile(np.arange(k), (len(users), 1))
        return ids, np.ones_like(ids, dtype=np.float32)

    def ch_b(users, k, exclude=None):
        ids = np.tile(np.arange(100, 100 + k), (len(users), 1))
        return ids, np.ones_like(ids, dtype=np.float32)

    a = memoize(ch_a)
    fused = FusedRecall({"a": a, "b": ch_b}, {"a": 0.5, "b": 0.5}, popularity_channel(np.arange(300.0)))
    lists, source = fused.fuse(np.array([1, 2]), 10)
    assert sorted(lists[0].tolist()) == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]
    fused.recommend(np.array([1, 2]), 6)  # shorter k: served from the memo
    assert calls == [10]


def test_restrict_stage_keeps_the_channels_and_renormalises_their_shares():
    from musicrecall.fusion import RecallStage, restrict_stage

    def const(base):
        def ch(users, k, exclude=None):
            ids = np.tile(np.arange(base, base + k), (len(users), 1))
            return ids, np.ones_like(ids, dtype=np.float32)
        return ch

    channels = {"short_term": memoize(const(0)), "sasrec": memoize(const(100)), "audio_i2i": memoize(const(200))}
    shares = {"short_term": 0.3, "sasrec": 0.6, "audio_i2i": 0.1}
    pop = popularity_channel(np.arange(400.0))
    full = RecallStage("test", None, channels, {"short_term": "s", "sasrec": "q"}, FusedRecall(channels, shares, pop), pop)
    small = restrict_stage(full, ["short_term", "audio_i2i"], shares)
    assert list(small.channels) == ["short_term", "audio_i2i"] and list(small.scorers) == ["short_term"]
    assert small.channels["short_term"] is channels["short_term"]  # memoised lists are shared
    _, source = small.fused.fuse(np.array([1]), 8)
    assert np.bincount(source[0], minlength=2).tolist() == [6, 2]  # 0.3 : 0.1 of 8 slots
    assert full.fused.channels.keys() == channels.keys()  # the full stage is unchanged


def test_ranking_audio_set_uses_no_play_after_the_cut():
    """The songs that get audio for ranking (``cold_share = 0``) depend only on plays before the cut."""
    from datetime import UTC, datetime, timedelta

    from musicrecall.audio.simulated import select_songs

    t0, cut = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
    rng = np.random.default_rng(0)
    before = pl.DataFrame({"song_id": rng.integers(0, 30, 400), "full_play": rng.random(400) < 0.8,
                           "ts": [t0 + timedelta(hours=int(h)) for h in rng.integers(0, 200, 400)]})
    after = pl.DataFrame({"song_id": rng.integers(20, 60, 400), "full_play": np.ones(400, dtype=bool),
                          "ts": [cut + timedelta(hours=int(h)) for h in rng.integers(0, 100, 400)]})
    alone, cold = select_songs(before, cut, 10, cold_share=0.0)
    with_future, cold2 = select_songs(pl.concat([before, after]), cut, 10, cold_share=0.0)
    assert len(alone) == 10 and len(cold) == len(cold2) == 0
    np.testing.assert_array_equal(alone, with_future)
    leaky, _ = select_songs(pl.concat([before, after]), cut, 10, cold_share=0.3)
    assert set(leaky) - set(alone)  # the cold draw (notebook 06's set) does look past the cut


def test_csr_contains_matches_a_set_lookup_and_never_contains_empty_slots():
    from musicrecall.fusion import csr_contains

    rng = np.random.default_rng(3)
    sets = [set(rng.choice(30, rng.integers(0, 6), replace=False).tolist()) for _ in range(8)]
    indptr = np.cumsum([0] + [len(s) for s in sets])
    indices = np.concatenate([sorted(s) for s in sets]).astype(np.int64)
    ids = rng.integers(-1, 31, (8, 12))
    ids[0, 0], ids[1, 0] = -1, 29  # the last item of the catalogue and an empty slot next to it
    got = csr_contains(np.arange(8)[:, None], ids, indptr, indices)
    want = np.array([[x in sets[r] for x in row] for r, row in enumerate(ids)])
    assert np.array_equal(got, want) and not got[ids < 0].any()
    assert not csr_contains(np.array([0]), np.array([3]), np.array([0, 0]), np.array([], dtype=np.int64)).any()
