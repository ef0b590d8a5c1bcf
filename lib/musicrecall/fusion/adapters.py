"""Thin adapters to the models of notebooks 02-07 (same functions and parameters => cache hits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from musicrecall import kg
from musicrecall import sequences as sq
from musicrecall.audio import EmbeddingScaler
from musicrecall.audio import simulated as S
from musicrecall.evaluation import Split
from musicrecall.federated import pipeline as fp
from musicrecall.models.recipes import MIND, SASREC, MINDRecipe, SASRecRecipe, for_profile
from musicrecall.multi_interest import fit_mind
from musicrecall.sequence_data import side_codes


def kg_vectors(setup, triples: pl.DataFrame, *, dim: int = 32, gamma: float = 0.2, s2v_changes: dict | None = None,
               workers: int = 1, seed: int = 0, choice: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """KG Song2Vec (notebook 02's ``kg.fit_model``) on ``setup.fit``: ``(vectors, has_vector)``.

    ``choice``: notebook 02's recorded ``(Song2VecConfig, KGConfig)`` for this dataset
    (:func:`musicrecall.kg.load_choice`); the embedding is then a cache hit of 02's gensim run (keyed by the
    corpus content and the config). Without it, ``dim``, ``gamma`` and ``s2v_changes`` describe the model.
    """
    s2v, kgc = choice if choice is not None else (kg.Song2VecConfig(dim=dim, seed=seed).with_(**(s2v_changes or {})),
                                                  kg.KGConfig(gamma=gamma))
    corpus = kg.build_corpus(setup.fit, triples, setup.n_items, kgc, seed=seed)
    emb = kg.fit_song2vec(corpus, setup.n_items, s2v, workers=workers, triples=triples, kg=kgc)
    return emb.vectors, emb.has_vector.astype(bool)


@dataclass
class SequenceChannel:
    """A trained SASRec (notebook 03) and the histories it is served on at each stage."""

    model: object
    inputs: object

    def user_vecs(self, stage: str) -> Callable[[np.ndarray], np.ndarray]:
        hist = self.inputs.hist_valid if stage == "valid" else self.inputs.hist_test
        return lambda users: sq.user_vectors(self.model, hist, users)

    def item_vecs(self) -> np.ndarray:
        return sq.item_vectors(self.model)


def sasrec_adapter(prep, *, recipe: SASRecRecipe = SASREC, profile: str = "small", seed: int = 0,
                   valid_days: int = 7, test_days: int = 7, split: str | Split = "auto") -> SequenceChannel:
    """SASRec trained exactly as notebook 03 trains its seed ``seed`` (the same recipe as run at
    ``profile``, :func:`musicrecall.sequences.fit_recipe`, the same checkpoint key): on the train window
    with early stopping on the validation window; served on histories up to each stage's cut. ``split``: the
    :class:`musicrecall.evaluation.Split` the caller's setups already hold (the log is not split again)."""
    recipe = for_profile(recipe, profile)
    # notebook 03's arms share these windows (the same recipes, hence the same ones); so does this channel
    inputs = sq.c2_inputs(prep, {"sasrec": recipe}, valid_days=valid_days, test_days=test_days, seed=seed, split=split)
    model, _ = sq.fit_recipe("sasrec", inputs, recipe, seed=seed, data_key=prep.dataset.key)
    model.eval()
    return SequenceChannel(model, inputs)


def mind_adapter(valid, items: pl.DataFrame, data_key: str, *, recipe: MINDRecipe = MIND, axis: str = "interest",
                 seed: int = 0):
    """MIND as notebook 04's "both" variant (side info, re-drawn routing logits, routing softmax over
    ``axis``), trained on the train window with early stopping on the validation window. Notebook 04's
    parameter defaults and this adapter both read ``recipe`` (:data:`musicrecall.models.recipes.MIND`), so
    :func:`musicrecall.multi_interest.fit_mind` gets the same arguments and checkpoint key and the
    notebook's trained model is reused. ``served_on(recall, setup.fit)`` serves it at a stage."""
    recall, _ = fit_mind(valid.fit, valid.targets["all"], valid.n_items,
                         recipe.config(routing_axis=axis, routing_init="redraw"), side_codes(items),
                         recipe.train_config(seed), **recipe.fit_args(), name=f"mind_both_{axis}",
                         data_key=data_key, seed=seed)
    return recall


def audio_adapter(prep, setup, n_audio: int, clip_s: float = 8.0, seed: int = 0, cold_share: float = 0.0):
    """Audio embeddings of ``n_audio`` songs (per-song cache of the rendered-and-embedded audio):
    ``(song_ids, standardised emb)``.

    The songs are the most full-played before ``setup``'s cut (:func:`musicrecall.audio.simulated.select_songs`).
    For ranking, pass the *earliest* stage the models see (validation) and ``cold_share = 0``: which songs
    have audio is then decided by plays before every label the rankers train or are tested on. Notebook
    06's set (test cut, plus cold songs drawn among songs played in the test week) is right for its own
    cold-start evaluation but would make ``audio_has`` carry the validation labels and future plays.
    """
    songs, _ = S.select_songs(prep.clean.events, setup.split.cut(setup.stage), n_audio, cold_share=cold_share, seed=seed)
    emb = EmbeddingScaler().fit_transform(S.world_embeddings(prep.dataset.world, songs, clip_s))
    return songs, emb.astype(np.float32)


@dataclass
class DSSMVectors:
    """User vectors of the federated DSSM's aligned users (fetched once from party B) and item vectors."""

    users: np.ndarray  # sorted user ids with a vector
    vecs: np.ndarray
    items: np.ndarray

    def known(self, users: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.users, users), 0, len(self.users) - 1)
        return self.users[pos] == users

    def user_vecs(self, users: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.users, users), 0, len(self.users) - 1)
        return np.where(self.known(users)[:, None], self.vecs[pos], 0.0).astype(np.float32)


def federated_dssm_adapter(dataset: str, profile: str, seed: int = 0, *, max_plays: int = 5, coverage: float = 0.9,
                           b_extra_share: float = 0.1, epochs: int = 30, batch_size: int = 512, n_neg: int = 256,
                           max_per_user: int = 10, validations_per_pass: int = 2, mode: str = "process",
                           prep=None, split: Split | None = None) -> DSSMVectors:
    """The federated DSSM of notebook 07 (same settings and run key, so its checkpoint is reused): party B
    is started, the model trained or restored, every aligned user's vector fetched, and B shut down.
    ``prep`` / ``split``: the caller's prepared world and split, reused (:func:`fp.load_cold_start`)."""
    epochs = min(epochs, 2) if profile == "tiny" else epochs  # as notebook 07
    rc = fp.RunConfig(epochs=epochs, batch_size=batch_size, n_neg=n_neg, max_per_user=max_per_user, seed=seed,
                      validations_per_pass=validations_per_pass)
    data = fp.load_cold_start(dataset, profile, seed, max_plays, prep=prep, split=split)
    fed = fp.open_federation(data, coverage, round(b_extra_share * data.ds.users.height), seed, mode=mode)
    try:
        model = fp.fed_dssm(fed.endpoint, data, "fed_dssm", rc)  # as notebook 07 builds its seed
        with fp.threads(1):
            fp.train_federated_model(model, data, fed, lambda idx: idx, rc, "fed_dssm")  # restored: 07 trained it
            model.eval()
            ids = np.array(sorted(fed.aligned), dtype=np.int64)
            with torch.no_grad():
                vecs = model.user_vecs(np.array([fed.aligned[int(u)] for u in ids], dtype=np.int64)).numpy()
                items = model.item_tower.all_items().numpy()
    finally:
        fed.party_b.close()
    return DSSMVectors(ids, vecs.astype(np.float32), items.astype(np.float32))
