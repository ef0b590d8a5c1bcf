"""Two-tower DSSM for retrieval: a user tower and an item tower scored by inner product.

DSSM: Huang et al., *Learning Deep Structured Semantic Models for Web Search using Clickthrough
Data*, CIKM 2013. As a recommendation retrieval model with a sampled softmax, in-batch negatives and
the logQ correction: Yi et al., *Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations*, RecSys 2019 (the loss is :func:`musicrecall.models.losses.sampled_softmax_loss`).

* :class:`ItemTower` (party A, music): song id + artist, album, genre, language, version, release
  decade and duration bucket embeddings -> MLP -> ``dim``, plus a per-song bias (popularity).
* :class:`UserTower` (party B in the federated set-up, or everything in the centralised one): an MLP
  on dense user features.
* :class:`DSSM` joins them; its user tower may be a local :class:`UserTower` (centralised upper bound)
  or a :class:`musicrecall.federated.split.RemoteUserTower` behind the channel (split learning). The
  user vector is extended with a constant 1 so that ``<[u, 1], [v, b]> = <u, v> + b``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from musicrecall.models.losses import NegativeSampler, in_batch_softmax_loss, sampled_softmax_loss

ITEM_FIELDS = ("song_id", "artist", "album", "genre", "language", "version", "decade", "duration_bucket")
AGE_BUCKETS = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")


def item_feature_matrix(items: pl.DataFrame) -> tuple[np.ndarray, list[int]]:
    """Integer codes ``[n_items, n_fields]`` (rows by ``song_id``) and each field's cardinality."""
    df = items.sort("song_id").with_columns(
        decade=(pl.col("release_year").fill_null(0) // 10),
        duration_bucket=(pl.col("duration_ms").fill_null(0) // 60_000).clip(0, 12),
    )
    cols = [(pl.col(c).rank("dense") - 1).cast(pl.Int64).alias(c) if c != "song_id" else pl.col(c).cast(pl.Int64)
            for c in ITEM_FIELDS]
    codes = df.select(cols).fill_null(0).to_numpy().astype(np.int64)
    return codes, [int(c) + 1 for c in codes.max(axis=0)]


def dense_user_features(table: pl.DataFrame, age_col: str, float_cols: list[str]) -> np.ndarray:
    """Float32 ``[n, len(float_cols) + 6]``: the float columns and a one-hot age bucket (zeros if null)."""
    age = table[age_col].replace_strict(list(AGE_BUCKETS), list(range(len(AGE_BUCKETS))), default=-1)
    onehot = (age.to_numpy()[:, None] == np.arange(len(AGE_BUCKETS))[None, :]).astype(np.float32)
    dense = table.select(float_cols).to_numpy().astype(np.float32) if float_cols else np.zeros((table.height, 0),
                                                                                               np.float32)
    return np.hstack([dense, onehot])


def demographic_features(users: pl.DataFrame) -> np.ndarray:
    """Party A's sparse demographics as float32 one-hots (age bucket, gender, region; all zero when null)."""
    parts = [dense_user_features(users, "age_bucket", [])]
    for col in ("gender", "region"):
        codes = users[col].to_physical() if users[col].dtype == pl.Categorical else users[col]
        cats = sorted(codes.drop_nulls().unique().to_list())
        idx = codes.replace_strict(cats, list(range(len(cats))), default=-1).to_numpy()
        parts.append((idx[:, None] == np.arange(len(cats))[None, :]).astype(np.float32))
    return np.hstack(parts)


class UserTower(nn.Module):
    """MLP user tower on dense features: ``Linear -> ReLU -> Linear`` (Huang et al. 2013)."""

    def __init__(self, n_in: int, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ItemTower(nn.Module):
    """Item tower on party A's song features; returns ``[v, b]`` (``dim + 1`` columns)."""

    def __init__(self, codes: np.ndarray, cards: list[int], dim: int = 32, field_dim: int = 16, hidden: int = 64):
        super().__init__()
        self.register_buffer("codes", torch.as_tensor(codes, dtype=torch.long))
        self.register_buffer("offsets", torch.as_tensor(np.concatenate([[0], np.cumsum(cards)[:-1]]),
                                                        dtype=torch.long))
        self.emb = nn.Embedding(int(sum(cards)), field_dim)
        nn.init.normal_(self.emb.weight, std=0.05)
        self.mlp = nn.Sequential(nn.Linear(field_dim * len(cards), hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.bias = nn.Embedding(codes.shape[0], 1)
        nn.init.zeros_(self.bias.weight)

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        x = self.emb(self.codes[items] + self.offsets).flatten(1)
        return torch.cat([self.mlp(x), self.bias(items)], dim=1)

    def all_items(self, batch: int = 65536) -> torch.Tensor:
        """Vectors of the whole catalogue (for the nearest-neighbour index)."""
        ids = torch.arange(self.n_items)
        return torch.cat([self(ids[i:i + batch]) for i in range(0, self.n_items, batch)])


def extend_user(u: torch.Tensor) -> torch.Tensor:
    """``[u, 1]`` so the item bias enters the inner product."""
    return torch.cat([u, torch.ones(u.shape[0], 1, dtype=u.dtype)], dim=1)


class _SubSampler:
    """A sampler over a sub-catalogue whose negatives were drawn in advance (duck-types NegativeSampler)."""

    def __init__(self, log_q: torch.Tensor, neg_local: torch.Tensor):
        self.log_q, self._neg = log_q, neg_local

    def sample(self, n: int) -> torch.Tensor:
        return self._neg[:n]


def retrieval_loss(user_vecs: torch.Tensor, pos_items: torch.Tensor, item_tower: ItemTower,
                   sampler: NegativeSampler, n_neg: int = 256, in_batch: bool = True) -> torch.Tensor:
    """Sampled softmax with logQ (+ in-batch negatives) computing item vectors only for the songs used.

    The negatives are drawn from ``sampler`` as in :func:`sampled_softmax_loss`; only the union of
    positives and negatives goes through the item tower (a sub-catalogue), which is exact because the
    loss only ever reads those rows.
    """
    if in_batch:  # one head of shared_retrieval_losses: the same draws, the same loss
        return shared_retrieval_losses([(user_vecs, pos_items)], item_tower, sampler, n_neg)[0]
    neg = sampler.sample(n_neg)
    used, inverse = torch.unique(torch.cat([pos_items, neg]), return_inverse=True)
    sub = _SubSampler(sampler.log_q[used], inverse[pos_items.shape[0]:])
    return sampled_softmax_loss(extend_user(user_vecs), inverse[:pos_items.shape[0]], item_tower(used), sub,
                                n_neg=n_neg, in_batch=False)


def shared_retrieval_losses(heads: list[tuple[torch.Tensor, torch.Tensor]], item_tower: ItemTower,
                            sampler: NegativeSampler, n_neg: int = 256) -> list[torch.Tensor]:
    """:func:`retrieval_loss` of several ``(user_vecs, pos_items)`` heads of one batch (MMoE's tasks),
    with one pass of the item tower over the union of their songs.

    The same losses as one :func:`retrieval_loss` call per head, in order (each head draws its own
    ``n_neg`` negatives from ``sampler``, in the same order): a head's loss only reads the rows of its
    positives and negatives, which a larger sub-catalogue holds too. One item-tower pass instead of one
    per head means one dense embedding backward per step instead of three (zero-filling the embedding
    table's gradient was ~20% of an MMoE step at batch 512)."""
    negs = [sampler.sample(n_neg) for _ in heads]
    sizes = [p.shape[0] for _, p in heads] + [n.shape[0] for n in negs]
    used, inverse = torch.unique(torch.cat([p for _, p in heads] + negs), return_inverse=True)
    items, log_q = item_tower(used), sampler.log_q[used]
    local = inverse.split(sizes)
    out = []
    for (u, _), pos_local, neg_local in zip(heads, local[:len(heads)], local[len(heads):], strict=True):
        if pos_local.shape[0] > 1:
            out.append(in_batch_softmax_loss(extend_user(u), pos_local, items, log_q, neg_local))
        else:
            out.append(sampled_softmax_loss(extend_user(u), pos_local, items, _SubSampler(log_q, neg_local),
                                            n_neg=n_neg))
    return out


class DSSM(nn.Module):
    """Two towers; ``user_tower`` maps a batch's user input (features, or aligned ids) to vectors."""

    def __init__(self, user_tower: nn.Module, item_tower: ItemTower):
        super().__init__()
        self.user_tower, self.item_tower = user_tower, item_tower

    def user_vecs(self, user_input) -> torch.Tensor:
        """Serving vectors ``[u, 1]``."""
        return extend_user(self.user_tower(user_input))

    def loss(self, user_input, rows: torch.Tensor, pos_items: torch.Tensor, sampler: NegativeSampler,
             n_neg: int = 256) -> torch.Tensor:
        """DSSM loss of a batch: user vectors of the batch's users, gathered per positive row."""
        return retrieval_loss(self.user_tower(user_input)[rows], pos_items, self.item_tower, sampler, n_neg)
