"""DSSM and MMoE models: the sub-catalogue loss equals the full-table loss; MMoE heads and gates."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from musicrecall.models.dssm import (
    DSSM,
    ItemTower,
    UserTower,
    extend_user,
    item_feature_matrix,
    retrieval_loss,
)
from musicrecall.models.losses import NegativeSampler, sampled_softmax_loss
from musicrecall.models.mmoe import TASKS, MMoE, MMoERetrieval


def _items(n=40):
    return pl.DataFrame({"song_id": np.arange(n), "artist": [f"a{i % 7}" for i in range(n)],
                         "album": [f"b{i % 11}" for i in range(n)], "genre": ["pop", "rock"] * (n // 2),
                         "language": ["en"] * n, "version": ["original"] * n,
                         "duration_ms": np.linspace(60_000, 400_000, n).astype(np.int64),
                         "release_year": np.full(n, 2015, dtype=np.int32)})


def test_item_features_and_sub_catalogue_loss_equals_full_table_loss():
    codes, cards = item_feature_matrix(_items())
    assert codes.shape == (40, 8) and all(codes.max(0) < np.array(cards))
    torch.manual_seed(0)
    tower = ItemTower(codes, cards, dim=8)
    u = torch.randn(5, 8)
    pos = torch.tensor([1, 2, 3, 3, 39])
    counts = np.arange(1, 41, dtype=np.float64)
    sub = retrieval_loss(u, pos, tower, NegativeSampler(counts, seed=4), n_neg=12)
    full = sampled_softmax_loss(extend_user(u), pos, tower.all_items(), NegativeSampler(counts, seed=4), n_neg=12)
    torch.testing.assert_close(sub, full)


def test_mmoe_heads_gates_and_loss_backprop():
    m = MMoE(8, dim=6, n_experts=3)
    h = torch.randn(4, 8)
    out = m(h)
    assert set(out) == set(TASKS) and all(v.shape == (4, 6) for v in out.values())
    for g in m.gate_weights(h).values():
        torch.testing.assert_close(g.sum(1), torch.ones(4))
    codes, cards = item_feature_matrix(_items())
    model = MMoERetrieval(UserTower(5, dim=8), ItemTower(codes, cards, dim=6), user_dim=8, dim=6, n_experts=3)
    x = torch.randn(3, 5)
    rows = torch.tensor([0, 0, 1, 2, 2, 1])
    loss = model.loss(x, rows, torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([True, True, False, True, False, True]),
                      torch.tensor([True, False, False, True, False, False]),
                      torch.tensor([200_000, 180_000, 5_000, 210_000, 3_000, 190_000]),
                      NegativeSampler(np.ones(40)), n_neg=8, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and model.user_tower.net[0].weight.grad is not None
    assert model.user_vecs(x).shape == (3, 7)
    assert DSSM(UserTower(5, dim=6), ItemTower(codes, cards, dim=6)).user_vecs(x).shape == (3, 7)


def test_blocked_in_batch_loss_equals_the_concatenated_cross_entropy_with_gradients():
    """retrieval_loss computes the in-batch sampled softmax block by block (losses.in_batch_softmax_loss);
    loss and gradients must equal the concatenated cross-entropy, with repeated positives in the batch
    (masked in-batch columns) and negatives that hit a row's own song (40 songs, 300 rows, 64 negatives)."""
    codes, cards = item_feature_matrix(_items())
    counts = np.arange(1, 41, dtype=np.float64)
    pos = torch.from_numpy(np.random.default_rng(2).integers(0, 40, 300))
    grads = []
    for blocked in (True, False):
        torch.manual_seed(0)
        tower, u = ItemTower(codes, cards, dim=8), torch.randn(300, 8).requires_grad_()
        if blocked:
            loss = retrieval_loss(u, pos, tower, NegativeSampler(counts, seed=4), n_neg=64)
        else:  # the former formulation: the cross-entropy over [pos | sampled | in-batch] logits
            loss = sampled_softmax_loss(extend_user(u), pos, tower.all_items(), NegativeSampler(counts, seed=4), n_neg=64)
        loss.backward()
        grads.append((loss.detach(), u.grad, [p.grad.clone() for p in tower.parameters() if p.grad is not None]))
    (l1, u1, p1), (l2, u2, p2) = grads
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(u1, u2)
    assert len(p1) == len(p2) > 0
    for a, b in zip(p1, p2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
