"""Log cleaning: polars (musicrecall.cleaning) vs the same rules in pandas, at ~10M rows.

Prints the median wall time of each over ``--repeats`` runs in this one process and their ratio (the
bar is polars >= 5x faster). The two implementations are checked to agree in
tests/test_cleaning_reference.py. Usage: ``python bench/bench_cleaning.py [--users 50000] [--out f.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from reference_pandas_cleaning import clean_pandas  # noqa: E402

from musicrecall.cleaning import CleaningConfig, clean_log  # noqa: E402
from musicrecall.config import set_threads  # noqa: E402
from musicrecall.world import generate_world  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=55_000, help="medium-profile world with this many users")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    threads = set_threads()
    world = generate_world("medium", seed=0, n_users=args.users)
    events, items, cfg = world.events, world.items, CleaningConfig()
    print(f"{events.height:,} rows, {threads} threads")
    pd_events, pd_items = events.to_pandas(), items.to_pandas()
    times = {"polars": [], "pandas": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = clean_log(events, items, world.end_ts, cfg)
        times["polars"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = clean_pandas(pd_events, pd_items, world.end_ts, cfg)
        times["pandas"].append(time.perf_counter() - t)
    kept_ref = int(ref["reason"].isna().sum())
    assert kept_ref == res.events.height, f"implementations disagree: {kept_ref} vs {res.events.height} kept"
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"rows": events.height, "threads": threads, "polars_s": round(med["polars"], 2),
              "pandas_s": round(med["pandas"], 2), "speedup": round(med["pandas"] / med["polars"], 2)}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
