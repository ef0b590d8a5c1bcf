"""Data-parallel training of notebook 03's and 04's recall models (:mod:`musicrecall.distributed`), with a CLI.

One machine (spawns ``--nproc`` processes, gloo, ``MUSICRECALL_THREADS / nproc`` threads each)::

    python -m musicrecall.ddp_train sasrec --dataset world --profile tiny --nproc 2

Several machines (``torchrun`` sets the ranks; run on every machine with its ``--node_rank``)::

    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 2 --rdzv_backend c10d \\
        --rdzv_endpoint HOST0:29500 --rdzv_id musicrecall -m musicrecall.ddp_train sasrec --profile medium

Each run trains the model exactly as its notebook does (same data, recipe and content-keyed checkpoint),
so the notebook then loads the checkpoint from the cache instead of training.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from musicrecall import config
from musicrecall.distributed import init, spawn
from musicrecall.models import recipes

log = logging.getLogger(__name__)

MODELS = ("youtube_dnn", "sasrec", "sasrec_unshared", "mind")

# notebook 04's "both" variant: its recipe (the notebook's parameter defaults) and its split
MIND_HP = {"valid_days": 7, "test_days": 7, **recipes.MIND.as_dict(), "routing_axis": "interest",
           "routing_init": "redraw", "side": True}


def train_model(model: str, dataset: str = "world", profile: str = "tiny", seed: int = 0,
                train_seed: int | None = None, **hp: Any) -> dict:
    """Train one recall model as its notebook does (same data, recipe and cache key).

    ``model``: ``youtube_dnn``, ``sasrec`` or ``sasrec_unshared`` (notebook 03: the recipes of
    :mod:`musicrecall.models.recipes` at ``profile``, trained by :func:`sequences.fit_recipe` on the
    windows notebook 03's :func:`sequences.run_c2_world` builds; ``hp`` = recipe changes, plus
    ``valid_days`` / ``test_days``) or ``mind`` (notebook 04's ``both`` variant, :func:`multi_interest.fit_mind`).
    ``seed`` is the data's seed (world, splits, windows), ``train_seed`` the training seed (notebook 03
    trains seeds ``seed, seed + 1, ...``; default ``seed``). In a process group every rank calls this;
    rank 0's checkpoint is what the notebook then loads from the cache. Returns a summary of the history.
    """
    from musicrecall import sequences as sq
    from musicrecall.data import prepare

    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    prep = prepare(dataset, profile=profile, seed=seed, raw_log=False)  # training reads the cleaned plays
    if model == "mind":
        return _train_mind(prep, {**MIND_HP, **hp}, seed)
    days = {k: hp.pop(k) for k in ("valid_days", "test_days") if k in hp}
    arms = {"youtube_dnn": recipes.for_profile(recipes.YOUTUBE_DNN, profile).with_(**hp),
            "sasrec": recipes.for_profile(recipes.SASREC, profile).with_(**hp)}
    arms["sasrec_unshared"] = arms["sasrec"].with_(shared=False)
    # the windows of run_c2_world: the longest history and the smallest user cap of notebook 03's arms
    inputs = sq.c2_inputs(prep, arms, valid_days=days.get("valid_days", 7), test_days=days.get("test_days", 7),
                          seed=seed)
    _, hist = sq.fit_recipe(model, inputs, arms[model], seed=seed if train_seed is None else train_seed,
                            data_key=prep.dataset.key)
    return _summary(model, hist)


def train_c2(arms: dict[str, Any], seeds: Sequence[int], dataset: str = "world", profile: str = "small",
             seed: int = 0, effects: Any = None, valid_days: float = 7, test_days: float = 7,
             extra_single_seed: Sequence[str] = (), share: tuple[int, int] = (0, 1)) -> list[dict]:
    """Train every arm of notebook 03 at every training seed exactly as :func:`sequences.run_c2_world`
    does (the recipes ``arms`` as the notebook runs them, the same windows from :func:`sequences.c2_inputs`,
    the same checkpoint keys), so that the notebook's own call then loads each model from the cache.
    ``effects``: the placebo world's :class:`musicrecall.world.Effects`. In a process group every rank
    calls this (each model trains data-parallel in turn). ``share=(i, n)``: only runs ``i, i + n, ...``
    (one of ``n`` processes training independent runs side by side, :func:`launch_runs`). Returns one
    summary per trained model."""
    from musicrecall import sequences as sq
    from musicrecall.data import prepare

    runs = [(kind, s) for kind in arms for s in (seeds[:1] if kind in extra_single_seed else seeds)]
    prep = prepare(dataset, profile=profile, seed=seed, effects=effects, raw_log=False)
    inputs = sq.c2_inputs(prep, arms, valid_days=valid_days, test_days=test_days, seed=seed)
    out = []
    for kind, s in runs[share[0]::share[1]]:
        _, hist = sq.fit_recipe(kind, inputs, arms[kind], seed=s, data_key=prep.dataset.key)
        out.append({**_summary(kind, hist), "train_seed": s})
    return out


def _train_mind(prep: Any, h: dict, seed: int) -> dict:
    from musicrecall import multi_interest as M
    from musicrecall.evaluation import make_eval_setup
    from musicrecall.sequence_data import side_codes

    ds = prep.dataset
    valid = make_eval_setup(prep.clean.events, ds.items.height, stage="valid", valid_days=h["valid_days"],
                            test_days=h["test_days"])
    side = side_codes(ds.items) if h["side"] else None
    recipe = recipes.MIND.with_(**{k: v for k, v in h.items() if k in recipes.MIND.as_dict()})
    name = f"both_{h['routing_axis']}"
    # the run name and arguments of notebook 04's variant: fit_mind keys the checkpoint on them, so the
    # notebook finds this checkpoint
    _, hist = M.fit_mind(valid.fit, valid.targets["all"], valid.n_items,
                         recipe.config(routing_axis=h["routing_axis"], routing_init=h["routing_init"]), side,
                         recipe.train_config(seed), **recipe.fit_args(), name=f"mind_{name}", data_key=ds.key,
                         seed=seed)
    return _summary(name, hist)


def _summary(name: str, hist: Any) -> dict:
    return {"model": name, "epochs": len(hist.epochs), "best_epoch": hist.best_epoch, "best_score": hist.best_score,
            "seconds_per_epoch": hist.seconds_per_epoch, "from_cache": hist.from_cache,
            "world": dist.get_world_size() if dist.is_initialized() else 1}


def _spawned_train(rank: int, world: int, port: int, model: str | None, kwargs: dict, out: str | None) -> None:
    init(rank, world, port=port)
    try:
        summary = train_model(model, **kwargs) if model is not None else train_c2(**kwargs)
        if rank == 0 and out:
            Path(out).write_text(json.dumps(summary))
    finally:
        dist.destroy_process_group()


def launch(model: str, nproc: int, **kwargs: Any) -> dict:
    """Train ``model`` (:func:`train_model`) in ``nproc`` processes on this machine; rank 0's summary.

    What a notebook's ``nproc`` parameter calls: afterwards the notebook's own training call finds the
    checkpoint in the content-keyed cache. ``nproc=1`` trains in this process.
    """
    if nproc <= 1:
        return train_model(model, **kwargs)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "summary.json")
        spawn(_spawned_train, nproc, model, kwargs, out)
        return json.loads(Path(out).read_text())


def launch_c2(nproc: int, arms: dict[str, Any], seeds: Sequence[int], **kwargs: Any) -> list[dict]:
    """:func:`train_c2` in ``nproc`` processes on this machine (one process group for every arm and seed:
    the data is prepared once per process); rank 0's summaries. Notebook 03's ``nproc`` parameter calls it
    before :func:`sequences.run_c2_world`, which then loads the checkpoints. ``nproc=1`` trains here."""
    if nproc <= 1:
        return train_c2(arms, seeds, **kwargs)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "summary.json")
        spawn(_spawned_train, nproc, None, {"arms": arms, "seeds": list(seeds), **kwargs}, out)
        return json.loads(Path(out).read_text())


def _spawned_runs(rank: int, world: int, port: int, kwargs: dict, out: str) -> None:
    """One of ``world`` independent processes (no process group): its share of notebook 03's runs."""
    Path(f"{out}.{rank}").write_text(json.dumps(train_c2(**kwargs, share=(rank, world))))


def launch_runs(workers: int, arms: dict[str, Any], seeds: Sequence[int], **kwargs: Any) -> list[dict]:
    """:func:`train_c2` with its independent runs (arm x training seed) spread over ``workers`` processes
    on this machine, each with ``n_threads() // workers`` threads (:func:`musicrecall.distributed.spawn`):
    small models use a second core better as a second run than as a second thread of one run. Every run
    is the one-process training of its checkpoint key; :func:`sequences.run_c2_world` then loads them."""
    if workers <= 1:
        return train_c2(arms, seeds, **kwargs)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "summary.json")
        spawn(_spawned_runs, workers, {"arms": arms, "seeds": list(seeds), **kwargs}, out)
        return [row for r in range(workers) for row in json.loads(Path(f"{out}.{r}").read_text())]


def memory_now() -> tuple[int, int] | None:
    """``(available, this process's resident)`` bytes (psutil: Linux's MemAvailable and VmRSS), or None where
    they cannot be read."""
    import psutil

    try:
        return psutil.virtual_memory().available, psutil.Process().memory_info().rss
    except (psutil.Error, OSError):
        return None


# A training process's peak as a multiple of the calling kernel's size when it calls: each loads the cleaned log
# again and builds the training windows and the model on top. Measured at profile medium: a worker was killed by
# the OOM killer at 10.9 GB beside a 3.5 GB kernel holding the cleaned log (raw_log=False); 1.5x had been enough
# while the kernel also held the raw log (9.3 GB), and then let two workers start.
WORKER_PER_KERNEL = 3.5


def affordable_workers(wanted: int) -> int:
    """How many of ``wanted`` training processes fit in the memory available now, each taken to be
    :data:`WORKER_PER_KERNEL` times this process (the README's medium section)."""
    mem = memory_now()
    if mem is None or wanted <= 1:
        return wanted
    fit = max(1, int(mem[0] // (WORKER_PER_KERNEL * max(mem[1], 1))))
    if fit < wanted:
        log.warning("parallel_runs %d -> %d: %.1f GB available, this process holds %.1f GB and each training "
                    "process needs about %.1fx that", wanted, fit, mem[0] / 1e9, mem[1] / 1e9, WORKER_PER_KERNEL)
    return min(wanted, fit)


def pretrain_c2(arms: dict[str, Any], seeds: Sequence[int], *, nproc: int = 1, parallel_runs: int = 1,
                **kwargs: Any) -> list[dict]:
    """Notebook 03's optional training before :func:`sequences.run_c2_world` (which then loads every model
    from its checkpoint): ``nproc >= 2`` trains each model data-parallel (:func:`launch_c2`, torch DDP),
    else ``parallel_runs >= 2`` trains independent runs side by side (:func:`launch_runs`, at most one
    process per thread of :func:`musicrecall.config.n_threads`, and no more than the free memory holds:
    :func:`affordable_workers`); otherwise nothing (the notebook trains in its own process)."""
    if nproc > 1:
        return launch_c2(nproc, arms, seeds, **kwargs)
    workers = affordable_workers(min(parallel_runs, config.n_threads()))  # a process per thread at most
    return launch_runs(workers, arms, seeds, **kwargs) if workers > 1 else []


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m musicrecall.ddp_train MODEL [--nproc N]``, or under ``torchrun`` (see the docstring)."""
    ap = argparse.ArgumentParser(prog="python -m musicrecall.ddp_train", description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("--dataset", default="world")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-seed", type=int, default=None, help="training seed (default: --seed)")
    ap.add_argument("--nproc", type=int, default=2, help="processes on this machine (ignored under torchrun)")
    ap.add_argument("--hp", default="{}", help='JSON changes to the recipe (notebook 03) or notebook 04\'s '
                    'hyper-parameters, e.g. \'{"dim": 64}\'')
    args = ap.parse_args(argv)
    kwargs = {"dataset": args.dataset, "profile": args.profile, "seed": args.seed, "train_seed": args.train_seed,
              **json.loads(args.hp)}
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # started by torchrun: env:// rendezvous
        world = int(os.environ["WORLD_SIZE"])
        config.set_threads(max(1, config.n_threads() // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
        dist.init_process_group("gloo")
        try:
            summary = train_model(args.model, **kwargs)
            if dist.get_rank() == 0:
                print(json.dumps(summary), flush=True)
        finally:
            dist.destroy_process_group()
        return
    config.set_threads()
    print(json.dumps(launch(args.model, args.nproc, **kwargs)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
