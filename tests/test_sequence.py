"""SASRec / YouTube-DNN recall models and their glue (musicrecall.sequences); the data is in test_sequence_data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from sequence_events import EV
from sequence_events import events as _events

from musicrecall import sequence_data as sd
from musicrecall import sequences as sq
from musicrecall.models import recipes
from musicrecall.models.losses import NegativeSampler
from musicrecall.models.sasrec import SASRec, attention_mask
from musicrecall.models.youtube_dnn import YouTubeDNN
from musicrecall.report import lift_table_metrics, pick_ci
from musicrecall.training import TrainConfig, train

# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def test_attention_mask_is_causal_and_hides_padding():
    items = torch.tensor([[9, 9, 1, 2, 3]])
    m = attention_mask(items, pad=9)[0, 0]
    assert not torch.triu(m, diagonal=1).any()  # no query sees a later key
    assert not m[2:, :2].any()  # real plays never attend to padding
    assert m.diagonal().all()


@pytest.mark.parametrize("shared", [True, False])
def test_sasrec_output_at_t_does_not_depend_on_the_future(shared):
    torch.manual_seed(0)
    model = SASRec(30, dim=16, max_len=8, n_blocks=2, n_heads=2, dropout=0.0, shared=shared).eval()
    x = torch.randint(0, 30, (4, 8))
    x[0, :3] = 30  # some padding
    y = x.clone()
    y[:, 5:] = torch.randint(0, 30, (4, 3))  # change only the future of position 4
    a, b = model.sequence_output(x), model.sequence_output(y)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_sasrec_shared_output_is_the_input_table_and_unshared_is_not():
    shared = SASRec(30, dim=16, max_len=8)
    table = shared.item_table()
    assert table.data_ptr() == shared.item_emb.weight.data_ptr() and table.shape == (30, 16)
    table.sum().backward()  # gradients of the output scores land in the input table
    assert shared.item_emb.weight.grad is not None and shared.item_emb.weight.grad[:30].abs().sum() > 0
    unshared = SASRec(30, dim=16, max_len=8, shared=False)
    assert unshared.item_table().data_ptr() != unshared.item_emb.weight.data_ptr()
    n_shared = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in unshared.parameters()) == n_shared + 30 * 16


def test_sasrec_user_vector_is_the_last_position_and_uses_order():
    torch.manual_seed(0)
    model = SASRec(30, dim=16, max_len=6, dropout=0.0).eval()
    x = torch.tensor([[30, 30, 1, 2, 3, 4]])
    # the last block runs for the last position only: the same vector up to float rounding
    assert torch.allclose(model.user_vecs(x), model.sequence_output(x)[:, -1], atol=1e-6)
    assert not torch.allclose(model.user_vecs(x), model.user_vecs(torch.tensor([[30, 30, 4, 3, 2, 1]])))


def test_sasrec_side_info_changes_item_vectors():
    side = np.array([[i % 3 + 1] for i in range(30)])
    model = SASRec(30, dim=16, max_len=6, item_side=side, side_cards=[4])
    table = model.item_table()
    assert table.shape == (30, 16)
    assert torch.allclose(table - model.item_emb.weight[:30], model.side_emb[0](torch.as_tensor(side[:, 0])))


def test_youtube_dnn_is_order_free_and_causal():
    torch.manual_seed(0)
    model = YouTubeDNN(30, dim=16, user_cards=[3, 4], dropout=0.0).eval()
    x = torch.tensor([[30, 1, 2, 3, 4]])
    f = torch.tensor([[1, 2]])
    assert torch.allclose(model.user_vecs(x, f), model.user_vecs(torch.tensor([[30, 4, 3, 2, 1]]), f), atol=1e-6)
    assert torch.allclose(model.user_vecs(x, f), model.sequence_output(x, f)[:, -1], atol=1e-6)
    y = x.clone()
    y[0, 4] = 9
    assert torch.allclose(model.sequence_output(x, f)[:, :4], model.sequence_output(y, f)[:, :4], atol=1e-6)
    assert not torch.allclose(model.user_vecs(x, f), model.user_vecs(x, torch.tensor([[2, 3]])))
    assert model.item_table().data_ptr() != model.item_emb.weight.data_ptr()  # the paper's separate softmax table


def _toy_windows(n_items: int = 40, n_seq: int = 256, length: int = 10, seed: int = 0) -> sd.Windows:
    """Deterministic successor sequences: song s is always followed by (s + 1) mod n_items."""
    start = np.random.default_rng(seed).integers(0, n_items, n_seq)
    seq = (start[:, None] + np.arange(length + 1)) % n_items
    return sd.Windows(np.arange(n_seq), seq[:, :-1].copy(), seq[:, 1:].copy(), n_items)


@pytest.mark.parametrize("make", [lambda: SASRec(40, dim=16, max_len=10, n_blocks=1, dropout=0.0),
                                  lambda: YouTubeDNN(40, dim=16, dropout=0.0)], ids=["sasrec", "youtube_dnn"])
def test_loss_decreases_on_a_toy_sequence_task(make):
    win = _toy_windows()
    torch.manual_seed(0)
    model = make()
    sampler = NegativeSampler(win.target_counts(40), power=0.0, seed=0)
    hist = train(model, sq.window_batches(win, 64, seed=0), sq.causal_loss(sampler, 40, n_neg=20),
                 TrainConfig(epochs=8, lr=1e-2, progress=False))
    losses = [e["train_loss"] for e in hist.epochs]
    assert losses[-1] < 0.6 * losses[0]


def test_sasrec_learns_the_successor_and_order_matters():
    """On a pure successor task SASRec ranks the next song first; a shuffled history breaks it."""
    win = _toy_windows()
    torch.manual_seed(0)
    model = SASRec(40, dim=32, max_len=10, n_blocks=1, dropout=0.0)
    sampler = NegativeSampler(win.target_counts(40), power=0.0, seed=0)
    train(model, sq.window_batches(win, 64, seed=0), sq.causal_loss(sampler, 40, n_neg=39),
          TrainConfig(epochs=25, lr=1e-2, progress=False))
    hist = sd.Histories(win.inputs, 40)
    rec = sq.recommender(model, hist)
    top1 = rec(np.arange(64), 1, None)[:, 0]
    assert (top1 == win.targets[:64, -1]).mean() > 0.9
    shuffled = sq.recommender(model, sd.shuffle_histories(hist, seed=0))(np.arange(64), 1, None)[:, 0]
    assert (shuffled == win.targets[:64, -1]).mean() < 0.5


def test_hr_validator_and_recommender_rank_the_full_catalogue():
    win = _toy_windows()
    model = YouTubeDNN(40, dim=8).eval()
    hist = sd.Histories(win.inputs, 40)
    targets = sq.UserItemCSR(np.arange(5), np.arange(6), win.targets[:5, -1].copy())
    assert sq.hr_validator(hist, targets, k=40)(model) == 1.0  # k = catalogue: every target is hit
    lists = sq.recommender(model, hist)(np.arange(5), 40, None)
    assert (np.sort(lists, axis=1) == np.arange(40)).all()


def test_next_play_targets_are_each_users_first_full_play():
    t = sq.next_play_targets(EV)
    assert t.users.tolist() == [0, 1] and t.indices.tolist() == [4, 6]  # song 3 (minute 2) was a skip


def test_sasrec_normalises_queries_only_as_the_reference():
    # SASRec.pytorch / Kang & McAuley: Q = LN(x), keys and values are x itself (no layer norm on them)
    torch.manual_seed(0)
    model = SASRec(30, dim=16, max_len=6, n_blocks=1, dropout=0.0).eval()
    seen = {}
    block = model.blocks[0]
    block.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].clone()))
    block.kv.register_forward_pre_hook(lambda m, a: seen.__setitem__("kv", a[0].clone()))
    block.q.register_forward_pre_hook(lambda m, a: seen.__setitem__("q", a[0].clone()))
    model.sequence_output(torch.tensor([[30, 1, 2, 3, 4, 5]]))
    assert torch.equal(seen["kv"], seen["x"])
    assert torch.allclose(seen["q"], block.ln1(seen["x"]))
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in (block.kv, block.q))


def test_sasrec_init_is_the_references_xavier_so_positions_are_visible():
    torch.manual_seed(0)
    n, d = 3000, 48
    model = SASRec(n, dim=d, max_len=30)
    item = model.item_emb.weight.detach()[:n]
    assert abs(float(item.std()) / np.sqrt(2.0 / (n + 1 + d)) - 1) < 0.05  # xavier_normal_ on [n + 1, d]
    assert float(model.item_emb.weight[n].detach().abs().sum()) == 0.0  # padding row
    # the sqrt(d)-scaled item input must not drown the positional embedding (it did at std 1/sqrt(d))
    assert float(model.pos_emb.weight.detach().std()) > 0.5 * float(item.detach().std()) * np.sqrt(d)


def test_causal_loss_is_the_exact_full_softmax_for_a_small_catalogue():
    win = _toy_windows()
    torch.manual_seed(0)
    model = SASRec(40, dim=8, max_len=10, n_blocks=1, dropout=0.0).eval()
    sampler = NegativeSampler(win.target_counts(40), seed=0)
    batch = next(sq.window_batches(win, 16, seed=0)(0))
    out = model.sequence_output(batch[0])
    expected = torch.nn.functional.cross_entropy(out.reshape(-1, 8) @ model.item_table().T, batch[1].reshape(-1))
    assert torch.allclose(sq.causal_loss(sampler, 40)(model, batch), expected, atol=1e-6)
    sampled = sq.causal_loss(sampler, 40, n_neg=5, full_softmax=False)(model, batch)
    assert not torch.allclose(sampled, expected)
    assert sq.FULL_SOFTMAX_MAX_ITEMS >= 40


def test_seeded_lift_widens_the_bootstrap_interval_by_the_seed_and_aa_spread():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    b = [base + rng.normal(0, 0.01, 400) for _ in range(3)]
    a = [1.2 * base + rng.normal(0, 0.01, 400) for _ in range(3)]
    calm = sq.seeded_lift(a, b, n_boot=300)
    assert 0.15 < calm["value"] < 0.25 and calm["lo"] <= calm["boot_lo"] and calm["hi"] >= calm["boot_hi"]
    noisy = sq.seeded_lift(a, b, n_boot=300, aa=[0.2, -0.2])  # a large A/A spread must widen the interval
    assert noisy["lo"] < calm["lo"] - 0.05 and noisy["hi"] > calm["hi"] + 0.05
    assert noisy["sd_seed"] == pytest.approx(np.std([0.2, -0.2], ddof=1))
    one = sq.seeded_lift(a[:1], b[:1], n_boot=300)
    assert one["lo"] == pytest.approx(one["boot_lo"]) and one["hi"] == pytest.approx(one["boot_hi"])


def test_recipes_are_the_single_source_of_the_adapters_defaults():
    import inspect

    from musicrecall.fusion import mind_adapter, sasrec_adapter
    from musicrecall.models import recipes

    assert inspect.signature(mind_adapter).parameters["recipe"].default is recipes.MIND
    assert inspect.signature(sasrec_adapter).parameters["recipe"].default is recipes.SASREC
    tiny = recipes.for_profile(recipes.SASREC, "tiny")
    assert tiny.max_epochs == recipes.TINY_MAX_EPOCHS < recipes.SASREC.max_epochs
    assert recipes.for_profile(recipes.SASREC, "small") == recipes.SASREC
    assert recipes.SASREC.patience >= 3 and recipes.YOUTUBE_DNN.patience >= 3


def test_lift_is_undefined_not_an_error_when_the_baseline_scores_zero_on_every_seed():
    # 30Music at tiny: YouTube-DNN hit nothing on any seed and notebook 03 stopped with "mean(b) is 0"
    a = [np.array([0.2, 0.4, 0.0]), np.array([0.3, 0.1, 0.2])]
    d = sq.seeded_lift(a, [np.zeros(3), np.zeros(3)], n_boot=100)
    assert np.isnan(d["value"]) and np.isnan(d["lo"]) and np.isnan(d["hi"])
    (m,) = lift_table_metrics(pl.DataFrame({"a": ["x"], "b": ["y"], "slice": ["all"], "metric": ["hr@10"],
                                            "lift": [d["value"]], "ci_lo": [d["lo"]], "ci_hi": [d["hi"]]}), "lift")
    assert m["value"] is None and "scores 0" in m["note"]


def test_lifts_stay_defined_when_a_baseline_seed_scores_zero():
    a = [np.array([0.2, 0.4, 0.0]), np.array([0.3, 0.1, 0.2])]
    b = [np.zeros(3), np.array([0.1, 0.2, 0.3])]  # seed 0 of the baseline hits nothing
    d = sq.seeded_lift(a, b, n_boot=100)
    assert np.isfinite(d["value"]) and np.isfinite(d["lo"]) and np.isinf(d["per_seed"][0])
    frame = pl.DataFrame({"a": ["x"], "b": ["y"], "slice": ["all"], "metric": ["hr@10"], "lift": [None],
                          "ci_lo": [None], "ci_hi": [None]}, schema_overrides={"lift": pl.Float64, "ci_lo": pl.Float64,
                                                                                "ci_hi": pl.Float64})
    assert all(np.isnan(pick_ci(frame, missing_ok=True, a="x")))  # a null lift reads as NaN
    assert all(np.isnan(pick_ci(frame, missing_ok=True, a="absent")))
    (m,) = lift_table_metrics(frame, "lift")
    assert m["value"] is None and "scores 0" in m["note"]


def test_sampled_softmax_without_in_batch_equals_the_concatenated_cross_entropy():
    """The blocked shared-negatives loss (logits built block by block, their softmax kept for the backward
    pass, accidental hits masked sparsely) gives the cross-entropy over [positive | negatives] and its
    gradients; a row whose every negative is its own song has nothing to push against (loss 0, no gradient)."""
    from musicrecall.models import losses

    rng = np.random.default_rng(0)
    n, d, rows = 50, 8, 37
    table = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    users = torch.randn(rows, d, dtype=torch.float64, requires_grad=True)
    pos = torch.from_numpy(rng.integers(0, 6, rows))  # few songs: many accidental hits among 64 negatives
    counts = np.r_[np.full(6, 50.0), np.ones(n - 6)]
    for block in (5, 16, 1000):
        s_ref, s_new = NegativeSampler(counts, seed=1), NegativeSampler(counts, seed=1)
        neg = s_ref.sample(64)
        log_q = s_ref.log_q.double()
        pos_logit = (users * table[pos]).sum(-1, keepdim=True) - log_q[pos].unsqueeze(1)
        neg_logit = (users @ table[neg].T - log_q[neg].unsqueeze(0)).masked_fill(neg[None, :] == pos[:, None], -np.inf)
        assert (neg[None, :] == pos[:, None]).sum() > rows  # the masking is exercised
        ref = torch.nn.functional.cross_entropy(torch.cat([pos_logit, neg_logit], 1), torch.zeros(rows, dtype=torch.long))
        new = losses._shared_negatives_loss(users, pos, table, log_q, s_new.sample(64), block=block)
        assert torch.allclose(new, ref, atol=1e-10), (block, float(new), float(ref))
        g_ref, g_new = torch.autograd.grad(ref, [table, users]), torch.autograd.grad(new, [table, users])
        for a, b in zip(g_ref, g_new, strict=True):
            assert torch.allclose(a, b, atol=1e-10)
    # sampled_softmax_loss takes this path without in-batch negatives: the same value
    s1, s2 = NegativeSampler(counts, seed=2), NegativeSampler(counts, seed=2)
    via = losses.sampled_softmax_loss(users, pos, table, s1, n_neg=64, in_batch=False)
    assert torch.allclose(via, losses._shared_negatives_loss(users, pos, table, s2.log_q, s2.sample(64)))
    only_hits = losses._shared_negatives_loss(users[:2], torch.tensor([3, 3]), table, log_q, torch.full((5,), 3))
    assert float(only_hits.detach()) == 0.0
    assert all(float(g.abs().max()) == 0.0 for g in torch.autograd.grad(only_hits, [table, users]))


def test_sasrec_user_vector_runs_the_last_block_for_the_last_position_only():
    torch.manual_seed(0)
    model = SASRec(30, dim=8, max_len=6, n_blocks=2, n_heads=2, dropout=0.3).eval()
    items = torch.tensor([[30, 30, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [30, 30, 30, 30, 30, 7], [30] * 6])
    full = model.sequence_output(items)[:, -1]
    assert torch.allclose(model.user_vecs(items), full, atol=1e-6)
    assert model.sequence_output(items, last_only=True).shape == (4, 1, 8)


def _heavy_light_log() -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):  # a few heavy users among light ones
        n = 300 if u % 10 == 0 else 20
        rows += [(u, int(rng.integers(50)), int(m), True) for m in np.sort(rng.integers(0, 60 * 24 * 30, n))]
    return _events(rows), pl.DataFrame({"user_id": list(range(40))})


def _heavy_light_inputs(**kw):
    ev, users = _heavy_light_log()
    return sq.sequence_inputs(ev, users, 50, max_len=10, valid_days=3, test_days=3, seed=1, **kw)


def test_every_user_trains_by_default_and_max_train_users_is_a_seeded_subset():
    full = _heavy_light_inputs()
    assert recipes.SASREC.max_train_users is None and recipes.YOUTUBE_DNN.max_train_users is None
    every = set(np.unique(full.windows.users).tolist())
    assert len(every) == 40  # every user with a train-window history has windows
    sub = _heavy_light_inputs(max_train_users=10)
    kept = set(np.unique(sub.windows.users).tolist())
    assert len(kept) == 10 and kept < every
    for u in kept:  # whole users: each kept user keeps all of its windows
        assert (sub.windows.users == u).sum() == (full.windows.users == u).sum()


def test_sequence_inputs_cut_valid_and_test_with_one_split_and_reuse_a_given_one():
    """A split holds about two copies of the log; the valid and test setups share one, and a caller's (notebook
    08's) is reused, with the same windows, histories and targets as a fresh split gives."""
    from musicrecall.evaluation import make_eval_setup

    fresh = _heavy_light_inputs()
    assert fresh.valid.split is fresh.test.split
    given = make_eval_setup(_heavy_light_log()[0], 50, stage="valid", valid_days=3, test_days=3)
    reused = _heavy_light_inputs(split=given.split)
    assert reused.valid.split is given.split and reused.test.split is given.split
    assert np.array_equal(reused.windows.inputs, fresh.windows.inputs)
    assert np.array_equal(reused.hist_test.items, fresh.hist_test.items)
    assert np.array_equal(reused.test.targets["all"].indices, fresh.test.targets["all"].indices)


def test_epoch_targets_samples_every_users_windows_afresh_each_epoch():
    rng = np.random.default_rng(0)
    n, pad = 400, 1000
    inputs = np.zeros((n, 6), dtype=np.int64)
    inputs[:, 0] = np.arange(n)  # each window names itself, to trace it through the batches
    targets = np.full((n, 6), pad, dtype=np.int64)
    lengths = rng.integers(1, 7, n)  # windows hold 1-6 targets
    for w, m in enumerate(lengths):
        targets[w, :m] = 1
    win = sd.Windows(np.arange(n) // 10, inputs, targets, pad)  # 40 users, 10 windows each
    cap = win.n_targets // 4
    batches = sq.window_batches(win, 8, seed=3, epoch_targets=cap)
    seen = []
    for epoch in range(12):
        ids = np.concatenate([x[:, 0].numpy() for x, _, _ in batches(epoch)])
        assert cap - 6 < lengths[ids].sum() <= cap  # filled up to the budget, never over it
        assert np.unique(ids).shape[0] == ids.shape[0]  # no window twice in an epoch
        seen.append(set(ids.tolist()))
    assert seen[0] != seen[1]  # a fresh sample each epoch, not the same subset
    assert set(np.unique(win.users[sorted(set().union(*seen))]).tolist()) == set(range(40))  # every user trains
    first = [x for x, _, _ in batches(5)]  # the same seed and epoch give the same sample
    again = [x for x, _, _ in sq.window_batches(win, 8, seed=3, epoch_targets=cap)(5)]
    assert all(torch.equal(a, b) for a, b in zip(again, first, strict=True))
    # a budget the log does not reach gives full passes, exactly as without one
    full = [x for x, _, _ in sq.window_batches(win, 8, seed=3, epoch_targets=win.n_targets)(2)]
    plain = [x for x, _, _ in sq.window_batches(win, 8, seed=3)(2)]
    assert all(torch.equal(a, b) for a, b in zip(full, plain, strict=True))
    assert sq.epoch_batches(win, 8) == len(plain) == 50
    assert abs(sq.epoch_batches(win, 8, cap) - len(first)) <= 2  # an estimate: windows differ in length
