"""Slow-down under a fixed synthetic background load: each workload's loaded time over its quiet time.

The load is ``--busy`` processes spinning ``while True: pass`` (default 2, as many as the cores of the
reference machine). Quiet and loaded runs are interleaved in the same run, medians of ``--repeats``,
so the ratio is comparable even on a machine other people are using (report its load average too).

Two modes:

* ``kernels`` — the hot paths of the notebooks that collapsed under load (MIND training steps as in
  notebook 04/08, a faiss HNSW search as in notebook 04's serving, a LightGBM fit as in notebook 08),
  each in a fresh process under several thread settings (``--settings``):
  ``spin`` = 2 threads with the OpenMP runtimes' default (busy-waiting) policy, as before the fix;
  ``budget`` = :func:`musicrecall.config.set_threads` as it is now (passive waiting, one budget);
  ``one`` = 1 thread everywhere.
* ``notebooks`` — every notebook run with papermill at ``--profile`` (default tiny), quiet and loaded.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/bench_load.py kernels [--repeats 3] [--busy 2]
    PYTHONPATH=lib .venv/bin/python bench/bench_load.py notebooks [--profile tiny] [--repeats 1] [--warm]
        [--only 04,06,08] [--settings budget,spin]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# environment of the "spin" setting: what a process got before config set a waiting policy
SETTINGS: dict[str, dict[str, str]] = {
    "spin": {"MUSICRECALL_THREADS": "2", "MUSICRECALL_WAIT_POLICY": "spin"},
    "budget": {"MUSICRECALL_THREADS": "2"},
    "one": {"MUSICRECALL_THREADS": "1"},
}


def _kernel_worker() -> None:
    """Run inside a fresh process: time each kernel (median ms of repeats), print one JSON line."""
    import numpy as np

    from musicrecall import config

    config.set_threads()
    import faiss
    import lightgbm as lgb
    import torch

    from musicrecall.models.losses import NegativeSampler
    from musicrecall.models.mind import MIND, MINDConfig, mind_loss

    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    n_items = 20_000
    torch.manual_seed(0)
    model = MIND(n_items, MINDConfig(dim=48, k_max=4, max_len=30))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    sampler = NegativeSampler(rng.integers(1, 100, n_items), seed=0)
    hist = torch.from_numpy(rng.integers(0, n_items + 1, (1024, 30)))
    target = torch.from_numpy(rng.integers(0, n_items, 1024))
    times = []
    for _ in range(8):
        t0 = time.perf_counter()
        loss = mind_loss(model, hist, target, sampler, 256)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    out["mind_step_ms"] = statistics.median(times[2:]) * 1e3

    from musicrecall.evaluation.search import FaissIndex

    items = rng.standard_normal((20_000, 48)).astype(np.float32)
    index = FaissIndex(items, "hnsw", efConstruction=40, efSearch=256)
    queries = rng.standard_normal((1_000, 48)).astype(np.float32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        index.search(queries, 200)
        times.append(time.perf_counter() - t0)
    out["faiss_search_ms"] = statistics.median(times) * 1e3
    _ = faiss  # imported so its OpenMP runtime is loaded like in the notebooks

    x = rng.standard_normal((10_000, 30))
    y = (x[:, 0] + rng.standard_normal(10_000) > 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "num_threads": config.n_threads(), "seed": 0}
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=20)
        times.append(time.perf_counter() - t0)
    out["lgbm_fit_ms"] = statistics.median(times) * 1e3
    print("RESULT " + json.dumps(out), flush=True)


class Busy:
    """``n`` background processes spinning one core each, for the lifetime of the ``with`` block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self) -> Busy:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                                                             "KMP_BLOCKTIME", "MUSICRECALL_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def kernels(args: argparse.Namespace) -> None:
    settings = args.settings.split(",")
    res: dict[tuple[str, int], list[dict[str, float]]] = {}
    for rep in range(args.repeats):
        for busy in (0, args.busy):  # interleaved: background load from others hits quiet and loaded alike
            with Busy(busy):
                for s in settings:
                    p = subprocess.run([sys.executable, __file__, "_worker"], env=_env(SETTINGS[s]),
                                       capture_output=True, text=True, check=True)
                    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
                    res.setdefault((s, busy), []).append(json.loads(line[7:]))
                    print(f"rep {rep} busy {busy} {s}: {line[7:]}  load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\nmedians of {args.repeats} repeats; loaded = {args.busy} busy processes; "
          f"load average at the end {os.getloadavg()}")
    keys = list(res[(settings[0], 0)][0])
    print(f"{'setting':>8} " + " ".join(f"{k + ' quiet':>22} {k + ' loaded':>22} {'ratio':>6}" for k in keys))
    for s in settings:
        cells = []
        for k in keys:
            q = statistics.median(r[k] for r in res[(s, 0)])
            lo = statistics.median(r[k] for r in res[(s, args.busy)])
            cells.append(f"{q:22.1f} {lo:22.1f} {lo / q:6.2f}")
        print(f"{s:>8} " + " ".join(cells))


def notebooks(args: argparse.Namespace) -> None:
    import papermill as pm

    names = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        names = [n for n in names if n[:2] in args.only.split(",")]
    settings = args.settings.split(",")
    times: dict[tuple[str, str, int], list[float]] = {}
    base = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        # a first pass fills the caches (worlds, checkpoints) so that quiet and loaded runs do the same work
        for name in names if args.warm else []:
            pm.execute_notebook(str(REPO / "notebooks" / name), str(Path(tmp) / name),
                                parameters={"profile": args.profile}, progress_bar=False, cwd=str(REPO / "notebooks"))
        for rep in range(args.repeats):
            for busy in (0, args.busy):
                with Busy(busy):
                    for s in settings:
                        os.environ.clear()
                        os.environ.update(_env(SETTINGS[s]) if s != "inherit" else base)  # the kernel inherits it
                        for name in names:
                            t0 = time.perf_counter()
                            pm.execute_notebook(str(REPO / "notebooks" / name), str(Path(tmp) / name),
                                                parameters={"profile": args.profile}, progress_bar=False,
                                                cwd=str(REPO / "notebooks"))
                            dt = time.perf_counter() - t0
                            times.setdefault((name, s, busy), []).append(dt)
                            print(f"rep {rep} busy {busy} {s} {name}: {dt:.1f} s  load {os.getloadavg()[0]:.1f}",
                                  flush=True)
        os.environ.clear()
        os.environ.update(base)
    print(f"\nprofile {args.profile}; medians of {args.repeats}; loaded = {args.busy} busy processes; "
          f"load average at the end {os.getloadavg()}")
    print(f"{'notebook':<34} {'setting':>8} {'quiet s':>8} {'loaded s':>9} {'ratio':>6}")
    for name in names:
        for s in settings:
            q, lo = statistics.median(times[(name, s, 0)]), statistics.median(times[(name, s, args.busy)])
            print(f"{name:<34} {s:>8} {q:8.1f} {lo:9.1f} {lo / q:6.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _kernel_worker()
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["kernels", "notebooks"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2)
    ap.add_argument("--settings", default=None, help="kernels: spin,budget,one; notebooks: budget")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 04,06,08")
    ap.add_argument("--warm", action="store_true", help="run every notebook once first (fills the caches)")
    args = ap.parse_args()
    args.settings = args.settings or ("spin,budget,one" if args.mode == "kernels" else "budget")
    (kernels if args.mode == "kernels" else notebooks)(args)


if __name__ == "__main__":
    main()
