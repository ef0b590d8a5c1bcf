"""PureSVD on the shapes real exports have: one listener, two listeners, ids beyond the catalogue."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from musicrecall.models.puresvd import PureSVD


def _plays(users: list[int], songs: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"user_id": users, "song_id": songs, "full_play": [True] * len(users)})


def test_one_person_export_clamps_the_factors_and_says_so():
    # One user: the play matrix is 1 x n, it has one singular vector (ARPACK refused k = 0 before).
    ev = _plays([0] * 6, [0, 1, 1, 2, 3, 3])
    with pytest.warns(UserWarning, match="only 1 singular vector"):
        svd = PureSVD(factors=64).fit(ev, n_items=5)
    assert svd.factors_used == 1
    assert svd.item_vecs.shape == (5, 1)
    scores = svd.user_vecs(np.array([0])) @ svd.item_vecs.T
    # r_u V V^T ranks the user's played songs above the never-played song 4
    assert scores[0, [1, 3]].min() > scores[0, 4]


def test_many_users_keep_the_asked_factors_without_warning():
    rng = np.random.default_rng(0)
    ev = _plays(rng.integers(0, 40, 600).tolist(), rng.integers(0, 30, 600).tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svd = PureSVD(factors=8).fit(ev, n_items=30)
    assert svd.factors_used == 8 and svd.item_vecs.shape == (30, 8)


def test_song_ids_beyond_the_catalogue_are_a_clear_error():
    with pytest.raises(ValueError, match="song ids must run 0..n_items-1"):
        PureSVD(factors=4).fit(_plays([0, 1], [0, 1_000_000]), n_items=10)

