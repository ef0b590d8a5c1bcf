"""MIND's experiment glue (notebook 04; mirrors :mod:`musicrecall.sequences` for SASRec): training,
serving, the clustering check and the ablation runs. The model itself is :mod:`musicrecall.models.mind`,
its training examples and histories come from :mod:`musicrecall.sequence_data`.

* :func:`fit_mind`: MIND trained with :func:`musicrecall.training.train` on sampled examples
  (:func:`musicrecall.sequence_data.training_examples`), early-stopping on the validation HitRate@200 of the
  global merge (:func:`musicrecall.evaluation.evaluate_topk`), checkpointed under :func:`mind_cache_key`;
* serving: :func:`user_interests` (interest vectors, active mask, weights; seeded), :func:`max_interest_topk`
  (exact global merge: max over interests), :class:`MINDRecall` (a trained model and the histories it
  reads; the harness's ``recommend``), :func:`served_on` (the same model on later histories); per-interest
  ANN serving with quotas is :mod:`musicrecall.serving`;
* notebook 04: :func:`fit_and_evaluate` (train on the validation setup, serve and evaluate on test),
  :func:`played_songs`, :func:`clustering_labels`, :func:`clustering_quality` (silhouette, NMI) and
  :func:`tsne_2d`. :class:`~musicrecall.models.mind.MINDConfig` and ``ROUTING_AXES`` are re-exported so the
  notebook reads one namespace.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import torch

from musicrecall import sequence_data
from musicrecall.evaluation import EvalSetup, UserItemCSR, evaluate_recommender, evaluate_topk
from musicrecall.models import losses, mind
from musicrecall.models.losses import NegativeSampler
from musicrecall.models.mind import (
    MIND,
    ROUTING_AXES,
    ROUTING_INITS,
    MINDConfig,
    mind_loss,
)
from musicrecall.sequence_data import Sequences, last_histories, training_examples, user_sequences
from musicrecall.training import History, TrainConfig, checkpoint_key, minibatches, seed_everything, train

__all__ = [
    "CLUSTER_RELATIONS",
    "MIND",
    "ROUTING_AXES",
    "ROUTING_INITS",
    "MINDConfig",
    "MINDRecall",
    "clustering_labels",
    "clustering_quality",
    "fit_and_evaluate",
    "fit_mind",
    "max_interest_topk",
    "mind_cache_key",
    "played_songs",
    "served_on",
    "tsne_2d",
    "user_interests",
]


# --------------------------------------------------------------------------------------------------
# Serving and training
# --------------------------------------------------------------------------------------------------


@torch.inference_mode()
def user_interests(model: MIND, hist: np.ndarray, batch: int = 4096, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interest vectors [U, K, d], active mask [U, K] and weights [U, K] for histories ``hist`` [U, L].

    Seeded, so a ``redraw`` model gives the same vectors for the same call.
    """
    model.eval()
    with torch.random.fork_rng():  # seed the redraw locally: the caller's (training) RNG stream is untouched
        torch.manual_seed(seed)
        out = [model.interests(torch.from_numpy(hist[i:i + batch])) for i in range(0, hist.shape[0], batch)]
    if not out:
        k, d = model.cfg.k_max, model.cfg.dim
        return np.zeros((0, k, d), np.float32), np.zeros((0, k), bool), np.zeros((0, k), np.float32)
    return tuple(torch.cat([o[j] for o in out]).numpy() for j in range(3))  # type: ignore[return-value]


@torch.inference_mode()
def max_interest_topk(vecs: np.ndarray, active: np.ndarray, items: np.ndarray, k: int,
                      exclude: UserItemCSR | None = None, batch: int | None = None,
                      unexcluded: np.ndarray | None = None) -> np.ndarray:
    """Exact top-``k`` by ``max_j v_jᵀ e_i`` over active interests (the global merge, without an index).

    ``exclude`` (rows aligned with ``vecs``) removes each user's songs from the ranking. The maximum over
    interests is kept as a running maximum of one ``[batch, n_items]`` score block per interest (two
    preallocated buffers), never a ``[batch, K, n_items]`` tensor: the scoring is memory-bound, and the large
    temporaries cost more than the matrix products (``batch`` defaults to about 8M scores per block).
    ``unexcluded`` (int64 [U, k], optional): filled with the top-``k`` *before* the exclusion, from the same
    scores (one scoring pass gives both the discovery list and the plain one).
    """
    items_t = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32)).T.contiguous()
    n_users, k_max = active.shape
    n_items = items_t.shape[1]
    batch = batch or max(16, min(1024, (1 << 23) // max(n_items, 1)))
    out = np.empty((n_users, k), dtype=np.int64)
    best, block = torch.empty(min(batch, n_users), n_items), torch.empty(min(batch, n_users), n_items)
    vecs_t = torch.from_numpy(np.ascontiguousarray(vecs, dtype=np.float32))
    act_t = torch.from_numpy(np.asarray(active, dtype=bool))
    for i in range(0, n_users, batch):
        j = min(i + batch, n_users)
        v, act, s = vecs_t[i:j], act_t[i:j], best[: j - i]
        torch.matmul(v[:, 0], items_t, out=s)
        s[~act[:, 0]] = float("-inf")
        for q in range(1, k_max):
            if not act[:, q].any():
                continue
            t = block[: j - i]
            torch.matmul(v[:, q], items_t, out=t)
            t[~act[:, q]] = float("-inf")
            torch.maximum(s, t, out=s)
        if unexcluded is not None:
            unexcluded[i:j] = torch.topk(s, k, dim=1).indices.numpy()
        if exclude is not None:
            lo, hi = exclude.indptr[i], exclude.indptr[j]
            rows = np.repeat(np.arange(j - i), np.diff(exclude.indptr[i:j + 1]))
            s[torch.from_numpy(rows), torch.from_numpy(exclude.indices[lo:hi])] = float("-inf")
        out[i:j] = torch.topk(s, k, dim=1).indices.numpy()
    return out


class _UserRows:
    """Memo of per-user rows (arrays whose first axis is the user), looked up and extended by sorted user id."""

    def __init__(self) -> None:
        self.users = np.zeros(0, dtype=np.int64)
        self.rows: tuple[np.ndarray, ...] = ()

    def get(self, users: np.ndarray, compute: Callable[[np.ndarray], tuple[np.ndarray, ...]]
            ) -> tuple[np.ndarray, ...]:
        """The rows of ``users`` (any order, repeats allowed), computing those not seen yet with ``compute``."""
        if users.shape[0] == 0:
            return compute(users)
        pos = np.minimum(np.searchsorted(self.users, users), max(self.users.shape[0] - 1, 0))
        known = (self.users[pos] == users) if self.users.shape[0] else np.zeros(users.shape[0], dtype=bool)
        new = np.unique(users[~known])
        if new.shape[0]:
            fresh = compute(new)
            allu = np.concatenate([self.users, new])
            order = np.argsort(allu, kind="stable")
            self.rows = tuple(np.concatenate([old, f])[order] for old, f in zip(self.rows, fresh, strict=True)
                              ) if self.rows else tuple(f[np.argsort(new)] for f in fresh)
            self.users = allu[order]
        return tuple(r[np.searchsorted(self.users, users)] for r in self.rows)


@dataclass
class MINDRecall:
    """A trained MIND and the histories it reads: interest vectors and exact global-merge lists.

    ``frozen=True`` (:func:`served_on`: the model no longer trains) memoises each user's interests, the
    item vectors and the exclusion-free lists, so the evaluation's target kinds (all, repeat, discovery)
    and the serving cells read one set of interests per user (a ``redraw`` model's random logits are
    drawn once per user) and score a user once per exclusion.
    """

    model: MIND
    seqs: Sequences
    seed: int = 0
    frozen: bool = False
    _memo: dict = field(default_factory=dict, init=False, repr=False)

    def histories(self, users: np.ndarray) -> np.ndarray:
        """Last ``max_len`` full plays of ``users`` (padded)."""
        return last_histories(self.seqs, users, self.model.cfg.max_len, self.model.pad)

    def interests(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vectors [U, K, d], active [U, K], weights [U, K]) of ``users``."""
        def compute(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return user_interests(self.model, self.histories(u), seed=self.seed)

        users = np.asarray(users, dtype=np.int64)
        if not self.frozen:
            return compute(users)
        return self._memo.setdefault("interests", _UserRows()).get(users, compute)  # type: ignore[return-value]

    def item_vectors(self) -> np.ndarray:
        """Song embeddings [n_items, d] (the serving index)."""
        if self.frozen and "items" in self._memo:
            return self._memo["items"]
        with torch.inference_mode():
            items = self.model.item_vectors().numpy()
        if self.frozen:
            self._memo["items"] = items
        return items

    def recommend(self, users: np.ndarray, k: int, exclude: UserItemCSR | None = None) -> np.ndarray:
        """Exact global merge (max over interests) of ``k`` songs per user; the evaluation harness's API."""
        def compute(u: np.ndarray) -> tuple[np.ndarray]:
            vecs, active, _ = self.interests(u)
            return (max_interest_topk(vecs, active, self.item_vectors(), k, exclude=exclude),)

        users = np.asarray(users, dtype=np.int64)
        if not self.frozen:
            return compute(users)[0]
        plain = self._memo.setdefault(("lists", k), _UserRows())
        if exclude is None:
            return plain.get(users, compute)[0]
        key = ("excluded", k, id(exclude), users.tobytes())
        if key not in self._memo:  # one scoring pass: the excluded lists and, for the memo, the plain ones
            vecs, active, _ = self.interests(users)
            both = np.empty((users.shape[0], k), dtype=np.int64)
            lists = max_interest_topk(vecs, active, self.item_vectors(), k, exclude=exclude, unexcluded=both)
            uniq, first = np.unique(users, return_index=True)
            plain.get(uniq, lambda u: (both[first[np.searchsorted(uniq, u)]],))
            self._memo[key] = (exclude, lists)  # the CSR is kept alive, so its id cannot be reused
        return self._memo[key][1]


def fit_mind(fit_events: pl.DataFrame, valid_targets: UserItemCSR | None, n_items: int, cfg: MINDConfig,
             side: Mapping[str, np.ndarray] | None = None, train_cfg: TrainConfig | None = None, *,
             per_user: int = 20, batch_size: int = 512, n_neg: int = 256, valid_users: int = 2000,
             resample: bool = False, name: str = "mind", data_key: str | None = None, seed: int = 0
             ) -> tuple[MINDRecall, History]:
    """Train MIND on ``fit_events`` with :func:`musicrecall.training.train`, early-stopping on the
    validation HitRate@200 (exact global merge) of up to ``valid_users`` users of ``valid_targets``
    (``valid_targets=None``: every epoch runs, no early stopping, e.g. for timing).

    An epoch is ``per_user`` target positions per user (:func:`musicrecall.sequence_data.training_examples`);
    ``resample=True`` draws fresh positions every epoch (seeded by seed and epoch), so training to convergence
    sees more of each user's log instead of the same few examples again, while an epoch (one validation)
    stays short. The negatives' popularity is the first epoch's targets' either way.

    With ``data_key`` (the dataset's content key) the run is checkpointed under :func:`mind_cache_key` of
    these arguments, so every caller that trains the same variant on the same data (notebook 04, notebook
    08's adapter, a DDP run) shares one checkpoint."""
    train_cfg = train_cfg or TrainConfig(seed=seed)
    hp = {"per_user": per_user, "batch_size": batch_size, "n_neg": n_neg, "valid_users": valid_users,
          "train": asdict(train_cfg), "seed": seed} | ({"resample": True} if resample else {})
    cache_key = None if data_key is None else mind_cache_key(data_key, name, cfg, side, hp)
    seqs = user_sequences(fit_events)
    seed_everything(train_cfg.seed)  # the initial weights, not only the training loop, follow the seed
    model = MIND(n_items, cfg, side=side, seed=seed)
    hist, target, _ = training_examples(seqs, cfg.max_len, model.pad, per_user=per_user, seed=seed)
    sampler = NegativeSampler(np.bincount(target, minlength=n_items), power=0.75, seed=seed)
    examples = {0: (torch.from_numpy(hist), torch.from_numpy(target))}
    recall = MINDRecall(model, seqs, seed)
    validate = None
    if valid_targets is not None:
        pick = np.sort(np.random.default_rng(seed).permutation(valid_targets.n_users)[:valid_users])
        sub = valid_targets.take(pick)

        def validate(m: MIND) -> float:
            if sub.n_users == 0:
                return 0.0
            return float(evaluate_topk(recall.recommend(sub.users, 200), sub, ks=(200,))["hr@200"].mean())

    def batches(epoch: int):
        if resample and epoch not in examples:  # this epoch's positions (the first epoch's are drawn above)
            examples.clear()
            h, t, _ = training_examples(seqs, cfg.max_len, model.pad, per_user=per_user,
                                        seed=int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
            examples[epoch] = (torch.from_numpy(h), torch.from_numpy(t))
        hist_t, target_t = examples[epoch if resample else 0]
        for b in minibatches(hist_t.shape[0], batch_size, seed, epoch):
            yield hist_t[b], target_t[b]

    history = train(model, batches, lambda m, b: mind_loss(m, b[0], b[1], sampler, n_neg), train_cfg,
                    validate, name=name, cache_key=cache_key, n_batches=-(-hist.shape[0] // batch_size))
    return recall, history


# --------------------------------------------------------------------------------------------------
# Notebook 04's experiment helpers: checkpoint keys, serving on later histories, clustering quality
# --------------------------------------------------------------------------------------------------


def mind_cache_key(data_key: str, name: str, cfg: MINDConfig, side: Mapping[str, np.ndarray] | None,
                   hparams: Mapping[str, object]) -> str:
    """Checkpoint key (:func:`musicrecall.training.checkpoint_key`): data hash, run name, model config, side
    features, training hyper-parameters and the code that builds the model, its examples and its loss."""
    return checkpoint_key(data_key, name, asdict(cfg), sorted(side or {}), dict(hparams),
                          code=(sys.modules[__name__], mind, sequence_data, losses))


def served_on(recall: MINDRecall, events: pl.DataFrame) -> MINDRecall:
    """The same trained model reading histories from ``events`` (e.g. train + valid at test time)."""
    return MINDRecall(recall.model, user_sequences(events), recall.seed, frozen=True)


def played_songs(events: pl.DataFrame, n_items: int, min_plays: int = 5) -> np.ndarray:
    """Song ids with at least ``min_plays`` full plays in ``events`` (embeddings that saw training data)."""
    counts = np.bincount(user_sequences(events).items, minlength=n_items)
    return np.flatnonzero(counts >= min_plays)


CLUSTER_RELATIONS = ("genre", "language", "artist", "album")  # coarse first: a genre groups many songs


def clustering_labels(codes: Mapping[str, np.ndarray], songs: np.ndarray, max_labels: int = 20,
                      min_per_label: int = 5, relations: tuple[str, ...] = CLUSTER_RELATIONS
                      ) -> tuple[str, np.ndarray, np.ndarray, str]:
    """Which catalogue relation the clustering check judges song embeddings against, on which songs.

    ``codes``: relation -> code per song id (``-1`` unknown, e.g. from
    :func:`musicrecall.kg.catalogue_relations`). The first relation of ``relations`` that labels at least
    two groups is used: all its songs when it has at most ``max_labels`` values (genre on the simulated
    world), else the songs of its ``max_labels`` most common values with at least ``min_per_label`` songs
    each (artists on a real log: k-means with thousands of clusters on a few thousand songs says nothing).
    Returns ``(relation, songs, labels, note)``; ``relation == ""`` when no check can be computed, and the
    note says why.
    """
    songs = np.asarray(songs, dtype=np.int64)
    for rel in relations:
        if rel not in codes:
            continue
        lab = np.asarray(codes[rel])[songs]
        known = songs[lab >= 0]
        vals, counts = np.unique(lab[lab >= 0], return_counts=True)
        if vals.shape[0] <= max_labels:
            pick, note = vals, f"{rel} ({vals.shape[0]} values, {known.shape[0]:,} songs)"
        else:
            big = np.argsort(-counts, kind="stable")[:max_labels]
            pick = vals[big][counts[big] >= min_per_label]
            note = (f"{rel}: the songs of its {pick.shape[0]} most common values with >= {min_per_label} songs "
                    f"each (of {vals.shape[0]:,} values)")
        mask = np.isin(np.asarray(codes[rel])[known], pick)
        if pick.shape[0] >= 2 and mask.sum() > pick.shape[0]:
            return rel, known[mask], np.asarray(codes[rel])[known[mask]], note
    have = ", ".join(r for r in relations if r in codes) or "none"
    return "", songs[:0], songs[:0], (f"no catalogue relation labels two or more groups of the {songs.shape[0]:,} "
                                      f"played songs (relations found: {have})")


def clustering_quality(vecs: np.ndarray, labels: np.ndarray, n_sample: int = 3000, seed: int = 0
                       ) -> dict[str, float]:
    """How well song embeddings group by a label (genre): cosine **silhouette** of the label partition,
    and **NMI** between k-means clusters (k = number of labels, on L2-normalised vectors) and the label.

    Silhouette is in [-1, 1] (> 0: songs are closer to their own genre than to the nearest other one);
    NMI in [0, 1]. Both on a seeded sample of ``n_sample`` songs. A score that cannot be computed (fewer
    than two labels, or no more songs than labels) is NaN *with a warning that says why*.
    """
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score, silhouette_score

    rng = np.random.default_rng(seed)
    pick = rng.permutation(vecs.shape[0])[:n_sample]
    x, y = vecs[pick].astype(np.float64), np.asarray(labels)[pick]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n_lab = int(np.unique(y).shape[0])
    if not 1 < n_lab < x.shape[0]:
        warnings.warn(f"clustering check not computable: {x.shape[0]} songs with {n_lab} distinct label(s); "
                      "silhouette and NMI need two or more labels and more songs than labels", stacklevel=2)
        return {"silhouette": float("nan"), "nmi": float("nan"), "n_songs": int(x.shape[0])}
    sil = float(silhouette_score(x, y, metric="cosine"))
    km = KMeans(n_clusters=max(n_lab, 1), n_init=3, random_state=seed).fit(x)
    return {"silhouette": sil, "nmi": float(normalized_mutual_info_score(y, km.labels_)), "n_songs": int(x.shape[0])}


def tsne_2d(vecs: np.ndarray, n_sample: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(2-d t-SNE coordinates [n, 2] of a seeded sample of L2-normalised rows, the sampled row indices)."""
    from sklearn.manifold import TSNE

    pick = np.sort(np.random.default_rng(seed).permutation(vecs.shape[0])[:n_sample])
    x = vecs[pick] / np.maximum(np.linalg.norm(vecs[pick], axis=1, keepdims=True), 1e-12)
    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3.0)))
    tsne = TSNE(2, perplexity=perplexity, init="pca", metric="cosine", max_iter=500, random_state=seed)
    return tsne.fit_transform(x), pick


def fit_and_evaluate(name: str, valid: EvalSetup, test: EvalSetup, cfg: MINDConfig,
                     side: Mapping[str, np.ndarray] | None, train_cfg: TrainConfig, *, data_key: str | None = None,
                     per_user: int = 20, batch_size: int = 512, n_neg: int = 256, valid_users: int = 2000,
                     resample: bool = False, n_boot: int = 1000) -> tuple[MINDRecall, History, pl.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Train on ``valid.fit`` (early stopping on the validation window), then serve the same model on
    histories up to the test cut and evaluate it on the test window (full catalogue, bootstrap CIs).

    Returns (the test-time recall, training history, results table, per-user metrics per kind).
    """
    recall, history = fit_mind(valid.fit, valid.targets["all"], valid.n_items, cfg, side, train_cfg,
                               per_user=per_user, batch_size=batch_size, n_neg=n_neg, valid_users=valid_users,
                               resample=resample, name=f"mind_{name}", data_key=data_key, seed=train_cfg.seed)
    served = served_on(recall, test.fit)
    if "discovery" in test.targets and test.targets["discovery"].n_users:
        # discovery first: its scoring pass also memoises the plain lists the "all" and "repeat" kinds read
        served.recommend(test.targets["discovery"].users, 200, test.exclude["discovery"])
    table, per_user_values = evaluate_recommender(name, served.recommend, test, n_boot=n_boot, seed=train_cfg.seed)
    return served, history, table, per_user_values
