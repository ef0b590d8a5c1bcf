"""LightGBM ranking on top of the fused recall, with and without audio features (notebook 08, claim C7).

The talk's Q&A: *recall samples are shared across entry points, ranking models use point-wise samples
specific to each entry*, and *audio features are heavily used in ranking models, improving collection
rates and user surprise*. Two kinds of samples, both built for one evaluation stage:

* **impressions** (:func:`impression_samples`): every play of the evaluation window is a point-wise
  sample of its entry point, labelled ``full_play`` and ``collect``. One binary LightGBM per entry and
  label (Ke et al., *LightGBM*, NeurIPS 2017) is trained on the validation window and scored on the
  test window: AUC per entry and pooled.
* **candidates** (:func:`candidate_samples`): the top ``n`` songs of the fused recall per user,
  labelled by a full play / a collect of that song in the window. A point-wise binary model and a
  **LambdaRank** model (Burges, *From RankNet to LambdaRank to LambdaMART*, MSR-TR-2010-82) re-rank them:
  NDCG@10 on full plays, collect hit rate@10 and surprise@10.

**Features** (:func:`build_features`) come only from events *before the cut* of the stage (checked by
:func:`musicrecall.evaluation.check_no_leakage`; tested by perturbing the window): channel scores and
ranks, user and song statistics, user–song history, the user's share of the song's genre / language /
artist, KG attributes (genre, language, version, year, duration) and, in the **audio group** (every
column named ``audio_*``), the song's audio embedding (principal components), whether it has audio
and the cosine between it and the user's recency-weighted audio profile. "Without audio" drops exactly
that group, including the audio recall channel's rank.

**Noise** (:func:`run_ranking`, :func:`~musicrecall.evaluation.ranking_stats.seeded_diff`): LightGBM's bagging and feature sampling make two
fits differ by their seed alone. The models behind a claim are trained with several seeds per arm and
an A/A arm (no audio, other seeds); AUCs are bootstrapped over users with one vectorised weighted
Mann-Whitney pass per score (:func:`musicrecall.evaluation.ranking_stats.boot_aucs`), and the interval
of a difference is widened by the seed spread.

Modules: :mod:`.features`, :mod:`.samples`, :mod:`.lgbm` (training), :mod:`.comparison` (the
with/without-audio experiment; the C7 verdict is in :mod:`musicrecall.report.verdicts`); the statistics
live in :mod:`musicrecall.evaluation.ranking_stats`.
"""

from __future__ import annotations

from musicrecall.ranking.comparison import (
    ARM_SUFFIX,
    audio_comparison,
    audio_selection_check,
    candidate_tables,
    comparison_metrics,
    impression_auc_table,
    known_genre_lookup,
    pooled,
)
from musicrecall.ranking.features import (
    ATTRS,
    AUDIO_PREFIX,
    CATEGORICAL,
    ENTRIES,
    AudioTable,
    affinity_features,
    audio_features,
    build_features,
    events_before,
    feature_columns,
    item_attributes,
    rank_features,
    song_stats,
    user_song_stats,
    user_stats,
)
from musicrecall.ranking.lgbm import (
    Ranker,
    RankingRun,
    arm_seeds,
    feature_matrix,
    fit_all,
    fit_ranker,
    lgb_dataset,
    lgb_params,
    lgb_threads,
    run_ranking,
)
from musicrecall.ranking.samples import (
    StageSamples,
    candidate_samples,
    impression_samples,
    stage_samples,
)

__all__ = [
    "ARM_SUFFIX",
    "ATTRS",
    "AUDIO_PREFIX",
    "AudioTable",
    "CATEGORICAL",
    "ENTRIES",
    "Ranker",
    "RankingRun",
    "StageSamples",
    "affinity_features",
    "arm_seeds",
    "audio_comparison",
    "audio_features",
    "audio_selection_check",
    "build_features",
    "events_before",
    "candidate_samples",
    "candidate_tables",
    "comparison_metrics",
    "feature_columns",
    "feature_matrix",
    "fit_all",
    "fit_ranker",
    "impression_auc_table",
    "impression_samples",
    "item_attributes",
    "known_genre_lookup",
    "lgb_dataset",
    "lgb_params",
    "lgb_threads",
    "pooled",
    "rank_features",
    "run_ranking",
    "song_stats",
    "stage_samples",
    "user_song_stats",
    "user_stats",
]
