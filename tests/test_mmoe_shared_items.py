"""The MMoE's tasks share one item-tower pass: the same losses and gradients as one sampled softmax per task
over the whole catalogue (the reference never goes through the sub-catalogue code it checks)."""

from __future__ import annotations

import numpy as np
import torch

from musicrecall.models.dssm import ItemTower, UserTower, extend_user, retrieval_loss
from musicrecall.models.losses import NegativeSampler, sampled_softmax_loss
from musicrecall.models.mmoe import MMoERetrieval


def _full_catalogue_loss(user_vecs, pos, item_tower, sampler, n_neg):
    """The sampled softmax (logQ, in-batch negatives) with every song through the item tower."""
    return sampled_softmax_loss(extend_user(user_vecs), pos, item_tower(torch.arange(500)), sampler, n_neg=n_neg)


def _per_task_loss(model: MMoERetrieval, x, rows, songs, full_play, collect, play_ms, sampler, n_neg, generator):
    """The former MMoERetrieval.loss, one loss (and one item-tower pass, here over all songs) per task."""
    heads = model.mmoe(model.user_tower(x))
    total = torch.zeros(())
    for task, mask in {"full_play": full_play, "collect": collect}.items():
        if int(mask.sum()) > 1:
            total = total + model.task_weights[task] * _full_catalogue_loss(heads[task][rows[mask]], songs[mask],
                                                                            model.item_tower, sampler, n_neg)
    pick = torch.multinomial(play_ms.to(torch.float32), rows.shape[0], replacement=True, generator=generator)
    return total + model.task_weights["duration"] * _full_catalogue_loss(heads["duration"][rows[pick]], songs[pick],
                                                                         model.item_tower, sampler, n_neg)


def _setup(n_collect: int):
    rng = np.random.default_rng(0)
    n_items, cards = 500, [500, 40, 60, 5, 3]
    codes = np.stack([np.arange(n_items)] + [rng.integers(0, c, n_items) for c in cards[1:]], 1)
    torch.manual_seed(0)
    model = MMoERetrieval(UserTower(12, 8, 16), ItemTower(codes, cards, 8, hidden=16), user_dim=8, dim=8,
                          task_weights={"full_play": 1.0, "collect": 0.5, "duration": 2.0})
    b = 64
    collect = torch.zeros(b, dtype=torch.bool)
    collect[:n_collect] = True
    batch = (torch.randn(20, 12), torch.from_numpy(rng.integers(0, 20, b)), torch.from_numpy(rng.integers(0, 60, b)),
             torch.from_numpy(rng.random(b) < 0.5), collect, torch.from_numpy(rng.integers(0, 300_000, b)))
    return model, batch, rng.zipf(1.5, n_items).clip(0, 1000)


def _loss_and_grads(fn, model, batch, counts):
    model.zero_grad(set_to_none=True)
    sampler, gen = NegativeSampler(counts, seed=3), torch.Generator().manual_seed(5)
    loss = fn(model, *batch, sampler, 32, gen)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_mmoe_loss_with_one_item_pass_equals_one_pass_per_task():
    for n_collect in (0, 1, 5):  # collect's task skipped (<= 1 row) or run
        model, batch, counts = _setup(n_collect)
        old, g_old = _loss_and_grads(_per_task_loss, model, batch, counts)
        new, g_new = _loss_and_grads(lambda m, *a: m.loss(*a[:6], a[6], a[7], generator=a[8]), model, batch, counts)
        assert np.isclose(old, new, rtol=1e-5) and old > 0
        assert g_old.keys() == g_new.keys() and "item_tower.emb.weight" in g_new
        for name in g_old:
            assert torch.allclose(g_old[name], g_new[name], rtol=1e-4, atol=1e-6), name


def test_a_head_of_one_row_uses_the_sampled_softmax_without_in_batch_negatives():
    from musicrecall.models.dssm import shared_retrieval_losses

    model, _, counts = _setup(0)
    u, pos = torch.randn(1, 8), torch.tensor([7])
    got = shared_retrieval_losses([(u, pos)], model.item_tower, NegativeSampler(counts, seed=1), 16)[0]
    want = _full_catalogue_loss(u, pos, model.item_tower, NegativeSampler(counts, seed=1), 16)
    assert torch.allclose(got, want) and extend_user(u).shape[1] == 9
    assert torch.allclose(retrieval_loss(u, pos, model.item_tower, NegativeSampler(counts, seed=1), 16), want)
