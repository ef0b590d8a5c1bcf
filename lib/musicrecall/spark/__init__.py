"""Apache Spark backend for the two data-heavy steps: log cleaning and Song2Vec corpus building.

Same rules as the polars path (one definition, :mod:`musicrecall.rules`), checked identical by
``tests/test_spark.py``. Needs the optional extra (``pip install -e '.[spark]'``) and a Java runtime.

* :mod:`.session` — the user's SparkSession (cluster, spark-submit) or a local one bound to 127.0.0.1;
* :mod:`.io` — canonical tables from parquet, CSV or a Hive/catalog table (``table:db.name``);
* :mod:`.cleaning` — :func:`clean_log_spark`, written as parquet partitioned by stage;
* :mod:`.corpus` — session sentences and KG walks as shards gensim streams (:class:`ShardSentences`);
* ``python -m musicrecall.spark`` (or ``spark-submit lib/musicrecall/spark/__main__.py``) — both steps
  from the command line.

Notebooks use it through ``musicrecall.data.prepare(..., engine="spark")``, which hands the dataset to
Spark and the result back through parquet files.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import polars as pl

from musicrecall.cleaning import CleanResult
from musicrecall.rules import CleaningConfig
from musicrecall.spark.cleaning import SparkCleanOutput, clean_log_spark, read_clean_result, write_clean
from musicrecall.spark.corpus import ShardSentences, corpus_from_shards, session_frame_spark, write_corpus
from musicrecall.spark.io import conform_spark, read_table
from musicrecall.spark.session import get_spark, local_session

__all__ = ["SparkCleanOutput", "ShardSentences", "clean_frames", "clean_log_spark", "conform_spark",
           "corpus_from_shards", "get_spark", "local_session", "read_clean_result", "read_table",
           "session_frame_spark", "write_clean", "write_corpus"]


def clean_frames(events: pl.DataFrame, items: pl.DataFrame, now: datetime, config: CleaningConfig | None,
                 work_dir: Path, keep_output: bool = False) -> CleanResult:
    """Clean polars frames on Spark: the polars-path result, computed by Spark.

    The frames go to Spark as parquet under ``work_dir`` (with ``_row``, the frame's row order, so
    ties break exactly as in polars) and come back as parquet; no pandas on the way. ``work_dir`` is
    removed afterwards unless ``keep_output``.
    """
    spark = get_spark()
    work_dir.mkdir(parents=True, exist_ok=True)
    events.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64)).write_parquet(work_dir / "events.parquet")
    items.select("song_id", "duration_ms").write_parquet(work_dir / "items.parquet")
    try:
        out = write_clean(spark, read_table(spark, str(work_dir / "events.parquet"), "events"),
                          read_table(spark, str(work_dir / "items.parquet"), "items"), now, work_dir / "out", config)
        return read_clean_result(out, config)
    finally:
        if not keep_output:
            shutil.rmtree(work_dir, ignore_errors=True)
