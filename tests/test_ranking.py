"""Ranking features use only the training window; LightGBM threads and metrics behave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from musicrecall import config
from musicrecall.ranking import (
    AUDIO_PREFIX,
    AudioTable,
    auc_ci,
    build_features,
    feature_columns,
    fit_ranker,
    lgb_params,
    lgb_threads,
    per_user_ranking,
    profile_scorer,
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
