"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), as used by the talk.

The talk (section 2.2) serves SASRec "with shared item/user embeddings": the user vector is the last
position's output of a causal self-attention stack over the last N full plays, and it is scored
against **the same item-embedding table as the input** (Kang & McAuley, section III-D, "shared item
embedding"). ``shared=False`` gives the ablation with a separate output table.

Architecture (Kang & McAuley, section III, as in their TensorFlow code and its PyTorch port
SASRec.pytorch, whose layout the parity bench ``bench/bench_recbole_parity.py`` checks):

* input ``E = sqrt(d) * M[s_t] + P[t]``: item embedding (optionally plus side-info embeddings, e.g.
  genre and language) and a **learned** positional embedding, dropout;
* ``n_blocks`` blocks of causal self-attention and a point-wise feed-forward network. Layer norm is
  applied to the **queries only** (``Q = LN(x)``, keys and values are ``x`` itself) and the residual
  adds to the normalised queries, then ``x = LN(x); x = x + FFN(x)`` (the reference's layout; a
  pre-norm block that also normalised keys and values trained worse on MovieLens and the world);
* position ``t`` attends to positions ``<= t`` only (no look-ahead), and never to padding;
* the output at position ``t`` (after a last layer norm) predicts the song at ``t + 1`` by inner
  product with the item table;
* weights start as the reference's (``xavier_normal_`` on every matrix, padding row zero): item
  vectors of std ``sqrt(2 / (n_items + d))``, so positions are visible next to the ``sqrt(d)``-scaled
  item embedding from the first step (a ``1/sqrt(d)`` item init drowned the ``0.02`` positions).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(items: torch.Tensor, pad: int) -> torch.Tensor:
    """Boolean ``[B, 1, L, L]`` mask, True where query ``i`` may attend to key ``j``: ``j <= i`` and
    ``j`` is a real play (a padded query attends to itself only, so no row is empty)."""
    length = items.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    real_key = (items != pad).unsqueeze(1)  # [B, 1, L]
    eye = torch.eye(length, dtype=torch.bool, device=items.device)
    return ((causal & real_key) | eye).unsqueeze(1)


class _Block(nn.Module):
    """Causal multi-head self-attention + point-wise feed-forward, the reference's layer norms:
    ``Q = LN1(x); x = Q + Attn(Q, x, x); x = LN2(x); x = x + FFN(x)`` (no layer norm on keys/values)."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-8), nn.LayerNorm(dim, eps=1e-8)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim),
                                 nn.Dropout(dropout))
        self.p = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``[B, L, d]``; with ``last_only`` only the last position's output ``[B, 1, d]`` (its query
        against every key: the same values as the last row of the full output, at ~1/L of the cost of
        the queries, projection and feed-forward)."""
        b, length, d = x.shape
        h = self.n_heads
        queries = self.ln1(x[:, -1:] if last_only else x)
        n_q = queries.shape[1]
        q = self.q(queries).view(b, n_q, h, d // h).transpose(1, 2)
        k, v = self.kv(x).view(b, length, 2, h, d // h).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, :, -n_q:],
                                             dropout_p=self.p if self.training else 0.0)
        x = queries + self.proj(att.transpose(1, 2).reshape(b, n_q, d))
        x = self.ln2(x)
        return x + self.ffn(x)


class SASRec(nn.Module):
    """Causal self-attention over a left-padded history; user vector = last position's output.

    ``item_side`` (int64 ``[n_items, n_side]``, 0 = missing) with ``side_cards`` adds side-info
    embeddings (e.g. genre, language) to every item vector, on the input and, when shared, the output.
    """

    def __init__(self, n_items: int, dim: int = 64, max_len: int = 50, n_blocks: int = 2, n_heads: int = 1,
                 dropout: float = 0.1, shared: bool = True, item_side: np.ndarray | None = None,
                 side_cards: list[int] | None = None):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim={dim} must be divisible by n_heads={n_heads}")
        self.n_items, self.dim, self.max_len, self.shared = n_items, dim, max_len, shared
        self.pad = n_items  # the extra last row of the item table
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, n_heads, dropout) for _ in range(n_blocks))
        self.ln = nn.LayerNorm(dim, eps=1e-8)
        self.drop = nn.Dropout(dropout)
        self.out_emb = None if shared else nn.Embedding(n_items, dim)
        if item_side is not None:
            self.register_buffer("item_side", torch.as_tensor(np.vstack([item_side, np.zeros((1, item_side.shape[1]),
                                                                                             np.int64)])))
            self.side_emb = nn.ModuleList(nn.Embedding(c, dim) for c in side_cards or [])
        else:
            self.item_side, self.side_emb = None, None
        for param in self.parameters():  # the reference's init (SASRec.pytorch main.py): xavier on every matrix
            if param.dim() > 1:
                nn.init.xavier_normal_(param)
        with torch.no_grad():
            self.item_emb.weight[self.pad].zero_()

    def _items(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Input item vectors (id embedding + side-info embeddings) of ``ids`` (all rows when None)."""
        vec = self.item_emb.weight if ids is None else self.item_emb(ids)
        if self.side_emb is not None:
            side = self.item_side if ids is None else self.item_side[ids]
            for j, emb in enumerate(self.side_emb):
                vec = vec + emb(side[..., j])
        return vec

    def item_table(self) -> torch.Tensor:
        """Output song vectors ``[n_items, d]``: the input table itself when shared (a view, same storage)."""
        if self.out_emb is not None:
            return self.out_emb.weight
        return self._items()[: self.n_items]

    def sequence_output(self, items: torch.Tensor, user_feats: torch.Tensor | None = None,
                        last_only: bool = False) -> torch.Tensor:
        """``[B, L, d]``: position ``t``'s output summarises plays ``<= t`` (``user_feats`` unused).
        ``last_only``: ``[B, 1, d]``, the last position only (the last block computes nothing else)."""
        length = items.shape[1]
        if length > self.max_len:
            raise ValueError(f"history length {length} > max_len {self.max_len}")
        pos = torch.arange(self.max_len - length, self.max_len, device=items.device)  # right-aligned
        x = self._items(items) * math.sqrt(self.dim) + self.pos_emb(pos)
        real = (items != self.pad).unsqueeze(-1)
        x = self.drop(x) * real
        mask = attention_mask(items, self.pad)
        for i, block in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1
            # the reference's timeline mask: pads stay zero between blocks
            x = block(x, mask, last_only=last) * (real[:, -1:] if last else real)
        return self.ln(x)

    def user_vecs(self, items: torch.Tensor, user_feats: torch.Tensor | None = None) -> torch.Tensor:
        """The last position's output (histories are left-padded, so it is the latest play); the last
        block runs for that position only (serving and rolling evaluation score one vector per history)."""
        return self.sequence_output(items, user_feats, last_only=True)[:, -1]
