"""Party A's training and evaluation recipes for notebook 07 (split or centralised, DSSM or MMoE).

Every model trains with :func:`musicrecall.training.train` (seeding, early stopping on validation
HitRate@200, checkpoints keyed by a content hash); the federated ones differ only by their user tower
(:class:`~musicrecall.federated.split.RemoteUserTower`), whose forward/backward cross the channel.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from musicrecall.cache import content_key
from musicrecall.config import threads as config_threads
from musicrecall.evaluation import EvalSetup, Split, evaluate_lists, evaluate_scores, paired_bootstrap_lift
from musicrecall.evaluation.metrics import bootstrap_ci
from musicrecall.federated.coldstart import EmbeddingScorer, batches, duration_at_k, per_user_auc, play_rows
from musicrecall.models.losses import NegativeSampler
from musicrecall.training import History, TrainConfig, train


@dataclass(frozen=True)
class RunConfig:
    """Hyper-parameters shared by the DSSM and MMoE runs."""

    dim: int = 32
    hidden: int = 64
    epochs: int = 4
    lr: float = 3e-3
    batch_size: int = 1024
    n_neg: int = 256
    max_per_user: int = 30
    patience: int = 3  # validations without a gain; issue 15: >= 3 (measured against 2 in the fed notes)
    n_experts: int = 4
    seed: int = 0
    # validations of early stopping per pass over the training plays: the loop's "epoch" is this fraction of
    # a pass (``epochs`` caps passes). 2: patience waits 1.5 passes instead of 3 after the best; measured on
    # the small world (notebook 07's markdown), the same best weights at 22-36% less CPU a run
    validations_per_pass: int = 2

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs * self.validations_per_pass, lr=self.lr, patience=self.patience,
                           seed=self.seed, progress=False)


def threads(n: int) -> AbstractContextManager[int]:
    """Run a block with ``n`` threads (:func:`musicrecall.config.threads`), then restore the count.

    Split learning is a ping-pong between two processes: idle OpenMP workers of party A spin while
    party B computes, and on a shared machine they starve B (measured 30x slower at 2 threads on 2
    busy cores). The towers are small, so party A runs its side single-threaded.
    """
    return config_threads(n)


def validator(model: torch.nn.Module, setup: EvalSetup, user_input, aligned: dict[int, int], k: int = 200):
    """``validate(model)``: mean HitRate@k on the validation window for the aligned validation users."""
    t = setup.targets["all"]
    idx = np.asarray([aligned[int(u)] for u in t.users], dtype=np.int64)

    def validate(m: torch.nn.Module) -> float:
        u = m.user_vecs(user_input(idx)).detach()
        return float(evaluate_scores(u, m.item_tower.all_items().detach(), t, ks=(k,))[f"hr@{k}"].mean())

    return validate


def fit_model(model: torch.nn.Module, events: pl.DataFrame, aligned: dict[int, int], user_input,
              sampler: NegativeSampler, rc: RunConfig, validate, name: str, cache_key: str | None,
              multitask: bool = False) -> History:
    """Train a DSSM (full plays) or an MMoE (all plays, three tasks) on aligned users' plays."""
    rows = play_rows(events, aligned, rc.max_per_user, rc.seed, full_plays_only=not multitask)
    gen = batches(rows, rc.batch_size, rc.seed, user_input, parts=rc.validations_per_pass)
    g = torch.Generator().manual_seed(rc.seed)
    if multitask:
        def loss_fn(m, b):
            return m.loss(b["user"], b["rows"], b["song_id"], b["full_play"], b["collect"], b["play_ms"], sampler,
                          rc.n_neg, generator=g)
    else:
        def loss_fn(m, b):
            return m.loss(b["user"], b["rows"], b["song_id"], sampler, rc.n_neg)
    n_batches = -(-rows.height // rc.batch_size) // rc.validations_per_pass  # per loop epoch (the bar)
    return train(model, gen, loss_fn, rc.train_config(), validate, name=name, cache_key=cache_key,
                 n_batches=n_batches)


def model_scorer(model: torch.nn.Module, user_input, aligned: dict[int, int],
                 fallback: EmbeddingScorer) -> EmbeddingScorer:
    """Serve a trained two-tower model (aligned users) with ``fallback`` for users B does not know."""
    model.eval()
    with torch.no_grad():
        items = model.item_tower.all_items().numpy()

    def user_vecs(idx: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.user_vecs(user_input(idx)).numpy()

    return EmbeddingScorer(user_vecs, items, aligned, fallback)


def cold_report(name: str, scorer: EmbeddingScorer, setup: EvalSetup, window: pl.DataFrame, k: int = 200,
                n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-user HR@k, full-play AUC and listening duration@k of the cold users of ``setup``.

    HR@k is :func:`~musicrecall.evaluation.evaluate_recommender`'s ``all`` kind (full ranking, no
    exclusion), computed on the same top-k lists the duration measure reads: one ranking of the
    catalogue per report instead of four (the other kinds were never read here)."""
    t = setup.targets["all"]
    users = t.users
    lists = scorer.recommend(users, k, setup.exclude["all"])
    hr = evaluate_lists(lists, t, (k,), exclude=setup.exclude["all"])[f"hr@{k}"]
    if setup.exclude["all"] is not None:  # the duration measure ranks the whole catalogue
        lists = scorer.recommend(users, k, None)
    plays = window.filter(pl.col("user_id").is_in(users))
    auc_users, auc = per_user_auc(plays["user_id"].to_numpy(),
                                  scorer.pair_scores(plays["user_id"].to_numpy(), plays["song_id"].to_numpy()),
                                  plays["full_play"].fill_null(False).to_numpy())
    return {"name": name, "users": users, f"hr@{k}": hr, "auc_users": auc_users,
            "auc": auc, "duration": duration_at_k(lists, users, plays), "k": k}


def summary_table(reports: list[dict[str, Any] | list[dict[str, Any]]], n_boot: int = 1000, seed: int = 0,
                  world: str = "signal") -> pl.DataFrame:
    """Mean and 95% bootstrap CI of each measure per model. An entry that is a list holds one model's
    reports over training seeds: its per-user values are averaged over the seeds and the interval is
    widened by the seed spread (:func:`musicrecall.sequences.seeded_level`)."""
    from musicrecall.sequences import seeded_level

    rows = []
    for entry in reports:
        reps = entry if isinstance(entry, list) else [entry]
        r = reps[0]
        for m in (f"hr@{r['k']}", "auc", "duration"):
            if len(r[m]):
                if len(reps) > 1:
                    s = seeded_level([x[m] for x in reps], n_boot=n_boot, seed=seed)
                    mean, lo, hi = s["mean"], s["lo"], s["hi"]
                else:
                    mean, lo, hi = bootstrap_ci(r[m], n_boot=n_boot, seed=seed)
                rows.append({"world": world, "model": r["name"], "metric": m, "mean": mean, "ci_lo": lo,
                             "ci_hi": hi, "n_users": len(r[m]), "n_seeds": len(reps)})
    return pl.DataFrame(rows)


def report_lift(a: dict[str, Any], b: dict[str, Any], metric: str, n_boot: int = 1000, seed: int = 0
                ) -> tuple[float, float, float]:
    """Paired relative lift of model ``a`` over ``b`` on ``metric`` (same users)."""
    if metric == "auc":
        common, ia, ib = np.intersect1d(a["auc_users"], b["auc_users"], return_indices=True)
        return paired_bootstrap_lift(a["auc"][ia], b["auc"][ib], n_boot=n_boot, seed=seed)
    return paired_bootstrap_lift(a[metric], b[metric], n_boot=n_boot, seed=seed)


def run_key(*parts: Any, rc: RunConfig) -> str:
    """Content hash of a run (data key, model name, settings, the code of models and protocol)."""
    from musicrecall import federated
    from musicrecall.cache import source_fingerprint
    from musicrecall.models import dssm, losses, mmoe

    return content_key(*parts, asdict(rc), source_fingerprint(federated, dssm, mmoe, losses))


@dataclass
class ColdStartData:
    """Party A's data for one world: events, the valid/test setups and the cold-start test setup."""

    ds: Any
    events: pl.DataFrame
    valid: EvalSetup
    test: EvalSetup
    cold: EvalSetup
    codes: np.ndarray
    cards: list[int]
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)  # derived setups, built once per world


def load_cold_start(dataset: str, profile: str, seed: int, max_plays: int, effects=None, *, prep=None,
                    split: Split | None = None) -> ColdStartData:
    """Prepare a world and build the setups; cold users have at most ``max_plays`` fit-window plays.

    ``prep`` and ``split``: the prepared data and the :class:`musicrecall.evaluation.Split` of its cleaned
    plays that a caller already holds (notebook 08): reused, not loaded and cut again (each copy of the log
    is ~1.8 GB at profile medium, and the setups stay cached for the notebook's lifetime)."""
    from musicrecall.data import prepare

    if prep is None:
        prep = prepare(dataset, profile=profile, seed=seed, effects=effects, raw_log=False)  # the cleaned plays
    ds, ev = prep.dataset, prep.clean.events
    return ColdStartData(ds, ev, *eval_setups(ev, ds.items, max_plays, split=split))


_SETUPS: dict[str, tuple] = {}  # the last content key's setups (one entry: the worlds of one notebook)


def frames_key(*frames: pl.DataFrame) -> str:
    """Content hash of data frames: their schemas and the hash of every row, in order."""
    h = hashlib.sha256()
    for f in frames:
        h.update(repr(f.schema).encode())
        h.update(f.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:16]


def eval_setups(ev: pl.DataFrame, items: pl.DataFrame, max_plays: int, split: Split | None = None
                ) -> tuple[EvalSetup, EvalSetup, EvalSetup, np.ndarray, list[int], dict[Any, Any]]:
    """``(valid, test, cold, codes, cards, memo)`` of these plays and songs, built once per content: the
    placebo world differs from the signal world only by party B's table, so it reuses these (~5 s).
    ``split``: a split of ``ev`` (with the default windows) the caller holds, used instead of a new one."""
    from musicrecall.evaluation import make_eval_setup
    from musicrecall.federated.coldstart import cold_users
    from musicrecall.models.dssm import item_feature_matrix

    key = content_key(frames_key(ev, items), max_plays)
    if key not in _SETUPS or (split is not None and _SETUPS[key][0].split is not split):
        n = items.height
        # one split and one test fit window for the three (at medium each copy of the log is ~1.8 GB)
        valid = make_eval_setup(ev, n, stage="valid", split="auto" if split is None else split)
        test = make_eval_setup(ev, n, stage="test", split=valid.split)
        cold = make_eval_setup(ev, n, stage="test", users=cold_users(test.fit, test.targets["all"].users, max_plays),
                               split=valid.split)
        _SETUPS.clear()
        _SETUPS[key] = (valid, test, cold, *item_feature_matrix(items), {})
    return _SETUPS[key]


@dataclass
class Federation:
    """A running party B, the auditor watching the channel, and the PSI alignment (user_id -> index)."""

    party_b: Any
    auditor: Any
    aligned: dict[int, int]
    b_path: Any
    psi_seconds: float

    @property
    def endpoint(self):
        return self.party_b.endpoint


def open_federation(data: ColdStartData, coverage: float, n_extra: int, seed: int, mode: str = "process",
                    aligned: dict[int, int] | None = None) -> Federation:
    """Write B's table, start B, attach the auditor, align by PSI (or reuse ``aligned`` ids: the placebo
    world has the same ids, so its alignment is the same; the aligned ids are then sent to B directly)."""
    import time

    from musicrecall.federated.audit import ChannelAuditor
    from musicrecall.federated.coldstart import party_b_table
    from musicrecall.federated.party_b import start_party_b
    from musicrecall.federated.psi import client_align, encode_keys

    ds = data.ds
    b_path = party_b_table(ds.cross_business, ds.users, coverage, n_extra, seed, key=ds.key)
    b_raw = pl.read_parquet(b_path)  # the auditor's privileged view; party A's code never reads it
    auditor = ChannelAuditor(b_raw.select(pl.col(r"^f\d+$")).to_numpy(), raw_keys=b_raw["user_key"].to_list())
    auditor.set_alignment(sorted(set(b_raw["user_key"].to_list()) & set(ds.users["user_key"].to_list())))
    b = start_party_b(b_path, mode=mode, n_threads=1, keep_payloads=False, inspectors=[auditor])
    t0 = time.perf_counter()
    keys, ids = ds.users["user_key"].to_list(), ds.users["user_id"].to_numpy()
    if aligned is None:
        idx = client_align(b.endpoint, keys)
        aligned = dict(zip(ids[idx].tolist(), range(len(idx)), strict=True))
    else:
        key_of = dict(zip(ids.tolist(), keys, strict=True))
        b.endpoint.request("psi_aligned", {"keys": encode_keys([key_of[u] for u in aligned])}, expect="ok")
    return Federation(b, auditor, aligned, b_path, time.perf_counter() - t0)


def a_alone(data: ColdStartData) -> tuple[EmbeddingScorer, EmbeddingScorer]:
    """Party A alone: ``(global popularity, demographic popularity)`` scorers, fitted on the test fit window."""
    from musicrecall.federated.coldstart import DemographicPopularity

    demo = DemographicPopularity().fit(data.test.fit, data.ds.users, data.ds.items.height)
    pop = np.log(np.bincount(data.test.fit.filter(pl.col("full_play"))["song_id"].to_numpy(),
                             minlength=data.ds.items.height) + 1.0).astype(np.float32)
    glob = EmbeddingScorer(lambda u: np.ones((len(u), 1), np.float32), pop[:, None].copy())
    return glob, EmbeddingScorer(demo.user_vecs, demo.item_vecs)


def central_features(data: ColdStartData, b_path, aligned: dict[int, int]) -> np.ndarray:
    """The centralised upper bound's inputs (B's features + A's demographics) in aligned order — what a
    single owner of both tables would have; only this comparison reads both."""
    from musicrecall.models.dssm import demographic_features, dense_user_features

    b = pl.read_parquet(b_path)
    users = data.ds.users.with_row_index("a_row")
    order = pl.DataFrame({"user_id": list(aligned)}, schema={"user_id": pl.Int64}).join(users, on="user_id")
    b = order.select("user_key").join(b, on="user_key", how="left", maintain_order="left")
    fcols = [c for c in b.columns if c[0] == "f" and c[1:].isdigit()]
    demo = demographic_features(data.ds.users)[order["a_row"].to_numpy()]
    return np.hstack([dense_user_features(b, "b_age_bucket", fcols), demo]).astype(np.float32)


def b_raw_features(data: ColdStartData, b_path, aligned: dict[int, int]) -> tuple[np.ndarray, list[str]]:
    """B's raw numeric features (``f00..``) of the aligned users in aligned order, and their names: the
    auditor's privileged view, used only to *measure* what B's embeddings reveal (the linear probe)."""
    b = pl.read_parquet(b_path)
    order = pl.DataFrame({"user_id": list(aligned)}, schema={"user_id": pl.Int64}).join(
        data.ds.users.select(pl.col("user_id").cast(pl.Int64), "user_key"), on="user_id", how="left", maintain_order="left")
    b = order.select("user_key").join(b, on="user_key", how="left", maintain_order="left")
    fcols = [c for c in b.columns if c[0] == "f" and c[1:].isdigit()]
    return b.select(fcols).to_numpy().astype(np.float32), fcols


def released_embeddings(tower: torch.nn.Module, n_aligned: int, batch: int = 4096) -> np.ndarray:
    """The serving embeddings B sends A for every aligned user (what A holds after serving; with noise,
    one more release per user)."""
    was_training = tower.training
    tower.eval()
    with torch.no_grad():
        out = np.vstack([tower(np.arange(b0, min(b0 + batch, n_aligned))).numpy()
                         for b0 in range(0, n_aligned, batch)]).astype(np.float32)
    tower.train(was_training)
    return out


def train_and_report(model: torch.nn.Module, data: ColdStartData, fed: Federation, user_input, rc: RunConfig,
                     name: str, fallback: EmbeddingScorer, multitask: bool = False, k: int = 200,
                     cache: bool = True, max_valid_users: int = 2000) -> tuple[dict[str, Any], History]:
    """Train on the validation-stage fit window (early stopping on validation HR@200 of aligned users),
    then report on the cold users of the test window."""
    hist = train_federated_model(model, data, fed, user_input, rc, name, multitask, k, cache, max_valid_users)
    scorer = model_scorer(model, user_input, fed.aligned, fallback)
    return cold_report(name, scorer, data.cold, data.test.split.test, k=k), hist


def validation_setup(data: ColdStartData, users: np.ndarray) -> EvalSetup:
    """The validation setup of ``users`` (early stopping of the federated models), built once per world and
    user set, on the split ``data.valid`` holds: a new split would hold another copy of the log (~1.8 GB at
    profile medium)."""
    from musicrecall.evaluation import make_eval_setup

    key = ("valid_setup", np.asarray(users, dtype=np.int64).tobytes())  # the same users for every model
    if key not in data.memo:
        data.memo[key] = make_eval_setup(data.events, data.ds.items.height, stage="valid", users=users,
                                         split=data.valid.split)
    return data.memo[key]


def train_federated_model(model: torch.nn.Module, data: ColdStartData, fed: Federation, user_input, rc: RunConfig,
                          name: str, multitask: bool = False, k: int = 200, cache: bool = True,
                          max_valid_users: int = 2000) -> History:
    """:func:`train_and_report`'s training alone (a cached run is restored): for a caller that serves the
    model (notebook 08's channel) and has no use for its cold-start report."""
    val_users = np.asarray([u for u in data.valid.targets["all"].users if int(u) in fed.aligned], dtype=np.int64)
    val_users = np.random.default_rng([rc.seed, 3]).permutation(val_users)[:max_valid_users]  # bounded cost
    vsetup = validation_setup(data, val_users)
    validate = validator(model, vsetup, user_input, fed.aligned, k)
    sampler = NegativeSampler(data.valid.popularity, seed=rc.seed)
    key = run_key(data.ds.key, name, Path(fed.b_path).name, rc=rc) if cache else None
    return fit_model(model, data.valid.fit, fed.aligned, user_input, sampler, rc, validate, name, key, multitask)


def report_lift_table(pairs: list[tuple[dict[str, Any], dict[str, Any]]], metrics: tuple[str, ...], n_boot: int = 1000,
                      seed: int = 0, world: str = "signal") -> pl.DataFrame:
    """Paired relative lifts ``a / b - 1`` with 95% CIs for each ``(a, b)`` report pair and metric."""
    rows = []
    for a, b in pairs:
        for m in metrics:
            value, lo, hi = report_lift(a, b, m, n_boot=n_boot, seed=seed)
            rows.append({"world": world, "model": a["name"], "baseline": b["name"], "metric": m, "lift": value,
                         "ci_lo": lo, "ci_hi": hi})
    return pl.DataFrame(rows)


def fed_dssm(endpoint, data: ColdStartData, name: str, rc: RunConfig, clip_norm: float | None = None,
             noise_multiplier: float = 0.0) -> torch.nn.Module:
    """The federated DSSM of notebook 07: B's user tower across ``endpoint`` (party B keeps it under
    ``name``), A's item tower on the song features; seeded by ``rc.seed`` (torch and B's initialisation)
    and keyed by ``rc`` (so a checkpoint of the same run is reused, e.g. by notebook 08)."""
    from musicrecall.federated.split import RemoteUserTower
    from musicrecall.models.dssm import DSSM, ItemTower

    torch.manual_seed(rc.seed)
    tower = RemoteUserTower(endpoint, name, dim=rc.dim, hidden=rc.hidden, seed=rc.seed, lr=rc.lr,
                            clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                            run_key=run_key(data.ds.key, name, rc=rc))
    return DSSM(tower, ItemTower(data.codes, data.cards, dim=rc.dim, hidden=rc.hidden))


def fed_mmoe(endpoint, data: ColdStartData, name: str, rc: RunConfig) -> torch.nn.Module:
    """The federated MMoE of notebook 07 (B's tower unchanged, MMoE heads and the item tower at A)."""
    from musicrecall.federated.split import RemoteUserTower
    from musicrecall.models.dssm import ItemTower
    from musicrecall.models.mmoe import MMoERetrieval

    torch.manual_seed(rc.seed)
    tower = RemoteUserTower(endpoint, name, dim=rc.dim, hidden=rc.hidden, seed=rc.seed, lr=rc.lr,
                            run_key=run_key(data.ds.key, name, rc=rc))
    return MMoERetrieval(tower, ItemTower(data.codes, data.cards, dim=rc.dim, hidden=rc.hidden), user_dim=rc.dim,
                         dim=rc.dim, n_experts=rc.n_experts)


@dataclass
class SeededRuns:
    """One model trained with several training seeds (``seeds[r]``): its cold-start reports (all named
    after the arm), training histories and models (party B keeps each seed's tower under its own name)."""

    name: str
    seeds: list[int]
    reports: list[dict[str, Any]]
    histories: list[History]
    models: list[torch.nn.Module]


def seed_name(name: str, seed: int, first: int) -> str:
    """Party B's tower name of training seed ``seed``: the first seed keeps the arm's name, so its run
    key (and checkpoint) is the one a single-seed run has."""
    return name if seed == first else f"{name}_s{seed}"


def train_seeds(build, data: ColdStartData, fed: Federation, user_input, rc: RunConfig, name: str,
                fallback: EmbeddingScorer, n_seeds: int, multitask: bool = False, k: int = 200) -> SeededRuns:
    """Train and report ``build(endpoint, data, tower_name, rc_r)`` for training seeds ``rc.seed ..
    rc.seed + n_seeds - 1`` (each seed draws the model's initialisation, B's tower, the training plays per
    user, the batch order and the validation users). Training noise then enters the lifts' intervals
    (:func:`seeded_lift_table`); the placebo world runs the same seeds."""
    from dataclasses import replace

    seeds = list(range(rc.seed, rc.seed + n_seeds))
    out = SeededRuns(name, seeds, [], [], [])
    for s in seeds:
        rcs = replace(rc, seed=s)
        tower = seed_name(name, s, seeds[0])
        model = build(fed.endpoint, data, tower, rcs)
        rep, hist = train_and_report(model, data, fed, user_input, rcs, tower, fallback, multitask=multitask, k=k)
        out.reports.append({**rep, "name": name})
        out.histories.append(hist)
        out.models.append(model)
    return out


def per_user_arms(arms: dict[str, list[dict[str, Any]]], metrics: tuple[str, ...]
                  ) -> dict[str, list[dict[str, dict[str, np.ndarray]]]]:
    """Cold-start reports per arm and seed as the per-user dicts of
    :func:`musicrecall.sequences.seeded_lift_table` (one kind, ``"cold"``). Every report of one world
    scores the same cold users (and the same users with a full-play AUC): checked, since the lifts pair them."""
    first = next(iter(arms.values()))[0]
    for reps in arms.values():
        for r in reps:
            if not (np.array_equal(r["users"], first["users"]) and np.array_equal(r["auc_users"], first["auc_users"])):
                raise ValueError(f"{r['name']}: reports of one comparison must score the same users")
    return {a: [{"cold": {m: np.asarray(r[m], dtype=np.float64) for m in metrics}} for r in reps]
            for a, reps in arms.items()}


def seeded_lift_table(arms: dict[str, list[dict[str, Any]]], pairs: list[tuple[str, str]], metrics: tuple[str, ...],
                      n_boot: int = 1000, seed: int = 0, world: str = "signal") -> pl.DataFrame:
    """Relative lifts ``a / b - 1`` of every ``(a, b)`` in ``pairs`` with training-seed noise in the interval.

    ``arms`` maps a model to its reports, one per training seed (a deterministic baseline such as A alone:
    one report, paired with every seed of the other arm). Each row is
    :func:`musicrecall.sequences.seeded_lift` over the seeds both arms have, its interval widened by the
    spread of the per-seed lifts and by the A/A control of arm ``a`` (the same model, seed r vs its first
    seed); an A/A row per seeded arm (``"<a> (seed 1)"`` vs ``"<a> (seed 0)"``) is the noise floor."""
    from musicrecall.sequences import seeded_lift_table as lift_table

    per_user = per_user_arms(arms, metrics)
    out = []
    for a in dict.fromkeys(p[0] for p in pairs):
        mine = [p for p in pairs if p[0] == a]
        r = max(len(arms[x]) for p in mine for x in p)
        # a one-report arm (deterministic, or trained once) pairs with every seed of the other arm
        used = {x: per_user[x] * r if len(per_user[x]) == 1 else per_user[x] for p in mine for x in p}
        out.append(lift_table(used, mine, metrics=metrics, kinds=["cold"], aa_arm=a if len(arms[a]) > 1 else None,
                              n_boot=n_boot, seed=seed))
    return pl.concat(out, how="diagonal_relaxed").drop("kind").with_columns(world=pl.lit(world))


def convergence_table(histories: dict[tuple[str, str, int], History],
                      validations_per_pass: int | dict[tuple[str, str, int], int] = 1) -> pl.DataFrame:
    """One row per training run ``(world, model, seed)``: best and last validation (``best_epoch``,
    ``epochs_ran``: the loop's epochs, ``validations_per_pass`` of them per pass over the plays, one count
    for every run or one per run) and the same in passes, whether early stopping ended it or the cap did
    (``capped``: the score still improved at the cap, an under-trained model), seconds per loop epoch
    (wall, machine-dependent) and the best validation HR@200."""
    def per_pass(key: tuple[str, str, int]) -> int:
        return validations_per_pass.get(key, 1) if isinstance(validations_per_pass, dict) else validations_per_pass

    return pl.DataFrame([{"world": w, "model": m, "seed": s, "best_epoch": h.best_epoch, "epochs_ran": len(h.epochs),
                          "best_pass": h.best_epoch / per_pass((w, m, s)), "passes_ran": len(h.epochs) / per_pass((w, m, s)),
                          "stopped_early": h.stopped_early, "capped": h.capped, "from_cache": h.from_cache,
                          "steps": h.steps, "valid_hr@200": h.best_score, "seconds_per_epoch": h.seconds_per_epoch}
                         for (w, m, s), h in histories.items()])
