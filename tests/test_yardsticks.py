"""Baselines beside every model: item-CF that silently equals popularity, plain 'loses to item-CF' sentences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from musicrecall.evaluation import ItemCFRecall, PopularityRecall, make_eval_setup
from musicrecall.yardsticks import compare_to_baselines, fit_item_cf, lacks, plain_verdicts, skipped


def _one_play_sessions(n_users: int = 60, plays: int = 12, n_items: int = 40, seed: int = 0) -> pl.DataFrame:
    """Users who stay inside one of 4 song groups, but every play is its own session (a gap after each)."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for u in range(n_users):
        group = u % 4
        for p in range(plays):
            rows.append({"user_id": u, "song_id": int(group * 10 + rng.integers(0, 10)), "session_id": u * plays + p,
                         "ts": t0 + timedelta(days=p * 2, hours=u % 5), "full_play": True})
    return pl.DataFrame(rows)


def test_item_cf_that_equals_popularity_is_detected_and_refitted():
    ev = _one_play_sessions()
    setup = make_eval_setup(ev, 40, stage="test", split="quantile")
    users = setup.targets["all"].users
    plain = ItemCFRecall().fit(setup.fit, 40)
    pop = PopularityRecall().fit(setup.fit, 40)
    assert (plain.recommend(users, 20) == pop.recommend(users, 20)).all()  # the silent failure
    icf, note = fit_item_cf(setup, k=20)
    assert "equals popularity" in note and icf.unit_used == "user"
    lists = icf.recommend(users, 20)
    assert not (lists == pop.recommend(users, 20)).all()
    # each user's first recommendation now comes from their own song group
    group_of_user = {int(u): int(u) % 4 for u in users}
    assert np.mean([lists[i, 0] // 10 == group_of_user[int(u)] for i, u in enumerate(users)]) > 0.9


def test_item_cf_on_real_sessions_is_left_alone():
    ev = _one_play_sessions().with_columns(session_id=pl.col("user_id"))  # one session per user: co-occurrence
    setup = make_eval_setup(ev, 40, stage="test", split="quantile")
    icf, note = fit_item_cf(setup, k=20)
    assert note == "" and icf.unit_used == "session"


def test_plain_verdicts_say_when_a_model_loses_to_item_cf():
    rng = np.random.default_rng(1)
    good = (rng.random(500) < 0.6).astype(float)
    bad = (rng.random(500) < 0.2).astype(float)
    per_user = {"icf": {"all": {"hr@200": good}}, "model": {"all": {"hr@200": bad}},
                "same": {"all": {"hr@200": good}}}
    table = compare_to_baselines(per_user, ["model", "same"], ["icf"], n_boot=200)
    assert table.filter(pl.col("model") == "model")["reading"].item() == "loses to"
    assert table.filter(pl.col("model") == "same")["reading"].item() == "ties with"
    lines = plain_verdicts(table, against="icf")
    assert lines[0].startswith("model LOSES to icf on hr@200 (all): -") and "does not beat" in lines[1]


def test_lacks_names_what_an_order_only_one_person_log_does_not_have(capsys):
    class _DS:  # the fields lacks() reads of a Dataset
        is_world = False
        raw_log_loaded = True
        events = pl.DataFrame({"user_id": [0, 0], "song_id": [1, 2], "entry": [None, None], "play_ms": [None, None],
                               "ts": [datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)]},
                              schema_overrides={"entry": pl.String, "play_ms": pl.Int64})

    missing = lacks(_DS())
    assert set(missing) == {"truth", "placebo", "audio", "clock", "entries", "durations", "others"}
    assert skipped(missing, "entries", what="the entry mix")
    assert capsys.readouterr().out.startswith("skipped the entry mix: no entry points")
    assert not skipped({}, "truth")


def test_baseline_results_are_cached_by_the_split_content(tmp_path, monkeypatch):
    import musicrecall.config
    from musicrecall.yardsticks import evaluate_baselines, fit_baselines, setup_digest

    monkeypatch.setattr(musicrecall.config, "DATA_DIR", tmp_path)
    ev = _one_play_sessions().with_columns(session_id=pl.col("user_id"))  # catalogue of 250: lists of 200
    setup = make_eval_setup(ev, 250, stage="test", split="quantile")
    again = make_eval_setup(ev, 250, stage="test", split="quantile")  # another notebook, the same split
    assert setup_digest(setup) == setup_digest(again)
    table, per_user, notes = evaluate_baselines(setup, n_boot=50, fitted=fit_baselines(setup))
    assert len(list(tmp_path.glob("processed/baselines-*"))) == 1
    t2, p2, n2 = evaluate_baselines(again, n_boot=50)  # read back, not refitted
    assert t2.equals(table) and n2 == notes and set(p2) == set(per_user)
    for m, kinds in per_user.items():
        for k, qs in kinds.items():
            assert set(p2[m][k]) == set(qs) and all(np.array_equal(p2[m][k][q], v) for q, v in qs.items())
    fresh, _, _ = evaluate_baselines(again, n_boot=50, cache=False)
    assert fresh.equals(table)  # what the cache holds is what a fresh evaluation gives
    other = make_eval_setup(ev.filter(pl.col("user_id") != 3), 250, stage="test", split="quantile")
    assert setup_digest(other) != setup_digest(setup)  # another log: another key
    evaluate_baselines(setup, n_boot=60)  # another argument: another entry
    assert len(list(tmp_path.glob("processed/baselines-*"))) == 2
