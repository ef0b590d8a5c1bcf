"""Knowledge-graph Song2Vec (the talk's section 2.1): corpora, training, item-to-item recall, BadCase.

* :mod:`musicrecall.corpus` (data layer, shared with Spark, EGES and GraphSAGE; its names are re-exported
  here) — session sentences and gamma-weighted relation walks (the exact formulation);
* :mod:`.song2vec` — gensim skip-gram training, song vectors, cold songs through entities;
* :mod:`.recall` — faiss i2i table and the merge over a user's recent full plays;
* :mod:`.badcase` — the BadCase rate and the side-by-side neighbour table;
* :mod:`.pipeline` — tuning, gamma sweep and slices used by notebook 02 (its C1 verdict: :mod:`musicrecall.report.verdicts`).
"""

from musicrecall.corpus import (
    DEFAULT_WEIGHTS,
    SONG_PREFIX,
    Corpus,
    KGConfig,
    build_corpus,
    relation_walks,
    session_sentences,
    triples_from_items,
)
from musicrecall.kg.badcase import (
    attribute_codes,
    badcase_per_seed,
    badcase_seeds,
    catalogue_relations,
    neighbours_side_by_side,
    true_codes,
)
from musicrecall.kg.pipeline import (
    GAMMAS,
    TUNE_GRID,
    WEIGHT_GRID,
    Fitted,
    RecallConfig,
    auto_gammas,
    auto_tune_grid,
    auto_weight_grid,
    badcase_summary,
    evaluate_models,
    fit_model,
    gamma_sweep,
    lift,
    load_choice,
    median_popularity_rank,
    neighbour_slot_shares,
    present_relations,
    quick_hr,
    rate_change,
    restricted_table,
    save_choice,
    slice_eval,
    song_groups,
    tune_song2vec,
    weight_candidates,
    weight_search,
)
from musicrecall.kg.recall import (
    ItemToItemRecall,
    NeighbourTable,
    neighbour_table,
    recent_seeds,
    topk_from_candidates,
)
from musicrecall.kg.song2vec import (
    Song2VecConfig,
    SongEmbedding,
    entity_mean_vectors,
    fit_song2vec,
    train_word2vec,
)

__all__ = [
    "DEFAULT_WEIGHTS", "SONG_PREFIX", "WEIGHT_GRID", "auto_weight_grid", "GAMMAS", "TUNE_GRID",
    "auto_gammas", "auto_tune_grid", "Corpus", "Fitted", "ItemToItemRecall", "KGConfig", "RecallConfig",
    "NeighbourTable", "Song2VecConfig", "SongEmbedding", "attribute_codes", "badcase_per_seed", "badcase_seeds", "badcase_summary",
    "build_corpus", "catalogue_relations", "entity_mean_vectors", "evaluate_models", "fit_model", "fit_song2vec",
    "gamma_sweep", "lift", "rate_change", "load_choice", "save_choice", "median_popularity_rank", "neighbour_slot_shares", "neighbour_table",
    "neighbours_side_by_side", "present_relations",
    "quick_hr", "recent_seeds",
    "relation_walks", "restricted_table", "session_sentences", "slice_eval", "song_groups", "topk_from_candidates",
    "train_word2vec", "triples_from_items", "true_codes", "tune_song2vec", "weight_candidates", "weight_search",
]
