"""Every claim's verdict, C1..C7, in one place: one function per claim, each with its rule.

How each claim is measured is ``../shared/claims.md`` (the rows of :data:`musicrecall.report.claims.CLAIMS`);
the notebook named there computes the inputs and calls the claim's function here, nothing else decides.
Inputs are effects with their 95% interval, ``(value, lo, hi)`` (a relative lift, a difference or a
correlation; 0 is "no effect"), unless a function says otherwise.

**The placebo gate** (every rule): "reproduced" and "partly" count as support and need a *measured*
placebo world, the one where the simulator switches the effect off. Without one (``None``, or a placebo
whose value is NaN: not run, imported data, or undefined) a rule that would support the claim returns
"not falsified" instead; "not reproduced" stays. :func:`musicrecall.report.record.record_claim` and the
ledger apply the same cap again, so a row can never pass without a placebo.

Verdicts are the strings of :data:`musicrecall.report.claims.VERDICTS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from musicrecall.report.cells import pick_ci
from musicrecall.report.claims import NOT_FALSIFIED, SUPPORTING

Effect = tuple[float, float, float]  # (value, lo, hi)
NAN3: Effect = (math.nan, math.nan, math.nan)

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"


def measured(effect: Effect | Mapping[str, float] | None) -> bool:
    """Whether a (placebo) effect was measured: given, with a finite value (a mapping: its ``diff``)."""
    if effect is None:
        return False
    value = effect["diff"] if isinstance(effect, Mapping) else effect[0]
    return value is not None and math.isfinite(value)


def placebo_gate(verdict: str, placebo_measured: bool) -> str:
    """``verdict``, or "not falsified" when it would support the claim but no placebo was measured."""
    return NOT_FALSIFIED if verdict in SUPPORTING and not placebo_measured else verdict


def c1_verdict(hr_lift: Effect, badcase_change: Effect | None, placebo_hr_lift: Effect | None) -> str:
    """C1, KG Song2Vec vs plain Song2Vec (notebook 02): HitRate@200 lift of KG over plain (paired
    bootstrap over users), relative change of the BadCase rate (``None`` when no catalogue relation
    makes it measurable) and the HitRate@200 lift in the placebo world (KG relevance off: shuffled KG).

    * ``reproduced``: the HitRate lift's interval is above 0, the BadCase change's interval below 0,
      and the placebo lift's interval reaches 0 (no significant gain without a true KG);
    * ``partly``: only one of the two gains holds, or both hold but the placebo gains too;
    * ``not reproduced``: neither gain holds;
    * placebo gate: without a measured placebo, ``reproduced`` and ``partly`` read ``not falsified``.
    """
    gain = hr_lift[1] > 0
    fewer_bad = badcase_change is not None and badcase_change[2] < 0
    if gain and fewer_bad and not (measured(placebo_hr_lift) and placebo_hr_lift[1] > 0):  # type: ignore[index]
        verdict = REPRODUCED
    else:
        verdict = PARTLY if gain or fewer_bad else NOT_REPRODUCED
    return placebo_gate(verdict, measured(placebo_hr_lift))


@dataclass(frozen=True)
class C2Evidence:
    """The inputs of :func:`c2_verdict`, each ``(value, lo, hi)``; build them with :func:`c2_evidence`.

    ``lift``: the headline lift of the sequence model over the baseline (seed and A/A spread in its
    interval); ``placebo``: the same in the placebo world (``None``: not measured); ``placebo_consistent``:
    the placebo lift is smaller on every slice; ``order_drop``: accuracy the model loses when its
    history is shuffled at inference (positive = lost; ``None``: not run); ``over_markov``: its lift over
    the previous-song Markov baseline (``None``: not run); ``aa``: the A/A control, for the text only.
    """

    lift: Effect
    placebo: Effect | None = None
    placebo_consistent: bool = True
    order_drop: Effect | None = None
    over_markov: Effect | None = None
    aa: Effect = NAN3


def c2_evidence(lifts: pl.DataFrame, placebo: pl.DataFrame | None, shuffle: pl.DataFrame | None,
                vs_markov: pl.DataFrame | None, metric: str = "hr@10", arm: str = "sasrec",
                slice_: str = "all") -> C2Evidence:
    """:class:`C2Evidence` from notebook 03's lift tables (:func:`musicrecall.sequences.rolling_c2_table`:
    columns ``a``, ``slice``, ``metric``, ``lift``, ``ci_lo``, ``ci_hi``): ``lifts`` (``arm`` and its A/A row
    ``"<arm> (seed 1)"`` over the baseline), ``placebo`` (the same in the placebo world, ``None`` when not
    run), ``shuffle`` (``"<arm>_shuffled"`` over ``arm``) and ``vs_markov`` (``arm`` over Markov).

    An absent row (a baseline that scores 0 on this data) reads as NaN. The placebo must be smaller on
    every slice where ``arm`` has a lift (NaN compares as not smaller); a placebo whose headline lift is NaN
    is undefined, so it counts as not measured. The shuffle row's lift is a change; its sign is flipped
    (and the interval swapped) so that a positive ``order_drop`` is accuracy lost."""
    def pick(frame: pl.DataFrame | None, a: str = arm, sl: str = slice_) -> Effect:
        return pick_ci(frame, missing_ok=True, a=a, slice=sl, metric=metric)

    plac = pick(placebo) if placebo is not None else None
    slices = lifts.filter(pl.col("a") == arm)["slice"].unique().to_list()
    consistent = plac is None or all(pick(placebo, sl=s)[0] < pick(lifts, sl=s)[0] for s in slices)
    shuf = pick(shuffle, a=f"{arm}_shuffled")
    return C2Evidence(lift=pick(lifts), placebo=plac if measured(plac) else None, placebo_consistent=consistent,
                      order_drop=(-shuf[0], -shuf[2], -shuf[1]), over_markov=pick(vs_markov),
                      aa=pick(lifts, a=f"{arm} (seed 1)"))


def c2_verdict(e: C2Evidence) -> str:
    """C2, SASRec vs YouTube-DNN (notebook 03): rolling next-play lift "A beats B because of order".

    * ``reproduced``: the lift's interval is above 0; the placebo lift (sequence effect off) is smaller,
      its interval reaches 0 (or below) and it is smaller on every slice; (when given) shuffling the
      history at inference costs accuracy (``order_drop`` interval above 0); and (when given) A beats the
      previous-song Markov baseline (``over_markov`` interval above 0: a sequence model that does not
      has not shown it uses order beyond the last play);
    * ``partly``: the lift's interval is above 0 but one of those checks fails; or the point lift and its
      upper bound are positive while its interval reaches 0, and the placebo lift is smaller;
    * ``not reproduced``: otherwise;
    * placebo gate: without a measured placebo, ``reproduced`` and ``partly`` read ``not falsified``.
    """
    lift, plac = e.lift, e.placebo
    if lift[1] > 0:
        shrinks = plac is None or (plac[0] < lift[0] and plac[1] <= 0 and e.placebo_consistent)
        order = e.order_drop is None or e.order_drop[1] > 0
        markov = e.over_markov is None or e.over_markov[1] > 0
        verdict = REPRODUCED if shrinks and order and markov else PARTLY
    else:
        verdict = PARTLY if lift[0] > 0 and lift[2] > 0 and plac is not None and plac[0] < lift[0] else NOT_REPRODUCED
    return placebo_gate(verdict, measured(plac))


def c3_verdict(lift: Effect, sil_gain: float, nmi_gain: float, placebo: Effect | None) -> str:
    """C3, MIND with side info and re-initialised routing logits (notebook 04): HitRate@200 lift of the
    full variant over base, the clustering gains of re-initialisation against genre (silhouette, NMI;
    NaN when no catalogue relation labels the songs) and the same lift in the placebo world
    (single-interest users).

    * ``reproduced``: the lift's interval is above 0, re-init raises both clustering scores, and the
      placebo lift is smaller (the gain needs multi-interest users);
    * ``partly``: the lift's interval is above 0 but another check fails (NaN clustering gains fail), or
      clustering improves while the recall lift is not significant;
    * ``not reproduced``: neither the lift nor the clustering holds;
    * placebo gate: without a measured placebo, ``reproduced`` and ``partly`` read ``not falsified``.
    """
    clusters = sil_gain > 0 and nmi_gain > 0
    if lift[1] > 0:
        verdict = REPRODUCED if clusters and measured(placebo) and placebo[0] < lift[0] else PARTLY  # type: ignore[index]
    else:
        verdict = PARTLY if clusters else NOT_REPRODUCED
    return placebo_gate(verdict, measured(placebo))


def c4_verdict(table: pl.DataFrame) -> tuple[str, str]:
    """C4, audio similarity vs full-play rate (notebook 06), from
    :func:`musicrecall.audio.simulated.correlation_table` (rows ``world`` x ``measure`` with ``r``,
    ``ci_lo``, ``ci_hi``; worlds ``default`` and ``placebo``, audio preference off). Returns
    ``(verdict, reason)``.

    * ``reproduced``: the partial r (genre and popularity held fixed) has its interval above 0 in the
      default world and the placebo's partial-r interval covers 0;
    * ``partly``: only the raw r is above 0, or the partial r is but the placebo's does not fall to 0;
    * ``not reproduced``: neither r has its interval above 0;
    * placebo gate: without placebo rows (or a NaN placebo partial r), ``reproduced`` and ``partly`` read
      ``not falsified``.
    A placebo raw r above 0 is named in the reason: raw r alone is then genre confounding, not evidence.
    """
    get = {(r["world"], r["measure"]): r for r in table.iter_rows(named=True)}
    raw, part = get[("default", "pearson_r")], get[("default", "partial_r")]
    nan_row = {"r": math.nan, "ci_lo": math.nan, "ci_hi": math.nan}
    p_raw, p_part = get.get(("placebo", "pearson_r"), nan_row), get.get(("placebo", "partial_r"), nan_row)
    has_placebo = measured((p_part["r"], p_part["ci_lo"], p_part["ci_hi"]))
    confounded = "the placebo's raw r is also > 0"
    if part["ci_lo"] > 0 and p_part["ci_lo"] <= 0 <= p_part["ci_hi"]:
        verdict, why = REPRODUCED, "partial r > 0 (CI above 0) and the placebo's partial r CI covers 0"
        if p_raw["ci_lo"] > 0:
            why += f"; {confounded}, so raw r alone is genre confounding, not evidence"
    elif raw["ci_lo"] > 0 or part["ci_lo"] > 0:
        verdict = PARTLY
        why = "raw r > 0 but the genre-controlled r is not distinguishable from 0" if part["ci_lo"] <= 0 else \
            "partial r > 0 but the placebo's CI does not cover 0"
        if p_raw["ci_lo"] > 0:
            why += f"; {confounded} (genre confounding)"
    else:
        verdict, why = NOT_REPRODUCED, "no positive correlation with a CI above 0"
    gated = placebo_gate(verdict, has_placebo)
    if gated != verdict:
        which = "partial r" if part["ci_lo"] > 0 else "raw r"
        why = f"{which} > 0 (CI above 0), but no placebo world was measured: at most {NOT_FALSIFIED}"
    return gated, why


def c5_verdict(mmoe_vs_a: Effect, mmoe_vs_dssm: Effect, *placebo_vs_a: Effect) -> str:
    """C5, vertical federated DSSM then MMoE for cold-start users (notebook 07), from paired lifts of
    cold-start listening time: MMoE over the music side alone (A), MMoE over the single-task federated
    DSSM, and each federated model over A in the placebo world (B's features without signal).

    * ``reproduced``: MMoE beats A alone (interval above 0), beats the DSSM (interval above 0), and in the
      placebo world no federated model beats A alone (every interval's lower bound <= 0);
    * ``partly``: the lift over A alone holds, but MMoE adds nothing significant over the DSSM, or a
      placebo model lifts too (the gain is then not only from B's features);
    * ``not reproduced``: no significant lift over A alone;
    * placebo gate: without placebo lifts (none given, or one with a NaN value), ``reproduced`` and
      ``partly`` read ``not falsified``.
    """
    if mmoe_vs_a[1] <= 0:
        verdict = NOT_REPRODUCED
    elif all(p[1] <= 0 for p in placebo_vs_a) and mmoe_vs_dssm[1] > 0:
        verdict = REPRODUCED
    else:
        verdict = PARTLY
    return placebo_gate(verdict, bool(placebo_vs_a) and all(measured(p) for p in placebo_vs_a))


def c6_verdict(cov_lift: Effect, hr_lift: Effect, placebo_cov_lift: Effect | None) -> str:
    """C6, a quota per interest vs a global merge of MIND's per-interest lists (notebook 04), from paired
    lifts of the quota merge over the global merge: interest coverage (true interests in the world; the
    users' most played artists stand in on real data), HitRate@200, and interest coverage in the placebo
    world (single-interest users).

    * ``reproduced``: interest coverage rises (interval above 0) at equal accuracy (the HitRate interval
      reaches 0 or lies above it), and the placebo's coverage gain is smaller with an interval reaching 0;
    * ``partly``: coverage rises but accuracy drops significantly, or the placebo check fails;
    * ``not reproduced``: coverage does not rise;
    * placebo gate: without a measured placebo, ``reproduced`` and ``partly`` read ``not falsified``.
    """
    if cov_lift[1] <= 0:
        verdict = NOT_REPRODUCED
    elif not hr_lift[2] >= 0:  # a significant HitRate loss (or none measurable)
        verdict = PARTLY
    else:
        gone = measured(placebo_cov_lift) and placebo_cov_lift[0] < cov_lift[0] and placebo_cov_lift[1] <= 0  # type: ignore[index]
        verdict = REPRODUCED if gone else PARTLY
    return placebo_gate(verdict, measured(placebo_cov_lift))


def c7_verdict(auc_gain: Mapping[str, float], collect_hit_lift: Effect, placebo_gain: Mapping[str, float] | None,
               aa: Mapping[str, float], full_gain: Mapping[str, float] | None = None,
               full_aa: Mapping[str, float] | None = None) -> str:
    """C7, audio features in the LightGBM ranker (notebook 08), from like-for-like comparisons (the same
    channels in the real and the placebo world, audio preference off), each a
    :func:`musicrecall.evaluation.ranking_stats.seeded_diff` of the pooled collect AUC, with audio minus
    without (``{diff, lo, hi}``, the training-seed noise in its interval); ``aa`` is the A/A control (no
    audio vs no audio, other seeds), ``collect_hit_lift`` the collect hit@10 lift ``(value, lo, hi)``.
    ``full_gain`` / ``full_aa``: the same gain and A/A control for the pipeline with every recall channel
    (seeded too), which the placebo world cannot afford to run.

    A gain *holds* when its interval is above 0 and its point above its *noise floor*, the largest
    difference its A/A control cannot tell from zero, ``max(|aa lo|, |aa hi|)``.

    * ``reproduced``: the real (matched) gain holds, the all-channel gain holds (when given), the collect
      hit@10 lift is positive (point), and the placebo world's interval reaches 0 (no gain);
    * ``partly``: the matched or the all-channel gain holds, but not all of the above (the hit rate does
      not rise, the placebo gains too, or audio helps only one of the two pipelines);
    * ``not reproduced``: neither gain holds;
    * placebo gate: without a measured placebo (``None``, or a NaN ``diff``), ``reproduced`` and
      ``partly`` read ``not falsified``.
    """
    def holds(g: Mapping[str, float], floor: Mapping[str, float] | None) -> bool:
        noise = 0.0 if floor is None else max(abs(floor["lo"]), abs(floor["hi"]))
        return bool(g["lo"] > 0 and g["diff"] > noise)

    gain = holds(auc_gain, aa)
    full = None if full_gain is None else holds(full_gain, full_aa)
    placebo_gains = measured(placebo_gain) and placebo_gain["lo"] > 0  # type: ignore[index]
    if gain and full is not False and collect_hit_lift[0] > 0 and not placebo_gains:
        verdict = REPRODUCED
    else:
        verdict = PARTLY if gain or full else NOT_REPRODUCED
    return placebo_gate(verdict, measured(placebo_gain))
