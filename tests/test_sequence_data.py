"""Listening sequences as model inputs (musicrecall.sequence_data): histories, causal windows, sampled
examples, shuffling, user and song codes; one ordering shared by SASRec, YouTube-DNN and MIND."""

from __future__ import annotations

import numpy as np
import polars as pl
from sequence_events import EV, N_ITEMS
from sequence_events import events as _events

from musicrecall import sequence_data as sd
from musicrecall.sequence_data import Sequences, last_histories, side_codes, training_examples, user_sequences


def test_histories_are_last_n_full_plays_in_time_order_left_padded():
    h = sd.last_n_histories(EV, n_users=3, n_items=N_ITEMS, max_len=3)
    assert h.items.tolist() == [[4, 2, 7], [8, 5, 9], [10, 10, 10]]  # skip (song 3) dropped; user 2 empty
    h5 = sd.last_n_histories(EV, n_users=2, n_items=N_ITEMS, max_len=5)
    assert h5.items[0].tolist() == [10, 10, 4, 2, 7] and h5.lengths.tolist() == [3, 4]
    assert h.rows(np.array([1, 99])).tolist() == [[8, 5, 9], [10, 10, 10]]


def test_histories_carry_side_features_aligned_with_positions():
    ev = EV.with_columns(genre=pl.col("song_id") * 10)
    h = sd.last_n_histories(ev, 2, N_ITEMS, max_len=4, side_cols=["genre"])
    assert h.side["genre"].tolist() == [[0, 40, 20, 70], [60, 80, 50, 90]]


def test_training_windows_have_causal_next_play_targets():
    w = sd.training_windows(EV, N_ITEMS, max_len=2)
    # user 0 plays 4, 2, 7; user 1 plays 6, 8, 5, 9 -> (input, next play) pairs cut from the end
    got = sorted(zip(w.users.tolist(), w.inputs.tolist(), w.targets.tolist(), strict=True))
    assert got == [(0, [4, 2], [2, 7]), (1, [8, 5], [5, 9]), (1, [10, 6], [10, 8])]
    assert w.n_targets == 5  # every play but each user's first one is a target
    capped = sd.training_windows(EV, N_ITEMS, max_len=2, max_windows_per_user=1)
    assert sorted(capped.inputs.tolist()) == [[4, 2], [8, 5]]


def test_the_last_column_of_every_users_latest_window_predicts_the_users_last_play():
    # the served user vector is the last position's output: that position must be trained, with the
    # user's last play as its target (SASRec.pytorch: seq = s[:-1], pos = s[1:])
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(0, N_ITEMS)), m, True) for u in range(6) for m in range(int(rng.integers(2, 9)))]
    ev = _events(rows)
    w = sd.training_windows(ev, N_ITEMS, max_len=3)
    last = ev.sort("ts").group_by("user_id").agg(pl.col("song_id").last()).sort("user_id")
    latest = {}
    for r, u in enumerate(w.users.tolist()):
        latest[u] = r  # a user's windows come oldest first
    assert sorted(latest) == last["user_id"].to_list()
    assert [int(w.targets[latest[u], -1]) for u in sorted(latest)] == last["song_id"].to_list()
    assert (w.inputs[w.targets != w.pad] != w.pad).all()  # every target has a real play before it


def test_shuffle_keeps_songs_and_pads_but_changes_order():
    rng = np.random.default_rng(0)
    items = np.full((200, 20), 50)
    for r in range(200):
        n = rng.integers(0, 21)
        items[r, 20 - n:] = rng.choice(50, n, replace=False)
    h = sd.Histories(items, 50)
    s = sd.shuffle_histories(h, seed=1)
    assert (s.lengths == h.lengths).all()
    assert all(sorted(a) == sorted(b) for a, b in zip(s.items.tolist(), h.items.tolist(), strict=True))
    assert (s.items[:, :1] == 50).sum() == (h.items[:, :1] == 50).sum()  # pads stay on the left
    assert (s.items != h.items).any(axis=1).mean() > 0.8


def test_encode_categoricals_uses_zero_for_missing():
    users = pl.DataFrame({"user_id": [0, 2], "gender": ["m", None], "age": ["18-24", "<18"]})
    codes, cards = sd.encode_categoricals(users, "user_id", ["gender", "age"], n_rows=3)
    assert codes.tolist() == [[1, 1], [0, 0], [0, 2]] and cards == [2, 3]


def _seqs():
    ev = pl.DataFrame({"user_id": [1, 1, 1, 1, 2, 2, 3], "song_id": [10, 11, 12, 13, 20, 21, 30],
                       "ts": [3, 1, 2, 4, 1, 2, 1], "full_play": [True, True, False, True, True, True, True]})
    return user_sequences(ev)


def test_user_sequences_are_time_ordered_full_plays():
    s = _seqs()
    assert s.users.tolist() == [1, 2, 3]
    assert s.items[s.indptr[0]:s.indptr[1]].tolist() == [11, 10, 13]  # 12 was not a full play
    assert s.lengths.tolist() == [3, 2, 1]


def test_training_examples_never_see_the_future():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 30)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.permutation(indptr[-1])  # unique ids, so a position is identified by its id
    seqs = Sequences(np.arange(30), indptr, items)
    pad = int(items.max()) + 1
    hist, target, users = training_examples(seqs, max_len=8, pad=pad, per_user=5, seed=0)
    assert (np.bincount(users, minlength=30) <= 5).all()
    for h, t, u in zip(hist, target, users, strict=True):
        row = items[indptr[u]:indptr[u + 1]].tolist()
        pos = row.index(t)
        assert pos >= 1
        real = h[h != pad].tolist()
        assert real == row[max(0, pos - 8):pos]  # exactly the plays before the target, right-aligned
        assert (h[: 8 - len(real)] == pad).all()


def test_last_histories_pad_unknown_users():
    s = _seqs()
    h = last_histories(s, np.array([1, 4, 2]), max_len=2, pad=99)
    assert h.tolist() == [[10, 13], [99, 99], [20, 21]]


def test_side_codes():
    items = pl.DataFrame({"song_id": [1, 0, 2], "genre": ["rock", "pop", None], "language": ["en", "en", "zh"]})
    codes = side_codes(items)
    assert codes["genre"].tolist()[0] != codes["genre"].tolist()[1]
    assert len(set(codes["genre"].tolist())) == 3 and len(set(codes["language"].tolist())) == 2


def test_side_info_uses_artist_and_album_when_genre_and_language_are_unknown():
    # a real song->artist/album catalogue: genre and language are null, so as side info they were a constant
    items = pl.DataFrame({"song_id": [0, 1, 2, 3], "artist": ["x", "x", "y", "z"], "album": ["p", "q", "r", "s"],
                          "genre": [None] * 4, "language": [None] * 4},
                         schema_overrides={"genre": pl.String, "language": pl.String})
    codes = side_codes(items)
    assert tuple(codes) == ("artist", "album")
    assert codes["artist"].tolist()[0] == codes["artist"].tolist()[1] != codes["artist"].tolist()[2]
    # the world's genre and language stay the side info when present
    world = items.with_columns(genre=pl.Series(["g", "h", "g", "h"]), language=pl.Series(["en", "en", "zh", "zh"]))
    assert tuple(side_codes(world)) == ("genre", "language")
    assert side_codes(items.select("song_id")) == {}


def test_histories_of_every_user_and_of_some_users_agree():
    # the table SASRec is served on and MIND's per-user rows come from one builder
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(0, N_ITEMS)), int(m), bool(rng.random() < 0.8)) for u in range(7)
            for m in rng.permutation(int(rng.integers(0, 12)))]
    ev = _events(rows)
    table = sd.last_n_histories(ev, n_users=9, n_items=N_ITEMS, max_len=4)
    some = np.array([8, 3, 0, 5])
    assert np.array_equal(last_histories(user_sequences(ev), some, max_len=4, pad=N_ITEMS), table.rows(some))


def test_windows_and_examples_see_the_same_sequences():
    ev = EV.with_columns(full_play=pl.lit(True))
    seqs = user_sequences(ev, label=None)
    w = sd.training_windows(ev, N_ITEMS, max_len=8, label=None)
    hist, target, users = training_examples(seqs, max_len=8, pad=N_ITEMS, per_user=100)
    # every play but a user's first is a target in both schemes, with the same plays before it
    assert sorted(w.targets[w.targets != N_ITEMS].tolist()) == sorted(target.tolist())
    for h, t, u in zip(hist, target, users, strict=True):
        r = np.flatnonzero(w.users == u)[0]
        c = int(np.flatnonzero(w.targets[r] == t)[0])
        assert h[-1] == w.inputs[r, c]


def test_no_plays_gives_empty_histories_not_an_error():
    empty = EV.filter(pl.lit(False))
    assert sd.last_n_histories(empty, 2, N_ITEMS, max_len=3).items.tolist() == [[10] * 3] * 2
    assert last_histories(user_sequences(empty), np.array([0, 1]), max_len=2, pad=N_ITEMS).tolist() == [[10] * 2] * 2
    assert sd.training_windows(empty, N_ITEMS, max_len=3).inputs.shape == (0, 3)
