"""Full-catalogue ranking metrics with user-level bootstrap confidence intervals.

Principles (why the code looks the way it does):

* **Full ranking, never sampled.** Every model ranks the whole catalogue; metrics computed against
  a sample of negatives are inconsistent with the full-ranking ones and can even reverse model
  orderings (Krichene & Rendle, *On Sampled Metrics for Item Recommendation*, KDD 2020).
  :func:`topk_scores` does the exact top-k by inner product in user batches with ``torch.topk``.
* **Discovery apart from repeats.** In music most plays are re-listens; a model that replays the
  user's history scores well on "all" targets and tells nothing about candidate generation for new
  songs. :func:`build_targets` makes ``"discovery"`` targets (full plays of songs the user never
  played in the fit window) and ``"repeat"`` targets separately, and :func:`exclusion_csr` gives
  the history to mask when ranking for discovery.
* **Uncertainty.** Each metric is a per-user array; :func:`bootstrap_ci` gives a percentile
  bootstrap interval over users (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
  ch. 13) and :func:`paired_bootstrap_lift` resamples the *same* users for two models, which is
  what a claim "A beats B" needs (Sakai, *Evaluating evaluation metrics based on the bootstrap*,
  SIGIR 2006).

Metric definitions (per user ``u`` with target set ``T_u`` and ranked list ``L_u``):

* ``hr@K``     = 1 if ``|L_u[:K] ∩ T_u| > 0`` else 0.
* ``recall@K`` = ``|L_u[:K] ∩ T_u| / |T_u|`` (the standard definition; note it cannot reach 1 when
  ``|T_u| > K``).
* ``ndcg@K``   = DCG / IDCG with binary gains and ``1/log2(rank+1)`` discount; IDCG places
  ``min(|T_u|, K)`` hits on top (Järvelin & Kekäläinen, *Cumulated gain-based evaluation of IR
  techniques*, ACM TOIS 2002).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from .split import Split, Stage

TargetKind = Literal["all", "discovery", "repeat"]

__all__ = [
    "Targets",
    "UserItemCSR",
    "bootstrap_ci",
    "bootstrap_resamples",
    "build_targets",
    "compact_rows",
    "coverage",
    "evaluate_lists",
    "evaluate_scores",
    "evaluate_topk",
    "exclude_arrays",
    "exclusion_csr",
    "hit_matrix",
    "item_popularity",
    "novelty",
    "paired_bootstrap_lift",
    "stage_targets",
    "summarize",
    "topk_scores",
]


# --------------------------------------------------------------------------------------------------
# CSR containers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserItemCSR:
    """Per-user sets of songs as CSR: the songs of ``users[r]`` are ``indices[indptr[r]:indptr[r+1]]``.

    Within a row the song ids are unique and sorted ascending.
    """

    users: np.ndarray  # int64 [n_users]
    indptr: np.ndarray  # int64 [n_users + 1]
    indices: np.ndarray  # int64 [nnz]

    @property
    def n_users(self) -> int:
        """Number of rows."""
        return int(self.users.shape[0])

    @property
    def sizes(self) -> np.ndarray:
        """Number of songs per row (int64)."""
        return np.diff(self.indptr)

    def row(self, r: int) -> np.ndarray:
        """The songs of row ``r``."""
        return self.indices[self.indptr[r] : self.indptr[r + 1]]

    def row_ids(self) -> np.ndarray:
        """The row number of every stored song (int64 [nnz])."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.sizes)

    def take(self, rows: np.ndarray) -> UserItemCSR:
        """The rows ``rows`` (e.g. a seeded subset of users for early stopping), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        sizes = self.sizes[rows]
        indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=indptr[1:])
        idx = np.repeat(self.indptr[rows] - indptr[:-1], sizes) + np.arange(indptr[-1])
        return UserItemCSR(self.users[rows], indptr, self.indices[idx])

    def to_scipy(self, n_items: int) -> sp.csr_matrix:
        """A boolean ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)``."""
        data = np.ones(self.indices.shape[0], dtype=bool)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n_users, n_items))

    def to_sets(self) -> dict[int, set[int]]:
        """``{user_id: {song_id, ...}}`` (for inspection and tests, not for hot paths)."""
        return {int(u): set(self.row(r).tolist()) for r, u in enumerate(self.users)}


@dataclass(frozen=True)
class Targets(UserItemCSR):
    """Evaluation targets: per user the songs they full-played in the evaluation window.

    ``n_excluded`` counts candidate users that had no target of this ``kind`` and were dropped.
    """

    kind: str = "all"
    n_excluded: int = 0
    meta: dict[str, object] = field(default_factory=dict)


def _csr_from_pairs(pairs: pl.DataFrame, users: np.ndarray, user_col: str, item_col: str) -> UserItemCSR:
    """CSR aligned with ``users`` from a frame of distinct (user, item) pairs (users not in ``users`` ignored)."""
    users = np.asarray(users, dtype=np.int64)
    pos = pl.DataFrame({user_col: users, "__row": np.arange(users.shape[0], dtype=np.int64)})
    p = (
        pairs.select(pl.col(user_col).cast(pl.Int64), pl.col(item_col).cast(pl.Int64))
        .join(pos, on=user_col, how="inner")
        .sort(["__row", item_col])
    )
    rows = p["__row"].to_numpy()
    indptr = np.zeros(users.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=users.shape[0]), out=indptr[1:])
    return UserItemCSR(users=users, indptr=indptr, indices=p[item_col].to_numpy().astype(np.int64))


def _check_users(users: np.ndarray | Sequence[int]) -> np.ndarray:
    arr = np.asarray(users, dtype=np.int64).ravel()
    if np.unique(arr).shape[0] != arr.shape[0]:
        raise ValueError("users must be unique")
    return arr


def build_targets(
    history: pl.DataFrame,
    future: pl.DataFrame,
    users: np.ndarray | Sequence[int] | None = None,
    kind: TargetKind = "all",
    label: str | None = "full_play",
    *,
    user_col: str = "user_id",
    item_col: str = "song_id",
) -> Targets:
    """Targets for ranking evaluation: the songs each user full-played (``label`` true) in ``future``.

    ``kind``:

    * ``"all"``: every such song;
    * ``"discovery"``: only songs the user never played (any play, whatever ``label``) in ``history``;
    * ``"repeat"``: only songs the user did play in ``history``.

    Candidate users are ``users`` (kept in that order) or, when ``None``, every user with at least one
    event in ``future`` (sorted by id). Candidates without a target of this kind are dropped and
    counted in ``Targets.n_excluded``. ``label=None`` uses every play as a target.
    """
    if kind not in ("all", "discovery", "repeat"):
        raise ValueError(f"kind must be 'all', 'discovery' or 'repeat', got {kind!r}")
    fut = future if label is None else future.filter(pl.col(label).fill_null(False))
    pairs = fut.select(user_col, item_col).unique()
    if kind != "all":
        seen = history.select(user_col, item_col).unique()
        how = "anti" if kind == "discovery" else "semi"
        pairs = pairs.join(seen, on=[user_col, item_col], how=how)
    if users is None:
        cand = np.sort(future[user_col].unique().drop_nulls().to_numpy().astype(np.int64))
    else:
        cand = _check_users(users)
    has = np.isin(cand, pairs[user_col].unique().to_numpy())
    kept = cand[has]
    csr = _csr_from_pairs(pairs, kept, user_col, item_col)
    return Targets(
        users=csr.users,
        indptr=csr.indptr,
        indices=csr.indices,
        kind=kind,
        n_excluded=int((~has).sum()),
        meta={"label": label, "n_candidates": int(cand.shape[0])},
    )


def stage_targets(
    split: Split,
    stage: Stage,
    kind: TargetKind = "all",
    users: np.ndarray | Sequence[int] | None = None,
    label: str | None = "full_play",
) -> tuple[Targets, UserItemCSR]:
    """Targets of ``split`` at ``stage`` and the matching exclusion rows, from the right frames.

    History is :meth:`Split.fit_frame` (train for "valid", train+valid for "test"), the future is
    :meth:`Split.eval_frame`. The exclusion CSR (songs already played in the fit frame) is aligned
    with ``targets.users``; pass it as ``exclude=`` for discovery.
    """
    history, future = split.fit_frame(stage), split.eval_frame(stage)
    targets = build_targets(history, future, users=users, kind=kind, label=label)
    return targets, exclusion_csr(history, targets.users)


def exclusion_csr(
    history: pl.DataFrame,
    users: np.ndarray | Sequence[int],
    *,
    user_col: str = "user_id",
    item_col: str = "song_id",
) -> UserItemCSR:
    """The songs each of ``users`` already played (any play) in ``history``, aligned with ``users``.

    Pass it as ``exclude=`` when ranking for discovery so known songs cannot take list slots.
    Users without history get an empty row.
    """
    pairs = history.select(user_col, item_col).unique()
    return _csr_from_pairs(pairs, _check_users(users), user_col, item_col)


ExcludeLike = UserItemCSR | sp.csr_matrix | sp.csr_array | tuple[np.ndarray, np.ndarray] | None


def exclude_arrays(
    exclude: ExcludeLike, n_rows: int, users: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(indptr, indices) of an exclusion argument, checked against the rows (and users, if known)."""
    if exclude is None:
        return None
    if isinstance(exclude, UserItemCSR):
        if users is not None and not np.array_equal(exclude.users, users):
            raise ValueError("exclude rows are not aligned with the target users")
        indptr, indices = exclude.indptr, exclude.indices
    elif sp.issparse(exclude):
        m = sp.csr_matrix(exclude)
        indptr, indices = m.indptr, m.indices
    else:
        indptr, indices = exclude
    indptr = np.asarray(indptr, dtype=np.int64)
    if indptr.shape[0] != n_rows + 1:
        raise ValueError(f"exclude has {indptr.shape[0] - 1} rows, expected {n_rows}")
    return indptr, np.asarray(indices, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Exact top-k
# --------------------------------------------------------------------------------------------------


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.detach().to(dtype=torch.float32, device="cpu")


@torch.inference_mode()
def topk_scores(
    user_vecs: np.ndarray | torch.Tensor,
    item_vecs: np.ndarray | torch.Tensor,
    k: int,
    exclude: ExcludeLike = None,
    batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items by inner product over the entire catalogue, in user batches.

    Scores are ``user_vecs @ item_vecs.T`` (float32, torch matmul); items in row ``r`` of
    ``exclude`` get ``-inf``. Returns ``(indices int64 [n_users, k], scores float32 [n_users, k])``,
    best first. Slots that could only be filled with excluded items (a user who excluded more than
    ``n_items - k`` items) get index ``-1`` and score ``-inf``. Uses torch's thread setting (see
    :func:`musicrecall.config.set_threads`).
    """
    u, v = _as_tensor(user_vecs), _as_tensor(item_vecs)
    if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[1]:
        raise ValueError(f"shape mismatch: users {tuple(u.shape)}, items {tuple(v.shape)}")
    n_users, n_items = u.shape[0], v.shape[0]
    if not 0 < k <= n_items:
        raise ValueError(f"k={k} must be in 1..n_items={n_items}")
    ex = exclude_arrays(exclude, n_users)
    out_idx = np.empty((n_users, k), dtype=np.int64)
    out_val = np.empty((n_users, k), dtype=np.float32)
    vt = v.T.contiguous()
    buf = torch.empty((min(batch, n_users), n_items), dtype=torch.float32)
    neg_inf = float("-inf")
    for b0 in range(0, n_users, batch):
        b1 = min(b0 + batch, n_users)
        s = buf[: b1 - b0]
        torch.matmul(u[b0:b1], vt, out=s)
        if ex is not None:
            indptr, indices = ex
            lo, hi = indptr[b0], indptr[b1]
            if hi > lo:
                rows = np.repeat(np.arange(b1 - b0, dtype=np.int64), np.diff(indptr[b0 : b1 + 1]))
                s[torch.from_numpy(rows), torch.from_numpy(indices[lo:hi])] = neg_inf
        val, idx = torch.topk(s, k, dim=1, largest=True, sorted=True)
        out_idx[b0:b1] = idx.numpy()
        out_val[b0:b1] = val.numpy()
    if ex is not None:
        out_idx[np.isneginf(out_val)] = -1
    return out_idx, out_val


# --------------------------------------------------------------------------------------------------
# Hit matrix and per-user metrics
# --------------------------------------------------------------------------------------------------


def _row_keys(rows: np.ndarray, items: np.ndarray, base: int) -> np.ndarray:
    """Encode (row, item) as one int64 key, item ``-1`` (padding) mapping to a key no target has."""
    return rows.astype(np.int64) * base + (items.astype(np.int64) + 1)


def hit_matrix(topk_idx: np.ndarray, targets: UserItemCSR) -> np.ndarray:
    """``hit[r, j]`` = ``topk_idx[r, j]`` is in the target set of row ``r`` (vectorised searchsorted)."""
    n, k = topk_idx.shape
    base = int(max(topk_idx.max(initial=-1), targets.indices.max(initial=-1))) + 2
    tkeys = _row_keys(targets.row_ids(), targets.indices, base)  # sorted: rows then items ascending
    qkeys = _row_keys(np.repeat(np.arange(n, dtype=np.int64), k), topk_idx.ravel(), base)
    if tkeys.shape[0] == 0:
        return np.zeros((n, k), dtype=bool)
    pos = np.searchsorted(tkeys, qkeys)
    pos[pos == tkeys.shape[0]] = 0
    return (tkeys[pos] == qkeys).reshape(n, k)


def _dedupe_rows(topk_idx: np.ndarray) -> np.ndarray:
    """Replace repeated items within a row by ``-1`` (first occurrence kept)."""
    n, k = topk_idx.shape
    base = int(topk_idx.max(initial=-1)) + 2
    keys = _row_keys(np.repeat(np.arange(n, dtype=np.int64), k), topk_idx.ravel(), base)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    dup = np.zeros(keys.shape[0], dtype=bool)
    dup[order[1:]] = sk[1:] == sk[:-1]
    out = topk_idx.ravel().copy()
    out[dup] = -1
    return out.reshape(n, k)


def compact_rows(topk_idx: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Remove ``drop`` entries from each row keeping order, shifting the rest left, padding with -1."""
    order = np.argsort(drop, axis=1, kind="stable")
    out = np.take_along_axis(topk_idx, order, axis=1)
    out[np.take_along_axis(drop, order, axis=1)] = -1
    return out


def evaluate_topk(
    topk_idx: np.ndarray,
    targets: UserItemCSR,
    ks: Iterable[int] = (50, 200),
) -> dict[str, np.ndarray]:
    """Per-user ``hr@K``, ``recall@K`` and ``ndcg@K`` (float64 arrays aligned with ``targets.users``).

    Row ``r`` of ``topk_idx`` is the ranked list of ``targets.users[r]`` (best first, at least
    ``max(ks)`` columns, ``-1`` = empty slot). Lists are assumed to have no repeated items; use
    :func:`evaluate_lists` for lists that may. Definitions are in the module docstring.
    """
    topk_idx = np.asarray(topk_idx)
    ks = sorted({int(k) for k in ks})
    if topk_idx.ndim != 2 or topk_idx.shape[0] != targets.n_users:
        raise ValueError(f"topk_idx has shape {topk_idx.shape}, expected ({targets.n_users}, >= {ks[-1]})")
    if topk_idx.shape[1] < ks[-1]:
        raise ValueError(f"lists have {topk_idx.shape[1]} columns, need {ks[-1]} for @{ks[-1]}")
    kmax = ks[-1]
    hit = hit_matrix(topk_idx[:, :kmax], targets)
    n_t = targets.sizes.astype(np.float64)
    if np.any(n_t == 0):
        raise ValueError("targets contain users with no target; build_targets drops them")
    disc = 1.0 / np.log2(np.arange(2, kmax + 2, dtype=np.float64))
    cum_hits = np.cumsum(hit, axis=1, dtype=np.int64)
    cum_dcg = np.cumsum(hit * disc, axis=1)
    cum_idcg = np.cumsum(disc)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = cum_hits[:, k - 1].astype(np.float64)
        idcg = cum_idcg[np.minimum(n_t.astype(np.int64), k) - 1]
        out[f"hr@{k}"] = (h > 0).astype(np.float64)
        out[f"recall@{k}"] = h / n_t
        out[f"ndcg@{k}"] = cum_dcg[:, k - 1] / idcg
    return out


def evaluate_scores(
    user_vecs: np.ndarray | torch.Tensor,
    item_vecs: np.ndarray | torch.Tensor,
    targets: UserItemCSR,
    ks: Iterable[int] = (50, 200),
    exclude: ExcludeLike = None,
    batch: int = 1024,
) -> dict[str, np.ndarray]:
    """Full-catalogue evaluation of an embedding model: exact top-``max(ks)`` then :func:`evaluate_topk`.

    Row ``r`` of ``user_vecs`` must be the vector of ``targets.users[r]``; ``exclude`` (e.g.
    :func:`exclusion_csr` of the fit window for discovery targets) must be aligned the same way.
    """
    ks = tuple(ks)
    exclude_arrays(exclude, targets.n_users, targets.users)  # alignment check
    idx, _ = topk_scores(user_vecs, item_vecs, max(ks), exclude=exclude, batch=batch)
    return evaluate_topk(idx, targets, ks)


def evaluate_lists(
    topk_idx: np.ndarray,
    targets: UserItemCSR,
    ks: Iterable[int] = (50, 200),
    *,
    list_users: np.ndarray | Sequence[int] | None = None,
    exclude: ExcludeLike = None,
) -> dict[str, np.ndarray]:
    """Evaluate ranked lists produced directly by a model (item-to-item recall, merged channels ...).

    * ``list_users``: the user of each row of ``topk_idx``; rows are re-aligned with
      ``targets.users``, and target users without a list get an empty list (they count as misses,
      they are not dropped). ``None`` means rows are already aligned.
    * ``exclude``: per target user (aligned with ``targets.users``) songs to remove from the lists
      (e.g. the history for discovery); remaining items move up.
    * Repeated items within a row are kept once (first position). Lists shorter than ``max(ks)``
      are padded with ``-1``.
    """
    ks = tuple(ks)
    lists = np.asarray(topk_idx, dtype=np.int64)
    if lists.ndim != 2:
        raise ValueError("topk_idx must be 2-D")
    if list_users is not None:
        lu = _check_users(list_users)
        if lu.shape[0] != lists.shape[0]:
            raise ValueError("list_users and topk_idx have different lengths")
        order = np.argsort(lu)
        pos = np.searchsorted(lu, targets.users, sorter=order)
        pos = np.minimum(pos, lu.shape[0] - 1)
        src = order[pos] if lu.shape[0] else np.zeros(targets.n_users, dtype=np.int64)
        found = lu[src] == targets.users if lu.shape[0] else np.zeros(targets.n_users, dtype=bool)
        aligned = np.full((targets.n_users, lists.shape[1]), -1, dtype=np.int64)
        aligned[found] = lists[src[found]]
        lists = aligned
    elif lists.shape[0] != targets.n_users:
        raise ValueError(f"{lists.shape[0]} lists for {targets.n_users} target users; pass list_users")
    lists = _dedupe_rows(lists)
    drop = lists < 0
    ex = exclude_arrays(exclude, targets.n_users, targets.users)
    if ex is not None:
        drop |= hit_matrix(lists, UserItemCSR(users=targets.users, indptr=ex[0], indices=ex[1]))
    if drop.any():
        lists = compact_rows(lists, drop)
    if lists.shape[1] < max(ks):
        pad = np.full((lists.shape[0], max(ks) - lists.shape[1]), -1, dtype=np.int64)
        lists = np.hstack([lists, pad])
    return evaluate_topk(lists, targets, ks)


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def _boot_indices(n: int, n_boot: int, rng: np.random.Generator, max_cells: int = 4_000_000):
    """Yield chunks of bootstrap resample indices of shape (chunk, n), bounded in memory."""
    chunk = max(1, min(n_boot, max_cells // max(n, 1)))
    done = 0
    while done < n_boot:
        c = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(c, n))
        done += c


def bootstrap_resamples(n: int, n_boot: int, seed: int | np.random.Generator = 0, max_cells: int = 4_000_000):
    """Yield percentile-bootstrap resamples of ``n`` users as index matrices ``(chunk, n)``, ``n_boot`` rows in
    all, in memory-bounded chunks (the resampling :func:`bootstrap_ci` uses, for callers that bootstrap
    several metrics on the same resamples)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    yield from _boot_indices(n, n_boot, rng, max_cells)


def _clean(values: np.ndarray | Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.shape[0] == 0:
        raise ValueError("no values to bootstrap")
    if np.isnan(v).any():
        raise ValueError("values contain NaN")
    return v


def bootstrap_ci(
    per_user_values: np.ndarray | Sequence[float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap ``1 - alpha`` interval over users: ``(mean, lo, hi)``.

    Users are the resampling unit (Efron & Tibshirani 1993, ch. 13). Vectorised: resamples are
    drawn as index matrices in memory-bounded chunks.
    """
    v = _clean(per_user_values)
    rng = np.random.default_rng(seed)
    means = np.concatenate([v[idx].mean(axis=1) for idx in _boot_indices(v.shape[0], n_boot, rng)])
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(lo), float(hi)


def bootstrap_cis(per_user: Mapping[str, np.ndarray], n_boot: int = 1000, alpha: float = 0.05,
                  seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """:func:`bootstrap_ci` of every metric of ``per_user`` (name -> per-user values), with identical results.

    Metrics over the same number of users get the same resamples from ``bootstrap_ci`` with one seed, so
    they are drawn once and shared (drawing them was most of a bootstrap's cost).
    """
    vals = {name: _clean(v) for name, v in per_user.items()}
    means: dict[str, list[np.ndarray]] = {name: [] for name in vals}
    for n in {v.shape[0] for v in vals.values()}:
        names = [name for name, v in vals.items() if v.shape[0] == n]
        for idx in _boot_indices(n, n_boot, np.random.default_rng(seed)):
            for name in names:
                means[name].append(vals[name][idx].mean(axis=1))
    out = {}
    for name, v in vals.items():
        lo, hi = np.quantile(np.concatenate(means[name]), [alpha / 2, 1 - alpha / 2])
        out[name] = (float(v.mean()), float(lo), float(hi))
    return out


def paired_bootstrap_lift(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Relative lift ``mean(a) / mean(b) - 1`` of model A over B, with a paired bootstrap interval.

    ``a[i]`` and ``b[i]`` must be the same user's metric under the two models; each resample draws
    the same users for both, so user-level variance cancels (Sakai, SIGIR 2006). Returns
    ``(lift, lo, hi)``; the claim "A beats B" is supported at level ``alpha`` when ``lo > 0``.
    Resamples where ``mean(b) == 0`` give ``+inf`` (or NaN when both are 0) and are kept so the
    interval stays honest.
    """
    va, vb = _clean(a), _clean(b)
    if va.shape != vb.shape:
        raise ValueError("a and b must be per-user values for the same users")
    if vb.mean() == 0:
        raise ValueError("mean(b) is 0: the relative lift is undefined")
    rng = np.random.default_rng(seed)
    lifts = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for idx in _boot_indices(va.shape[0], n_boot, rng):
            lifts.append(va[idx].mean(axis=1) / vb[idx].mean(axis=1) - 1.0)
    lift_all = np.concatenate(lifts)
    lift_all = np.where(np.isnan(lift_all), 0.0, lift_all)  # 0/0: both models zero on that resample
    with np.errstate(invalid="ignore"):
        lo, hi = np.quantile(lift_all, [alpha / 2, 1 - alpha / 2])
    # Interpolating between two +inf resamples gives NaN; the quantile is then +inf.
    lo, hi = (np.inf if np.isnan(q) else q for q in (lo, hi))
    return float(va.mean() / vb.mean() - 1.0), float(lo), float(hi)


# --------------------------------------------------------------------------------------------------
# Beyond accuracy
# --------------------------------------------------------------------------------------------------


def item_popularity(
    events: pl.DataFrame,
    n_items: int,
    label: str | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "song_id",
) -> np.ndarray:
    """Number of distinct users per song (int64 [n_items]), optionally only over ``label`` true rows."""
    ev = events if label is None else events.filter(pl.col(label).fill_null(False))
    deg = ev.select(user_col, item_col).unique().group_by(item_col).len()
    out = np.zeros(n_items, dtype=np.int64)
    out[deg[item_col].to_numpy()] = deg["len"].to_numpy()
    return out


def coverage(topk_idx: np.ndarray, n_items: int) -> float:
    """Catalogue coverage: share of the ``n_items`` songs that appear in at least one list."""
    idx = np.asarray(topk_idx).ravel()
    idx = idx[idx >= 0]
    return float(np.unique(idx).shape[0] / n_items)


def novelty(
    topk_idx: np.ndarray,
    item_popularity: np.ndarray,
    n_users: int | None = None,
    *,
    per_user: bool = False,
) -> float | np.ndarray:
    """Mean self-information ``-log2 p(i)`` of recommended songs (Zhou et al., PNAS 2010).

    ``p(i) = item_popularity[i] / n_users`` (Zhou et al. use the item degree over the number of
    users; pass the user degree, e.g. :func:`item_popularity`); without ``n_users``,
    ``p(i) = pop / sum(pop)``. Songs with zero popularity are counted as if seen once, so the value
    stays finite. Empty slots (``-1``) are ignored. Returns the mean over users, or the per-user
    array with ``per_user=True`` (for :func:`bootstrap_ci`).
    """
    pop = np.maximum(np.asarray(item_popularity, dtype=np.float64), 1.0)
    denom = float(n_users) if n_users is not None else float(pop.sum())
    info = -np.log2(np.minimum(pop / denom, 1.0))
    idx = np.asarray(topk_idx)
    valid = idx >= 0
    vals = np.where(valid, info[np.where(valid, idx, 0)], 0.0)
    cnt = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        user_mean = np.where(cnt > 0, vals.sum(axis=1) / np.maximum(cnt, 1), np.nan)
    if per_user:
        return user_mean
    return float(np.nanmean(user_mean)) if np.isfinite(user_mean).any() else float("nan")


def summarize(
    per_user: Mapping[str, np.ndarray],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    scalars: Mapping[str, float] | None = None,
    **labels: str | int | float,
) -> pl.DataFrame:
    """A tidy table ``metric, mean, ci_lo, ci_hi, n_users`` (+ one column per ``labels`` item).

    ``per_user`` maps metric names to per-user arrays (bootstrapped with :func:`bootstrap_ci`);
    ``scalars`` adds single numbers (e.g. coverage) with null intervals. ``labels`` such as
    ``model="itemcf", kind="discovery"`` become constant columns so tables can be stacked.
    """
    rows: list[dict[str, object]] = []
    for name, (mean, lo, hi) in bootstrap_cis(per_user, n_boot=n_boot, alpha=alpha, seed=seed).items():
        rows.append({"metric": name, "mean": mean, "ci_lo": lo, "ci_hi": hi, "n_users": len(per_user[name])})
    for name, value in (scalars or {}).items():
        rows.append({"metric": name, "mean": float(value), "ci_lo": None, "ci_hi": None, "n_users": None})
    schema = {
        "metric": pl.String(),
        "mean": pl.Float64(),
        "ci_lo": pl.Float64(),
        "ci_hi": pl.Float64(),
        "n_users": pl.Int64(),
    }
    df = pl.DataFrame(rows, schema=schema)
    if labels:
        df = df.with_columns([pl.lit(v).alias(k) for k, v in labels.items()]).select(
            *labels.keys(), *schema.keys()
        )
    return df
