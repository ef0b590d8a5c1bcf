"""The simple baselines every model is read against, on the same split, and what the data lacks.

Every model notebook reports popularity, item-CF and PureSVD (and the previous-song Markov baseline where
the evaluation package has it) beside its models, evaluated on the *same* setup, and says plainly when a
model loses to item-CF (:func:`compare_to_baselines`, :func:`plain_verdicts`).

Item-CF can silently become popularity: when its co-occurrence units (listening sessions) hold one song
each, no pair co-occurs and every list is the popularity fallback. :func:`fit_item_cf` detects that and
counts co-occurrence within users' recent histories instead, saying so.

:func:`lacks` lists what a dataset does not have (ground truth, a placebo world, a clock, entry points, play
durations, audio, other listeners), each with the one line a notebook prints when it skips a cell
(:func:`skipped`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from musicrecall.evaluation import (
    EvalSetup,
    ItemCFRecall,
    PopularityRecall,
    Recommend,
    evaluate_recommender,
    paired_bootstrap_lift,
)
from musicrecall.models.puresvd import PureSVD

BASELINES = ("popularity", "item_cf", "pure_svd", "markov")


def _same_lists(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose lists are identical."""
    return float((a == b).all(axis=1).mean()) if a.shape[0] else 1.0


def fit_item_cf(setup: EvalSetup, k: int = 200, probe_users: int = 2000, **kwargs) -> tuple[ItemCFRecall, str]:
    """Item-CF on ``setup.fit``, with a note ("" when nothing had to change).

    Units are listening sessions when the log has them. When sessions give no co-occurrence (no song has a
    neighbour, or every probed user's list equals the popularity list), item-CF *is* popularity: it is
    refitted on users' recent histories (``unit="user"``) and the note says so.
    """
    icf = ItemCFRecall(**kwargs).fit(setup.fit, setup.n_items)
    users = setup.targets["all"].users[:probe_users]
    pop = PopularityRecall().fit(setup.fit, setup.n_items)
    same = _same_lists(icf.recommend(users, k), pop.recommend(users, k)) if len(users) else 0.0
    if icf.unit_used != "session" or (icf.sim is not None and icf.sim.nnz and same < 0.99):
        return icf, ""
    reason = ("no two songs share a session" if icf.sim is None or icf.sim.nnz == 0
              else f"{same:.0%} of users got exactly the popularity list")
    refit = ItemCFRecall(**{**kwargs, "unit": "user"}).fit(setup.fit, setup.n_items)
    return refit, (f"item-CF on sessions equals popularity ({reason}; sessions of one play?): co-occurrence is "
                   "counted within each user's recent plays instead")


@dataclass
class Baselines:
    """The fitted baselines: ``recommend`` per name (the evaluation harness's API), the PureSVD model (its
    vectors also feed the ANN comparison) and the notes to print, one line each."""

    recommend: dict[str, Recommend]
    svd: PureSVD
    notes: list[str] = field(default_factory=list)


def fit_baselines(setup: EvalSetup, factors: int = 64, seed: int = 0) -> Baselines:
    """Fit popularity, item-CF (:func:`fit_item_cf`), PureSVD and, where available, the Markov baseline."""
    notes: list[str] = []
    pop = PopularityRecall().fit(setup.fit, setup.n_items)
    icf, note = fit_item_cf(setup)
    if note:
        notes.append(note)
    with warnings.catch_warnings(record=True) as caught:  # PureSVD says when a tiny log clamps its factors
        warnings.simplefilter("always")
        svd = PureSVD(factors=factors, seed=seed).fit(setup.fit, setup.n_items)
    notes += [str(w.message) for w in caught]
    out: dict[str, Recommend] = {
        "popularity": pop.recommend, "item_cf": icf.recommend,
        "pure_svd": svd.recommend}
    markov = _markov(setup)
    if markov is not None:
        out["markov"] = markov
    return Baselines(out, svd, notes)


def _markov(setup: EvalSetup) -> Recommend | None:
    """The previous-song transition baseline, when :mod:`musicrecall.evaluation` provides one."""
    import musicrecall.evaluation as ev

    cls = getattr(ev, "MarkovRecall", None)
    if cls is None:
        return None
    return cls().fit(setup.fit, setup.n_items).recommend


def setup_digest(setup: EvalSetup) -> str:
    """Content hash of what a baseline sees of ``setup``: the fit frame, the targets and exclusions of each
    kind, the catalogue size and the popularity (two notebooks that build the same split get the same hash)."""
    h = hashlib.sha256(json.dumps([setup.stage, setup.n_items, setup.fit.columns, str(setup.fit.dtypes)]).encode())
    h.update(setup.fit.hash_rows(seed=0).to_numpy().tobytes())
    for kind in sorted(setup.targets):
        for csr in (setup.targets[kind], setup.exclude.get(kind)):
            for a in (() if csr is None else (csr.users, csr.indptr, csr.indices)):
                h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
            h.update(b"|")
    h.update(np.ascontiguousarray(setup.popularity, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def evaluate_baselines(setup: EvalSetup, n_boot: int = 1000, seed: int = 0, factors: int = 64, *,
                       fitted: Baselines | None = None, cache: bool = True
                       ) -> tuple[pl.DataFrame, dict[str, dict[str, dict[str, np.ndarray]]], list[str]]:
    """Fit (or take ``fitted``) and evaluate every baseline on ``setup``: (results table, per-user values, notes).

    With ``cache`` the results are kept under ``data/processed/`` by content (:func:`setup_digest`, the
    arguments and the source of the evaluation package, this module and PureSVD): notebooks 01 and 02 build
    the same test split, so 02 reads what 01 computed instead of fitting and ranking again.
    """
    path = _baseline_cache_path(setup, n_boot, seed, factors) if cache else None
    if path is not None and path.exists():
        return _load_baselines(path)
    base = fitted or fit_baselines(setup, factors=factors, seed=seed)
    res = {name: evaluate_recommender(name, rec, setup, n_boot=n_boot, seed=seed) for name, rec in base.recommend.items()}
    out = pl.concat([t for t, _ in res.values()]), {n: pu for n, (_, pu) in res.items()}, base.notes
    if path is not None:
        _save_baselines(path, *out)
    return out


def _baseline_cache_path(setup: EvalSetup, n_boot: int, seed: int, factors: int) -> Path:
    import musicrecall.evaluation
    import musicrecall.models.puresvd
    from musicrecall.cache import content_key, source_fingerprint
    from musicrecall.config import DATA_DIR

    code = source_fingerprint(musicrecall.evaluation, musicrecall.models.puresvd, sys.modules[__name__])
    return DATA_DIR / "processed" / f"baselines-{content_key(code, setup_digest(setup), n_boot, seed, factors)}"


def _save_baselines(path: Path, table: pl.DataFrame, per_user: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                    notes: list[str]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    table.write_parquet(tmp / "table.parquet")
    arrays = {f"{m}/{k}/{q}": v for m, kinds in per_user.items() for k, qs in kinds.items() for q, v in qs.items()}
    np.savez(tmp / "per_user.npz", **arrays)
    (tmp / "notes.json").write_text(json.dumps(notes))
    try:
        tmp.rename(path)
    except OSError:  # another process wrote it first: same content
        shutil.rmtree(tmp, ignore_errors=True)


def _load_baselines(path: Path) -> tuple[pl.DataFrame, dict[str, dict[str, dict[str, np.ndarray]]], list[str]]:
    per_user: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with np.load(path / "per_user.npz") as z:
        for key in z.files:
            m, k, q = key.split("/")
            per_user.setdefault(m, {}).setdefault(k, {})[q] = z[key]
    return pl.read_parquet(path / "table.parquet"), per_user, json.loads((path / "notes.json").read_text())


def compare_to_baselines(per_user: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], models: list[str],
                         baselines: list[str], metric: str = "hr@200", kind: str = "all", n_boot: int = 1000,
                         seed: int = 0) -> pl.DataFrame:
    """Paired relative lift of each model over each baseline (same users): ``model, baseline, lift, ci_lo,
    ci_hi, reading`` with ``reading`` "beats", "loses to" (CI entirely on one side of 0) or "ties with"."""
    rows = []
    for m in models:
        for b in baselines:
            if kind not in per_user.get(m, {}) or kind not in per_user.get(b, {}):
                continue
            a, c = per_user[m][kind][metric], per_user[b][kind][metric]
            if float(np.mean(c)) == 0.0:
                continue  # a relative lift over zero is undefined
            lift, lo, hi = paired_bootstrap_lift(a, c, n_boot=n_boot, seed=seed)
            reading = "beats" if lo > 0 else "loses to" if hi < 0 else "ties with"
            rows.append({"model": m, "baseline": b, "metric": metric, "kind": kind, "lift": lift, "ci_lo": lo,
                         "ci_hi": hi, "reading": reading})
    schema = {"model": pl.String, "baseline": pl.String, "metric": pl.String, "kind": pl.String, "lift": pl.Float64,
              "ci_lo": pl.Float64, "ci_hi": pl.Float64, "reading": pl.String}
    return pl.DataFrame(rows, schema=schema)


def plain_verdicts(comparison: pl.DataFrame, against: str = "item_cf") -> list[str]:
    """One sentence per model that loses to (or only ties with) ``against``, e.g. "kg_song2vec LOSES to
    item_cf on hr@200 (all): -12.3% [-15.0%, -9.1%]"."""
    out = []
    for r in comparison.filter(pl.col("baseline") == against).iter_rows(named=True):
        if r["reading"] == "beats":
            continue
        word = "LOSES to" if r["reading"] == "loses to" else "does not beat"
        out.append(f"{r['model']} {word} {against} on {r['metric']} ({r['kind']}): {r['lift']:+.1%} "
                   f"[{r['ci_lo']:+.1%}, {r['ci_hi']:+.1%}]")
    return out


# --------------------------------------------------------------------------------------------------
# What a dataset lacks
# --------------------------------------------------------------------------------------------------


def lacks(ds, events: pl.DataFrame | None = None) -> dict[str, str]:
    """What ``ds`` (a :class:`musicrecall.data.Dataset`) does not have, each with a one-line reason.

    Keys: ``truth`` (ground-truth interests, noise flags, styles), ``placebo`` (a world with the effect
    switched off), ``audio``, ``clock`` (timestamps: order-only data), ``entries`` (entry points),
    ``durations`` (play durations), ``others`` (a second listener). ``events`` defaults to ``ds.events``.
    """
    from musicrecall.evaluation import detect_time_kind

    if events is None and not ds.raw_log_loaded:
        raise ValueError(f"{ds.name}: the raw log was not loaded (prepare(..., raw_log=False)); "
                         "pass events=prep.clean.events")
    ev = ds.events if events is None else events
    out: dict[str, str] = {}
    if not ds.is_world:
        out["truth"] = "no ground truth (interests, noise flags, latent styles): only the simulated world has it"
        out["placebo"] = ("no placebo world: real data cannot switch an effect off, so a claim can at best be "
                          "'not falsified'")
        out["audio"] = "no audio for this catalogue (the world renders its songs; real runs use notebook 05's corpus)"
    if detect_time_kind(ev) == "ordinal":
        out["clock"] = "order only, no clock: days, hours and time gaps do not exist in this log"
    if "entry" not in ev.columns or ev["entry"].null_count() == ev.height:
        out["entries"] = "no entry points in this log (which screen a play started from)"
    if "play_ms" not in ev.columns or ev["play_ms"].null_count() == ev.height:
        out["durations"] = "no play durations: skips cannot be told from full plays (every play counts as full)"
    if ev["user_id"].n_unique() < 2:
        out["others"] = "one listener: collaborative models learn from this one person only"
    return out


def skipped(lacking: Mapping[str, str], *needs: str, what: str = "this cell") -> bool:
    """Print one line and return True when the data lacks any of ``needs`` (keys of :func:`lacks`)."""
    for n in needs:
        if n in lacking:
            print(f"skipped {what}: {lacking[n]}")
            return True
    return False


def first_reason(lacking: Mapping[str, str], *needs: str) -> str:
    """The reason of the first missing need, or ""."""
    return next((lacking[n] for n in needs if n in lacking), "")

