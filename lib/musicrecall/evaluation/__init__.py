"""Honest offline evaluation for music recall (candidate generation).

* :mod:`.split` — global temporal split (train < t_valid <= valid < t_test <= test) and leakage guards.
* :mod:`.metrics` — targets (all / discovery / repeat), exact full-catalogue top-k, HitRate / Recall /
  NDCG per user, bootstrap and paired-bootstrap intervals, coverage and novelty.
* :mod:`.search` — exact and faiss (HNSW / IVF) inner-product search, ANN recall.
* :mod:`.baselines` — popularity and item-based CF recall.
"""

from __future__ import annotations

from .baselines import ItemCFRecall, PopularityRecall
from .metrics import (
    Targets,
    UserItemCSR,
    bootstrap_ci,
    build_targets,
    coverage,
    evaluate_lists,
    evaluate_scores,
    evaluate_topk,
    exclusion_csr,
    item_popularity,
    novelty,
    paired_bootstrap_lift,
    stage_targets,
    summarize,
    topk_scores,
)
from .search import ExactIndex, FaissIndex, ann_recall, ann_recall_by_score, ann_report
from .split import LeakageError, Split, Stage, check_no_leakage, temporal_split

__all__ = [
    "ExactIndex",
    "FaissIndex",
    "ItemCFRecall",
    "LeakageError",
    "PopularityRecall",
    "Split",
    "Stage",
    "Targets",
    "UserItemCSR",
    "ann_recall",
    "ann_recall_by_score",
    "ann_report",
    "bootstrap_ci",
    "build_targets",
    "check_no_leakage",
    "coverage",
    "evaluate_lists",
    "evaluate_scores",
    "evaluate_topk",
    "exclusion_csr",
    "item_popularity",
    "novelty",
    "paired_bootstrap_lift",
    "stage_targets",
    "summarize",
    "temporal_split",
    "topk_scores",
]
