"""Rolling next-play evaluation cost on a world's test week, and the rank-counting kernel ratio.

Three parts, in one run:

* ``kernel`` — the full-catalogue rank count of :func:`musicrecall.evaluation.rolling._target_ranks`
  (``[B, n_items]`` float32 scores, songs above each target) as it is now (numpy: compare, int8 view summed
  as int32) against torch's bool ``sum(dim=1)`` (what it was), medians of ``--repeats``; the ratio is what
  to read on a shared machine.
* ``blocked`` — notebook 03's two blocked kernels against the dense computations they replaced (rolling
  ranks from a model's factors; the shared-negatives sampled softmax, forward + backward), CPU ratios.
* ``world`` — on the world at ``--profile`` (default small): CPU seconds to build the rolling targets of
  the test week and to rank them under popularity (dense scores), Markov (sparse ranks) and an embedding
  scorer (mean of d=64 history vectors, inner products with every song), plus ``summary()``; with and
  without ``max_targets_per_user``.

Usage::

    PYTHONPATH=lib MUSICRECALL_THREADS=1 .venv/bin/python bench/bench_rolling.py [--profile small] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def _cpu(fn, repeats: int = 1) -> float:
    """Median CPU seconds of ``fn()`` over ``repeats`` runs."""
    out = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return statistics.median(out)


def kernel(repeats: int, b: int = 512, n: int = 30_000) -> None:
    from musicrecall.evaluation.rolling import _target_ranks

    g = torch.Generator().manual_seed(0)
    s = torch.randn(b, n, generator=g)
    items = torch.randint(0, n, (b,), generator=g).numpy()
    st = s.gather(1, torch.from_numpy(items)[:, None])
    now = _cpu(lambda: _target_ranks(s, items), repeats)
    before = _cpu(lambda: ((s > st).sum(1), (s >= st).sum(1)), repeats)
    assert np.array_equal(_target_ranks(s, items), (s > st).sum(1).numpy())  # no ties in random floats
    print(f"rank kernel [{b} x {n:,}]: numpy {now * 1e3:.1f} ms, torch bool sum {before * 1e3:.1f} ms, "
          f"ratio {before / now:.1f}x (CPU, median of {repeats})")


def blocked(repeats: int, b: int = 512, n: int = 30_000, d: int = 48, rows: int = 2960, n_neg: int = 2048) -> None:
    """The two blocked kernels of notebook 03 against what they replaced, same inputs, CPU medians:
    rolling ranks from a model's factors block by block of songs (``_factored_ranks``) vs the dense
    [b, n] score matrix then ``_target_ranks``; the shared-negatives sampled softmax in row blocks
    (``losses._shared_negatives_loss``, forward + backward) vs the cross-entropy over [pos | negatives]."""
    from musicrecall.evaluation.rolling import _factored_ranks, _target_ranks
    from musicrecall.models import losses

    g = torch.Generator().manual_seed(0)
    users, items_t = torch.randn(b, d, generator=g), torch.randn(d, n, generator=g)
    targets = torch.randint(0, n, (b,), generator=g).numpy()
    targets.sort()  # as _rank_all batches them (by song)
    dense = _cpu(lambda: _target_ranks(users @ items_t, targets), repeats)
    fact = _cpu(lambda: _factored_ranks(users, items_t, targets), repeats)
    assert np.array_equal(_factored_ranks(users, items_t, targets), _target_ranks(users @ items_t, targets))
    print(f"rolling ranks [{b} x {n:,}], d={d}: dense {dense * 1e3:.1f} ms, blocked {fact * 1e3:.1f} ms, "
          f"ratio {dense / fact:.2f}x (CPU, median of {repeats})")
    table = torch.randn(n, d, generator=g, requires_grad=True)
    u = torch.randn(rows, d, generator=g, requires_grad=True)
    pos = torch.randint(0, n, (rows,), generator=g)
    log_q = torch.log_softmax(torch.randn(n, generator=g), 0)
    neg = torch.randint(0, n, (n_neg,), generator=g)

    def concat() -> None:
        pl_ = (u * table[pos]).sum(-1, keepdim=True) - log_q[pos].unsqueeze(1)
        nl = (u @ table[neg].T - log_q[neg].unsqueeze(0)).masked_fill_(neg[None, :] == pos[:, None], float("-inf"))
        torch.nn.functional.cross_entropy(torch.cat([pl_, nl], 1), torch.zeros(rows, dtype=torch.long)).backward()

    before = _cpu(concat, repeats)
    now = _cpu(lambda: losses._shared_negatives_loss(u, pos, table, log_q, neg).backward(), repeats)
    print(f"sampled softmax, {rows:,} positions x {n_neg:,} shared negatives, d={d}, forward + backward: "
          f"concatenated {before * 1e3:.1f} ms, blocked {now * 1e3:.1f} ms, ratio {before / now:.2f}x")


def world(profile: str) -> None:
    from musicrecall.data import prepare
    from musicrecall.evaluation import (
        MarkovRecall,
        PopularityRecall,
        make_eval_setup,
        rolling_next_play,
        rolling_targets,
    )

    prep = prepare("world", profile=profile, seed=0)
    ev, n = prep.clean.events, prep.dataset.items.height
    setup = make_eval_setup(ev, n, stage="test")
    print(setup.describe_split())
    box: dict = {}
    t_targets = _cpu(lambda: box.setdefault("t", rolling_targets(setup)))
    targets = box["t"]
    print(targets.describe())
    markov, pop = MarkovRecall().fit(setup.fit, n), PopularityRecall().fit(setup.fit, n)
    emb = torch.randn(n + 1, 64, generator=torch.Generator().manual_seed(0))
    emb[n] = 0

    def mean_emb(h: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        x = emb[torch.from_numpy(h)].sum(1) / torch.from_numpy(np.maximum(lengths, 1))[:, None]
        return x @ emb[:n].T

    rows = [("targets", t_targets)]
    for name, fn in (("popularity", pop.score), ("markov", markov.score), ("embedding d=64", mean_emb)):
        rows.append((name, _cpu(lambda fn=fn, name=name: box.__setitem__(name, rolling_next_play(fn, targets)))))
    rows.append(("summary (1,000 resamples)", _cpu(lambda: box["markov"].summary())))
    sub = rolling_targets(setup, max_targets_per_user=10)
    rows.append((f"embedding d=64, max_targets_per_user=10 ({sub.n_targets:,} targets)",
                 _cpu(lambda: rolling_next_play(mean_emb, sub))))
    for name, sec in rows:
        print(f"{name}: {sec:.2f} CPU s")
    print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="small")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from musicrecall import config

    config.set_threads()
    kernel(args.repeats)
    blocked(args.repeats)
    world(args.profile)


if __name__ == "__main__":
    main()
