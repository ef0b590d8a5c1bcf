"""Exact and approximate maximum-inner-product search over song embeddings.

* :class:`ExactIndex` — brute force with torch (the ground truth; :func:`~.metrics.topk_scores`).
* :class:`FaissIndex` — faiss (Johnson, Douze & Jégou, *Billion-scale similarity search with
  GPUs*, IEEE TBD 2019): ``"hnsw"`` graph index (Malkov & Yashunin, *Efficient and robust
  approximate nearest neighbor search using Hierarchical Navigable Small World graphs*, IEEE TPAMI
  2018) with ``M`` / ``efConstruction`` / ``efSearch``; ``"ivf"`` inverted file with a flat
  coarse quantizer (``nlist`` / ``nprobe``; Jégou, Douze & Schmid, IEEE TPAMI 2011); ``"flat"``
  exact faiss search (a speed reference).

``metric="cosine"`` L2-normalises items and queries and searches by inner product. HNSW with
``metric="ip"`` uses by default the MIPS-to-nearest-neighbour reduction of Bachrach et al.
(*Speeding up the Xbox recommender system using a Euclidean transformation for inner-product
spaces*, RecSys 2014): items get an extra coordinate ``sqrt(max_norm^2 - |x|^2)``, queries a 0, and
the L2 nearest neighbours are then exactly the inner-product maximisers; graph search is markedly
more accurate in that space than with a raw inner-product graph, and so are IVF's lists (the same
transform is used for ``"ivf"`` / ``"ivfpq"``). Both classes
return ``(scores float32 [n, k], idx int64 [n, k])`` like faiss, best first; ``-1`` marks an empty
slot. Thread counts come from :func:`musicrecall.config.set_threads` (never set here).
"""

from __future__ import annotations

import time
from typing import Literal

import faiss
import numpy as np
import polars as pl
import torch

from .metrics import ExcludeLike, topk_scores

Metric = Literal["ip", "cosine"]

__all__ = ["ExactIndex", "FaissIndex", "ann_recall"]


def _prep(x: np.ndarray | torch.Tensor, metric: Metric) -> np.ndarray:
    """float32 C-contiguous copy of ``x``, L2-normalised rows for cosine."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.array(x, dtype=np.float32, order="C", copy=True)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {arr.shape}")
    if metric == "cosine":
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        arr /= np.maximum(norms, 1e-12)
    elif metric != "ip":
        raise ValueError(f"metric must be 'ip' or 'cosine', got {metric!r}")
    return arr


class ExactIndex:
    """Exact top-k by inner product (or cosine) over every item, torch matmul + topk in batches."""

    def __init__(self, item_vecs: np.ndarray | torch.Tensor, metric: Metric = "ip", batch: int = 1024):
        self.metric: Metric = metric
        self.items = _prep(item_vecs, metric)
        self.batch = batch

    @property
    def ntotal(self) -> int:
        """Number of indexed items."""
        return int(self.items.shape[0])

    def search(
        self, queries: np.ndarray | torch.Tensor, k: int, exclude: ExcludeLike = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, idx)`` of the ``k`` best items per query (``exclude``: per-query items to skip)."""
        q = _prep(queries, self.metric)
        idx, scores = topk_scores(q, self.items, k, exclude=exclude, batch=self.batch)
        return scores, idx


class FaissIndex:
    """A faiss index over item vectors: ``kind`` = ``"hnsw"``, ``"ivf"`` or ``"flat"``.

    **Serving defaults** (``FaissIndex(item_vecs)``): IVF with the MIPS transform, ``nlist = 4*sqrt(n)``,
    ``nprobe = 128``, chosen on 1M songs (``bench/bench_retrieval_1m.py``, one thread, speed-ups over exact
    faiss search timed interleaved, CPU time): on 30Music's trained SASRec song vectors tiled to 1M (dim 48)
    recall@200 0.977 at 23x (nprobe 64: 0.946 at 46x, below the 0.95 bar; 256: 0.993 at 11x); on 1M
    synthetic songs (dim 64, Zipf-sized clusters, popularity-like norms) 0.998 at 33x (64: 0.991 at 62x). Index and
    vectors 0.4-0.5 GB. On smaller catalogues the same ``nprobe`` covers a larger share of the lists (more
    recall, less speed-up). HNSW with the MIPS transform misses the bar at 1M synthetic songs (M 32,
    efConstruction 200: 586 CPU s to build, 0.75 GB): recall@200 0.56 / 0.61 / 0.65 / 0.70 at efSearch
    256 / 512 / 1,024 / 2,048, at 54x / 22x / 10x / 5.4x exact's CPU speed.

    Parameters: HNSW ``M`` (graph degree, default 32), ``efConstruction`` (default 200),
    ``efSearch`` (default 128, can be changed later via :meth:`set_params`); IVF ``nlist``
    (default :meth:`default_nlist`), ``nprobe`` (default 128), ``train_size`` (the coarse k-means is trained
    on a random sample of that many items, default ``min(n, 40*nlist)``, faiss's lower bound), ``seed``.
    ``"ivfpq"``: IVF with product-quantised codes (``pq_m`` sub-vectors of 8 bits) whose ``k_factor * k``
    best candidates are re-ranked exactly (``IndexRefineFlat``).
    ``mips_transform`` (any ANN kind with ``"ip"``): search an L2 graph / L2 inverted lists over
    norm-augmented vectors (see the module docstring); returned scores are the exact inner products
    of the returned items. With a raw inner-product coarse quantizer, long vectors swallow the lists.
    """

    def __init__(
        self,
        item_vecs: np.ndarray | torch.Tensor,
        kind: Literal["hnsw", "ivf", "ivfpq", "flat"] = "ivf",
        metric: Metric = "ip",
        *,
        M: int = 32,
        efConstruction: int = 200,
        efSearch: int = 128,
        nlist: int | None = None,
        nprobe: int = 128,
        train_size: int | None = None,
        pq_m: int = 16,
        k_factor: int = 4,
        seed: int = 0,
        mips_transform: bool = True,
    ):
        self.metric: Metric = metric
        self.kind = kind
        x = _prep(item_vecs, metric)
        n, d = x.shape
        fmetric = faiss.METRIC_INNER_PRODUCT
        self._augment = kind in ("hnsw", "ivf", "ivfpq") and metric == "ip" and mips_transform
        self._items = x if self._augment else None  # kept for the exact scores of the returned items
        self._radius = 0.0  # every augmented item lies on the sphere of this radius (the largest item norm)
        if self._augment:
            norms2 = np.einsum("ij,ij->i", x, x)
            self._radius = float(np.sqrt(norms2.max(initial=0.0)))
            extra = np.sqrt(np.maximum(norms2.max(initial=0.0) - norms2, 0.0))[:, None]
            x = np.hstack([x, extra]).astype(np.float32)
            d, fmetric = d + 1, faiss.METRIC_L2
            if kind == "ivfpq" and d % pq_m:  # zero columns: PQ needs the dimension split into pq_m parts
                x = np.hstack([x, np.zeros((n, pq_m - d % pq_m), np.float32)])
                d = x.shape[1]
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, M, fmetric)
            index.hnsw.efConstruction = efConstruction
            index.hnsw.efSearch = efSearch
            index.add(x)
        elif kind in ("ivf", "ivfpq"):
            nlist = nlist or self.default_nlist(n)
            quantizer = faiss.IndexFlatL2(d) if fmetric == faiss.METRIC_L2 else faiss.IndexFlatIP(d)
            if kind == "ivf":
                ivf = faiss.IndexIVFFlat(quantizer, d, nlist, fmetric)
            else:
                if d % pq_m:
                    raise ValueError(f"pq_m={pq_m} must divide the dimension {d}")
                ivf = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, 8, fmetric)
            ivf.cp.seed = seed
            m = min(n, train_size or 40 * nlist)
            sample = x[np.random.default_rng(seed).choice(n, size=m, replace=False)] if m < n else x
            ivf.train(sample)
            ivf.nprobe = nprobe
            index = ivf
            if kind == "ivfpq":  # PQ distances are coarse: re-rank k_factor * k candidates exactly
                index = faiss.IndexRefineFlat(ivf)
                index.k_factor = k_factor
            index.add(x)
            self._quantizer, self._ivf = quantizer, ivf  # keep the python references alive
        elif kind == "flat":
            index = faiss.IndexFlatIP(d)
            index.add(x)
        else:
            raise ValueError(f"kind must be 'hnsw', 'ivf', 'ivfpq' or 'flat', got {kind!r}")
        self.index = index

    @property
    def ntotal(self) -> int:
        """Number of indexed items."""
        return int(self.index.ntotal)

    @staticmethod
    def default_nlist(n: int) -> int:
        """IVF lists for ``n`` items: ``4*sqrt(n)`` (4,000 at a million songs), but at least 39 items per
        list (what k-means needs; small catalogues get fewer lists, down to one)."""
        return max(1, min(int(4 * np.sqrt(n)), n // 39))

    def set_params(self, *, efSearch: int | None = None, nprobe: int | None = None,
                   k_factor: int | None = None) -> None:
        """Change the search-time accuracy/speed knob without rebuilding."""
        if efSearch is not None and self.kind == "hnsw":
            self.index.hnsw.efSearch = efSearch
        if nprobe is not None and self.kind in ("ivf", "ivfpq"):
            self._ivf.nprobe = nprobe
        if k_factor is not None and self.kind == "ivfpq":
            self.index.k_factor = k_factor

    def search(self, queries: np.ndarray | torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32, idx int64)`` of the (approximately) ``k`` best items per query."""
        q = _prep(queries, self.metric)
        if not self._augment:
            scores, idx = self.index.search(q, k)
            return scores, idx.astype(np.int64, copy=False)
        # The query goes onto the items' sphere (norm = the largest item norm). Inner-product order is blind to a
        # query's scale, and so is the L2 order of the augmented items (all on that sphere), but IVF's coarse
        # step ranks list *centroids*, which lie inside it: a query near the origin ranks them by centroid norm,
        # whatever its direction (recall@200 at nprobe 64, 200k tiled 30Music SASRec vectors: 0.31 -> 0.93).
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        q_on_sphere = q * np.where(norms > 0, self._radius / np.maximum(norms, 1e-30), 1.0).astype(np.float32)
        pad = np.zeros((q.shape[0], self.index.d - q.shape[1]), np.float32)
        _, idx = self.index.search(np.ascontiguousarray(np.hstack([q_on_sphere, pad]), dtype=np.float32), k)
        idx = idx.astype(np.int64, copy=False)
        assert self._items is not None
        scores = np.einsum("nd,nkd->nk", q, self._items[np.maximum(idx, 0)]).astype(np.float32)
        scores[idx < 0] = -np.inf
        return scores, idx


def ann_recall(approx_idx: np.ndarray, exact_idx: np.ndarray) -> float:
    """Mean over queries of ``|approx ∩ exact| / k`` (``k`` = columns of ``exact_idx``; ``-1`` ignored)."""
    a, e = np.asarray(approx_idx, dtype=np.int64), np.asarray(exact_idx, dtype=np.int64)
    if a.shape[0] != e.shape[0]:
        raise ValueError("approx_idx and exact_idx have different numbers of rows")
    n, k = e.shape
    base = int(max(a.max(initial=-1), e.max(initial=-1))) + 2
    ekeys = np.unique(np.arange(n, dtype=np.int64)[:, None] * base + (e + 1))
    valid = a >= 0
    akeys = np.unique((np.arange(n, dtype=np.int64)[:, None] * base + (a + 1))[valid])
    inter = np.intersect1d(akeys, ekeys, assume_unique=True)
    return float(inter.shape[0] / (n * k))


def ann_recall_by_score(approx_scores: np.ndarray, exact_scores: np.ndarray, rtol: float = 1e-5) -> float:
    """Tie-aware ANN recall: the share of returned items whose exact score reaches the exact k-th score.

    With many tied scores (e.g. songs nobody played have ~zero vectors) the exact top-k is one arbitrary
    choice among equals, and id-overlap recall (:func:`ann_recall`) punishes the index for picking
    another. Scoring by value counts any item at least as good as the exact k-th as correct.
    ``approx_scores`` must be exact inner products of the returned items (as both indexes here give).
    """
    a, e = np.asarray(approx_scores, dtype=np.float64), np.asarray(exact_scores, dtype=np.float64)
    kth = e[:, -1:]
    tol = rtol * np.maximum(np.abs(kth), 1e-12)
    return float(np.mean(np.isfinite(a) & (a >= kth - tol)))


def ann_report(item_vecs: np.ndarray, queries: np.ndarray, k: int = 200, ef_search: tuple[int, ...] = (200, 400, 800),
               seed: int = 0) -> pl.DataFrame:
    """Exact vs HNSW (raw inner product and the MIPS-to-L2 transform) at several ``efSearch``.

    One row per setting: id-overlap recall, tie-aware recall, and the query time relative to exact
    search measured in the same run (a ratio, since the machines here are shared and noisy).
    """
    t0 = time.perf_counter()
    exact_scores, exact_idx = ExactIndex(item_vecs).search(queries, k)
    exact_s = time.perf_counter() - t0
    rows = []
    for mips in (False, True):
        index = FaissIndex(item_vecs, kind="hnsw", seed=seed, mips_transform=mips)
        for ef in ef_search:
            index.set_params(efSearch=ef)
            t0 = time.perf_counter()
            scores, idx = index.search(queries, k)
            rows.append({"index": "hnsw+mips" if mips else "hnsw", "efSearch": ef,
                         "recall_ids": ann_recall(idx, exact_idx), "recall_scores": ann_recall_by_score(scores, exact_scores),
                         "time_vs_exact": (time.perf_counter() - t0) / max(exact_s, 1e-9)})
    return pl.DataFrame(rows)
