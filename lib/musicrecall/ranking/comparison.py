"""The with/without-audio comparison of the rankers (notebook 08; its C7 verdict: musicrecall.report.verdicts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from musicrecall.evaluation import bootstrap_ci
from musicrecall.evaluation.ranking_stats import auc_ci, boot_aucs, paired_lift, per_user_ranking, seeded_diff
from musicrecall.ranking.lgbm import RankingRun, run_ranking
from musicrecall.ranking.samples import StageSamples


def _arm_table(y: np.ndarray, scores: Mapping[object, np.ndarray], users: np.ndarray, n_boot: int, seed: int) -> dict:
    """One row of :func:`impression_auc_table`: seed-mean AUC per arm with its bootstrap interval, the
    audio gain (``diff*``) and, when the A/A arm is there, the A/A difference with the same machinery
    (``aa_*``) and the single-seed A/A difference with a bootstrap-only interval (``aa1_*``, the
    interval the notebook used before training noise was counted)."""
    t = {a: boot_aucs(y, s, users, n_boot, seed) for a, s in scores.items()}
    row = {}
    for a, name in ((True, "audio"), (False, "no_audio")):
        m = t[a].mean(axis=0)
        row.update({f"auc_{name}": float(m[0]), **dict(zip((f"ci_lo_{name}", f"ci_hi_{name}"),
                                                            np.nanquantile(m[1:], [0.025, 0.975]).tolist(), strict=True))})
    d = seeded_diff(t[True], t[False])
    row.update({"diff": d["diff"], "diff_lo": d["lo"], "diff_hi": d["hi"], "diff_boot_lo": d["boot_lo"],
                "diff_boot_hi": d["boot_hi"], "diff_sd_seed": d["sd_seed"], "n_seeds": t[True].shape[0]})
    if "aa" in t:
        aa, aa1 = seeded_diff(t["aa"], t[False]), seeded_diff(t["aa"][:1], t[False][:1])
        row.update({"aa_diff": aa["diff"], "aa_lo": aa["lo"], "aa_hi": aa["hi"], "aa_sd_seed": aa["sd_seed"],
                    "aa1_diff": aa1["diff"], "aa1_lo": aa1["lo"], "aa1_hi": aa1["hi"]})
    return row


def impression_auc_table(test: StageSamples, run: RankingRun, n_boot: int = 1000, seed: int = 0,
                         per_entry: bool = True) -> pl.DataFrame:
    """AUC (full play, collect) with and without audio and their paired difference (seed noise included,
    :func:`seeded_diff`): pooled (``all``), on the impressions of songs that have audio
    (``songs_with_audio``) and of songs without (``songs_without_audio``: every audio feature is constant
    there, so a difference is not audio information about the song) and, with ``per_entry``, per entry."""
    df = test.impressions
    masks = {"all": np.ones(df.height, bool)}
    if "audio_has" in df.columns:  # audio features vary only on songs with audio; elsewhere they are constant
        masks["songs_with_audio"] = df["audio_has"].to_numpy() > 0
        masks["songs_without_audio"] = ~masks["songs_with_audio"]
    if per_entry:
        masks.update({e: (df["entry"] == e).to_numpy() for e in sorted(df["entry"].unique().to_list())})
    rows = []
    for entry, mask in masks.items():
        for label in sorted({lab for lab, _ in run.impressions}, key=["full_play", "collect"].index):
            y = df[label].to_numpy()[mask]
            if y.min(initial=1) == y.max(initial=0):
                continue
            scores = {a: p[:, mask] for (lab, a), p in run.impressions.items() if lab == label}
            rows.append({"entry": entry, "label": label, "samples": int(mask.sum()), "positives": int(y.sum()),
                         **_arm_table(y, scores, df["user_id"].to_numpy()[mask], n_boot, seed)})
    return pl.DataFrame(rows)


ARM_SUFFIX = {True: "", False: "_no_audio", "aa": "_aa"}


def candidate_tables(test: StageSamples, run: RankingRun, known: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     k: int = 10, n_boot: int = 1000, seed: int = 0) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Per-user NDCG@k / collect hit@k / surprise@k of the fused order and each re-ranker (``<model>``,
    ``<model>_no_audio``, ``<model>_aa``); returns the summary (per-user values averaged over training
    seeds, bootstrap CIs over users) and the per-user frames with a ``rep`` column (the seed's index)."""
    cand = test.candidates
    orders = {"fused_order": -cand["cand_rank"].to_numpy().astype(np.float64)[None, :]}
    for (name, arm), p in run.candidates.items():
        orders[f"{name}{ARM_SUFFIX[arm]}"] = p
    per_user, rows = {}, []
    for name, s in orders.items():
        pu = pl.concat([per_user_ranking(cand, row, known, k).with_columns(rep=pl.lit(r)) for r, row in enumerate(s)])
        per_user[name] = pu
        mean = pu.group_by("user_id").agg(pl.col("ndcg", "collect_hit", "surprise").mean()).sort("user_id")
        for m in ("ndcg", "collect_hit", "surprise"):
            v = mean[m].drop_nulls().drop_nans().to_numpy()
            mu, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed) if len(v) else (np.nan,) * 3
            rows.append({"model": name, "metric": f"{m}@{k}", "mean": mu, "ci_lo": lo, "ci_hi": hi, "n_users": len(v),
                         "n_seeds": s.shape[0]})
    return pl.DataFrame(rows), per_user


def audio_comparison(train: StageSamples, test: StageSamples, known: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     *, rounds: int = 150, seed: int = 0, n_seeds: int = 3, n_boot: int = 1000, per_entry: bool = False,
                     seeded: Sequence[str] = ("collect",), labels: Sequence[str] = ("full_play", "collect"),
                     cand_models: Sequence[str] = ("lambdarank", "collect"), cand_seeds: int | None = None) -> dict:
    """One with/without-audio comparison (the same code for every world and pipeline): the ranking run,
    the impression AUC table, the candidate table and the paired lifts of collect hit@10 (``collect_hit``;
    its A/A control ``aa_collect_hit``) and LambdaRank NDCG@10 (``ndcg``)."""
    run = run_ranking(train, test, rounds, seed, n_seeds, seeded=seeded, labels=labels, cand_models=cand_models,
                      cand_seeds=cand_seeds)
    cand, pu = candidate_tables(test, run, known, n_boot=n_boot, seed=seed)
    lift = lambda a, b, m: paired_lift(pu, a, b, m, n_boot=n_boot, seed=seed) if a in pu and b in pu else (np.nan,) * 3  # noqa: E731
    return {"run": run, "auc": impression_auc_table(test, run, n_boot, seed, per_entry=per_entry), "cand": cand,
            "per_user": pu, "collect_hit": lift("collect", "collect_no_audio", "collect_hit"),
            "aa_collect_hit": lift("collect_aa", "collect_no_audio", "collect_hit"),
            "ndcg": lift("lambdarank", "lambdarank_no_audio", "ndcg"),
            "surprise": lift("lambdarank", "lambdarank_no_audio", "surprise")}


def pooled(tbl: pl.DataFrame, label: str = "collect", entry: str = "all", kind: str = "diff") -> dict[str, float]:
    """``{diff, lo, hi}`` of one row of :func:`impression_auc_table`: ``kind`` ``"diff"`` (audio gain),
    ``"aa"`` (A/A control, same machinery) or ``"aa1"`` (single-seed A/A, bootstrap-only interval)."""
    cols = {"diff": ("diff", "diff_lo", "diff_hi"), "aa": ("aa_diff", "aa_lo", "aa_hi"),
            "aa1": ("aa1_diff", "aa1_lo", "aa1_hi")}[kind]
    r = tbl.filter((pl.col("entry") == entry) & (pl.col("label") == label))
    if r.height == 0 or cols[0] not in r.columns:
        return dict.fromkeys(("diff", "lo", "hi"), float("nan"))
    return {k: float("nan") if r[c][0] is None else float(r[c][0]) for k, c in zip(("diff", "lo", "hi"), cols, strict=True)}


def comparison_metrics(cmp: Mapping) -> dict[str, tuple[float, float, float]]:
    """The headline figures of an :func:`audio_comparison` as ``{name: (value, lo, hi)}``: AUC gains and
    A/A differences per label, pooled and on the songs with audio, and the collect hit@10 / NDCG@10 lifts."""
    out = {}
    for label in ("full_play", "collect"):
        for entry in ("all", "songs_with_audio"):  # the C7 verdict reads songs_with_audio
            for kind, tag in (("diff", "audio"), ("aa", "aa")):
                d = pooled(cmp["auc"], label, entry=entry, kind=kind)
                out[f"auc_{label}_{entry}_{tag}_diff"] = (d["diff"], d["lo"], d["hi"])
    return out | {f"audio_lift_{k}": tuple(cmp[k]) for k in ("collect_hit", "aa_collect_hit", "ndcg")}


def audio_selection_check(samples: StageSamples) -> dict[str, float]:
    """What the audio group says besides sound, over the distinct candidate songs of a stage:
    ``pop_auc_has`` = AUC of the song's plays before the cut for telling songs with audio from songs
    without (0.5 = audio songs are a popularity-neutral set), ``audio_cold_share`` = share of the songs
    with audio that have no play before the cut, and ``pcs_pop_r2`` = R² of log(1 + plays) on the audio
    principal components over the songs with audio (0 = the components carry no popularity)."""
    songs = samples.candidates.unique("song_id").with_columns(pl.col("s_plays").fill_null(0))
    has = songs["audio_has"].to_numpy() > 0
    plays = songs["s_plays"].to_numpy().astype(np.float64)
    pcs = songs.filter(pl.Series(has)).select(pl.col("^audio_pc.*$")).to_numpy().astype(np.float64)
    x, y = np.c_[np.ones(len(pcs)), pcs], np.log1p(plays[has])
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    ok = 0 < has.sum() < len(has)
    return {"songs": len(has), "with_audio": int(has.sum()),
            "pop_auc_has": float(auc_ci(has.astype(float), {"p": plays}, np.arange(len(has)), n_boot=1)[0]["p"][0]) if ok else np.nan,
            "audio_cold_share": float((plays[has] == 0).mean()) if has.any() else np.nan,
            "pcs_pop_r2": float(1 - (resid ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)) if has.sum() > pcs.shape[1] + 1 else np.nan}


def known_genre_lookup(fit: pl.DataFrame, items: pl.DataFrame) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``known(users, songs)``: the song's genre is one the user full-played before the cut."""
    it = items.select(pl.col("song_id").cast(pl.Int64), "genre")
    kg = (fit.filter(pl.col("full_play").fill_null(False)).select("user_id", pl.col("song_id").cast(pl.Int64))
          .join(it, on="song_id").select("user_id", "genre").unique().with_columns(k=pl.lit(1.0)))

    def known(users: np.ndarray, songs: np.ndarray) -> np.ndarray:
        q = pl.DataFrame({"user_id": users, "song_id": songs.astype(np.int64)}).join(it, on="song_id", how="left")
        return q.join(kg, on=["user_id", "genre"], how="left", maintain_order="left")["k"].fill_null(0.0).to_numpy()

    return known
