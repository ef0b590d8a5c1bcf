"""The evaluation harness every notebook shares: one split, three target kinds, one results table.

``make_eval_setup`` splits the cleaned plays (:func:`musicrecall.evaluation.choose_split`: ``split="auto"``
keeps the global 7-day time split when the log has a clock and populated windows, uses time quantiles
when those windows are empty or tiny, and a per-user split by position for order-only data; or name
``"time"``, ``"quantile"``, ``"position"``, ``"leave_last_out"``), refuses an empty or tiny window
before any training (:class:`musicrecall.evaluation.WindowTooSmallError`), and builds, for the test
(or validation) window, the targets of each kind:

* ``all``: every song the user full-played in the window;
* ``discovery``: only songs the user never played before the window; known songs are masked from the
  ranked lists, so a model is not rewarded for replaying the history;
* ``repeat``: only songs the user played before.

``evaluate_recommender`` ranks the full catalogue for each evaluated user (never sampled metrics) and
returns HitRate/Recall/NDCG@K with bootstrap CIs, plus coverage and novelty, per kind.

``setup.split_name``, the one-line ``setup.describe_split()`` and ``setup.split_info()`` (a dict) name
the split (print and record them); ``setup.check_no_leakage(frame)`` checks a fitting frame against the stage's cut (global or per
user).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from .metrics import (
    Targets,
    UserItemCSR,
    build_targets,
    coverage,
    evaluate_lists,
    exclusion_csr,
    item_popularity,
    novelty,
    summarize,
)
from .split import MIN_WINDOW_EVENTS, MIN_WINDOW_USERS, Split, check_window, choose_split

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

    @property
    def split_name(self) -> str:
        """The split kind: "time", "quantile", "position" or "leave_last_out"."""
        return self.split.name

    def describe_split(self) -> str:
        """One line naming the split, its parameters, window sizes and why it was chosen."""
        return self.split.describe_split()

    def split_info(self) -> dict:
        """The split as plain values (name, time kind, parameters, reason, part sizes) for a report."""
        return self.split.info()

    def check_no_leakage(self, frame: pl.DataFrame | None = None, name: str = "fit") -> None:
        """Raise :class:`musicrecall.evaluation.LeakageError` if ``frame`` (default ``self.fit``) reaches this
        stage's cut (the global cut, or each user's own cut for per-user splits)."""
        self.split.check_no_leakage(self.fit if frame is None else frame, self.stage, name=name)  # type: ignore[arg-type]


def make_eval_setup(events: pl.DataFrame, n_items: int, stage: str = "test", valid_days: float = 7,
                    test_days: float = 7, users: np.ndarray | None = None, *, split: str | Split = "auto",
                    time_kind: str = "auto", valid_frac: float = 0.1, test_frac: float = 0.1,
                    min_window_events: int = MIN_WINDOW_EVENTS, min_window_users: int = MIN_WINDOW_USERS,
                    check: bool = True) -> EvalSetup:
    """Split cleaned plays and build the targets of ``stage`` ("valid" or "test").

    ``split``: "auto" (default; see :func:`musicrecall.evaluation.choose_split`), "time" (``valid_days`` /
    ``test_days``), "quantile" / "position" (``valid_frac`` / ``test_frac``), "leave_last_out", or a
    :class:`musicrecall.evaluation.Split` already made (reuse it for the valid and test setups).
    ``time_kind``: "clock", "ordinal" (order only; e.g. a dataset's ``meta.json``) or "auto" (detected from
    the data). With ``check`` (default) an empty or tiny ``stage`` window raises
    :class:`musicrecall.evaluation.WindowTooSmallError` naming the window, its size and the parameter to
    change, before any model is trained.
    """
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
    if not isinstance(split, Split):
        split = choose_split(events, split, time_kind=time_kind, valid_days=valid_days,  # type: ignore[arg-type]
                             test_days=test_days, valid_frac=valid_frac, test_frac=test_frac,
                             min_events=min_window_events, min_users=min_window_users)
    if check:
        check_window(split, stage, min_window_events, min_window_users)  # type: ignore[arg-type]
    fit = split.fit_frame(stage)  # type: ignore[arg-type]
    window = split.eval_frame(stage)  # type: ignore[arg-type]
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
    (keep them for paired comparisons with :func:`musicrecall.evaluation.paired_bootstrap_lift`).

    ``recommend(users, k, exclude)`` must rank each user independently of the others in the call (every
    recommender here does; notebook 06's random baseline draws afresh per call, as before): the kinds without an exclusion ("all", "repeat") are ranked in one call over
    the union of their users, and each takes its users' rows (the repeat users are all-kind users too, so
    they are not ranked twice)."""
    ks = tuple(ks)
    tables, per_user = [], {}
    plain = [setup.targets[kind].users for kind in KINDS
             if setup.exclude[kind] is None and setup.targets[kind].n_users > 0]
    shared = None
    if len(plain) > 1:
        union = np.unique(np.concatenate(plain).astype(np.int64))
        shared = (union, recommend(union, max(ks), None))
    for kind in KINDS:
        t = setup.targets[kind]
        if t.n_users == 0:  # e.g. a small real export whose test window has no repeat plays
            continue
        if shared is not None and setup.exclude[kind] is None:
            lists = shared[1][np.searchsorted(shared[0], np.asarray(t.users, dtype=np.int64))]
        else:
            lists = recommend(t.users, max(ks), setup.exclude[kind])
        values = evaluate_lists(lists, t, ks, exclude=setup.exclude[kind])
        per_user[kind] = values
        scalars = {f"coverage@{max(ks)}": coverage(lists[:, : max(ks)], setup.n_items),
                   f"novelty@{max(ks)}": novelty(lists[:, : max(ks)], setup.popularity, setup.n_fit_users)}
        tables.append(summarize(values, n_boot=n_boot, seed=seed, scalars=scalars, model=name, kind=kind))
    if not tables:
        raise ValueError(f"{name}: no user has a target in the {setup.stage} window; widen the window")
    return pl.concat(tables), per_user
