"""Audio item-to-item recall through faiss, and audio profiles of users.

Songs are compared by the cosine of their standardised 84-dim embeddings (inner product of
L2-normalised vectors in a faiss ``IndexFlatIP``: exact search; catalogues of millions would use the
HNSW index of :class:`musicrecall.evaluation.FaissIndex`). A user's audio profile is the mean of the
normalised embeddings of their recent full plays, the talk's "single-point" recall generalised to a
short history.
"""

from __future__ import annotations

import numpy as np

from musicrecall.audio.features import check_finite


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


class AudioIndex:
    """Cosine nearest neighbours over a subset of songs (``song_ids``) with embeddings ``emb``."""

    def __init__(self, song_ids: np.ndarray, emb: np.ndarray) -> None:
        import faiss

        check_finite(emb, "AudioIndex")
        self.song_ids = np.asarray(song_ids, dtype=np.int64)
        self.vecs = l2_normalize(emb)
        self.index = faiss.IndexFlatIP(self.vecs.shape[1])
        self.index.add(self.vecs)
        self.row_of = {int(s): i for i, s in enumerate(self.song_ids)}
        self._order = np.argsort(self.song_ids, kind="stable")

    def rows_of(self, song_ids: np.ndarray) -> np.ndarray:
        """Row of each song in the index, ``-1`` for songs without audio: ``row_of.get(s, -1)`` vectorised
        (a Python loop over a whole log's plays cost seconds in notebook 06)."""
        q = np.asarray(song_ids, dtype=np.int64).ravel()
        if len(self.song_ids) == 0:
            return np.full(len(q), -1, dtype=np.int64)
        sorted_ids = self.song_ids[self._order]
        # side="right" - 1: the last of equal ids in the stable order, as the dict (a later row overwrites)
        pos = np.maximum(np.searchsorted(sorted_ids, q, side="right") - 1, 0)
        return np.where(sorted_ids[pos] == q, self._order[pos], -1).astype(np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(song ids (n, k), cosines (n, k))`` of the nearest songs to query vectors (-1 padded)."""
        k = min(k, len(self.song_ids))
        check_finite(queries, "AudioIndex.search")
        sims, rows = self.index.search(l2_normalize(queries), k)
        return np.where(rows >= 0, self.song_ids[np.maximum(rows, 0)], -1), sims

    def neighbours(self, song_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest other songs of indexed songs (the song itself removed)."""
        rows = np.array([self.row_of[int(s)] for s in song_ids])
        ids, sims = self.search(self.vecs[rows], k + 1)
        keep = ids != np.asarray(song_ids)[:, None]
        out_ids = np.array([r[m][:k] for r, m in zip(ids, keep, strict=True)])
        out_sims = np.array([r[m][:k] for r, m in zip(sims, keep, strict=True)])
        return out_ids, out_sims

    def profiles(self, user_pos: np.ndarray, song_ids: np.ndarray, n_users: int,
                 weights: np.ndarray | None = None) -> np.ndarray:
        """Unit (weighted) mean vector per user of the indexed songs in their history, given as
        parallel arrays (user position in ``0..n_users-1``, song id); unindexed songs are ignored and a
        user with none gets a zero vector. One sparse matrix product."""
        import scipy.sparse as sp

        rows = self.rows_of(song_ids)
        ok = rows >= 0
        w = np.ones(ok.sum(), dtype=np.float32) if weights is None else np.asarray(weights, np.float32)[ok]
        m = sp.csr_matrix((w, (np.asarray(user_pos)[ok], rows[ok])), shape=(n_users, len(self.song_ids)))
        return l2_normalize(np.asarray(m @ self.vecs))
