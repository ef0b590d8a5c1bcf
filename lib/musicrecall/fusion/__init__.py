"""Multi-channel recall fusion with per-channel quotas (notebook 08; the talk's Q&A).

The Q&A of the talk: recall samples are shared by every entry point; **long-term** interest comes from
deep sequence models, **short-term** interest from *single-point* recall on the last few plays, and
each interest cluster gets a **quota**. Here each recall channel is a :data:`Channel`, a function
``(users, k, exclude) -> (song ids [U, k], scores [U, k])`` (``-1`` / ``-inf`` for empty slots), and
:func:`~musicrecall.fusion.merge.merge_channel_lists` fuses them:

* channel ``c`` gets ``q_c`` of the ``k`` slots (:func:`channel_quotas`, largest remainder, Σ q_c = k);
* slots are handed out in the *smooth interleave* order of the quotas: the next slot goes to the channel
  with the smallest ``(taken_c + ½) / q_c``, so each channel advances at the pace of its quota;
* a song already taken is skipped, the channel moves down its own list (**de-duplication**; the channel
  that reached a song first keeps it);
* a channel that runs short gives its unused slots back: they go to the channels that still have
  candidates (in the same interleave order), then to the **back-fill** list (popularity), so every list
  is full whenever the catalogue allows.

The channels (thin adapters, so the notebooks that own the models can change their internals):
:class:`ShortTermI2I` (KG Song2Vec neighbours of the last ``n_recent`` full plays, recency-weighted),
:func:`embedding_channel` (SASRec long-term, federated DSSM), :func:`mind_quota_channel` (MIND
interests, each with its own quota), :class:`ShortTermI2I` over audio neighbours (audio i2i) and
:func:`popularity_channel`. :func:`memoize` keeps one channel's lists so that the evaluation, the
beyond-accuracy metrics and the ranking samples do not recompute them.

Modules: :mod:`.merge` (quotas, the merge, :class:`FusedRecall`), :mod:`.channels` (channels and the pair
scorers of the same models), :mod:`.adapters` (the models of notebooks 02-07), :mod:`.stage` (one stage's
channels and scorers), :mod:`.metrics` (beyond accuracy, contributions, per-entry hit rates).
"""

from __future__ import annotations

from musicrecall.fusion.adapters import (
    DSSMVectors,
    SequenceChannel,
    audio_adapter,
    federated_dssm_adapter,
    kg_vectors,
    mind_adapter,
    sasrec_adapter,
)
from musicrecall.fusion.channels import (
    PairScorer,
    ShortTermI2I,
    audio_neighbour_table,
    cold_users_mask,
    compact_rows,
    csr_contains,
    dot_scorer,
    embedding_channel,
    max_interest_scorer,
    memoize,
    mind_quota_channel,
    neighbour_table_for,
    popularity_channel,
    profile_scorer,
    recent_plays,
)
from musicrecall.fusion.inputs import missing_inputs
from musicrecall.fusion.merge import (
    Channel,
    FusedRecall,
    as_recommend,
    channel_quotas,
    merge_channel_lists,
)
from musicrecall.fusion.metrics import (
    beyond_accuracy_table,
    contribution,
    entry_hitrates,
    known_genres,
    list_beyond_accuracy,
)
from musicrecall.fusion.stage import (
    RecallStage,
    build_stage,
    restrict_stage,
)

__all__ = [
    "missing_inputs",
    "Channel",
    "DSSMVectors",
    "FusedRecall",
    "PairScorer",
    "RecallStage",
    "SequenceChannel",
    "ShortTermI2I",
    "as_recommend",
    "audio_adapter",
    "audio_neighbour_table",
    "beyond_accuracy_table",
    "build_stage",
    "channel_quotas",
    "cold_users_mask",
    "compact_rows",
    "contribution",
    "csr_contains",
    "dot_scorer",
    "embedding_channel",
    "entry_hitrates",
    "federated_dssm_adapter",
    "kg_vectors",
    "known_genres",
    "list_beyond_accuracy",
    "max_interest_scorer",
    "memoize",
    "merge_channel_lists",
    "mind_adapter",
    "mind_quota_channel",
    "neighbour_table_for",
    "popularity_channel",
    "profile_scorer",
    "recent_plays",
    "restrict_stage",
    "sasrec_adapter",
]
