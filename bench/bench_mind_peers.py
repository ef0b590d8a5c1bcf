"""Peer comparison of notebook 04's MIND against torch-rechub 0.9.0's MIND (same split, same examples).

Workload: the simulated world (``--profile``, default tiny), notebook 04's split (train window to fit,
test window to evaluate, histories up to the test cut), the same training examples for both (up to
``--per-user`` target full plays per user, the ``--max-len`` full plays before each as input), ``--epochs``
epochs each (no early stopping, so epoch times compare like with like), ``--repeats`` seeds.

* ``ours`` (:class:`musicrecall.models.mind.MIND`): routing softmax over the sequence axis, routing logits
  re-drawn every forward pass, label-aware attention (p = 2), sampled softmax with logQ correction and
  in-batch negatives; optionally ``--side`` (genre and language, which torch-rechub's MIND cannot take on
  the history: its ``CapsuleNetwork`` reads one sequence feature).
* ``rechub`` (``torch_rechub.models.matching.MIND``, ``dynamic_interest=True``): its ``CapsuleNetwork``
  (bilinear_type 0 = MIND, routing logits ``randn`` per forward, softmax over the sequence), L2-normalised
  user and item vectors, hard label-aware selection (argmax interest), list-wise softmax over the positive
  and ``--rechub-neg`` popularity-sampled negatives per example, scores divided by ``--temperature``
  (its MIND does not apply its own ``temperature`` argument; the default 1.0 is its own behaviour and was the
  best of 0.02 / 0.05 / 0.2 / 1.0 on the small world: HR@200 0.13 / 0.21 / 0.31 / 0.53). Ids are shifted by
  one (its padding id is 0).

Both are served the same way: exact full-catalogue top-200 by the max over active interests. Reported:
HitRate@200 on all test-week full plays, median epoch time, and the ratios ours / rechub.

torch-rechub is **not** a project dependency; run this from a scratch venv that sees the project's
packages, e.g.::

    python3.11 -m venv /tmp/venv-rechub
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/venv-rechub/lib/python3.11/site-packages/project.pth
    echo "$PWD/lib" >> /tmp/venv-rechub/lib/python3.11/site-packages/project.pth
    /tmp/venv-rechub/bin/pip install torch-rechub==0.9.0 --no-deps   # its deps are already in the project venv
    /tmp/venv-rechub/bin/python bench/bench_mind_peers.py [--profile tiny] [--threads 1]
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
from musicrecall import multi_interest as M
from musicrecall.data import prepare
from musicrecall.evaluation import evaluate_lists, make_eval_setup
from musicrecall.models.losses import NegativeSampler
from musicrecall.sequence_data import last_histories, side_codes, training_examples, user_sequences
from musicrecall.training import TrainConfig, minibatches, seed_everything


def _hr200(lists: np.ndarray, test) -> float:
    return float(evaluate_lists(lists, test.targets["all"], (200,))["hr@200"].mean())


def ours(valid, test, side, args, seed: int) -> dict:
    cfg = M.MINDConfig(dim=args.dim, k_max=args.k_max, max_len=args.max_len, routing_axis="sequence",
                       routing_init="redraw")
    recall, hist = M.fit_mind(valid.fit, None, valid.n_items, cfg, side, TrainConfig(epochs=args.epochs, lr=args.lr,
                              seed=seed, progress=False), per_user=args.per_user, batch_size=args.batch,
                              n_neg=args.n_neg, name="bench_mind", seed=seed)
    served = M.served_on(recall, test.fit)
    return {"hr@200": _hr200(served.recommend(test.targets["all"].users, 200), test),
            "epoch_s": statistics.median(e["seconds"] for e in hist.epochs)}


def rechub(valid, test, args, seed: int) -> dict:
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.matching import MIND as RMIND

    n = valid.n_items
    seed_everything(seed)
    seqs = user_sequences(valid.fit)
    hist, target, _ = training_examples(seqs, args.max_len, n, per_user=args.per_user, seed=seed)
    shift = torch.from_numpy(np.where(hist == n, 0, hist + 1))
    target_t = torch.from_numpy(target + 1)
    # its user tower needs one user feature: a constant (every user the same) adds nothing but a bias
    user_f = [SparseFeature("const", vocab_size=1, embed_dim=args.dim)]
    hist_f = [SequenceFeature("hist", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="item",
                              padding_idx=0)]
    item_f = [SparseFeature("item", vocab_size=n + 1, embed_dim=args.dim)]
    neg_f = [SequenceFeature("neg", vocab_size=n + 1, embed_dim=args.dim, pooling="concat", shared_with="item")]
    model = RMIND(user_f, hist_f, item_f, neg_f, max_length=args.max_len, interest_num=args.k_max,
                  dynamic_interest=True)
    sampler = NegativeSampler(np.bincount(target, minlength=n), power=0.75, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    times = []
    model.train()
    for epoch in range(args.epochs):
        start = time.perf_counter()
        for b in minibatches(shift.shape[0], args.batch, seed, epoch):
            idx = torch.from_numpy(b)
            neg = sampler.sample(len(b) * args.rechub_neg).view(len(b), -1) + 1
            x = {"const": torch.zeros(len(b), dtype=torch.long), "hist": shift[idx], "item": target_t[idx], "neg": neg}
            y = model(x) / args.temperature
            loss = torch.nn.functional.cross_entropy(y, torch.zeros(len(b), dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    model.eval()
    users = test.targets["all"].users
    h = last_histories(user_sequences(test.fit), users, args.max_len, n)
    with torch.no_grad():
        model.mode = "user"
        x = {"const": torch.zeros(len(users), dtype=torch.long), "hist": torch.from_numpy(np.where(h == n, 0, h + 1))}
        vecs = model(x)
        active = model.active_interest_mask(x)
        model.mode = "item"
        items = model({"item": torch.arange(1, n + 1)})
    lists = M.max_interest_topk(vecs.numpy(), active.numpy(), items.numpy(), 200)
    return {"hr@200": _hr200(lists, test), "epoch_s": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="seeds per model (medians reported)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=48)
    ap.add_argument("--k-max", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=30)
    ap.add_argument("--per-user", type=int, default=6)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-neg", type=int, default=256, help="ours: shared sampled negatives per batch")
    ap.add_argument("--rechub-neg", type=int, default=64, help="torch-rechub: sampled negatives per example")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--side", action="store_true", help="also run ours with genre/language side info")
    ap.add_argument("--skip-ours", action="store_true", help="only torch-rechub (e.g. to tune --temperature)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    threads = config.set_threads(args.threads)
    prep = prepare("world", profile=args.profile, seed=args.seed)
    n_items = prep.dataset.items.height
    valid = make_eval_setup(prep.clean.events, n_items, stage="valid")
    test = make_eval_setup(prep.clean.events, n_items, stage="test")
    runs: dict[str, list[dict]] = {"rechub": []} if args.skip_ours else {"ours": [], "rechub": []}
    if args.side:
        runs["ours_side"] = []
    for r in range(args.repeats):
        s = args.seed + r
        if not args.skip_ours:
            runs["ours"].append(ours(valid, test, None, args, s))
        if args.side:
            runs["ours_side"].append(ours(valid, test, side_codes(prep.dataset.items), args, s))
        runs["rechub"].append(rechub(valid, test, args, s))
    summary = {name: {k: statistics.median(x[k] for x in v) for k in ("hr@200", "epoch_s")} for name, v in runs.items()}
    report = {"profile": args.profile, "threads": threads, "epochs": args.epochs, "repeats": args.repeats,
              "temperature": args.temperature, "rechub_neg": args.rechub_neg, "python": platform.python_version(),
              "torch": torch.__version__, "runs": runs, "median": summary}
    if "ours" in summary:
        report["ratio_hr200_ours_over_rechub"] = summary["ours"]["hr@200"] / max(summary["rechub"]["hr@200"], 1e-12)
        report["ratio_epoch_time_ours_over_rechub"] = summary["ours"]["epoch_s"] / summary["rechub"]["epoch_s"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
