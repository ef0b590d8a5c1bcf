"""The shared training loop (seeding, early stopping, checkpoints) and the sampled-softmax loss."""

from __future__ import annotations

import numpy as np
import torch

from musicrecall.models.losses import NegativeSampler, sampled_softmax_loss
from musicrecall.training import TrainConfig, minibatches, train

X = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > 0).long()


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 2)

    def batches(epoch):
        for idx in minibatches(len(X), 32, seed=seed, epoch=epoch):
            yield X[idx], Y[idx]

    def loss_fn(m, batch):
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    return model, batches, loss_fn


def test_same_seed_gives_identical_weights_and_loss_decreases():
    runs = []
    for _ in range(2):
        model, batches, loss_fn = _setup()
        hist = train(model, batches, loss_fn, TrainConfig(epochs=5, lr=0.05, progress=False))
        runs.append((model.weight.detach().clone(), hist))
    assert torch.equal(runs[0][0], runs[1][0])
    losses = [e["train_loss"] for e in runs[0][1].epochs]
    assert losses[-1] < losses[0] * 0.7


def test_early_stopping_restores_the_best_epoch():
    model, batches, loss_fn = _setup()
    scores = iter([0.5, 0.9, 0.8, 0.7, 0.6, 0.95])
    snapshots = []

    def validate(m):
        snapshots.append(m.weight.detach().clone())
        return next(scores)

    cfg = TrainConfig(epochs=6, lr=0.05, patience=2, min_steps=0, progress=False)
    hist = train(model, batches, loss_fn, cfg, validate)
    assert hist.stopped_early and hist.best_epoch == 2 and len(hist.epochs) == 4
    assert torch.equal(model.weight, snapshots[1])


def test_checkpoint_cache_skips_training(tmp_path, monkeypatch):
    monkeypatch.setattr("musicrecall.training.DATA_DIR", tmp_path)
    model, batches, loss_fn = _setup()
    first = train(model, batches, loss_fn, TrainConfig(epochs=2, progress=False), name="lin", cache_key="abc")
    assert not first.from_cache and (tmp_path / "checkpoints" / "lin-abc.pt").exists()
    fresh, _, _ = _setup(seed=1)

    def no_batches(epoch):
        raise AssertionError("a cached run must not train")

    second = train(fresh, no_batches, loss_fn, TrainConfig(epochs=2, progress=False), name="lin", cache_key="abc")
    assert second.from_cache and torch.equal(fresh.weight, model.weight)


def test_sampled_softmax_masks_the_positive_among_negatives_and_learns():
    n_items, d = 50, 8
    sampler = NegativeSampler(np.ones(n_items), power=0.0, seed=0)
    items = torch.nn.Parameter(torch.randn(n_items, d))
    users = torch.nn.Parameter(torch.randn(16, d))
    pos = torch.arange(16)
    opt = torch.optim.Adam([items, users], lr=0.05)
    first = None
    for _ in range(60):
        loss = sampled_softmax_loss(users, pos, items, sampler, n_neg=20)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first
    # With every item as a negative, the positive itself must be masked (a finite loss, no self-competition).
    all_items = NegativeSampler(np.ones(3), power=0.0)
    all_items.sample = lambda n: torch.arange(3)
    loss = sampled_softmax_loss(torch.eye(3) * 10, torch.arange(3), torch.eye(3), all_items, in_batch=False)
    assert float(loss) < 1e-3


def test_reaching_the_epoch_cap_while_still_improving_is_flagged(caplog):
    model, batches, loss_fn = _setup()
    scores = iter(range(100))
    with caplog.at_level("WARNING", logger="musicrecall.training"):
        hist = train(model, batches, loss_fn, TrainConfig(epochs=3, lr=0.05, progress=False),
                     lambda m: float(next(scores)), name="capped_model")
    assert hist.capped and not hist.stopped_early and len(hist.epochs) == 3
    assert "capped_model" in caplog.text and "epoch cap" in caplog.text
    model, batches, loss_fn = _setup()
    flat = train(model, batches, loss_fn, TrainConfig(epochs=10, patience=3, lr=0.05, min_steps=0, progress=False),
                 lambda m: 1.0)
    assert flat.stopped_early and not flat.capped and len(flat.epochs) == 4  # best at 1, then 3 stale epochs


def _scripted(scores):
    """``validate`` returning ``scores`` epoch after epoch (a validation curve)."""
    it = iter(scores)
    return lambda m: float(next(it))


# an early plateau (a model that first learns the popularity list), then the real gains
PLATEAU = [0.10, 0.20, 0.20, 0.20, 0.20, 0.20, 0.40, 0.50, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55]


def test_an_early_plateau_no_longer_stops_training_before_min_steps():
    # 8 optimiser steps an epoch (256 rows, batch 32): patience 3 alone stops on the plateau (epoch 5) ...
    model, batches, loss_fn = _setup()
    old = train(model, batches, loss_fn, TrainConfig(epochs=14, lr=0.05, patience=3, min_steps=0, progress=False),
                _scripted(PLATEAU))
    assert old.stopped_early and len(old.epochs) == 5 and old.best_score == 0.20 and old.steps == 40
    # ... 64 steps (8 epochs) before stopping may fire carry it past the plateau to the best epoch (9),
    # then patience (3 epochs, steps already > 64) stops it as before
    model, batches, loss_fn = _setup()
    new = train(model, batches, loss_fn, TrainConfig(epochs=14, lr=0.05, patience=3, min_steps=64, progress=False),
                _scripted(PLATEAU))
    assert new.stopped_early and new.best_epoch == 9 and new.best_score == 0.55 and len(new.epochs) == 12
    assert new.steps == 96 and not new.capped


def test_min_steps_counts_optimiser_steps_not_epochs():
    # the same curve with 2 steps an epoch (batch 128): 64 steps are 32 epochs, beyond the cap of 14, so the
    # run ends at the cap; its last epochs did not improve, so it is not flagged as under-trained
    model, _, loss_fn = _setup()

    def big_batches(epoch):
        for idx in minibatches(len(X), 128, seed=0, epoch=epoch):
            yield X[idx], Y[idx]

    hist = train(model, big_batches, loss_fn, TrainConfig(epochs=14, lr=0.05, patience=3, min_steps=64,
                                                          progress=False), _scripted(PLATEAU))
    assert not hist.stopped_early and not hist.capped and len(hist.epochs) == 14 and hist.steps == 28
    assert hist.best_epoch == 9


def test_the_sequence_recipes_train_with_their_min_steps():
    from musicrecall.models import recipes

    for r in (recipes.SASREC, recipes.YOUTUBE_DNN):
        assert r.train_config(seed=1).min_steps == r.min_steps > 0
        assert r.with_(min_steps=7).train_config().min_steps == 7
