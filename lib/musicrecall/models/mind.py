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

This file holds the model and its loss only; training, serving (interest vectors, the global merge) and
notebook 04's experiment are in :mod:`musicrecall.multi_interest`, its training examples in
:mod:`musicrecall.sequence_data`, its hyper-parameters in :data:`musicrecall.models.recipes.MIND`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicrecall.models.losses import NegativeSampler, in_batch_softmax_loss

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
        u_sg_t = u_sg.transpose(1, 2)
        b = self.initial_logits(u_hat.shape[0])
        # the masks are built once, not per iteration: softmax axis masked out, then every invalid pair zeroed
        off, dim = (~k_mask[:, :, None], 1) if self.axis == "interest" else (~seq_mask[:, None, :], 2)
        invalid = ~(seq_mask[:, None, :] & k_mask[:, :, None])  # [B, K, L]
        caps = u_hat.new_zeros(u_hat.shape[0], self.k_max, u_hat.shape[-1])
        for it in range(self.iters):
            last = it == self.iters - 1
            w = torch.softmax(b.masked_fill(off, float("-inf")), dim=dim).masked_fill_(invalid, 0.0)
            caps = squash(torch.bmm(w, u_hat if last else u_sg))
            if not last:
                b = torch.baddbmm(b, caps.detach(), u_sg_t)  # b + u_jᵀ û_i in one call
        agree = torch.bmm(caps.detach(), u_sg_t) if agreement else None
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
        uniq, inv = unique_ids(hist, self.n_items + 1)
        return gather_rows(self.routing.bilinear(self.item_embed(uniq)), inv)

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


def unique_ids(ids: torch.Tensor, n_ids: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(ids, return_inverse=True)`` for ids in ``[0, n_ids)``, by marking a table of ``n_ids``
    flags instead of sorting: the same sorted distinct ids and inverse, O(n_ids + len(ids)) (0.7 ms
    against 2.4 ms for the ~32k ids of a MIND batch of 1,024 on 30k songs, one thread)."""
    flat = ids.reshape(-1)
    seen = torch.zeros(n_ids, dtype=torch.bool)
    seen[flat] = True
    uniq = torch.nonzero(seen).squeeze(1)
    slot = torch.cumsum(seen, 0) - 1  # rank of each present id among the present ids
    return uniq, slot[flat].view(ids.shape)


def gather_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for an index tensor of any shape, through ``index_select``: the same values and
    gradients, but the backward pass is a plain ``index_add_`` rather than advanced indexing's
    accumulating ``index_put_`` (about half the CPU of ``table[idx]`` forward and backward for the
    30,720 history rows of a MIND batch, one thread)."""
    return torch.index_select(table, 0, idx.reshape(-1)).view(*idx.shape, table.shape[-1])


class BatchItemTable:
    """Row access ``table[ids]`` to the embeddings ``vecs`` of the sorted distinct songs ``uniq`` of one batch."""

    def __init__(self, uniq: torch.Tensor, vecs: torch.Tensor):
        self.uniq, self.vecs = uniq, vecs

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        return gather_rows(self.vecs, torch.searchsorted(self.uniq, ids))


def mind_loss(model: MIND, hist: torch.Tensor, target: torch.Tensor, sampler: NegativeSampler,
              n_neg: int = 256) -> torch.Tensor:
    """Sampled softmax (logQ-corrected, with in-batch negatives) of the label-aware user vector.

    Every distinct song of the batch (history, targets, negatives) is embedded once (side info makes an
    embedding a concatenation and a projection); the interest weights, which only serving uses, are skipped.
    """
    neg = sampler.sample(n_neg)
    uniq, inv = unique_ids(torch.cat([hist.reshape(-1), target, neg]), model.n_items + 1)
    e = model.item_embed(uniq)
    u_hat = gather_rows(model.routing.bilinear(e), inv[:hist.numel()].view(hist.shape))
    vecs, k_mask, _ = model.interests(hist, weights=False, u_hat=u_hat)
    table = BatchItemTable(uniq, e)
    user = model.label_aware(vecs, k_mask, table[target])
    # the sampled softmax with in-batch negatives, built block by block (no [B, B + n_neg] logits at once)
    return in_batch_softmax_loss(user, target, table, sampler.log_q, neg)  # type: ignore[arg-type]
