"""Command line for the Spark backend; runs locally or under spark-submit.

    python -m musicrecall.spark clean --events EVENTS --items ITEMS --now 2026-03-01T00:00:00Z --out OUT
    python -m musicrecall.spark corpus --clean OUT --triples TRIPLES --n-items N --out CORPUS [--gamma 0.2]

On a cluster (the driver needs musicrecall installed; executors need nothing, no Python UDF is used):

    spark-submit --master yarn --deploy-mode client lib/musicrecall/spark/__main__.py clean \\
        --events table:logs.plays --items table:catalog.songs --now 2026-03-01T00:00:00Z --out hdfs:///x/clean

EVENTS/ITEMS are parquet paths, CSV paths (``.csv``) or ``table:db.name`` (Hive when the session has a
metastore). Without an active session (plain ``python -m``), a local one is started (``--cores``).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from musicrecall.rules import CleaningConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musicrecall.spark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=None, help="local mode only: local[cores]")
    parser.add_argument("--hive", action="store_true", help="local mode only: enable a Hive metastore")
    sub = parser.add_subparsers(dest="command", required=True)
    clean = sub.add_parser("clean", help="clean a log (rules of musicrecall.rules)")
    clean.add_argument("--events", required=True)
    clean.add_argument("--items", required=True)
    clean.add_argument("--now", required=True, help="export time, ISO 8601 (later timestamps are clock skew)")
    clean.add_argument("--out", required=True)
    clean.add_argument("--config", default="{}", help='JSON of CleaningConfig fields, e.g. {"accidental_ms": 3000}')
    corpus = sub.add_parser("corpus", help="Song2Vec corpus shards from a cleaned log")
    corpus.add_argument("--clean", required=True, help="the --out folder of 'clean'")
    corpus.add_argument("--triples", required=True, help="triples (parquet path or table:db.name)")
    corpus.add_argument("--n-items", type=int, required=True)
    corpus.add_argument("--out", required=True)
    corpus.add_argument("--gamma", type=float, default=0.0)
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--format", choices=["parquet", "text"], default="parquet")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one step; prints a JSON summary."""
    args = _parser().parse_args(argv)
    from pyspark.sql import SparkSession

    from musicrecall.spark.session import get_spark, local_session

    spark = (get_spark() if SparkSession.getActiveSession() is not None
             else local_session(args.cores, hive=args.hive))
    from musicrecall.spark.io import read_table

    if args.command == "clean":
        from musicrecall.spark.cleaning import write_clean

        now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        out = write_clean(spark, read_table(spark, args.events, "events"), read_table(spark, args.items, "items"),
                          now, args.out, CleaningConfig(**json.loads(args.config)))
        print(json.dumps({"rows_in": out.rows_in, **out.counts}))
    else:
        import polars as pl

        from musicrecall.corpus import KGConfig
        from musicrecall.spark.corpus import write_corpus

        triples = pl.from_arrow(read_table(spark, args.triples, "triples").toArrow())
        kept = spark.read.parquet(f"{args.clean.rstrip('/')}/rows/stage=kept")
        info = write_corpus(spark, kept, triples, args.n_items, args.out, KGConfig(gamma=args.gamma), seed=args.seed,
                            fmt=args.format)
        print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
