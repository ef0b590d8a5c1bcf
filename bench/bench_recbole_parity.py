"""Parity of our SASRec and YouTube-DNN with RecBole 1.2.1 and torch-rechub 0.9.0 (same data, same protocol).

Protocol (RecBole's ``LS: valid_and_test``, ``order: TO``, ``mode: full``): per user, the last play is
the test target, the one before it the validation target, the rest trains; every model ranks the
**whole catalogue** (history not masked: a music log repeats songs), HR@10 and NDCG@10 over users,
early stopping on validation NDCG@10 with patience 3 and an epoch cap (``--max-epochs``; a run that
reaches it is flagged ``capped``). Epoch time is the median training time of one epoch (evaluation
excluded), measured in the same process on the same (shared, loaded) machine: compare only ratios.

Datasets:

* ``30music``: ``../shared/data/30music/sequences.txt`` (real Last.fm listening order), a seeded subset
  of ``--users`` users (default 600) and each user's last ``--last`` plays (default 100), songs
  re-indexed over what is kept (a subset for time on 2 shared cores);
* ``world``: the simulated world at ``--profile`` (default tiny), each user's full plays in time order.

Contenders:

* ``ours_sasrec``, ``ours_youtube_dnn``: :mod:`musicrecall.models` trained by
  :func:`musicrecall.training.train` with :func:`musicrecall.sequences.causal_loss` (full softmax up to
  :data:`musicrecall.sequences.FULL_SOFTMAX_MAX_ITEMS` songs, sampled beyond) on
  :func:`musicrecall.sequences.training_windows`, with the recipes of :mod:`musicrecall.models.recipes`
  except the width and length, set to RecBole's (``d = 64``, 50 plays);
* ``ours_sasrec_full_softmax`` (``--only``): ours with the exact softmax on a catalogue above the
  full-softmax limit, to see what the sampled loss costs;
* ``recbole_sasrec``: ``recbole.model.sequential_recommender.SASRec`` with its own trainer, data loader
  and evaluator (NumPy 2 removed aliases RecBole 1.2.1 still uses, ``np.float_`` among them; the bench
  restores them before importing it, :func:`_numpy2_aliases`, and changes nothing else), its default
  hyper-parameters (2 layers, 2 heads, d 64, inner 256, dropout 0.5, CE
  loss over the full catalogue, batch 2048, lr 1e-3) and the protocol above;
* ``rechub_sasrec``, ``rechub_youtube_dnn``: ``torch_rechub.models.matching.SASRec`` (BCE with one
  random negative per position, Kang & McAuley's loss) and ``YoutubeDNN`` (mean-pooled history into an
  MLP, L2-normalised, temperature 0.02, softmax over 20 popularity-sampled negatives per sample), trained
  with Adam on the same windows, evaluated by our full-ranking code.

RecBole and torch-rechub are **not** project dependencies: run this with a scratch venv::

    python3.11 -m venv /tmp/venv-parity
    /tmp/venv-parity/bin/pip install torch==2.13.0
    /tmp/venv-parity/bin/pip install recbole==1.2.1 torch-rechub==0.9.0 polars pyarrow faiss-cpu==1.15.1
    PYTHONPATH=lib /tmp/venv-parity/bin/python bench/bench_recbole_parity.py --dataset 30music --out /tmp/p.json

Figures (2026-12-05, 1 thread per process on the shared 2-core machine under load 18-22, so epoch
times are only indicative; HR@10 / NDCG@10 on the test play, epochs run (best), seconds per epoch):

``world`` tiny (436 users, 2,000 songs, 22,955 full plays; ours use the exact softmax here)::

    ours_sasrec          0.472 / 0.286   28 (25)   6.7 s
    ours_youtube_dnn     0.314 / 0.190   21 (18)  15.7 s
    rechub_sasrec        0.126 / 0.062    5 (2)   23.7 s
    rechub_youtube_dnn   0.204 / 0.096   11 (8)   25.2 s
    recbole_sasrec       not finished in the session: after 50 min wall its best validation
                         NDCG@10 was 0.163 (epoch 5, still rising), against ours' 0.286 on the test play

``30music``, 300 users, last 60 plays each (11,862 songs, 17,665 plays; ours use the sampled softmax,
2,048 negatives, the catalogue being above the full-softmax limit)::

    ours_sasrec          0.180 / 0.127   26 (23)  33.7 s
    ours_youtube_dnn     0.120 / 0.064   27 (24)  13.2 s
    rechub_sasrec        0.000 / 0.000    4 (1)   14.5 s
    rechub_youtube_dnn   0.133 / 0.064   14 (11)  10.2 s
    recbole_sasrec       not finished in the session: best validation NDCG@10 0.077 at epoch 5 (rising)

Ours are above torch-rechub on both datasets by a wide margin (its SASRec, trained with Kang &
McAuley's one-negative BCE, stops improving after one or two epochs on validation NDCG@10).
Our YouTube-DNN is level with torch-rechub's on 30music (HR@10 4 users of 300 below, NDCG@10 equal)
and above it on the world. RecBole 1.2.1 runs here with this torch 2.13 / NumPy 2.4 (after restoring
the removed aliases) but, with its defaults (dropout 0.5, batch 2,048, lr 1e-3: ten steps an epoch at
this size), it converges far more slowly than our recipe and had not finished when the session's
machine was at load 20 (every process about a tenth of a core); its interim validation scores are below
ours. Its converged figures and epoch-time ratio are still to be measured on a quieter machine: run
``--only recbole_sasrec`` for each dataset.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from musicrecall import config
from musicrecall import sequences as sq
from musicrecall.training import TrainConfig, minibatches, seed_everything, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "30music" / "sequences.txt"


@dataclass
class LOO:
    """Leave-one-out split of per-user play sequences (item ids ``0..n_items-1``)."""

    seqs: list[np.ndarray]
    n_items: int
    name: str

    def events(self, drop_last: int) -> pl.DataFrame:
        """Plays without each user's last ``drop_last`` ones, as a log (ts = position)."""
        rows = [(u, s[: len(s) - drop_last]) for u, s in enumerate(self.seqs)]
        return pl.DataFrame({"user_id": np.concatenate([np.full(len(s), u) for u, s in rows]),
                             "song_id": np.concatenate([s for _, s in rows]),
                             "ts": np.concatenate([np.arange(len(s)) for _, s in rows])})

    def target(self, back: int) -> np.ndarray:
        """The play ``back`` positions from each user's end (1 = the last: test; 2: validation)."""
        return np.array([s[-back] for s in self.seqs], dtype=np.int64)


def load_30music(n_users: int, last: int, seed: int) -> LOO:
    if not SHARED.exists():
        raise FileNotFoundError(f"{SHARED} is missing (the shared 30Music sequences)")
    lines = SHARED.read_text().splitlines()
    pick = np.sort(np.random.default_rng(seed).choice(len(lines), min(n_users, len(lines)), replace=False))
    seqs = [np.array([int(x) for x in lines[i].split(",", 1)[1].split(":")][-last:]) for i in pick]
    seqs = [s for s in seqs if len(s) >= 5]
    vocab, inv = np.unique(np.concatenate(seqs), return_inverse=True)
    out, start = [], 0
    for s in seqs:
        out.append(inv[start:start + len(s)].astype(np.int64))
        start += len(s)
    return LOO(out, int(vocab.shape[0]), f"30music-{len(out)}u-last{last}")


def load_world(profile: str, seed: int) -> LOO:
    from musicrecall.data import prepare

    prep = prepare("world", profile=profile, seed=seed)
    plays = sq.ordered_plays(prep.clean.events)
    seqs = [g["song_id"].to_numpy().astype(np.int64) for _, g in plays.group_by("user_id", maintain_order=True)]
    return LOO([s for s in seqs if len(s) >= 5], prep.dataset.items.height, f"world-{profile}")


def rank_metrics(user_vecs: np.ndarray, item_vecs: np.ndarray, target: np.ndarray, k: int = 10) -> dict:
    """HR@k and NDCG@k of ``target`` in the full-catalogue ranking by inner product (ties count against)."""
    hr, ndcg = [], []
    for b in range(0, user_vecs.shape[0], 1024):
        s = user_vecs[b:b + 1024] @ item_vecs.T
        t = target[b:b + 1024]
        rank = (s >= s[np.arange(len(t)), t][:, None]).sum(1) - 1
        hr.append(rank < k)
        ndcg.append(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0))
    return {f"hr@{k}": float(np.concatenate(hr).mean()), f"ndcg@{k}": float(np.concatenate(ndcg).mean())}


def _epochs_summary(valid: list[float], times: list[float], cap: int) -> dict:
    return {"epochs": len(valid), "best_epoch": int(np.argmax(valid)) + 1, "epoch_s": statistics.median(times),
            "capped": len(valid) >= cap and int(np.argmax(valid)) + 1 > len(valid) - 3}


# --------------------------------------------------------------------------------------------------
# ours
# --------------------------------------------------------------------------------------------------


def ours(data: LOO, kind: str, args, full_softmax: bool | None = None) -> dict:
    from musicrecall.models import recipes

    n = data.n_items
    train_ev, valid_ev = data.events(2), data.events(1)
    windows = sq.training_windows(train_ev, n, args.max_len, label=None)
    n_users = len(data.seqs)
    h_valid = sq.last_n_histories(train_ev, n_users, n, args.max_len, label=None)
    h_test = sq.last_n_histories(valid_ev, n_users, n, args.max_len, label=None)
    users = np.arange(n_users)
    seed_everything(args.seed)
    if kind == "sasrec":
        model = recipes.SASREC.build(n, dim=args.dim, max_len=args.max_len)
        batch = recipes.SASREC.batch_size
        lr = recipes.SASREC.lr
    else:
        model = recipes.YOUTUBE_DNN.build(n, dim=args.dim)
        batch, lr = recipes.YOUTUBE_DNN.batch_size, recipes.YOUTUBE_DNN.lr
    sampler = sq.NegativeSampler(windows.target_counts(n), seed=args.seed)

    def validate(m: torch.nn.Module) -> float:
        return rank_metrics(sq.user_vectors(m, h_valid, users), sq.item_vectors(m), data.target(2))["ndcg@10"]

    loss = sq.causal_loss(sampler, n, args.n_neg, full_softmax=full_softmax)
    hist = train(model, sq.window_batches(windows, batch, args.seed), loss,
                 TrainConfig(epochs=args.max_epochs, lr=lr, patience=3, seed=args.seed, progress=False),
                 validate, name=f"parity_{kind}")
    res = rank_metrics(sq.user_vectors(model, h_test, users), sq.item_vectors(model), data.target(1))
    return {**res, "epochs": len(hist.epochs), "best_epoch": hist.best_epoch, "epoch_s": hist.seconds_per_epoch,
            "capped": hist.capped, "loss": "full softmax" if (n <= sq.FULL_SOFTMAX_MAX_ITEMS if full_softmax is None
                                                              else full_softmax) else f"sampled, {args.n_neg} negatives"}


# --------------------------------------------------------------------------------------------------
# RecBole
# --------------------------------------------------------------------------------------------------


def _numpy2_aliases() -> None:
    """RecBole 1.2.1 uses aliases NumPy 2 removed (``np.float_`` ...): put them back, nothing else changes."""
    for old, new in (("float_", np.float64), ("int_", np.int64), ("complex_", np.complex128), ("unicode_", np.str_),
                     ("bool8", np.bool_), ("NaN", np.nan), ("Inf", np.inf)):
        if old not in np.__dict__:
            setattr(np, old, new)


def recbole_sasrec(data: LOO, args) -> dict:
    _numpy2_aliases()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec as RBSASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    root = Path(tempfile.mkdtemp(prefix="recbole-", dir="/tmp"))
    (root / data.name).mkdir()
    with open(root / data.name / f"{data.name}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, s in enumerate(data.seqs):
            f.writelines(f"{u}\t{i}\t{t}\n" for t, i in enumerate(s.tolist()))
    cfg = {"data_path": str(root), "checkpoint_dir": str(root / "ckpt"), "load_col": {"inter": ["user_id", "item_id",
                                                                                                "timestamp"]},
           "MAX_ITEM_LIST_LENGTH": args.max_len, "hidden_size": args.dim,
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
           "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "epochs": args.max_epochs,
           "stopping_step": 3, "train_neg_sample_args": None, "loss_type": "CE", "seed": args.seed,
           "reproducibility": True, "device": "cpu", "use_gpu": False, "show_progress": False,
           "eval_batch_size": 4096, "worker": 0, "log_wandb": False, "save_dataset": False,
           "save_dataloaders": False}
    here = os.getcwd()
    os.chdir(root)  # RecBole writes log/ and log_tensorboard/ into the working directory
    config_ = Config(model="SASRec", dataset=data.name, config_dict=cfg)
    logging.getLogger().setLevel(logging.WARNING)
    init_seed(config_["seed"], config_["reproducibility"])
    dataset = create_dataset(config_)
    train_data, valid_data, test_data = data_preparation(config_, dataset)
    model = RBSASRec(config_, train_data.dataset)
    trainer = Trainer(config_, model)
    times: list[float] = []
    inner = trainer._train_epoch

    def timed(*a, **kw):
        start = time.perf_counter()
        out = inner(*a, **kw)
        times.append(time.perf_counter() - start)
        return out

    trainer._train_epoch = timed
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    os.chdir(here)
    n_ep = len(times)
    return {"hr@10": float(test["hit@10"]), "ndcg@10": float(test["ndcg@10"]), "epochs": n_ep,
            "epoch_s": statistics.median(times), "capped": n_ep >= args.max_epochs, "loss": "full softmax (CE)"}


# --------------------------------------------------------------------------------------------------
# torch-rechub (same windows, our evaluation)
# --------------------------------------------------------------------------------------------------


def _fit_rechub(step: Callable, batches: Callable, validate: Callable[[], float], model: torch.nn.Module,
                args) -> tuple[list[float], list[float]]:
    """Epoch loop with early stopping (patience 3) on validation NDCG@10, best weights restored."""
    import copy

    valid, times, best, best_state = [], [], -1.0, None
    for epoch in range(args.max_epochs):
        model.train()
        start = time.perf_counter()
        for b in batches(epoch):
            step(b)
        times.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            valid.append(validate())
        if valid[-1] > best:
            best, best_state = valid[-1], copy.deepcopy(model.state_dict())
        elif len(valid) - 1 - int(np.argmax(valid)) >= 3:
            break
    model.load_state_dict(best_state)
    return valid, times


def _right_padded(items: np.ndarray, pad: int) -> np.ndarray:
    shifted = np.where(items == pad, 0, items + 1)
    order = np.argsort(shifted == 0, axis=1, kind="stable")
    return np.take_along_axis(shifted, order, axis=1)


def rechub_sasrec(data: LOO, args) -> dict:
    from torch_rechub.basic.features import SequenceFeature
    from torch_rechub.models.matching import SASRec as RSASRec

    n = data.n_items
    train_ev, valid_ev = data.events(2), data.events(1)
    w = sq.training_windows(train_ev, n, args.max_len, label=None)
    h_valid = sq.last_n_histories(train_ev, len(data.seqs), n, args.max_len, label=None)
    h_test = sq.last_n_histories(valid_ev, len(data.seqs), n, args.max_len, label=None)
    seed_everything(args.seed)
    feats = [SequenceFeature("seq", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", padding_idx=0),
             SequenceFeature("pos", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="seq"),
             SequenceFeature("neg", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="seq")]
    model = RSASRec(feats, max_len=args.max_len, dropout_rate=0.2, num_blocks=2, num_heads=1)
    order = np.argsort(w.inputs == w.pad, axis=1, kind="stable")
    seq = torch.from_numpy(_right_padded(np.take_along_axis(w.inputs, order, axis=1), w.pad))
    tg = np.take_along_axis(w.targets, order, axis=1)
    pos = torch.from_numpy(np.where(tg == w.pad, 0, tg + 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)

    def batches(epoch):
        for idx in minibatches(seq.shape[0], 128, args.seed, epoch):
            yield torch.from_numpy(idx)

    def step(i):
        s, p = seq[i], pos[i]
        neg = torch.randint(1, n + 1, p.shape, generator=gen)
        pl_, nl = model({"seq": s, "pos": p, "neg": neg})
        valid = p != 0
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(pl_[valid], torch.ones_like(pl_[valid]))
                + torch.nn.functional.binary_cross_entropy_with_logits(nl[valid], torch.zeros_like(nl[valid])))
        opt.zero_grad()
        loss.backward()
        opt.step()

    def vecs(h: sq.Histories) -> tuple[np.ndarray, np.ndarray]:
        model.mode = "user"
        u = model({"seq": torch.from_numpy(_right_padded(h.items, h.pad))})
        model.mode = None
        return u.numpy(), model.item_emb.embed_dict["seq"].weight[1:].detach().numpy()

    valid, times = _fit_rechub(step, batches, lambda: rank_metrics(*vecs(h_valid), data.target(2))["ndcg@10"],
                               model, args)
    with torch.no_grad():
        res = rank_metrics(*vecs(h_test), data.target(1))
    return {**res, **_epochs_summary(valid, times, args.max_epochs), "loss": "BCE, 1 negative"}


def rechub_youtube_dnn(data: LOO, args) -> dict:
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.matching import YoutubeDNN

    n = data.n_items
    train_ev, valid_ev = data.events(2), data.events(1)
    w = sq.training_windows(train_ev, n, args.max_len, label=None)
    h_valid = sq.last_n_histories(train_ev, len(data.seqs), n, args.max_len, label=None)
    h_test = sq.last_n_histories(valid_ev, len(data.seqs), n, args.max_len, label=None)
    seed_everything(args.seed)
    hist_f = SequenceFeature("hist", vocab_size=n + 1, embed_dim=args.dim, pooling="mean", shared_with="item",
                             padding_idx=0)
    item_f = SparseFeature("item", vocab_size=n + 1, embed_dim=args.dim)
    neg_f = SequenceFeature("neg", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="item")
    model = YoutubeDNN([hist_f], [item_f], [neg_f], {"dims": [256, args.dim]}, temperature=0.02)
    rows, cols = np.nonzero(w.targets != w.pad)
    prefix = np.where(np.arange(args.max_len)[None, :] <= cols[:, None], w.inputs[rows], w.pad)
    hist = torch.from_numpy(np.where(prefix == w.pad, 0, prefix + 1))
    target = torch.from_numpy(w.targets[rows, cols] + 1)
    probs = sq.NegativeSampler(w.target_counts(n)).probs
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)

    def batches(epoch):
        for idx in minibatches(hist.shape[0], 1024, args.seed, epoch):
            yield torch.from_numpy(idx)

    def step(i):
        neg = torch.multinomial(probs, len(i) * 20, replacement=True, generator=gen) + 1
        logits = model({"hist": hist[i], "item": target[i], "neg": neg.view(len(i), -1)})
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(i), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()

    def vecs(h: sq.Histories) -> tuple[np.ndarray, np.ndarray]:
        x = {"hist": torch.from_numpy(np.where(h.items == h.pad, 0, h.items + 1)),
             "item": torch.zeros(h.items.shape[0], dtype=torch.long)}
        model.mode = "user"
        u = model(x)
        model.mode = "item"
        items = model({"item": torch.arange(1, n + 1)})
        model.mode = None
        return u.numpy(), items.numpy()

    valid, times = _fit_rechub(step, batches, lambda: rank_metrics(*vecs(h_valid), data.target(2))["ndcg@10"],
                               model, args)
    with torch.no_grad():
        res = rank_metrics(*vecs(h_test), data.target(1))
    return {**res, **_epochs_summary(valid, times, args.max_epochs), "loss": "sampled softmax, 20 negatives"}


CONTENDERS = {
    "ours_sasrec": lambda d, a: ours(d, "sasrec", a),
    "ours_youtube_dnn": lambda d, a: ours(d, "youtube_dnn", a),
    "ours_sasrec_full_softmax": lambda d, a: ours(d, "sasrec", a, full_softmax=True),
    "recbole_sasrec": recbole_sasrec,
    "rechub_sasrec": rechub_sasrec,
    "rechub_youtube_dnn": rechub_youtube_dnn,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["30music", "world"], default="world")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--last", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--n-neg", type=int, default=2048)
    p.add_argument("--only", nargs="*", default=[c for c in CONTENDERS if c != "ours_sasrec_full_softmax"])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    threads = config.set_threads(args.threads)
    data = load_30music(args.users, args.last, args.seed) if args.dataset == "30music" else load_world(args.profile,
                                                                                                      args.seed)
    print(f"{data.name}: {len(data.seqs)} users, {data.n_items} songs, {sum(map(len, data.seqs))} plays", flush=True)
    res = {}
    for name in args.only:
        try:
            res[name] = CONTENDERS[name](data, args)
        except Exception as exc:  # a peer that cannot run is reported, not hidden
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(name, json.dumps(res[name]), flush=True)
    for m in ("sasrec", "youtube_dnn"):
        refs = [v for k, v in res.items() if k.endswith(m) and not k.startswith("ours") and "error" not in v]
        a = res.get(f"ours_{m}", {})
        if refs and "error" not in a and a:
            best = max(refs, key=lambda r: r["ndcg@10"])
            res[f"ratio_{m}_vs_best_reference"] = {k: a[k] / best[k] if best[k] else math.nan
                                                   for k in ("hr@10", "ndcg@10", "epoch_s")}
    out = {"data": data.name, "users": len(data.seqs), "songs": data.n_items, "threads": threads,
           "argv": sys.argv[1:], "results": res}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
