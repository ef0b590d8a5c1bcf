"""Splits that fit the data: the auto chooser, quantile and per-user position splits, the fit/eval
guarantee for every kind, per-user leakage checks and the empty/tiny-window error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from musicrecall.evaluation import (
    LeakageError,
    WindowTooSmallError,
    check_no_leakage,
    choose_split,
    detect_time_kind,
    make_eval_setup,
    position_split,
    quantile_split,
    temporal_split,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SCHEMA = {"user_id": pl.Int64(), "song_id": pl.Int64(), "ts": pl.Datetime("ms", "UTC"), "full_play": pl.Boolean()}


def _log(n_users: int = 60, per_user: int = 40, days: float = 60, seed: int = 0, n_items: int = 200,
         start: datetime = T0) -> pl.DataFrame:
    """Random plays spread uniformly over ``days`` days."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    ms = np.sort(rng.integers(0, int(days * 86_400_000), size=n))
    return pl.DataFrame({"user_id": rng.integers(0, n_users, size=n), "song_id": rng.integers(0, n_items, size=n),
                         "ts": [start + timedelta(milliseconds=int(m)) for m in ms],
                         "full_play": rng.random(n) < 0.7}, schema=SCHEMA)


def _ordinal(lengths: list[int], seed: int = 0) -> pl.DataFrame:
    """Order-only sequences: position p written as the epoch plus p seconds, users interleaved."""
    rng = np.random.default_rng(seed)
    rows = [(u, int(rng.integers(0, 50)), p) for u, n in enumerate(lengths) for p in range(n)]
    rows = [rows[i] for i in rng.permutation(len(rows))]  # frame order must not matter
    return pl.DataFrame({"user_id": [r[0] for r in rows], "song_id": [r[1] for r in rows],
                         "ts": [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=r[2]) for r in rows],
                         "full_play": [True] * len(rows)}, schema=SCHEMA)


def _assert_fit_before_targets(split, stage: str) -> None:
    """Nothing a model fits on comes at or after the user's first target (per user, for every split kind)."""
    fit, window = split.fit_frame(stage), split.eval_frame(stage)
    first = window.group_by("user_id").agg(pl.col("ts").min().alias("first"))
    last = fit.group_by("user_id").agg(pl.col("ts").max().alias("last"))
    both = first.join(last, on="user_id")
    assert (both["last"] < both["first"]).all()
    if not split.per_user:  # a global cut: every fit play before every target
        assert fit["ts"].max() < window["ts"].min()


# ---------------------------------------------------------------------------------------------- kinds
def test_time_kind_detection():
    assert detect_time_kind(_log()) == "clock"
    assert detect_time_kind(_ordinal([5, 6])) == "ordinal"
    assert detect_time_kind(pl.DataFrame({"user_id": [0], "ts": [3]})) == "ordinal"
    assert detect_time_kind(_log(), meta={"time_kind": "ordinal"}) == "ordinal"  # the dataset's meta wins
    with pytest.raises(ValueError, match="time_kind"):
        detect_time_kind(_log(), meta={"time_kind": "weekly"})


def test_auto_keeps_the_time_split_when_windows_are_populated():
    ev = _log()
    s = choose_split(ev)
    ref = temporal_split(ev)
    assert s.name == "time" and "populated" in s.params["reason"]
    assert (s.t_valid, s.t_test) == (ref.t_valid, ref.t_test)
    assert s.test.equals(ref.test) and s.valid.equals(ref.valid) and s.train.equals(ref.train)
    for stage in ("valid", "test"):
        _assert_fit_before_targets(s, stage)


def test_auto_uses_quantiles_when_the_last_days_are_empty():
    # a log that stops for 20 days, then has a single play: the default 7-day valid window is empty
    ev = _log(days=40)
    tail = pl.DataFrame({"user_id": [0], "song_id": [1], "ts": [T0 + timedelta(days=60)], "full_play": [True]},
                        schema=SCHEMA)
    ev = pl.concat([ev, tail])
    assert temporal_split(ev).valid.height == 0
    s = choose_split(ev)
    assert s.name == "quantile" and "validation window" in s.params["reason"]
    n = ev.height
    assert abs(s.test.height - 0.1 * n) <= 2 and abs(s.valid.height - 0.1 * n) <= 2
    assert s.train.height + s.valid.height + s.test.height == n
    for stage in ("valid", "test"):
        _assert_fit_before_targets(s, stage)
    assert "quantile split" in s.describe_split() and "chosen automatically" in s.describe_split()


def test_quantile_split_ties_go_to_the_later_part():
    ev = _log(n_users=5, per_user=10).with_columns(pl.col("ts").dt.truncate("1w"))  # many equal stamps
    s = quantile_split(ev, 0.2, 0.2)
    assert s.train.height + s.valid.height + s.test.height == ev.height
    assert s.train["ts"].max() < s.t_valid <= s.valid["ts"].min()
    assert s.test["ts"].min() >= s.t_test


def test_auto_uses_positions_for_ordinal_time_and_refuses_days():
    ev = _ordinal([30, 12, 3, 2, 1])
    s = choose_split(ev)
    assert s.name == "position" and s.time_kind == "ordinal" and "ordinal" in s.params["reason"]
    assert "order only" in s.describe_split()
    with pytest.raises(ValueError, match="needs a clock"):
        choose_split(ev, "time")
    with pytest.raises(AttributeError, match="split.cut"):
        _ = s.t_test  # no global cut: a clear message, not a silent None


def test_position_split_per_user_counts():
    lengths = [30, 12, 3, 2, 1]
    s = position_split(_ordinal(lengths), valid_frac=0.1, test_frac=0.1)
    for part, want in ((s.test, [3, 1, 1, 1, 0]), (s.valid, [3, 1, 1, 0, 0]), (s.train, [24, 10, 1, 1, 1])):
        got = part.group_by("user_id").len()
        got = dict(zip(got["user_id"].to_list(), got["len"].to_list(), strict=True))
        assert [got.get(u, 0) for u in range(len(lengths))] == want
    # each user's test plays are their last positions, valid the ones right before
    for u in range(3):
        ts = {n: sorted(p.filter(pl.col("user_id") == u)["ts"].to_list()) for n, p in
              (("train", s.train), ("valid", s.valid), ("test", s.test))}
        assert ts["train"][-1] < ts["valid"][0] < ts["test"][0]
    for stage in ("valid", "test"):
        _assert_fit_before_targets(s, stage)


def test_leave_last_out_is_recbole_ls():
    lengths = [6, 3, 2, 1]
    s = choose_split(_ordinal(lengths), "leave_last_out")
    assert s.name == "leave_last_out"
    per = {n: dict(p.group_by("user_id").len().iter_rows()) for n, p in
           (("train", s.train), ("valid", s.valid), ("test", s.test))}
    # RecBole LS (valid_and_test): n>=3 -> [n-2, 1, 1]; n=2 -> [1, 0, 1]; n=1 -> [1, 0, 0]
    assert [per["train"].get(u, 0) for u in range(4)] == [4, 1, 1, 1]
    assert [per["valid"].get(u, 0) for u in range(4)] == [1, 1, 0, 0]
    assert [per["test"].get(u, 0) for u in range(4)] == [1, 1, 1, 0]
    last = _ordinal(lengths).group_by("user_id").agg(pl.col("ts").max()).sort("user_id")
    assert s.test.sort("user_id")["ts"].to_list() == last.filter(pl.col("user_id") < 3)["ts"].to_list()


def test_position_split_moves_equal_timestamps_to_the_later_part():
    # user 0: 10 plays, the last three at the same time; a cut between them would not be a time interval
    ts = [T0 + timedelta(hours=h) for h in range(7)] + [T0 + timedelta(hours=8)] * 3
    ev = pl.DataFrame({"user_id": [0] * 10, "song_id": list(range(10)), "ts": ts, "full_play": [True] * 10},
                      schema=SCHEMA)
    s = position_split(ev, valid_frac=0.1, test_frac=0.1)
    # by position: train 0..7, valid 8, test 9; plays 7 and 8 share play 9's time, so they join test
    assert (s.train.height, s.valid.height, s.test.height) == (7, 0, 3)
    assert s.time_kind == "clock"
    _assert_fit_before_targets(s, "test")


# ------------------------------------------------------------------------------------------- leakage
def test_per_user_leakage_check():
    s = position_split(_ordinal([20, 10, 5]))
    s.check_no_leakage(s.fit_frame("test"), "test")
    s.check_no_leakage(s.fit_frame("valid"), "valid")
    with pytest.raises(LeakageError, match="own cut"):
        s.check_no_leakage(pl.concat([s.fit_frame("test"), s.test.head(1)]), "test")
    with pytest.raises(LeakageError):
        s.check_no_leakage(s.fit_frame("test"), "valid")  # valid plays leak when tuning on valid
    # another user's later positions are not leakage in a per-user split (no clock across users)
    check_no_leakage(s.train.filter(pl.col("user_id") == 0), s.cut("valid"))
    with pytest.raises(TypeError, match="user_id"):
        check_no_leakage(s.train["ts"].max(), s.cut("valid"))


# ---------------------------------------------------------------------------------- window guard
def test_empty_validation_window_is_an_error_before_training_not_a_nan():
    """Regression (issue 14): with 7-day windows a log whose validation window is empty used to build a
    setup with no validation targets, and early stopping/tuning then ran on NaN."""
    ev = _log(days=40)
    gap = pl.DataFrame({"user_id": [0, 1, 2] * 10, "song_id": list(range(30)),
                        "ts": [T0 + timedelta(days=60, hours=h) for h in range(30)], "full_play": [True] * 30},
                       schema=SCHEMA)
    ev = pl.concat([ev, gap])  # plays stop for 13 days, then 30 plays in the last day
    with pytest.raises(WindowTooSmallError) as err:
        make_eval_setup(ev, 200, stage="valid", split="time")
    e = err.value
    assert e.window == "valid" and e.split == "time" and e.n_events == 0 and e.n_users == 0
    assert "valid_days" in e.parameter and "validation window" in str(e) and "empty" in str(e)
    # the same log with split="auto" chooses time quantiles and evaluates on real targets
    setup = make_eval_setup(ev, 200, stage="valid")
    assert setup.split_name == "quantile" and setup.targets["all"].n_users > 10
    setup.check_no_leakage()


def test_tiny_test_window_names_its_size_and_parameter():
    ev = _ordinal([3] * 4)  # leave-last-out over 4 users gives 4 test plays: tiny
    with pytest.raises(WindowTooSmallError) as err:
        make_eval_setup(ev, 50, stage="test", split="leave_last_out")
    assert err.value.n_events == 4 and err.value.n_users == 4 and err.value.window == "test"
    assert "too small" in str(err.value) and "4 users" in str(err.value)
    make_eval_setup(ev, 50, stage="test", split="leave_last_out", min_window_events=4)  # the knob works


def test_one_person_log_is_not_tiny_for_lack_of_users():
    ev = _log(n_users=1, per_user=400)
    setup = make_eval_setup(ev, 200, stage="test")
    assert setup.split_name == "time" and setup.targets["all"].n_users == 1


@pytest.mark.parametrize("kind", ["time", "quantile", "position", "leave_last_out"])
def test_every_split_kind_keeps_fit_before_targets_in_make_eval_setup(kind):
    ev = _log(n_users=40, per_user=60)
    for stage in ("valid", "test"):
        setup = make_eval_setup(ev, 200, stage=stage, split=kind, min_window_events=5)
        assert setup.split_name == kind
        _assert_fit_before_targets(setup.split, stage)
        setup.check_no_leakage()
        with pytest.raises(LeakageError):
            setup.check_no_leakage(pl.concat([setup.fit, setup.split.eval_frame(stage)]))
        assert setup.describe_split()
        info = setup.split_info()
        assert info["split"] == kind and info["test_plays"] == setup.split.test.height
        assert ("t_test" in info) == (kind in ("time", "quantile"))
        # targets only come from the stage's window, popularity only from the fit frame
        assert setup.popularity.sum() == setup.fit.select("user_id", "song_id").unique().height


def test_a_log_shorter_than_the_windows_leaves_nothing_to_train_on():
    ev = _log(days=12)  # 7 + 7 days of windows cover the whole log: the time split has no training window
    with pytest.raises(WindowTooSmallError) as err:
        make_eval_setup(ev, 200, stage="valid", split="time")
    assert err.value.window == "train" and "training window" in str(err.value) and "valid_days" in err.value.parameter
    setup = make_eval_setup(ev, 200, stage="valid")
    assert setup.split_name == "quantile" and "training window" in setup.split.params["reason"]
    assert setup.fit.height > 0.7 * ev.height
