"""Notebook 07's C5 comparison with training seeds: seeded lifts with an A/A control (as notebooks 03/04),
seed-averaged levels, and the seed replicates of the federated models themselves."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from musicrecall.federated import pipeline as fp


def _rep(name: str, dur: np.ndarray, hr: np.ndarray, auc: np.ndarray) -> dict:
    return {"name": name, "users": np.arange(len(dur)), "hr@200": np.asarray(hr, float), "duration": np.asarray(dur, float),
            "auc_users": np.arange(len(auc)), "auc": np.asarray(auc, float), "k": 200}


def _row(t: pl.DataFrame, model: str, metric: str = "duration") -> dict:
    return t.filter((pl.col("model") == model) & (pl.col("metric") == metric)).row(0, named=True)


def test_seeded_lifts_average_the_seeds_and_widen_the_interval_by_their_spread():
    rng = np.random.default_rng(0)
    n = 400
    base, hr, auc = rng.gamma(2.0, 3.0, n), (rng.random(n) < 0.3).astype(float), rng.random(50)
    a_alone = [_rep("A", base, hr, auc)]
    same = [_rep("m", base * 1.2, hr, auc) for _ in range(3)]  # three seeds that agree: no training noise
    noisy = [_rep("m", base * f, hr, auc) for f in (1.0, 1.2, 1.4)]  # three seeds that disagree
    t_same = fp.seeded_lift_table({"m": same, "A": a_alone}, [("m", "A")], ("duration", "hr@200"))
    t_noisy = fp.seeded_lift_table({"m": noisy, "A": a_alone}, [("m", "A")], ("duration", "hr@200"))
    s, z = _row(t_same, "m"), _row(t_noisy, "m")
    assert s["lift"] == pytest.approx(0.2) and z["lift"] == pytest.approx(0.2)  # the lift of the seed mean
    assert s["n_seeds"] == z["n_seeds"] == 3  # the deterministic baseline pairs with every seed
    assert s["ci_hi"] - s["ci_lo"] < 1e-9  # a = 1.2 b for every user: no bootstrap noise either
    assert z["ci_lo"] < 0.0 < 0.4 < z["ci_hi"]  # seeds 0.2 apart: 1.96 * 0.2 / sqrt(3) each side at least
    aa = _row(t_noisy, "m (seed 1)")  # the A/A control: the same model, seed 1 vs seed 0
    assert aa["baseline"] == "m (seed 0)" and aa["lift"] == pytest.approx(0.2)
    assert _row(t_noisy, "m", "hr@200")["lift"] == pytest.approx(0.0) and set(t_noisy["world"]) == {"signal"}
    # a one-report arm (the noisy or the centralised run) against a seeded one pairs with every seed
    one = fp.seeded_lift_table({"c": [_rep("c", base * 1.3, hr, auc)], "m": noisy}, [("c", "m")], ("duration",))
    assert _row(one, "c")["lift"] == pytest.approx(1.3 / 1.2 - 1) and "c (seed 1)" not in one["model"].to_list()
    with pytest.raises(ValueError, match="same users"):
        fp.seeded_lift_table({"m": noisy, "A": [_rep("A", base[:-1], hr[:-1], auc)]}, [("m", "A")], ("duration",))


def test_summary_levels_of_a_seeded_arm_average_its_seeds():
    rng = np.random.default_rng(1)
    base, hr, auc = rng.gamma(2.0, 3.0, 300), (rng.random(300) < 0.3).astype(float), rng.random(40)
    seeds = [_rep("m", base * f, hr, auc) for f in (1.0, 1.2, 1.4)]
    t = fp.summary_table([_rep("A", base, hr, auc), seeds], n_boot=200)
    m, a = _row(t, "m"), _row(t, "A")
    assert m["mean"] == pytest.approx(1.2 * base.mean()) and m["n_seeds"] == 3 and a["n_seeds"] == 1
    assert m["ci_hi"] - m["ci_lo"] > 1.5 * (a["ci_hi"] - a["ci_lo"])  # the seed spread widens it


def test_seed_replicates_keep_the_single_seed_run_and_differ_from_it():
    """``train_seeds`` seed 0 is the run a single-seed notebook makes (same tower name and run key, so
    notebook 08's adapter restores its checkpoint); seed 1 is another model on the same cold users."""
    data = fp.load_cold_start("world", "tiny", 0, 5)
    fed = fp.open_federation(data, 0.9, 10, 0, mode="thread")
    try:
        _, demo = fp.a_alone(data)
        rc = fp.RunConfig(epochs=1, batch_size=1024, n_neg=64, max_per_user=5, seed=0)
        with fp.threads(1):
            runs = fp.train_seeds(fp.fed_dssm, data, fed, lambda i: i, rc, "fed_dssm", demo, n_seeds=2)
            again, h_again = fp.train_and_report(fp.fed_dssm(fed.endpoint, data, "fed_dssm", rc), data, fed, lambda i: i, rc,
                                           "fed_dssm", demo)
    finally:
        fed.party_b.close()
    assert runs.seeds == [0, 1] and [r["name"] for r in runs.reports] == ["fed_dssm", "fed_dssm"]
    r0, r1 = runs.reports
    assert np.array_equal(r0["users"], r1["users"])
    assert h_again.from_cache  # the same run key as seed 0 of the replicates: its checkpoint, not a new fit
    assert np.array_equal(again["duration"], r0["duration"]) and np.array_equal(again["hr@200"], r0["hr@200"])
    assert not (np.array_equal(r0["duration"], r1["duration"]) and np.array_equal(r0["auc"], r1["auc"]))
    table = fp.seeded_lift_table({"fed_dssm": runs.reports, "demo": [fp.cold_report("demo", demo, data.cold,
                                  data.test.split.test)]}, [("fed_dssm", "demo")], ("duration",), n_boot=100)
    assert set(table["model"]) == {"fed_dssm", "fed_dssm (seed 1)"}


def test_validating_twice_a_pass_splits_each_pass_into_two_runs_of_its_batches():
    """``batches(..., parts=2)``: loop epochs 2p and 2p + 1 are pass p's batches (the same shuffle as
    ``parts=1``), first half then second half; so a half-pass validation sees exactly the training a
    one-validation-a-pass run has seen at each pass end, and the loop's cap counts passes x parts."""
    from musicrecall.federated.coldstart import batches

    n = 1000
    rows = pl.DataFrame({"a_idx": np.arange(n) % 37, "song_id": np.arange(n), "full_play": np.ones(n, bool),
                         "collect": np.zeros(n, bool), "play_ms": np.full(n, 1000)})
    whole, halves = batches(rows, 64, 3, lambda u: u), batches(rows, 64, 3, lambda u: u, parts=2)
    for p in range(3):
        one = [b["song_id"].numpy() for b in whole(p)]
        two = [b["song_id"].numpy() for b in halves(2 * p)] + [b["song_id"].numpy() for b in halves(2 * p + 1)]
        assert len(one) == len(two) == 16 and all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
        assert len(list(halves(2 * p))) == 8
    assert not np.array_equal(next(iter(whole(0)))["song_id"].numpy(), next(iter(whole(1)))["song_id"].numpy())
    rc = fp.RunConfig(epochs=30, validations_per_pass=2)
    assert rc.train_config().epochs == 60 and rc.train_config().patience == 3
    from musicrecall.training import History  # the convergence table reads validations as passes, per run

    runs = {("signal", "fed_dssm", 0): History(epochs=[{"seconds": 1.0}] * 7, best_epoch=4),
            ("signal", "noisy", 0): History(epochs=[{"seconds": 1.0}] * 14, best_epoch=11)}
    conv = fp.convergence_table(runs, {("signal", "fed_dssm", 0): 2, ("signal", "noisy", 0): 1})
    assert conv["best_pass"].to_list() == [2.0, 11.0] and conv["passes_ran"].to_list() == [3.5, 14.0]
    assert fp.convergence_table(runs, 2)["passes_ran"].to_list() == [3.5, 7.0]


def test_notebook_08_adapter_trains_the_dssm_of_notebook_07():
    """Notebook 08 reuses notebook 07's seed-0 DSSM through its checkpoint, whose key holds every setting:
    the adapter's defaults must be the notebook's parameters, or 08 silently trains another model."""
    import inspect
    import json
    from pathlib import Path

    from musicrecall.fusion.adapters import federated_dssm_adapter

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "07_federated_dssm_mmoe.ipynb").read_text())
    params = {}
    for line in "".join(nb["cells"][1]["source"]).splitlines():
        name, _, value = line.partition("=")
        params[name.strip()] = value.split("#")[0].strip()
    defaults = inspect.signature(federated_dssm_adapter).parameters
    for name in ("max_plays", "coverage", "b_extra_share", "epochs", "batch_size", "n_neg", "max_per_user",
                 "validations_per_pass"):
        assert float(params[name]) == float(defaults[name].default), name
    assert params["party_mode"].strip('"') == defaults["mode"].default
