"""Statistics of ranking models: user-bootstrapped AUCs (one vectorised weighted Mann-Whitney pass per
score), differences of seeded arms with the training-seed noise in the interval, per-user re-ranking
metrics and paired lifts. Used by :mod:`musicrecall.ranking` (notebook 08, claim C7)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from .metrics import paired_bootstrap_lift


def _auc_groups(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Ordered score groups for a Mann-Whitney AUC: ties share a group, and runs of groups that hold only
    the majority class are merged (pairs inside them never count), so a bootstrap works on at most
    ``2 x minority + 1`` groups. Uses ``AUC(y, s) = AUC(1 - y, -s)`` to make the minority the positives.
    Returns ``(group of each sample, labels, n_groups)``."""
    y, s = np.asarray(y, dtype=np.float64), np.asarray(s, dtype=np.float64)
    if y.mean() > 0.5:
        y, s = 1.0 - y, -s
    _, g = np.unique(s, return_inverse=True)
    pos = np.bincount(g, weights=y) > 0
    start = pos.copy()
    start[1:] |= pos[:-1]
    start[0] = True
    new = np.cumsum(start) - 1
    return new[g], y, int(new[-1]) + 1


def _auc_under_weights(g: np.ndarray, y: np.ndarray, n_groups: int, uinv: np.ndarray, w: np.ndarray,
                       chunk_cells: int = 4_000_000) -> np.ndarray:
    """Weighted AUC (ties count one half) under each row of user weights ``w`` [B, n_users]: every sample
    weighs its user's weight. Vectorised as sparse (user x group) counts times the weight matrix."""
    shape = (w.shape[1], n_groups)
    ap = sp.csc_matrix((y, (uinv, g)), shape=shape).T.tocsr()
    an = sp.csc_matrix((1.0 - y, (uinv, g)), shape=shape).T.tocsr()
    out = np.empty(w.shape[0])
    step = max(1, chunk_cells // max(n_groups, 1))
    for b0 in range(0, w.shape[0], step):
        wt = w[b0:b0 + step].T
        wp, wn = ap @ wt, an @ wt  # [groups, B]
        below = np.cumsum(wn, axis=0) - wn
        den = wp.sum(0) * wn.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b0:b0 + step] = np.where(den > 0, (wp * (below + 0.5 * wn)).sum(0) / den, np.nan)
    return out


def boot_weights(users: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(user index of each sample, weights [1 + n_boot, n_users])``: row 0 is all ones (the point
    estimate), the others count how often each user is drawn in a bootstrap resample of the users."""
    _, uinv = np.unique(users, return_inverse=True)
    n_u = int(uinv.max()) + 1 if len(uinv) else 0
    draws = np.random.default_rng(seed).integers(0, n_u, (n_boot, n_u))
    counts = np.bincount((draws + n_u * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n_u)
    return uinv, np.vstack([np.ones((1, n_u)), counts.reshape(n_boot, n_u)])


def boot_aucs(y: np.ndarray, scores: np.ndarray, users: np.ndarray, n_boot: int = 1000, seed: int = 0
              ) -> np.ndarray:
    """AUC of each row of ``scores`` [R, n] (e.g. R training seeds) on the full sample and on ``n_boot``
    resamples of the users (the same resamples for every row, so differences are paired): [R, 1 + n_boot]."""
    uinv, w = boot_weights(users, n_boot, seed)
    return np.stack([_auc_under_weights(*_auc_groups(y, s), uinv, w) for s in np.atleast_2d(scores)])


def seeded_diff(a: np.ndarray, b: np.ndarray, z: float = 1.96) -> dict[str, float]:
    """Difference of two arms from their :func:`boot_aucs` tables ``a``, ``b`` [R, 1 + n_boot] (row r =
    training seed r of each arm). ``diff`` = mean over seeds of the per-seed difference; ``boot_lo/hi`` =
    95% percentile interval over user resamples (test-sample noise only); ``sd_seed`` = standard deviation
    of the per-seed differences (training noise); ``lo/hi`` widen the bootstrap half-widths by the seed
    noise of the mean, ``sqrt(half^2 + (z sd_seed)^2 / R)`` (Bouthillier et al., *Accounting for Variance
    in Machine Learning Benchmarks*, MLSys 2021). With one seed ``lo/hi`` equal the bootstrap interval."""
    d = np.atleast_2d(a) - np.atleast_2d(b)
    r = d.shape[0]
    diff = float(d[:, 0].mean())
    blo, bhi = np.nanquantile(d[:, 1:].mean(axis=0), [0.025, 0.975])
    sd = float(d[:, 0].std(ddof=1)) if r > 1 else 0.0
    extra = z * sd / np.sqrt(r)
    return {"diff": diff, "lo": diff - float(np.hypot(diff - blo, extra)), "hi": diff + float(np.hypot(bhi - diff, extra)),
            "boot_lo": float(blo), "boot_hi": float(bhi), "sd_seed": sd}


def auc_ci(y: np.ndarray, scores: Mapping[str, np.ndarray], users: np.ndarray, n_boot: int = 1000,
           seed: int = 0, pairs: Sequence[tuple[str, str]] = ()) -> tuple[dict, dict]:
    """AUC of each score with a bootstrap over users (a user's samples stay together), and for each
    ``(a, b)`` in ``pairs`` the paired difference ``AUC_a - AUC_b`` on the same resamples.

    Returns ``({name: (auc, lo, hi)}, {(a, b): (diff, lo, hi)})``.
    """
    reps = {n: boot_aucs(y, np.asarray(s), users, n_boot, seed)[0] for n, s in scores.items()}
    q = lambda v: tuple(np.nanquantile(v[1:], [0.025, 0.975]).tolist())  # noqa: E731
    single = {n: (float(v[0]), *q(v)) for n, v in reps.items()}
    diffs = {(a, b): (float(reps[a][0] - reps[b][0]), *q(reps[a] - reps[b])) for a, b in pairs}
    return single, diffs


def per_user_ranking(df: pl.DataFrame, score: np.ndarray, known: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     k: int = 10) -> pl.DataFrame:
    """Per user of a candidate frame re-ranked by ``score``: ``ndcg`` (NDCG@k on full plays; users with a
    full-played candidate), ``collect_hit`` (a collected song in the top k; users with a collected
    candidate) and ``surprise`` (share of the top k outside the user's known genres, ``known(users,
    songs) -> bool``). Missing values are NaN."""
    d = df.select("user_id", "song_id", "full_play", "collect").with_columns(score=pl.Series(score))
    d = d.sort(["user_id", "score"], descending=[False, True]).with_columns(
        pos=pl.int_range(pl.len()).over("user_id"))
    top = d.filter(pl.col("pos") < k)
    kn = known(top["user_id"].to_numpy(), top["song_id"].to_numpy())
    top = top.with_columns(disc=pl.col("full_play") / (pl.col("pos") + 2).log(2), outside=pl.Series(1.0 - kn))
    got = top.group_by("user_id").agg(dcg=pl.col("disc").sum(), chit=pl.col("collect").max(),
                                      surprise=pl.col("outside").mean())
    ideal = d.group_by("user_id").agg(n_rel=pl.col("full_play").sum(), n_col=pl.col("collect").sum())
    out = got.join(ideal, on="user_id").with_columns(
        idcg=pl.col("n_rel").clip(upper_bound=k).map_elements(lambda n: float(sum(1 / np.log2(np.arange(2, n + 2)))),
                                                              return_dtype=pl.Float64))
    return out.sort("user_id").select(
        "user_id", ndcg=pl.when(pl.col("n_rel") > 0).then(pl.col("dcg") / pl.col("idcg")),
        collect_hit=pl.when(pl.col("n_col") > 0).then(pl.col("chit").cast(pl.Float64)), surprise="surprise")


def paired_lift(per_user: Mapping[str, pl.DataFrame], a: str, b: str, metric: str, n_boot: int = 1000,
                seed: int = 0, z: float = 1.96) -> tuple[float, float, float]:
    """Relative lift of ranker ``a`` over ``b`` on ``metric`` (same users, paired bootstrap over users of
    the per-user values averaged over seeds); with several seeds the interval is widened by the seed
    spread of the per-seed lifts as in :func:`seeded_diff`."""
    j = per_user[a].select("user_id", "rep", pl.col(metric).alias("a")).join(
        per_user[b].select("user_id", "rep", pl.col(metric).alias("b")), on=["user_id", "rep"]).drop_nulls()
    if j.height == 0 or j["b"].sum() == 0:
        return (float("nan"),) * 3
    m = j.group_by("user_id").agg(pl.col("a", "b").mean()).sort("user_id")  # sorted: the bootstrap draws rows
    lift, lo, hi = paired_bootstrap_lift(m["a"].to_numpy(), m["b"].to_numpy(), n_boot=n_boot, seed=seed)
    per_rep = j.group_by("rep").agg(lift=pl.col("a").mean() / pl.col("b").mean() - 1.0)["lift"].to_numpy()
    extra = z * float(per_rep.std(ddof=1)) / np.sqrt(len(per_rep)) if len(per_rep) > 1 else 0.0
    return lift, lift - float(np.hypot(lift - lo, extra)), lift + float(np.hypot(hi - lift, extra))
