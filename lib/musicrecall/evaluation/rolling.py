"""Rolling next-play evaluation for any sequence model, and the RecBole-style leave-last-out protocol.

**Rolling next-play** (:func:`rolling_next_play`): every play of the evaluation window is a target,
scored from the user's plays *before it* — the fit-window plays and the earlier window plays. Window
plays are used as history, never as training: the model is fitted once on ``setup.fit`` and only
*read* the window, as a model trained last week serves this week, updating its input after each play.
This is next-item evaluation as in SASRec (Kang & McAuley, ICDM 2018) and GRU4Rec (Hidasi et al.,
ICLR 2016), applied to every play of a time window rather than to one held-out item per user. The
order signal of a listening log sits inside sessions (album continuations, same-artist runs), and a
user vector built once at the cut cannot see it; scoring each play from the plays just before it can.

* Ranking is over the **full catalogue**, never sampled (Krichene & Rendle, KDD 2020): the rank of a
  target is the number of songs scored above it, ties broken by lower song id (as the baselines do).
* ``score_fn(histories, lengths) -> scores [B, n_items]`` (numpy or torch). ``histories`` is int64
  ``[B, max_history]``, **left-padded** with ``pad = n_items`` (the padding row of every item table in
  :mod:`musicrecall.models`, as :func:`musicrecall.sequence_data.last_n_histories`), the latest play in the
  last column; ``lengths`` counts the real plays. A ``score_fn`` with an attribute ``needs_users = True``
  (e.g. :func:`model_score_fn` with user features) is called as ``score_fn(histories, lengths, users)``.
  When ``score_fn`` is a bound method of an object with ``target_ranks(histories, lengths, items)``
  (:class:`~musicrecall.evaluation.MarkovRecall`), the ranks come from there (same ranks, sparse cost).
* **Slices** (each reported apart, with its own users): ``all``; ``within_session`` (the target is in the
  same listening session as the previous play of the history, from the cleaned events' ``session_id``)
  and ``new_session`` (the first ``label`` play of a session: the previous one was in another session);
  ``repeat`` (the user played the song before, any play, fit window or earlier in the window) and
  ``discovery`` (never played before). For order-only data (ordinal time) or logs without ``session_id``
  the session slices are left out and ``notes`` says why (:meth:`RollingTargets.describe`).
* Per-user values are the mean over that user's targets in the slice (users weigh equally, as in the
  set-based protocol); CIs are percentile bootstraps over users (Efron & Tibshirani 1993), and
  :func:`rolling_lift` compares two models **on the same targets** with a paired bootstrap over users
  (Sakai, SIGIR 2006). ``mean_per_target`` (micro average) is reported beside.
* ``HR@K`` = 1 if rank < K; ``NDCG@K`` = ``1 / log2(rank + 2)`` if rank < K else 0 (one relevant song).
* Cost: one ``score_fn`` call per ``batch_size`` targets plus two numpy passes over ``[B, n_items]`` for
  the ranks. ``max_targets_per_user`` (a seeded random subset of each user's targets) and ``max_users`` (a
  seeded random subset of users) bound it; items are never sampled. Measured on the small world's test
  week (151,576 targets of 10,893 users, 30,000 songs; one thread, CPU seconds on the shared 2-core
  machine): building the targets 1.7 s, popularity 2.6 s, Markov 1.3 s (sparse ranks), an embedding
  scorer (mean of d=64 history vectors, inner products with every song) 29 s, most of it the
  ``[B, d] x [d, n_items]`` products; ``summary()`` (1,000 resamples, 5 slices x 6 metrics) 2.3 s. With
  ``max_targets_per_user=10``: 77,841 targets, 11.6 s for the embedding scorer (``bench/bench_rolling.py``).
* Early stopping on the same metric: :func:`rolling_validator` over targets of the validation setup.

**Leave-last-out** (:func:`leave_last_out_eval`): the protocol of RecBole's ``LS`` split with full
ranking (Zhao et al., *RecBole*, CIKM 2021) for parity benches: one target per user (the last play of
a ``split="leave_last_out"`` setup), scored from all plays before it, full catalogue. RecBole's
full-sort evaluation masks nothing for sequential models (the default here) and, for general models,
the user's earlier songs other than the target ("history minus positives"): ``exclude_history=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from .harness import EvalSetup
from .metrics import bootstrap_resamples, paired_bootstrap_lift
from .split import Split

ScoreFn = Callable[..., "np.ndarray | torch.Tensor"]
SLICES = ("all", "within_session", "new_session", "repeat", "discovery")

__all__ = [
    "SLICES",
    "RollingResult",
    "RollingTargets",
    "leave_last_out_eval",
    "model_score_fn",
    "rolling_lift",
    "rolling_lift_table",
    "rolling_next_play",
    "rolling_targets",
    "rolling_validator",
]


@dataclass
class RollingTargets:
    """Every target play with the history it is scored from (see the module docstring)."""

    users: np.ndarray  # int64 [T]
    items: np.ndarray  # int64 [T] the target song
    histories: np.ndarray  # int64 [T, max_history], left-padded with ``pad``
    lengths: np.ndarray  # int64 [T] real plays in the history
    repeat: np.ndarray  # bool [T] the user played the song before
    same_session: np.ndarray | None  # bool [T] same session as the previous play; None = sessions unknown
    pad: int
    n_items: int
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_targets(self) -> int:
        return int(self.users.shape[0])

    def describe(self) -> str:
        """One line: how many targets of how many users, what was dropped or sampled, session slices."""
        c = self.counts
        line = (f"{self.n_targets:,} rolling targets of {np.unique(self.users).shape[0]:,} users "
                f"(window plays {c.get('window_plays', 0):,}, labelled {c.get('targets_before_filters', 0):,}; "
                f"{c.get('no_history', 0):,} without an earlier play dropped, {c.get('sampled_out', 0):,} sampled out); "
                f"{int(self.repeat.sum()):,} repeats")
        if self.same_session is not None:
            line += f", {int(self.same_session.sum()):,} within a session"
        return line + ("; " + "; ".join(self.notes) if self.notes else "")

    def masks(self) -> dict[str, np.ndarray]:
        """Boolean target masks of the slices that exist for this data."""
        out = {"all": np.ones(self.n_targets, dtype=bool)}
        if self.same_session is not None:
            out["within_session"] = self.same_session
            out["new_session"] = ~self.same_session
        out["repeat"] = self.repeat
        out["discovery"] = ~self.repeat
        return out


def _frames(data: Any, stage: str | None) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """(history frame, window frame, time kind) from an EvalSetup, a Split (+ stage) or a pair of frames."""
    if isinstance(data, tuple) and len(data) == 2:
        return data[0], data[1], "clock"
    split = data if isinstance(data, Split) else getattr(data, "split", None)
    if not isinstance(split, Split):
        raise TypeError("expected an EvalSetup, a Split or a (history, window) pair of frames, got "
                        f"{type(data).__name__}")
    stage = stage or getattr(data, "stage", None) or "test"
    return split.fit_frame(stage), split.eval_frame(stage), split.time_kind  # type: ignore[arg-type]


def _sample_targets(users: np.ndarray, max_per_user: int | None, max_users: int | None, seed: int) -> np.ndarray:
    """Boolean keep-mask over target rows (sorted by user): a seeded subset of users and of each user's targets."""
    keep = np.ones(users.shape[0], dtype=bool)
    rng = np.random.default_rng(seed)
    if max_users is not None:
        uniq = np.unique(users)
        if uniq.shape[0] > max_users:
            chosen = rng.choice(uniq, size=max_users, replace=False)
            keep &= np.isin(users, chosen)
    if max_per_user is not None:
        key = rng.random(users.shape[0])
        order = np.lexsort((key, users))  # by user, then random
        su = users[order]
        start = np.r_[0, np.flatnonzero(su[1:] != su[:-1]) + 1]
        rank_in_user = np.arange(su.shape[0]) - np.repeat(start, np.diff(np.r_[start, su.shape[0]]))
        pick = np.zeros(users.shape[0], dtype=bool)
        pick[order[rank_in_user < max_per_user]] = True
        keep &= pick
    return keep


def rolling_targets(data: EvalSetup | Split | tuple[pl.DataFrame, pl.DataFrame], *, stage: str | None = None,
                    n_items: int | None = None, max_history: int = 50, label: str | None = "full_play",
                    min_history: int = 1, max_targets_per_user: int | None = None, max_users: int | None = None,
                    seed: int = 0, sessions: bool | None = None) -> RollingTargets:
    """Targets of the rolling next-play evaluation and their histories, vectorised.

    ``data``: an :class:`~musicrecall.evaluation.EvalSetup` (its stage's window; its ``users`` restriction
    is not applied), a :class:`~musicrecall.evaluation.Split` with ``stage``, or ``(history, window)``
    frames. Targets are the window's ``label`` plays (every play with ``label=None``); histories are the
    user's ``label`` plays before the target (fit window, then window), ordered by time (ties: fit first,
    then frame order), the last ``max_history`` kept. Targets with fewer than ``min_history`` earlier
    plays are dropped and counted (``counts["no_history"]``). ``sessions=None`` uses ``session_id`` when
    both frames have it and time is a clock.
    """
    hist_df, win_df, time_kind = _frames(data, stage)
    if label is not None and not (label in hist_df.columns and label in win_df.columns):
        raise KeyError(f"the events have no {label!r} column (cleaned logs do); pass label=None to use every play")
    if n_items is None:
        n_items = getattr(data, "n_items", None)
    if n_items is None:
        m = pl.concat([hist_df.select("song_id"), win_df.select("song_id")])["song_id"].max()
        n_items = int(m) + 1 if m is not None else 0  # type: ignore[arg-type]
    notes: list[str] = []
    has_sess = "session_id" in hist_df.columns and "session_id" in win_df.columns
    if sessions is None:
        sessions = has_sess and time_kind != "ordinal"
        if not has_sess:
            notes.append("sessions unknown: the events have no session_id, so within-session and first-of-session "
                         "slices are not reported")
        elif time_kind == "ordinal":
            notes.append("sessions unknown: time is ordinal (order only, no clock), so sessions cut by time gaps "
                         "mean nothing; within-session and first-of-session slices are not reported")
    elif sessions and not has_sess:
        raise KeyError("sessions=True needs a session_id column in both frames")
    cols = ["user_id", "song_id", "ts"] + (["session_id"] if sessions else [])

    def part(df: pl.DataFrame, origin: int, filt: bool) -> pl.DataFrame:
        d = df.filter(pl.col(label).fill_null(False)) if (filt and label is not None) else df
        return d.select([pl.col(c) for c in cols]).with_columns(
            pl.col("user_id").cast(pl.Int64), pl.col("song_id").cast(pl.Int64), pl.lit(origin, pl.Int8).alias("__o"))

    win_users = win_df.select(pl.col("user_id").unique())
    hist_df = hist_df.join(win_users, on="user_id", how="semi")  # only users with a target need a history
    plays = pl.concat([part(hist_df, 0, True), part(win_df, 1, True)],
                      how="vertical_relaxed")
    plays = plays.filter(pl.col("ts").is_not_null()).with_row_index("__i").sort(["user_id", "ts", "__o", "__i"])
    u = plays["user_id"].to_numpy()
    s = plays["song_id"].to_numpy()
    is_t = plays["__o"].to_numpy() == 1
    n = u.shape[0]
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = u[1:] != u[:-1]
    start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    g = np.flatnonzero(is_t)
    n_prev = g - start[g]
    counts = {"window_plays": int(win_df.height), "targets_before_filters": int(g.shape[0])}
    ok = n_prev >= min_history
    counts["no_history"] = int((~ok).sum())
    g = g[ok]
    keep = _sample_targets(u[g], max_targets_per_user, max_users, seed)
    counts["sampled_out"] = int((~keep).sum())
    g = g[keep]
    counts["targets"] = int(g.shape[0])
    cols_idx = g[:, None] - max_history + np.arange(max_history)[None, :]
    valid = cols_idx >= start[g][:, None]
    hist = np.where(valid, s[np.clip(cols_idx, 0, None)], n_items).astype(np.int64)
    lengths = valid.sum(axis=1).astype(np.int64)
    # Repeat: the song was played (any play, any label) by this user before the target's time.
    any_play = pl.concat([d.select(pl.col("user_id").cast(pl.Int64), pl.col("song_id").cast(pl.Int64), "ts")
                          for d in (hist_df, win_df)])
    first = any_play.group_by("user_id", "song_id").agg(pl.col("ts").min().alias("__first"))
    tgt = pl.DataFrame({"user_id": u[g], "song_id": s[g]}, schema={"user_id": pl.Int64, "song_id": pl.Int64}
                       ).with_columns(plays["ts"].gather(g).alias("ts"))
    rep = tgt.join(first, on=["user_id", "song_id"], how="left", maintain_order="left")
    repeat = (rep["__first"] < rep["ts"]).fill_null(False).to_numpy()
    same = None
    if sessions:
        sess = plays["session_id"].to_numpy()
        has_prev = g > start[g]
        same = has_prev & (sess[g] == sess[np.maximum(g - 1, 0)])
    return RollingTargets(u[g].astype(np.int64), s[g].astype(np.int64), hist, lengths, repeat, same, n_items,
                          int(n_items), notes, counts)


def _count(mask: np.ndarray) -> np.ndarray:
    """True values per row of a boolean matrix (an int8 view summed as int32: ~10x faster than torch's bool sum)."""
    return mask.view(np.int8).sum(axis=1, dtype=np.int32)


def _target_ranks(scores: torch.Tensor | np.ndarray, items: np.ndarray, mask_rows: np.ndarray | None = None,
                  mask_cols: np.ndarray | None = None) -> np.ndarray:
    """0-based full-catalogue rank of each row's target: songs scored above it, ties to the lower id.

    ``mask_rows``/``mask_cols`` entries are set to ``-inf`` first (in place: pass a copy)."""
    s = scores.numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if mask_rows is not None and mask_cols is not None and mask_rows.shape[0]:
        s[mask_rows, mask_cols] = -np.inf
    rows = np.arange(s.shape[0])
    st = s[rows, items][:, None]
    if np.isnan(st).any():
        raise ValueError("score_fn returned NaN for a target song")
    greater = _count(s > st)
    # Ties are rare (distinct float scores, or a baseline's tie-break); a second pass only where they occur.
    tied = np.flatnonzero(_count(s >= st) - greater > 1)
    if tied.shape[0]:
        ids = np.arange(s.shape[1])[None, :]
        greater[tied] += _count((s[tied] == st[tied]) & (ids < items[tied, None]))
    return greater.astype(np.int64)


@dataclass
class RollingResult:
    """Ranks of every target under one model, and the summaries built from them."""

    name: str
    targets: RollingTargets
    ranks: np.ndarray  # int64 [T], 0 = top of the catalogue
    ks: tuple[int, ...]
    seconds: float = 0.0

    @property
    def notes(self) -> list[str]:
        return self.targets.notes

    def per_target(self, metric: str) -> np.ndarray:
        """``hr@K`` or ``ndcg@K`` of every target (float64 [T])."""
        name, _, k = metric.partition("@")
        if not k.isdigit() or name not in ("hr", "ndcg"):
            raise ValueError(f"metric must be 'hr@K' or 'ndcg@K', got {metric!r}")
        hit = self.ranks < int(k)
        if name == "hr":
            return hit.astype(np.float64)
        return np.where(hit, 1.0 / np.log2(self.ranks + 2.0), 0.0)

    def per_user(self, metric: str, slice_: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """``(users, values)``: each user's mean ``metric`` over their targets in ``slice_``."""
        masks = self.targets.masks()
        if slice_ not in masks:
            raise KeyError(f"slice {slice_!r} is not available here ({'; '.join(self.notes) or 'unknown slice'})")
        m = masks[slice_]
        users, inv = np.unique(self.targets.users[m], return_inverse=True)
        v = self.per_target(metric)[m]
        return users, np.bincount(inv, weights=v, minlength=users.shape[0]) / np.bincount(inv, minlength=users.shape[0])

    def metrics(self) -> list[str]:
        return [f"{m}@{k}" for m in ("hr", "ndcg") for k in self.ks]

    def summary(self, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                slices: Sequence[str] | None = None) -> pl.DataFrame:
        """``model, slice, metric, mean, ci_lo, ci_hi, n_users, n_targets, mean_per_target``: per-user means
        with a percentile bootstrap over users (the same resamples for every metric of a slice)."""
        rows = []
        masks = self.targets.masks()
        for sl in slices or [s for s in SLICES if s in masks]:
            m = masks[sl]
            if not m.any():
                continue
            names = self.metrics()
            users_vals = [self.per_user(name, sl) for name in names]
            vals = np.stack([v for _, v in users_vals])  # [M, n_users]
            chunks = bootstrap_resamples(vals.shape[1], n_boot, seed, max_cells=4_000_000 // len(names))  # bounded memory
            boots = np.concatenate([vals[:, idx].mean(axis=2) for idx in chunks], axis=1) \
                if n_boot else vals.mean(axis=1, keepdims=True)
            lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=1)
            for j, name in enumerate(names):
                rows.append({"model": self.name, "slice": sl, "metric": name, "mean": float(vals[j].mean()),
                             "ci_lo": float(lo[j]), "ci_hi": float(hi[j]), "n_users": int(vals.shape[1]),
                             "n_targets": int(m.sum()), "mean_per_target": float(self.per_target(name)[m].mean())})
        return pl.DataFrame(rows, schema={"model": pl.String, "slice": pl.String, "metric": pl.String,
                                          "mean": pl.Float64, "ci_lo": pl.Float64, "ci_hi": pl.Float64,
                                          "n_users": pl.Int64, "n_targets": pl.Int64, "mean_per_target": pl.Float64})


def _shuffle_rows(hist: np.ndarray, lengths: np.ndarray, seed: int) -> np.ndarray:
    """Permute the real (right-aligned) positions of every history row; pads stay left."""
    rng = np.random.default_rng(seed)
    n, L = hist.shape
    key = rng.random((n, L))
    key[np.arange(L)[None, :] < (L - lengths)[:, None]] = -1.0  # pads sort first, stay in place
    return np.take_along_axis(hist, np.argsort(key, axis=1), axis=1)


def _call(score_fn: ScoreFn, h: np.ndarray, lengths: np.ndarray, users: np.ndarray, pass_users: bool) -> torch.Tensor:
    out = score_fn(h, lengths, users) if pass_users else score_fn(h, lengths)
    if isinstance(out, torch.Tensor):
        t = out.detach()
    else:
        arr = np.asarray(out)
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            arr = np.array(arr, order="C")
        t = torch.from_numpy(arr)
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


#: Songs per block of the factored ranking (:func:`_factored_ranks`): a [512 x 1024] float32 block of scores
#: (2 MB) stays in cache while it is counted.
RANK_BLOCK = 1024


def _factored_ranks(user_vecs: torch.Tensor, items_t: torch.Tensor, items: np.ndarray,
                    block: int = RANK_BLOCK) -> np.ndarray:
    """The ranks of :func:`_target_ranks` for scores ``user_vecs @ items_t`` (``items_t``: [d, n_items]),
    without the [B, n_items] score matrix: the product is computed block of songs by block of songs
    and each block is counted while it is in cache (writing and re-reading the whole matrix in main
    memory cost ~2.5x more on 2 shared cores, ``bench/bench_rolling.py``). Each score is computed once,
    by the same call as in the dense path's blocks; the blocks holding this batch's targets come first,
    so every target's own score (from its block) is known before any block is counted."""
    n = items_t.shape[1]
    u = user_vecs.float().contiguous()
    rows = np.arange(items.shape[0])
    tblock = items // block
    first = np.unique(tblock)
    rest = np.setdiff1d(np.arange(-(-n // block)), first)
    kept: dict[int, np.ndarray] = {}
    st = np.empty(items.shape[0], dtype=np.float32)
    for b in first:
        c0 = b * block
        kept[b] = (u @ items_t[:, c0:c0 + block]).numpy()
        sel = tblock == b
        st[sel] = kept[b][rows[sel], items[sel] - c0]
    if np.isnan(st).any():
        raise ValueError("score_fn returned NaN for a target song")
    st_col = st[:, None]
    greater = np.zeros(items.shape[0], dtype=np.int64)
    out = torch.empty(u.shape[0], block)
    for b in [*first.tolist(), *rest.tolist()]:
        c0 = b * block
        c1 = min(c0 + block, n)
        sb = kept.pop(b) if b in kept else torch.mm(u, items_t[:, c0:c1], out=out[:, :c1 - c0]).numpy()
        gt = _count(sb > st_col)
        tied = np.flatnonzero(_count(sb >= st_col) - gt > (tblock == b))  # another song with the target's score
        if tied.shape[0]:
            ids = np.arange(c0, c1)[None, :]
            gt[tied] += _count((sb[tied] == st_col[tied]) & (ids < items[tied, None]))
        greater += gt
    return greater


@torch.inference_mode()
def _rank_all(score_fn: ScoreFn, targets: RollingTargets, batch_size: int, pass_users: bool,
              histories: np.ndarray, exclude: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    n_items = targets.n_items
    ranks = np.empty(targets.n_targets, dtype=np.int64)
    # A baseline may rank targets without dense scores (MarkovRecall.target_ranks: same ranks, sparse cost).
    owner = getattr(score_fn, "__self__", score_fn)
    fast = getattr(owner, "target_ranks", None) if not pass_users else None
    # An embedding model (model_score_fn) gives its factors: blocked ranks, targets batched by song so
    # that each batch's targets sit in few blocks (each row's rank does not depend on its batch).
    factors = getattr(score_fn, "factors", None) if exclude is None else None
    if factors is not None:
        order = np.argsort(targets.items, kind="stable")
        for b0 in range(0, targets.n_targets, batch_size):
            idx = order[b0:b0 + batch_size]
            users = targets.users[idx] if pass_users else None
            u, items_t = factors(histories[idx], targets.lengths[idx], users)
            if b0 == 0 and (torch.isnan(u).any() or torch.isnan(items_t).any()):
                raise ValueError("score_fn returned NaN scores")
            ranks[idx] = _factored_ranks(u, items_t, targets.items[idx])
        return ranks
    for b0 in range(0, targets.n_targets, batch_size):
        b1 = min(b0 + batch_size, targets.n_targets)
        if fast is not None and exclude is None:
            ranks[b0:b1] = fast(histories[b0:b1], targets.lengths[b0:b1], targets.items[b0:b1])
            continue
        s = _call(score_fn, histories[b0:b1], targets.lengths[b0:b1], targets.users[b0:b1], pass_users)
        if s.ndim != 2 or s.shape != (b1 - b0, n_items):
            raise ValueError(f"score_fn returned shape {tuple(s.shape)}, expected ({b1 - b0}, {n_items}) "
                             "(one score per catalogue song; drop the padding row)")
        if b0 == 0 and torch.isnan(s).any():  # a full check on the first batch; targets are checked always
            raise ValueError("score_fn returned NaN scores")
        mr = mc = None
        if exclude is not None:
            s = s.clone()  # masked in place; the model's own buffer stays intact
            indptr, indices = exclude
            lo, hi = indptr[b0], indptr[b1]
            mr = np.repeat(np.arange(b1 - b0, dtype=np.int64), np.diff(indptr[b0:b1 + 1]))
            mc = indices[lo:hi]
        ranks[b0:b1] = _target_ranks(s, targets.items[b0:b1], mr, mc)
    return ranks


def rolling_next_play(score_fn: ScoreFn, setup_or_events: EvalSetup | Split | tuple[pl.DataFrame, pl.DataFrame] |
                      RollingTargets, k: Iterable[int] = (10, 50, 200), *, name: str = "model",
                      max_history: int = 50, batch_size: int = 512, label: str | None = "full_play",
                      max_targets_per_user: int | None = None, max_users: int | None = None, seed: int = 0,
                      shuffle_history: bool = False, stage: str | None = None, n_items: int | None = None,
                      pass_users: bool | None = None) -> RollingResult:
    """Score every evaluation-window play from the user's plays before it; full-catalogue ranks.

    ``setup_or_events`` is what :func:`rolling_targets` takes, or a :class:`RollingTargets` already built
    (reuse it so that several models are scored on the very same targets). ``shuffle_history=True``
    permutes each history (seeded; songs kept, order lost): the shuffle-at-inference check of an order
    claim. See the module docstring for ``score_fn``, slices and intervals.
    """
    import time

    t0 = time.perf_counter()
    if isinstance(setup_or_events, RollingTargets):
        targets = setup_or_events
    else:
        targets = rolling_targets(setup_or_events, stage=stage, n_items=n_items, max_history=max_history,
                                  label=label, max_targets_per_user=max_targets_per_user, max_users=max_users,
                                  seed=seed)
    ks = tuple(sorted({int(x) for x in k}))
    if pass_users is None:
        pass_users = bool(getattr(score_fn, "needs_users", False))
    hist = _shuffle_rows(targets.histories, targets.lengths, seed) if shuffle_history else targets.histories
    ranks = _rank_all(score_fn, targets, batch_size, pass_users, hist)
    return RollingResult(name, targets, ranks, ks, time.perf_counter() - t0)


def _same_targets(a: RollingResult, b: RollingResult) -> None:
    ta, tb = a.targets, b.targets
    if ta is tb:
        return
    if not (np.array_equal(ta.users, tb.users) and np.array_equal(ta.items, tb.items)
            and np.array_equal(ta.lengths, tb.lengths)):
        raise ValueError(f"{a.name} and {b.name} were scored on different targets; build RollingTargets once "
                         "and pass it to both")


def rolling_lift(a: RollingResult, b: RollingResult, metric: str = "hr@10", slice_: str = "all",
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Relative lift ``mean(A) / mean(B) - 1`` on the same targets, paired bootstrap over users."""
    _same_targets(a, b)
    ua, va = a.per_user(metric, slice_)
    ub, vb = b.per_user(metric, slice_)
    assert np.array_equal(ua, ub)
    return paired_bootstrap_lift(va, vb, n_boot=n_boot, alpha=alpha, seed=seed)


def rolling_lift_table(a: RollingResult, b: RollingResult, metrics: Sequence[str] | None = None,
                       slices: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """``a, b, slice, metric, lift, ci_lo, ci_hi, n_users`` for every metric and available slice (a slice
    where B scores 0 on average gets a null lift)."""
    rows = []
    masks = a.targets.masks()
    for sl in slices or [s for s in SLICES if s in masks]:
        if not masks[sl].any():
            continue
        for metric in metrics or a.metrics():
            try:
                lift, lo, hi = rolling_lift(a, b, metric, sl, n_boot=n_boot, seed=seed)
            except ValueError as err:
                if "mean(b) is 0" not in str(err):
                    raise
                lift = lo = hi = None  # type: ignore[assignment]
            rows.append({"a": a.name, "b": b.name, "slice": sl, "metric": metric, "lift": lift, "ci_lo": lo,
                         "ci_hi": hi, "n_users": int(np.unique(a.targets.users[masks[sl]]).shape[0])})
    return pl.DataFrame(rows, schema={"a": pl.String, "b": pl.String, "slice": pl.String, "metric": pl.String,
                                      "lift": pl.Float64, "ci_lo": pl.Float64, "ci_hi": pl.Float64,
                                      "n_users": pl.Int64})


def leave_last_out_eval(score_fn: ScoreFn, setup: EvalSetup, k: Iterable[int] = (10, 20), *, name: str = "model",
                        exclude_history: bool = False, label: str | None = None, max_history: int = 50,
                        batch_size: int = 512, pass_users: bool | None = None) -> RollingResult:
    """RecBole-style leave-last-out: one target per user (the test play of a ``split="leave_last_out"``
    setup at stage "test", or the validation play at stage "valid"), scored from every earlier play,
    full-catalogue ranks. ``exclude_history=True`` masks the songs of the user's earlier plays except the
    target itself (RecBole's full-sort evaluation of general models; its sequential models mask nothing,
    the default). ``label=None`` (default) counts every play, as RecBole does; the result has the same
    slices and summaries as :func:`rolling_next_play`.
    """
    if setup.split.name != "leave_last_out":
        raise ValueError(f"leave_last_out_eval needs a split='leave_last_out' setup, got a {setup.split.name} split")
    targets = rolling_targets(setup, max_history=max_history, label=label)
    if pass_users is None:
        pass_users = bool(getattr(score_fn, "needs_users", False))
    exclude = None
    if exclude_history:
        lab = setup.fit if label is None else setup.fit.filter(pl.col(label).fill_null(False))
        pairs = lab.select(pl.col("user_id").cast(pl.Int64), pl.col("song_id").cast(pl.Int64)).unique()
        rows = pl.DataFrame({"user_id": targets.users, "__t": targets.items, "__r": np.arange(targets.n_targets)})
        p = pairs.join(rows, on="user_id").filter(pl.col("song_id") != pl.col("__t")).sort("__r", "song_id")
        r = p["__r"].to_numpy()
        indptr = np.zeros(targets.n_targets + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=targets.n_targets), out=indptr[1:])
        exclude = (indptr, p["song_id"].to_numpy().astype(np.int64))
    import time

    t0 = time.perf_counter()
    ranks = _rank_all(score_fn, targets, batch_size, pass_users, targets.histories, exclude)
    ks = tuple(sorted({int(x) for x in k}))
    return RollingResult(name, targets, ranks, ks, time.perf_counter() - t0)


def model_score_fn(model: torch.nn.Module, user_feats: np.ndarray | None = None) -> ScoreFn:
    """A ``score_fn`` for a sequence model of :mod:`musicrecall.sequences` (``user_vecs(items, feats)``,
    ``item_table()``): inner products of the user vector after the history with every song vector.
    With ``user_feats`` (rows = user ids) it is called with the target users."""
    model.eval()
    with torch.inference_mode():
        items_t = model.item_table().detach().float().T.contiguous()

    def factors(histories: np.ndarray, lengths: np.ndarray, users: np.ndarray | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        f = None if user_feats is None or users is None else torch.from_numpy(user_feats[users])
        return model.user_vecs(torch.from_numpy(np.ascontiguousarray(histories)), f).float(), items_t

    def score(histories: np.ndarray, lengths: np.ndarray, users: np.ndarray | None = None) -> torch.Tensor:
        u, t = factors(histories, lengths, users)
        return u @ t

    score.needs_users = user_feats is not None  # type: ignore[attr-defined]
    score.factors = factors  # type: ignore[attr-defined]  # (user vectors, [d, n_items]): blocked ranks
    return score


def rolling_validator(targets: RollingTargets, metric: str = "hr@10", slice_: str = "all",
                      user_feats: np.ndarray | None = None, batch_size: int = 512) -> Callable[[torch.nn.Module], float]:
    """``validate(model) -> float`` for early stopping on the rolling metric a claim uses: the per-user mean
    of ``metric`` over ``targets`` (build them from the *validation* setup, e.g.
    ``rolling_targets(valid_setup, max_targets_per_user=20, max_users=3000)``), scored with
    :func:`model_score_fn`."""
    k = int(metric.partition("@")[2])

    def validate(model: torch.nn.Module) -> float:
        r = rolling_next_play(model_score_fn(model, user_feats), targets, k=(k,), batch_size=batch_size)
        return float(r.per_user(metric, slice_)[1].mean())

    return validate
