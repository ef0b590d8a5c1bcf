"""Data-parallel training of the recall models with torch DDP (``torch.distributed``).

:func:`musicrecall.training.train` becomes data-parallel by itself when ``torch.distributed`` is
initialised with more than one process (:func:`active`); nothing changes for a single process. Each
process (rank) runs the same seeded loop over the same global batches (``batches(epoch)`` is a seeded
permutation, identical on every rank) and computes the loss on its own contiguous slice of each
global batch; :class:`torch.nn.parallel.DistributedDataParallel` all-reduces (averages) the gradients
during the backward pass, so every rank takes the same optimiser step. A rank's loss is scaled by
``W * units_r / units`` (``units`` = rows of the batch, or what ``loss_fn.batch_units(batch)`` counts,
e.g. the real positions of padded windows), so the averaged gradient is exactly the gradient of the
global batch's mean loss: two processes give the parameters of one process with the same global batch
up to float rounding (``tests/test_distributed.py``). Exceptions, where results match only
statistically: losses with **in-batch negatives** (MIND) see the ``B/W`` rows of their own shard as
negatives, and **dropout** / random re-draws use each rank's own random stream.

Validation, early stopping and checkpoints happen on rank 0; its score is broadcast so every rank stops
at the same epoch, and a cached checkpoint (the same content-keyed cache as one process) is read by
rank 0 and broadcast. Backend: ``gloo`` on CPU (what the training loop uses); ``nccl`` needs the
models and batches on GPUs, which this CPU-only loop does not do.

Start it with ``torchrun`` (any number of machines) or, on one machine, with the CLI of
:mod:`musicrecall.ddp_train`, which spawns the processes and splits the thread budget
(:func:`musicrecall.config.n_threads`) between them::

    python -m musicrecall.ddp_train sasrec --dataset world --profile tiny --nproc 2
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 2 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m musicrecall.ddp_train sasrec --profile small

References: Li et al., *PyTorch Distributed: Experiences on Accelerating Data Parallel Training*,
VLDB 2020 (DDP's bucketed all-reduce overlapped with the backward pass).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from musicrecall import config


@dataclass(frozen=True)
class Context:
    """This process's place in the process group (only built when there are 2+ processes)."""

    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- batches ---------------------------------------------------------------------------------
    def shard(self, batch: Any, units: Callable[[Any], int] | None = None) -> tuple[Any, float]:
        """This rank's contiguous slice of a global batch and its loss weight ``W * units_r / units``.

        Tensors and arrays whose first dimension is the batch size are sliced (recursively through
        tuples, lists and dicts); everything else is passed on. A rank whose slice is empty (a last
        batch smaller than the world) gets one row with weight 0, so that it still joins the all-reduce.
        """
        n = _batch_rows(batch)
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        if hi == lo:
            return _slice(batch, n, 0, 1), 0.0
        local = _slice(batch, n, lo, hi)
        count = units or (lambda b: _batch_rows(b))
        total = float(count(batch))
        return local, (self.world * float(count(local)) / total) if total > 0 else 0.0

    def loss_step(self, model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor]
                  ) -> Callable[[Any], torch.Tensor]:
        """``step(global_batch) -> loss``: this rank's weighted loss through DDP (gradients all-reduced)."""
        ddp = torch.nn.parallel.DistributedDataParallel(_LossModule(model, loss_fn), find_unused_parameters=True)
        units = getattr(loss_fn, "batch_units", None)

        def step(batch: Any) -> torch.Tensor:
            local, weight = self.shard(batch, units)
            return ddp(local) * weight

        return step

    # ---- rank-0 decisions ------------------------------------------------------------------------
    def main_value(self, fn: Callable[[], float]) -> float:
        """``fn()`` computed on rank 0 only and broadcast to every rank (e.g. the validation score)."""
        value = torch.tensor([float(fn()) if self.is_main else 0.0], dtype=torch.float64)
        dist.broadcast(value, src=0)
        return float(value.item())

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (e.g. the epoch's training loss)."""
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def load_checkpoint(self, path: Path) -> dict | None:
        """Rank 0 reads the cached checkpoint (if it exists) and broadcasts it to every rank."""
        box: list[Any] = [None]
        if self.is_main and path.exists():
            box[0] = torch.load(path, weights_only=False)
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()


class _LossModule(torch.nn.Module):
    """``forward(batch) = loss_fn(model, batch)``: DDP arms its gradient hooks in ``forward``, and the
    losses call model methods other than ``forward`` (``interests``, ``sequence_output`` ...)."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def _batch_rows(batch: Any) -> int:
    if isinstance(batch, torch.Tensor | np.ndarray):
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        for part in batch:
            if isinstance(part, torch.Tensor | np.ndarray | Mapping | list | tuple):
                return _batch_rows(part)
    raise TypeError(f"cannot shard a batch of type {type(batch).__name__}: it holds no tensor or array "
                    "whose first dimension is the batch")


def _slice(batch: Any, n: int, lo: int, hi: int) -> Any:
    if isinstance(batch, torch.Tensor | np.ndarray):
        return batch[lo:hi] if batch.ndim and batch.shape[0] == n else batch
    if isinstance(batch, Mapping):
        return type(batch)({k: _slice(v, n, lo, hi) for k, v in batch.items()})
    if isinstance(batch, tuple | list):
        return type(batch)(_slice(v, n, lo, hi) for v in batch)
    return batch


def active() -> Context | None:
    """The process group context when ``torch.distributed`` is initialised with 2+ processes, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Context(dist.get_rank(), dist.get_world_size())
    return None


def free_port() -> int:
    """A free TCP port on this machine (for a one-machine rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init(rank: int, world: int, addr: str = "127.0.0.1", port: int | None = None, backend: str = "gloo") -> None:
    """Join the process group (what torchrun's environment does for :func:`main`)."""
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port or 29500}", rank=rank, world_size=world)


def spawn(fn: Callable[..., Any], nproc: int, *args: Any) -> None:
    """Run ``fn(rank, nproc, port, *args)`` in ``nproc`` fresh processes on this machine and wait.

    ``fn`` must be importable (module level). Each process gets ``n_threads() // nproc`` threads
    (at least 1): the processes share the cores instead of oversubscribing them.
    """
    import torch.multiprocessing as mp

    threads = max(1, config.n_threads() // nproc)
    mp.start_processes(_spawned, args=(fn, nproc, free_port(), threads, args), nprocs=nproc, join=True,
                       start_method="spawn")


def _spawned(rank: int, fn: Callable[..., Any], nproc: int, port: int, threads: int, args: tuple) -> None:
    config.set_threads(threads)
    fn(rank, nproc, port, *args)
