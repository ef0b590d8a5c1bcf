"""Benchmark of the optimiser step in the shared training loop (musicrecall.training).

Workload: the parameters of SASRec (notebook 03) and YouTube-DNN at profile ``small`` sizes (30,000 songs,
dim 48), with random gradients. Compared: torch's default AdamW (a Python loop over tensors on CPU), the
``foreach`` variant and the ``fused`` CPU kernel the loop uses. Reported: median ms per step over
``--repeats`` blocks of ``--steps`` steps, the ratio to the default measured in the same run, and the
largest difference of the parameters after the same steps (the same algorithm up to rounding).

Usage::

    .venv/bin/python bench/bench_training.py [--steps 50] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from musicrecall import config
from musicrecall.models.sasrec import SASRec

VARIANTS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-items", type=int, default=30_000)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    config.set_threads(args.threads)
    torch.manual_seed(0)
    base = SASRec(args.n_items, 48, 30, 1, 1, 0.1)
    grads = [torch.randn_like(p) for p in base.parameters()]
    models = {name: copy.deepcopy(base) for name in VARIANTS}
    opts = {name: torch.optim.AdamW(models[name].parameters(), lr=1e-3, weight_decay=0.01, **kw)
            for name, kw in VARIANTS.items()}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, opt in opts.items():  # interleaved, so that load changes hit every variant alike
            for p, g in zip(models[name].parameters(), grads, strict=True):
                p.grad = g.clone()
            start = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    ref = statistics.median(times["default"])
    for name in VARIANTS:
        diff = max(float((a - b).abs().max()) for a, b in zip(models[name].state_dict().values(), models["default"].state_dict().values(),
                                                              strict=True))
        med = statistics.median(times[name])
        print(f"{name:>8}: {med:6.2f} ms/step, {ref / med:5.1f}x faster than default, max |param diff| {diff:.1e}")


if __name__ == "__main__":
    main()
