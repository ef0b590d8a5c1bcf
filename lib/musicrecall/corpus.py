"""Training corpora for Song2Vec and knowledge-graph Song2Vec.

**Session corpus** (Song2Vec; Caselles-Dupré, Lesaint & Royo-Letelier, *Word2vec applied to
recommendation: hyperparameters matter*, RecSys 2018): one sentence per cleaned listening session, the
session's *full plays* in time order, consecutive repeats of the same song collapsed, sessions with
fewer than ``min_len`` songs dropped (they give no skip-gram pair). Songs are tokens ``"song:<id>"``,
the head format of :data:`musicrecall.schema.TRIPLES_SCHEMA`. Sentence order is a seeded shuffle.

**KG relation walks** (the talk's section 2.1, relations weighted by gamma). Entity tokens (the
tails of the triples: ``artist:…``, ``album:…``, ``genre:…``, ``language:…``, ``version:…``) share the
vocabulary with songs. For every song triple ``(s, r, e)`` the song is stated

    c(s, r) = SR( gamma * w_r * n_0 )                    (default, ``per_play=False``)
    c(s, r) = SR( gamma * w_r * (n_s + n_0) )            (ablation, ``per_play=True``)

times next to its entity, where ``w_r`` is the per-relation weight, ``n_0`` a pseudo-count
(``prior_count``, default 10), ``n_s`` the number of occurrences of ``s`` in the session corpus and
``SR`` seeded stochastic rounding (``floor(x) + Bernoulli(frac(x))``). By default the KG is a *prior of
fixed strength*: every song gets the same ``gamma * w_r * n_0`` statements, so relations dominate for
songs with few plays and fade for songs the sessions already pin down (and the extra cost does not
grow with the log). The per-play variant scales relations with the sessions instead; on the simulated
world (profile small, validation window) it gave no HitRate gain. The statements
of one entity are shuffled and cut into *walks* of ``walk_len`` songs with the entity token before every
``entity_every``-th song, ``[e, s1, s2, s3, s4, e, s5, …]`` for the default ``entity_every = 4`` (a one-hop
metapath song–entity–song, cf. DeepWalk / metapath2vec): inside a window, a song is context of its
entity and of other songs of that entity. Putting the entity before every song (``entity_every = 1``)
doubles the walk tokens; on the simulated world (small, validation window, gamma 0.3, the weights before
album was dropped, one run each on a shared machine) it cost 2.9x plain training instead of 1.65x for about the same HitRate@200 (0.845 vs
0.840) and a BadCase rate of 0.7% instead of 3.7% (plain: 36%).

**Cost.** Training time grows with the skip-gram pairs, not the tokens: a walk token has more context
in its window than a token of a short session, and walk pairs ran about 1.25x slower per pair than
session pairs (bench). Walks shorter than 16 songs, ``[e, s]`` pairs, songs grouped by album inside
walks, statements that fade with a song's plays and an entity token in the middle of each group were
all tried on the validation window and gave a higher BadCase rate for the same pairs. Entity–entity triples
(e.g. ``artist_genre``) are stated ``SR(gamma * w_r * n_0)`` times as two-token sentences. Walks are
inserted at seeded random positions among the sessions, so the learning-rate schedule treats them like
sessions.

``gamma = 0`` adds no walk and leaves the session corpus (and its order) untouched, so training on it
is *exactly* plain Song2Vec (same vocabulary, same seed → same vectors with one worker).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

# Token format and minimum session length are corpus rules shared with the Spark engine.
from musicrecall.cache import IdentityMemo
from musicrecall.rules import CORPUS_MIN_LEN, SONG_PREFIX

# Per training token, artist, genre and language statements bought the most (validation window, profile
# small): an album sits inside one artist, so its statements mostly repeat the artist's; dropping them
# kept HitRate@200 and cut the walk cost by a third. A version ("live", "cover") says almost nothing.
DEFAULT_WEIGHTS: dict[str, float] = {"song_artist": 1.0, "song_album": 0.0, "song_genre": 1.0,
                                     "song_language": 1.0, "song_version": 0.1, "artist_genre": 0.5}


@dataclass(frozen=True)
class KGConfig:
    """How relations enter training (see the module docstring for the formula)."""

    gamma: float = 0.0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    default_weight: float = 0.5  # relations not named in ``weights`` (real KGs have their own)
    prior_count: float = 10.0  # n_0
    per_play: bool = False  # True: c(s, r) = SR(gamma * w_r * (n_s + n_0)), relations scale with plays
    walk_len: int = 16  # songs per walk
    entity_every: int = 4  # the entity token before every k-th song of a walk (1: [e, s1, e, s2, …])

    def weight(self, relation: str) -> float:
        """``w_r`` of a relation."""
        return float(self.weights.get(relation, self.default_weight))


@dataclass
class Corpus:
    """Sentences of tokens, and how many of them are sessions vs relation walks."""

    sentences: list[list[str]]
    n_sessions: int
    n_walks: int
    song_counts: np.ndarray  # int64 [n_items]: occurrences of each song in the session sentences
    n_short_sessions: int = 0  # sessions with full plays but fewer than ``min_len`` songs (dropped)

    @property
    def n_tokens(self) -> int:
        return int(sum(len(s) for s in self.sentences))

    def digest(self) -> str:
        """Content hash of the sentences (order included), for caches."""
        h = hashlib.sha256()
        for s in self.sentences:
            h.update(" ".join(s).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]


def song_tokens(ids: np.ndarray) -> np.ndarray:
    """``"song:<id>"`` tokens (object array)."""
    return np.char.add(SONG_PREFIX, np.asarray(ids).astype(np.int64).astype(str)).astype(object)


def session_frame(events: pl.DataFrame, min_len: int = CORPUS_MIN_LEN, *, keep_short: bool = False) -> pl.DataFrame:
    """One row per kept session: ``session_id`` and ``songs`` (list of song ids in play order);
    ``keep_short`` also keeps the sessions shorter than ``min_len``."""
    ev = events.filter(pl.col("full_play").fill_null(False)).sort("session_id", "ts")
    # a song replayed back to back is one listening moment, not a co-occurrence
    ev = ev.filter((pl.col("song_id") != pl.col("song_id").shift(1))
                   | (pl.col("session_id") != pl.col("session_id").shift(1)) | pl.col("song_id").shift(1).is_null())
    sess = ev.group_by("session_id", maintain_order=True).agg(pl.col("song_id").alias("songs"))
    return sess if keep_short else sess.filter(pl.col("songs").list.len() >= min_len)


# session_sentences' results of this process, by the identity of the events frame and the arguments: notebook
# 02's fits on one window (tuning, relation weights, gamma sweep) all start from the same session corpus, about
# a second of CPU each to rebuild.
_SESSIONS_MEMO = IdentityMemo(size=3)


def session_sentences(events: pl.DataFrame, n_items: int, min_len: int = CORPUS_MIN_LEN, seed: int = 0) -> Corpus:
    """The plain Song2Vec corpus (seeded shuffle of the session sentences); the same call twice in one process
    builds it once (each call gets its own sentence list and counts)."""
    c = _SESSIONS_MEMO.get((events,), (n_items, min_len, seed),
                           lambda: _session_sentences(events, n_items, min_len, seed))
    return Corpus(list(c.sentences), c.n_sessions, c.n_walks, c.song_counts.copy(), c.n_short_sessions)


def _session_sentences(events: pl.DataFrame, n_items: int, min_len: int, seed: int) -> Corpus:
    every = session_frame(events, min_len, keep_short=True)
    sess = every.filter(pl.col("songs").list.len() >= min_len)
    flat = sess["songs"].explode().to_numpy().astype(np.int64)
    counts = np.bincount(flat, minlength=n_items).astype(np.int64)
    lengths = sess["songs"].list.len().to_numpy()
    tokens = np.split(song_tokens(flat), np.cumsum(lengths)[:-1]) if len(lengths) else []
    order = np.random.default_rng([seed, 0]).permutation(len(tokens))
    return Corpus([tokens[i].tolist() for i in order], len(tokens), 0, counts, every.height - sess.height)


def check_sessions(corpus: Corpus, min_len: int = CORPUS_MIN_LEN) -> None:
    """Raise a clear error when no session gives a skip-gram pair (gensim would only say "you must first
    build vocabulary"): it names the cause and the parameter to change."""
    if corpus.n_sessions > 0:
        return
    raise ValueError(
        f"Song2Vec: empty session corpus: none of the {corpus.n_short_sessions:,} sessions with a full play has "
        f"{min_len} or more distinct consecutive full plays, so there is no skip-gram pair to train on. Sessions are "
        "cut where the gap between plays exceeds `session_gap_min` (musicrecall.rules.CleaningConfig, a notebook "
        "parameter): raise it (a log with one play per session needs a wider gap). For order-only data (no clock) "
        "a session is the user's plays in order; check that the import kept the order and that plays are full plays.")


def _stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = np.floor(x)
    return (base + (rng.random(x.shape[0]) < x - base)).astype(np.int64)


def song_triples(triples: pl.DataFrame) -> pl.DataFrame:
    """Triples whose head is a song: ``song_id`` (Int64), ``relation``, ``tail``."""
    return (triples.filter(pl.col("head").str.starts_with(SONG_PREFIX))
            .select(pl.col("head").str.strip_prefix(SONG_PREFIX).cast(pl.Int64, strict=False).alias("song_id"),
                    "relation", "tail")
            .drop_nulls())


def relation_walks(triples: pl.DataFrame, song_counts: np.ndarray, cfg: KGConfig, seed: int = 0) -> list[list[str]]:
    """Relation walks ``[e, s1, e, s2, …]`` and entity–entity sentences at rate gamma (module docstring)."""
    if cfg.gamma <= 0 or triples.height == 0:
        return []
    rng = np.random.default_rng([seed, 1])
    st = song_triples(triples).filter(pl.col("song_id") < len(song_counts))
    w = np.array([cfg.weight(r) for r in st["relation"].to_list()], dtype=np.float64)
    sid = st["song_id"].to_numpy()
    plays = song_counts[sid] if cfg.per_play else 0
    copies = _stochastic_round(cfg.gamma * w * (plays + cfg.prior_count), rng)
    rows = np.repeat(np.arange(st.height), copies)
    tail = st["tail"].to_numpy().astype(object)[rows]
    song = song_tokens(sid[rows])
    # group statements by entity, random order inside an entity, then cut into walks
    ent_code = np.unique(tail, return_inverse=True)[1] if len(tail) else np.zeros(0, dtype=np.int64)
    order = np.lexsort((rng.random(len(rows)), ent_code))
    ent_code, tail, song = ent_code[order], tail[order], song[order]
    first = np.r_[True, ent_code[1:] != ent_code[:-1]] if len(rows) else np.zeros(0, dtype=bool)
    start_of_group = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    walk_id = np.cumsum(first | ((np.arange(len(rows)) - start_of_group) % cfg.walk_len == 0)) - 1
    # the entity token goes before the 1st, (1 + k)th, (1 + 2k)th … song of a walk (k = entity_every)
    walk_start = np.r_[True, walk_id[1:] != walk_id[:-1]] if len(rows) else np.zeros(0, dtype=bool)
    pos_in_walk = np.arange(len(rows)) - np.maximum.accumulate(np.where(walk_start, np.arange(len(rows)), 0))
    with_ent = pos_in_walk % cfg.entity_every == 0
    song_slot = np.arange(len(rows)) + np.cumsum(with_ent)
    flat = np.empty(len(rows) + int(with_ent.sum()), dtype=object)
    flat[song_slot], flat[song_slot[with_ent] - 1] = song, tail[with_ent]
    walks = [w.tolist() for w in np.split(flat, song_slot[walk_start][1:] - 1)] if len(rows) else []
    ent = triples.filter(~pl.col("head").str.starts_with(SONG_PREFIX))
    if ent.height:
        we = np.array([cfg.weight(r) for r in ent["relation"].to_list()], dtype=np.float64)
        ec = _stochastic_round(cfg.gamma * we * cfg.prior_count, rng)
        er = np.repeat(np.arange(ent.height), ec)
        heads, tails = ent["head"].to_numpy()[er], ent["tail"].to_numpy()[er]
        walks.extend([[h, t] for h, t in zip(heads.tolist(), tails.tolist(), strict=True)])
    return walks


def build_corpus(events: pl.DataFrame, triples: pl.DataFrame, n_items: int, cfg: KGConfig | None = None,
                 min_len: int = CORPUS_MIN_LEN, seed: int = 0) -> Corpus:
    """Session sentences plus, when ``cfg.gamma > 0``, relation walks inserted at random positions."""
    plain = session_sentences(events, n_items, min_len, seed)
    walks = relation_walks(triples, plain.song_counts, cfg or KGConfig(), seed)
    if not walks:
        return plain
    pos = np.random.default_rng([seed, 2]).integers(0, plain.n_sessions + 1, len(walks))
    keys = np.concatenate([np.arange(plain.n_sessions, dtype=np.float64), pos - 0.5])
    order = np.argsort(keys, kind="stable")
    allsent = plain.sentences + walks
    return Corpus([allsent[i] for i in order], plain.n_sessions, len(walks), plain.song_counts, plain.n_short_sessions)


def triples_from_items(items: pl.DataFrame) -> pl.DataFrame:
    """KG triples derived from the items table (for datasets shipped without a triples file)."""
    head = pl.lit(SONG_PREFIX) + pl.col("song_id").cast(pl.String)
    parts = [items.filter(pl.col(c).is_not_null()).select(head.alias("head"), pl.lit(f"song_{c}").alias("relation"),
                                                           (pl.lit(f"{c}:") + pl.col(c).cast(pl.String)).alias("tail"))
             for c in ("artist", "album", "genre", "language", "version") if c in items.columns]
    return pl.concat(parts) if parts else pl.DataFrame(schema={"head": pl.String, "relation": pl.String, "tail": pl.String})
