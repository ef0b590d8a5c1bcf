"""Tests of the simulated world: determinism, schema, stated distributions and every placebo switch."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from musicrecall.schema import EVENTS_SCHEMA, ITEMS_SCHEMA, TRIPLES_SCHEMA, USERS_SCHEMA
from musicrecall.world import PROFILES, Effects, World, generate_world


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world("tiny", seed=0)


@pytest.fixture(scope="module")
def placebos() -> dict[str, World]:
    names = ("sequence", "kg", "audio", "cross_business", "multi_interest")
    return {n: generate_world("tiny", seed=0, effects=Effects().placebo(n)) for n in names}


def genuine(w: World) -> pl.DataFrame:
    """Genuine plays (no noise flag), with their noise-free columns."""
    noise = w.truth["event_noise"]
    return w.events.join(noise, on="source_row").filter(pl.col("noise").is_null()).drop("noise")


def _all_frames(w: World) -> dict[str, pl.DataFrame]:
    frames = {n: getattr(w, n) for n in ("events", "items", "users", "triples", "cross_business")}
    return frames | {f"truth_{k}": v for k, v in w.truth.items()}


def test_deterministic_and_seed_dependent(world: World) -> None:
    again = generate_world("tiny", seed=0)
    for name, df in _all_frames(world).items():
        assert df.equals(_all_frames(again)[name]), name
    other = generate_world("tiny", seed=1)
    assert not other.events.equals(world.events)
    assert not other.items.equals(world.items)


def test_schemas_and_ordering(world: World) -> None:
    assert world.events.schema == pl.Schema(EVENTS_SCHEMA)
    assert world.items.schema == pl.Schema(ITEMS_SCHEMA)
    assert world.users.schema == pl.Schema(USERS_SCHEMA)
    assert world.triples.schema == pl.Schema(TRIPLES_SCHEMA)
    ev = world.events
    assert ev["source_row"].to_list() == list(range(ev.height))
    assert ev["source_file"].unique().to_list() == ["world:tiny:seed0"]
    ts = ev["ts"]
    n_null = ts.null_count()
    assert n_null > 0 and ts.tail(n_null).null_count() == n_null  # nulls last
    assert ts.head(ev.height - n_null).is_sorted()
    assert world.truth["event_noise"].height == ev.height
    assert world.items["song_id"].to_list() == list(range(world.config.n_songs))
    assert world.items["song_key"][12] == "s000012"
    assert set(world.triples["relation"].unique()) == {
        "song_artist", "song_album", "song_genre", "song_language", "song_version", "artist_genre",
    }  # fmt: skip
    assert world.triples.filter(pl.col("relation") == "song_artist")["tail"][0].startswith("artist:artist_")
    cb = world.cross_business
    assert cb["b_age_bucket"].null_count() == 0 and cb["f23"].dtype == pl.Float32
    assert world.end_ts == datetime(2026, 3, 2, tzinfo=UTC)


def test_profile_sizes_and_users(world: World) -> None:
    assert PROFILES["small"]["n_users"] >= 20_000 and PROFILES["medium"]["n_songs"] >= 200_000
    assert world.users.height == 500 and world.items.height == 2000
    assert 30_000 <= world.events.height <= 60_000
    kind = world.truth["user_kind"]["kind"]
    assert abs((kind == "cold").mean() - 0.08) < 0.02
    assert (kind == "bot").sum() >= 1
    nulls = {c: world.users[c].null_count() / world.users.height for c in ("age_bucket", "gender", "region")}
    assert abs(nulls["age_bucket"] - 0.4) < 0.08 and abs(nulls["gender"] - 0.5) < 0.08
    assert abs(nulls["region"] - 0.3) < 0.08
    # cold users: few plays, all in the last ~15 % of the period
    cold = world.truth["user_kind"].filter(pl.col("kind") == "cold")["user_id"]
    g = genuine(world).filter(pl.col("user_id").is_in(cold.implode()))
    per_user = g.group_by("user_id").len()["len"]
    assert per_user.max() <= 8
    assert g["ts"].min() >= datetime(2026, 1, 1, tzinfo=UTC) + (world.end_ts - world.config.start) * 0.8
    assert generate_world("tiny", seed=0, n_users=300).users.height == 300
    with pytest.raises(TypeError):
        generate_world("tiny", n_userz=3)
    with pytest.raises(ValueError):
        Effects().placebo("nope")


def test_noise_shares_and_signatures(world: World) -> None:
    ev = world.events.join(world.truth["event_noise"], on="source_row")
    n = ev.height
    share = dict(ev.group_by("noise").len().iter_rows())
    assert 0.003 < share["duplicate"] / n < 0.007
    assert 0.0005 < share["clock_skew"] / n < 0.0015
    assert 0.015 < share["accidental"] / n < 0.04
    assert 0.03 < share["autoplay"] / n < 0.1
    for k in ("negative_play_ms", "play_beyond_length", "unknown_song", "missing_user", "unparseable_ts"):
        assert 0.0002 < share[k] / n < 0.001, k
    end = world.end_ts
    by = {k: ev.filter(pl.col("noise") == k) for k in share if k is not None}
    assert (by["clock_skew"]["ts"] > end).all()
    assert (ev.filter(pl.col("noise").is_null())["ts"] < end).all()
    assert (by["negative_play_ms"]["play_ms"] < 0).all()
    beyond = by["play_beyond_length"]
    assert (beyond["play_ms"] > 1.5 * beyond["song_ms"] + 10_000).all()
    assert (by["unknown_song"]["song_id"] >= world.config.n_songs).all()
    assert by["missing_user"]["user_id"].null_count() == share["missing_user"]
    assert by["unparseable_ts"]["ts"].null_count() == share["unparseable_ts"]
    acc = by["accidental"]
    assert acc["play_ms"].is_between(300, 4000).all() and set(acc["reason_end"]) <= {"fwdbtn", "endplay"}
    auto = by["autoplay"]
    assert (auto["reason_start"] == "autoplay").all() and (auto["reason_end"] == "trackdone").all()
    # genuine confusers: ~3 % of genuine plays also say autoplay
    gen = ev.filter(pl.col("noise").is_null())
    assert 0.015 < (gen["reason_start"] == "autoplay").mean() < 0.05
    # bots: fixed cadence of 30-35 s
    bot = by["bot"].sort("user_id", "ts")
    gaps = bot.select(pl.col("ts").diff().over("user_id").dt.total_milliseconds()).drop_nulls()["ts"]
    assert ((gaps >= 30_000) & (gaps <= 35_000)).mean() > 0.99
    assert bot["play_ms"].is_between(30_000, 31_000).all()
    # duplicates: every copy equals some other row apart from source_row
    cols = [c for c in ev.columns if c not in ("source_row", "noise")]
    dup = by["duplicate"].select(cols)
    orig = ev.filter(pl.col("noise").ne_missing("duplicate")).select(cols)
    assert dup.join(orig, on=cols, how="semi", nulls_equal=True).height == dup.height


def test_skip_rate_by_entry(world: World) -> None:
    rate = dict(genuine(world).group_by("entry").agg(pl.col("skipped").mean()).iter_rows())
    assert rate["radio"] > rate["search"] + 0.15


def _consecutive_same_artist_or_album(w: World) -> float:
    g = genuine(w).sort("user_id", "ts").join(w.items.select("song_id", "artist", "album"), on="song_id")
    g = g.sort("user_id", "ts")
    same = (pl.col("artist") == pl.col("artist").shift(1)) | (pl.col("album") == pl.col("album").shift(1))
    ok = (pl.col("user_id") == pl.col("user_id").shift(1)) & (pl.col("song_id") != pl.col("song_id").shift(1))
    return g.select(same.filter(ok).mean()).item()


def test_sequence_placebo(world: World, placebos: dict[str, World]) -> None:
    on, off = (
        _consecutive_same_artist_or_album(world),
        _consecutive_same_artist_or_album(placebos["sequence"]),
    )
    assert on > 0.3 and on > 2.5 * off, (on, off)


def _top_published_genre_share(w: World, items: pl.DataFrame) -> float:
    g = genuine(w).join(items.select("song_id", "genre"), on="song_id")
    per = (
        g.group_by("user_id", "genre")
        .len()
        .group_by("user_id")
        .agg((pl.col("len").max() / pl.col("len").sum()).alias("share"), pl.col("len").sum().alias("n"))
    )
    return per.filter(pl.col("n") >= 20)["share"].mean()


def test_kg_placebo(world: World, placebos: dict[str, World]) -> None:
    pw = placebos["kg"]
    on = _top_published_genre_share(world, world.items)
    off = _top_published_genre_share(pw, pw.items)
    shuffled = pw.items.with_columns(pl.col("genre").shuffle(seed=7))
    baseline = _top_published_genre_share(pw, shuffled)
    assert on > off + 0.15, (on, off)
    assert abs(off - baseline) < 0.05, (off, baseline)
    # marginals of the published attributes are unchanged, behaviour (song choice) is identical
    assert world.items["genre"].sort().equals(pw.items["genre"].sort())
    assert world.events["song_id"].equals(pw.events["song_id"])


def _audio_corr(w: World) -> float:
    taste = w.truth["user_taste"]
    style = w.truth["song_style"]
    g = genuine(w).join(taste, on="user_id").join(style, on="song_id")
    t = g.select(f"taste_{d}" for d in range(4)).to_numpy()
    f = g.select(f"style_{d}" for d in range(4, 8)).to_numpy()
    cos = (t * f).sum(1) / np.linalg.norm(f, axis=1)
    return float(np.corrcoef(cos, ~g["skipped"].to_numpy())[0, 1])


def test_audio_placebo(world: World, placebos: dict[str, World]) -> None:
    on, off = _audio_corr(world), _audio_corr(placebos["audio"])
    assert on > 0.1 and abs(off) < 0.03, (on, off)


def _cross_r2(w: World) -> float:
    x = w.cross_business.select(f"f{j:02d}" for j in range(24)).to_numpy().astype(np.float64)
    y = (
        w.truth["user_interests"]
        .pivot(on="genre", index="user_id", values="weight", aggregate_function="sum")
        .sort("user_id")
        .fill_null(0.0)
    )
    assert y["user_id"].to_list() == list(range(x.shape[0]))
    y = y.drop("user_id").to_numpy()
    x = np.hstack([x, np.ones((x.shape[0], 1))])
    half = x.shape[0] // 2
    coef, *_ = np.linalg.lstsq(x[:half], y[:half], rcond=None)
    resid = y[half:] - x[half:] @ coef
    return float(1.0 - (resid**2).sum() / ((y[half:] - y[:half].mean(axis=0)) ** 2).sum())


def test_cross_business_placebo(world: World, placebos: dict[str, World]) -> None:
    on, off = _cross_r2(world), _cross_r2(placebos["cross_business"])
    assert on > 0.3 and off < 0.02, (on, off)
    a = world.cross_business["f00"].to_numpy()
    b = placebos["cross_business"].cross_business["f00"].to_numpy()
    assert abs(a.std() - b.std()) < 0.15 and abs(a.mean() - b.mean()) < 0.15  # same marginals


def test_multi_interest_placebo(world: World, placebos: dict[str, World]) -> None:
    def n_interests(w: World) -> pl.Series:
        return w.truth["user_interests"].group_by("user_id").len()["len"]

    assert (n_interests(world) > 1).mean() > 0.5
    off = n_interests(placebos["multi_interest"])
    assert off.len() == world.users.height and (off == 1).all()


def test_interest_weights_and_truth(world: World) -> None:
    ui = world.truth["user_interests"]
    sums = ui.group_by("user_id").agg(pl.col("weight").sum())["weight"]
    assert np.allclose(sums.to_numpy(), 1.0)
    assert ui["rank"].max() <= 4
    style = world.truth["song_style"]
    assert style.height == world.config.n_songs and style["pref_cluster"].max() < 16 * 7
    # genuine plays concentrate on the user's true interest clusters
    g = genuine(world).join(style.select("song_id", "pref_cluster"), on="song_id")
    hit = g.join(ui, left_on=["user_id", "pref_cluster"], right_on=["user_id", "cluster"], how="semi").height
    assert hit / g.height > 0.5


def test_save_load_roundtrip(world: World, tmp_path) -> None:
    path = world.save(tmp_path / "w")
    world.save(path)  # overwrite in place
    back = World.load(path)
    assert back.config == world.config
    for name, df in _all_frames(world).items():
        assert df.equals(_all_frames(back)[name]), name
    assert not list(tmp_path.glob(".w*"))  # no leftovers


def test_segment_sampler_matches_weights() -> None:
    from musicrecall.world.catalog import SegmentSampler

    w = np.random.default_rng(0).lognormal(0.0, 2.0, 50)  # skewed, like song popularity
    bounds = [(0, 10), (10, 30), (30, 50)]
    sampler = SegmentSampler.build(
        np.concatenate([[0.0], np.cumsum(w)]),
        np.array([b[0] for b in bounds]),
        np.array([b[1] for b in bounds]),
    )
    seg = np.repeat(np.arange(len(bounds)), 200_000)
    got = sampler.draw(np.random.default_rng(1), seg)
    for s, (a, b) in enumerate(bounds):
        x = got[seg == s]
        assert x.min() >= a and x.max() < b
        freq = np.bincount(x - a, minlength=b - a) / len(x)
        assert np.abs(freq - w[a:b] / w[a:b].sum()).max() < 0.005


def test_several_user_chunks_deterministic() -> None:
    from musicrecall.world.sessions import CHUNK_USERS

    kw = {"n_users": 2 * CHUNK_USERS + 100, "n_songs": 3000, "sessions_per_user": 1.5, "n_days": 20}
    a, b = generate_world("tiny", seed=5, **kw), generate_world("tiny", seed=5, **kw)
    assert a.events.equals(b.events) and a.truth["event_noise"].equals(b.truth["event_noise"])
    users = a.events["user_id"].drop_nulls()
    assert users.min() < CHUNK_USERS and users.max() >= 2 * CHUNK_USERS  # every chunk produced events
    assert a.events["ts"].drop_nulls().is_sorted()
