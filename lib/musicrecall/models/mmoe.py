"""Multi-gate Mixture-of-Experts on the user side of a two-tower retrieval model.

MMoE: Ma et al., *Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts*, KDD 2018. ``n_experts`` shared expert MLPs read the user representation ``h``
(the user tower's output, which in the federated set-up arrives through the channel from party B);
each task ``t`` has its own softmax gate ``g_t(h)`` over the experts and its own tower, giving a user
vector ``u_t = tower_t(sum_k g_tk(h) f_k(h))``. All tasks share the item tower, so each task is a
retrieval head scored by ``<[u_t, 1], [v_i, b_i]>`` and served from the same song index.

Tasks (the talk: full play, collect and listening duration):

* ``full_play``: sampled softmax over the songs the user full-played;
* ``collect``: sampled softmax over the songs the user collected;
* ``duration``: sampled softmax over every play, each drawn with probability proportional to its
  ``play_ms`` — so the head estimates the share of the user's listening time each song would get,
  which is what "expected listening duration of the recommended songs" rewards. The serving vector
  is the ``duration`` head.
"""

from __future__ import annotations

import torch
from torch import nn

from musicrecall.models.dssm import ItemTower, extend_user, shared_retrieval_losses
from musicrecall.models.losses import NegativeSampler

TASKS = ("full_play", "collect", "duration")


class MMoE(nn.Module):
    """Shared experts and one gate + tower per task (Ma et al. 2018); returns ``{task: [B, dim]}``."""

    def __init__(self, n_in: int, dim: int = 32, n_experts: int = 4, expert_dim: int = 32,
                 tasks: tuple[str, ...] = TASKS):
        super().__init__()
        self.tasks = tasks
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(n_in, expert_dim), nn.ReLU())
                                     for _ in range(n_experts))
        self.gates = nn.ModuleDict({t: nn.Linear(n_in, n_experts) for t in tasks})
        self.towers = nn.ModuleDict({t: nn.Linear(expert_dim, dim) for t in tasks})

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        e = torch.stack([f(h) for f in self.experts], dim=1)  # [B, K, expert_dim]
        out = {}
        for t in self.tasks:
            g = torch.softmax(self.gates[t](h), dim=1)  # [B, K]
            out[t] = self.towers[t]((g.unsqueeze(2) * e).sum(1))
        return out

    def gate_weights(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-task gate distributions over the experts (for the notebook's figure)."""
        return {t: torch.softmax(self.gates[t](h), dim=1) for t in self.tasks}


class MMoERetrieval(nn.Module):
    """User tower (local or remote) -> MMoE heads; shared item tower; serving head ``serve_task``."""

    def __init__(self, user_tower: nn.Module, item_tower: ItemTower, user_dim: int, dim: int = 32,
                 n_experts: int = 4, task_weights: dict[str, float] | None = None, serve_task: str = "duration"):
        super().__init__()
        self.user_tower, self.item_tower = user_tower, item_tower
        self.mmoe = MMoE(user_dim, dim=dim, n_experts=n_experts)
        self.task_weights = task_weights or {t: 1.0 for t in TASKS}
        self.serve_task = serve_task

    def user_vecs(self, user_input) -> torch.Tensor:
        """Serving vectors ``[u_serve, 1]``."""
        return extend_user(self.mmoe(self.user_tower(user_input))[self.serve_task])

    def loss(self, user_input, rows: torch.Tensor, songs: torch.Tensor, full_play: torch.Tensor,
             collect: torch.Tensor, play_ms: torch.Tensor, sampler: NegativeSampler, n_neg: int = 256,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Weighted sum of the three task losses on one batch of plays (rows index the batch's users)."""
        heads = self.mmoe(self.user_tower(user_input))
        tasks: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        masks = {"full_play": full_play, "collect": collect}
        for task, mask in masks.items():
            if int(mask.sum()) > 1:
                tasks.append((task, heads[task][rows[mask]], songs[mask]))
        w = play_ms.to(torch.float32)
        if float(w.sum()) > 0:
            pick = torch.multinomial(w, rows.shape[0], replacement=True, generator=generator)
            tasks.append(("duration", heads["duration"][rows[pick]], songs[pick]))
        total = torch.zeros(())
        if tasks:  # one item-tower pass for every task (the same losses as one retrieval_loss per task)
            losses = shared_retrieval_losses([(u, p) for _, u, p in tasks], self.item_tower, sampler, n_neg)
            for (task, _, _), loss in zip(tasks, losses, strict=True):
                total = total + self.task_weights[task] * loss
        return total
