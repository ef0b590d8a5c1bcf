"""Log cleaning: polars (one process) vs Apache Spark in local mode, and Spark from 1 to 2 local cores.

On the ``medium`` world (about 22M plays). Both engines go from parquet on disk to parquet on disk
(the way Spark is used), and polars is also timed in memory. Spark runs in a fresh process per core
count (``local[1]``, ``local[2]``: a JVM's master cannot change), and each process times
``--repeats`` runs after its start: the first run pays JIT and code generation (what a one-shot job
costs), the later ones are warm. Spark's result is checked against polars' (accounting table).

This is one machine: it measures Spark's overhead and its scaling over local cores, not a cluster.
Usage: ``python bench/bench_spark.py [--profile medium] [--repeats 3] [--cores 1 2] [--out f.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import polars as pl

from musicrecall.cleaning import clean_log
from musicrecall.config import set_threads
from musicrecall.data import load_dataset
from musicrecall.world import generate_world


def _spark_worker(work: Path, cores: int, repeats: int, now: datetime, memory: str) -> dict:
    """In a fresh process: start local[cores], time ``repeats`` cleanings."""
    from musicrecall.spark import local_session, read_table, write_clean

    t = time.perf_counter()
    spark = local_session(cores, memory=memory)
    startup = time.perf_counter() - t
    runs, counts = [], {}
    for i in range(repeats):
        t = time.perf_counter()
        out = write_clean(spark, read_table(spark, str(work / "events.parquet"), "events"),
                          read_table(spark, str(work / "items.parquet"), "items"), now, work / f"spark-{cores}-{i}")
        runs.append(time.perf_counter() - t)
        counts = out.counts
        shutil.rmtree(work / f"spark-{cores}-{i}", ignore_errors=True)
    spark.stop()
    return {"cores": cores, "startup_s": startup, "runs_s": runs, "counts": counts}


def _polars_worker(work: Path, repeats: int, now: datetime) -> dict:
    """In a fresh process: parquet -> clean_log -> parquet, ``repeats`` times (in-memory part timed too)."""
    set_threads()
    mem, files, counts = [], [], {}
    for _ in range(repeats):
        t = time.perf_counter()
        events, items = pl.read_parquet(work / "events.parquet").drop("_row"), pl.read_parquet(work / "items.parquet")
        t_clean = time.perf_counter()
        res = clean_log(events, items, now)
        mem.append(time.perf_counter() - t_clean)
        res.write(work / "polars", work / "polars")
        files.append(time.perf_counter() - t)
        counts = {r: n for r, n in res.accounting.select("reason", "rows").iter_rows() if r != "rows_in" and n}
        del events, items, res
    return {"memory_s": mem, "files_s": files, "counts": counts}


def _run(args: argparse.Namespace, *worker: str) -> dict:
    cmd = [sys.executable, __file__, "--memory", args.memory, "--worker", *worker]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        causes = [line for line in proc.stderr.splitlines() if "Error" in line or "Exception" in line][:10]
        raise RuntimeError(f"{worker[0]} worker failed ({proc.returncode}):\n" + "\n".join(causes))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="medium")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--memory", default="8g", help="Spark driver memory (local mode runs in the driver; 5g failed at 2 cores)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--users", type=int, default=None, help="override the profile's number of users")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)  # engine, folder, cores, repeats, now
    args = parser.parse_args()
    if args.worker:
        engine, work, cores, repeats, now_iso = args.worker
        now = datetime.fromisoformat(now_iso)
        out = (_polars_worker(Path(work), int(repeats), now) if engine == "polars"
               else _spark_worker(Path(work), int(cores), int(repeats), now, args.memory))
        print(json.dumps(out))
        return
    threads = set_threads()
    overrides = {"n_users": args.users} if args.users else {}
    world = generate_world(args.profile, seed=0, **overrides) if overrides else None
    ds = load_dataset("world", profile=args.profile, seed=0) if world is None else None
    events, items, now = (world.events, world.items, world.end_ts) if world is not None else (ds.events, ds.items, ds.now)
    rows = events.height
    work = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    try:
        events.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64)).write_parquet(work / "events.parquet")
        items.select("song_id", "duration_ms").write_parquet(work / "items.parquet")
        del events, items, world, ds  # each engine runs in its own process, with the memory to itself
        print(f"{rows:,} rows, {threads} threads, load average {os.getloadavg()[0]:.1f}", flush=True)
        pol = _run(args, "polars", str(work), str(threads), str(args.repeats), now.isoformat())
        print(f"polars: {pol}", flush=True)
        spark = {}
        for cores in args.cores:
            spark[cores] = _run(args, "spark", str(work), str(cores), str(args.repeats), now.isoformat())
            print(f"spark local[{cores}]: {spark[cores]}", flush=True)
            assert spark[cores]["counts"] == pol["counts"], "Spark and polars disagree"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    warm = {c: med(s["runs_s"][1:]) if len(s["runs_s"]) > 1 else s["runs_s"][0] for c, s in spark.items()}
    result = {
        "profile": args.profile, "users": args.users, "rows": rows, "repeats": args.repeats, "polars_threads": threads,
        "load_average": round(os.getloadavg()[0], 1),
        "polars_memory_s": round(med(pol["memory_s"]), 2), "polars_files_s": round(med(pol["files_s"]), 2),
        "polars_runs_s": [round(x, 1) for x in pol["files_s"]],
        **{f"spark_local{c}_runs_s": [round(x, 1) for x in s["runs_s"]] for c, s in spark.items()},
        **{f"spark_local{c}_startup_s": round(s["startup_s"], 2) for c, s in spark.items()},
        **{f"spark_local{c}_first_s": round(s["runs_s"][0], 2) for c, s in spark.items()},
        **{f"spark_local{c}_warm_s": round(warm[c], 2) for c in spark},
    }
    best = max(spark)
    result[f"spark_local{best}_warm_over_polars_files"] = round(warm[best] / med(pol["files_s"]), 2)
    if 1 in spark and best > 1:
        result[f"spark_speedup_1_to_{best}_cores"] = round(warm[1] / warm[best], 2)
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
