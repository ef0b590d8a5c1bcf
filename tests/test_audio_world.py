"""The claim-C4 analyses on constructed data with known answers, and the metric-learning channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from musicrecall.audio import AudioIndex
from musicrecall.audio import simulated as S
from musicrecall.models.user_audio import fit_user_audio, triplets
from musicrecall.training import TrainConfig


def _corr_data(n_users=400, per=20, rho=0.3, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per)
    x = rng.normal(size=len(users))
    y = rho * x + np.sqrt(1 - rho ** 2) * rng.normal(size=len(users))
    return x, y, users


def test_pearson_ci_covers_the_truth_and_zero_when_independent():
    x, y, u = _corr_data(rho=0.3)
    r, lo, hi = S.pearson_ci(x, y, u, n_boot=300)
    assert r == np.corrcoef(x, y)[0, 1] or abs(r - np.corrcoef(x, y)[0, 1]) < 1e-9
    assert lo < 0.3 < hi and hi - lo < 0.1
    x0, y0, u0 = _corr_data(rho=0.0, seed=1)
    _, lo0, hi0 = S.pearson_ci(x0, y0, u0, n_boot=300)
    assert lo0 < 0 < hi0


def test_partial_correlation_removes_a_confounder():
    rng = np.random.default_rng(0)
    n = 6000
    z = rng.normal(size=n)  # "genre": drives both similarity and full play
    df = pl.DataFrame({"user_id": np.arange(n) // 10, "sim": z + rng.normal(size=n), "full": z + rng.normal(size=n)})
    r, lo, _ = S.pearson_ci(df["sim"].to_numpy(), df["full"].to_numpy(), df["user_id"].to_numpy(), 200)
    assert lo > 0.3
    _, plo, phi = S.partial_pearson_ci(df, z[:, None], n_boot=200)
    assert plo < 0 < phi


def _events():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [  # user 0: full plays of songs 1, 2, then a first play of 3 and a repeat of 1
        (0, 1, 0, True, "radio"), (0, 2, 1, True, "radio"), (0, 4, 2, False, "radio"), (0, 3, 3, True, "radio"),
        (0, 1, 4, True, "radio"), (1, 3, 0, False, "search"), (1, 1, 1, False, "search"),
    ]
    return pl.DataFrame({"user_id": [r[0] for r in rows], "song_id": [r[1] for r in rows],
                         "ts": [t0 + timedelta(hours=r[2]) for r in rows], "full_play": [r[3] for r in rows],
                         "entry": [r[4] for r in rows]})


def test_candidate_similarity_uses_only_earlier_full_plays_and_first_plays():
    items = pl.DataFrame({"song_id": range(5), "genre": ["pop", "pop", "rock", "pop", "rock"],
                          "language": ["en"] * 5})
    emb = np.eye(5, 4, dtype=np.float32)  # song i -> e_i (song 4 overwritten below)
    emb[4] = [0, 1, 1, 0]  # = e1 + e2: the unit mean of songs 1 and 2
    index = AudioIndex(np.arange(5), emb)
    df = S.candidate_similarity(_events(), index, items, recent=10)
    # user 0: song 2 (history {1}), song 4 (history {1, 2}), song 3 (history {1, 2}); repeat of 1 excluded
    assert df.filter(pl.col("user_id") == 0)["song_id"].to_list() == [2, 4, 3]
    assert df.filter(pl.col("user_id") == 1).height == 0  # no full play before: no profile
    row4 = df.filter(pl.col("song_id") == 4).row(0, named=True)
    assert abs(row4["sim"] - 1.0) < 1e-6  # profile (e1 + e2)/|.| equals song 4's unit vector
    assert row4["same_genre_share"] == 0.5  # one of {1 pop, 2 rock} is rock
    assert df.filter(pl.col("song_id") == 2)["same_genre_share"][0] == 0.0


def test_cold_start_lists_and_list_metrics():
    emb = np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1]], dtype=np.float32)
    index = AudioIndex(np.array([10, 11, 12, 13]), emb)
    prof = np.array([[1, 0], [0, 1]], dtype=np.float32)
    lists = S.cold_start_lists(prof, index, np.array([12, 13]), np.array([5.0, 1.0]), k=1)
    assert lists["audio_neighbours"].ravel().tolist() == [12, 13]
    assert lists["popularity"].ravel().tolist() == [12, 12]
    test = pl.DataFrame({"user_id": [0, 1, 1], "song_id": [12, 12, 13], "full_play": [True, True, False],
                         "action": ["collect", None, None]})
    genre_of = np.zeros(14, dtype=np.int64)
    genre_of[13] = 1
    ug = S.user_genre_matrix(pl.DataFrame({"user_id": [0, 1], "song_id": [10, 10], "full_play": [True, True]}),
                             np.array([0, 1]), genre_of)
    m = S.list_metrics(lists["audio_neighbours"], np.array([0, 1]), test, ug, genre_of)
    assert m["hit"].to_list() == [1.0, 0.0]
    assert m["collect_hit"].to_list() == [1.0, 0.0]
    assert m["exposed_full_rate"].to_list() == [1.0, 0.0]
    assert m["genre_novelty"].to_list() == [0.0, 1.0]


def test_metric_learning_learns_a_planted_taste(tmp_path, monkeypatch):
    """Users full-play songs on one side of a direction in audio space and skip the others (trained here:
    its checkpoint goes to a temporary folder, not the repository's data/, so a rerun trains again)."""
    from musicrecall import training

    monkeypatch.setattr(training, "DATA_DIR", tmp_path)
    rng = np.random.default_rng(0)
    n_users, n_songs = 60, 80
    audio = rng.normal(size=(n_songs, 84)).astype(np.float32)
    taste = np.sign(rng.normal(size=n_users))
    u = np.repeat(np.arange(n_users), 30)
    s = rng.integers(0, n_songs, len(u))
    full = np.sign(audio[s, 0]) == taste[u]
    fit = pl.DataFrame({"user_id": u, "song_id": s, "full_play": full})
    trip = triplets(fit, np.arange(n_songs), np.arange(n_users))
    assert (np.sign(audio[trip[:, 1], 0]) == taste[trip[:, 0]]).all()
    model, hist = fit_user_audio(fit, np.arange(n_songs), audio, np.arange(n_users),
                                 TrainConfig(epochs=15, lr=1e-2, progress=False), batch_size=256)
    import torch
    with torch.no_grad():
        scores = model.user_vecs(torch.arange(n_users)) @ model.item_vecs(torch.from_numpy(audio)).T
    liked = np.sign(audio[:, 0])[None, :] == taste[:, None]
    top = np.argsort(-scores.numpy(), axis=1)[:, :10]
    assert np.take_along_axis(liked, top, 1).mean() > 0.8
    assert not hist.from_cache and hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"]


def test_world_embeddings_threads_and_cache_give_the_same_rows(tmp_path, monkeypatch):
    """Songs are embedded in a thread pool; the rows must equal a one-thread run, in the caller's order,
    and a second call must read them back from the cache."""
    from musicrecall import config
    from musicrecall.world import generate_world

    monkeypatch.setattr(S, "DATA_DIR", tmp_path)
    world = generate_world("tiny", seed=0)
    ids = np.array([7, 3, 11, 5])
    monkeypatch.setattr(config, "_THREADS", 1)
    one = S.world_embeddings(world, ids, clip_s=4.0, cache=False)
    monkeypatch.setattr(config, "_THREADS", 2)
    two = S.world_embeddings(world, ids, clip_s=4.0, cache=True)
    np.testing.assert_array_equal(one, two)
    assert len(list(tmp_path.rglob("*.npy"))) == len(ids) and not list(tmp_path.rglob("*.tmp.npy"))
    import musicrecall.world as W

    def no_render(*_a, **_k):
        raise AssertionError("a cached song was rendered again")

    monkeypatch.setattr(W, "render_audio", no_render)  # the second call may only read the cache
    again = S.world_embeddings(world, ids[::-1], clip_s=4.0, cache=True)
    np.testing.assert_array_equal(again, two[::-1])


def test_metric_learning_does_not_depend_on_the_process_rng(tmp_path, monkeypatch):
    """torch's default seed is random per process; the model's initial weights must come from ``seed``."""
    import torch

    from musicrecall import training

    rng = np.random.default_rng(1)
    audio = rng.normal(size=(20, 84)).astype(np.float32)
    fit = pl.DataFrame({"user_id": np.repeat(np.arange(10), 8), "song_id": rng.integers(0, 20, 80),
                        "full_play": rng.random(80) < 0.5})
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)  # a different process-wide RNG state before each fit
        monkeypatch.setattr(training, "DATA_DIR", tmp_path / str(state))  # no checkpoint shared between fits
        model, hist = fit_user_audio(fit, np.arange(20), audio, np.arange(10),
                                  TrainConfig(epochs=2, lr=1e-2, progress=False, seed=3), batch_size=32, seed=3)
        weights.append([p.detach().clone() for p in model.parameters()])
        assert not hist.from_cache
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


@pytest.mark.slow
def test_world_embeddings_pool_runs_the_libraries_single_threaded(tmp_path, monkeypatch):
    """One level of parallelism: with 2 workers, BLAS and torch inside a worker have one thread (nested
    OpenBLAS pools queued the workers behind one helper thread on a loaded machine, issue 18), and the
    caller's thread budget is back afterwards."""
    import torch
    from threadpoolctl import threadpool_info

    from musicrecall import config
    from musicrecall.world import generate_world

    monkeypatch.setattr(S, "DATA_DIR", tmp_path)
    world = generate_world("tiny", seed=0)
    seen, real = [], S.segment_attributes

    def spy(*args, **kwargs):
        # BLAS and torch; an OpenMP runtime's count (and that of faiss's OpenMP-threaded BLAS) is a
        # per-thread setting that a new thread takes from OMP_NUM_THREADS, and no OpenMP code outside
        # torch runs in a worker
        blas = [p["num_threads"] for p in threadpool_info()
                if "openmp" not in (p["internal_api"], p.get("threading_layer"))]
        seen.append((config.n_threads(), torch.get_num_threads(), max(blas, default=1)))
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "segment_attributes", spy)
    before = config.n_threads()
    config.set_threads(2)
    try:
        S.world_embeddings(world, np.array([3, 5, 7]), clip_s=4.0, cache=False)
        after = config.n_threads(), torch.get_num_threads()
    finally:
        config.set_threads(before)
    assert len(seen) == 3 and all(s == (1, 1, 1) for s in seen), seen
    assert after == (2, 2)


def test_rows_of_equals_the_row_dict():
    """AudioIndex.rows_of is row_of.get(s, -1) vectorised: unknown songs, ids below, between and above
    the indexed ones, and a repeated id (the dict keeps its last row)."""
    rng = np.random.default_rng(0)
    ids = np.array([40, 7, 19, 3, 7, 100])
    index = AudioIndex(ids, rng.standard_normal((len(ids), 84)))
    q = np.array([0, 3, 7, 8, 19, 40, 41, 100, 101, 7, 3])
    assert index.rows_of(q).tolist() == [index.row_of.get(int(s), -1) for s in q]
    assert index.rows_of(q).tolist() == [-1, 3, 4, -1, 2, 0, -1, 5, -1, 4, 3]
