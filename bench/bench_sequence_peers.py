"""Peer comparison of notebook 03's sequence models against torch-rechub 0.9.0 (same split, one run).

Workload: the simulated world (``--profile``, default tiny), the notebook's split (train window to fit,
test window to evaluate, histories up to the test cut), last ``--max-len`` full plays, ``--epochs``
epochs for every model (no early stopping, so epoch times compare like with like).

* ``ours_sasrec`` (:class:`musicrecall.models.sasrec.SASRec`, shared table, sampled softmax with
  logQ) vs ``rechub_sasrec`` (``torch_rechub.models.matching.SASRec``: Kang & McAuley's own loss, binary
  cross-entropy with one random negative per position; ids shifted by one since its padding id is 0,
  sequences right-padded as its ``user_tower`` expects);
* ``ours_youtube_dnn`` vs ``rechub_youtube_dnn`` (``YoutubeDNN``: user features and a mean-pooled
  history into an MLP, L2-normalised, list-wise softmax over ``--n-neg`` popularity-sampled negatives,
  one sample per next-play target as in its examples).

Reported: HitRate@200 (all test-week full plays, exact full-catalogue top-k) and the median epoch
time, and each ratio ours / theirs. torch-rechub is **not** a project dependency: run this with a
scratch venv::

    python3.11 -m venv /tmp/venv-rechub
    /tmp/venv-rechub/bin/pip install torch==2.13.0 torch-rechub==0.9.0 polars pyarrow faiss-cpu==1.15.1
    /tmp/venv-rechub/bin/pip install -e . --no-deps
    /tmp/venv-rechub/bin/python bench/bench_sequence_peers.py [--profile tiny] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from musicrecall import config
from musicrecall import sequences as sq
from musicrecall.data import prepare
from musicrecall.evaluation import evaluate_scores
from musicrecall.models.sasrec import SASRec
from musicrecall.models.youtube_dnn import YouTubeDNN
from musicrecall.training import TrainConfig, minibatches, seed_everything, train


def _hr200(user_vecs: np.ndarray, item_vecs: np.ndarray, inputs: sq.SequenceInputs) -> float:
    t = inputs.test.targets["all"]
    return float(evaluate_scores(user_vecs, item_vecs, t, ks=(200,))["hr@200"].mean())


def _timed_epochs(step, batches, epochs: int) -> list[float]:
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for batch in batches(epoch):
            step(batch)
        times.append(time.perf_counter() - start)
    return times


def ours(inputs: sq.SequenceInputs, name: str, args) -> dict:
    n = inputs.n_items
    seed_everything(args.seed)
    if name == "sasrec":
        model, feats = SASRec(n, args.dim, args.max_len, args.blocks, 1, 0.1), None
    else:
        model, feats = YouTubeDNN(n, args.dim, inputs.user_cards, dropout=0.1), inputs.user_feats
    hist = train(model, sq.window_batches(inputs.windows, args.batch, args.seed, feats),
                 sq.causal_loss(inputs.sampler(seed=args.seed), n, args.n_neg),
                 TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed, progress=False), name=f"bench_{name}")
    vecs = sq.user_vectors(model, inputs.hist_test, inputs.test.targets["all"].users, feats)
    return {"hr@200": _hr200(vecs, sq.item_vectors(model), inputs),
            "epoch_s": statistics.median(e["seconds"] for e in hist.epochs)}


def _right_padded(items: np.ndarray, pad: int) -> np.ndarray:
    """Left-padded ids (pad = ``pad``) -> right-padded ids shifted by one (pad = 0), torch-rechub's layout."""
    shifted = np.where(items == pad, 0, items + 1)
    order = np.argsort(shifted == 0, axis=1, kind="stable")
    return np.take_along_axis(shifted, order, axis=1)


def rechub_sasrec(inputs: sq.SequenceInputs, args) -> dict:
    from torch_rechub.basic.features import SequenceFeature
    from torch_rechub.models.matching import SASRec as RSASRec

    n, w = inputs.n_items, inputs.windows
    seed_everything(args.seed)
    feats = [SequenceFeature("seq", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", padding_idx=0),
             SequenceFeature("pos", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="seq"),
             SequenceFeature("neg", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="seq")]
    model = RSASRec(feats, max_len=args.max_len, dropout_rate=0.1, num_blocks=args.blocks, num_heads=1)
    # right-pad inputs and targets together (same permutation per row)
    order = np.argsort(w.inputs == w.pad, axis=1, kind="stable")
    seq = torch.from_numpy(_right_padded(np.take_along_axis(w.inputs, order, axis=1), w.pad))
    pos = torch.from_numpy(np.where(np.take_along_axis(w.targets, order, axis=1) == w.pad, 0,
                                    np.take_along_axis(w.targets, order, axis=1) + 1))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)

    def batches(epoch):
        for idx in minibatches(seq.shape[0], args.batch, args.seed, epoch):
            yield torch.from_numpy(idx)

    def step(i):
        s, p = seq[i], pos[i]
        neg = torch.randint(1, n + 1, p.shape, generator=gen)
        pl, nl = model({"seq": s, "pos": p, "neg": neg})
        valid = p != 0
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(pl[valid], torch.ones_like(pl[valid]))
                + torch.nn.functional.binary_cross_entropy_with_logits(nl[valid], torch.zeros_like(nl[valid])))
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    times = _timed_epochs(step, batches, args.epochs)
    model.eval()
    model.mode = "user"
    users = inputs.test.targets["all"].users
    with torch.no_grad():
        u = model({"seq": torch.from_numpy(_right_padded(inputs.hist_test.rows(users), inputs.hist_test.pad))})
        items = model.item_emb.embed_dict["seq"].weight[1:].detach()
    return {"hr@200": _hr200(u.numpy(), items.numpy(), inputs), "epoch_s": statistics.median(times)}


def rechub_youtube_dnn(inputs: sq.SequenceInputs, args) -> dict:
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.matching import YoutubeDNN

    n, w = inputs.n_items, inputs.windows
    seed_everything(args.seed)
    # its EmbeddingLayer concatenates user features along one axis, so they need the history's dim
    ufeat = [SparseFeature(f"u{j}", vocab_size=c, embed_dim=args.dim) for j, c in enumerate(inputs.user_cards)]
    hist_f = SequenceFeature("hist", vocab_size=n + 1, embed_dim=args.dim, pooling="mean", shared_with="item",
                             padding_idx=0)
    item_f = SparseFeature("item", vocab_size=n + 1, embed_dim=args.dim)
    neg_f = SequenceFeature("neg", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="item")
    model = YoutubeDNN(ufeat + [hist_f], [item_f], [neg_f], {"dims": [256, args.dim]}, temperature=0.02)
    # one sample per next-play target: history = the window's plays up to it (prefix, zeros elsewhere)
    rows, cols = np.nonzero(w.targets != w.pad)
    prefix = np.where(np.arange(args.max_len)[None, :] <= cols[:, None], w.inputs[rows], w.pad)
    hist = torch.from_numpy(np.where(prefix == w.pad, 0, prefix + 1))
    target = torch.from_numpy(w.targets[rows, cols] + 1)
    uf = torch.from_numpy(inputs.user_feats[w.users[rows]])
    probs = torch.as_tensor(inputs.sampler().probs)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    samples_per_batch = args.batch * 8  # about the positions of one window batch

    def batches(epoch):
        for idx in minibatches(hist.shape[0], samples_per_batch, args.seed, epoch):
            yield torch.from_numpy(idx)

    def step(i):
        neg = torch.multinomial(probs, len(i) * args.n_neg_rechub, replacement=True, generator=gen) + 1
        x = {"hist": hist[i], "item": target[i], "neg": neg.view(len(i), -1),
             **{f"u{j}": uf[i, j] for j in range(uf.shape[1])}}
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(i), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    times = _timed_epochs(step, batches, args.epochs)
    model.eval()
    users = inputs.test.targets["all"].users
    rows_t = inputs.hist_test.rows(users)
    x = {"hist": torch.from_numpy(np.where(rows_t == inputs.hist_test.pad, 0, rows_t + 1)),
         "item": torch.zeros(len(users), dtype=torch.long),
         **{f"u{j}": torch.from_numpy(inputs.user_feats[users, j]) for j in range(uf.shape[1])}}
    with torch.no_grad():
        model.mode = "user"
        u = model(x)
        model.mode = "item"
        items = model({"item": torch.arange(1, n + 1)})
    return {"hr@200": _hr200(u.numpy(), items.numpy(), inputs), "epoch_s": statistics.median(times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--max-len", type=int, default=30)
    p.add_argument("--dim", type=int, default=48)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--n-neg", type=int, default=256)
    p.add_argument("--n-neg-rechub", type=int, default=20, help="negatives per sample for rechub's YoutubeDNN")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    threads = config.set_threads(args.threads)
    prep = prepare("world", profile=args.profile, seed=args.seed)
    inputs = sq.sequence_inputs(prep.clean.events, prep.dataset.users, prep.dataset.items.height, args.max_len)
    res = {"ours_sasrec": ours(inputs, "sasrec", args), "rechub_sasrec": rechub_sasrec(inputs, args),
           "ours_youtube_dnn": ours(inputs, "youtube_dnn", args), "rechub_youtube_dnn": rechub_youtube_dnn(inputs, args)}
    for m in ("sasrec", "youtube_dnn"):
        a, b = res[f"ours_{m}"], res[f"rechub_{m}"]
        res[f"ratio_{m}"] = {"hr@200": a["hr@200"] / max(b["hr@200"], 1e-12), "epoch_s": a["epoch_s"] / b["epoch_s"]}
    out = {"profile": args.profile, "threads": threads, "epochs": args.epochs, "machine": platform.machine(),
           "results": res}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
