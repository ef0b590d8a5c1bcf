"""Party A's view of party B's user tower: a module whose forward and backward cross the channel.

Split learning (Vepakomma et al., 2018) cut at the user tower's output:

* ``forward(idx)`` sends the *aligned* indices of the batch's users (``embed``) and receives B's
  embeddings (the only thing B reveals);
* ``backward`` sends dL/d(embeddings) (``grad``; the only thing A reveals during training) and B steps.

Because the round trip is an :class:`torch.autograd.Function`, a model containing a
:class:`RemoteUserTower` trains with the shared :func:`musicrecall.training.train` unchanged: A's
optimiser steps A's parameters after ``loss.backward()`` (which has already made B step). Early
stopping and checkpoints work through ``state_dict``: saving asks B to snapshot its tower under a
token (kept in memory and, with ``run_key``, in B's own folder) and loading asks B to restore it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from musicrecall.federated.channel import Endpoint


class _RemoteEmbed(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, tower: RemoteUserTower, idx: np.ndarray) -> torch.Tensor:
        ctx.tower = tower
        return torch.from_numpy(tower.fetch(idx, train=True))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:
        ctx.tower.push_grad(grad.detach().contiguous().numpy().astype(np.float32))
        return None, None, None


class RemoteUserTower(nn.Module):
    """Party B's user tower seen from A: input = aligned user indices (int64 numpy), output = embeddings."""

    def __init__(self, endpoint: Endpoint, name: str, dim: int = 32, hidden: int = 64, seed: int = 0,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float | None = 5.0,
                 clip_norm: float | None = None, noise_multiplier: float = 0.0, run_key: str = "",
                 chunk: int = 8192):
        super().__init__()
        self.endpoint, self.name, self.dim, self.run_key, self.chunk = endpoint, name, dim, run_key, chunk
        self._token = 0
        endpoint.request("init_tower", expect="ok", name=name, dim=dim, hidden=hidden, seed=seed, lr=lr,
                         weight_decay=weight_decay, grad_clip=grad_clip, clip_norm=clip_norm,
                         noise_multiplier=noise_multiplier)

    def fetch(self, idx: np.ndarray, train: bool) -> np.ndarray:
        """B's embeddings of aligned users ``idx`` (training batches in one message, else in chunks)."""
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        if train:
            return np.array(self.endpoint.request("embed", {"idx": idx}, expect="embeddings", name=self.name,
                                                  train=True).arrays["emb"])
        parts = [self.endpoint.request("embed", {"idx": idx[i:i + self.chunk]}, expect="embeddings",
                                       name=self.name, train=False).arrays["emb"]
                 for i in range(0, idx.shape[0], self.chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def push_grad(self, grad: np.ndarray) -> None:
        """Send dL/d(embeddings) of the last training batch; B back-propagates and steps (no reply)."""
        self.endpoint.send("grad", {"grad": grad}, name=self.name)

    def forward(self, idx: np.ndarray) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            anchor = torch.zeros((), requires_grad=True)  # makes autograd call backward
            return _RemoteEmbed.apply(anchor, self, idx)
        return torch.from_numpy(self.fetch(idx, train=False))

    def privacy(self, delta: float = 1e-5) -> dict[str, Any]:
        """B's report of the embedding releases and the (epsilon, delta) of the Gaussian mechanism."""
        return self.endpoint.request("privacy_request", expect="privacy", name=self.name, delta=delta).meta

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        token, self._token = self._token, self._token + 1
        self.endpoint.request("snapshot", expect="ok", name=self.name, token=token, run_key=self.run_key)
        destination[prefix + "remote_snapshot"] = torch.tensor(token)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        key = prefix + "remote_snapshot"
        if key not in state_dict:
            missing_keys.append(key)
            return
        token = int(state_dict[key])
        self._token = max(self._token, token + 1)
        self.endpoint.request("restore", expect="ok", name=self.name, token=token, run_key=self.run_key)
