"""LightGBM training of the rankers (Ke et al., *LightGBM*, NeurIPS 2017; LambdaRank: Burges,
MSR-TR-2010-82): parameters and threads, one fit, and the seeded with/without-audio run."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from musicrecall.config import n_threads
from musicrecall.ranking.features import CATEGORICAL, feature_columns
from musicrecall.ranking.samples import StageSamples


def lgb_threads(n_rows: int, rows_per_thread: int = 50_000) -> int:
    """Threads for one LightGBM fit: :func:`musicrecall.config.n_threads`, but one per ``rows_per_thread``
    rows at most. On small per-entry samples OpenMP start-up and spinning cost more than they give
    (measured 7x slower with 2 threads than 1 on 1,000 rows on a busy 2-core machine)."""
    return max(1, min(n_threads(), -(-n_rows // rows_per_thread)))


def lgb_params(objective: str = "binary", seed: int = 0, n_rows: int | None = None, **overrides) -> dict:
    """LightGBM parameters; the thread count comes from :func:`musicrecall.config.n_threads` (capped by
    :func:`lgb_threads` when ``n_rows`` is given)."""
    params = {"objective": objective, "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 40,
              "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
              "seed": seed, "deterministic": True, "force_col_wise": True, "verbose": -1,
              "num_threads": n_threads() if n_rows is None else lgb_threads(n_rows)}
    if objective == "lambdarank":
        params.update({"metric": "ndcg", "eval_at": [10], "lambdarank_truncation_level": 20})
    params.update(overrides)
    return params


def feature_matrix(df: pl.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """The ``cols`` of ``df`` as a float32 matrix (LightGBM input)."""
    return df.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy().astype(np.float32)


@dataclass
class Ranker:
    """A trained LightGBM booster and its feature columns."""

    booster: object
    features: list[str]

    def predict(self, df: pl.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(feature_matrix(df, self.features)), dtype=np.float64)

    def importance(self) -> pl.DataFrame:
        """Gain importance per feature (share of the total)."""
        gain = np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=np.float64)
        return pl.DataFrame({"feature": self.features, "gain_share": gain / max(gain.sum(), 1e-12)}
                            ).sort("gain_share", descending=True)


def fit_ranker(df: pl.DataFrame, label: str, features: Sequence[str], objective: str = "binary",
               rounds: int = 150, seed: int = 0, group_col: str | None = None) -> Ranker:
    """Train LightGBM; ``objective="lambdarank"`` needs ``group_col`` (rows of a group contiguous)."""
    features = list(features)
    groups = None
    if group_col is not None:
        df = df.sort(group_col, maintain_order=True)
        groups = df.group_by(group_col, maintain_order=True).len()["len"].to_numpy()
    params = lgb_params(objective, seed, n_rows=df.height)
    ds = lgb_dataset(feature_matrix(df, features), df[label].to_numpy(), features, params, groups)
    return Ranker(lgb.train(params, ds, num_boost_round=rounds), features)


@dataclass
class RankingRun:
    """Test-window predictions of the ranking models, keyed ``(model, arm)``: arm ``True`` = with the
    audio group, ``False`` = without, ``"aa"`` = without, trained with other seeds (the A/A control).
    Each value is [R, n], one row per training seed (``seeds[(model, arm)]``); ``rankers`` keeps the
    first seed's booster."""

    impressions: dict[tuple[str, object], np.ndarray]
    candidates: dict[tuple[str, object], np.ndarray]
    rankers: dict[tuple[str, object], Ranker]
    seeds: dict[tuple[str, object], list[int]]


def arm_seeds(seed: int, n_seeds: int) -> dict[object, list[int]]:
    """Training seeds per arm: with and without audio share ``seed .. seed+R-1`` (paired by index); the
    A/A arm (without audio) takes the next ``R`` seeds, so it differs from the no-audio arm *only* by
    LightGBM's random draws (bagging, feature fraction)."""
    base = list(range(seed, seed + n_seeds))
    return {True: base, False: base, "aa": list(range(seed + n_seeds, seed + 2 * n_seeds))}


def lgb_dataset(x: np.ndarray, y: np.ndarray, features: Sequence[str], params: dict, groups: np.ndarray | None = None):
    """A constructed LightGBM Dataset (binned once, then shared by every seed and arm that trains on it)."""
    cats = [c for c in features if c in CATEGORICAL]
    ds = lgb.Dataset(x, label=np.asarray(y, dtype=np.float64), feature_name=list(features),
                     categorical_feature=cats or "auto", free_raw_data=False, params=params)
    if groups is not None:
        ds.set_group(groups)
    return ds.construct()


def fit_all(jobs: list[tuple], rounds: int) -> list[tuple]:
    """``jobs`` = ``(dataset, x_test, objective, seed)``; returns ``(booster, test predictions)`` per job.
    Independent fits run in threads (LightGBM releases the GIL), as many at once as
    :func:`musicrecall.config.n_threads` allows given each fit's own thread count; the results do not
    depend on the number of threads (every booster is deterministic and seeded)."""
    def fit(job: tuple) -> tuple:
        ds, x_test, objective, s = job
        booster = lgb.train(lgb_params(objective, s, n_rows=ds.num_data()), ds, num_boost_round=rounds)
        return booster, np.asarray(booster.predict(x_test), dtype=np.float64)

    per_fit = max((lgb_threads(j[0].num_data()) for j in jobs), default=1)
    workers = max(1, n_threads() // per_fit)
    if workers == 1:
        return [fit(j) for j in jobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fit, jobs))


def run_ranking(train: StageSamples, test: StageSamples, rounds: int = 150, seed: int = 0, n_seeds: int = 1,
                seeded: Sequence[str] = ("collect",), labels: Sequence[str] = ("full_play", "collect"),
                cand_models: Sequence[str] = ("pointwise", "lambdarank", "collect"), cand_seeds: int | None = None
                ) -> RankingRun:
    """Train on the validation stage, predict the test stage, with and without the audio group.

    Impressions: one binary model per entry point and label (``full_play``, ``collect``). Candidates:
    point-wise binary on full play (``pointwise``), LambdaRank on full play (groups = users) and binary on
    collect (``collect``). Models named in ``seeded`` (labels / candidate models) are trained with
    ``n_seeds`` seeds per arm plus the A/A arm (:func:`arm_seeds`; seeded candidate models with
    ``cand_seeds``, default ``n_seeds``: a fit on all candidates costs ~10 per-entry fits); the others with
    ``seed`` only, with and without audio. Each training matrix is binned once per label and shared by
    seeds and arms; the fits run in parallel within the thread budget (:func:`fit_all`).
    """
    one = {True: [seed], False: [seed]}
    arms = {m: arm_seeds(seed, n_seeds) if m in seeded else one for m in labels}
    arms |= {f"cand:{m}": arm_seeds(seed, cand_seeds or n_seeds) if m in seeded else one for m in cand_models}
    imp, cand, rankers, seeds = {}, {}, {}, {}
    tasks = []  # (predictions [R, n], test mask or None, ranker key, dataset, x_test, features, objective, seeds)
    entries = sorted(set(train.impressions["entry"].unique().to_list()) & set(test.impressions["entry"].unique().to_list()))
    # no audio group in the samples (a dataset without audio): both arms would fit the same features with the
    # same seeds, i.e. the same deterministic boosters, so the no-audio fits stand for the audio arm too
    no_audio_group = all(feature_columns(f, True) == feature_columns(f, False) for f in (train.impressions, train.candidates))
    for audio in (False,) if no_audio_group else (True, False):
        cols = [c for c in feature_columns(train.impressions, audio) if c != "entry_code"]
        for entry in entries:
            tr = train.impressions.filter(pl.col("entry") == entry)
            mask = (test.impressions["entry"] == entry).to_numpy()
            x_tr, x_te = feature_matrix(tr, cols), feature_matrix(test.impressions.filter(pl.Series(mask)), cols)
            for label in labels:
                ds = None
                for arm, ss in ((a, s) for a, s in arms[label].items() if (a is True) == audio):
                    seeds[(label, arm)] = ss
                    pred = imp.setdefault((label, arm), np.full((len(ss), test.impressions.height), np.nan))
                    if 0 < tr[label].sum() < tr.height:
                        ds = ds or lgb_dataset(x_tr, tr[label].to_numpy(), cols, lgb_params("binary", ss[0], tr.height))
                        tasks.append((pred, mask, (f"{label}@{entry}", arm), ds, x_te, cols, "binary", ss))
                    else:  # a label without both classes: no model, a constant score
                        pred[:, mask] = float(tr[label].mean()) if tr.height else 0.0
        ccols = [c for c in feature_columns(train.candidates, audio) if c != "cand_rank"] + ["cand_rank"]
        ctrain = train.candidates.sort("user_id", maintain_order=True)  # LambdaRank: a user's rows contiguous
        x_tr, x_te = feature_matrix(ctrain, ccols), feature_matrix(test.candidates, ccols)
        groups = ctrain.group_by("user_id", maintain_order=True).len()["len"].to_numpy()
        dsets = {}
        for name in cand_models:
            label, objective = {"pointwise": ("full_play", "binary"), "lambdarank": ("full_play", "lambdarank"),
                                "collect": ("collect", "binary")}[name]
            for arm, ss in ((a, s) for a, s in arms[f"cand:{name}"].items() if (a is True) == audio):
                if label not in dsets:
                    dsets[label] = lgb_dataset(x_tr, ctrain[label].to_numpy(), ccols, lgb_params(objective, ss[0], ctrain.height), groups)
                seeds[(name, arm)] = ss
                cand[(name, arm)] = np.empty((len(ss), test.candidates.height))
                tasks.append((cand[(name, arm)], None, (name, arm), dsets[label], x_te, ccols, objective, ss))
    jobs = [(t, r, s) for t in tasks for r, s in enumerate(t[-1])]
    for small in (True, False):  # per-entry fits (one thread each) apart from the fits on all candidates
        part = [j for j in jobs if (j[0][1] is not None) == small]
        for (t, r, _), (booster, p) in zip(part, fit_all([(t[3], t[4], t[6], s) for t, _, s in part], rounds), strict=True):
            if t[1] is None:
                t[0][r] = p
            else:
                t[0][r, t[1]] = p
            if r == 0:
                rankers[t[2]] = Ranker(booster, t[5])
    if no_audio_group:
        for table in (imp, cand, rankers, seeds):
            table.update({(k[0], True): v for k, v in list(table.items()) if k[1] is False})
    return RankingRun(imp, cand, rankers, seeds)
