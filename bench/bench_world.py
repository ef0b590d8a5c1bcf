"""Benchmark world generation on ONE core: median of 3 runs, events/s, and the profile's size bars.

Usage: ``python bench/bench_world.py --profile small [--runs 3] [--seed 0]``
"""

from __future__ import annotations

import argparse
import os

# one core: must be set before numpy / polars are imported
for _var in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from musicrecall.world import generate_world  # noqa: E402

BARS = {
    "tiny": (400, 1500, 30_000),
    "small": (20_000, 30_000, 2_000_000),
    "medium": (100_000, 200_000, 20_000_000),
}


def main() -> None:
    """Run the benchmark and print one line per run plus a summary."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="small", choices=sorted(BARS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    times, world = [], None
    for i in range(args.runs):
        world = None  # free the previous world before timing the next one
        t0 = time.perf_counter()
        world = generate_world(args.profile, seed=args.seed)
        times.append(time.perf_counter() - t0)
        print(f"run {i}: {times[-1]:.2f} s, {world.events.height / times[-1]:,.0f} events/s")
    assert world is not None
    med = statistics.median(times)
    n_ev = world.events.height
    users, songs = world.users.height, world.items.height
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"profile={args.profile} users={users:,} songs={songs:,} events={n_ev:,} triples={world.triples.height:,}"
    )
    print(f"median {med:.2f} s -> {n_ev / med:,.0f} events/s (1 core); peak RSS {peak:,.0f} MiB")
    bu, bs, be = BARS[args.profile]
    ok = users >= bu and songs >= bs and n_ev >= be
    print(f"size bars (users>={bu:,}, songs>={bs:,}, events>={be:,}): {'OK' if ok else 'FAIL'}")
    print(f"speed bar (>= 1M events/s): {'OK' if n_ev / med >= 1e6 else 'FAIL'}")


if __name__ == "__main__":
    main()
