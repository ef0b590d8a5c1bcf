"""Maximum-inner-product retrieval at catalogue scale: faiss exact vs HNSW vs IVF vs IVF-PQ at 1M songs.

Catalogue: ``--n`` song vectors (default 1,000,000, dim 64) with a realistic cluster structure: genres
(``--genres``) split into sub-styles (``--clusters``) whose sizes follow a Zipf law (a few huge styles,
a long tail), songs scattered around their style's centre, and vector norms that grow with a
log-normal "popularity" (as in trained embeddings, where popular songs have longer vectors). Queries
are user / interest vectors: a mix of one to three styles drawn with the same Zipf law, plus noise.
With ``--trained`` the song vectors of a trained checkpoint are tiled to ``--n`` rows with a small
Gaussian perturbation (a tenth of the median distance to the nearest neighbour) and queried with
perturbed song vectors, so the real geometry is searched too. Checkpoints: SASRec / YouTube-DNN
(``out_emb`` / ``item_emb``), or MIND (``data/checkpoints/mind_*.pt``; with side information the served
table is ``proj([id embedding | side embeddings])``, :meth:`musicrecall.models.mind.MIND.item_embed`).

HNSW (``--M`` graph degrees, one build each, ``--ef-search`` swept on each graph) and IVF use the
MIPS-to-L2 transform (:mod:`musicrecall.evaluation.search`); ``default`` is what serving builds with
no arguments (``FaissIndex(songs)``), checked against the bar recall@200 >= 0.95 at >= 5x exact, then
its ``nprobe`` swept (``--nprobe``) on the same build.

For every index and setting: build time (wall and CPU seconds), memory (the serialised index plus the
float vectors kept for exact re-scoring, i.e. what a server holds), queries per second of one batched
search call and its CPU milliseconds per query, recall@k (id overlap with the exact top-k) and
tie-aware recall, and two speed-ups over exact search (faiss ``IndexFlatIP``):

* ``x exact``: timed. On a shared, loaded machine absolute speeds drift, so exact search of a fixed
  slice of the queries (``--exact-slice``) is timed again right after every setting (interleaved) and
  the ratio is taken against that neighbour, per query, in wall time and in CPU time (one thread: CPU
  time is what the search costs, whatever the load).
* ``x work``: machine-independent. Distance computations per query from faiss's own counters
  (``indexIVF_stats`` / ``hnsw_stats``), plus the coarse quantizer's ``nlist`` and the ``k`` exact
  re-scores, against the ``n`` of exact search.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/bench_retrieval_1m.py [--n 1000000] [--nq 1000] [--k 200]
        [--kinds hnsw,default] [--M 16,32] [--ef-search 200,400,800] [--threads 1] [--out rows.json]
        [--truth truth.npz] [--trained data/checkpoints/mind_both_interest-....pt]

``--truth`` caches the exact top-k (keyed by the data arguments) so that runs of other index kinds on
the same catalogue need not search it exhaustively again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from musicrecall import config
from musicrecall.evaluation.search import FaissIndex, ann_recall, ann_recall_by_score

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


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


def song_table(state: dict) -> tuple[str, np.ndarray]:
    """The song vectors a checkpoint's model scores against (pad row dropped), and where they came from."""
    import torch

    if "id_emb.weight" in state and "proj.weight" in state:  # MIND with side information
        names = [k[len("codes_"):] for k in state if k.startswith("codes_")]
        parts = [state["id_emb.weight"][:-1]] + [state[f"side_emb.{n}.weight"][state[f"codes_{n}"][:-1]] for n in names]
        table = torch.cat(parts, dim=1).float() @ state["proj.weight"].float().T + state["proj.bias"].float()
        return f"proj([id_emb | {' | '.join(names)}])", table.numpy()
    key = next(k for k in ("out_emb.weight", "item_emb.weight", "id_emb.weight") if k in state)
    table = state[key].float().numpy()
    return key, table if key == "out_emb.weight" else table[:-1]


def tiled(path: Path, n: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A trained checkpoint's song vectors tiled to ``n`` rows with a small perturbation, and queries."""
    import torch

    key, base = song_table(torch.load(path, weights_only=False)["model"])
    base = np.ascontiguousarray(base, dtype=np.float32)
    rng = np.random.default_rng(seed)
    probe = base[rng.choice(len(base), min(500, len(base)), replace=False)]
    d2 = (probe**2).sum(1)[:, None] + (base**2).sum(1)[None, :] - 2 * probe @ base.T
    nn_dist = np.sqrt(np.maximum(np.partition(d2, 1, axis=1)[:, 1], 0))  # column 0 is the probe itself
    scale = 0.1 * float(np.median(nn_dist)) / np.sqrt(base.shape[1])
    reps = -(-n // len(base))
    songs = np.tile(base, (reps, 1))[:n] + scale * rng.standard_normal((n, base.shape[1])).astype(np.float32)
    queries = base[rng.integers(0, len(base), nq)] + 5 * scale * rng.standard_normal((nq, base.shape[1])).astype(np.float32)
    norms = np.linalg.norm(base, axis=1)
    print(f"trained vectors: {path.name} {key} {base.shape} tiled x{reps} (perturbation sd {scale:.4f}; "
          f"norms median {np.median(norms):.3f}, 99th pct {np.percentile(norms, 99):.3f}, max {norms.max():.3f})")
    return songs.astype(np.float32), queries.astype(np.float32)


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, float, object]:
    """Median wall and median CPU seconds (this process, all its threads) of ``fn()``, and its last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def reset_counters() -> None:
    faiss.cvar.indexIVF_stats.reset()
    faiss.cvar.hnsw_stats.reset()


def distances_per_query(index: FaissIndex, n_searched: int, k: int) -> float:
    """Distance computations per query since :func:`reset_counters`, from faiss's own counters (a
    machine-independent cost): list entries scanned + the ``nlist`` coarse distances (IVF), graph
    distances (HNSW), plus the exact re-scoring of re-ranked / returned candidates. NaN if faiss did
    not count."""
    if index.kind == "hnsw":
        work = faiss.cvar.hnsw_stats.ndis / n_searched
    elif index.kind in ("ivf", "ivfpq"):
        work = faiss.cvar.indexIVF_stats.ndis / n_searched
        work = work + index._ivf.nlist if work > 0 else 0.0
        if index.kind == "ivfpq":
            work += index.index.k_factor * k
    else:
        return float(index.ntotal)
    return float(work + (k if index._augment else 0)) if work > 0 else float("nan")


def exact_truth(songs: np.ndarray, queries: np.ndarray, k: int, args: argparse.Namespace
                ) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Exact top-k (scores, idx) of every query, its build, wall and CPU seconds; cached in ``--truth``."""
    key = f"{args.trained or 'synthetic'}|{len(songs)}|{songs.shape[1]}|{len(queries)}|{k}|{args.seed}|" \
          f"{args.genres}|{args.clusters}|{args.zipf}|{float(songs[:1000].sum()):.6e}"
    if args.truth is not None and args.truth.exists():
        z = np.load(args.truth)
        if str(z["key"]) == key:
            print(f"exact top-{k} from {args.truth}", flush=True)
            return z["scores"], z["idx"], float(z["build"]), float(z["wall"]), float(z["cpu"])
    b0 = time.perf_counter()
    flat = FaissIndex(songs, "flat")
    build = time.perf_counter() - b0
    wall, cpu, (scores, idx) = timed(lambda: flat.search(queries, k))  # type: ignore[misc]
    if args.truth is not None:
        np.savez(args.truth, key=key, scores=scores, idx=idx, build=build, wall=wall, cpu=cpu)
    return scores, idx, build, wall, cpu


def run(songs: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> list[dict]:
    n, d = songs.shape
    k, nq = args.k, len(queries)
    rows: list[dict] = []
    print(f"catalogue {n:,} x {d}, {nq:,} queries, k={k}, threads {config.n_threads()}", flush=True)
    exact_scores, exact_idx, build, exact_wall, exact_cpu = exact_truth(songs, queries, k, args)
    flat = FaissIndex(songs, "flat")
    piece = np.ascontiguousarray(queries[:args.exact_slice])

    def emit(row: dict) -> None:
        row["load1"] = os.getloadavg()[0]
        rows.append(row)
        print({key: round(v, 4) if isinstance(v, float) else v for key, v in row.items()}, flush=True)
        if args.out:
            args.out.write_text(json.dumps({"args": {a: str(v) for a, v in vars(args).items()}, "rows": rows}, indent=1))

    emit({"index": "exact (IndexFlatIP)", "param": f"all {nq} queries", "build_s": build, "build_cpu_s": build,
          "mem_mb": songs.nbytes / 2**20, "qps": nq / exact_wall, "cpu_ms_q": 1e3 * exact_cpu / nq,
          "speedup": 1.0, "speedup_cpu": 1.0, "dist_q": float(n), "work_x": 1.0, "recall": 1.0, "recall_ties": 1.0})

    def measure(name: str, index: FaissIndex, build_s: float, build_cpu: float, param: str) -> None:
        reset_counters()
        wall, cpu, (scores, idx) = timed(lambda: index.search(queries, k), args.repeats)  # type: ignore[misc]
        dist = distances_per_query(index, args.repeats * nq, k)
        e_wall, e_cpu, _ = timed(lambda: flat.search(piece, k))  # exact, right after: the interleaved yardstick
        extra = index._items.nbytes if index._items is not None else 0  # float copy kept for exact re-scoring
        emit({"index": name, "param": param, "build_s": build_s, "build_cpu_s": build_cpu,
              "mem_mb": (index_bytes(index.index) + extra) / 2**20, "qps": nq / wall, "cpu_ms_q": 1e3 * cpu / nq,
              "speedup": (e_wall / len(piece)) / (wall / nq), "speedup_cpu": (e_cpu / len(piece)) / max(cpu / nq, 1e-9),
              "exact_qps_now": len(piece) / e_wall, "dist_q": dist, "work_x": n / dist,
              "recall": ann_recall(idx, exact_idx), "recall_ties": ann_recall_by_score(scores, exact_scores)})

    def build(**kw: object) -> tuple[FaissIndex, float, float]:
        wall, cpu, index = timed(lambda: FaissIndex(songs, **kw))  # type: ignore[arg-type]
        print(f"built {kw or 'serving default'} in {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        return index, wall, cpu  # type: ignore[return-value]

    kinds = args.kinds.split(",")
    if "default" in kinds:  # what serving builds with no arguments (FaissIndex's defaults), then its nprobe swept
        index, bw, bc = build()
        default_nprobe = index._ivf.nprobe
        measure("serving default", index, bw, bc, f"{index.kind} nlist={index._ivf.nlist} nprobe={default_nprobe}")
        for nprobe in (int(x) for x in args.nprobe.split(",") if int(x) != default_nprobe):
            index.set_params(nprobe=nprobe)
            measure("ivf+mips (serving build)", index, bw, bc, f"nlist={index._ivf.nlist} nprobe={nprobe}")
        del index
    for kind in [x for x in ("ivf", "ivfpq") if x in kinds]:
        index, bw, bc = build(kind=kind, nlist=args.nlist, pq_m=args.pq_m, seed=args.seed,
                              train_size=args.train_per_list * args.nlist)
        for nprobe in (int(x) for x in args.nprobe.split(",")):
            index.set_params(nprobe=nprobe)
            measure(kind + "+mips", index, bw, bc, f"nlist={args.nlist} nprobe={nprobe}"
                    + (f" PQ{args.pq_m}x8+refine4" if kind == "ivfpq" else ""))
        del index
    if "hnsw" in kinds:
        for m in (int(x) for x in str(args.M).split(",")):
            index, bw, bc = build(kind="hnsw", M=m, efConstruction=args.ef_construction)
            for ef in (int(x) for x in args.ef_search.split(",")):
                index.set_params(efSearch=ef)
                measure("hnsw+mips", index, bw, bc, f"M={m} efC={args.ef_construction} efSearch={ef}")
            del index
    return rows


def index_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--genres", type=int, default=40)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--kinds", default="default,hnsw",
                    help="default (serving's FaissIndex(), then --nprobe on it), ivf, ivfpq, hnsw (M x efSearch)")
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--nprobe", default="16,32,64,128")
    ap.add_argument("--pq-m", type=int, default=16)
    ap.add_argument("--train-per-list", type=int, default=40, help="k-means sample per IVF list")
    ap.add_argument("--M", default="32", help="HNSW graph degrees, one build each")
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", default="256,512,1024,2048")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exact-slice", type=int, default=100, help="queries of the exact search timed after each setting")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON (after every row)")
    ap.add_argument("--truth", type=Path, default=None, help="cache of the exact top-k (.npz)")
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
    print(f"\n| index | parameters | build s (CPU) | memory MB | queries/s | CPU ms/query | x exact (wall / CPU) "
          f"| distances/query | x work | recall@{args.k} | tie-aware |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['index']} | {r['param']} | {r['build_s']:.0f} ({r['build_cpu_s']:.0f}) | {r['mem_mb']:.0f} | "
              f"{r['qps']:.0f} | {r['cpu_ms_q']:.2f} | {r['speedup']:.1f} / {r['speedup_cpu']:.1f} | "
              f"{r['dist_q']:,.0f} | {r['work_x']:.0f} | {r['recall']:.3f} | {r['recall_ties']:.3f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.2f} GB; threads {config.n_threads()}; load average {os.getloadavg()}")
    for r in rows:
        if r["index"] == "serving default":
            ok = r["recall"] >= 0.95 and min(r["speedup_cpu"], r["work_x"]) >= 5
            print(f"serving default: recall@{args.k} {r['recall']:.3f}, {r['speedup']:.1f}x exact (wall), "
                  f"{r['speedup_cpu']:.1f}x (CPU), {r['work_x']:.0f}x fewer distances: "
                  f"{'meets' if ok else 'MISSES'} the bar (>= 0.95 at >= 5x)")
    if args.out:
        args.out.write_text(json.dumps({"args": {a: str(v) for a, v in vars(args).items()}, "rows": rows,
                                        "peak_rss_gb": peak, "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
