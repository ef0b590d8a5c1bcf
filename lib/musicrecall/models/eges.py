"""EGES: Enhanced Graph Embedding with Side information (Wang, Huang, Zhao, Chen, Zhang & Lee,
*Billion-scale commodity embedding for e-commerce recommendation in Alibaba*, KDD 2018).

Each song ``v`` has its own embedding ``W_v^0`` and one embedding per side-information field ``j``
(artist, album, genre, language, version: one tail per song and relation of the KG), ``W^j_{s_j(v)}``.
They are combined with learned per-song attention weights ``a_v`` (``n_items × (1 + n_fields)``):

    H_v = sum_j exp(a_v^j) W^j / sum_j exp(a_v^j)

and ``H_v`` is trained with skip-gram negative sampling against context vectors ``C_u``,
``-log σ(H_v·C_u) - (negative / K) Σ_{n ∈ K shared negatives} log σ(-H_v·C_n)``, on the *same*
skip-gram pairs as Song2Vec (session sentences, reduced-window weighting and frequent-song subsampling
as in word2vec; the random walks of the paper are replaced by the sessions, as in Song2Vec). Negatives
are drawn from ``count ** ns_exponent`` over songs with plays, shared by a batch (K of them) for speed.
**Cold songs** (no play in the training window) get, as in the paper, the mean of their side-info
embeddings. Training uses :func:`musicrecall.training.train`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from musicrecall.cache import content_key
from musicrecall.corpus import Corpus, song_triples
from musicrecall.training import History, TrainConfig, minibatches, train


@dataclass(frozen=True)
class EGESConfig:
    """Model and pair-sampling settings (window / ns_exponent / sample mirror Song2Vec's)."""

    dim: int = 32
    window: int = 5
    ns_exponent: float = 0.75
    sample: float = 1e-4
    negative: int = 5
    shared_negatives: int = 256
    batch_size: int = 4096
    max_pairs_per_epoch: int = 1_000_000
    epochs: int = 3
    lr: float = 0.01
    seed: int = 0


def side_index(triples: pl.DataFrame, n_items: int) -> tuple[np.ndarray, list[str], list[int]]:
    """``[n_items, n_fields]`` int64 codes of each song's side info (one tail per relation; the last
    code of each field, ``cardinality``, means unknown), the field names and their cardinalities."""
    st = song_triples(triples).filter(pl.col("song_id") < n_items).unique(["song_id", "relation"], keep="first")
    fields = sorted(st["relation"].unique().to_list())
    idx = np.zeros((n_items, len(fields)), dtype=np.int64)
    cards = []
    for j, rel in enumerate(fields):
        part = st.filter(pl.col("relation") == rel)
        _, code = np.unique(part["tail"].to_numpy().astype(str), return_inverse=True)
        card = int(code.max()) + 1 if len(code) else 0
        idx[:, j] = card
        idx[part["song_id"].to_numpy(), j] = code
        cards.append(card)
    return idx, fields, cards


def skipgram_pairs(corpus: Corpus, n_items: int, window: int, sample: float, seed: int = 0) -> np.ndarray:
    """``int64 [n_pairs, 2]`` (center, context) pairs of the session sentences (walks are ignored).

    word2vec's frequent-token subsampling is drawn once (seeded); a pair at distance ``d`` is kept with
    probability ``(window - d + 1) / window``, the marginal of word2vec's reduced window.
    """
    rng = np.random.default_rng([seed, 4])
    sents = [s for s in corpus.sentences if s and s[0].startswith("song:")]
    lengths = np.array([len(s) for s in sents], dtype=np.int64)
    tokens = np.array([int(t[5:]) for s in sents for t in s], dtype=np.int64)
    sent = np.repeat(np.arange(len(sents)), lengths)
    counts = np.bincount(tokens, minlength=n_items).astype(np.float64)
    if sample > 0:
        thr = sample * len(tokens)
        with np.errstate(divide="ignore", invalid="ignore"):
            keep_p = np.minimum((np.sqrt(counts / thr) + 1) * thr / counts, 1.0)
        keep = rng.random(len(tokens)) < keep_p[tokens]
        tokens, sent = tokens[keep], sent[keep]
    pairs = []
    for d in range(1, window + 1):
        same = sent[d:] == sent[:-d]
        same &= rng.random(same.shape[0]) < (window - d + 1) / window
        a, b = tokens[:-d][same], tokens[d:][same]
        pairs.append(np.stack([np.r_[a, b], np.r_[b, a]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


class EGES(nn.Module):
    """Song + side-info embeddings with per-song attention (module docstring)."""

    def __init__(self, n_items: int, side: np.ndarray, cards: list[int], dim: int):
        super().__init__()
        self.register_buffer("side", torch.as_tensor(side, dtype=torch.long))
        self.item = nn.Embedding(n_items, dim)
        self.fields = nn.ModuleList([nn.Embedding(c + 1, dim) for c in cards])
        self.attn = nn.Embedding(n_items, 1 + len(cards))
        self.context = nn.Embedding(n_items, dim)
        for emb in (self.item, *self.fields):
            nn.init.uniform_(emb.weight, -0.5 / dim, 0.5 / dim)  # word2vec's initialisation
        nn.init.zeros_(self.attn.weight)
        nn.init.zeros_(self.context.weight)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        parts = [self.item(items)] + [f(self.side[items, j]) for j, f in enumerate(self.fields)]
        stack = torch.stack(parts, dim=1)  # [B, 1 + J, d]
        weights = torch.softmax(self.attn(items), dim=1).unsqueeze(-1)
        return (weights * stack).sum(dim=1)

    @torch.no_grad()
    def song_vectors(self, warm: np.ndarray) -> np.ndarray:
        """``H_v`` for songs with plays, the mean side-info embedding for cold songs."""
        items = torch.arange(self.item.num_embeddings)
        out = torch.cat([self.forward(b) for b in items.split(8192)])
        if self.fields:
            side = torch.stack([f(self.side[:, j]) for j, f in enumerate(self.fields)], dim=1).mean(dim=1)
            cold = torch.as_tensor(~warm)
            out[cold] = side[cold]
        return out.numpy().astype(np.float32)


def fit_eges(corpus: Corpus, triples: pl.DataFrame, n_items: int, cfg: EGESConfig, *,
             progress: bool = False, cache: bool = True) -> tuple[np.ndarray, np.ndarray, History, list[str]]:
    """Train EGES (checkpoint under ``data/checkpoints/`` unless ``cache=False``); returns (song vectors
    [n_items, d], has_vector mask, history, side fields)."""
    pairs = skipgram_pairs(corpus, n_items, cfg.window, cfg.sample, cfg.seed)
    side, fields, cards = side_index(triples, n_items)
    warm = corpus.song_counts > 0
    counts = np.bincount(pairs[:, 1], minlength=n_items).astype(np.float64)
    probs = np.where(counts > 0, np.maximum(counts, 1.0) ** cfg.ns_exponent, 0.0)
    probs = torch.as_tensor(probs / probs.sum(), dtype=torch.float32)
    torch.manual_seed(cfg.seed)
    model = EGES(n_items, side, cards, cfg.dim)
    gen = torch.Generator().manual_seed(cfg.seed)
    tpairs = torch.as_tensor(pairs)
    per_epoch = min(len(pairs), cfg.max_pairs_per_epoch)

    def batches(epoch: int):
        sub = np.random.default_rng([cfg.seed, 5, epoch]).permutation(len(pairs))[:per_epoch]
        for idx in minibatches(per_epoch, cfg.batch_size, cfg.seed, epoch):
            yield tpairs[torch.as_tensor(sub[idx])]

    def loss_fn(m: EGES, batch: torch.Tensor) -> torch.Tensor:
        h = m(batch[:, 0])
        pos = (h * m.context(batch[:, 1])).sum(-1)
        neg = torch.multinomial(probs, cfg.shared_negatives, replacement=True, generator=gen)
        neg_logit = h @ m.context(neg).T
        not_pos = (neg.unsqueeze(0) != batch[:, 1:2]).float()  # a sampled positive is not a negative
        neg_term = (F.logsigmoid(-neg_logit) * not_pos).sum(-1) * (cfg.negative / cfg.shared_negatives)
        return -(F.logsigmoid(pos) + neg_term).mean()

    key = content_key("eges", corpus.digest(), asdict(cfg), fields, cards)
    tcfg = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed, progress=progress, grad_clip=None)
    history = train(model, batches, loss_fn, tcfg, name="eges", cache_key=key if cache else None,
                    n_batches=-(-per_epoch // cfg.batch_size))
    has = warm | (side < np.array(cards)).any(axis=1) if fields else warm
    return model.song_vectors(warm), has, history, fields
