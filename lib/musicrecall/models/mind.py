"""MIND: Multi-Interest Network with Dynamic routing (Li et al., CIKM 2019, arXiv:1904.08030), with the
two changes of QQ Music's talk (DataFunTalk, section 2.2).

**Embedding layer.** A song is its id embedding, optionally concatenated with any number of
categorical side-feature embeddings (genre, language, ...) and projected back to ``dim``:
``e_i = W_p [x_id ; x_genre ; x_lang ; ...]``. The same map embeds behaviours and labels, so the
serving index holds ``e_i`` for every song. (DeepMatch's MIND takes one side feature only.)

**Behaviour-to-interest (B2I) dynamic routing.** Low-level capsules are the history embeddings
``e_i``; one *shared* bilinear map ``S`` gives ``û_i = S e_i``. With routing logits ``b_ij``
(behaviour ``i``, interest ``j``), three iterations of

    w_ij = softmax(b_ij)            over interests j (ComiRec's code) or over behaviours i (most ports)
    z_j  = Σ_i w_ij û_i,   u_j = squash(z_j) = |z_j|² / (1 + |z_j|²) · z_j / |z_j|
    b_ij ← b_ij + u_jᵀ û_i          (computed on a stop-gradient copy of û: no gradient through b)

give the interest capsules ``u_j`` (|u_j| < 1). The last iteration uses ``û`` with gradient.
**Dynamic K**: a user with ``n`` behaviours gets ``K_u = max(1, min(K_max, ⌊log2(1 + n)⌋))`` active
interests; the others are masked out of routing, attention and serving.

**Routing-logit initialisation** (the talk's "re-initialise the routing logits"):
``routing_init="fixed"`` draws ``b⁰ ~ N(0, σ²)`` once and shares it across users and calls (as
DeepMatch's MIND did before v0.2.1: logits created once in ``build()``, DeepMatch issues #44/#75);
``routing_init="redraw"`` draws a fresh ``b⁰ ~ N(0, σ²)`` per user at every forward pass, as Algorithm 1
of the paper writes it (and torch-rechub's ``CapsuleNetwork`` does). Some initialisation that differs
between interests is needed: with one shared bilinear map, capsules that start from equal logits get equal
updates and never separate.

**Routing axis**: ``routing_axis="interest"`` normalises ``b_ij`` over interests (ComiRec's code, capsule
networks), ``"sequence"`` over behaviours (most PyTorch ports). Notebook 04 trains both and keeps the better
on the validation window (on the small world: over interests).

**Interest vectors** ``v_j = H(u_j)`` (two ReLU-free-at-output dense layers, as MIND's H layers).
**Label-aware attention** (training only): ``v_u = Σ_j softmax_j(pow(v_jᵀ e_y, p)) v_j``; the
power is sign-preserving, ``sign(s)|s|^p``, so negative affinities stay below positive ones for any
``p`` (the paper's ``pow`` is only defined for ``s ≥ 0`` at non-integer ``p``). ``p → 0`` averages
the interests, ``p → ∞`` is hard attention. Trained with the sampled softmax + logQ correction of
:mod:`musicrecall.models.losses`.

**Interest weights** (for per-interest serving quotas): the share of a user's behaviours whose
closest capsule (final agreement ``u_jᵀ û_i``) is interest ``j``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from musicrecall.evaluation import EvalSetup, UserItemCSR, evaluate_recommender
from musicrecall.models.losses import NegativeSampler, sampled_softmax_loss
from musicrecall.sequence_data import Sequences, last_histories, training_examples, user_sequences
from musicrecall.training import History, TrainConfig, checkpoint_key, minibatches, seed_everything, train

ROUTING_AXES = ("interest", "sequence")
ROUTING_INITS = ("fixed", "redraw")


def squash(z: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Capsule squash (Sabour et al., NIPS 2017): keeps the direction, maps the norm to ``|z|²/(1+|z|²)`` < 1."""
    n2 = (z * z).sum(-1, keepdim=True)
    return z * (n2 / (1.0 + n2) / torch.sqrt(n2 + eps))


def dynamic_k(lengths: torch.Tensor, k_max: int) -> torch.Tensor:
    """``K_u = max(1, min(k_max, floor(log2(1 + n_u))))`` active interests per user (MIND, eq. 9)."""
    k = torch.floor(torch.log2(1.0 + lengths.to(torch.float32)))
    return k.clamp(min=1, max=k_max).to(torch.long)


def signed_power(s: torch.Tensor, p: float) -> torch.Tensor:
    """``sign(s) |s|^p``: MIND's ``pow(·, p)`` extended to negative affinities, monotone in ``s``."""
    return torch.sign(s) * torch.abs(s).pow(p)


@dataclass(frozen=True)
class MINDConfig:
    """Hyper-parameters of :class:`MIND`."""

    dim: int = 64
    k_max: int = 4
    max_len: int = 50
    iters: int = 3
    routing_axis: str = "interest"  # softmax over interests (ComiRec code) or over the sequence
    routing_init: str = "fixed"  # "fixed": one shared N(0, σ²) draw; "redraw": new draw every forward
    sigma: float = 1.0
    pow_p: float = 2.0
    side_dim: int = 16
    hidden: int = 128


class CapsuleRouting(nn.Module):
    """B2I dynamic routing with a shared bilinear map (MIND, section 4.2.1)."""

    def __init__(self, dim: int, k_max: int, max_len: int, iters: int = 3, axis: str = "interest",
                 init: str = "fixed", sigma: float = 1.0, seed: int = 0):
        super().__init__()
        if axis not in ROUTING_AXES or init not in ROUTING_INITS:
            raise ValueError(f"axis in {ROUTING_AXES}, init in {ROUTING_INITS}; got {axis!r}, {init!r}")
        self.k_max, self.max_len, self.iters, self.axis, self.init, self.sigma = k_max, max_len, iters, axis, init, sigma
        self.bilinear = nn.Linear(dim, dim, bias=False)  # S, shared by every (behaviour, interest) pair
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("b0", torch.randn(1, k_max, max_len, generator=gen) * sigma)

    def initial_logits(self, batch: int) -> torch.Tensor:
        """``b⁰`` [B, K_max, L]: the fixed shared draw, or a fresh N(0, σ²) draw per call."""
        if self.init == "redraw":
            return torch.randn(batch, self.k_max, self.max_len, device=self.b0.device) * self.sigma
        return self.b0.expand(batch, -1, -1)

    def forward(self, e: torch.Tensor, seq_mask: torch.Tensor, k_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``e`` [B, L, d], ``seq_mask`` [B, L], ``k_mask`` [B, K] -> (capsules [B, K, d], agreement [B, K, L])."""
        return self.route(self.bilinear(e), seq_mask, k_mask)

    def route(self, u_hat: torch.Tensor, seq_mask: torch.Tensor, k_mask: torch.Tensor, agreement: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Dynamic routing from ``û = S e`` [B, L, d] (already mapped): (capsules [B, K, d], final agreement
        ``u_jᵀ û_i`` [B, K, L], or ``None`` with ``agreement=False``: training does not need it)."""
        u_sg = u_hat.detach()  # routing logits never carry gradient
        b = self.initial_logits(u_hat.shape[0])
        valid = seq_mask[:, None, :] & k_mask[:, :, None]  # [B, K, L]
        caps = u_hat.new_zeros(u_hat.shape[0], self.k_max, u_hat.shape[-1])
        for it in range(self.iters):
            last = it == self.iters - 1
            if self.axis == "interest":
                w = torch.softmax(b.masked_fill(~k_mask[:, :, None], float("-inf")), dim=1)
            else:
                w = torch.softmax(b.masked_fill(~seq_mask[:, None, :], float("-inf")), dim=2)
            w = w.masked_fill(~valid, 0.0)
            caps = squash(torch.bmm(w, u_hat if last else u_sg))
            if not last:
                b = b + torch.bmm(caps.detach(), u_sg.transpose(1, 2))
        agree = torch.bmm(caps.detach(), u_sg.transpose(1, 2)) if agreement else None
        return caps * k_mask[:, :, None], agree


class MIND(nn.Module):
    """MIND user tower + item embedding (see the module docstring for the formulas)."""

    def __init__(self, n_items: int, cfg: MINDConfig = MINDConfig(),
                 side: Mapping[str, np.ndarray] | None = None, seed: int = 0):
        super().__init__()
        self.n_items, self.cfg = n_items, cfg
        self.pad = n_items
        self.id_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=n_items)
        nn.init.normal_(self.id_emb.weight, std=0.1)
        self.side_names = tuple(side or {})
        self.side_emb = nn.ModuleDict()
        for name, codes in (side or {}).items():
            codes = torch.as_tensor(np.append(np.asarray(codes, dtype=np.int64), 0))  # pad row -> code 0
            self.register_buffer(f"codes_{name}", codes)
            self.side_emb[name] = nn.Embedding(int(codes.max()) + 1, cfg.side_dim)
        self.proj = nn.Linear(cfg.dim + cfg.side_dim * len(self.side_names), cfg.dim) if self.side_names else None
        self.routing = CapsuleRouting(cfg.dim, cfg.k_max, cfg.max_len, cfg.iters, cfg.routing_axis,
                                      cfg.routing_init, cfg.sigma, seed)
        self.h = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim))

    def item_embed(self, ids: torch.Tensor) -> torch.Tensor:
        """``e_i``: the id embedding, with side features concatenated and projected when present."""
        x = self.id_emb(ids)
        if self.proj is None:
            return x
        parts = [x] + [self.side_emb[n](getattr(self, f"codes_{n}")[ids]) for n in self.side_names]
        return self.proj(torch.cat(parts, dim=-1))

    def item_vectors(self) -> torch.Tensor:
        """Embeddings of every song [n_items, dim] (what the serving index holds)."""
        return self.item_embed(torch.arange(self.n_items))

    def mapped_history(self, hist: torch.Tensor) -> torch.Tensor:
        """``û_i = S e_i`` for every position of ``hist`` [B, L] -> [B, L, d].

        Both maps are per song, so each *distinct* song of the batch is embedded and mapped once and the
        result gathered (a batch of 1,024 x 30 plays holds far fewer distinct songs; the same values, and
        gradients reach the same rows).
        """
        uniq, inv = torch.unique(hist, return_inverse=True)
        return self.routing.bilinear(self.item_embed(uniq))[inv]

    def interests(self, hist: torch.Tensor, weights: bool = True, u_hat: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``hist`` [B, L] (pad = n_items) -> (interest vectors [B, K, d], active [B, K], weights [B, K]).

        ``weights=False`` skips the interest weights (serving quotas only; ``None`` is returned); ``u_hat``:
        the history already mapped (:meth:`mapped_history`), e.g. by a loss that embeds its songs once.
        """
        seq_mask = hist != self.pad
        k_u = dynamic_k(seq_mask.sum(1), self.cfg.k_max)
        k_mask = torch.arange(self.cfg.k_max)[None, :] < k_u[:, None]
        u_hat = self.mapped_history(hist) if u_hat is None else u_hat
        caps, agreement = self.routing.route(u_hat, seq_mask, k_mask, agreement=weights)
        vecs = self.h(caps) * k_mask[:, :, None]
        if agreement is None:
            return vecs, k_mask, None
        best = agreement.masked_fill(~k_mask[:, :, None], float("-inf")).argmax(1)  # [B, L]
        counts = F.one_hot(best, self.cfg.k_max).mul(seq_mask[:, :, None]).sum(1).to(torch.float32)
        return vecs, k_mask, counts / counts.sum(1, keepdim=True).clamp(min=1.0)

    def label_aware(self, vecs: torch.Tensor, k_mask: torch.Tensor, target_vecs: torch.Tensor) -> torch.Tensor:
        """``Σ_j softmax_j(sign(s)|s|^p) v_j`` with ``s_j = v_jᵀ e_y`` over the active interests."""
        # float64 and a finite cap: |s|^p overflows float32 for large p (inf - inf = NaN in the softmax)
        s = signed_power((vecs * target_vecs[:, None, :]).sum(-1).double(), self.cfg.pow_p)
        s = torch.nan_to_num(s, posinf=1e300, neginf=-1e300)
        att = torch.softmax(s.masked_fill(~k_mask, float("-inf")), dim=1).to(vecs.dtype)
        return (att[:, :, None] * vecs).sum(1)


class BatchItemTable:
    """Row access ``table[ids]`` to the embeddings ``vecs`` of the sorted distinct songs ``uniq`` of one batch."""

    def __init__(self, uniq: torch.Tensor, vecs: torch.Tensor):
        self.uniq, self.vecs = uniq, vecs

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.vecs[torch.searchsorted(self.uniq, ids)]


def mind_loss(model: MIND, hist: torch.Tensor, target: torch.Tensor, sampler: NegativeSampler,
              n_neg: int = 256) -> torch.Tensor:
    """Sampled softmax (logQ-corrected, with in-batch negatives) of the label-aware user vector.

    Every distinct song of the batch (history, targets, negatives) is embedded once (side info makes an
    embedding a concatenation and a projection); the interest weights, which only serving uses, are skipped.
    """
    neg = sampler.sample(n_neg)
    uniq, inv = torch.unique(torch.cat([hist.reshape(-1), target, neg]), return_inverse=True)
    e = model.item_embed(uniq)
    u_hat = model.routing.bilinear(e)[inv[:hist.numel()]].view(*hist.shape, -1)
    vecs, k_mask, _ = model.interests(hist, weights=False, u_hat=u_hat)
    table = BatchItemTable(uniq, e)
    user = model.label_aware(vecs, k_mask, table[target])
    return sampled_softmax_loss(user, target, table, sampler, n_neg=n_neg, neg=neg)  # type: ignore[arg-type]


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
                      exclude: UserItemCSR | None = None, batch: int | None = None) -> np.ndarray:
    """Exact top-``k`` by ``max_j v_jᵀ e_i`` over active interests (the global merge, without an index).

    ``exclude`` (rows aligned with ``vecs``) removes each user's songs from the ranking. The maximum over
    interests is kept as a running maximum of one ``[batch, n_items]`` score block per interest (two
    preallocated buffers), never a ``[batch, K, n_items]`` tensor: the scoring is memory-bound, and the large
    temporaries cost more than the matrix products (``batch`` defaults to about 8M scores per block).
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
        if exclude is not None:
            lo, hi = exclude.indptr[i], exclude.indptr[j]
            rows = np.repeat(np.arange(j - i), np.diff(exclude.indptr[i:j + 1]))
            s[torch.from_numpy(rows), torch.from_numpy(exclude.indices[lo:hi])] = float("-inf")
        out[i:j] = torch.topk(s, k, dim=1).indices.numpy()
    return out


def hit_rate(lists: np.ndarray, targets: UserItemCSR) -> float:
    """Share of rows of ``lists`` (aligned with ``targets``) with at least one target song."""
    return float(_row_hits(lists, targets).mean()) if lists.shape[0] else 0.0


def _row_hits(lists: np.ndarray, targets: UserItemCSR) -> np.ndarray:
    base = int(max(lists.max(initial=0), targets.indices.max(initial=0))) + 2
    keys = np.arange(lists.shape[0], dtype=np.int64)[:, None] * base + lists + 1
    return np.isin(keys, targets.row_ids() * base + targets.indices + 1).any(1)


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
        if not self.frozen or exclude is not None:
            return compute(users)[0]
        return self._memo.setdefault(("lists", k), _UserRows()).get(users, compute)[0]


def fit_mind(fit_events: pl.DataFrame, valid_targets: UserItemCSR | None, n_items: int, cfg: MINDConfig,
             side: Mapping[str, np.ndarray] | None = None, train_cfg: TrainConfig | None = None, *,
             per_user: int = 20, batch_size: int = 512, n_neg: int = 256, valid_users: int = 2000,
             name: str = "mind", data_key: str | None = None, seed: int = 0) -> tuple[MINDRecall, History]:
    """Train MIND on ``fit_events`` with :func:`musicrecall.training.train`, early-stopping on the
    validation HitRate@200 (exact global merge) of up to ``valid_users`` users of ``valid_targets``
    (``valid_targets=None``: every epoch runs, no early stopping, e.g. for timing).

    With ``data_key`` (the dataset's content key) the run is checkpointed under :func:`mind_cache_key` of
    these arguments, so every caller that trains the same variant on the same data (notebook 04, notebook
    08's adapter, a DDP run) shares one checkpoint."""
    train_cfg = train_cfg or TrainConfig(seed=seed)
    hp = {"per_user": per_user, "batch_size": batch_size, "n_neg": n_neg, "valid_users": valid_users,
          "train": asdict(train_cfg), "seed": seed}
    cache_key = None if data_key is None else mind_cache_key(data_key, name, cfg, side, hp)
    seqs = user_sequences(fit_events)
    seed_everything(train_cfg.seed)  # the initial weights, not only the training loop, follow the seed
    model = MIND(n_items, cfg, side=side, seed=seed)
    hist, target, _ = training_examples(seqs, cfg.max_len, model.pad, per_user=per_user, seed=seed)
    sampler = NegativeSampler(np.bincount(target, minlength=n_items), power=0.75, seed=seed)
    hist_t, target_t = torch.from_numpy(hist), torch.from_numpy(target)
    recall = MINDRecall(model, seqs, seed)
    validate = None
    if valid_targets is not None:
        pick = np.sort(np.random.default_rng(seed).permutation(valid_targets.n_users)[:valid_users])
        sub = _subset(valid_targets, pick)

        def validate(m: MIND) -> float:
            return hit_rate(recall.recommend(sub.users, 200), sub)

    def batches(epoch: int):
        for b in minibatches(hist.shape[0], batch_size, seed, epoch):
            yield hist_t[b], target_t[b]

    history = train(model, batches, lambda m, b: mind_loss(m, b[0], b[1], sampler, n_neg), train_cfg,
                    validate, name=name, cache_key=cache_key, n_batches=-(-hist.shape[0] // batch_size))
    return recall, history


def _subset(t: UserItemCSR, rows: np.ndarray) -> UserItemCSR:
    """Rows ``rows`` of a CSR."""
    sizes = np.diff(t.indptr)[rows]
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    idx = np.repeat(t.indptr[rows] - indptr[:-1], sizes) + np.arange(indptr[-1])
    return UserItemCSR(t.users[rows], indptr, t.indices[idx])


# --------------------------------------------------------------------------------------------------
# Notebook 04's experiment helpers: checkpoint keys, serving on later histories, clustering quality
# --------------------------------------------------------------------------------------------------


def mind_cache_key(data_key: str, name: str, cfg: MINDConfig, side: Mapping[str, np.ndarray] | None,
                   hparams: Mapping[str, object]) -> str:
    """Checkpoint key (:func:`musicrecall.training.checkpoint_key`): data hash, run name, model config, side
    features, training hyper-parameters and the code that builds the model, its examples and its loss."""
    import sys

    from musicrecall import sequence_data
    from musicrecall.models import losses

    return checkpoint_key(data_key, name, asdict(cfg), sorted(side or {}), dict(hparams),
                          code=(sys.modules[__name__], sequence_data, losses))


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
                     n_boot: int = 1000) -> tuple[MINDRecall, History, pl.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Train on ``valid.fit`` (early stopping on the validation window), then serve the same model on
    histories up to the test cut and evaluate it on the test window (full catalogue, bootstrap CIs).

    Returns (the test-time recall, training history, results table, per-user metrics per kind).
    """
    recall, history = fit_mind(valid.fit, valid.targets["all"], valid.n_items, cfg, side, train_cfg,
                               per_user=per_user, batch_size=batch_size, n_neg=n_neg, valid_users=valid_users,
                               name=f"mind_{name}", data_key=data_key, seed=train_cfg.seed)
    served = served_on(recall, test.fit)
    table, per_user_values = evaluate_recommender(name, served.recommend, test, n_boot=n_boot, seed=train_cfg.seed)
    return served, history, table, per_user_values
