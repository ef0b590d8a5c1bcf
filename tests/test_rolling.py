"""Rolling next-play evaluation, the previous-song Markov baseline and the leave-last-out protocol.

The effect tests use a log whose next song is a deterministic function of the previous one inside a
session: the Markov baseline must see it (HR@1 near 1) and popularity must not; shuffling each user's
order must make it vanish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from musicrecall.evaluation import (
    MarkovRecall,
    PopularityRecall,
    evaluate_recommender,
    make_eval_setup,
    rolling_lift,
    rolling_lift_table,
    rolling_next_play,
    rolling_targets,
    rolling_validator,
)
from musicrecall.evaluation.rolling import leave_last_out_eval, model_score_fn

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SCHEMA = {"user_id": pl.Int64(), "song_id": pl.Int64(), "ts": pl.Datetime("ms", "UTC"), "full_play": pl.Boolean(),
          "session_id": pl.Int64()}


def _chain_log(n_users: int = 150, n_items: int = 60, per_user: int = 40, session_len: int = 8, days: int = 30,
               shuffle: bool = False, seed: int = 0, ordinal: bool = False) -> pl.DataFrame:
    """Inside a session the next song is ``nxt[previous]``; a session starts on a random song."""
    rng = np.random.default_rng(seed)
    nxt = rng.permutation(n_items)
    rows, sid = [], 0
    for u in range(n_users):
        songs, sess = [], []
        for p in range(per_user):
            if p % session_len == 0:
                sid += 1
                songs.append(int(rng.integers(n_items)))
            else:
                songs.append(int(nxt[songs[-1]]))
            sess.append(sid)
        if shuffle:
            songs = [songs[i] for i in rng.permutation(per_user)]
        if ordinal:
            ts = [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=p) for p in range(per_user)]
        else:
            ts = sorted(T0 + timedelta(seconds=int(x)) for x in rng.integers(0, days * 86400, size=per_user))
        rows += [(u, s, t, True, q) for s, t, q in zip(songs, ts, sess, strict=True)]
    cols = list(zip(*rows, strict=True))
    return pl.DataFrame(dict(zip(SCHEMA, cols, strict=True)), schema=SCHEMA)


def _fit(setup) -> tuple[MarkovRecall, PopularityRecall]:
    return MarkovRecall().fit(setup.fit, setup.n_items), PopularityRecall().fit(setup.fit, setup.n_items)


def test_markov_sees_a_deterministic_next_song_and_popularity_does_not():
    setup = make_eval_setup(_chain_log(), 60, stage="test")
    markov, pop = _fit(setup)
    targets = rolling_targets(setup)
    rm = rolling_next_play(markov.score, targets, k=(1, 10), name="markov")
    rp = rolling_next_play(pop.score, targets, k=(1, 10), name="popularity")
    sm = {(r["slice"], r["metric"]): r for r in rm.summary(n_boot=200).iter_rows(named=True)}
    sp_ = {(r["slice"], r["metric"]): r for r in rp.summary(n_boot=200).iter_rows(named=True)}
    assert sm[("within_session", "hr@1")]["mean"] > 0.97
    assert sm[("new_session", "hr@1")]["mean"] < 0.2  # a new session starts on a random song
    assert sp_[("all", "hr@1")]["mean"] < 0.1
    lift, lo, hi = rolling_lift(rm, rp, "hr@1", "within_session", n_boot=200)
    assert lo > 2.0 and lo <= lift <= hi
    for summary in (rm.summary(n_boot=200), rp.summary(n_boot=200)):
        assert (summary["ci_lo"] <= summary["mean"] + 1e-12).all() and (summary["mean"] <= summary["ci_hi"] + 1e-12).all()
        assert set(summary["slice"]) == {"all", "within_session", "new_session", "repeat", "discovery"}
    table = rolling_lift_table(rm, rp, ["hr@1"], n_boot=100)
    assert table.height == 5 and table.filter(pl.col("slice") == "within_session")["ci_lo"][0] > 2.0


def test_the_effect_vanishes_when_order_is_shuffled():
    setup = make_eval_setup(_chain_log(shuffle=True), 60, stage="test")
    markov, pop = _fit(setup)
    targets = rolling_targets(setup)
    rm = rolling_next_play(markov.score, targets, k=(1,), name="markov")
    rp = rolling_next_play(pop.score, targets, k=(1,), name="popularity")
    assert rm.per_user("hr@1", "within_session")[1].mean() < 0.2
    _, lo, _ = rolling_lift(rm, rp, "hr@1", "all", n_boot=200)
    assert lo < 1.0  # nowhere near the ordered log's effect (lower bound > 2 there)


def test_window_plays_are_history_but_never_training():
    """The rule changes at the test cut: scored from window plays but fitted only on the fit window, Markov
    follows the old rule and misses; fitted (wrongly) on window plays it learns the new one, so the test
    would see a model that trained on the window."""
    ev = _chain_log(session_len=1000)  # one session per user: every target follows a play of the chain
    split_ts = make_eval_setup(ev, 60, stage="test").split.t_test
    rng = np.random.default_rng(5)
    remap = rng.permutation(60)  # in the test window every song id is relabelled: a new chain
    ev2 = ev.with_columns(pl.when(pl.col("ts") >= split_ts).then(pl.col("song_id").replace_strict(
        list(range(60)), remap.tolist())).otherwise(pl.col("song_id")).alias("song_id"))
    setup = make_eval_setup(ev2, 60, stage="test")
    targets = rolling_targets(setup)
    # histories run into the window: a target's last history play is the user's previous window target
    same_user = targets.users[1:] == targets.users[:-1]
    assert same_user.mean() > 0.8
    assert (targets.histories[1:, -1][same_user] == targets.items[:-1][same_user]).all()
    honest = MarkovRecall().fit(setup.fit, 60)
    assert honest.n_transitions == setup.fit.height - setup.fit["user_id"].n_unique()
    setup.check_no_leakage()
    leaky = MarkovRecall().fit(setup.split.test, 60)
    r_honest = rolling_next_play(honest.score, targets, k=(1,))
    r_leaky = rolling_next_play(leaky.score, targets, k=(1,))
    # the new chain is only learnable from the window itself
    assert r_honest.per_target("hr@1").mean() < 0.3 < 0.8 < r_leaky.per_target("hr@1").mean()


def test_histories_match_a_plain_loop():
    rng = np.random.default_rng(3)
    n = 600
    ev = pl.DataFrame({"user_id": rng.integers(0, 12, n), "song_id": rng.integers(0, 40, n),
                       "ts": [T0 + timedelta(minutes=int(m)) for m in rng.permutation(40 * 24 * 60)[:n]],
                       "full_play": rng.random(n) < 0.7, "session_id": rng.integers(0, 5, n)}, schema=SCHEMA)
    fit, window = ev.filter(pl.col("ts") < T0 + timedelta(days=30)), ev.filter(pl.col("ts") >= T0 + timedelta(days=30))
    t = rolling_targets((fit, window), n_items=40, max_history=5)
    got = {(int(u), int(i), tuple(h[h != 40])) for u, i, h in zip(t.users, t.items, t.histories, strict=True)}
    want, n_rep = set(), 0
    fp = ev.filter(pl.col("full_play")).sort("ts")
    for row in window.filter(pl.col("full_play")).iter_rows(named=True):
        before = fp.filter((pl.col("user_id") == row["user_id"]) & (pl.col("ts") < row["ts"]))["song_id"].to_list()
        if before:
            want.add((row["user_id"], row["song_id"], tuple(before[-5:])))
            any_before = ev.filter((pl.col("user_id") == row["user_id"]) & (pl.col("ts") < row["ts"]))
            n_rep += row["song_id"] in set(any_before["song_id"].to_list())
    assert got == want and len(got) == t.n_targets
    assert int(t.repeat.sum()) == n_rep


def test_sampling_targets_and_ordinal_sessions():
    setup = make_eval_setup(_chain_log(), 60, stage="test")
    full = rolling_targets(setup)
    sub = rolling_targets(setup, max_targets_per_user=2, seed=1)
    assert np.bincount(sub.users).max() <= 2 and sub.counts["sampled_out"] == full.n_targets - sub.n_targets
    key = {(u, i, tuple(h)) for u, i, h in zip(full.users, full.items, full.histories, strict=True)}
    assert all((u, i, tuple(h)) in key for u, i, h in zip(sub.users, sub.items, sub.histories, strict=True))
    with pytest.raises(KeyError, match="label=None"):
        rolling_targets((setup.fit.drop("full_play"), setup.split.test.drop("full_play")))
    assert rolling_targets((setup.fit.drop("full_play"), setup.split.test.drop("full_play")),
                           label=None).n_targets == full.n_targets  # every play of the chain log is a full play
    users = rolling_targets(setup, max_users=10)
    assert np.unique(users.users).shape[0] == 10
    # order-only data: sessions are unknown, and the result says so instead of reporting the slices
    o = make_eval_setup(_chain_log(ordinal=True), 60, stage="test")
    assert o.split_name == "position"
    t = rolling_targets(o)
    assert t.same_session is None and "sessions unknown" in t.notes[0]
    assert "sessions unknown" in t.describe() and f"{t.n_targets:,} rolling targets" in t.describe()
    r = rolling_next_play(MarkovRecall().fit(o.fit, 60).score, t, k=(1,))
    assert set(r.summary(n_boot=50)["slice"]) == {"all", "repeat", "discovery"}
    with pytest.raises(KeyError, match="sessions unknown"):
        r.per_user("hr@1", "within_session")


def test_shuffle_at_inference_hurts_markov_and_keeps_songs():
    setup = make_eval_setup(_chain_log(), 60, stage="test")
    markov, _ = _fit(setup)
    t = rolling_targets(setup)
    r = rolling_next_play(markov.score, t, k=(1,))
    rs = rolling_next_play(markov.score, t, k=(1,), shuffle_history=True)
    assert rs.per_target("hr@1").mean() < r.per_target("hr@1").mean() - 0.3
    from musicrecall.evaluation.rolling import _shuffle_rows
    sh = _shuffle_rows(t.histories, t.lengths, 0)
    assert (np.sort(sh, axis=1) == np.sort(t.histories, axis=1)).all() and ((sh == 60) == (t.histories == 60)).all()


def test_markov_in_the_set_based_protocol():
    setup = make_eval_setup(_chain_log(), 60, stage="test")
    markov, pop = _fit(setup)
    tm, _ = evaluate_recommender("markov", markov.recommend, setup, ks=(1, 5), n_boot=100)
    tp, _ = evaluate_recommender("pop", pop.recommend, setup, ks=(1, 5), n_boot=100)
    hm = tm.filter((pl.col("kind") == "all") & (pl.col("metric") == "hr@1"))["mean"][0]
    hp = tp.filter((pl.col("kind") == "all") & (pl.col("metric") == "hr@1"))["mean"][0]
    assert hm > hp + 0.2
    # the list follows the user's last fit play
    u = setup.targets["all"].users[:5]
    lists = markov.recommend(u, 3, None)
    last = markov.last_play(u)
    assert (lists[:, 0] == np.asarray(markov.trans.argmax(axis=1)).ravel()[last]).all()


def test_leave_last_out_protocol_one_target_per_user_and_history_mask():
    ev = _chain_log(session_len=1000, seed=2)
    setup = make_eval_setup(ev, 60, stage="test", split="leave_last_out")
    markov = MarkovRecall().fit(setup.fit, 60)
    r = leave_last_out_eval(markov.score, setup, k=(1, 10))
    assert r.targets.n_targets == ev["user_id"].n_unique() and np.unique(r.targets.users).shape[0] == r.targets.n_targets
    assert r.per_target("hr@1").mean() > 0.95
    # RecBole's general-model mask: earlier songs other than the target leave the ranking (popularity, so
    # that ranks are not all 0)
    pop = PopularityRecall().fit(setup.fit, 60)
    r = leave_last_out_eval(pop.score, setup, k=(1, 10))
    rx = leave_last_out_eval(pop.score, setup, k=(1, 10), exclude_history=True)
    t = r.targets
    scores = pop.score(t.histories, t.lengths).numpy()
    for i in range(0, t.n_targets, 7):
        seen = set(setup.fit.filter(pl.col("user_id") == t.users[i])["song_id"].to_list()) - {int(t.items[i])}
        above = [j for j in range(60) if j not in seen and (scores[i, j] > scores[i, t.items[i]]
                                                            or (scores[i, j] == scores[i, t.items[i]] and j < t.items[i]))]
        assert rx.ranks[i] == len(above)
    assert (rx.ranks <= r.ranks).all() and (rx.ranks < r.ranks).any()
    assert t.repeat.any()
    with pytest.raises(ValueError, match="leave_last_out"):
        leave_last_out_eval(markov.score, make_eval_setup(ev, 60, stage="test"))


def test_model_score_fn_and_shape_errors():
    import torch

    class Toy(torch.nn.Module):
        """Scores every song by its id similarity to the last play (a one-hot user vector)."""

        def __init__(self, n: int):
            super().__init__()
            self.emb = torch.nn.Embedding(n + 1, n)
            with torch.no_grad():
                self.emb.weight.copy_(torch.eye(n + 1, n))

        def user_vecs(self, items, feats=None):
            return self.emb(items[:, -1])

        def item_table(self):
            return self.emb.weight[:-1]

    setup = make_eval_setup(_chain_log(), 60, stage="test")
    t = rolling_targets(setup)
    r = rolling_next_play(model_score_fn(Toy(60)), t, k=(1,))
    # the toy puts the last play itself on top: it hits exactly the immediate repeats
    same = t.items == t.histories[:, -1]
    assert ((r.ranks == 0) == same).all()
    assert rolling_validator(t, "hr@1")(Toy(60)) == pytest.approx(r.per_user("hr@1")[1].mean())
    with pytest.raises(ValueError, match="expected"):
        rolling_next_play(lambda h, n: np.zeros((len(h), 61)), t)
    with pytest.raises(ValueError, match="NaN"):
        rolling_next_play(lambda h, n: np.full((len(h), 60), np.nan), t)
    with pytest.raises(ValueError, match="different targets"):
        rolling_lift(r, rolling_next_play(model_score_fn(Toy(60)), rolling_targets(setup, max_users=5)))


def test_ranks_are_full_catalogue_with_ties_to_the_lower_id():
    import torch

    from musicrecall.evaluation.rolling import _target_ranks

    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0]] * 4)
    assert _target_ranks(scores.clone(), np.array([2, 1, 3, 0])).tolist() == [1, 0, 2, 3]
    # a masked target (history excluded) drops below every unmasked song
    got = _target_ranks(scores[:1].clone(), np.array([1]), np.array([0]), np.array([1]))
    assert got.tolist() == [3]


def test_markov_sparse_ranks_equal_the_dense_ranking():
    from musicrecall.evaluation.rolling import _target_ranks

    for ev in (_chain_log(), _chain_log(shuffle=True, seed=4)):
        setup = make_eval_setup(ev, 60, stage="test")
        markov = MarkovRecall().fit(setup.fit, 60)
        t = rolling_targets(setup)
        h = t.histories.copy()
        h[::5] = 60  # some empty histories: popularity back-off
        lengths = np.where(np.arange(t.n_targets) % 5 == 0, 0, t.lengths)
        dense = _target_ranks(markov.score(h, lengths), t.items)
        assert np.array_equal(markov.target_ranks(h, lengths, t.items), dense)
        assert (dense > 0).any() and (dense == 0).any()
        via_method = rolling_next_play(markov.score, t).ranks  # the sparse path
        assert np.array_equal(via_method, rolling_next_play(lambda a, b, m=markov: m.score(a, b), t).ranks)


def test_factored_ranks_equal_the_dense_ranks_with_ties_across_blocks():
    import torch

    from musicrecall.evaluation.rolling import _factored_ranks, _target_ranks

    rng = np.random.default_rng(0)
    n, d, b = 203, 4, 64
    items = torch.from_numpy(rng.integers(-2, 3, (n, d)).astype(np.float32))  # small integers: many exact ties
    items[150] = items[3]  # the same vector in another block
    users = torch.from_numpy(rng.integers(-2, 3, (b, d)).astype(np.float32))
    targets = rng.integers(0, n, b)
    targets[:5] = [3, 150, 0, 202, 64]
    dense = _target_ranks((users @ items.T).clone(), targets)
    for block in (1, 16, 64, 1000):
        assert np.array_equal(_factored_ranks(users, items.T.contiguous(), targets, block=block), dense), block
