"""Why HNSW with the MIPS transform loses recall on a music catalogue: the spread of the song norms.

``bench_retrieval_1m.py`` found faiss HNSW + MIPS transform at recall@200 0.56-0.70 on 1M synthetic songs
(efSearch 256-2,048) while IVF reached 0.998. This bench keeps the songs' *directions* of that generator
and varies only their *norms* (lognormal spread ``--norm-sd``; the 1M bench uses 0.35), and compares:

* HNSW on the MIPS-transformed songs (an extra coordinate ``sqrt(max|x|^2 - |x|^2)``, queries with 0
  there): serving's own ``musicrecall.evaluation.search.FaissIndex(kind="hnsw")``;
* faiss HNSW with the inner product as its metric (no transform);
* HNSW on the unit vectors (the cosine task: the graph on the same directions, no norms at all).

Recall@200 is against exact search of the same task (``IndexFlatIP``); one thread, one graph per variant
and norm spread (M 32, efConstruction 200), swept over efSearch; 500 queries of the generator.

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


def sweep(name: str, index: FaissIndex, queries: np.ndarray, truth: np.ndarray, build_cpu: float,
          args: argparse.Namespace, **info: object) -> None:
    """Recall@k of ``index`` at every efSearch of ``args``, one JSON row each."""
    for ef in (int(e) for e in args.ef_search.split(",")):
        index.set_params(efSearch=ef)
        print(json.dumps({"variant": name, **info, "efSearch": ef, "build_cpu_s": round(build_cpu, 1),
                          "recall@200": round(recall(index.search(queries, args.k)[1], truth), 3)}), flush=True)


def built(vectors: np.ndarray, args: argparse.Namespace, **kw: object) -> tuple[FaissIndex, float]:
    """Serving's HNSW index over ``vectors`` and its build CPU seconds."""
    t = time.process_time()
    index = FaissIndex(vectors, kind="hnsw", M=args.M, efConstruction=args.ef_construction, **kw)
    return index, time.process_time() - t


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
        index, cpu = built(x, args)
        sweep("hnsw+mips (serving's FaissIndex)", index, queries, truth, cpu, args, **info)
        if args.baselines and sd == float(args.norm_sd.split(",")[-1]):
            index, cpu = built(x, args, mips_transform=False)  # faiss HNSW with the inner product as metric
            sweep("hnsw inner product", index, queries, truth, cpu, args, **info)
    if args.baselines:
        index, cpu = built(unit, args, mips_transform=False)  # unit vectors: inner product = cosine
        sweep("hnsw cosine (unit vectors)", index, queries, exact(unit, queries, args.k), cpu, args)


if __name__ == "__main__":
    main()
