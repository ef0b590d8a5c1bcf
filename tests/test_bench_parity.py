"""The parity bench's data conversion (bench/bench_recbole_parity.py): the leave-one-out split is the
project's leave-last-out split (RecBole's ``LS: valid_and_test``), songs are re-indexed over what was
played (RecBole's catalogue), and the RecBole ``.inter`` file carries each user's plays in order."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from musicrecall.config import REPO_ROOT
from musicrecall.evaluation import choose_split

sys.path.insert(0, str(REPO_ROOT / "bench"))
from bench_recbole_parity import _reindexed  # noqa: E402


def _sequences(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # sparse source ids with gaps, repeats within a user, and two users too short to keep (< 5 plays)
    return [rng.choice(np.arange(0, 400, 7), size=n) for n in (9, 3, 12, 5, 4, 30)]


def test_reindexing_keeps_order_and_gives_a_dense_played_catalogue():
    raw = _sequences()
    loo = _reindexed(raw, "t")
    kept = [s for s in raw if len(s) >= 5]
    assert len(loo.seqs) == len(kept) == 4
    vocab = np.unique(np.concatenate(kept))
    assert loo.n_items == vocab.shape[0]
    assert set(np.concatenate(loo.seqs).tolist()) == set(range(loo.n_items))  # every id is played
    for new, old in zip(loo.seqs, kept, strict=True):
        assert (vocab[new] == old).all()  # same songs, same order


def test_leave_one_out_is_the_projects_leave_last_out_split():
    loo = _reindexed(_sequences(1), "t")
    ev = loo.events(0)
    ev = pl.DataFrame({"user_id": ev["user_id"], "song_id": ev["song_id"], "full_play": [True] * ev.height,
                       "ts": [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(t)) for t in ev["ts"]]})
    s = choose_split(ev, "leave_last_out")
    key = ["user_id", "song_id", "ts"]
    assert s.train.select(key).sort(key).equals(
        ev.filter(pl.col("ts") < pl.col("ts").max().over("user_id") - timedelta(seconds=1)).select(key).sort(key))
    assert loo.events(2).height == s.train.height
    assert s.valid.sort("user_id")["song_id"].to_list() == loo.target(2).tolist()
    assert s.test.sort("user_id")["song_id"].to_list() == loo.target(1).tolist()
    # the bench's fit logs: validation fits on all but the last two plays, test on all but the last
    assert loo.events(1).height == loo.events(2).height + len(loo.seqs)


def test_recbole_inter_file_has_every_play_in_order(tmp_path: Path):
    loo = _reindexed(_sequences(2), "t")
    path = tmp_path / "t.inter"
    loo.write_inter(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    rows = [tuple(int(x) for x in line.split("\t")) for line in lines[1:]]
    assert len(rows) == sum(len(s) for s in loo.seqs)
    for u, s in enumerate(loo.seqs):
        mine = sorted((t, i) for uu, i, t in rows if uu == u)
        assert [i for _, i in mine] == s.tolist() and [t for t, _ in mine] == list(range(len(s)))
