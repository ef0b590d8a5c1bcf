"""Vertical federated learning: channel, PSI, split-learning gradients, and the message audit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from musicrecall.federated import ChannelAuditor, RemoteUserTower, client_align, decode, encode, start_party_b
from musicrecall.federated.channel import Message
from musicrecall.federated.privacy import privacy_report, zcdp_epsilon
from musicrecall.models.dssm import DSSM, ItemTower, UserTower, dense_user_features
from musicrecall.models.losses import NegativeSampler

N_F = 6


def _b_table(path, keys: list[str], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(len(keys), N_F)).astype(np.float32)
    t = pl.DataFrame({"user_key": keys, "b_age_bucket": rng.choice(["18-24", "25-34"], len(keys)),
                      **{f"f{j:02d}": feats[:, j] for j in range(N_F)}})
    t.write_parquet(path)
    return feats


@pytest.fixture()
def parties(tmp_path):
    a_keys = [f"u{i:07d}" for i in range(0, 60)]
    b_keys = [f"u{i:07d}" for i in range(40, 100)]  # overlap: 40..59
    path = tmp_path / "b.parquet"
    feats = _b_table(path, b_keys)
    auditor = ChannelAuditor(feats)
    auditor.set_alignment(sorted(set(a_keys) & set(b_keys)))
    handle = start_party_b(path, mode="thread", keep_payloads=True, inspectors=[auditor])
    yield handle, auditor, a_keys, b_keys, feats, path
    handle.close()


def test_encode_decode_roundtrip_and_dtype_whitelist():
    msg = Message("embeddings", "B", 3, {"name": "t", "train": True},
                  {"emb": np.arange(6, dtype=np.float32).reshape(2, 3), "idx": np.array([1, 2], np.int64)})
    back = decode(encode(msg))
    assert back.type == "embeddings" and back.meta == msg.meta
    assert np.array_equal(back.arrays["emb"], msg.arrays["emb"]) and back.arrays["idx"].dtype == np.int64
    with pytest.raises(TypeError):
        encode(Message("x", "A", 0, {}, {"bad": np.zeros(2, np.float64)}))
    with pytest.raises(TypeError):
        encode(Message("x", "A", 0, {"bad": [1, 2]}))


def test_psi_finds_exactly_the_intersection_and_reveals_no_other_id(parties):
    handle, auditor, a_keys, b_keys, _, _ = parties
    idx = client_align(handle.endpoint, a_keys)
    assert [a_keys[i] for i in idx] == sorted(set(a_keys) & set(b_keys))
    assert handle.party.aligned_rows.shape[0] == 20  # B learned the 20 shared ids, in A's order
    assert [handle.party.keys[r] for r in handle.party.aligned_rows] == [a_keys[i] for i in idx]
    only = [k.encode() for k in set(a_keys) ^ set(b_keys)]
    for entry in handle.endpoint.log:  # no non-overlapping id, in either direction, in any byte
        assert not any(k in entry.payload for k in only), entry.type
    assert auditor.passed, auditor.violations


def _models(path, n_items=50, dim=8):
    rng = np.random.default_rng(1)
    codes = np.stack([np.arange(n_items), rng.integers(0, 5, n_items), rng.integers(0, 3, n_items)], axis=1)
    cards = [n_items, 5, 3]
    torch.manual_seed(0)
    items = ItemTower(codes, cards, dim=dim, field_dim=4, hidden=8)
    torch.manual_seed(0)
    user = UserTower(N_F + 6, dim=dim, hidden=16)  # the same seed B uses: identical initial weights
    table = pl.read_parquet(path)
    x = torch.from_numpy(dense_user_features(table, "b_age_bucket", [f"f{j:02d}" for j in range(N_F)]))
    return items, user, x


def test_split_learning_gradients_equal_centralised(parties):
    handle, auditor, a_keys, _, _, path = parties
    idx = client_align(handle.endpoint, a_keys)
    items_c, user_c, x = _models(path)
    central = DSSM(user_c, items_c)
    items_f, _, _ = _models(path)
    tower = RemoteUserTower(handle.endpoint, "t", dim=8, hidden=16, seed=0, lr=0.0, grad_clip=None)
    fed = DSSM(tower, items_f)
    b_rows = handle.party.aligned_rows
    batch = np.array([0, 3, 5, 7, 11, 19])
    rows = torch.tensor([0, 1, 1, 2, 3, 4, 5, 5])
    pos = torch.tensor([1, 4, 9, 16, 25, 36, 2, 3])
    losses = []
    for model, user_input in ((central, x[torch.from_numpy(b_rows[batch])]), (fed, batch)):
        model.zero_grad()
        loss = model.loss(user_input, rows, pos, NegativeSampler(np.ones(50), seed=3), n_neg=16)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for (name, p_c), p_f in zip(items_c.named_parameters(), items_f.parameters(), strict=True):
        torch.testing.assert_close(p_c.grad, p_f.grad, rtol=1e-5, atol=1e-7, msg=name)
    b_tower = handle.party.towers["t"].tower  # white-box: B's gradients after the grad message
    handle.endpoint.request("privacy_request", expect="privacy", name="t")  # a round trip: B has processed `grad`
    for p_c, p_b in zip(user_c.parameters(), b_tower.parameters(), strict=True):
        torch.testing.assert_close(p_c.grad, p_b.grad, rtol=1e-5, atol=1e-7)
    assert len(idx) == 20 and auditor.passed, auditor.violations


def test_audit_passes_on_a_real_protocol_and_catches_leaks(parties):
    handle, auditor, a_keys, _, feats, _ = parties
    client_align(handle.endpoint, a_keys)
    tower = RemoteUserTower(handle.endpoint, "t", dim=8, hidden=16, clip_norm=1.0, noise_multiplier=0.5)
    for _ in range(3):
        out = tower(np.arange(10))
        out.sum().backward()
    tower.eval()
    tower(np.arange(20))
    types = {e.type for e in handle.endpoint.log}
    assert {"psi_request", "psi_reply", "psi_aligned", "embed", "embeddings", "grad"} <= types
    assert auditor.passed and auditor.messages >= 12, auditor.violations
    # negative controls: each leak must be caught
    rows = handle.party.aligned_rows
    leaks = {
        "raw rows": Message("embeddings", "B", 900, {}, {"emb": feats[rows[:4]]}),
        "one raw column": Message("embeddings", "B", 901, {}, {"emb": feats[rows[:40] % len(feats), 2:3].copy()}),
        "id outside the intersection": Message("psi_aligned", "A", 902, {}, {"keys": np.frombuffer(b"u0000099", np.uint8)}),
        "unknown type": Message("features", "B", 903, {}, {"x": feats[:2].ravel().copy()}),
        "wrong sender": Message("grad", "B", 904, {}, {"grad": np.zeros((2, 8), np.float32)}),
        "bad index": Message("embed", "A", 905, {}, {"idx": np.array([10_000], np.int64)}),
        "grad without embeddings": Message("grad", "A", 906, {"name": "t"}, {"grad": np.zeros((2, 8), np.float32)}),
        "song key of A": Message("psi_aligned", "A", 907, {}, {"keys": np.frombuffer(b"u0000045\ns000123", np.uint8)}),
        "artist key of A in meta": Message("init_tower", "A", 908, {"name": "artist_0042"}),
    }
    for what, msg in leaks.items():
        assert not _audit_alone([msg], feats, auditor.aligned_keys).passed, what
    # A's gradient must have exactly the shape of the training embeddings it answers: no extra columns
    # (e.g. item features or labels appended to the gradient)
    embed = Message("embed", "A", 0, {"name": "t", "train": True}, {"idx": np.arange(3, dtype=np.int64)})
    emb = Message("embeddings", "B", 0, {}, {"emb": np.zeros((3, 8), np.float32)})
    ok = Message("grad", "A", 1, {"name": "t"}, {"grad": np.ones((3, 8), np.float32)})
    wide = Message("grad", "A", 1, {"name": "t"}, {"grad": np.ones((3, 9), np.float32)})
    assert _audit_alone([embed, emb, ok], feats, auditor.aligned_keys).passed
    # a gradient whose bytes spell a key by chance is not a leak: small floats have ASCII-digit exponent
    # bytes ("s" + six digits turned up about once per run at small); typed arrays are checked by value
    spelled = np.frombuffer(b"s000123\x00u0000099" + bytes(24 * 4 - 16), np.float32).reshape(3, 8).copy()
    lucky = Message("grad", "A", 1, {"name": "t"}, {"grad": spelled})
    assert _audit_alone([embed, emb, lucky], feats, auditor.aligned_keys).passed
    assert not _audit_alone([embed, emb, wide], feats, auditor.aligned_keys).passed
    short = Message("embeddings", "B", 0, {}, {"emb": np.zeros((2, 8), np.float32)})
    assert not _audit_alone([embed, short], feats, auditor.aligned_keys).passed


def _audit_alone(msgs: list[Message], feats: np.ndarray, keys: set[str]) -> ChannelAuditor:
    """A fresh auditor run over ``msgs`` as A's endpoint would log them."""
    from musicrecall.federated.channel import LogEntry

    a = ChannelAuditor(feats)
    a.set_alignment(sorted(keys))
    for msg in msgs:
        data = encode(msg)
        a(LogEntry(msg.seq, "sent" if msg.sender == "A" else "received", msg.sender, msg.type, len(data), "", 0.0,
                   data), decode(data))
    return a


def test_noise_and_privacy_accounting(parties):
    handle, _, a_keys, _, _, _ = parties
    client_align(handle.endpoint, a_keys)
    tower = RemoteUserTower(handle.endpoint, "dp", dim=8, hidden=16, clip_norm=0.5, noise_multiplier=0.0)
    tower.eval()
    with torch.no_grad():
        assert float(tower(np.arange(20)).norm(dim=1).max()) <= 0.5 + 1e-5  # clipped
    noisy = RemoteUserTower(handle.endpoint, "dp2", dim=8, hidden=16, clip_norm=0.5, noise_multiplier=2.0)
    noisy.eval()
    a, b = noisy(np.arange(20)), noisy(np.arange(20))
    assert not torch.equal(a, b)
    report = noisy.privacy(delta=1e-5)
    assert report["max_releases"] == 2
    want = privacy_report(2, 2.0, 0.5, 1e-5)  # the tight (GDP) figure, with the RDP and zCDP bounds beside it
    assert report["epsilon"] == pytest.approx(want["epsilon"]) and report["sensitivity"] == pytest.approx(1.0)
    assert report["epsilon"] < report["epsilon_rdp"] < report["epsilon_zcdp"] == pytest.approx(zcdp_epsilon(2, 2.0))
    assert zcdp_epsilon(10, 1.0) > zcdp_epsilon(10, 4.0) > 0


def test_snapshot_restore_drives_early_stopping_state(parties):
    handle, _, a_keys, _, _, _ = parties
    client_align(handle.endpoint, a_keys)
    tower = RemoteUserTower(handle.endpoint, "s", dim=8, hidden=16, lr=0.05)
    tower.eval()
    before = tower(np.arange(5)).clone()
    state = tower.state_dict()
    tower.train()
    (tower(np.arange(5)) ** 2).sum().backward()
    tower.eval()
    assert not torch.allclose(tower(np.arange(5)), before)
    tower.load_state_dict(state)
    torch.testing.assert_close(tower(np.arange(5)), before)


def test_party_b_runs_in_a_separate_process(tmp_path):
    path = tmp_path / "b.parquet"
    _b_table(path, [f"u{i:07d}" for i in range(10, 30)])
    with start_party_b(path, mode="process") as handle:
        idx = client_align(handle.endpoint, [f"u{i:07d}" for i in range(0, 20)])
        assert idx.tolist() == list(range(10, 20))
        tower = RemoteUserTower(handle.endpoint, "p", dim=4, hidden=8)
        out = tower(np.arange(10))
        out.sum().backward()
        assert out.shape == (10, 4)
    assert not handle.worker.is_alive()


def test_cold_start_measures_on_hand_made_data():
    from musicrecall.federated.coldstart import cold_users, duration_at_k, per_user_auc, play_rows

    # per-user AUC: user 1 ranks its full play above both skips (1.0), user 2 ties (0.5), user 3 has one class
    users = np.array([1, 1, 1, 2, 2, 3])
    got_u, auc = per_user_auc(users, np.array([0.9, 0.1, 0.2, 0.5, 0.5, 0.3]),
                              np.array([True, False, False, True, False, True]))
    assert got_u.tolist() == [1, 2] and auc.tolist() == [1.0, 0.5]
    # listening time of the list: minutes the user spent in the window on listed songs
    window = pl.DataFrame({"user_id": [1, 1, 1, 2], "song_id": [5, 5, 7, 5], "play_ms": [60_000, 30_000, 120_000, 6_000]})
    lists = np.array([[5, 9], [7, -1]])
    assert duration_at_k(lists, np.array([1, 2]), window).tolist() == [1.5, 0.0]
    # cold users: at most max_plays fit-window plays (never seen counts as 0)
    fit = pl.DataFrame({"user_id": [1, 1, 1, 2]})
    assert cold_users(fit, np.array([1, 2, 3]), max_plays=1).tolist() == [2, 3]
    # the MMoE's rows hold the DSSM's full plays exactly, plus other plays
    rng = np.random.default_rng(0)
    ev = pl.DataFrame({"user_id": rng.integers(0, 20, 500), "song_id": rng.integers(0, 50, 500),
                       "full_play": rng.random(500) < 0.5, "action": [None] * 500,
                       "play_ms": rng.integers(0, 300_000, 500)})
    aligned = {u: i for i, u in enumerate(range(0, 20, 2))}
    dssm, mmoe = (play_rows(ev, aligned, 5, 0, full_plays_only=f) for f in (True, False))
    assert dssm["full_play"].all() and dssm.group_by("a_idx").len()["len"].max() <= 5
    assert dssm.equals(mmoe.filter(pl.col("full_play")))
    assert (~mmoe["full_play"]).sum() > 0 and set(mmoe["a_idx"].unique()) <= set(aligned.values())


def test_the_cold_start_setups_share_one_split_and_one_test_fit_window():
    """valid, test and cold setups of notebook 07 are cut by one split, and test and cold (the same stage) read
    one fit frame: at profile medium each extra split or fit window was a ~1.8 GB copy of the log (the kernel
    went from 11.8 to 6.4 GB after loading the cold-start data). The shared setups equal separately built ones."""
    from musicrecall.data import prepare
    from musicrecall.evaluation import make_eval_setup
    from musicrecall.federated.coldstart import cold_users
    from musicrecall.federated.pipeline import _SETUPS, eval_setups

    prep = prepare("world", profile="tiny", seed=0, raw_log=False)
    ev, items = prep.clean.events, prep.dataset.items
    _SETUPS.clear()
    valid, test, cold, *_ = eval_setups(ev, items, 5)
    assert valid.split is test.split is cold.split
    assert test.fit is cold.fit
    alone = make_eval_setup(ev, items.height, stage="test")  # its own split, as each setup was built before
    assert test.fit.equals(alone.fit) and test.fit is not alone.fit
    users = cold_users(alone.fit, alone.targets["all"].users, 5)
    cold_alone = make_eval_setup(ev, items.height, stage="test", users=users)
    for kind in cold.targets:
        assert np.array_equal(cold.targets[kind].users, cold_alone.targets[kind].users)


def test_the_federated_validation_setup_reuses_the_cold_start_split():
    """The early-stopping setup of notebook 07's and 08's federated models is cut by the split the cold-start
    data already holds (a new split was another ~1.8 GB copy of the log at profile medium), built once per user
    set, and its targets equal those of a separately split setup."""
    from musicrecall.evaluation import make_eval_setup
    from musicrecall.federated.pipeline import _SETUPS, load_cold_start, validation_setup

    _SETUPS.clear()
    data = load_cold_start("world", "tiny", 0, 5)
    users = np.sort(data.valid.targets["all"].users)[::3]
    vsetup = validation_setup(data, users)
    assert vsetup.split is data.valid.split and vsetup.fit is data.valid.fit
    assert validation_setup(data, users.copy()) is vsetup  # built once per user set
    alone = make_eval_setup(data.events, data.ds.items.height, stage="valid", users=users)
    assert alone.split is not data.valid.split
    for kind in vsetup.targets:
        assert np.array_equal(vsetup.targets[kind].users, alone.targets[kind].users)
        assert np.array_equal(vsetup.targets[kind].indices, alone.targets[kind].indices)


def test_load_cold_start_reuses_the_callers_prepared_world_and_split():
    """Notebook 08 holds the world's cleaned plays and one split; its DSSM channel's cold-start data reuses both
    (at profile medium a second load and split kept ~5 GB for the notebook's lifetime, and 08 died at 20.4 GB),
    with the same setups as built on their own."""
    from musicrecall.data import prepare
    from musicrecall.evaluation import make_eval_setup
    from musicrecall.federated.pipeline import _SETUPS, load_cold_start

    prep = prepare("world", profile="tiny", seed=0, raw_log=False)
    _SETUPS.clear()
    alone = load_cold_start("world", "tiny", 0, 5)
    split = make_eval_setup(prep.clean.events, prep.dataset.items.height, stage="valid").split
    data = load_cold_start("world", "tiny", 0, 5, prep=prep, split=split)
    assert data.events is prep.clean.events
    assert data.valid.split is split and data.test.split is split and data.cold.split is split
    assert alone.valid.split is not split  # a cached entry of another split is not reused for this one
    for a, b in ((alone.valid, data.valid), (alone.test, data.test), (alone.cold, data.cold)):
        assert np.array_equal(a.targets["all"].users, b.targets["all"].users)
        assert np.array_equal(a.targets["all"].indices, b.targets["all"].indices)
