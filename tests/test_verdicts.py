"""Every outcome of every claim's verdict rule (musicrecall.report.verdicts), the placebo gate, and the
notebook helpers that pick and format effects (musicrecall.report.cells).

Each rule is exercised one condition at a time: from a case that reproduces, flip one input across its
threshold and the verdict must change, so a changed rule fails here.
"""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from musicrecall.report import fmt_ci, pick_ci
from musicrecall.report import verdicts as V
from musicrecall.report.claims import CLAIMS, VERDICTS
from musicrecall.report.verdicts import C2Evidence

NAN3 = (math.nan, math.nan, math.nan)
R, P, NF, NR = "reproduced", "partly", "not falsified", "not reproduced"


# C1 -------------------------------------------------------------------------------------------------
GAIN, NO_GAIN, EDGE_GAIN = (0.05, 0.01, 0.1), (0.0, -0.01, 0.1), (0.05, 0.0, 0.1)  # lo == 0 is no gain
FEWER, NOT_FEWER, EDGE_FEWER = (-0.5, -0.6, -0.4), (-0.1, -0.3, 0.05), (-0.1, -0.3, 0.0)
P_NONE, P_GAIN, P_EDGE = (0.0, -0.01, 0.01), (0.01, 0.001, 0.02), (0.01, 0.0, 0.02)


@pytest.mark.parametrize(("hr", "bad", "placebo", "want"), [
    (GAIN, FEWER, P_NONE, R),
    (GAIN, FEWER, P_EDGE, R),  # a placebo interval touching 0 is no placebo gain
    (GAIN, FEWER, P_GAIN, P),  # the shuffled KG gains too
    (GAIN, NOT_FEWER, P_NONE, P),
    (GAIN, EDGE_FEWER, P_NONE, P),
    (GAIN, None, P_NONE, P),  # BadCase not measurable (no catalogue relation)
    (GAIN, NAN3, P_NONE, P),
    (NO_GAIN, FEWER, P_NONE, P),
    (EDGE_GAIN, FEWER, P_NONE, P),
    (NO_GAIN, NOT_FEWER, P_NONE, NR),
    (NO_GAIN, None, P_GAIN, NR),
    # the placebo gate: no placebo world (real data) or an undefined one
    (GAIN, FEWER, None, NF),
    (GAIN, FEWER, NAN3, NF),
    (GAIN, NOT_FEWER, None, NF),
    (NO_GAIN, FEWER, None, NF),
    (NO_GAIN, NOT_FEWER, None, NR),
])
def test_c1(hr, bad, placebo, want):
    assert V.c1_verdict(hr, bad, placebo) == want


# C2 -------------------------------------------------------------------------------------------------
L2, PL2, DROP, MARKOV = (0.10, 0.05, 0.15), (0.01, -0.02, 0.04), (0.03, 0.01, 0.05), (0.05, 0.01, 0.09)
WEAK2 = (0.02, -0.01, 0.05)  # positive point and upper bound, interval reaching 0


@pytest.mark.parametrize(("e", "want"), [
    (C2Evidence(L2, PL2, True, DROP, MARKOV), R),
    (C2Evidence(L2, PL2), R),  # shuffle and Markov checks not run: not required
    (C2Evidence(L2, (0.09, 0.05, 0.13), True, DROP, MARKOV), P),  # the placebo keeps the lift
    (C2Evidence(L2, (0.12, -0.01, 0.2), True, DROP, MARKOV), P),  # the placebo is not smaller
    (C2Evidence(L2, (0.01, 0.001, 0.04), True, DROP, MARKOV), P),  # smaller, but still above 0
    (C2Evidence(L2, PL2, False, DROP, MARKOV), P),  # not smaller on some slice
    (C2Evidence(L2, PL2, True, (0.0, -0.01, 0.01), MARKOV), P),  # order unused
    (C2Evidence(L2, PL2, True, NAN3, MARKOV), P),
    (C2Evidence(L2, PL2, True, DROP, (0.01, -0.02, 0.04)), P),  # does not beat Markov
    (C2Evidence(L2, PL2, True, DROP, NAN3), P),  # Markov lift undefined
    (C2Evidence(WEAK2, (0.0, -0.02, 0.02), True, DROP, MARKOV), P),
    (C2Evidence(WEAK2, (0.03, -0.02, 0.06), True, DROP, MARKOV), NR),  # weak, and the placebo as large
    (C2Evidence((0.02, -0.01, 0.0), (0.0, -0.02, 0.02)), NR),
    (C2Evidence((-0.02, -0.05, 0.01), (0.0, -0.1, 0.1)), NR),
    # the placebo gate
    (C2Evidence(L2, None, True, DROP, MARKOV), NF),
    (C2Evidence(L2, NAN3, True, DROP, MARKOV), NF),
    (C2Evidence(L2, None, True, DROP, (0.01, -0.02, 0.04)), NF),
    (C2Evidence(WEAK2, None, True, DROP, MARKOV), NR),
    (C2Evidence((-0.02, -0.05, 0.01), None), NR),
])
def test_c2(e, want):
    assert V.c2_verdict(e) == want


def _c2_table(rows):
    return pl.DataFrame([{"a": a, "b": "youtube_dnn", "slice": s, "metric": m, "lift": v, "ci_lo": lo, "ci_hi": hi}
                         for a, s, m, (v, lo, hi) in rows],
                        schema_overrides={"lift": pl.Float64, "ci_lo": pl.Float64, "ci_hi": pl.Float64})


LIFTS = _c2_table([("sasrec (seed 1)", "all", "hr@10", (0.01, -0.02, 0.03)),
                   ("sasrec", "all", "hr@10", (0.10, 0.05, 0.15)), ("sasrec", "within_session", "hr@10", (0.2, 0.1, 0.3)),
                   ("sasrec", "all", "ndcg@10", (0.5, 0.4, 0.6))])
SHUFFLE = _c2_table([("sasrec_shuffled", "all", "hr@10", (-0.3, -0.35, -0.25))])
MARKOV_T = _c2_table([("sasrec", "all", "hr@10", (0.05, 0.01, 0.09))])


def test_c2_evidence_picks_the_rows_flips_the_shuffle_and_checks_every_slice():
    placebo = _c2_table([("sasrec", "all", "hr@10", (0.01, -0.02, 0.04)),
                         ("sasrec", "within_session", "hr@10", (0.02, -0.01, 0.05))])
    e = V.c2_evidence(LIFTS, placebo, SHUFFLE, MARKOV_T, metric="hr@10")
    assert e.lift == (0.10, 0.05, 0.15) and e.aa == (0.01, -0.02, 0.03) and e.over_markov == (0.05, 0.01, 0.09)
    assert e.order_drop == (0.3, 0.25, 0.35)  # a change of -30% [-35, -25] is a drop of 30% [25, 35]
    assert e.placebo == (0.01, -0.02, 0.04) and e.placebo_consistent
    assert V.c2_verdict(e) == R
    # the placebo as large as the default world on one slice: inconsistent
    larger = _c2_table([("sasrec", "all", "hr@10", (0.01, -0.02, 0.04)),
                        ("sasrec", "within_session", "hr@10", (0.25, -0.01, 0.5))])
    e = V.c2_evidence(LIFTS, larger, SHUFFLE, MARKOV_T, metric="hr@10")
    assert not e.placebo_consistent and V.c2_verdict(e) == P
    # a slice the placebo table lacks cannot show the placebo is smaller there
    e = V.c2_evidence(LIFTS, placebo.filter(pl.col("slice") == "all"), SHUFFLE, MARKOV_T, metric="hr@10")
    assert not e.placebo_consistent


def test_c2_evidence_without_a_placebo_or_with_an_undefined_one():
    e = V.c2_evidence(LIFTS, None, SHUFFLE, MARKOV_T, metric="hr@10")
    assert e.placebo is None and e.placebo_consistent and V.c2_verdict(e) == NF
    undefined = _c2_table([("sasrec", "all", "hr@10", (None, None, None)),
                           ("sasrec", "within_session", "hr@10", (0.02, -0.01, 0.05))])
    e = V.c2_evidence(LIFTS, undefined, SHUFFLE, MARKOV_T, metric="hr@10")
    assert e.placebo is None and not e.placebo_consistent and V.c2_verdict(e) == NF
    # no shuffle or Markov row (a baseline that scores 0): undefined, so those checks fail
    e = V.c2_evidence(LIFTS, None, None, MARKOV_T.clear(), metric="hr@10")
    assert all(np.isnan(e.order_drop)) and all(np.isnan(e.over_markov))
    assert V.c2_evidence(LIFTS, None, SHUFFLE, MARKOV_T, metric="ndcg@10").lift == (0.5, 0.4, 0.6)


# C3 -------------------------------------------------------------------------------------------------
L3, PL3, WEAK3 = (0.1, 0.05, 0.2), (0.0, -0.05, 0.05), (0.01, -0.05, 0.07)


@pytest.mark.parametrize(("lift", "sil", "nmi", "placebo", "want"), [
    (L3, 0.02, 0.01, PL3, R),
    (L3, -0.02, 0.01, PL3, P),
    (L3, 0.02, 0.0, PL3, P),
    (L3, math.nan, math.nan, PL3, P),  # clustering not computable: the check fails
    (L3, 0.02, 0.01, (0.2, 0.1, 0.3), P),  # the placebo lifts more
    (L3, 0.02, 0.01, (0.1, 0.05, 0.2), P),  # as much
    (WEAK3, 0.02, 0.01, PL3, P),  # clustering improves, recall not significantly
    (WEAK3, 0.02, -0.01, PL3, NR),
    ((0.1, 0.0, 0.2), -0.02, 0.01, PL3, NR),
    # the placebo gate
    (L3, 0.02, 0.01, None, NF),
    (L3, 0.02, 0.01, NAN3, NF),
    (L3, math.nan, math.nan, None, NF),
    (WEAK3, 0.02, 0.01, None, NF),
    (WEAK3, -0.02, 0.01, None, NR),
])
def test_c3(lift, sil, nmi, placebo, want):
    assert V.c3_verdict(lift, sil, nmi, placebo) == want


# C4 -------------------------------------------------------------------------------------------------
def _corr(raw, part, p_raw=None, p_part=None):
    rows = []
    for world, vals in (("default", (raw, part)), ("placebo", (p_raw, p_part))):
        for m, t in zip(("pearson_r", "partial_r"), vals, strict=True):
            if t is not None:
                rows.append({"world": world, "measure": m, "r": t[0], "ci_lo": t[1], "ci_hi": t[2]})
    return pl.DataFrame(rows)


POS, NULL, POS_EDGE = (0.1, 0.05, 0.15), (0.0, -0.02, 0.02), (0.05, 0.0, 0.1)


@pytest.mark.parametrize(("table", "want", "why"), [
    (_corr(POS, POS, NULL, NULL), R, "covers 0"),
    (_corr(POS, POS, NULL, (0.02, -0.01, 0.0)), R, "covers 0"),  # an interval ending at 0 covers it
    (_corr(POS, POS, POS, NULL), R, "genre confounding"),  # raw r > 0 in the placebo too: named
    (_corr(POS, NULL, POS, NULL), P, "raw r > 0"),
    (_corr(POS, POS_EDGE, NULL, NULL), P, "raw r > 0"),
    (_corr(NULL, POS, NULL, POS), P, "does not cover 0"),
    (_corr(POS, POS, NULL, (-0.05, -0.08, -0.02)), P, "does not cover 0"),  # below 0 is not "no effect" either
    (_corr(NULL, POS, POS, (0.02, 0.01, 0.03)), P, "genre confounding"),
    (_corr(NULL, NULL, NULL, NULL), NR, "no positive correlation"),
    (_corr(POS_EDGE, POS_EDGE, NULL, NULL), NR, "no positive correlation"),
    # the placebo gate: no placebo rows, or an undefined placebo partial r
    (_corr(POS, POS), NF, "partial r > 0 (CI above 0), but no placebo"),
    (_corr(POS, POS, NULL, NAN3), NF, "no placebo"),
    (_corr(POS, NULL), NF, "raw r > 0 (CI above 0), but no placebo"),
    (_corr(NULL, NULL), NR, "no positive correlation"),
])
def test_c4(table, want, why):
    verdict, reason = V.c4_verdict(table)
    assert verdict == want and why in reason


# C5 -------------------------------------------------------------------------------------------------
M_A, M_D, P_A1, P_A2 = (0.3, 0.2, 0.4), (0.1, 0.05, 0.2), (0.0, -0.1, 0.1), (0.01, -0.02, 0.05)


@pytest.mark.parametrize(("args", "want"), [
    ((M_A, M_D, P_A1, P_A2), R),
    ((M_A, M_D, P_A1, (0.01, 0.0, 0.05)), R),  # a placebo bound at 0 is no lift
    ((M_A, (0.0, -0.05, 0.05), P_A1, P_A2), P),  # MMoE adds nothing over the DSSM
    ((M_A, (0.05, 0.0, 0.1), P_A1, P_A2), P),
    ((M_A, M_D, P_A1, (0.2, 0.1, 0.3)), P),  # a placebo model lifts too
    (((0.05, -0.01, 0.1), M_D, P_A1, P_A2), NR),
    (((0.05, 0.0, 0.1), M_D, P_A1, P_A2), NR),
    # the placebo gate
    ((M_A, M_D), NF),
    ((M_A, M_D, P_A1, NAN3), NF),
    ((M_A, (0.0, -0.05, 0.05)), NF),
    (((0.05, -0.01, 0.1), M_D), NR),
])
def test_c5(args, want):
    assert V.c5_verdict(*args) == want


# C6 -------------------------------------------------------------------------------------------------
COV, HR_EQ, HR_DROP, PC = (0.2, 0.1, 0.3), (-0.01, -0.03, 0.01), (-0.05, -0.08, -0.02), (0.0, -0.01, 0.01)


@pytest.mark.parametrize(("cov", "hr", "placebo", "want"), [
    (COV, HR_EQ, PC, R),
    (COV, (-0.02, -0.04, 0.0), PC, R),  # a HitRate interval ending at 0 is equal accuracy
    (COV, HR_DROP, PC, P),
    (COV, NAN3, PC, P),  # accuracy not measurable: not shown equal
    (COV, HR_EQ, (0.2, 0.1, 0.3), P),  # the placebo gains as much
    (COV, HR_EQ, (0.05, 0.01, 0.09), P),  # smaller, but above 0
    (COV, HR_EQ, (0.25, -0.1, 0.6), P),  # reaches 0, but not smaller
    ((0.0, -0.1, 0.1), HR_EQ, PC, NR),
    ((0.1, 0.0, 0.2), HR_EQ, PC, NR),
    # the placebo gate
    (COV, HR_EQ, None, NF),
    (COV, HR_EQ, NAN3, NF),
    (COV, HR_DROP, None, NF),
    ((0.0, -0.1, 0.1), HR_EQ, None, NR),
])
def test_c6(cov, hr, placebo, want):
    assert V.c6_verdict(cov, hr, placebo) == want


# C7 -------------------------------------------------------------------------------------------------
def d(diff, lo, hi):
    return {"diff": diff, "lo": lo, "hi": hi}


AA, HIT, PD = d(0.001, -0.003, 0.005), (0.05, -0.02, 0.1), d(0.0, -0.01, 0.01)  # noise floor 0.005


@pytest.mark.parametrize(("gain", "hit", "placebo", "aa", "want"), [
    (d(0.02, 0.01, 0.03), HIT, PD, AA, R),
    (d(0.02, 0.01, 0.03), HIT, d(0.01, 0.0, 0.02), AA, R),  # a placebo bound at 0 is no gain
    (d(0.02, 0.01, 0.03), HIT, d(0.01, 0.002, 0.02), AA, P),  # the placebo gains too
    (d(0.02, 0.01, 0.03), (-0.01, -0.05, 0.03), PD, AA, P),  # the hit rate does not rise
    (d(0.02, 0.01, 0.03), (0.0, -0.05, 0.05), PD, AA, P),
    (d(0.004, 0.001, 0.007), HIT, PD, AA, NR),  # within the A/A noise floor
    (d(0.02, 0.01, 0.03), HIT, PD, d(0.0, -0.03, 0.001), NR),  # the floor is the larger |bound|
    (d(0.01, -0.001, 0.02), HIT, PD, AA, NR),
    (d(0.01, 0.0, 0.02), HIT, PD, AA, NR),
    # the placebo gate
    (d(0.02, 0.01, 0.03), HIT, None, AA, NF),
    (d(0.02, 0.01, 0.03), HIT, d(math.nan, math.nan, math.nan), AA, NF),
    (d(0.02, 0.01, 0.03), (-0.01, -0.05, 0.03), None, AA, NF),
    (d(0.01, -0.001, 0.02), HIT, None, AA, NR),
])
def test_c7(gain, hit, placebo, aa, want):
    assert V.c7_verdict(gain, hit, placebo, aa) == want


GAIN, NULL, NAN_D = d(0.02, 0.01, 0.03), d(0.0, -0.01, 0.01), d(math.nan, math.nan, math.nan)


@pytest.mark.parametrize(("gain", "full", "full_aa", "want"), [
    (GAIN, GAIN, AA, R),  # audio helps like for like and with every channel
    (GAIN, NULL, AA, P),  # all five channels: no gain
    (GAIN, d(0.008, 0.001, 0.015), d(0.0, -0.01, 0.01), P),  # a gain inside its own A/A noise floor
    (GAIN, NAN_D, NAN_D, P),  # not measurable (no collect with audio in the sample): no support
    (NULL, GAIN, AA, P),  # a gain with every channel but none like for like: partial support only
    (NULL, NULL, AA, NR),
    (GAIN, GAIN, None, R),  # no A/A arm for the full row: the floor is 0
])
def test_c7_with_the_seeded_all_channel_row(gain, full, full_aa, want):
    assert V.c7_verdict(gain, HIT, PD, AA, full_gain=full, full_aa=full_aa) == want
    assert V.c7_verdict(gain, HIT, None, AA, full_gain=full, full_aa=full_aa) == (NF if want != NR else NR)


# The gate and the module as a whole ----------------------------------------------------------------
def test_without_a_measured_placebo_no_rule_supports_its_claim():
    rng = np.random.default_rng(0)
    effects = [tuple(sorted(rng.normal(0, 0.1, 3))[i] for i in (1, 0, 2)) for _ in range(6)]
    effects += [(0.1, 0.05, 0.15), (-0.1, -0.15, -0.05)]
    seen = set()
    for a, b, c in itertools.product(effects, repeat=3):
        for none in (None, NAN3):
            got = {V.c1_verdict(a, b, none), V.c2_verdict(C2Evidence(a, none, True, b, c)), V.c3_verdict(a, b[0], c[0], none),
                   V.c5_verdict(a, b), V.c6_verdict(a, b, none), V.c7_verdict(d(*a), b, none, d(*c)),
                   V.c4_verdict(_corr(a, b))[0]}
            seen |= got
            assert got <= {NF, NR}, (a, b, c, got)
    assert seen == {NF, NR}  # the grid reaches both outcomes


def test_every_claim_has_one_verdict_function_with_its_rule_in_the_docstring():
    for claim in CLAIMS:
        fn = getattr(V, f"{claim.id.lower()}_verdict")
        doc = fn.__doc__ or ""
        assert f"notebook {claim.notebook}" in doc, claim.id
        for outcome in (R, P, NR, "placebo gate"):
            assert f"``{outcome}``" in doc or outcome in doc, (claim.id, outcome)
    assert {R, P, NF, NR} == set(VERDICTS)


def test_claim_verdicts_live_in_report_only():
    lib = Path(V.__file__).resolve().parents[1]
    stray = [f"{p.relative_to(lib)}:{n.name}" for p in lib.rglob("*.py") if "report" not in p.relative_to(lib).parts
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.FunctionDef) and n.name.endswith("_verdict")]
    assert not stray, f"claim verdicts belong in musicrecall.report.verdicts: {stray}"


# Notebook helpers ---------------------------------------------------------------------------------
def test_pick_ci_reads_the_first_matching_row():
    t = pl.DataFrame({"model": ["a", "a", "b"], "metric": ["hr", "hr", "hr"], "lift": [0.1, 0.9, None],
                      "mean": [0.5, 0.6, 0.7], "ci_lo": [0.0, 0.8, None], "ci_hi": [0.2, 1.0, 0.3]})
    assert pick_ci(t, model="a", metric="hr") == (0.1, 0.0, 0.2)
    value, lo, hi = pick_ci(t, "mean", model="b")
    assert value == 0.7 and np.isnan(lo) and hi == 0.3
    assert all(np.isnan(pick_ci(t, model="b")[:2]))  # nulls read as NaN
    with pytest.raises(LookupError, match="model"):
        pick_ci(t, model="c")
    assert all(np.isnan(pick_ci(t, missing_ok=True, model="c")))
    assert all(np.isnan(pick_ci(None, missing_ok=True, model="a")))
    with pytest.raises(LookupError):
        pick_ci(None, model="a")


def test_fmt_ci_matches_the_notebooks_former_formats():
    for t in [(0.0812, 0.0523, 0.11), (-0.02, -0.051, 0.0), (math.nan, math.nan, math.nan)]:
        assert fmt_ci(t) == f"{t[0]:+.1%} [{t[1]:+.1%}, {t[2]:+.1%}]"
        assert fmt_ci(t, pct=False) == f"{t[0]:+.4f} [{t[1]:+.4f}, {t[2]:+.4f}]"
        assert fmt_ci({"diff": t[0], "lo": t[1], "hi": t[2]}, pct=False) == fmt_ci(t, pct=False)
        row = {"world": "default", "r": t[0], "ci_lo": t[1], "ci_hi": t[2]}
        assert fmt_ci(row, pct=False, digits=3) == f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"
    assert fmt_ci((0.0812, 0.0523, 0.11)) == "+8.1% [+5.2%, +11.0%]"
    assert fmt_ci((0.0812, 0.0523, 0.11), digits=2) == "+8.12% [+5.23%, +11.00%]"
