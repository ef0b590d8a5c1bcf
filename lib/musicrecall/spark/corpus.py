"""The Song2Vec training corpus on Apache Spark, as shards gensim can stream.

Sessions are the heavy part (one sentence per kept session of the whole log) and are built in Spark
with the rules of :mod:`musicrecall.rules` (full plays in play order, consecutive repeats collapsed,
at least ``CORPUS_MIN_LEN`` songs). KG relation walks depend only on the catalogue's triples (and, in
the per-play ablation, per-song counts), so the driver builds them with the very function the polars
path uses (:func:`musicrecall.corpus.relation_walks`) and Spark mixes them in.

Layout written by :func:`write_corpus` under ``out/``:

* ``sessions/``: parquet, ``session_id`` and ``songs`` (array of song ids, play order);
* ``song_counts/``: parquet, ``song_id`` and ``n`` (occurrences in the session sentences);
* ``sentences/``: the training corpus, one sentence per row in a seeded shuffle order, as parquet
  (``sentence``: array of tokens) or text (tokens separated by a TAB, one sentence per line: entity
  tokens such as ``artist:Jay Chou`` contain spaces). Part files are in corpus order.

:class:`ShardSentences` streams ``sentences/`` into gensim (``Word2Vec(sentences=ShardSentences(p))``)
without loading it; :func:`corpus_from_shards` rebuilds the exact in-memory
:class:`~musicrecall.corpus.Corpus` of the polars path (same order, same digest) when it fits.

The shard order is a seeded shuffle too, but a distributed one (by a hash of seed and session id),
so it is not the polars path's permutation: same sentences, different order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from musicrecall.corpus import Corpus, KGConfig, build_corpus, relation_walks
from musicrecall.rules import CORPUS_MIN_LEN, SONG_PREFIX

TAB = "\t"


def session_frame_spark(kept: DataFrame, min_len: int = CORPUS_MIN_LEN) -> DataFrame:
    """``session_id, songs``: each kept session's full plays in play order, repeats collapsed."""
    full = kept.filter(F.coalesce(F.col("full_play"), F.lit(False)))
    w = Window.partitionBy("session_id").orderBy("ts", "pos_in_session")
    # a song replayed back to back is one listening moment, not a co-occurrence
    full = full.withColumn("_prev", F.lag("song_id").over(w))
    full = full.filter(F.col("_prev").isNull() | (F.col("_prev") != F.col("song_id")))
    sess = full.groupBy("session_id").agg(
        F.array_sort(F.collect_list(F.struct("ts", "pos_in_session", "song_id"))).alias("_plays"))
    return (sess.select("session_id", F.col("_plays.song_id").alias("songs"))
            .filter(F.size("songs") >= min_len))


def _tokens(songs: str) -> F.Column:
    return F.transform(F.col(songs), lambda s: F.concat(F.lit(SONG_PREFIX), s.cast("string")))


def write_corpus(spark: SparkSession, kept: DataFrame, triples: pl.DataFrame, n_items: int, out: str | Path,
                 cfg: KGConfig | None = None, min_len: int = CORPUS_MIN_LEN, seed: int = 0,
                 fmt: str = "parquet") -> dict[str, int]:
    """Write ``sessions/``, ``song_counts/`` and ``sentences/`` (see the module docstring).

    ``kept`` are cleaned kept plays (``session_id``, ``pos_in_session``, ``ts``, ``song_id``,
    ``full_play``); ``triples`` the KG (catalogue-sized, on the driver); ``n_items`` the catalogue size,
    as for :func:`musicrecall.corpus.build_corpus`. Returns counts of sessions, walks and sentences.
    """
    if fmt not in ("parquet", "text"):
        raise ValueError(f"fmt {fmt!r}: expected 'parquet' or 'text'")
    cfg = cfg or KGConfig()
    out = str(out).rstrip("/")
    session_frame_spark(kept, min_len).write.mode("overwrite").parquet(f"{out}/sessions")
    sessions = spark.read.parquet(f"{out}/sessions")
    counts = sessions.select(F.explode("songs").alias("song_id")).groupBy("song_id").agg(F.count(F.lit(1)).alias("n"))
    counts.write.mode("overwrite").parquet(f"{out}/song_counts")
    walks: list[list[str]] = []
    if cfg.gamma > 0 and triples.height:
        counts = spark.read.parquet(f"{out}/song_counts")
        top = counts.agg(F.max("song_id")).first()[0]
        # same length as the polars path's bincount: triples of songs beyond it are dropped there too
        song_counts = np.zeros(max(n_items, (top if top is not None else -1) + 1), dtype=np.int64)
        if cfg.per_play:  # per-song counts are catalogue-sized; only the per-play ablation needs them
            for r in counts.collect():
                song_counts[r["song_id"]] = r["n"]
        walks = relation_walks(triples, song_counts, cfg, seed)
    # a distributed seeded shuffle: sessions by a hash of (seed, session id), walks at random keys
    keyed = sessions.select(F.xxhash64(F.lit(seed), "session_id").alias("_key"), _tokens("songs").alias("sentence"))
    if walks:
        keys = np.random.default_rng([seed, 3]).integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max,
                                                         len(walks), dtype=np.int64)
        table = pa.table({"_key": pa.array(keys), "sentence": pa.array(walks, type=pa.list_(pa.string()))})
        keyed = keyed.unionByName(spark.createDataFrame(table))
    ordered = keyed.orderBy("_key")
    if fmt == "parquet":
        ordered.select("sentence").write.mode("overwrite").parquet(f"{out}/sentences")
    else:
        ordered.select(F.array_join("sentence", TAB).alias("value")).write.mode("overwrite").text(f"{out}/sentences")
    n_sessions = sessions.count()
    return {"sessions": n_sessions, "walks": len(walks), "sentences": n_sessions + len(walks)}


class ShardSentences:
    """Restartable iterable over the sentences of ``out/sentences`` (parquet or text), in order.

    Streams one row group (parquet) or line (text) at a time, so gensim can make several passes over
    a corpus larger than memory: ``Word2Vec(sentences=ShardSentences(path), ...)``.
    """

    def __init__(self, path: str | Path):
        self.folder = Path(str(path).removeprefix("file:"))
        self.parquet = sorted(self.folder.glob("part-*.parquet"))
        self.text = sorted(p for p in self.folder.glob("part-*") if p.suffix != ".parquet" and not p.name.endswith(".crc"))
        if not self.parquet and not self.text:
            raise FileNotFoundError(f"no sentence shards in {self.folder}")

    def __iter__(self) -> Iterator[list[str]]:
        for file in self.parquet:
            reader = pq.ParquetFile(file)
            for group in range(reader.num_row_groups):
                yield from reader.read_row_group(group, columns=["sentence"]).column(0).to_pylist()
        for file in self.text:
            with file.open(encoding="utf-8") as fh:
                for line in fh:
                    yield line.rstrip("\n").split(TAB)


def read_sessions(path: str | Path) -> pl.DataFrame:
    """``out/sessions`` as a polars frame sorted by session id."""
    files = sorted(Path(str(path).removeprefix("file:")).glob("sessions/*.parquet"))
    return pl.read_parquet(files).sort("session_id")


def corpus_from_shards(path: str | Path, triples: pl.DataFrame, n_items: int, cfg: KGConfig | None = None,
                       min_len: int = CORPUS_MIN_LEN, seed: int = 0) -> Corpus:
    """The polars path's exact :class:`Corpus` (order and digest included) from Spark's sessions.

    Feeds the sessions to :func:`musicrecall.corpus.build_corpus` as plays, so the ordering and the
    walks come from the one polars implementation.
    """
    sess = read_sessions(path)
    plays = (sess.with_columns(pl.col("songs").cast(pl.List(pl.Int64))).explode("songs")
             .select("session_id", pl.col("songs").alias("song_id"),
                     pl.int_range(pl.len()).over("session_id").alias("ts"), pl.lit(True).alias("full_play")))
    return build_corpus(plays, triples, n_items, cfg, min_len, seed)
