"""Why HNSW with the MIPS transform loses recall on a music catalogue: the spread of the song norms.

``bench_retrieval_1m.py`` found faiss HNSW + MIPS transform at recall@200 0.56-0.70 on 1M synthetic songs
(efSearch 256-2,048) while IVF reached 0.998. This bench keeps the songs' *directions* of that generator
and varies only their *norms* (lognormal spread ``--norm-sd``; the 1M bench uses 0.35), and compares:

* HNSW on the MIPS-transformed songs (an extra coordinate ``sqrt(max|x|^2 - |x|^2)``, queries with 0
  there): serving's own ``musicrecall.evaluation.search.FaissIndex(kind="hnsw")``;
* faiss HNSW with the inner product as its metric (no transform);
* HNSW on the unit vectors (the cosine task: the graph on the same directions, no norms at all).

Recall@200 is against exact search of the same task (``IndexFlatIP``); one thread, one build per row
(M 32, efConstruction 200), 500 queries of the generator.

    python bench/bench_hnsw_norms.py [--n 200000] [--norm-sd 0,0.1,0.2,0.35] [--ef-search 256,1024]
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np
from bench_retrieval_1m import synthetic

from musicrecall.evaluation.search import FaissIndex


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(f, g)) / k for f, g in zip(found, truth, strict=True)]))


def exact(songs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexFlatIP(songs.shape[1])
    flat.add(songs)
    return flat.search(queries, k)[1]


def hnsw_rows(name: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, metric: int,
              args: argparse.Namespace, **extra: object) -> list[dict]:
    t = time.process_time()
    index = faiss.IndexHNSWFlat(base.shape[1], args.M, metric)
    index.hnsw.efConstruction = args.ef_construction
    index.add(base)
    build = time.process_time() - t
    rows = []
    for ef in (int(e) for e in args.ef_search.split(",")):
        index.hnsw.efSearch = ef
        rows.append({"variant": name, **extra, "efSearch": ef, "recall@200": round(recall(index.search(queries, args.k)[1], truth), 3),
                     "build_cpu_s": round(build, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--norm-sd", default="0,0.1,0.2,0.35", help="lognormal spreads of the song norms")
    ap.add_argument("--ef-search", default="256,1024")
    ap.add_argument("--M", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--baselines", action="store_true", help="also inner-product HNSW and cosine HNSW at the last sd")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    songs, queries = synthetic(args.n, 64, 16, 2000, 1.1, args.queries, 0)
    unit = (songs / np.linalg.norm(songs, axis=1, keepdims=True)).astype(np.float32)
    rng = np.random.default_rng(1)
    for sd in (float(s) for s in args.norm_sd.split(",")):
        x = (unit * rng.lognormal(0.0, sd, args.n).astype(np.float32)[:, None]).astype(np.float32)
        truth = exact(x, queries, args.k)
        n2 = (x**2).sum(1)
        info = {"norm_sd": sd, "max_norm_over_median": round(float(np.sqrt(n2.max() / np.median(n2))), 2),
                "extra_coord_share_median": round(float(np.median((n2.max() - n2) / n2.max())), 3)}
        t = time.process_time()
        index = FaissIndex(x, kind="hnsw", M=args.M, efConstruction=args.ef_construction)
        build = time.process_time() - t
        for ef in (int(e) for e in args.ef_search.split(",")):
            index.set_params(efSearch=ef)
            row = {"variant": "hnsw+mips (serving's FaissIndex)", **info, "efSearch": ef,
                   "recall@200": round(recall(index.search(queries, args.k)[1], truth), 3), "build_cpu_s": round(build, 1)}
            print(json.dumps(row), flush=True)
        if args.baselines and sd == float(args.norm_sd.split(",")[-1]):
            hnsw_rows("hnsw inner product", x, queries, truth, faiss.METRIC_INNER_PRODUCT, args, **info)
    if args.baselines:
        hnsw_rows("hnsw cosine (unit vectors)", unit, queries, exact(unit, queries, args.k), faiss.METRIC_INNER_PRODUCT, args)


if __name__ == "__main__":
    main()
