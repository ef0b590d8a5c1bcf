"""Ranking features use only the training window; LightGBM threads and metrics behave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from musicrecall import config
from musicrecall.evaluation.ranking_stats import (
    auc_ci,
    boot_aucs,
    boot_weights,
    paired_lift,
    per_user_ranking,
    seeded_diff,
)
from musicrecall.fusion import profile_scorer
from musicrecall.ranking import (
    AUDIO_PREFIX,
    AudioTable,
    StageSamples,
    audio_selection_check,
    build_features,
    candidate_tables,
    feature_columns,
    fit_ranker,
    impression_auc_table,
    lgb_params,
    lgb_threads,
    run_ranking,
    stage_samples,
)

CUT = datetime(2026, 1, 20, tzinfo=UTC)


def synthetic(seed: int = 0, n_users: int = 40, n_songs: int = 60, n: int = 3000) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ts = [start + timedelta(minutes=int(m)) for m in rng.integers(0, 30 * 24 * 60, n)]
    events = pl.DataFrame({
        "user_id": rng.integers(0, n_users, n), "song_id": rng.integers(0, n_songs, n), "ts": ts,
        "full_play": rng.random(n) < 0.6,
        "action": pl.Series([("collect" if r < 0.1 else None) for r in rng.random(n)], dtype=pl.String),
        "entry": rng.choice(["radio", "daily_30", "search"], n),
    }).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    items = pl.DataFrame({
        "song_id": np.arange(n_songs), "genre": rng.choice(["pop", "rock", "jazz"], n_songs),
        "language": rng.choice(["en", "zh"], n_songs), "version": rng.choice(["studio", "live"], n_songs),
        "release_year": rng.integers(1990, 2025, n_songs), "duration_ms": rng.integers(120_000, 300_000, n_songs),
        "artist": rng.choice([f"a{i}" for i in range(10)], n_songs),
    })
    return events, items


def features(events: pl.DataFrame, items: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    audio = AudioTable(np.arange(0, 60, 2), np.random.default_rng(5).normal(size=(30, 12)).astype(np.float32), n_pcs=3)
    vecs = np.random.default_rng(6).normal(size=(60, 8)).astype(np.float32)
    from musicrecall.fusion import recent_plays

    seeds = recent_plays(events.filter(pl.col("ts") < CUT), 5)  # the caller's scorer: fit window only
    scorer = profile_scorer(vecs, np.ones(60, bool), seeds)
    return build_features(events, CUT, pairs, items, audio=audio, scorers={"short_term": scorer})


@pytest.fixture(scope="module")
def data():
    events, items = synthetic()
    window = events.filter(pl.col("ts") >= CUT)
    pairs = window.select("user_id", "song_id", "entry")
    return events, items, pairs


def test_features_ignore_everything_at_or_after_the_cut(data):
    events, items, pairs = data
    before = features(events, items, pairs)
    after = events.filter(pl.col("ts") >= CUT)
    # perturb the test window: flip labels, change songs and actions, delete half the rows, add new ones
    perturbed = pl.concat([
        events.filter(pl.col("ts") < CUT),
        after.sample(fraction=0.5, seed=1).with_columns(
            full_play=~pl.col("full_play"), song_id=(pl.col("song_id") + 7) % 60, action=pl.lit("collect")),
        after.head(50).with_columns(ts=pl.col("ts") + timedelta(days=3)),
    ])
    assert not perturbed.equals(events)
    again = features(perturbed, items, pairs)
    assert again.equals(before)  # nulls and NaNs compare equal too
    # the control: the same change *before* the cut must move some feature, or the test could not fail
    early = events.with_columns(full_play=pl.when(pl.col("ts") < CUT).then(~pl.col("full_play")).otherwise(pl.col("full_play")))
    assert not features(early, items, pairs).equals(before)


def test_audio_group_is_exactly_the_audio_columns(data):
    events, items, pairs = data
    df = features(events, items, pairs)
    with_audio, without = feature_columns(df, audio=True), feature_columns(df, audio=False)
    dropped = set(with_audio) - set(without)
    assert dropped == {c for c in df.columns if c.startswith(AUDIO_PREFIX)}
    assert {"audio_sim", "audio_has", "audio_pc0"} <= dropped
    assert not any(c in ("full_play", "collect", "user_id", "song_id") for c in with_audio)
    # a song without audio has NaN audio features, a song with audio has its components
    has = df["audio_has"].to_numpy() > 0
    assert np.isnan(df["audio_pc0"].to_numpy()[~has]).all() and np.isfinite(df["audio_pc0"].to_numpy()[has]).all()
    assert (pairs["song_id"].to_numpy()[has] % 2 == 0).all()


def test_lightgbm_threads_come_from_config():
    before = config.n_threads()
    try:
        config.set_threads(1)
        assert lgb_params()["num_threads"] == 1
        assert lgb_threads(10_000_000) == 1
        config.set_threads(2)
        assert lgb_params()["num_threads"] == 2
        assert lgb_params(n_rows=10_000_000)["num_threads"] == 2
        assert lgb_params(n_rows=100)["num_threads"] == 1  # small samples: one thread
    finally:
        config.set_threads(before)


def test_auc_matches_sklearn_and_paired_difference():
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(int)
    a = y + rng.normal(0, 1.0, 600)
    b = rng.normal(0, 1.0, 600)
    users = rng.integers(0, 60, 600)
    single, diff = auc_ci(y, {"a": a, "b": b, "a2": a.copy()}, users, n_boot=200, pairs=[("a", "b"), ("a", "a2")])
    assert single["a"][0] == pytest.approx(roc_auc_score(y, a))
    assert single["b"][0] == pytest.approx(roc_auc_score(y, b))
    assert single["a"][1] <= single["a"][0] <= single["a"][2]
    assert diff[("a", "b")][1] > 0  # a real difference is detected
    assert diff[("a", "a2")] == (0.0, 0.0, 0.0)  # identical scores: exactly no difference
    ties = np.round(a)  # ties count one half, as sklearn
    assert auc_ci(y, {"t": ties}, users, n_boot=5)[0]["t"][0] == pytest.approx(roc_auc_score(y, ties))


def test_per_user_ranking_ndcg_collect_and_surprise():
    df = pl.DataFrame({"user_id": [1, 1, 1, 2, 2], "song_id": [10, 11, 12, 10, 13],
                       "full_play": [0, 1, 0, 0, 0], "collect": [0, 0, 1, 0, 0]})
    known = lambda u, s: (s == 10).astype(float)  # noqa: E731 - song 10's genre is known to everyone
    out = per_user_ranking(df, np.array([3.0, 2.0, 1.0, 1.0, 2.0]), known, k=2)
    row1 = out.filter(pl.col("user_id") == 1).row(0, named=True)
    assert row1["ndcg"] == pytest.approx(1 / np.log2(3))  # the relevant song at rank 2
    assert row1["collect_hit"] == 0.0  # the collected song is third, outside the top 2
    assert row1["surprise"] == pytest.approx(0.5)
    row2 = out.filter(pl.col("user_id") == 2).row(0, named=True)
    assert row2["ndcg"] is None and row2["collect_hit"] is None  # no relevant / collected candidate


def test_lambdarank_and_binary_learn_a_clear_signal():
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=n)
    df = pl.DataFrame({"user_id": np.repeat(np.arange(100), 20), "x": x, "noise": rng.normal(size=n),
                       "full_play": (x + rng.normal(0, 0.3, n) > 0.8).astype(int)})
    for objective in ("binary", "lambdarank"):
        r = fit_ranker(df, "full_play", ["x", "noise"], objective=objective, rounds=30,
                       group_col="user_id" if objective == "lambdarank" else None)
        assert roc_auc_score(df["full_play"], r.predict(df)) > 0.9
        assert r.importance()["feature"][0] == "x"


def test_named_audio_attributes_with_the_84_dim_embedding(data):
    events, items, pairs = data
    emb = np.random.default_rng(2).normal(size=(30, 84)).astype(np.float32)
    df = build_features(events, CUT, pairs, items, audio=AudioTable(np.arange(0, 60, 2), emb))
    tempo = df["audio_attr_tempo"].to_numpy()
    has = df["audio_has"].to_numpy() > 0
    from musicrecall.audio import embedding_names

    col = embedding_names().index("tempo_mean")
    assert np.allclose(tempo[has], emb[pairs["song_id"].to_numpy()[has] // 2, col])
    gap = df["audio_gap_tempo"].to_numpy()
    assert (gap[np.isfinite(gap)] >= 0).all() and np.isnan(gap[~has]).all()


def test_bootstrap_aucs_match_weighted_sklearn_in_both_class_balances():
    rng = np.random.default_rng(3)
    for share in (0.04, 0.5, 0.9):  # the minority class becomes the positives internally
        y = (rng.random(800) < share).astype(int)
        s = np.round(y * 0.7 + rng.normal(size=800), 1)  # many ties
        users = rng.integers(0, 90, 800)
        table = boot_aucs(y, np.stack([s, -s]), users, n_boot=30, seed=4)
        uinv, w = boot_weights(users, 30, 4)
        ref = np.array([roc_auc_score(y, s, sample_weight=w[b][uinv]) for b in range(31)])
        assert np.allclose(table[0], ref) and np.allclose(table[1], 1.0 - ref)
        assert (w[0] == 1).all() and (w[1:].sum(axis=1) == 90).all()  # row 0 = the full sample


def test_seeded_diff_widens_the_bootstrap_interval_by_the_seed_spread():
    rng = np.random.default_rng(0)
    boot = rng.normal(0.0, 0.01, 500)
    a1, b1 = np.r_[0.72, 0.72 + boot][None, :], np.r_[0.70, 0.70 + 0.5 * boot][None, :]
    one = seeded_diff(a1, b1)
    assert one["diff"] == pytest.approx(0.02) and one["sd_seed"] == 0.0
    assert (one["lo"], one["hi"]) == (pytest.approx(one["boot_lo"]), pytest.approx(one["boot_hi"]))
    shift = np.array([0.0, 0.01, -0.01])[:, None]  # three seeds that disagree by +-0.01
    three = seeded_diff(np.repeat(a1, 3, axis=0) + shift, np.repeat(b1, 3, axis=0))
    assert three["diff"] == pytest.approx(0.02) and three["sd_seed"] == pytest.approx(0.01)
    half = three["hi"] - three["diff"]
    assert half == pytest.approx(np.hypot(one["boot_hi"] - 0.02, 1.96 * 0.01 / np.sqrt(3)))
    assert seeded_diff(a1, a1) == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "boot_lo": 0.0, "boot_hi": 0.0, "sd_seed": 0.0}


def toy_samples(seed: int, n_users: int = 60) -> StageSamples:
    """Impressions and candidates where ``x`` (no audio) and ``audio_x`` both carry the labels."""
    rng = np.random.default_rng(seed)
    n = n_users * 20
    x, ax = rng.normal(size=n), rng.normal(size=n)
    logit = x + ax
    df = pl.DataFrame({"user_id": np.repeat(np.arange(n_users), 20), "song_id": np.tile(np.arange(20), n_users),
                       "entry": rng.choice(["radio", "search"], n), "x": x, "audio_x": ax,
                       "full_play": (logit + rng.normal(size=n) > 0).astype(np.int8),
                       "collect": (logit + rng.normal(size=n) > 1.5).astype(np.int8)})
    cand = df.drop("entry").with_columns(cand_rank=pl.Series(np.tile(np.arange(20), n_users)))
    return StageSamples(df, cand, np.arange(n_users))


def test_run_ranking_trains_seeded_arms_and_the_aa_control():
    train, test = toy_samples(0), toy_samples(1)
    run = run_ranking(train, test, rounds=20, seed=5, n_seeds=2, seeded=("collect",))
    assert run.seeds[("collect", True)] == run.seeds[("collect", False)] == [5, 6]
    assert run.seeds[("collect", "aa")] == [7, 8] and run.seeds[("full_play", True)] == [5]
    assert ("full_play", "aa") not in run.impressions and ("pointwise", "aa") not in run.candidates
    assert run.impressions[("collect", "aa")].shape == (2, test.impressions.height)
    assert run.candidates[("collect", True)].shape == (2, test.candidates.height)
    assert not np.isnan(run.impressions[("collect", True)]).any()
    # the A/A arm has the no-audio features and differs only by the seed; the audio arm uses audio_x
    assert run.rankers[("collect@radio", "aa")].features == run.rankers[("collect@radio", False)].features
    assert "audio_x" in run.rankers[("collect@radio", True)].features
    assert not np.allclose(run.impressions[("collect", "aa")], run.impressions[("collect", False)])
    y = test.impressions["collect"].to_numpy()
    auc = lambda arm: roc_auc_score(y, run.impressions[("collect", arm)][0])  # noqa: E731
    assert auc(True) > auc(False) + 0.05  # the audio column carries half of the signal
    tbl = impression_auc_table(test, run, n_boot=50, per_entry=False)
    row = tbl.filter(pl.col("label") == "collect").row(0, named=True)
    assert row["diff_lo"] > 0 and row["aa_lo"] <= row["aa_diff"] <= row["aa_hi"]
    cand, pu = candidate_tables(test, run, lambda u, s: np.zeros(len(u)), n_boot=50)
    assert {"collect", "collect_no_audio", "collect_aa", "lambdarank_no_audio", "fused_order"} <= set(pu)
    assert pu["collect"]["rep"].unique().sort().to_list() == [0, 1]
    lift = paired_lift(pu, "collect", "collect_no_audio", "ndcg", n_boot=50)
    assert lift[1] <= lift[0] <= lift[2]


def test_paired_lift_adds_the_seed_spread():
    users = np.arange(200)
    rng = np.random.default_rng(0)
    b = rng.random(200)
    frame = lambda vals: pl.concat([pl.DataFrame({"user_id": users, "ndcg": v, "rep": r})  # noqa: E731
                                    for r, v in enumerate(vals)])
    pu = {"b": frame([b, b]), "same": frame([b * 1.1, b * 1.1]), "spread": frame([b * 1.0, b * 1.2])}
    same, spread = paired_lift(pu, "same", "b", "ndcg"), paired_lift(pu, "spread", "b", "ndcg")
    assert same[0] == pytest.approx(0.1) and spread[0] == pytest.approx(0.1)
    assert spread[2] - spread[1] > same[2] - same[1] + 0.1  # seeds 0.2 apart: a much wider interval


def test_impressions_from_a_larger_stage_equal_rebuilding_them(data):
    from types import SimpleNamespace

    from musicrecall.fusion import FusedRecall, memoize, popularity_channel, recent_plays

    events, items, _ = data
    split = SimpleNamespace(cut=lambda name: CUT, eval_frame=lambda name: events.filter(pl.col("ts") >= CUT))
    vecs = np.random.default_rng(6).normal(size=(60, 8)).astype(np.float32)
    scorer = profile_scorer(vecs, np.ones(60, bool), recent_plays(events.filter(pl.col("ts") < CUT), 5))

    def channel(shift):
        def ch(users, k, exclude=None):
            ids = (np.arange(k)[None, :] * 7 + users[:, None] * shift) % 60
            return ids.astype(np.int64), np.ones(ids.shape, dtype=np.float32)
        return memoize(ch)

    pop = popularity_channel(np.arange(60.0))

    def stage(names):
        chans = {n: channel(i + 1) for i, n in enumerate(names)}
        return SimpleNamespace(name="test", setup=SimpleNamespace(split=split), channels=chans,
                               scorers={n: scorer for n in names}, fused=FusedRecall(chans, dict.fromkeys(chans, 1.0), pop))

    audio = AudioTable(np.arange(0, 60, 2), np.random.default_rng(5).normal(size=(30, 12)).astype(np.float32), n_pcs=3)
    full = stage_samples(stage(["short_term", "sasrec"]), events, items, audio, n_cand=10, max_users=30)
    small = stage(["short_term"])
    rebuilt = stage_samples(small, events, items, audio, n_cand=10, max_users=30)
    reused = stage_samples(small, events, items, audio, n_cand=10, max_users=30, impressions_from=full)
    assert "sasrec_rank" in full.impressions.columns and "sasrec_score" in full.impressions.columns
    assert reused.impressions.equals(rebuilt.impressions) and reused.candidates.equals(rebuilt.candidates)


def test_audio_selection_check_sees_a_popular_audio_set():
    rng = np.random.default_rng(0)
    plays = rng.integers(1, 100, 300).astype(float)
    has = plays > 60  # the songs with audio are the popular ones
    pcs = {f"audio_pc{j}": np.where(has, rng.normal(size=300), np.nan) for j in range(3)}
    cand = pl.DataFrame({"user_id": np.zeros(300, int), "song_id": np.arange(300), "s_plays": plays,
                         "audio_has": has.astype(np.float32), **pcs})
    out = audio_selection_check(StageSamples(cand, cand, np.zeros(1)))
    assert out["with_audio"] == has.sum() and out["pop_auc_has"] == pytest.approx(1.0)
    assert out["audio_cold_share"] == 0.0 and 0 <= out["pcs_pop_r2"] < 0.2  # random components: no popularity


def test_parallel_fits_give_the_same_models_as_sequential_ones():
    train, test = toy_samples(0), toy_samples(1)
    before = config.n_threads()
    try:
        runs = []
        for n in (1, 2):
            config.set_threads(n)
            runs.append(run_ranking(train, test, rounds=15, seed=1, n_seeds=2, cand_models=("lambdarank", "collect")))
    finally:
        config.set_threads(before)
    a, b = runs
    assert a.impressions.keys() == b.impressions.keys() and a.candidates.keys() == b.candidates.keys()
    for key in a.impressions:
        assert np.array_equal(a.impressions[key], b.impressions[key]), key
    for key in a.candidates:
        assert np.array_equal(a.candidates[key], b.candidates[key]), key


def test_without_an_audio_group_the_audio_arm_is_the_no_audio_fits(monkeypatch):
    """A dataset without audio: both arms would train the same boosters (same features, same seeds, LightGBM
    deterministic), so only the no-audio arm (and the A/A arm) is fitted and stands for both."""
    from musicrecall.ranking import lgbm

    jobs = []
    real = lgbm.fit_all
    monkeypatch.setattr(lgbm, "fit_all", lambda j, rounds: jobs.extend(j) or real(j, rounds))

    run_ranking(toy_samples(0), toy_samples(1), rounds=10, seed=5, n_seeds=2, seeded=("collect",))
    n_with_audio = len(jobs)
    jobs.clear()
    train, test = (StageSamples(s.impressions.drop("audio_x"), s.candidates.drop("audio_x"), s.users)
                   for s in (toy_samples(0), toy_samples(1)))
    run = run_ranking(train, test, rounds=10, seed=5, n_seeds=2, seeded=("collect",))
    # the audio arm's fits are not made: per entry (2) full play x 1 seed + collect x 2 seeds, and the candidate
    # models pointwise, lambdarank (1 seed each) and collect (2 seeds): 2 * 3 + 4 = 10
    assert len(jobs) == n_with_audio - 10
    assert run.seeds[("collect", True)] == [5, 6] and "audio_x" not in run.rankers[("lambdarank", True)].features
    for table in (run.impressions, run.candidates):
        for name, _arm in list(table):
            assert np.array_equal(table[(name, True)], table[(name, False)]) and not np.isnan(table[(name, True)]).all()
    # and they are the boosters a with-audio fit on the same features gives
    df = train.impressions.filter(pl.col("entry") == "radio")
    cols = [c for c in feature_columns(df, True) if c != "entry_code"]
    ref = fit_ranker(df, "collect", cols, rounds=10, seed=5)
    mask = (test.impressions["entry"] == "radio").to_numpy()
    assert np.allclose(ref.predict(test.impressions.filter(pl.Series(mask))), run.impressions[("collect", True)][0, mask])
