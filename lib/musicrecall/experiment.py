"""The evaluation harness every notebook shares: one split, three target kinds, one results table.

``make_eval_setup`` cuts the cleaned plays by global time and builds, for the test (or validation)
window, the targets of each kind:

* ``all``: every song the user full-played in the window;
* ``discovery``: only songs the user never played before the window; known songs are masked from the
  ranked lists, so a model is not rewarded for replaying the history;
* ``repeat``: only songs the user played before.

``evaluate_recommender`` ranks the full catalogue for each evaluated user (never sampled metrics) and
returns HitRate/Recall/NDCG@K with bootstrap CIs, plus coverage and novelty, per kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from musicrecall.evaluation import (
    Split,
    Targets,
    UserItemCSR,
    build_targets,
    coverage,
    evaluate_lists,
    exclusion_csr,
    item_popularity,
    novelty,
    summarize,
    temporal_split,
)

KINDS = ("all", "discovery", "repeat")
# recommend(users, k, exclude) -> int64 [len(users), k] song ids (best first, -1 = empty slot)
Recommend = Callable[[np.ndarray, int, UserItemCSR | None], np.ndarray]


@dataclass
class EvalSetup:
    """What a model may fit on (``fit``), and what it is judged on (``targets`` per kind)."""

    split: Split
    stage: str
    fit: pl.DataFrame
    targets: dict[str, Targets]
    exclude: dict[str, UserItemCSR | None]
    n_items: int
    popularity: np.ndarray
    n_fit_users: int

    @property
    def users(self) -> np.ndarray:
        """Users with at least one target of any kind."""
        return np.unique(np.concatenate([t.users for t in self.targets.values()]))


def make_eval_setup(events: pl.DataFrame, n_items: int, stage: str = "test", valid_days: int = 7,
                    test_days: int = 7, users: np.ndarray | None = None) -> EvalSetup:
    """Split cleaned plays by global time and build the targets of ``stage`` ("valid" or "test")."""
    split = temporal_split(events, valid_days=valid_days, test_days=test_days)
    fit = split.fit_frame(stage)
    window = split.valid if stage == "valid" else split.test
    targets, exclude = {}, {}
    for kind in KINDS:
        targets[kind] = build_targets(fit, window, users=users, kind=kind)
        exclude[kind] = exclusion_csr(fit, targets[kind].users) if kind == "discovery" else None
    pop = item_popularity(fit, n_items)  # distinct fit-window users per song
    return EvalSetup(split, stage, fit, targets, exclude, n_items, pop.astype(np.float64),
                     int(fit["user_id"].n_unique()))


def evaluate_recommender(name: str, recommend: Recommend, setup: EvalSetup, ks: Iterable[int] = (50, 200),
                         n_boot: int = 1000, seed: int = 0) -> tuple[pl.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Evaluate one model on every target kind; returns the tidy table and the per-user values
    (keep them for paired comparisons with :func:`musicrecall.evaluation.paired_bootstrap_lift`)."""
    ks = tuple(ks)
    tables, per_user = [], {}
    for kind in KINDS:
        t = setup.targets[kind]
        if t.n_users == 0:  # e.g. a small real export whose test window has no repeat plays
            continue
        lists = recommend(t.users, max(ks), setup.exclude[kind])
        values = evaluate_lists(lists, t, ks, exclude=setup.exclude[kind])
        per_user[kind] = values
        scalars = {f"coverage@{max(ks)}": coverage(lists[:, : max(ks)], setup.n_items),
                   f"novelty@{max(ks)}": novelty(lists[:, : max(ks)], setup.popularity, setup.n_fit_users)}
        tables.append(summarize(values, n_boot=n_boot, seed=seed, scalars=scalars, model=name, kind=kind))
    if not tables:
        raise ValueError(f"{name}: no user has a target in the {setup.stage} window; widen the window")
    return pl.concat(tables), per_user
