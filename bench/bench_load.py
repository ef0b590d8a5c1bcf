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
* ``notebooks`` — every notebook run by the report runner (:func:`musicrecall.report.runner.run_notebook`,
  papermill) at ``--profile`` (default tiny), quiet and loaded alternated run by run, ``--repeats``
  (default 3) of each; besides the ratio of the medians, the median of the ratios of neighbouring
  runs, and how many cores other people's processes used during each run (from ``/proc/stat``, less
  this bench's own processes) with the load average: the load the bench did not control.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/bench_load.py kernels [--repeats 3] [--busy 2]
    PYTHONPATH=lib .venv/bin/python bench/bench_load.py notebooks [--profile tiny] [--repeats 3] [--warm]
        [--only 04,06,08] [--settings budget] [--out ratios.json]
    PYTHONPATH=lib .venv/bin/python bench/bench_load.py workbook --profile small [--conditions quiet,loaded]
        [--quiet-from reports/metrics.json] [--out workbook.json]
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


def _busy_jiffies() -> int:
    """CPU time of the whole machine (all processes, all cores) in clock ticks, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]  # user nice system irq softirq steal


def _own_cpu() -> float:
    """CPU seconds of this process and its waited-for children (the notebook kernels, the busy loops)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _one_notebook_run(path: Path, profile: str, busy: int, reports: Path) -> dict[str, float | str]:
    """Run one notebook through the report runner (papermill) with ``busy`` spinning processes: its time,
    status, the load average before, and the cores other people's processes used meanwhile."""
    from musicrecall.report.runner import run_notebook

    tick = os.sysconf("SC_CLK_TCK")
    load0 = os.getloadavg()[0]
    j0, own0, t0 = _busy_jiffies(), _own_cpu(), time.perf_counter()
    with Busy(busy):
        run = run_notebook(path, {"profile": profile}, reports)
    wall = time.perf_counter() - t0
    others = ((_busy_jiffies() - j0) / tick - (_own_cpu() - own0)) / wall
    return {"seconds": run.seconds, "status": run.status, "error": run.error, "load_before": load0,
            "others_cores": max(others, 0.0)}


def notebooks(args: argparse.Namespace) -> None:
    """Each notebook, quiet and loaded, alternated run by run (quiet-loaded, then loaded-quiet, ...) so
    that a drift of the machine's own load hits both sides alike; medians of ``--repeats`` each."""
    from musicrecall.report.runner import list_notebooks

    paths = list_notebooks(REPO / "notebooks", [x for x in args.only.split(",") if x] or None)
    s = args.settings.split(",")[0]
    base = dict(os.environ)
    os.environ.clear()
    os.environ.update(_env(SETTINGS[s]))  # the kernels inherit it
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            reports = Path(tmp) / "reports"
            os.environ["MUSICRECALL_REPORTS"] = str(reports)  # record_metrics of the runs goes there
            if args.warm:  # fill the caches (worlds, checkpoints): quiet and loaded runs then do the same work
                for path in paths:
                    r = _one_notebook_run(path, args.profile, 0, reports)
                    print(f"warm {path.stem}: {r['seconds']:.1f} s {r['status']} {r['error']}", flush=True)
            for path in paths:
                res = results.setdefault(path.stem, {"quiet": [], "loaded": []})
                for rep in range(args.repeats):
                    order = (0, args.busy) if rep % 2 == 0 else (args.busy, 0)
                    for busy in order:
                        r = _one_notebook_run(path, args.profile, busy, reports)
                        res["loaded" if busy else "quiet"].append(r)
                        print(f"{path.stem} rep {rep} busy {busy}: {r['seconds']:.1f} s {r['status']} "
                              f"load {r['load_before']:.1f} others {r['others_cores']:.2f} cores {r['error']}",
                              flush=True)
    finally:
        os.environ.clear()
        os.environ.update(base)
    print(f"\nprofile {args.profile}, setting {s} ({SETTINGS[s]}); medians of {args.repeats} runs each; loaded = "
          f"{args.busy} busy processes; others' use = CPU cores used by other people's processes during the run "
          f"(machine total less this bench's own processes)")
    print(f"{'notebook':<30} {'quiet s':>8} {'loaded s':>9} {'ratio':>6} {'pairs':>6} {'others q':>9} "
          f"{'others l':>9} {'load':>5} {'status':>7}")
    summary = []
    for name, res in results.items():
        q = [r["seconds"] for r in res["quiet"]]
        lo = [r["seconds"] for r in res["loaded"]]
        ratio = statistics.median(lo) / statistics.median(q)
        pairs = statistics.median(a / b for a, b in zip(lo, q, strict=True))  # run-by-run neighbours
        oq = statistics.median(r["others_cores"] for r in res["quiet"])
        ol = statistics.median(r["others_cores"] for r in res["loaded"])
        load = statistics.median(r["load_before"] for r in res["quiet"] + res["loaded"])
        ok = all(r["status"] == "ok" for r in res["quiet"] + res["loaded"])
        summary.append({"notebook": name, "quiet_s": q, "loaded_s": lo, "ratio_of_medians": ratio,
                        "median_pair_ratio": pairs, "others_cores_quiet": oq, "others_cores_loaded": ol,
                        "load_average": load, "all_ok": ok})
        print(f"{name:<30} {statistics.median(q):8.1f} {statistics.median(lo):9.1f} {ratio:6.2f} {pairs:6.2f} "
              f"{oq:9.2f} {ol:9.2f} {load:5.1f} {'ok' if ok else 'FAILED':>7}")
    worst = max(summary, key=lambda r: r["ratio_of_medians"]) if summary else None
    if worst:
        print(f"worst: {worst['notebook']} {worst['ratio_of_medians']:.2f}x "
              f"({'within' if worst['ratio_of_medians'] <= 2.5 else 'OVER'} the 2.5x bar)")
    if args.out:
        args.out.write_text(json.dumps({"profile": args.profile, "busy": args.busy, "repeats": args.repeats,
                                        "setting": SETTINGS[s], "notebooks": summary}, indent=1))


def _workbook_run(profile: str, busy: int) -> dict:
    """One ``python -m musicrecall.report run`` in fresh data and reports folders, ``busy`` spinning
    processes beside it: its wall time, every notebook's seconds and status, others' cores, load average."""
    tick = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory() as tmp:
        env = _env({"MUSICRECALL_DATA": str(Path(tmp) / "data"), "MUSICRECALL_REPORTS": str(Path(tmp) / "reports")})
        (Path(tmp) / "data").mkdir()
        load0 = os.getloadavg()[0]
        j0, own0, t0 = _busy_jiffies(), _own_cpu(), time.perf_counter()
        with Busy(busy):
            done = subprocess.run([sys.executable, "-m", "musicrecall.report", "run", "--profile", profile],
                                  env=env, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        others = ((_busy_jiffies() - j0) / tick - (_own_cpu() - own0)) / wall
        metrics_file = Path(tmp) / "reports" / "metrics.json"
        runs = json.loads(metrics_file.read_text())["notebooks"] if metrics_file.exists() else {}
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], flush=True)
    return {"busy": busy, "wall": wall, "returncode": done.returncode, "load_before": load0,
            "others_cores": max(others, 0.0),
            "notebooks": {n: {"seconds": r.get("seconds"), "status": r.get("status")} for n, r in runs.items()}}


def workbook(args: argparse.Namespace) -> None:
    """The whole workbook quiet and loaded (or loaded only, against ``--quiet-from``); per-notebook ratios."""
    runs = {}
    for cond in args.conditions.split(","):
        runs[cond] = _workbook_run(args.profile, args.busy if cond == "loaded" else 0)
        print(f"{cond}: {runs[cond]['wall']:.0f} s wall, rc {runs[cond]['returncode']}, load before "
              f"{runs[cond]['load_before']:.1f}, others {runs[cond]['others_cores']:.2f} cores", flush=True)
    if args.quiet_from:
        quiet = json.loads(Path(args.quiet_from).read_text())
        runs["quiet"] = {"busy": 0, "wall": quiet.get("run", {}).get("wall_seconds"), "from": str(args.quiet_from),
                         "notebooks": {n: {"seconds": r.get("seconds"), "status": r.get("status")}
                                       for n, r in quiet["notebooks"].items()}}
    if {"quiet", "loaded"} <= set(runs):
        q, lo = runs["quiet"], runs["loaded"]
        print(f"{'notebook':<30} {'quiet s':>8} {'loaded s':>9} {'ratio':>6}")
        for name, r in q["notebooks"].items():
            other = lo["notebooks"].get(name, {})
            if r.get("seconds") and other.get("seconds"):
                print(f"{name:<30} {r['seconds']:8.1f} {other['seconds']:9.1f} {other['seconds'] / r['seconds']:6.2f} "
                      f"{other.get('status')}")
        if q.get("wall") and lo.get("wall"):
            print(f"{'whole workbook (wall)':<30} {q['wall']:8.1f} {lo['wall']:9.1f} {lo['wall'] / q['wall']:6.2f}")
    if args.out:
        args.out.write_text(json.dumps({"profile": args.profile, "busy": args.busy, "runs": runs}, indent=1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _kernel_worker()
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["kernels", "notebooks", "workbook"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2)
    ap.add_argument("--settings", default=None, help="kernels: spin,budget,one; notebooks: budget")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 04,06,08")
    ap.add_argument("--warm", action="store_true", help="run every notebook once first (fills the caches)")
    ap.add_argument("--out", type=Path, default=None, help="notebooks, workbook: write the table as JSON")
    ap.add_argument("--conditions", default="quiet,loaded", help="workbook: which runs, in order")
    ap.add_argument("--quiet-from", type=Path, default=None,
                    help="workbook: the quiet times from an earlier make run's reports/metrics.json")
    args = ap.parse_args()
    args.settings = args.settings or ("spin,budget,one" if args.mode == "kernels" else "budget")
    {"kernels": kernels, "notebooks": notebooks, "workbook": workbook}[args.mode](args)


if __name__ == "__main__":
    main()
