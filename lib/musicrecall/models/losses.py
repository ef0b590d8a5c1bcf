"""Losses shared by the retrieval models.

:func:`sampled_softmax_loss` is the sampled softmax of YouTube-DNN (Covington et al., RecSys 2016)
with the logQ correction of Yi et al. (RecSys 2019): negatives are drawn from a proposal ``q``
(e.g. popularity^0.75) and each logit is corrected by ``-log q`` so the estimate stays unbiased for
the full softmax. In-batch negatives (the other positives of the batch) are added, also corrected.

:func:`full_softmax_loss` is the exact cross-entropy over the whole catalogue (RecBole's ``CE`` loss for
SASRec): no sampling bias and no proposal to tune, affordable while the catalogue is small
(:data:`FULL_SOFTMAX_MAX_ITEMS`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def full_softmax_loss(user_vecs: torch.Tensor, pos_items: torch.Tensor, item_table: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """Exact cross-entropy of each ``user_vecs`` row's positive song against every song of ``item_table``."""
    logits = user_vecs @ item_table.T
    if temperature != 1.0:
        logits = logits / temperature
    return F.cross_entropy(logits, pos_items)


class NegativeSampler:
    """Draw negative song ids from ``counts ** power`` (power 0 = uniform), reproducibly."""

    def __init__(self, counts: np.ndarray, power: float = 0.75, seed: int = 0):
        weights = np.maximum(np.asarray(counts, dtype=np.float64), 0.0) ** power
        weights = np.where(weights > 0, weights, weights[weights > 0].min() if (weights > 0).any() else 1.0)
        self.probs = torch.as_tensor(weights / weights.sum(), dtype=torch.float32)
        self.log_q = torch.log(self.probs)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, n: int) -> torch.Tensor:
        return torch.multinomial(self.probs, n, replacement=True, generator=self.generator)


def sampled_softmax_loss(user_vecs: torch.Tensor, pos_items: torch.Tensor, item_table: torch.Tensor,
                         sampler: NegativeSampler, n_neg: int = 256, in_batch: bool = True,
                         temperature: float = 1.0, neg: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each user's positive song against shared sampled (and in-batch) negatives.

    ``user_vecs`` [B, d]; ``pos_items`` [B] song ids; ``item_table`` [n_items, d] (the output
    embeddings, which may be the input table itself: shared embeddings). ``neg``: negatives the caller
    already drew from ``sampler`` (e.g. to embed them with the rest of its batch); else ``n_neg`` are drawn.
    """
    neg = sampler.sample(n_neg) if neg is None else neg
    pos_vecs = item_table[pos_items]
    pos_logit = (user_vecs * pos_vecs).sum(-1, keepdim=True) - sampler.log_q[pos_items].unsqueeze(1)
    neg_logit = user_vecs @ item_table[neg].T - sampler.log_q[neg].unsqueeze(0)
    # A sampled negative that is the row's own positive is not a negative.
    neg_logit.masked_fill_(neg.unsqueeze(0) == pos_items.unsqueeze(1), float("-inf"))  # in place: a fresh tensor
    logits = [pos_logit, neg_logit]
    if in_batch and user_vecs.shape[0] > 1:
        batch_logit = user_vecs @ pos_vecs.T - sampler.log_q[pos_items].unsqueeze(0)
        same = pos_items.unsqueeze(0) == pos_items.unsqueeze(1)  # the diagonal and repeated songs
        logits.append(batch_logit.masked_fill_(same, float("-inf")))
    logits = torch.cat(logits, dim=1)
    if temperature != 1.0:  # dividing by 1 is exact but costs ~10% of a DSSM step
        logits = logits / temperature
    return F.cross_entropy(logits, torch.zeros(user_vecs.shape[0], dtype=torch.long))
