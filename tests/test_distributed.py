"""Data-parallel training (musicrecall.distributed): 2 processes (gloo, DDP) vs 1 process, same global batch.

The model is SASRec (the loss of notebook 03: next-play sampled softmax over the real positions of
left-padded windows) on a small synthetic log with a learnable pattern. Dropout is 0 so that both runs
draw the same random numbers (each rank would draw its own dropout masks).
Tolerances: parameters within 1e-4 (float rounding of a sum split across two processes, carried
through 3 epochs of AdamW), except the attention's key bias, whose true gradient is zero (AdamW
normalises the rounding noise there into full steps in both runs alike); validation HitRate@20 within
0.01 per epoch (one user in 100 may flip on a tie at the cut-off); training loss within 1e-4 relative.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from musicrecall import config, distributed
from musicrecall.models.losses import NegativeSampler
from musicrecall.models.sasrec import SASRec
from musicrecall.sequences import causal_loss
from musicrecall.training import History, TrainConfig, minibatches, train

N_ITEMS, L, N_WIN, BATCH, DIM = 120, 8, 400, 64, 16
KEEP_QV = torch.cat([torch.arange(DIM), torch.arange(2 * DIM, 3 * DIM)])  # qkv.bias without the key part


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """Windows whose next song is mostly the previous song + 1 (a pattern to learn), left-padded."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, N_ITEMS, N_WIN + 100)
    seq = (start[:, None] + np.arange(L + 1)[None, :]) % N_ITEMS
    noise = rng.random(seq.shape) < 0.2
    seq = np.where(noise, rng.integers(0, N_ITEMS, seq.shape), seq)
    lengths = rng.integers(2, L + 1, seq.shape[0])
    x, y = seq[:, :-1].copy(), seq[:, 1:].copy()
    for i, n in enumerate(lengths):  # variable real lengths: shards hold different numbers of positions
        x[i, : L - n], y[i, : L - n] = N_ITEMS, N_ITEMS
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return xt[:N_WIN], yt[:N_WIN], xt[N_WIN:], y[N_WIN:, -1]


def _train(epochs: int = 3) -> tuple[SASRec, History]:
    x, y, x_val, y_val = _data()
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, DIM, L, n_blocks=1, n_heads=1, dropout=0.0)
    sampler = NegativeSampler(np.bincount(y[y < N_ITEMS].numpy(), minlength=N_ITEMS), seed=0)
    loss = causal_loss(sampler, N_ITEMS, n_neg=32)
    loss.batch_units = lambda b: int((b[1] != N_ITEMS).sum())  # the loss averages over real positions

    def batches(epoch: int):
        for idx in minibatches(N_WIN, BATCH, seed=0, epoch=epoch):
            i = torch.from_numpy(idx)
            yield x[i], y[i], None

    def validate(m: SASRec) -> float:
        top = (m.user_vecs(x_val) @ m.item_table().T).topk(20, dim=1).indices.numpy()
        return float((top == y_val[:, None]).any(1).mean())

    cfg = TrainConfig(epochs=epochs, lr=1e-2, patience=10, seed=0, progress=False)
    return model, train(model, batches, loss, cfg, validate, name="ddp_test")


def _worker(rank: int, world: int, port: int, out: str) -> None:
    distributed.init(rank, world, port=port)
    try:
        assert distributed.active() is not None
        model, hist = _train()
        torch.save({"state": model.state_dict(), "scores": [e["valid_score"] for e in hist.epochs],
                    "losses": [e["train_loss"] for e in hist.epochs]}, Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def runs() -> tuple[dict, list[dict]]:
    config.set_threads(1)
    model, hist = _train()
    one = {"state": model.state_dict(), "scores": [e["valid_score"] for e in hist.epochs],
           "losses": [e["train_loss"] for e in hist.epochs]}
    with tempfile.TemporaryDirectory() as tmp:
        distributed.spawn(_worker, 2, tmp)
        two = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(2)]
    return one, two


def test_two_processes_give_the_parameters_and_validation_scores_of_one(runs) -> None:
    one, two = runs
    assert one["scores"][-1] > 0.2  # the pattern was learnt: the comparison is not between untrained models
    for k, v in one["state"].items():
        for r in range(2):
            a, b = two[r]["state"][k], v
            # the key bias has a zero true gradient (softmax is shift-invariant), so AdamW turns rounding
            # noise into full-size steps there: compare the other entries of the layer
            if k.endswith("qkv.bias"):  # one fused projection: [q | k | v]
                a, b = a[KEEP_QV], b[KEEP_QV]
            elif k.endswith(".kv.bias"):  # separate q and kv projections: kv = [k | v]
                a, b = a[DIM:], b[DIM:]
            assert torch.allclose(a, b, atol=1e-4, rtol=0), (k, r, float((a - b).abs().max()))
    # the ranks hold identical parameters, bit for bit (the same averaged gradients and steps)
    assert all(torch.equal(two[0]["state"][k], two[1]["state"][k]) for k in one["state"])
    np.testing.assert_allclose(two[0]["scores"], one["scores"], atol=0.01)
    assert two[0]["scores"] == two[1]["scores"]  # rank 0's score was broadcast
    np.testing.assert_allclose(two[0]["losses"], one["losses"], rtol=1e-4)


def test_training_moved_the_parameters(runs) -> None:
    """Guards the comparison above: the trained weights are far from the initial ones."""
    one, _ = runs
    torch.manual_seed(0)
    init = SASRec(N_ITEMS, DIM, L, n_blocks=1, n_heads=1, dropout=0.0).state_dict()
    assert max(float((one["state"][k] - init[k]).abs().max()) for k in init) > 0.05


def test_shard_slices_every_batch_tensor_and_weights_by_units() -> None:
    ctx = distributed.Context(rank=1, world=2)
    x, y = torch.arange(10).reshape(5, 2), torch.tensor([1, 0, 0, 1, 1])
    (lx, ly, none), w = ctx.shard((x, y, None), units=lambda b: int(b[1].sum()) if isinstance(b, tuple) else 0)
    assert torch.equal(lx, x[2:]) and torch.equal(ly, y[2:]) and none is None
    assert w == pytest.approx(2 * 2 / 3)  # rank 1 holds 2 of the 3 units
    (ex,), w0 = distributed.Context(rank=0, world=4).shard((torch.arange(3),))  # 3 rows, 4 ranks: rank 0 empty
    assert w0 == 0.0 and ex.shape[0] == 1
    with pytest.raises(TypeError, match="cannot shard"):
        ctx.shard("not a batch")



@pytest.mark.parametrize("mode", ["nproc", "parallel_runs"])
def test_notebook_03_trains_its_runs_in_other_processes_and_loads_them(tmp_path, monkeypatch, mode) -> None:
    """Notebook 03 at tiny with ``nproc=2`` (every arm and seed trained by a 2-process DDP group,
    :func:`musicrecall.ddp_train.launch_c2`) or ``parallel_runs=2`` (independent runs side by side,
    :func:`musicrecall.ddp_train.launch_runs`): the notebook's own :func:`sequences.run_c2_world` then loads
    each model from that checkpoint (the same key) instead of training it. A fresh data folder, so no
    checkpoint of an earlier run can stand in for the ones trained here."""
    import nbformat

    from musicrecall.report.runner import NOTEBOOKS_DIR, run_notebook

    monkeypatch.setenv("MUSICRECALL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MUSICRECALL_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("MUSICRECALL_THREADS", "2")  # parallel_runs uses one process per thread of the budget
    params = {"profile": "tiny", "nproc": 2 if mode == "nproc" else 1, "parallel_runs": 2, "n_seeds": 2,
              "run_placebo": False, "run_unshared": False, "eval_users": 200, "n_boot": 200}
    run = run_notebook(NOTEBOOKS_DIR / "03_sequence_recall.ipynb", params, reports_dir=tmp_path / "reports")
    assert run.status == "ok", run.error
    nb = nbformat.read(tmp_path / "reports" / "03_sequence_recall.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "c04")
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    # 2 arms x 2 seeds, none trained by the notebook's own process; DDP runs record 2 processes
    ddp = 4 if mode == "nproc" else 0
    assert f"4 of 4 runs loaded from their checkpoints, {ddp} of them trained data-parallel" in text, text


def test_parallel_runs_are_capped_by_the_free_memory(monkeypatch, caplog):
    """Each side-by-side training process loads the whole log again: at profile medium two of them beside a
    9.3 GB kernel were killed for memory on 24 GB. ``pretrain_c2`` starts only as many as fit (here none:
    the notebook then trains in its own process) and says so; with room for them, it starts them all."""
    from musicrecall import ddp_train

    gb = 1024**3
    available, resident = ddp_train.memory_now() or (1, 1)  # the real reader, on this machine (Linux)
    assert available > 0 and resident > 0
    started = []
    monkeypatch.setattr(ddp_train, "launch_runs", lambda workers, *a, **k: started.append(workers) or [{"ok": 1}])
    monkeypatch.setattr(ddp_train.config, "n_threads", lambda: 2)
    monkeypatch.setattr(ddp_train, "memory_now", lambda: (14 * gb, 9 * gb))  # medium: room for one process
    with caplog.at_level("WARNING", logger="musicrecall.ddp_train"):
        assert ddp_train.pretrain_c2({}, [0], parallel_runs=2) == [] and started == []
    assert "parallel_runs 2 -> 1" in caplog.text
    # medium with a lean kernel (cleaned log only): two workers of ~11 GB were OOM-killed beside it
    monkeypatch.setattr(ddp_train, "memory_now", lambda: (20 * gb, int(3.5 * gb)))
    assert ddp_train.affordable_workers(2) == 1
    monkeypatch.setattr(ddp_train, "memory_now", lambda: (18 * gb, 2 * gb))  # small: room for several
    assert ddp_train.pretrain_c2({}, [0], parallel_runs=2) == [{"ok": 1}] and started == [2]
    monkeypatch.setattr(ddp_train, "memory_now", lambda: None)  # not Linux: no cap
    assert ddp_train.affordable_workers(2) == 2
