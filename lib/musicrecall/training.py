"""The one training loop every neural model shares (SASRec, YouTube-DNN, MIND, DSSM, MMoE ...).

``train`` gives every model the same behaviour:

* **seeding** (:func:`seed_everything`): the same seed and data give the same weights;
* **progress**: a tqdm bar per epoch (``TrainConfig.progress``);
* **early stopping** on a validation score (higher is better), restoring the best epoch's weights, after
  ``patience`` epochs without gain **and** at least ``min_steps`` optimiser steps (a warm-up in steps, not
  epochs: on a small log an epoch is a handful of steps, and a model that first learns the popularity list
  sits on a plateau, or dips, for longer than a few such epochs before it learns more; see ``TrainConfig``);
  the epoch cap is a safety net, not a schedule: reaching it while the score still improves logs a warning
  and sets ``History.capped`` (the model may be under-trained);
* **checkpoints** under ``data/checkpoints/``, written atomically; with a ``cache_key`` (a content hash
  of the data and hyper-parameters) a finished run is loaded instead of retrained;
* **threads** from :mod:`musicrecall.config`, never set here;
* **data parallel** (:mod:`musicrecall.distributed`) when ``torch.distributed`` is initialised with 2+
  processes: each rank computes its slice of every batch, gradients are all-reduced (DDP), rank 0
  validates and writes the checkpoint.

The model-specific parts are two callables: ``batches(epoch)`` yields batches (shuffle them with
:func:`minibatches`, which is seeded by epoch) and ``loss_fn(model, batch)`` returns a scalar loss.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from musicrecall import distributed
from musicrecall.cache import content_key, source_fingerprint
from musicrecall.config import DATA_DIR, n_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and stopping settings shared by all models."""

    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs without a validation gain before stopping
    # optimiser steps before early stopping may fire (counted over the whole run, not per epoch). Measured
    # plateaus and dips at the start of training, in steps: YouTube-DNN on a 300-user 30Music subset (3 steps
    # an epoch) sat on the popularity list for ~15 steps and was stopped there by patience 3 (test HR@10 0.010;
    # 0.140 once it ran on); SASRec with dropout 0.5 dipped for ~10 steps; SASRec on full 30Music was flat for
    # ~90 steps. Free where an epoch is long (notebook 03 at small: ~100 steps an epoch, runs stop after 10+)
    min_steps: int = 200
    min_delta: float = 1e-4
    grad_clip: float | None = 5.0
    seed: int = 0
    progress: bool = True


@dataclass
class History:
    """Per-epoch record of one training run."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("-inf")
    stopped_early: bool = False
    from_cache: bool = False
    capped: bool = False  # validated, ran all ``cfg.epochs`` and the last epochs still improved
    steps: int = 0  # optimiser steps taken
    processes: int = 1  # training processes (2+: data-parallel, :mod:`musicrecall.distributed`)

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.median([e["seconds"] for e in self.epochs])) if self.epochs else float("nan")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def minibatches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> Iterator[np.ndarray]:
    """Index arrays covering ``range(n)``, shuffled reproducibly per (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def checkpoint_path(name: str, cache_key: str) -> Path:
    """Where a model's finished checkpoint lives."""
    return DATA_DIR / "checkpoints" / f"{name}-{cache_key}.pt"


def checkpoint_key(data_key: str, name: str, *hparams: Any, code: Iterable[ModuleType] = ()) -> str:
    """The ``cache_key`` of :func:`train` for a model trained on one dataset: a hash of the data's content key,
    the run ``name``, its hyper-parameters and the source of ``code`` (the modules that build the model, its
    training data and loss) and of this loop, so that a change to any of them retrains."""
    return content_key(data_key, name, *hparams, source_fingerprint(*code, sys.modules[__name__]))


def _save(path: Path, model: torch.nn.Module, history: History, extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.pt.tmp")  # notebooks run side by side
    torch.save({"model": model.state_dict(), "history": asdict(history), "extra": extra}, tmp)
    tmp.replace(path)


def train(model: torch.nn.Module, batches: Callable[[int], Iterable[Any]],
          loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], cfg: TrainConfig,
          validate: Callable[[torch.nn.Module], float] | None = None, *, name: str = "model",
          cache_key: str | None = None, n_batches: int | None = None) -> History:
    """Train ``model`` in place and return its history (best weights restored when validating)."""
    n_threads()  # the thread count is the central one (set by config.set_threads)
    ddp = distributed.active()  # data-parallel when torch.distributed runs 2+ processes, else None
    path = checkpoint_path(name, cache_key) if cache_key else None
    state = (ddp.load_checkpoint(path) if ddp else torch.load(path, weights_only=False) if path.exists() else None
             ) if path is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        history = History(**state["history"])
        history.from_cache = True
        return history
    seed_everything(cfg.seed)
    # the fused CPU kernel: the same algorithm, ~4x faster per step than the default per-tensor loop
    # (bench/bench_training.py); it matters most when the cores are shared
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    history, best_state, stale = History(processes=ddp.world if ddp else 1), None, 0
    step = ddp.loss_step(model, loss_fn) if ddp else (lambda b: loss_fn(model, b))
    for epoch in range(cfg.epochs):
        model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        bar = tqdm(batches(epoch), total=n_batches, desc=f"{name} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress, leave=False, mininterval=2.0)
        for batch in bar:
            loss = step(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total, count = total + float(loss.detach()), count + 1
        history.steps += count
        mean_loss = ddp.mean(total / max(count, 1)) if ddp else total / max(count, 1)
        record = {"epoch": epoch + 1, "train_loss": mean_loss, "seconds": time.perf_counter() - start}
        if validate is not None:
            model.eval()
            with torch.no_grad():  # on rank 0 only, broadcast: every rank stops at the same epoch
                record["valid_score"] = ddp.main_value(lambda: validate(model)) if ddp else float(validate(model))
            if record["valid_score"] > history.best_score + cfg.min_delta:
                history.best_score, history.best_epoch, stale = record["valid_score"], epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.epochs.append(record)
        if validate is not None and stale >= cfg.patience and history.steps >= cfg.min_steps:
            history.stopped_early = True
            break
    if validate is not None and not history.stopped_early and history.epochs:
        if stale < cfg.patience:  # still improving: under-trained
            history.capped = True
            log.warning("%s: reached the epoch cap (%d) without %d epochs of no gain; best epoch %d: "
                        "raise TrainConfig.epochs to train to convergence", name, cfg.epochs, cfg.patience,
                        history.best_epoch)
        else:  # converged by patience, but the cap came before min_steps
            log.info("%s: reached the epoch cap (%d) after %d steps, before min_steps (%d); no gain in the "
                     "last %d epochs (best epoch %d)", name, cfg.epochs, history.steps, cfg.min_steps, stale,
                     history.best_epoch)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if path is not None and (ddp is None or ddp.is_main):
        _save(path, model, history, {"config": json.loads(json.dumps(asdict(cfg)))})
    if ddp:
        ddp.barrier()  # the checkpoint is complete before any rank goes on to read it
    return history
