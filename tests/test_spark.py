"""The Spark engine gives the polars engine's result exactly: cleaning (rows, order, labels, sessions,
quarantine reasons, accounting) and the Song2Vec corpus, on the tiny world, on a larger world with
injected bad and borderline rows, from CSV and from a catalog table; and it needs no network.

Needs pyspark (the ``spark`` extra) and Java: missing either fails in CI and skips, with the reason,
elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from musicrecall import corpus, kg
from musicrecall.cleaning import CleaningConfig, CleanResult, clean_log
from musicrecall.schema import conform
from musicrecall.world import generate_world


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "no Java runtime (java on PATH or JAVA_HOME) for a local Spark"
    return None


@pytest.fixture(scope="module")
def spark():
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"Spark tests cannot run in CI: {reason}")
        pytest.skip(f"Spark tests skipped outside CI: {reason}")
    from musicrecall.spark import local_session

    session = local_session(2, memory="2g")
    yield session
    session.stop()


def assert_identical(ours: CleanResult, theirs: CleanResult, removed_order: bool = True) -> None:
    """Same kept rows in the same order (labels, sessions), same removed rows and reasons, same table.

    ``removed_order=False`` compares removed rows after sorting: when source order comes from
    (source_file, source_row) and a file was loaded twice, exact copies tie and either may be "first".
    """
    assert theirs.accounting.equals(ours.accounting), (ours.accounting, theirs.accounting)
    assert theirs.events.schema == ours.events.schema
    assert theirs.removed.schema == ours.removed.schema
    assert theirs.events.equals(ours.events)
    if removed_order:
        assert theirs.removed.equals(ours.removed)
    else:
        assert theirs.removed.sort(pl.all()).equals(ours.removed.sort(pl.all()))
    assert theirs.rows_in == ours.rows_in


def _inject(world_events: pl.DataFrame, items: pl.DataFrame, now) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bad and borderline rows for every rule, then the whole log shuffled (frame order != source_row).

    Returns the log and the items with one extra song whose length is unknown (label fallbacks).
    """
    cfg = CleaningConfig()
    t0 = world_events["ts"].drop_nulls().min()
    length = int(items["duration_ms"][0])
    song = int(items["song_id"][0])
    no_length = int(items["song_id"].max()) + 1
    items = pl.concat([items, conform(pl.DataFrame({"song_id": [no_length]}), "items")])
    rows: list[dict] = []

    def add(user: int | None, minutes: float, **kw) -> None:
        rows.append({"user_id": user, "song_id": song, "ts": t0 + timedelta(minutes=minutes), "play_ms": 200_000,
                     "song_ms": length, "reason_start": "clickrow", "reason_end": "trackdone", **kw})

    u = 900_000
    add(None, 0)  # missing_user
    add(u, 0, ts=None)  # unparseable_ts
    limit = now + timedelta(seconds=cfg.future_tolerance_s)
    add(u, 0, ts=limit)  # exactly at the limit: kept
    add(u, 0, ts=limit + timedelta(milliseconds=1))  # future_ts
    add(u, 1, play_ms=-1)  # negative_play_ms
    edge = int(length * cfg.beyond_length_factor + cfg.beyond_length_slack_ms)
    add(u, 2, play_ms=edge)  # at the bound: kept
    add(u, 3, play_ms=edge + 1)  # play_beyond_length
    add(u, 4, song_id=None)  # unknown_song
    add(u, 5, song_id=10**9)  # unknown_song
    add(u, 6, play_ms=cfg.accidental_ms - 1)  # accidental
    add(u, 7, play_ms=cfg.accidental_ms)  # kept
    # label fallbacks without a song length (neither logged nor in the catalogue)
    for i, (end, skipped, play) in enumerate([(None, None, None), (None, True, 40_000), (None, False, 40_000),
                                              (None, None, 20_000), ("fwdbtn", None, 190_000)]):
        add(u + 1, 10 * i, song_id=no_length, song_ms=None, reason_end=end, skipped=skipped, play_ms=play)
    add(u + 1, 60, song_ms=None)  # logged length missing, catalogue length used
    # ties in time broken by source order, and back-to-back repeats for the corpus
    for i in range(4):
        add(u + 2, 0, song_id=int(items["song_id"][i % 2]))
    add(u + 2, 4, song_id=int(items["song_id"][1]))
    # session gap exactly at the threshold (same session) and one millisecond over (new session)
    gap = cfg.session_gap_min
    add(u + 3, 0, play_ms=60_000)
    add(u + 3, 1 + gap)
    add(u + 3, 1 + gap + 200_000 / 60_000 + gap + 1 / 60_000)
    # trailing autoplay runs: min_run at the end (removed), min_run - 1 (kept), a whole autoplay session
    add(u + 4, 0)
    for i in range(cfg.autoplay_min_run):
        add(u + 4, 4 * (i + 1), reason_start="autoplay")
    for i in range(cfg.autoplay_min_run - 1):
        add(u + 4, 300 + 4 * i, reason_start="autoplay")
    for i in range(cfg.autoplay_min_run):
        add(u + 4, 900 + 4 * i, reason_start="autoplay")
    add(u + 4, 2000)
    # bots: zero gaps (mean gap 0, the coefficient of variation undefined) and pure volume
    for i in range(cfg.bot_min_plays + 5):
        add(u + 5, 0, song_id=int(items["song_id"][i % 50]), play_ms=30_000 + i)
    for i in range(int(cfg.bot_max_plays_per_day) + 20):
        add(u + 6, i * 0.5 + (i % 7) * 0.3, song_id=int(items["song_id"][i % 50]))
    extra = conform(pl.DataFrame(rows, infer_schema_length=None).with_columns(source_file=pl.lit("injected.json"),
                                                                               source_row=pl.int_range(pl.len())),
                    "events")
    # exact copies of world rows (first copy in source order stays) and of an injected invalid row
    copies = pl.concat([world_events.sample(200, seed=1), extra.head(3)])
    log = pl.concat([world_events, extra, copies])
    return log.sample(fraction=1.0, shuffle=True, seed=7), items


def test_tiny_world_prepare_with_spark_equals_polars_and_corpus_too(spark, tmp_path, monkeypatch):
    """prepare(engine="spark") on the tiny world: the polars result, row for row; then the corpus."""
    from musicrecall.data import prepare
    from musicrecall.spark import ShardSentences, corpus_from_shards, write_corpus

    monkeypatch.setattr("musicrecall.data.DATA_DIR", tmp_path / "data")  # no cache: Spark really runs
    prep = prepare("world", profile="tiny", seed=0, engine="spark")
    ds = prep.dataset
    ours = clean_log(ds.events, ds.items, ds.now)
    assert_identical(ours, prep.clean)
    assert set(prep.clean.removed["reason"]) >= {"duplicate", "bot", "accidental", "autoplay", "future_ts"}
    with pytest.raises(ValueError, match="engine"):
        prepare("world", profile="tiny", seed=0, engine="dask")

    n_items, cfg = ds.items.height, kg.KGConfig(gamma=0.3)
    # real KGs have entity names with spaces; text shards must keep them whole
    triples = pl.concat([ds.triples, pl.DataFrame({"head": ["song:0"], "relation": ["song_artist"],
                                                   "tail": ["artist:Jay Chou"]})])
    kept = spark.createDataFrame(prep.clean.events.to_arrow())
    info = write_corpus(spark, kept, triples, n_items, tmp_path / "corpus", cfg, seed=4, fmt="text")
    ref = kg.build_corpus(ours.events, triples, n_items, cfg, seed=4)
    assert info == {"sessions": ref.n_sessions, "walks": ref.n_walks, "sentences": len(ref.sentences)}
    assert corpus_from_shards(tmp_path / "corpus", triples, n_items, cfg, seed=4).digest() == ref.digest()
    streamed = list(ShardSentences(tmp_path / "corpus" / "sentences"))
    assert sorted(map(tuple, streamed)) == sorted(map(tuple, ref.sentences))
    assert any(tok == "artist:Jay Chou" for s in streamed for tok in s)
    assert list(ShardSentences(tmp_path / "corpus" / "sentences")) == streamed  # restartable (gensim epochs)


def test_larger_world_with_injected_rows_is_identical_on_both_engines(spark, tmp_path):
    """5x the tiny world's users, every rule's borderline rows, duplicates, ties, a shuffled frame."""
    from musicrecall.spark import clean_frames, write_corpus

    world = generate_world("tiny", seed=5, n_users=2500)
    events, items = _inject(world.events, world.items, world.end_ts)
    ours = clean_log(events, items, world.end_ts)
    assert_identical(ours, clean_frames(events, items, world.end_ts, None, tmp_path / "work"))
    counts = dict(ours.accounting.select("reason", "rows").iter_rows())
    assert all(counts[r] > 0 for r in counts if r not in ("rows_in", "kept")), counts
    # plain Song2Vec corpus (parquet shards): the same sessions, songs and counts
    n_items = items.height
    write_corpus(spark, spark.createDataFrame(ours.events.to_arrow()), world.triples, n_items, tmp_path / "c")
    from musicrecall.spark.corpus import read_sessions

    got = read_sessions(tmp_path / "c").with_columns(pl.col("songs").cast(pl.List(pl.Int64)))
    assert got.equals(corpus.session_frame(ours.events))
    ref = kg.session_sentences(ours.events, n_items)
    counts = pl.read_parquet(sorted((tmp_path / "c" / "song_counts").glob("*.parquet")))
    dense = np.zeros(n_items, dtype=np.int64)
    dense[counts["song_id"].to_numpy()] = counts["n"].to_numpy()
    np.testing.assert_array_equal(dense, ref.song_counts)


def _edge_log() -> tuple[pl.DataFrame, pl.DataFrame, object]:
    world = generate_world("tiny", seed=9, n_users=60)
    events, items = _inject(world.events, world.items, world.end_ts)
    return events.sort("source_file", "source_row"), items, world.end_ts


def test_csv_input_through_the_command_line_matches_polars(spark, tmp_path, capsys):
    """CSV in (text columns cast, a garbage timestamp quarantined as unparseable), source order from
    (source_file, source_row), run by ``python -m musicrecall.spark clean``."""
    from musicrecall.spark import read_clean_result
    from musicrecall.spark.__main__ import main
    from musicrecall.spark.cleaning import SparkCleanOutput

    events, items, now = _edge_log()
    # one row's timestamp is unreadable text in the CSV: Spark reads null, as polars sees it
    garbage = events.with_row_index("i").filter(pl.col("user_id").is_not_null() & pl.col("ts").is_not_null())["i"][10]
    events = events.with_columns(ts=pl.when(pl.int_range(pl.len()) == garbage).then(None).otherwise(pl.col("ts")))
    text_ts = pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
    csv = events.with_columns(ts=pl.when(pl.int_range(pl.len()) == garbage).then(pl.lit("31/02/2026 25:61"))
                              .otherwise(text_ts))
    csv.write_csv(tmp_path / "events.csv")
    items.write_csv(tmp_path / "items.csv")
    capsys.readouterr()
    assert main(["clean", "--events", str(tmp_path / "events.csv"), "--items", str(tmp_path / "items.csv"),
                 "--now", now.isoformat(), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows_in = summary.pop("rows_in")
    ours = clean_log(events, items, now)
    theirs = read_clean_result(SparkCleanOutput(str(tmp_path / "out"), summary, rows_in, ["source_file", "source_row"]))
    assert_identical(ours, theirs, removed_order=False)
    key = events.row(garbage, named=True)
    hit = theirs.removed.filter((pl.col("source_file") == key["source_file"]) & (pl.col("source_row") == key["source_row"]))
    assert hit["reason"].to_list() == ["unparseable_ts"]


def test_catalog_table_input_and_other_thresholds_match_polars(spark, tmp_path):
    """``table:name`` input (a Hive table when the session has a metastore; here the local catalog),
    with non-default thresholds."""
    from musicrecall.spark import read_clean_result, read_table, write_clean

    cfg = CleaningConfig(autoplay_min_run=2, session_gap_min=12.5, full_play_share=0.7, accidental_ms=8_000,
                         bot_max_plays_per_day=150.0)
    events, items, now = _edge_log()
    spark.createDataFrame(events.to_arrow()).write.mode("overwrite").saveAsTable("mr_events")
    spark.createDataFrame(items.to_arrow()).write.mode("overwrite").saveAsTable("mr_items")
    try:
        out = write_clean(spark, read_table(spark, "table:mr_events", "events"),
                          read_table(spark, "table:mr_items", "items"), now, tmp_path / "out", cfg)
    finally:
        spark.sql("DROP TABLE IF EXISTS mr_events")
        spark.sql("DROP TABLE IF EXISTS mr_items")
    ours = clean_log(events, items, now, cfg)
    assert_identical(ours, read_clean_result(out, cfg), removed_order=False)
    assert ours.removed.filter(pl.col("reason") == "bot").height > 0


def test_local_session_binds_to_loopback_without_ui(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.ui.enabled") == "false" and spark.sparkContext.uiWebUrl is None
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert os.environ.get("SPARK_LOCAL_IP") == "127.0.0.1"
