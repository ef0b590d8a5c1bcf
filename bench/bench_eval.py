"""Benchmark of full-catalogue ranking evaluation (musicrecall.evaluation).

Workload: 20k users x 50k songs, dim 64, exact top-200 by inner product over the entire catalogue
with 50 history songs masked per user, then HitRate / Recall / NDCG @50 and @200 per user.
Budget: <= 10 s on 2 cores (median of ``--runs`` runs).

References (same inputs, same thread count):

* ``numpy``: the naive approach — the full [users x songs] score matrix with numpy matmul,
  history masked, ``np.argpartition`` + sort of the top 200 (run once: it needs ~4 GB and is slow);
* ``faiss_flat``: ``faiss.IndexFlatIP`` exact search at k=200 (no masking);
* ``hnsw``: ``FaissIndex(kind="hnsw")`` build + search, its recall vs the exact top-200 and speed.

Usage::

    .venv/bin/python bench/bench_eval.py [--threads 2] [--runs 3] [--out reports/bench_eval.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from musicrecall import config
from musicrecall.evaluation import (
    FaissIndex,
    UserItemCSR,
    ann_recall,
    evaluate_scores,
    evaluate_topk,
    topk_scores,
)

BUDGET_S = 10.0


def make_data(n_users: int, n_items: int, dim: int, n_hist: int, n_targets: int, seed: int = 0):
    """Clustered embeddings, per-user history to exclude and targets (both sorted CSR)."""
    rng = np.random.default_rng(seed)
    n_clusters = 200
    centers = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    item_c = rng.integers(0, n_clusters, size=n_items)
    items = (centers[item_c] + 1.0 * rng.normal(size=(n_items, dim))).astype(np.float32)
    users = (
        centers[rng.integers(0, n_clusters, size=n_users)] + 1.0 * rng.normal(size=(n_users, dim))
    ).astype(np.float32)

    def csr(per_user: int) -> UserItemCSR:
        # per_user distinct random songs per user, sorted within rows (vectorised: sort random keys)
        cand = rng.integers(0, n_items, size=(n_users, per_user * 2))
        cand.sort(axis=1)
        first = np.ones_like(cand, dtype=bool)
        first[:, 1:] = cand[:, 1:] != cand[:, :-1]
        keep = first & (np.cumsum(first, axis=1) <= per_user)
        sizes = keep.sum(axis=1)
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return UserItemCSR(users=np.arange(n_users), indptr=indptr, indices=cand[keep].astype(np.int64))

    return users, items, csr(n_hist), csr(n_targets)


def timed(fn, runs: int) -> tuple[float, list[float], object]:
    """Median wall time of ``runs`` calls of ``fn`` (and the last result)."""
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def numpy_reference(users: np.ndarray, items: np.ndarray, exclude: UserItemCSR, k: int) -> np.ndarray:
    """Naive full score matrix + argpartition (the thing :func:`topk_scores` replaces)."""
    s = users @ items.T
    s[exclude.row_ids(), exclude.indices] = -np.inf
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--skip-numpy", action="store_true", help="skip the slow naive numpy reference")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--hnsw-efc", type=int, default=100)
    ap.add_argument("--hnsw-efs", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="write the results as json")
    args = ap.parse_args()

    threads = config.set_threads(args.threads)
    ks = (50, args.k)
    users, items, hist, targets = make_data(args.users, args.items, args.dim, 50, 10)
    print(f"{args.users} users x {args.items} songs, dim {args.dim}, top-{args.k}, {threads} threads")

    # --- ours: exact masked top-k + metrics
    med, times, metrics = timed(
        lambda: evaluate_scores(users, items, targets, ks=ks, exclude=hist, batch=args.batch), args.runs
    )
    t_topk, _, (exact_idx, _) = timed(lambda: topk_scores(users, items, args.k, batch=args.batch), 1)
    t_metrics, _, _ = timed(lambda: evaluate_topk(exact_idx, targets, ks), 1)
    ok = med <= BUDGET_S
    print(
        f"evaluate_scores (masked top-{args.k} + metrics): median {med:.2f} s  runs {[round(t, 2) for t in times]}"
    )
    print(f"  of which metrics only: {t_metrics:.2f} s; unmasked topk_scores: {t_topk:.2f} s")
    print(f"  budget {BUDGET_S:.0f} s: {'OK' if ok else 'OVER BUDGET'}")
    result: dict[str, object] = {
        "n_users": args.users,
        "n_items": args.items,
        "dim": args.dim,
        "k": args.k,
        "threads": threads,
        "batch": args.batch,
        "eval_median_s": med,
        "eval_runs_s": times,
        "metrics_only_s": t_metrics,
        "topk_unmasked_s": t_topk,
        "budget_s": BUDGET_S,
        "within_budget": ok,
        "mean_recall@200_random_targets": float(metrics[f"recall@{args.k}"].mean()),
        "machine": platform.processor() or platform.machine(),
    }

    # --- reference 1: naive numpy over the full score matrix
    if not args.skip_numpy:
        t_np, _, np_idx = timed(lambda: numpy_reference(users, items, hist, args.k), 1)
        ours_idx, _ = topk_scores(users, items, args.k, exclude=hist, batch=args.batch)
        agree = float((np_idx == ours_idx).mean())
        print(
            f"numpy full matrix + argpartition: {t_np:.2f} s -> speed-up x{t_np / med:.1f} (agreement {agree:.4f})"
        )
        result.update(numpy_ref_s=t_np, speedup_vs_numpy=t_np / med, numpy_agreement=agree)

    # --- reference 2: faiss exact flat search (no masking)
    flat = FaissIndex(items, kind="flat")
    t_flat, _, (_, flat_idx) = timed(lambda: flat.search(users, args.k), 1)
    print(
        f"faiss IndexFlatIP k={args.k}: {t_flat:.2f} s vs our unmasked topk {t_topk:.2f} s "
        f"(ratio faiss/ours x{t_flat / t_topk:.2f}; recall vs ours {ann_recall(flat_idx, exact_idx):.4f})"
    )
    result.update(faiss_flat_s=t_flat, faiss_flat_over_ours=t_flat / t_topk)

    # --- approximate: HNSW
    t0 = time.perf_counter()
    hnsw = FaissIndex(items, kind="hnsw", M=args.hnsw_m, efConstruction=args.hnsw_efc, efSearch=args.hnsw_efs)
    t_build = time.perf_counter() - t0
    t_h, _, (_, h_idx) = timed(lambda: hnsw.search(users, args.k), 1)
    rec = ann_recall(h_idx, exact_idx)
    print(
        f"HNSW M={args.hnsw_m} efC={args.hnsw_efc} efS={args.hnsw_efs}: build {t_build:.2f} s, "
        f"search {t_h:.2f} s (x{t_topk / t_h:.2f} vs exact topk), recall@{args.k} vs exact {rec:.4f}"
    )
    result.update(
        hnsw_build_s=t_build,
        hnsw_search_s=t_h,
        hnsw_speedup_vs_exact=t_topk / t_h,
        hnsw_recall=rec,
        hnsw_params={"M": args.hnsw_m, "efConstruction": args.hnsw_efc, "efSearch": args.hnsw_efs},
    )

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
