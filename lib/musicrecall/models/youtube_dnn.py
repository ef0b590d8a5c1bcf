"""YouTube-DNN candidate generation (Covington, Adams & Sargin, *Deep Neural Networks for YouTube
Recommendations*, RecSys 2016), the talk's sequence-recall baseline.

Covington et al., section 3: the embeddings of the user's recent watches are **averaged** (a bag, so
order is lost), concatenated with user features (demographics; here age bucket, gender and region,
each an embedding with code 0 for "missing"), and fed to a ReLU tower whose output is the user vector
``u``. Training is extreme multiclass classification of the next watch with a sampled softmax
(section 3.1; here with the logQ correction of Yi et al. 2019, :mod:`musicrecall.models.losses`);
serving is a nearest-neighbour search of ``u`` among the softmax's song vectors (section 3.4). As
in the paper the softmax has its own song table; ``shared=True`` scores against the input table.

Training examples: every full play is a target, predicted from the plays before it (the paper's
"predicting the next watch" rather than a held-out random watch, section 3.4). Within a training
window this is a causal running mean, so one pass over a window yields all its examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class YouTubeDNN(nn.Module):
    """Mean-pooled history + user-feature embeddings -> ReLU MLP -> user vector."""

    def __init__(self, n_items: int, dim: int = 64, user_cards: Sequence[int] = (), feat_dim: int = 8,
                 hidden: Sequence[int] = (256,), dropout: float = 0.1, shared: bool = False):
        super().__init__()
        self.n_items, self.dim, self.shared = n_items, dim, shared
        self.pad = n_items
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.user_feat_emb = nn.ModuleList(nn.Embedding(c, feat_dim) for c in user_cards)
        layers: list[nn.Module] = []
        width = dim + feat_dim * len(user_cards)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*layers)
        self.out_emb = None if shared else nn.Embedding(n_items, dim)
        nn.init.normal_(self.item_emb.weight, std=1.0 / math.sqrt(dim))
        if self.out_emb is not None:
            nn.init.normal_(self.out_emb.weight, std=1.0 / math.sqrt(dim))
        with torch.no_grad():
            self.item_emb.weight[self.pad].zero_()

    def item_table(self) -> torch.Tensor:
        """The softmax's song vectors ``[n_items, d]``."""
        return self.item_emb.weight[: self.n_items] if self.out_emb is None else self.out_emb.weight

    def _features(self, user_feats: torch.Tensor | None, shape: tuple[int, ...]) -> list[torch.Tensor]:
        if not len(self.user_feat_emb):
            return []
        if user_feats is None:
            raise ValueError("this YouTubeDNN was built with user features; pass user_feats")
        return [emb(user_feats[:, j]).unsqueeze(1).expand(*shape, -1) for j, emb in enumerate(self.user_feat_emb)]

    def sequence_output(self, items: torch.Tensor, user_feats: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, d]``: the user vector from the running mean of plays ``<= t`` (order-free within it)."""
        real = (items != self.pad).unsqueeze(-1).float()
        summed = torch.cumsum(self.item_emb(items) * real, dim=1)
        pooled = summed / torch.cumsum(real, dim=1).clamp(min=1.0)
        return self.mlp(torch.cat([pooled, *self._features(user_feats, tuple(items.shape))], dim=-1))

    def user_vecs(self, items: torch.Tensor, user_feats: torch.Tensor | None = None) -> torch.Tensor:
        """The user vector from the mean of the whole history."""
        real = (items != self.pad).unsqueeze(-1).float()
        pooled = (self.item_emb(items) * real).sum(1) / real.sum(1).clamp(min=1.0)
        feats = [f[:, 0] for f in self._features(user_feats, (items.shape[0], 1))]
        return self.mlp(torch.cat([pooled, *feats], dim=-1))
