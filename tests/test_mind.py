"""MIND: capsule routing, dynamic K, routing-logit initialisation, side info, label-aware attention, data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from musicrecall.models.losses import NegativeSampler
from musicrecall.models.mind import (
    MIND,
    CapsuleRouting,
    MINDConfig,
    dynamic_k,
    mind_loss,
    squash,
)
from musicrecall.multi_interest import clustering_labels, clustering_quality, user_interests


def test_squash_keeps_direction_and_norm_below_one():
    z = torch.randn(64, 5, 16) * torch.logspace(-3, 0.5, 64)[:, None, None]  # |z|² up to ~160: < 1 in float32
    s = squash(z)
    n = s.norm(dim=-1)
    assert (n < 1).all()
    assert torch.allclose(n, (z.norm(dim=-1) ** 2) / (1 + z.norm(dim=-1) ** 2), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(s, z, dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-4)
    assert torch.isfinite(squash(torch.zeros(2, 3))).all()


def test_dynamic_k():
    lengths = torch.tensor([0, 1, 2, 3, 6, 7, 14, 15, 1000])
    # max(1, min(4, floor(log2(1 + n))))
    assert dynamic_k(lengths, 4).tolist() == [1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert dynamic_k(lengths, 2).max() == 2


@pytest.mark.parametrize("axis", ["interest", "sequence"])
def test_capsule_routing_shapes_masks_and_padding(axis):
    torch.manual_seed(0)
    b, length, d, k = 3, 6, 8, 4
    routing = CapsuleRouting(d, k, length, axis=axis)
    e = torch.randn(b, length, d)
    seq_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6, [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    k_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    caps, agreement = routing(e, seq_mask, k_mask)
    assert caps.shape == (b, k, d) and agreement.shape == (b, k, length)
    assert (caps[~k_mask] == 0).all()  # inactive interests are zero
    assert (caps.norm(dim=-1) < 1).all()
    assert not agreement.requires_grad  # routing logits carry no gradient
    e2 = e.clone()
    e2[~seq_mask] = 100.0  # padded behaviours must not matter
    assert torch.allclose(routing(e2, seq_mask, k_mask)[0], caps, atol=1e-6)


def test_capsule_gradient_reaches_the_shared_bilinear_map():
    routing = CapsuleRouting(8, 3, 5)
    e = torch.randn(2, 5, 8, requires_grad=True)
    caps, _ = routing(e, torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool))
    caps.sum().backward()
    assert routing.bilinear.weight.grad is not None and routing.bilinear.weight.grad.abs().sum() > 0
    assert e.grad is not None and e.grad.abs().sum() > 0


def test_routing_init_redraw_changes_logits_fixed_does_not():
    fixed = CapsuleRouting(8, 4, 6, init="fixed", seed=0)
    redraw = CapsuleRouting(8, 4, 6, init="redraw", seed=0)
    assert torch.equal(fixed.initial_logits(3), fixed.initial_logits(3))
    assert torch.equal(fixed.initial_logits(2)[0], fixed.initial_logits(2)[1])  # shared across users
    a, b = redraw.initial_logits(3), redraw.initial_logits(3)
    assert not torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # drawn per user
    with pytest.raises(ValueError):
        CapsuleRouting(8, 4, 6, init="zeros")


def _model(init="fixed", side=None, k_max=3, max_len=6, n_items=30):
    return MIND(n_items, MINDConfig(dim=8, k_max=k_max, max_len=max_len, routing_init=init, side_dim=4, hidden=16),
                side=side)


def test_mind_interests_redraw_varies_between_calls_and_user_interests_is_seeded():
    hist = torch.tensor([[30, 30, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10]])
    m_fixed, m_redraw = _model("fixed").eval(), _model("redraw").eval()
    with torch.no_grad():
        assert torch.equal(m_fixed.interests(hist)[0], m_fixed.interests(hist)[0])
        assert not torch.equal(m_redraw.interests(hist)[0], m_redraw.interests(hist)[0])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    v1 = user_interests(m_redraw, hist.numpy(), seed=0)
    after = torch.rand(1)
    v2 = user_interests(m_redraw, hist.numpy(), seed=0)
    assert np.array_equal(v1[0], v2[0])
    assert torch.equal(before, after)  # the caller's RNG stream is not reset


def test_mind_dynamic_k_masks_interests_and_weights_sum_to_one():
    hist = torch.tensor([[30, 30, 30, 30, 30, 1], [30, 30, 30, 1, 2, 3], [1, 2, 3, 4, 5, 6], [30] * 6])
    with torch.no_grad():
        vecs, active, weights = _model(k_max=3).interests(hist)
    assert active.sum(1).tolist() == [1, 2, 2, 1]
    assert (vecs[~active] == 0).all()
    assert torch.allclose(weights[:3].sum(1), torch.ones(3))
    assert (weights[~active] == 0).all()


def test_side_info_any_number_of_features():
    side = {"genre": np.arange(30) % 5, "language": np.arange(30) % 3, "decade": np.arange(30) % 4}
    m = _model(side=side)
    assert m.proj.in_features == 8 + 3 * 4
    assert m.item_vectors().shape == (30, 8)
    # songs sharing all side features but not the id differ; a change in a side code changes the vector
    e = m.item_embed(torch.tensor([0, 0]))
    assert torch.allclose(e[0], e[1])
    m.codes_genre[0] = 4
    assert not torch.allclose(m.item_embed(torch.tensor([0]))[0], e[0])


def test_label_aware_attention_power():
    m = _model()
    vecs = torch.tensor([[[1.0, 0, 0, 0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0, 0, 0, 0], [9.0] * 8]])
    k_mask = torch.tensor([[True, True, False]])  # the third interest is inactive: never attended
    target = torch.tensor([[1.0, 3.0, 0, 0, 0, 0, 0, 0]])  # affinities 1 and 6 (and 36 for the inactive one)
    m.cfg = MINDConfig(dim=8, pow_p=50.0)
    hard = m.label_aware(vecs, k_mask, target)
    assert torch.allclose(hard, vecs[0, 1][None], atol=1e-4)
    m.cfg = MINDConfig(dim=8, pow_p=1e-6)
    soft = m.label_aware(vecs, k_mask, target)
    assert torch.allclose(soft, vecs[0, :2].mean(0, keepdim=True), atol=1e-3)


@pytest.mark.parametrize("init", ["fixed", "redraw"])
def test_mind_loss_is_finite_and_trains(init):
    torch.manual_seed(0)
    m = _model(init, side={"genre": np.arange(30) % 5})
    hist = torch.randint(0, 31, (16, 6))
    target = torch.randint(0, 30, (16,))
    sampler = NegativeSampler(np.ones(30), seed=0)
    loss = mind_loss(m, hist, target, sampler, n_neg=10)
    assert torch.isfinite(loss)
    loss.backward()
    assert m.id_emb.weight.grad.abs().sum() > 0 and m.side_emb["genre"].weight.grad.abs().sum() > 0


def test_clustering_quality_separates_structure_from_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 100)
    centres = rng.normal(size=(4, 16)) * 5
    good = clustering_quality(centres[labels] + rng.normal(size=(400, 16)), labels, n_sample=400)
    noise = clustering_quality(rng.normal(size=(400, 16)), labels, n_sample=400)
    assert good["silhouette"] > 0.5 and good["nmi"] > 0.9
    assert abs(noise["silhouette"]) < 0.1 and noise["nmi"] < 0.1


def test_fit_mind_is_reproducible_for_a_seed():
    from musicrecall.multi_interest import fit_mind
    from musicrecall.training import TrainConfig

    rng = np.random.default_rng(0)
    ev = pl.DataFrame({"user_id": np.repeat(np.arange(20), 12), "song_id": rng.integers(0, 40, 240),
                       "ts": np.tile(np.arange(12), 20), "full_play": np.ones(240, bool)})
    cfg = MINDConfig(dim=8, k_max=2, max_len=5, routing_init="redraw", hidden=16)
    tc = TrainConfig(epochs=1, seed=3, progress=False)
    torch.manual_seed(1)
    a = fit_mind(ev, None, 40, cfg, None, tc, per_user=4, batch_size=16, n_neg=8)[0].item_vectors()
    torch.manual_seed(2)  # whatever the caller's RNG state
    b = fit_mind(ev, None, 40, cfg, None, tc, per_user=4, batch_size=16, n_neg=8)[0].item_vectors()
    assert np.array_equal(a, b)


def test_clustering_check_warns_instead_of_a_silent_nan():
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match="not computable"):
        out = clustering_quality(rng.normal(size=(50, 8)), np.zeros(50, dtype=np.int64), n_sample=50)
    assert np.isnan(out["silhouette"]) and np.isnan(out["nmi"])


def test_clustering_labels_pick_a_relation_the_data_has():
    songs = np.arange(400)
    artist = np.arange(400) // 4  # 100 artists of 4 songs, too many to cluster on
    artist[:120] = np.arange(120) // 20  # 6 big artists of 20 songs
    rel, picked, labels, note = clustering_labels({"artist": artist}, songs, max_labels=20, min_per_label=5)
    assert rel == "artist" and picked.tolist() == list(range(120)) and len(set(labels.tolist())) == 6
    assert "most common" in note
    genre = np.arange(400) % 3
    rel, picked, _, note = clustering_labels({"artist": artist, "genre": genre}, songs)
    assert rel == "genre" and picked.shape[0] == 400  # genre (3 values) comes first, on every song
    rel, picked, _, note = clustering_labels({"artist": np.full(400, -1)}, songs)
    assert rel == "" and picked.shape[0] == 0 and "no catalogue relation" in note


# --------------------------------------------------------------------------------------------------
# C3 with training seeds: seeded lift table with an A/A control, seeded levels (notebook 04)
# --------------------------------------------------------------------------------------------------


def _per_user(rng: np.random.Generator, p: float, n: int = 3000) -> dict[str, dict[str, np.ndarray]]:
    hits = (rng.random(n) < p).astype(np.float64)
    return {"all": {"hr@200": hits, "hr@50": hits * (rng.random(n) < 0.5)}}


def test_seeded_lift_table_puts_seed_spread_and_the_aa_control_in_the_interval():
    from musicrecall.sequences import seeded_lift_table

    rng = np.random.default_rng(0)
    # both arms move together from seed to seed, so the per-seed lifts agree (+25% each) while the A/A
    # control (the same model at another seed: +33%, +67%) shows how much one training run can move
    arms = {"both": [_per_user(rng, p) for p in (0.30, 0.40, 0.50)],
            "base": [_per_user(rng, p) for p in (0.24, 0.32, 0.40)]}
    t = seeded_lift_table(arms, [("both", "base")], metrics=("hr@200",), aa_arm="both", n_boot=300)
    row = t.filter(pl.col("model") == "both").row(0, named=True)
    aa = t.filter(pl.col("model") == "both (seed 1)").row(0, named=True)
    assert aa["baseline"] == "both (seed 0)" and aa["kind"] == "all" and aa["n_seeds"] == 1
    assert row["n_seeds"] == 3 and row["sd_seed"] > 0.15  # the A/A spread, not the per-seed lifts' (~0.03)
    # the seeded interval is wider than the users-only bootstrap, on both sides
    assert row["ci_lo"] < row["boot_lo"] and row["ci_hi"] > row["boot_hi"]
    assert row["ci_lo"] <= row["lift"] <= row["ci_hi"]
    # without the A/A arm only the per-seed lifts' spread is left: a much narrower interval
    no_aa = seeded_lift_table(arms, [("both", "base")], metrics=("hr@200",), n_boot=300).row(0, named=True)
    assert no_aa["sd_seed"] < 0.1 and no_aa["ci_hi"] - no_aa["ci_lo"] < 0.7 * (row["ci_hi"] - row["ci_lo"])
    assert abs(row["a"] - np.mean([r["all"]["hr@200"].mean() for r in arms["both"]])) < 1e-12


def test_seeded_lift_table_one_seed_is_the_paired_bootstrap_and_skips_a_zero_baseline():
    from musicrecall.evaluation import paired_bootstrap_lift
    from musicrecall.sequences import seeded_lift_table

    rng = np.random.default_rng(1)
    arms = {"a": [_per_user(rng, 0.4)], "b": [_per_user(rng, 0.3)], "zero": [_per_user(rng, 0.0)]}
    t = seeded_lift_table(arms, [("a", "b"), ("a", "zero")], metrics=("hr@200",), aa_arm="a", n_boot=200)
    assert t.height == 1  # no A/A row with one seed; "a" over "zero" is undefined and left out
    row = t.row(0, named=True)
    lift, lo, hi = paired_bootstrap_lift(arms["a"][0]["all"]["hr@200"], arms["b"][0]["all"]["hr@200"], n_boot=200)
    assert (row["lift"], row["ci_lo"], row["ci_hi"]) == pytest.approx((lift, lo, hi))


def test_seeded_level_widens_with_seed_spread_and_seed_mean_averages():
    from musicrecall.sequences import seed_mean, seeded_level

    rng = np.random.default_rng(2)
    same = _per_user(rng, 0.4)["all"]["hr@200"]
    flat = seeded_level([same, same, same], n_boot=300)
    assert flat["sd_seed"] == 0 and flat["lo"] < flat["mean"] < flat["hi"]
    spread = seeded_level([same, np.roll(same, 1) * 0, same], n_boot=300)
    assert spread["sd_seed"] > 0.2 and spread["hi"] - spread["lo"] > 3 * (flat["hi"] - flat["lo"])
    per_seed = [{"all": {"hr@200": np.array([1.0, 0.0])}}, {"all": {"hr@200": np.array([0.0, 0.0])}}]
    assert seed_mean(per_seed)["all"]["hr@200"].tolist() == [0.5, 0.0]


# --------------------------------------------------------------------------------------------------
# Speed work that must not change results: one embedding per distinct song, running-max top-k, memo
# --------------------------------------------------------------------------------------------------


def _reference_loss(m: MIND, hist: torch.Tensor, target: torch.Tensor, neg: torch.Tensor,
                    sampler: NegativeSampler) -> torch.Tensor:
    """The loss as written before the speed work: every position embedded, weights computed, negatives
    drawn inside the sampled softmax."""
    from musicrecall.models.losses import sampled_softmax_loss

    seq_mask = hist != m.pad
    k_mask = torch.arange(m.cfg.k_max)[None, :] < dynamic_k(seq_mask.sum(1), m.cfg.k_max)[:, None]
    caps, _ = m.routing(m.item_embed(hist), seq_mask, k_mask)
    vecs = m.h(caps) * k_mask[:, :, None]
    user = m.label_aware(vecs, k_mask, m.item_embed(target))

    class Table:
        def __getitem__(self, ids):
            return m.item_embed(ids)

    return sampled_softmax_loss(user, target, Table(), sampler, n_neg=neg.shape[0], neg=neg)


@pytest.mark.parametrize("side", [False, True])
def test_mind_loss_embeds_each_distinct_song_once_with_the_same_loss_and_gradients(side):
    rng = np.random.default_rng(0)
    codes = {"genre": rng.integers(0, 5, 60), "language": rng.integers(0, 3, 60)} if side else None
    m = MIND(60, MINDConfig(dim=8, k_max=3, max_len=7, hidden=16, routing_init="fixed"), side=codes)
    hist = torch.from_numpy(rng.integers(0, 60, (32, 7)))  # repeated songs within and across rows
    hist[:5, :3] = 60  # padding
    target = torch.from_numpy(rng.integers(0, 60, 32))
    sampler = NegativeSampler(np.ones(60), seed=3)
    new = mind_loss(m, hist, target, sampler, n_neg=12)
    new.backward()
    grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    ref = _reference_loss(m, hist, target, NegativeSampler(np.ones(60), seed=3).sample(12), sampler)
    ref.backward()
    assert float(new.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    for g, p in zip(grads, m.parameters(), strict=True):
        assert torch.allclose(g, p.grad, atol=1e-6), p.shape


def test_interests_without_weights_are_the_same_vectors():
    rng = np.random.default_rng(1)
    m = MIND(40, MINDConfig(dim=8, k_max=3, max_len=6, hidden=16))
    hist = torch.from_numpy(rng.integers(0, 41, (10, 6)))
    with torch.no_grad():
        v, k, w = m.interests(hist)
        v2, k2, w2 = m.interests(hist, weights=False)
    assert torch.equal(v, v2) and torch.equal(k, k2) and w2 is None
    assert torch.allclose(w.sum(1), torch.ones(10))


def _naive_topk(vecs, active, items, k, exclude=None):
    s = np.einsum("ukd,nd->ukn", vecs, items)
    s = np.where(active[:, :, None], s, -np.inf).max(1)
    if exclude is not None:
        for r in range(s.shape[0]):
            s[r, exclude.indices[exclude.indptr[r]:exclude.indptr[r + 1]]] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def test_max_interest_topk_matches_the_naive_max_over_active_interests():
    from musicrecall.evaluation import UserItemCSR
    from musicrecall.multi_interest import max_interest_topk

    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(37, 4, 8)).astype(np.float32)
    active = np.ones((37, 4), bool)
    active[::2, 2:] = False  # inactive interests never score, even when their vector is long
    vecs[::2, 2:] *= 100
    items = rng.normal(size=(90, 8)).astype(np.float32)
    indptr = np.arange(0, 37 * 5 + 1, 5)
    ex = UserItemCSR(np.arange(37), indptr, rng.integers(0, 90, 37 * 5))
    for exclude in (None, ex):
        want = _naive_topk(vecs, active, items, 20, exclude)
        for batch in (None, 4, 37):  # several score blocks, one, and the default
            got = max_interest_topk(vecs, active, items, 20, exclude=exclude, batch=batch)
            assert np.array_equal(got, want), (batch, exclude is None)


def test_served_recall_reads_one_set_of_interests_per_user_and_training_recall_does_not_memoise():
    from musicrecall.multi_interest import fit_mind, served_on
    from musicrecall.training import TrainConfig

    rng = np.random.default_rng(0)
    ev = pl.DataFrame({"user_id": np.repeat(np.arange(30), 12), "song_id": rng.integers(0, 60, 360),
                       "ts": np.tile(np.arange(12), 30), "full_play": np.ones(360, bool)})
    cfg = MINDConfig(dim=8, k_max=3, max_len=6, routing_init="redraw", hidden=16)
    rec, _ = fit_mind(ev, None, 60, cfg, None, TrainConfig(epochs=1, progress=False), per_user=4, batch_size=16, n_neg=8)
    served = served_on(rec, ev)
    a = served.recommend(np.array([5, 3, 7, 3]), 10)
    b = served.recommend(np.array([1, 7, 29, 5]), 10)  # other users, other rows: the same lists per user
    assert np.array_equal(a[1], a[3]) and np.array_equal(a[0], b[3]) and np.array_equal(a[2], b[1])
    assert np.array_equal(served.interests(np.array([3, 5]))[0], served.interests(np.array([5, 3]))[0][::-1])
    # a recall still training must see its model change: nothing is memoised there
    before = rec.recommend(np.array([5]), 10)
    with torch.no_grad():
        rec.model.id_emb.weight.mul_(-1.0)
    assert not np.array_equal(before, rec.recommend(np.array([5]), 10))


def test_one_scoring_pass_gives_the_excluded_and_the_plain_lists():
    from musicrecall.evaluation import UserItemCSR
    from musicrecall.multi_interest import fit_mind, max_interest_topk, served_on
    from musicrecall.training import TrainConfig

    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(9, 3, 8)).astype(np.float32)
    active = np.ones((9, 3), bool)
    items = rng.normal(size=(50, 8)).astype(np.float32)
    ex = UserItemCSR(np.arange(9), np.arange(0, 9 * 4 + 1, 4), rng.integers(0, 50, 36))
    plain = np.empty((9, 10), dtype=np.int64)
    got = max_interest_topk(vecs, active, items, 10, exclude=ex, unexcluded=plain, batch=4)
    assert np.array_equal(got, max_interest_topk(vecs, active, items, 10, exclude=ex))
    assert np.array_equal(plain, max_interest_topk(vecs, active, items, 10))
    # a served recall: the discovery call memoises the plain lists the "all" call then reads
    ev = pl.DataFrame({"user_id": np.repeat(np.arange(30), 12), "song_id": rng.integers(0, 60, 360),
                       "ts": np.tile(np.arange(12), 30), "full_play": np.ones(360, bool)})
    cfg = MINDConfig(dim=8, k_max=3, max_len=6, routing_init="redraw", hidden=16)
    rec, _ = fit_mind(ev, None, 60, cfg, None, TrainConfig(epochs=1, progress=False), per_user=4, batch_size=16, n_neg=8)
    served = served_on(rec, ev)
    users = np.array([4, 2, 9])
    hist = UserItemCSR(users, np.array([0, 2, 3, 5]), np.array([1, 2, 3, 4, 5]))
    disc = served.recommend(users, 10, hist)
    assert not np.isin(disc[0], [1, 2]).any() and not np.isin(disc[2], [4, 5]).any()
    vecs_u, act_u, _ = served.interests(users)
    assert np.array_equal(served.recommend(np.array([9, 4]), 10),
                          max_interest_topk(vecs_u, act_u, served.item_vectors(), 10)[[2, 0]])
    assert served.recommend(users, 10, hist) is disc  # the same call twice is scored once


def test_fit_mind_resample_draws_fresh_examples_per_epoch_reproducibly(monkeypatch):
    from musicrecall import multi_interest as mi
    from musicrecall.training import TrainConfig

    rng = np.random.default_rng(0)
    ev = pl.DataFrame({"user_id": np.repeat(np.arange(20), 30), "song_id": rng.integers(0, 40, 600),
                       "ts": np.tile(np.arange(30), 20), "full_play": np.ones(600, bool)})
    cfg = MINDConfig(dim=8, k_max=2, max_len=5, routing_init="redraw", hidden=16)
    seen: list[np.ndarray] = []
    loss = mi.mind_loss

    def spy(model, hist, target, sampler, n_neg):
        seen.append(target.numpy().copy())
        return loss(model, hist, target, sampler, n_neg)

    monkeypatch.setattr(mi, "mind_loss", spy)
    runs = {}
    for resample in (False, True, True):
        seen.clear()
        rec, _ = mi.fit_mind(ev, None, 40, cfg, None, TrainConfig(epochs=3, seed=1, progress=False), per_user=4,
                             batch_size=1000, n_neg=8, resample=resample, seed=1)
        epochs = [np.sort(t) for t in seen]
        assert len(epochs) == 3 and all(e.shape == (80,) for e in epochs)  # 4 positions x 20 users per epoch
        same = all(np.array_equal(epochs[0], e) for e in epochs[1:])
        assert same is (not resample)
        runs.setdefault(resample, []).append(rec.item_vectors())
    assert np.array_equal(runs[True][0], runs[True][1])  # seeded by (seed, epoch): reproducible


def _reference_route(r: CapsuleRouting, u_hat: torch.Tensor, seq_mask: torch.Tensor, k_mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic routing as first written (masks rebuilt every iteration, logits updated by bmm then add)."""
    u_sg = u_hat.detach()
    b = r.initial_logits(u_hat.shape[0])
    valid = seq_mask[:, None, :] & k_mask[:, :, None]
    caps = u_hat.new_zeros(u_hat.shape[0], r.k_max, u_hat.shape[-1])
    for it in range(r.iters):
        last = it == r.iters - 1
        if r.axis == "interest":
            w = torch.softmax(b.masked_fill(~k_mask[:, :, None], float("-inf")), dim=1)
        else:
            w = torch.softmax(b.masked_fill(~seq_mask[:, None, :], float("-inf")), dim=2)
        w = w.masked_fill(~valid, 0.0)
        caps = squash(torch.bmm(w, u_hat if last else u_sg))
        if not last:
            b = b + torch.bmm(caps.detach(), u_sg.transpose(1, 2))
    return caps * k_mask[:, :, None], torch.bmm(caps.detach(), u_sg.transpose(1, 2))


@pytest.mark.parametrize("axis", ["interest", "sequence"])
def test_routing_matches_the_reference_values_and_gradients(axis):
    torch.manual_seed(0)
    r = CapsuleRouting(8, 3, 7, axis=axis, init="fixed", seed=1)
    u = torch.randn(16, 7, 8, requires_grad=True)
    seq_mask = torch.rand(16, 7) > 0.3
    seq_mask[:, -1] = True
    seq_mask[0] = False  # a row with no behaviour at all: zeros, not NaN
    k_mask = torch.arange(3)[None, :] < torch.randint(1, 4, (16, 1))
    caps, agree = r.route(u, seq_mask, k_mask)
    grad = torch.randn_like(caps)
    (gu,) = torch.autograd.grad(caps, u, grad)
    ref_caps, ref_agree = _reference_route(r, u, seq_mask, k_mask)
    (ref_gu,) = torch.autograd.grad(ref_caps, u, grad)
    assert torch.isfinite(caps).all() and torch.isfinite(gu).all()
    assert torch.allclose(caps, ref_caps, atol=1e-6) and torch.allclose(agree, ref_agree, atol=1e-5)
    assert torch.allclose(gu, ref_gu, atol=1e-6)


def test_unique_ids_is_torch_unique_with_inverse():
    from musicrecall.models.mind import unique_ids

    ids = torch.from_numpy(np.random.default_rng(2).integers(0, 50, (9, 7)))
    ids[0, 0], ids[1, 1] = 0, 49  # both ends of the id range
    uniq, inv = unique_ids(ids, 50)
    ref_uniq, ref_inv = torch.unique(ids, return_inverse=True)
    assert torch.equal(uniq, ref_uniq) and torch.equal(inv, ref_inv) and inv.shape == ids.shape
    assert torch.equal(uniq[inv], ids)
