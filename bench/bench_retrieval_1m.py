"""Maximum-inner-product retrieval at catalogue scale: faiss exact vs HNSW vs IVF vs IVF-PQ at 1M songs.

Catalogue: ``--n`` song vectors (default 1,000,000, dim 64) with a realistic cluster structure: genres
(``--genres``) split into sub-styles (``--clusters``) whose sizes follow a Zipf law (a few huge styles,
a long tail), songs scattered around their style's centre, and vector norms that grow with a
log-normal "popularity" (as in trained embeddings, where popular songs have longer vectors). Queries
are user / interest vectors: a mix of one to three styles drawn with the same Zipf law, plus noise.
With ``--trained`` the song vectors of a trained checkpoint (e.g. ``data/checkpoints/sasrec-*.pt``)
are tiled to ``--n`` rows with a small Gaussian perturbation (a tenth of the median distance to the
nearest neighbour) and queried with perturbed song vectors, so the real geometry is searched too.

HNSW (``--M`` graph degrees, one build each, ``--ef-search`` swept on each graph) and IVF use the
MIPS-to-L2 transform (:mod:`musicrecall.evaluation.search`); ``default`` is what serving builds with
no arguments (``FaissIndex(songs)``), checked against the bar recall@200 >= 0.95 at >= 5x exact.

For every index: build time, memory (the serialised index, i.e. what a server holds), queries per
second of one batched search call, its speed over exact search (faiss ``IndexFlatIP``, measured in
the same run) and recall@k (id overlap with the exact top-k) plus tie-aware recall.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/bench_retrieval_1m.py [--n 1000000] [--nq 2000] [--k 200]
        [--kinds hnsw,default] [--M 16,32] [--ef-search 200,400,800] [--out rows.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import faiss
import numpy as np

from musicrecall import config
from musicrecall.evaluation.search import FaissIndex, ann_recall, ann_recall_by_score


def zipf_probs(n: int, a: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** a
    return p / p.sum()


def synthetic(n: int, dim: int, n_genres: int, n_clusters: int, zipf: float, nq: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(songs [n, dim], queries [nq, dim])`` float32 (see the module docstring)."""
    rng = np.random.default_rng(seed)
    genres = rng.standard_normal((n_genres, dim)).astype(np.float32)
    centres = genres[rng.integers(0, n_genres, n_clusters)] + 0.6 * rng.standard_normal((n_clusters, dim)).astype(np.float32)
    p = zipf_probs(n_clusters, zipf)
    cluster = rng.choice(n_clusters, size=n, p=p)
    songs = np.empty((n, dim), np.float32)
    for start in range(0, n, 200_000):  # in chunks: bounded float64 temporaries
        c = cluster[start:start + 200_000]
        songs[start:start + len(c)] = centres[c] + 0.5 * rng.standard_normal((len(c), dim)).astype(np.float32)
    songs /= np.linalg.norm(songs, axis=1, keepdims=True)
    songs *= rng.lognormal(0.0, 0.35, n).astype(np.float32)[:, None]  # popularity-like norms
    n_taste = rng.integers(1, 4, nq)
    queries = np.zeros((nq, dim), np.float32)
    for j in range(3):
        has = n_taste > j
        picks = rng.choice(n_clusters, size=int(has.sum()), p=p)
        queries[has] += rng.uniform(0.3, 1.0, (int(has.sum()), 1)).astype(np.float32) * centres[picks]
    queries += 0.3 * rng.standard_normal((nq, dim)).astype(np.float32)
    return songs, queries


def tiled(path: Path, n: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A trained checkpoint's song vectors tiled to ``n`` rows with a small perturbation, and queries."""
    import torch

    state = torch.load(path, weights_only=False)["model"]
    key = next(k for k in ("out_emb.weight", "item_emb.weight", "id_emb.weight") if k in state)
    base = state[key].float().numpy()[:-1] if key != "out_emb.weight" else state[key].float().numpy()
    rng = np.random.default_rng(seed)
    probe = base[rng.choice(len(base), min(500, len(base)), replace=False)]
    d2 = ((probe[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    d2.sort(axis=1)
    scale = 0.1 * float(np.median(np.sqrt(d2[:, 1]))) / np.sqrt(base.shape[1])
    reps = -(-n // len(base))
    songs = np.tile(base, (reps, 1))[:n] + scale * rng.standard_normal((n, base.shape[1])).astype(np.float32)
    queries = base[rng.integers(0, len(base), nq)] + 5 * scale * rng.standard_normal((nq, base.shape[1])).astype(np.float32)
    print(f"trained vectors: {path.name} {key} {base.shape} tiled x{reps} (perturbation sd {scale:.4f})")
    return songs.astype(np.float32), queries.astype(np.float32)


def timed_search(search, queries: np.ndarray, k: int, repeats: int) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = search(queries, k)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out  # type: ignore[return-value]


def index_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def run(songs: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> list[dict]:
    n, d = songs.shape
    k = args.k
    rows: list[dict] = []
    print(f"catalogue {n:,} x {d}, {len(queries):,} queries, k={k}, threads {config.n_threads()}", flush=True)
    t0 = time.perf_counter()
    flat = FaissIndex(songs, "flat")
    build = time.perf_counter() - t0
    exact_s, (exact_scores, exact_idx) = timed_search(flat.search, queries, k, args.exact_repeats)
    rows.append({"index": "exact (IndexFlatIP)", "param": "", "build_s": build, "mem_mb": index_bytes(flat.index) / 2**20,
                 "qps": len(queries) / exact_s, "speedup": 1.0, "recall": 1.0, "recall_ties": 1.0})
    print(rows[-1], flush=True)

    def measure(name: str, index: FaissIndex, build_s: float, param: str, extra_mb: float = 0.0) -> None:
        s, (scores, idx) = timed_search(index.search, queries, k, args.repeats)
        rows.append({"index": name, "param": param, "build_s": build_s,
                     "mem_mb": index_bytes(index.index) / 2**20 + extra_mb, "qps": len(queries) / s,
                     "speedup": exact_s / s, "recall": ann_recall(idx, exact_idx),
                     "recall_ties": ann_recall_by_score(scores, exact_scores)})
        print(rows[-1], flush=True)

    kinds = args.kinds.split(",")
    if "ivf" in kinds or "ivfpq" in kinds:
        nlist = args.nlist
        for kind in [x for x in ("ivf", "ivfpq") if x in kinds]:
            t0 = time.perf_counter()
            index = FaissIndex(songs, kind, nlist=nlist, pq_m=args.pq_m, seed=args.seed,
                               train_size=args.train_per_list * nlist)
            build = time.perf_counter() - t0
            for nprobe in (int(x) for x in args.nprobe.split(",")):
                index.set_params(nprobe=nprobe)
                measure(kind + "+mips", index, build, f"nlist={nlist} nprobe={nprobe}"
                        + (f" PQ{args.pq_m}x8+refine4" if kind == "ivfpq" else ""), extra_mb=index._items.nbytes / 2**20)
            del index
    if "hnsw" in kinds:
        for m in (int(x) for x in str(args.M).split(",")):
            t0 = time.perf_counter()
            index = FaissIndex(songs, "hnsw", M=m, efConstruction=args.ef_construction)
            build = time.perf_counter() - t0
            print(f"hnsw M={m} efC={args.ef_construction} built in {build:.0f} s", flush=True)
            for ef in (int(x) for x in args.ef_search.split(",")):
                index.set_params(efSearch=ef)
                # the float32 items kept for exact re-scoring are part of what the server holds
                measure("hnsw+mips", index, build, f"M={m} efC={args.ef_construction} efSearch={ef}",
                        extra_mb=index._items.nbytes / 2**20)
            del index
    if "default" in kinds:  # what serving builds with no arguments (FaissIndex's defaults)
        t0 = time.perf_counter()
        index = FaissIndex(songs)
        build = time.perf_counter() - t0
        measure("serving default", index, build, f"{index.kind} nlist={index._ivf.nlist} nprobe={index._ivf.nprobe}",
                extra_mb=index._items.nbytes / 2**20)
        del index
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--nq", type=int, default=2000)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--genres", type=int, default=40)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--kinds", default="ivf,ivfpq,hnsw,default",
                    help="ivf, ivfpq, hnsw (M x efSearch sweep), default (serving's FaissIndex())")
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--nprobe", default="16,32,64,128")
    ap.add_argument("--pq-m", type=int, default=16)
    ap.add_argument("--train-per-list", type=int, default=40, help="k-means sample per IVF list")
    ap.add_argument("--M", default="16,32", help="HNSW graph degrees, one build each")
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", default="200,400,800")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exact-repeats", type=int, default=1, help="exact search is slow and steady: one timing")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    ap.add_argument("--trained", type=Path, default=None, help="a checkpoint whose song vectors are tiled")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    config.set_threads(args.threads)
    t0 = time.perf_counter()
    if args.trained is not None:
        songs, queries = tiled(args.trained, args.n, args.nq, args.seed)
    else:
        songs, queries = synthetic(args.n, args.dim, args.genres, args.clusters, args.zipf, args.nq, args.seed)
    args.nlist = args.nlist or FaissIndex.default_nlist(len(songs))
    print(f"data in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = run(songs, queries, args)
    print(f"\n| index | parameters | build s | memory MB | queries/s | x exact | recall@{args.k} | tie-aware |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['index']} | {r['param']} | {r['build_s']:.1f} | {r['mem_mb']:.0f} | {r['qps']:.0f} | "
              f"{r['speedup']:.1f} | {r['recall']:.3f} | {r['recall_ties']:.3f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.2f} GB; threads {config.n_threads()}; load average {os.getloadavg()}")
    for r in rows:
        if r["index"] == "serving default":
            ok = r["recall"] >= 0.95 and r["speedup"] >= 5
            print(f"serving default: recall@{args.k} {r['recall']:.3f}, {r['speedup']:.1f}x exact: "
                  f"{'meets' if ok else 'MISSES'} the bar (>= 0.95 at >= 5x)")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                        "peak_rss_gb": peak, "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
