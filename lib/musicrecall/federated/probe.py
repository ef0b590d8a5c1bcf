"""What party B's embeddings reveal about B's raw features: a linear probe (notebook 07).

The protocol sends B's user embeddings to A, never B's raw table; the audit (:mod:`.audit`) shows that no
raw value crosses in any of the encodings it knows. That is not the same as "A learns nothing about B's
features": an embedding is a learned function of them. The probe measures how much of each raw feature
a party holding the embeddings can reconstruct with the simplest attack, a ridge regression
``x_f ~ w_f . e + b_f`` fitted on some users whose features the attacker knows (e.g. its own employees, or
a leaked sample) and tested on held-out users: ``R^2`` per feature on the held-out users
(Alain & Bengio, *Understanding intermediate layers using linear classifier probes*, 2016; the
reconstruction attacks of split learning, e.g. Pasquini et al., *Unleashing the tiger*, CCS 2021, are
stronger). ``R^2 = 0`` is what the mean gives; the probe on random vectors of the same shape shows the
chance level at this sample size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def _ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ridge on standardised inputs: ``(mean_x, scale_x, weights, mean_y)``."""
    mx, sx = x.mean(0), x.std(0) + 1e-12
    z = (x - mx) / sx
    my = y.mean(0)
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - my))
    return mx, sx, w, my


def _ridge_predict(model: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    mx, sx, w, my = model
    return ((x - mx) / sx) @ w + my


def r2_per_column(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column (1 - SSE / SST around the held-out mean)."""
    sse = ((y - pred) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0)
    return 1.0 - sse / np.maximum(sst, 1e-12)


def linear_probe(emb: np.ndarray, raw: np.ndarray, *, test_share: float = 0.3, alphas: Sequence[float] = ALPHAS,
                 seed: int = 0) -> tuple[np.ndarray, float]:
    """``(R^2 per raw feature on held-out users, chosen alpha)``. Users are split at random into train and
    test; alpha is chosen on a validation quarter of the train users (mean R^2), then refitted on all of
    them. Rows of ``emb`` and ``raw`` are the same users."""
    emb, raw = np.asarray(emb, dtype=np.float64), np.asarray(raw, dtype=np.float64)
    if emb.shape[0] != raw.shape[0]:
        raise ValueError(f"{emb.shape[0]} embedding rows for {raw.shape[0]} raw feature rows")
    n = emb.shape[0]
    if n < 20:
        raise ValueError(f"a probe needs at least 20 users, got {n}")
    perm = np.random.default_rng([seed, 17]).permutation(n)
    n_test = max(int(round(test_share * n)), 5)
    test, train = perm[:n_test], perm[n_test:]
    n_val = max(len(train) // 4, 5)
    val, fit = train[:n_val], train[n_val:]
    scores = [r2_per_column(raw[val], _ridge_predict(_ridge_fit(emb[fit], raw[fit], a), emb[val])).mean() for a in alphas]
    alpha = float(alphas[int(np.argmax(scores))])
    model = _ridge_fit(emb[train], raw[train], alpha)
    return r2_per_column(raw[test], _ridge_predict(model, emb[test])), alpha


def probe_table(embeddings: Mapping[str, np.ndarray], raw: np.ndarray, feature_names: Sequence[str] | None = None,
                seed: int = 0, **kw) -> pl.DataFrame:
    """One row per (embedding source, raw feature): ``source, feature, r2, alpha`` (same user split for
    every source)."""
    names = list(feature_names) if feature_names is not None else [f"f{j:02d}" for j in range(raw.shape[1])]
    rows = []
    for source, emb in embeddings.items():
        r2, alpha = linear_probe(emb, raw, seed=seed, **kw)
        rows += [{"source": source, "feature": f, "r2": float(v), "alpha": alpha} for f, v in zip(names, r2, strict=True)]
    return pl.DataFrame(rows)


def probe_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per source: mean, median and max R^2 over features, and how many features have R^2 >= 0.5."""
    return (table.group_by("source", maintain_order=True)
            .agg(r2_mean=pl.col("r2").mean(), r2_median=pl.col("r2").median(), r2_max=pl.col("r2").max(),
                 features_r2_over_half=(pl.col("r2") >= 0.5).sum(), n_features=pl.len()))
