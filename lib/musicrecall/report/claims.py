"""The talk's seven claims (``../shared/claims.md``): the rows of the claims ledger."""

from __future__ import annotations

from dataclasses import dataclass

VERDICTS = ("reproduced", "partly", "not falsified", "not reproduced")
# Verdicts that count as (some) support for the claim. They need a placebo: without one (real data has
# no placebo world, or the placebo was not run) a claim can at most be "not falsified".
SUPPORTING = ("reproduced", "partly")
NOT_FALSIFIED = "not falsified"


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    talk_figure: str
    measured_as: str
    notebook: str
    short: str = ""  # a few words for the one-screen summary


CLAIMS: tuple[Claim, ...] = (
    Claim("C1", "Knowledge-graph Song2Vec (relations weighted by gamma) raises recall accuracy and lowers "
          "the BadCase rate compared with plain Song2Vec", 'qualitative ("Dong Feng Po" example)',
          "HitRate@200 lift and BadCase-rate drop, KG vs plain; placebo: KG relevance off", "02", "KG Song2Vec beats plain Song2Vec"),
    Claim("C2", "SASRec with shared item/user embeddings beats a YouTube-DNN baseline",
          "23.72% vs 21.25% (+11.6% relative)",
          "relative HitRate lift, SASRec vs YouTube-DNN; placebo: order/sequence effect off", "03", "SASRec beats YouTube-DNN"),
    Claim("C3", "MIND with side info concatenated to song ids and re-initialised routing logits improves "
          "recall and song-embedding clustering", "Hitrate@200 = 25.2%",
          "ablation of HitRate@200, and silhouette/NMI against genre; placebo: single-interest users", "04", "MIND with side info and routing re-init"),
    Claim("C4", "Audio similarity correlates positively with users' full-play rate", "Pearson r > 0",
          "r between a candidate's audio similarity to the user's recent full plays and its full-play rate; "
          "placebo: audio-style preference off", "06", "audio similarity tracks full plays"),
    Claim("C5", "Vertical federated DSSM, then MMoE, lifts cold-start listening",
          "about +10% per-user listening duration",
          "cold-start lift over the music side alone; centralised model as the upper bound; placebo: "
          "cross-business features without signal", "07", "federated DSSM/MMoE lifts cold start"),
    Claim("C6", "A quota per interest cluster keeps multi-interest recall fair and diverse", "qualitative",
          "interest coverage and genre diversity at equal HitRate@200, quota vs global merge", "04", "per-interest quotas keep recall diverse"),
    Claim("C7", "Audio features in the ranking model raise the collection rate (and surprise)", "qualitative",
          "collect AUC and hit rate, and NDCG@10, of LightGBM with vs without audio features", "08", "audio features help ranking"),
)

CLAIMS_BY_ID = {c.id: c for c in CLAIMS}
