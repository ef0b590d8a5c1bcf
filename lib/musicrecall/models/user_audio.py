"""User-audio metric learning: the talk's "multi-modal user-audio metric learning" as a recall channel.

A user vector and an item tower over the song's 84-dim audio embedding are trained with a triplet
margin loss on cosine similarity (Schroff et al. 2015, FaceNet; Weinberger & Saul 2009): a song the
user fully played must be closer to the user than a song the user skipped (a hard negative from the
log) or, when the user has no skip, a random audio-indexed song. Recall = nearest songs to the user
vector among songs with audio. Trained with :func:`musicrecall.training.train`.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from musicrecall.cache import content_key
from musicrecall.training import History, TrainConfig, minibatches, seed_everything, train


class UserAudioModel(nn.Module):
    """User embeddings and an audio tower (84 -> hidden -> dim), compared by cosine."""

    def __init__(self, n_users: int, audio_dim: int = 84, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        nn.init.normal_(self.users.weight, std=0.1)
        self.tower = nn.Sequential(nn.Linear(audio_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def user_vecs(self, users: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.users(users), dim=-1)

    def item_vecs(self, audio: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.tower(audio), dim=-1)


def triplets(fit: pl.DataFrame, song_ids: np.ndarray, users: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(n, 3)`` rows (user position, positive row, negative row) from ``fit`` plays of indexed songs."""
    row = np.full(int(max(song_ids.max(), fit["song_id"].max())) + 1, -1)
    row[song_ids] = np.arange(len(song_ids))
    ev = fit.filter(pl.col("user_id").is_in(users.tolist())).with_columns(r=pl.Series(row[fit.filter(
        pl.col("user_id").is_in(users.tolist()))["song_id"].to_numpy()])).filter(pl.col("r") >= 0)
    u = np.searchsorted(users, ev["user_id"].to_numpy())
    full, r = ev["full_play"].to_numpy(), ev["r"].to_numpy()
    rng = np.random.default_rng(seed)
    pu, pr = u[full], r[full]
    su, sr = u[~full], r[~full]
    neg = rng.integers(0, len(song_ids), len(pu))
    if len(su):  # a skip of the same user where there is one (sorted by user, pick a random one)
        order = np.argsort(su, kind="stable")
        su, sr = su[order], sr[order]
        lo, hi = np.searchsorted(su, pu, "left"), np.searchsorted(su, pu, "right")
        has = (hi > lo) & (rng.random(len(pu)) < 0.5)
        pick = lo + (rng.random(len(pu)) * np.maximum(hi - lo, 1)).astype(np.int64)
        neg = np.where(has, sr[np.minimum(pick, len(sr) - 1)], neg)
    return np.column_stack([pu, pr, neg]).astype(np.int64)


def fit_user_audio(fit: pl.DataFrame, song_ids: np.ndarray, audio: np.ndarray, users: np.ndarray,
                   cfg: TrainConfig | None = None, dim: int = 32, margin: float = 0.3,
                   batch_size: int = 1024, seed: int = 0) -> tuple[UserAudioModel, History]:
    """Train the model on triplets of the fit window (``users`` sorted; ``audio`` standardised)."""
    cfg = cfg or TrainConfig(epochs=8, lr=3e-3, seed=seed, progress=False)
    trip = triplets(fit, song_ids, users, seed)
    seed_everything(cfg.seed)  # torch's default seed is random: the initial weights come from ours
    model = UserAudioModel(len(users), audio.shape[1], dim)
    a = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    t = torch.from_numpy(trip)

    def batches(epoch: int):
        for idx in minibatches(len(t), batch_size, seed, epoch):
            yield t[torch.from_numpy(idx)]

    def loss_fn(m: UserAudioModel, b: torch.Tensor) -> torch.Tensor:
        u = m.user_vecs(b[:, 0])
        pos = (u * m.item_vecs(a[b[:, 1]])).sum(-1)
        neg = (u * m.item_vecs(a[b[:, 2]])).sum(-1)
        return F.relu(margin - pos + neg).mean()

    key = content_key("user_audio", trip.sum(0).tolist(), len(trip), float(audio.sum()), dim, margin, batch_size,
                      cfg.epochs, cfg.lr, seed)
    history = train(model, batches, loss_fn, cfg, name="user_audio", cache_key=key,
                    n_batches=int(np.ceil(len(t) / batch_size)))
    return model, history
