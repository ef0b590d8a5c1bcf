"""Song2Vec and KG Song2Vec: gensim Word2Vec (skip-gram, negative sampling) over a :class:`Corpus`.

Word2Vec: Mikolov et al., *Distributed representations of words and phrases and their
compositionality*, NeurIPS 2013. Song2Vec and its hyper-parameters: Caselles-Dupré, Lesaint &
Royo-Letelier, *Word2vec applied to recommendation: hyperparameters matter*, RecSys 2018 — the
negative-sampling exponent ``ns_exponent``, the ``window``, the subsampling threshold ``sample`` and
the number of ``epochs`` change recommendation quality by up to an order of magnitude, so they are
tuned on the validation window.

A song's vector is its *input* vector (``wv``). Entity tokens are trained in the same vocabulary but
never enter :attr:`SongEmbedding.vectors` (only ``song:<id>`` tokens are read back), so they can never
be recommended. **Cold songs** (no full play in the training window) are embedded by KG Song2Vec
through their entities: ``cold="entity_mean"`` gives them the ``w_r``-weighted mean of the input
vectors of their entities (the default; it needs no song occurrence at all), ``cold="walks"`` keeps
the vector trained from the song's own relation walks. Plain Song2Vec cannot embed them.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
from gensim.models import Word2Vec

from musicrecall.cache import content_key
from musicrecall.config import DATA_DIR
from musicrecall.corpus import SONG_PREFIX, Corpus, KGConfig, check_sessions, song_triples

CACHE_VERSION = 1


@dataclass(frozen=True)
class Song2VecConfig:
    """Skip-gram with negative sampling; the four knobs Caselles-Dupré et al. tune come first."""

    ns_exponent: float = 0.75
    window: int = 5
    sample: float = 1e-4
    epochs: int = 5
    dim: int = 32
    negative: int = 5
    alpha: float = 0.025
    min_count: int = 1
    seed: int = 0

    def with_(self, **changes) -> Song2VecConfig:
        """A copy with some fields changed (for grids)."""
        return replace(self, **changes)


@dataclass
class SongEmbedding:
    """Song vectors aligned with song ids, plus the entity vectors and training statistics."""

    vectors: np.ndarray  # float32 [n_items, dim]; zero rows where ``source == 0``
    source: np.ndarray  # int8 [n_items]: 0 no vector, 1 trained, 2 mean of entity vectors
    entity_tokens: list[str]
    entity_vectors: np.ndarray  # float32 [n_entities, dim]
    train_seconds: float
    raw_words: int  # tokens processed over all epochs
    effective_words: int  # after frequent-token subsampling
    from_cache: bool = False

    @property
    def has_vector(self) -> np.ndarray:
        return self.source > 0

    @property
    def words_per_second(self) -> float:
        return self.raw_words / max(self.train_seconds, 1e-9)


def _stable_hash(s: str) -> int:
    # gensim seeds each initial vector with hashfxn(word + seed); Python's str hash is salted per process
    return zlib.crc32(s.encode())


def train_word2vec(corpus: Corpus, cfg: Song2VecConfig, workers: int = 1) -> tuple[Word2Vec, float, tuple[int, int]]:
    """Build the vocabulary and train; returns the model, training seconds and (effective, raw) words.

    A corpus without any session sentence is a clear error naming ``session_gap_min`` (:func:`check_sessions`).
    """
    check_sessions(corpus)
    model = Word2Vec(vector_size=cfg.dim, window=cfg.window, sg=1, hs=0, negative=cfg.negative,
                     ns_exponent=cfg.ns_exponent, sample=cfg.sample, alpha=cfg.alpha, min_count=cfg.min_count,
                     seed=cfg.seed, workers=workers, epochs=cfg.epochs, hashfxn=_stable_hash)
    model.build_vocab(corpus.sentences)
    start = time.perf_counter()
    eff, raw = model.train(corpus.sentences, total_examples=model.corpus_count, epochs=cfg.epochs)
    return model, time.perf_counter() - start, (int(eff), int(raw))


def _song_matrix(model: Word2Vec, n_items: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    keys = np.array(model.wv.index_to_key, dtype=object)
    is_song = np.array([k.startswith(SONG_PREFIX) for k in keys], dtype=bool)
    ids = np.array([int(k[len(SONG_PREFIX):]) for k in keys[is_song]], dtype=np.int64)
    vecs = np.zeros((n_items, model.vector_size), dtype=np.float32)
    source = np.zeros(n_items, dtype=np.int8)
    ok = ids < n_items
    vecs[ids[ok]] = model.wv.vectors[is_song][ok]
    source[ids[ok]] = 1
    return vecs, source, keys[~is_song].tolist(), model.wv.vectors[~is_song].astype(np.float32)


def entity_mean_vectors(songs: np.ndarray, triples: pl.DataFrame, entity_tokens: list[str],
                        entity_vectors: np.ndarray, kg: KGConfig) -> tuple[np.ndarray, np.ndarray]:
    """``w_r``-weighted mean of the *relation-centred* entity vectors of each song in ``songs``:
    ``sum_r w_r (e_r(s) - mu_r) / sum_r w_r`` with ``mu_r`` the mean entity vector of relation ``r``
    over its song links. Centring matters: raw means of SGNS vectors sit near the common direction of
    all vectors and become hubs (every song's nearest neighbour). Returns (vectors, found)."""
    dim = entity_vectors.shape[1] if entity_vectors.ndim == 2 else 0
    out = np.zeros((len(songs), dim), dtype=np.float32)
    if len(songs) == 0 or not entity_tokens:
        return out, np.zeros(len(songs), dtype=bool)
    pos = pl.DataFrame({"song_id": np.asarray(songs, dtype=np.int64), "row": np.arange(len(songs))})
    ent = pl.DataFrame({"tail": entity_tokens, "e": np.arange(len(entity_tokens))})
    links = song_triples(triples).join(pos, on="song_id").join(ent, on="tail")
    if links.height == 0:
        return out, np.zeros(len(songs), dtype=bool)
    w = np.array([kg.weight(r) for r in links["relation"].to_list()], dtype=np.float32)
    rows, e = links["row"].to_numpy(), links["e"].to_numpy()
    all_links = song_triples(triples).join(ent, on="tail")
    rel_codes, rel_of_link = np.unique(all_links["relation"].to_numpy().astype(str), return_inverse=True)
    mu = np.stack([entity_vectors[all_links["e"].to_numpy()[rel_of_link == i]].mean(axis=0) for i in range(len(rel_codes))])
    link_rel = np.searchsorted(rel_codes, links["relation"].to_numpy().astype(str))
    np.add.at(out, rows, w[:, None] * (entity_vectors[e] - mu[link_rel]))
    wsum = np.bincount(rows, weights=w, minlength=len(songs)).astype(np.float32)
    found = wsum > 0
    out[found] /= wsum[found, None]
    return out, found


def fit_song2vec(corpus: Corpus, n_items: int, cfg: Song2VecConfig, *, workers: int = 1,
                 triples: pl.DataFrame | None = None, kg: KGConfig | None = None, cold: str = "entity_mean",
                 center: bool = True, cache: bool = True) -> SongEmbedding:
    """Train (or load from ``data/kg/``) and read back song vectors; embed cold songs via entities.

    ``center`` subtracts the mean trained song vector from every song vector before cold songs are
    added (for every model alike: it only removes the direction all SGNS vectors share). The cache key covers the corpus content, the config and this module's version, never the worker
    count (more workers change the vectors only through thread scheduling).
    """
    key = content_key("song2vec", CACHE_VERSION, corpus.digest(), asdict(cfg))
    path = DATA_DIR / "kg" / f"song2vec-{key}.npz"
    if cache and path.exists():
        z = np.load(path, allow_pickle=False)
        stats = json.loads(str(z["stats"]))
        emb = SongEmbedding(z["vectors"], z["source"], z["entity_tokens"].tolist(), z["entity_vectors"],
                            stats["seconds"], stats["raw"], stats["eff"], from_cache=True)
    else:
        model, seconds, (eff, raw) = train_word2vec(corpus, cfg, workers)
        vecs, source, ent_tokens, ent_vecs = _song_matrix(model, n_items)
        emb = SongEmbedding(vecs, source, ent_tokens, ent_vecs, seconds, raw, eff)
        if cache:
            _save(path, emb)
    if center:  # "all-but-the-top" (Mu & Viswanath, ICLR 2018): remove the common direction of SGNS vectors
        mu = emb.vectors[emb.source == 1].mean(axis=0) if emb.has_vector.any() else 0.0
        emb = replace(emb, vectors=np.where(emb.has_vector[:, None], emb.vectors - mu, 0.0).astype(np.float32))
    if cold in ("entity_mean", "walks") and triples is not None and kg is not None and kg.gamma > 0:
        emb = _fill_cold(emb, corpus, triples, kg, cold)
    return emb


def _fill_cold(emb: SongEmbedding, corpus: Corpus, triples: pl.DataFrame, kg: KGConfig, cold: str) -> SongEmbedding:
    played = corpus.song_counts > 0
    target = ~played if cold == "entity_mean" else ~emb.has_vector  # "walks" keeps walk-trained vectors
    songs = np.flatnonzero(target)
    vecs, found = entity_mean_vectors(songs, triples, emb.entity_tokens, emb.entity_vectors, kg)
    out_v, out_s = emb.vectors.copy(), emb.source.copy()
    out_v[songs[found]] = vecs[found]
    out_s[songs[found]] = 2
    out_s[songs[~found]] = 0
    out_v[songs[~found]] = 0.0
    return replace(emb, vectors=out_v, source=out_s)


def _save(path: Path, emb: SongEmbedding) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # notebooks run side by side
    stats = json.dumps({"seconds": emb.train_seconds, "raw": emb.raw_words, "eff": emb.effective_words})
    np.savez(tmp, vectors=emb.vectors, source=emb.source, entity_tokens=np.array(emb.entity_tokens, dtype=str),
             entity_vectors=emb.entity_vectors, stats=np.array(stats))
    tmp.replace(path)
