"""Honest offline evaluation for music recall (candidate generation).

* :mod:`.split` — splits that fit the data: global time split (train < t_valid <= valid < t_test <= test),
  time quantiles, per-user position and leave-last-out for order-only data; :func:`choose_split`
  ("auto"), the empty/tiny-window guard (:class:`WindowTooSmallError`) and leakage guards (global or
  per user).
* :mod:`.metrics` — targets (all / discovery / repeat), exact full-catalogue top-k, HitRate / Recall /
  NDCG per user, bootstrap and paired-bootstrap intervals, coverage and novelty.
* :mod:`.search` — exact and faiss (HNSW / IVF) inner-product search, ANN recall.
* :mod:`.baselines` — popularity, item-based CF and previous-song Markov recall.
* :mod:`.harness` — the evaluation harness every notebook shares: :func:`make_eval_setup` (one split, what a
  model may fit on, targets per kind all / discovery / repeat) and :func:`evaluate_recommender` (full-catalogue
  ranking, bootstrap CIs, coverage and novelty per kind).
* :mod:`.rolling` — rolling next-play evaluation of sequence models (every window play a target, scored
  from the plays before it; slices within session / new session / repeat / discovery; paired lifts) and
  the RecBole-style leave-last-out protocol.
"""

from __future__ import annotations

from .baselines import ItemCFRecall, MarkovRecall, PopularityRecall
from .harness import KINDS, EvalSetup, Recommend, evaluate_recommender, make_eval_setup
from .metrics import (
    Targets,
    UserItemCSR,
    bootstrap_ci,
    bootstrap_cis,
    bootstrap_resamples,
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
from .rolling import (
    SLICES,
    RollingResult,
    RollingTargets,
    leave_last_out_eval,
    model_score_fn,
    rolling_lift,
    rolling_lift_table,
    rolling_next_play,
    rolling_targets,
    rolling_validator,
)
from .search import ExactIndex, FaissIndex, ann_recall, ann_recall_by_score, ann_report
from .split import (
    MIN_WINDOW_EVENTS,
    MIN_WINDOW_USERS,
    SPLITS,
    LeakageError,
    Split,
    Stage,
    WindowTooSmallError,
    check_no_leakage,
    check_window,
    choose_split,
    detect_time_kind,
    position_split,
    quantile_split,
    temporal_split,
    window_problem,
)

__all__ = [
    "KINDS",
    "EvalSetup",
    "Recommend",
    "evaluate_recommender",
    "make_eval_setup",
    "SLICES",
    "MarkovRecall",
    "RollingResult",
    "RollingTargets",
    "leave_last_out_eval",
    "model_score_fn",
    "rolling_lift",
    "rolling_lift_table",
    "rolling_next_play",
    "rolling_targets",
    "rolling_validator",
    "MIN_WINDOW_EVENTS",
    "MIN_WINDOW_USERS",
    "SPLITS",
    "WindowTooSmallError",
    "check_window",
    "choose_split",
    "detect_time_kind",
    "position_split",
    "quantile_split",
    "window_problem",
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
    "bootstrap_cis",
    "bootstrap_resamples",
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
