"""SASRec and YouTube-DNN experiment glue (notebook 03): training, serving and the C2 tables.

The sequence data (histories, causal training windows, user feature codes) is built by
:mod:`musicrecall.sequence_data` from the *fit* window of :func:`musicrecall.evaluation.make_eval_setup`,
so no sequence reaches the evaluation window. Here:

* :func:`causal_loss`, :func:`window_batches`, :func:`hr_validator`, :func:`rolling_validator`,
  :func:`recommender`: the glue between a sequence model, :func:`musicrecall.training.train`, the
  softmax losses of :mod:`musicrecall.models.losses` and the full-catalogue evaluation;
* :func:`sequence_inputs`, :func:`fit_recipe`, :func:`evaluate_sequence_model`, :func:`next_play_targets`:
  one world's experiment; :func:`run_c2_world`, :func:`rolling_c2_table` and :func:`seeded_lift`: C2 on
  rolling next-play with seed replicates (notebook 03; its verdict: :mod:`musicrecall.report.verdicts`).

A *sequence model* is any ``torch.nn.Module`` with

* ``sequence_output(items [B, L], user_feats [B, F] | None) -> [B, L, d]``: the user vector after
  each position (position ``t`` sees positions ``<= t`` only);
* ``user_vecs(items, user_feats) -> [B, d]``: the user vector after the whole history;
* ``item_table() -> [n_items, d]``: the song vectors it is scored against.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from musicrecall.evaluation import (
    EvalSetup,
    Split,
    Targets,
    UserItemCSR,
    bootstrap_ci,
    build_targets,
    evaluate_lists,
    evaluate_recommender,
    evaluate_scores,
    make_eval_setup,
    paired_bootstrap_lift,
    summarize,
    topk_scores,
)
from musicrecall.models.losses import NegativeSampler, full_softmax_loss, sampled_softmax_loss
from musicrecall.sequence_data import (
    Histories,
    Windows,
    encode_categoricals,
    last_n_histories,
    ordered_plays,
    training_windows,
)
from musicrecall.training import History, checkpoint_key, minibatches, train

# --------------------------------------------------------------------------------------------------
# Glue with the training loop and the evaluation
# --------------------------------------------------------------------------------------------------

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def window_batches(windows: Windows, batch_size: int, seed: int, user_feats: np.ndarray | None = None,
                   epoch_targets: int | None = None) -> Callable[[int], Iterator[Batch]]:
    """``batches(epoch)`` for :func:`musicrecall.training.train`: shuffled (inputs, targets, user features).

    ``epoch_targets``: when the windows hold more next-play targets than this, an epoch is a fresh seeded
    sample of windows holding at most this many (the first windows of that epoch's permutation), so every
    user's windows train the model over the run while an epoch, the unit of validation and patience, stays
    bounded on large logs; ``None`` or a smaller log: an epoch is a full pass.
    """
    x, y = torch.from_numpy(windows.inputs), torch.from_numpy(windows.targets)
    f = None if user_feats is None else torch.from_numpy(user_feats[windows.users])
    per_window = (windows.targets != windows.pad).sum(1)
    sample = epoch_targets is not None and windows.n_targets > epoch_targets

    def batches(epoch: int) -> Iterator[Batch]:
        if sample:
            order = np.random.default_rng([seed, epoch, 1]).permutation(x.shape[0])
            take = order[:max(1, int(np.searchsorted(np.cumsum(per_window[order]), epoch_targets, side="right")))]
            chunks = (take[s:s + batch_size] for s in range(0, take.shape[0], batch_size))
        else:
            chunks = minibatches(x.shape[0], batch_size, seed=seed, epoch=epoch)
        for idx in chunks:
            i = torch.from_numpy(idx)
            yield x[i], y[i], None if f is None else f[i]

    return batches


def epoch_batches(windows: Windows, batch_size: int, epoch_targets: int | None = None) -> int:
    """About how many batches an epoch of :func:`window_batches` has (for the progress bar)."""
    n = windows.inputs.shape[0]
    if epoch_targets is not None and windows.n_targets > epoch_targets:
        n = max(1, round(n * epoch_targets / windows.n_targets))
    return -(-n // batch_size)


#: Largest catalogue trained with the exact full softmax (:func:`musicrecall.models.losses.full_softmax_loss`);
#: beyond it the sampled softmax. Measured on 2 shared cores, 5,600 target positions per batch, d = 48,
#: forward + backward of the loss alone (time of full / time of sampled with 2,048 shared negatives):
#: 0.57 at 2k songs, 1.2 at 5k, 2.8 at 10k, 13 at 30k; in-batch negatives over all positions cost as
#: much as a full softmax over 5.6k songs. Full softmax is never worse in accuracy (no sampling bias),
#: so it is used up to where its cost is about that of the sampled loss.
FULL_SOFTMAX_MAX_ITEMS = 5000


def causal_loss(sampler: NegativeSampler, pad: int, n_neg: int = 2048, in_batch: bool = False,
                full_softmax: bool | None = None) -> Callable[[torch.nn.Module, Batch], torch.Tensor]:
    """Next-play loss at every real position of every window.

    ``full_softmax`` (default: ``pad <= FULL_SOFTMAX_MAX_ITEMS``, ``pad`` being the catalogue size):
    exact cross-entropy over the catalogue, as RecBole trains SASRec; otherwise a sampled softmax
    (logQ-corrected, Covington et al. 2016; Yi et al. 2019) against ``n_neg`` shared negatives, plus the
    batch's other positives when ``in_batch``. SASRec's original loss is the one-negative special case.
    """
    full = pad <= FULL_SOFTMAX_MAX_ITEMS if full_softmax is None else full_softmax

    def loss_fn(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        x, y, f = batch
        out = model.sequence_output(x, f)
        valid = y != pad
        if full:
            return full_softmax_loss(out[valid], y[valid], model.item_table())
        return sampled_softmax_loss(out[valid], y[valid], model.item_table(), sampler, n_neg=n_neg,
                                    in_batch=in_batch)

    return loss_fn


@torch.inference_mode()
def user_vectors(model: torch.nn.Module, hist: Histories, users: np.ndarray,
                 user_feats: np.ndarray | None = None, batch: int = 2048) -> np.ndarray:
    """``model.user_vecs`` of ``users`` from their histories, in batches (float32 [n, d])."""
    model.eval()
    users = np.asarray(users, dtype=np.int64)
    rows = hist.rows(users)
    outs = []
    for b0 in range(0, users.shape[0], batch):
        x = torch.from_numpy(rows[b0:b0 + batch])
        f = None if user_feats is None else torch.from_numpy(user_feats[users[b0:b0 + batch]])
        outs.append(model.user_vecs(x, f).float())
    d = int(model.item_table().shape[1])
    return torch.cat(outs).numpy() if outs else np.zeros((0, d), dtype=np.float32)


def item_vectors(model: torch.nn.Module) -> np.ndarray:
    """The song table the model scores against (float32 [n_items, d])."""
    with torch.inference_mode():
        return model.item_table().detach().float().numpy().copy()


def hr_validator(hist: Histories, targets: UserItemCSR, k: int = 200, user_feats: np.ndarray | None = None,
                 max_users: int | None = 3000, seed: int = 0) -> Callable[[torch.nn.Module], float]:
    """``validate(model)`` for early stopping: HitRate@k on the validation window (full catalogue)."""
    rows = np.arange(targets.n_users)
    if max_users is not None and targets.n_users > max_users:
        rows = np.sort(np.random.default_rng(seed).choice(targets.n_users, max_users, replace=False))
    sub = targets.take(rows)

    def validate(model: torch.nn.Module) -> float:
        vecs = user_vectors(model, hist, sub.users, user_feats)
        return float(evaluate_scores(vecs, item_vectors(model), sub, ks=(k,))[f"hr@{k}"].mean())

    return validate


def recommender(model: torch.nn.Module, hist: Histories, user_feats: np.ndarray | None = None
                ) -> Callable[[np.ndarray, int, UserItemCSR | None], np.ndarray]:
    """``recommend(users, k, exclude)`` for :func:`musicrecall.evaluation.evaluate_recommender`:
    exact full-catalogue top-k by inner product (:func:`musicrecall.evaluation.topk_scores`)."""
    items = item_vectors(model)

    def recommend(users: np.ndarray, k: int, exclude: UserItemCSR | None) -> np.ndarray:
        return topk_scores(user_vectors(model, hist, users, user_feats), items, k, exclude=exclude)[0]

    return recommend


# --------------------------------------------------------------------------------------------------
# One world's sequence experiment: inputs, fitting, next-play targets
# --------------------------------------------------------------------------------------------------


@dataclass
class SequenceInputs:
    """Everything a sequence model needs from one cleaned log (see :func:`sequence_inputs`)."""

    valid: EvalSetup  # fit = train window, targets = validation window (early stopping)
    test: EvalSetup  # fit = train + valid, targets = test window (reported)
    windows: Windows  # causal training windows of the train window
    hist_valid: Histories  # last-N full plays before the validation cut
    hist_test: Histories  # last-N full plays before the test cut
    user_feats: np.ndarray  # int64 [n_users, F] codes, 0 = missing
    user_cards: list[int]
    n_items: int
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def sampler(self, power: float = 0.75, seed: int = 0) -> NegativeSampler:
        """Negatives from target frequency ** power (logQ-corrected in the loss)."""
        return NegativeSampler(self.windows.target_counts(self.n_items), power=power, seed=seed)

    def valid_targets(self, max_history: int, max_users: int | None, max_targets_per_user: int | None,
                      seed: int = 0):
        """Rolling next-play targets of the validation window (a seeded subset), built once per setting:
        every arm trained at the same seed stops early on the same plays without rebuilding them."""
        from musicrecall.evaluation.rolling import rolling_targets

        key = (max_history, max_users, max_targets_per_user, seed)
        if key not in self._memo:
            self._memo[key] = rolling_targets(self.valid, max_history=max_history, max_users=max_users,
                                              max_targets_per_user=max_targets_per_user, seed=seed)
        return self._memo[key]


def sequence_inputs(events: pl.DataFrame, users: pl.DataFrame, n_items: int, max_len: int = 50,
                    user_cols: Sequence[str] = ("age_bucket", "gender", "region"), valid_days: int = 7,
                    test_days: int = 7, max_windows_per_user: int | None = None,
                    max_train_users: int | None = None, seed: int = 0, split: str | Split = "auto"
                    ) -> SequenceInputs:
    """Split the cleaned log (:func:`musicrecall.evaluation.make_eval_setup`) and build windows and histories.

    Models train on the train window and stop early on the validation window; at test time they are
    served, without refitting, on histories that run up to the test cut (train + valid), as a model
    trained last week serves this week. ``max_train_users`` (default: every user) trains on the windows of
    a seeded subset of users only, for a quick look: the models have no user embedding, so every user is
    still served, but a subset starves them (SASRec on 1,500 of the small world's 20,000 users: rolling
    next-play HR@10 0.193 against 0.278 on every user's windows). To bound an epoch on a large log, a
    recipe's ``epoch_targets`` samples every user's windows afresh each epoch instead
    (:func:`window_batches`). ``split``: as :func:`musicrecall.evaluation.make_eval_setup`'s; pass the
    :class:`musicrecall.evaluation.Split` a notebook already holds, so the log is not split again (on a large
    log each split holds about two copies of it).
    """
    valid = make_eval_setup(events, n_items, stage="valid", valid_days=valid_days, test_days=test_days, split=split)
    test = make_eval_setup(events, n_items, stage="test", split=valid.split)  # the same split, not a second one
    n_users = int(max(users["user_id"].max(), events["user_id"].max())) + 1
    cols = [c for c in user_cols if c in users.columns]
    feats, cards = encode_categoricals(users, "user_id", cols, n_users)
    windows = training_windows(valid.fit, n_items, max_len, max_windows_per_user=max_windows_per_user)
    users = np.unique(windows.users)
    if max_train_users is not None and users.shape[0] > max_train_users:
        chosen = np.random.default_rng(seed).choice(users, max_train_users, replace=False)
        keep = np.isin(windows.users, chosen)
        windows = Windows(windows.users[keep], windows.inputs[keep], windows.targets[keep], windows.pad)
    return SequenceInputs(valid, test, windows,
                          last_n_histories(valid.fit, n_users, n_items, max_len),
                          last_n_histories(test.fit, n_users, n_items, max_len), feats, cards, n_items)


def next_play_targets(window: pl.DataFrame, users: np.ndarray | None = None, label: str = "full_play") -> Targets:
    """Targets of kind ``"next"``: each user's *first* full play in the evaluation window.

    The closest set-based analogue of next-item accuracy: the song that follows the history, where
    order and recency should matter most.
    """
    first = ordered_plays(window, label).group_by("user_id", maintain_order=True).first()
    return build_targets(first.select("user_id", "song_id"), first.with_columns(pl.lit(True).alias(label)),
                         users=users, kind="all", label=label)


def evaluate_sequence_model(name: str, model: torch.nn.Module, inputs: SequenceInputs, hist: Histories,
                            use_user_feats: bool = False, ks: Sequence[int] = (50, 200), n_boot: int = 1000,
                            seed: int = 0) -> tuple[pl.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Full-catalogue test metrics of a trained model served on ``hist`` (kinds all/discovery/repeat/next)."""
    rec = recommender(model, hist, inputs.user_feats if use_user_feats else None)
    table, per_user = evaluate_recommender(name, rec, inputs.test, ks=ks, n_boot=n_boot, seed=seed)
    nxt = next_play_targets(inputs.test.split.test, users=inputs.test.targets["all"].users)
    per_user["next"] = evaluate_lists(rec(nxt.users, max(ks), None), nxt, ks)
    nxt_table = summarize(per_user["next"], n_boot=n_boot, seed=seed, model=name, kind="next")
    return pl.concat([table, nxt_table], how="diagonal_relaxed"), per_user


def lift_table(per_user: dict[str, dict[str, dict[str, np.ndarray]]], a: str, b: str,
               metrics: Sequence[str] = ("hr@50", "hr@200", "ndcg@50"), n_boot: int = 1000, seed: int = 0
               ) -> pl.DataFrame:
    """Relative lift of model ``a`` over ``b`` per kind and metric, with paired bootstrap CIs."""
    rows = []
    for kind in per_user[a]:
        for m in metrics:
            va, vb = per_user[a][kind][m], per_user[b][kind][m]
            if vb.mean() == 0:
                continue
            lift, lo, hi = paired_bootstrap_lift(va, vb, n_boot=n_boot, seed=seed)
            rows.append({"model": a, "baseline": b, "kind": kind, "metric": m, "a": float(va.mean()),
                         "b": float(vb.mean()), "lift": lift, "ci_lo": lo, "ci_hi": hi, "n_users": len(va)})
    return pl.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# C2 on rolling next-play: recipes, seed replicates, seeded lifts (notebook 03)
# --------------------------------------------------------------------------------------------------


def rolling_validator(setup: EvalSetup, user_feats: np.ndarray | None = None, k: int = 10, max_history: int = 50,
                      max_users: int | None = 1000, max_targets_per_user: int | None = 20, seed: int = 0,
                      targets: Callable[[], object] | None = None) -> Callable[[torch.nn.Module], float]:
    """``validate(model)`` for early stopping on the claim's own metric: rolling next-play HR@``k`` on the
    validation window (:func:`musicrecall.evaluation.rolling_next_play`; a seeded subset of users and of
    their targets, built once, so every epoch is scored on the same plays). The targets are built at the
    first call (a model loaded from its checkpoint never validates), or taken from ``targets()``."""
    from musicrecall.evaluation.rolling import model_score_fn, rolling_next_play, rolling_targets

    built: list = []

    def validate(model: torch.nn.Module) -> float:
        if not built:
            built.append(targets() if targets is not None else rolling_targets(
                setup, max_history=max_history, max_users=max_users, max_targets_per_user=max_targets_per_user,
                seed=seed))
        res = rolling_next_play(model_score_fn(model, user_feats), built[0], k=(k,))
        return float(res.per_user(f"hr@{k}")[1].mean())

    return validate


#: Validation plays per user that drive early stopping (a seeded subset of each validation user's plays).
VALID_TARGETS_PER_USER = 10


def _code() -> tuple:
    from musicrecall import sequence_data
    from musicrecall.models import losses, sasrec, youtube_dnn

    return (sys.modules[__name__], sequence_data, sasrec, youtube_dnn, losses)


def fit_recipe(kind: str, inputs: SequenceInputs, recipe, seed: int = 0, data_key: str | None = None,
               name: str | None = None, valid_k: int = 10) -> tuple[torch.nn.Module, History]:
    """Build and train one model of ``kind`` ("sasrec", "sasrec_unshared", "youtube_dnn") from its recipe
    (:mod:`musicrecall.models.recipes`) at training seed ``seed``: next-play loss (:func:`causal_loss`),
    early stopping on the validation window's rolling next-play HR@``valid_k`` (:func:`rolling_validator`).
    Notebook 03 and :func:`musicrecall.fusion.sasrec_adapter` both call this, so they share a checkpoint."""
    from musicrecall.training import seed_everything

    name = name or kind
    feats = inputs.user_feats if kind == "youtube_dnn" and getattr(recipe, "use_user_feats", False) else None
    seed_everything(seed)  # torch's default seed is random: the initial weights must come from the seed
    if kind == "youtube_dnn":
        model = recipe.build(inputs.n_items, inputs.user_cards if feats is not None else ())
    else:
        model = recipe.build(inputs.n_items, **({"shared": False} if kind == "sasrec_unshared" else {}))
    cfg = recipe.train_config(seed)
    valid_users = recipe.valid_users
    hp = {"recipe": recipe.as_dict(), "kind": kind, "seed": seed, "valid": [valid_k, valid_users], "model": repr(model),
          "train_windows": int(inputs.windows.inputs.shape[0]), "max_len": int(inputs.windows.inputs.shape[1])}
    key = None if data_key is None else checkpoint_key(data_key, name, hp, code=_code())
    epoch_targets = recipe.epoch_targets
    hist = train(model, window_batches(inputs.windows, recipe.batch_size, seed, feats, epoch_targets),
                 causal_loss(inputs.sampler(seed=seed), inputs.n_items, recipe.n_neg), cfg,
                 rolling_validator(inputs.valid, feats, valid_k, targets=lambda: inputs.valid_targets(
                     recipe.max_len, valid_users, VALID_TARGETS_PER_USER, seed)),
                 name=f"{name}-s{seed}",
                 cache_key=key, n_batches=epoch_batches(inputs.windows, recipe.batch_size, epoch_targets))
    return model, hist


def seeded_lift(a: Sequence[np.ndarray], b: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0,
                aa: Sequence[float] = (), z: float = 1.96) -> dict[str, float]:
    """Relative lift of arm A over arm B with training-seed noise in the interval.

    ``a[r]``, ``b[r]``: per-user values (the same users, same order) of training seed ``r`` of each arm.
    ``value`` = lift of the seed-averaged per-user values; ``boot_lo/hi`` = paired bootstrap over users
    (test-sample noise); ``sd_seed`` = the larger of the spread of the per-seed lifts and of the A/A lifts
    ``aa`` (the same model, different seeds); ``lo/hi`` widen the bootstrap half-widths by ``z * sd_seed /
    sqrt(R)`` in quadrature (as :func:`musicrecall.evaluation.ranking_stats.seeded_diff`; Bouthillier et
    al., MLSys 2021). With one seed and no A/A the interval is the bootstrap one.
    """
    va, vb = np.stack(a), np.stack(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_seed = va.mean(1) / vb.mean(1) - 1.0
    if vb.mean() == 0:  # the baseline scores 0 on every seed (e.g. an untrained model on a tiny real log)
        nan = float("nan")
        return {"value": nan, "lo": nan, "hi": nan, "boot_lo": nan, "boot_hi": nan, "sd_seed": nan,
                "n_seeds": int(va.shape[0]), "per_seed": per_seed.tolist()}
    value, blo, bhi = paired_bootstrap_lift(va.mean(0), vb.mean(0), n_boot=n_boot, seed=seed)
    finite = per_seed[np.isfinite(per_seed)]  # a seed whose baseline scores 0 has no relative lift
    spread = [float(finite.std(ddof=1))] if finite.shape[0] > 1 else []
    if len(aa) > 1:
        spread.append(float(np.std(aa, ddof=1)))
    elif len(aa) == 1:
        spread.append(abs(float(aa[0])) / np.sqrt(2.0))  # one A/A pair: |difference| / sqrt(2) estimates sd
    sd = max(spread, default=0.0)
    extra = z * sd / np.sqrt(va.shape[0])
    return {"value": value, "lo": value - float(np.hypot(value - blo, extra)),
            "hi": value + float(np.hypot(bhi - value, extra)), "boot_lo": blo, "boot_hi": bhi, "sd_seed": sd,
            "n_seeds": int(va.shape[0]), "per_seed": per_seed.tolist()}


def seeded_lift_table(arms: dict[str, Sequence[dict[str, dict[str, np.ndarray]]]],
                      pairs: Sequence[tuple[str, str]], metrics: Sequence[str] = ("hr@50", "hr@200"),
                      kinds: Sequence[str] | None = None, aa_arm: str | None = None, n_boot: int = 1000,
                      seed: int = 0) -> pl.DataFrame:
    """:func:`seeded_lift` for every ``(a, b)`` of ``pairs``, per kind and metric, on the per-user values of
    :func:`musicrecall.evaluation.evaluate_recommender` (``arms[name][r][kind][metric]``: training seed ``r``,
    same users in the same order for every arm and seed).

    The columns of :func:`lift_table` (``model``, ``baseline``, ``kind``, ``metric``, ``a``, ``b``, ``lift``,
    ``ci_lo``, ``ci_hi``, ``n_users``; ``a``/``b`` are seed means) plus ``boot_lo``/``boot_hi`` (users only),
    ``sd_seed`` and ``n_seeds``. With ``aa_arm`` (2+ seeds), the A/A lifts of that arm (seed r vs seed 0, the
    same model) widen every interval of the kind/metric, as in notebook 03, and an A/A row (``model`` =
    ``"<aa_arm> (seed 1)"``, ``baseline`` = ``"<aa_arm> (seed 0)"``, paired bootstrap) is added. A pair whose
    baseline scores 0 is left out (its relative lift is undefined), as in :func:`lift_table`.
    """
    first = next(iter(arms.values()))[0]
    rows = []
    for kind in kinds or list(first):
        for m in metrics:
            aa: list[float] = []
            if aa_arm is not None and len(arms[aa_arm]) > 1:
                x = [r[kind][m] for r in arms[aa_arm]]
                if x[0].mean() > 0:
                    aa = [float(x[r].mean() / x[0].mean() - 1.0) for r in range(1, len(x))]
                    lift, lo, hi = paired_bootstrap_lift(x[1], x[0], n_boot=n_boot, seed=seed)
                    rows.append({"model": f"{aa_arm} (seed 1)", "baseline": f"{aa_arm} (seed 0)", "kind": kind,
                                 "metric": m, "a": float(x[1].mean()), "b": float(x[0].mean()), "lift": lift,
                                 "ci_lo": lo, "ci_hi": hi, "n_users": int(x[0].shape[0]), "boot_lo": lo,
                                 "boot_hi": hi, "sd_seed": float("nan"), "n_seeds": 1})
            for a, b in pairs:
                k = min(len(arms[a]), len(arms[b]))
                va, vb = [r[kind][m] for r in arms[a][:k]], [r[kind][m] for r in arms[b][:k]]
                if np.mean(vb) == 0:
                    continue
                d = seeded_lift(va, vb, n_boot=n_boot, seed=seed, aa=aa)
                rows.append({"model": a, "baseline": b, "kind": kind, "metric": m, "a": float(np.mean(va)),
                             "b": float(np.mean(vb)), "lift": d["value"], "ci_lo": d["lo"], "ci_hi": d["hi"],
                             "n_users": int(va[0].shape[0]), "boot_lo": d["boot_lo"], "boot_hi": d["boot_hi"],
                             "sd_seed": d["sd_seed"], "n_seeds": k})
    return pl.DataFrame(rows)


def seeded_level(values: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0, z: float = 1.96
                 ) -> dict[str, float]:
    """Mean of a per-user metric over training seeds (``values[r]``: seed ``r``, same users), with a
    bootstrap interval over users of the seed-averaged values widened by ``z * sd_seed / sqrt(R)`` in
    quadrature (``sd_seed``: spread of the per-seed means), as :func:`seeded_lift` does for lifts."""
    v = np.stack(values)
    mean, lo, hi = bootstrap_ci(v.mean(0), n_boot, seed=seed)
    sd = float(v.mean(1).std(ddof=1)) if v.shape[0] > 1 else 0.0
    extra = z * sd / np.sqrt(v.shape[0])
    return {"mean": mean, "lo": mean - float(np.hypot(mean - lo, extra)), "hi": mean + float(np.hypot(hi - mean, extra)),
            "sd_seed": sd, "n_seeds": int(v.shape[0])}


def seed_mean(per_seed: Sequence[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Per-user values averaged over training seeds (``per_seed[r][kind][metric]``, same users for every seed)."""
    return {kind: {m: np.mean([p[kind][m] for p in per_seed], axis=0) for m in per_seed[0][kind]}
            for kind in per_seed[0]}


def per_user_matrix(results: Sequence, metric: str = "hr@10", slice_: str = "all") -> list[np.ndarray]:
    """Per-user ``metric`` of each :class:`musicrecall.evaluation.rolling.RollingResult` (same targets)."""
    out, users = [], None
    for r in results:
        u, v = r.per_user(metric, slice_)
        if users is not None and not np.array_equal(u, users):
            raise ValueError("results were scored on different targets")
        users = u
        out.append(v)
    return out


def rolling_c2_table(arms: dict[str, Sequence], baseline: str, metrics: Sequence[str] = ("hr@10", "ndcg@10"),
                     slices: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                     aa_arm: str | None = None) -> pl.DataFrame:
    """Seeded lift (:func:`seeded_lift`) of every arm over ``baseline`` per slice and metric, plus the A/A
    row (``aa_arm`` seed 1 vs its seed 0, paired bootstrap) whose seed spread (seed r vs seed 0, r >= 1)
    widens every interval of that slice/metric. ``arms``: name -> rolling results, one per training seed
    (a single result, e.g. the deterministic Markov baseline, is paired with every seed)."""
    from musicrecall.evaluation.rolling import SLICES

    base = arms[baseline]
    masks = base[0].targets.masks()
    rows = []
    for sl in slices or [x for x in SLICES if x in masks and masks[x].any()]:
        for m in metrics:
            b = per_user_matrix(base, m, sl)
            if np.mean(b) == 0:
                continue
            aa: list[float] = []
            if aa_arm is not None and len(arms[aa_arm]) > 1:
                x = per_user_matrix(arms[aa_arm], m, sl)
                aa = [float(x[r].mean() / x[0].mean() - 1.0) for r in range(1, len(x)) if x[0].mean() > 0]
                nan = float("nan")
                aa_ci = paired_bootstrap_lift(x[1], x[0], n_boot=n_boot, seed=seed) if x[0].mean() > 0 else (nan, nan, nan)
                rows.append({"a": f"{aa_arm} (seed 1)", "b": f"{aa_arm} (seed 0)", "slice": sl, "metric": m,
                             "mean_a": float(x[1].mean()), "mean_b": float(x[0].mean()), "lift": aa_ci[0],
                             "ci_lo": aa_ci[1], "ci_hi": aa_ci[2], "sd_seed": float("nan"), "n_seeds": 1,
                             "n_users": int(x[0].shape[0])})
            for name, res in arms.items():
                if name == baseline:
                    continue
                a = per_user_matrix(res, m, sl)
                bb = b * len(a) if len(b) == 1 else b  # a deterministic baseline (Markov) pairs with every seed
                k = min(len(a), len(bb))
                d = seeded_lift(a[:k], bb[:k], n_boot=n_boot, seed=seed, aa=aa)
                rows.append({"a": name, "b": baseline, "slice": sl, "metric": m, "mean_a": float(np.mean(a)),
                             "mean_b": float(np.mean(b)), "lift": d["value"], "ci_lo": d["lo"], "ci_hi": d["hi"],
                             "sd_seed": d["sd_seed"], "n_seeds": k, "n_users": int(b[0].shape[0])})
    return pl.DataFrame(rows)


@dataclass
class C2World:
    """One world's C2 experiment (:func:`run_c2_world`): trained seeds per arm and their rolling results."""

    inputs: SequenceInputs
    models: dict[str, list[torch.nn.Module]]
    histories: dict[str, list[History]]
    targets: object  # RollingTargets of the test window, shared by every arm
    results: dict[str, list]  # arm -> RollingResult per seed ("markov": one)

    def epochs_table(self) -> pl.DataFrame:
        """Epochs run, best epoch, optimiser steps, whether the cap was reached, training processes and seconds
        per epoch, per arm and seed."""
        return pl.DataFrame([{"arm": a, "seed": i, "epochs": len(h.epochs), "best_epoch": h.best_epoch,
                              "best_valid_hr@10": h.best_score, "steps": h.steps, "capped": h.capped, "from_cache": h.from_cache,
                              "processes": h.processes, "s_per_epoch": h.seconds_per_epoch} for a, hs in self.histories.items()
                             for i, h in enumerate(hs)])

    def summary(self, n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
        """Rolling next-play HR/NDCG per arm (seed 0) and slice, bootstrap CIs over users."""
        return pl.concat([r[0].summary(n_boot=n_boot, seed=seed) for r in self.results.values()])


def c2_inputs(prep, recipes_: dict[str, object], *, valid_days: float = 7, test_days: float = 7, seed: int = 0,
              split: str | Split = "auto") -> SequenceInputs:
    """The windows and histories every arm of ``recipes_`` trains on in notebook 03 (:func:`run_c2_world`, and
    :func:`musicrecall.ddp_train.train_c2` for its DDP runs, and notebook 08's SASRec channel): the longest
    ``max_len`` and the smallest ``max_train_users`` of the recipes (default: every user); ``split`` as
    :func:`sequence_inputs`'s."""
    ds = prep.dataset
    max_len = max(r.max_len for r in recipes_.values())
    caps = [r.max_train_users for r in recipes_.values() if r.max_train_users is not None]
    return sequence_inputs(prep.clean.events, ds.users, ds.items.height, max_len, valid_days=valid_days,
                           test_days=test_days, max_train_users=min(caps) if caps else None, seed=seed, split=split)


def run_c2_world(prep, recipes_: dict[str, object], seeds: Sequence[int], *, valid_days: float = 7,
                 test_days: float = 7, eval_users: int | None = 2000,
                 eval_targets_per_user: int | None = 20, ks: Sequence[int] = (10, 50), seed: int = 0,
                 extra_single_seed: Sequence[str] = ()) -> C2World:
    """Notebook 03's experiment on one prepared dataset: every arm of ``recipes_`` (kind -> recipe) trained
    at each of ``seeds`` (:func:`fit_recipe`), the kinds of ``extra_single_seed`` at the first seed only,
    the previous-song Markov baseline fitted on the same train window, all scored by rolling next-play on
    the same test-window targets (a seeded subset of ``eval_users`` users, ``eval_targets_per_user`` plays
    each). The arms train on the same windows: those of the smallest ``max_train_users`` of the recipes."""
    from musicrecall.evaluation import MarkovRecall
    from musicrecall.evaluation.rolling import model_score_fn, rolling_next_play, rolling_targets

    ds = prep.dataset
    inputs = c2_inputs(prep, recipes_, valid_days=valid_days, test_days=test_days, seed=seed)
    max_len = int(inputs.windows.inputs.shape[1])
    targets = rolling_targets(inputs.test, max_history=max_len, max_users=eval_users,
                              max_targets_per_user=eval_targets_per_user, seed=seed)
    models: dict[str, list] = {}
    hists: dict[str, list] = {}
    results: dict[str, list] = {}
    for kind, recipe in recipes_.items():
        for s in seeds[:1] if kind in extra_single_seed else seeds:
            model, hist = fit_recipe(kind, inputs, recipe, seed=s, data_key=ds.key)
            feats = inputs.user_feats if kind == "youtube_dnn" and getattr(recipe, "use_user_feats", False) else None
            models.setdefault(kind, []).append(model)
            hists.setdefault(kind, []).append(hist)
            results.setdefault(kind, []).append(rolling_next_play(model_score_fn(model, feats), targets, k=ks,
                                                                  name=kind))
    markov = MarkovRecall().fit(inputs.valid.fit, ds.items.height)
    results["markov"] = [rolling_next_play(markov.score, targets, k=ks, name="markov")]
    return C2World(inputs, models, hists, targets, results)


def shuffled_results(world: C2World, kind: str, seed: int = 0, ks: Sequence[int] = (10, 50)) -> list:
    """Rolling results of ``kind``'s trained seeds on the same targets with each history shuffled."""
    from musicrecall.evaluation.rolling import model_score_fn, rolling_next_play

    out = []
    for model in world.models[kind]:
        feats = world.inputs.user_feats if kind == "youtube_dnn" and getattr(model, "user_feat_emb", None) else None
        out.append(rolling_next_play(model_score_fn(model, feats), world.targets, k=ks, name=f"{kind}_shuffled",
                                     shuffle_history=True, seed=seed))
    return out
