"""PureSVD recall (Cremonesi, Koren & Turrin, "Performance of recommender algorithms on top-N
recommendation tasks", RecSys 2010).

The user × song matrix of full plays (log-scaled counts) is factorised by a truncated SVD,
``R ≈ U Σ Vᵀ``. A user's scores are ``r_u V Vᵀ``, so the user vector is ``r_u V`` and song vectors are
the rows of ``V``: an inner-product model that the shared exact and faiss indexes serve directly.

A matrix has at most ``min(n_users, n_songs)`` singular vectors: a one-person export (one row) has a
single one. The number of factors is then clamped to what exists, with a warning that says so
(:attr:`PureSVD.factors_used`); ARPACK (``svds``) needs ``k < min(shape)``, so such small matrices
take a dense SVD instead.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from musicrecall.evaluation import topk_scores
from musicrecall.evaluation.baselines import ListMemo
from musicrecall.evaluation.metrics import ExcludeLike


class PureSVD:
    """Truncated SVD of the log-scaled full-play count matrix."""

    def __init__(self, factors: int = 64, seed: int = 0):
        if factors < 1:
            raise ValueError(f"PureSVD: factors must be >= 1, got {factors}")
        self.factors = factors
        self.seed = seed
        self.factors_used = 0

    def fit(self, events: pl.DataFrame, n_items: int, n_users: int | None = None) -> PureSVD:
        """Fit on full plays of ``events`` (columns user_id, song_id, full_play)."""
        counts = (events.filter(pl.col("full_play")).group_by("user_id", "song_id").len()
                  .with_columns(w=(1.0 + pl.col("len").cast(pl.Float64)).log()))
        if counts.height == 0:
            raise ValueError("PureSVD: the fit window has no full play to factorise")
        max_song = int(counts["song_id"].max())  # type: ignore[arg-type]
        if max_song >= n_items:
            raise ValueError(f"PureSVD: song id {max_song} >= n_items={n_items}; song ids must run 0..n_items-1 "
                             "(re-import the data: the importers map source ids to contiguous ids)")
        n_users = n_users or int(events["user_id"].max()) + 1
        self.matrix = sp.csr_matrix((counts["w"].to_numpy(), (counts["user_id"].to_numpy(), counts["song_id"].to_numpy())),
                                    shape=(n_users, n_items), dtype=np.float32)
        side = min(self.matrix.shape)
        k = min(self.factors, side)
        if k < self.factors:
            warnings.warn(f"PureSVD: {self.factors} factors asked, but the {self.matrix.shape[0]} x "
                          f"{self.matrix.shape[1]} play matrix has only {side} singular vector(s); using {k}",
                          stacklevel=2)
        if k >= side:  # ARPACK needs k < min(shape); here side <= factors, so a dense SVD is small and exact
            _, _, vt = np.linalg.svd(self.matrix.toarray().astype(np.float64), full_matrices=False)
            vt = vt[:k]
        else:
            v0 = np.random.default_rng(self.seed).standard_normal(side).astype(np.float32)
            _, _, vt = svds(self.matrix, k=k, v0=v0)  # v0 fixes ARPACK's start vector: reproducible
        self.factors_used = k
        self.item_vecs = np.array(vt.T, dtype=np.float32, order="C", copy=True)  # svds may return negative strides
        self._memo = ListMemo()
        return self

    def recommend(self, users: np.ndarray, k: int, exclude: ExcludeLike = None) -> np.ndarray:
        """Exact top-``k`` songs by ``r_u V Vᵀ`` over the whole catalogue (``exclude`` rows masked; the lists of
        users ranked without exclusion are kept, so the ``repeat`` targets reuse the ``all`` lists)."""
        users = np.asarray(users, dtype=np.int64)
        if exclude is None and (hit := self._memo.get(users, k)) is not None:
            return hit
        out = topk_scores(self.user_vecs(users), self.item_vecs, k, exclude=exclude)[0]
        if exclude is None:
            self._memo.put(users, k, out)
        return out

    def user_vecs(self, users: np.ndarray) -> np.ndarray:
        """``r_u V`` for each user (users unseen in training get a zero vector)."""
        users = np.asarray(users, dtype=np.int64)
        inside = users < self.matrix.shape[0]
        out = np.zeros((users.shape[0], self.item_vecs.shape[1]), dtype=np.float32)
        out[inside] = self.matrix[users[inside]] @ self.item_vecs
        return out
