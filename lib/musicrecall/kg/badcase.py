"""BadCase rate: how often a song's nearest neighbours are obviously unrelated to it.

**Definition.** For a seed song ``s`` with top-10 neighbours ``N(s)`` (cosine, among the songs both
compared models can embed), a neighbour ``j`` is a *bad case* when it shares **none** of the catalogue
relations the data has with ``s``: artist, album, genre, language (an attribute that is unknown for
either song cannot be shared). On the simulated world an album sits inside one artist, so this is the
talk's genre / language / artist rule; on a real log with only song->artist/album maps it is "neither
the same artist nor the same album" (:func:`catalogue_relations` says which relations were found). The
BadCase rate of a model is the mean over seeds of ``|{j in N(s): bad(s, j)}| / |N(s)|``; seeds are a
seeded uniform sample of embedded songs. Attributes are the *published* ones (the items table), as an
editor would judge. On the simulated world the **true-style mismatch** rate applies the same rule to
the songs' latent genre and language (``truth["song_style"].pref_cluster``): unlike the published
attributes it cannot be gamed by a model that merely copies the KG, which matters in the placebo world.
"""

from __future__ import annotations

import numpy as np
import polars as pl

BADCASE_ATTRS = ("genre", "language", "artist")
# Relations of the catalogue a song may have (items columns, or song triples ``song_<relation>``).
RELATIONS = ("artist", "album", "genre", "language")


def attribute_codes(items: pl.DataFrame, n_items: int, columns: tuple[str, ...] = BADCASE_ATTRS) -> dict[str, np.ndarray]:
    """Integer codes per song id for each column that has at least one value (``-1`` = unknown)."""
    out = {}
    for col in columns:
        if col not in items.columns or items[col].null_count() == items.height:
            continue
        codes = np.full(n_items, -1, dtype=np.int64)
        vals = items.select("song_id", pl.col(col).cast(pl.String)).drop_nulls()
        _, inv = np.unique(vals[col].to_numpy().astype(str), return_inverse=True)
        codes[vals["song_id"].to_numpy()] = inv
        out[col] = codes
    return out


def catalogue_relations(items: pl.DataFrame, n_items: int, triples: pl.DataFrame | None = None,
                        relations: tuple[str, ...] = RELATIONS) -> dict[str, np.ndarray]:
    """Codes per song id (``-1`` = unknown) of every catalogue relation the data has.

    A relation comes from the items column of that name when it has a value, else from the song triples
    ``song_<relation>`` (one tail per song: the first). Relations with fewer than two distinct values say
    nothing about a song and are left out; an empty dict means the data has no catalogue relation at all.
    """
    out = attribute_codes(items, n_items, tuple(r for r in relations if r in items.columns))
    if triples is not None and triples.height:
        from musicrecall.corpus import song_triples

        st = song_triples(triples).filter(pl.col("song_id") < n_items)
        for rel in relations:
            if rel in out:
                continue
            part = st.filter(pl.col("relation") == f"song_{rel}").unique("song_id", keep="first", maintain_order=True)
            if part.height == 0:
                continue
            codes = np.full(n_items, -1, dtype=np.int64)
            codes[part["song_id"].to_numpy()] = np.unique(part["tail"].to_numpy().astype(str), return_inverse=True)[1]
            out[rel] = codes
    return {r: c for r, c in out.items() if np.unique(c[c >= 0]).shape[0] >= 2}


def true_codes(song_style: pl.DataFrame, n_items: int, n_languages: int) -> dict[str, np.ndarray]:
    """Latent genre and language per song id from the world's ``pref_cluster = genre * n_lang + lang``."""
    cl = np.full(n_items, -1, dtype=np.int64)
    cl[song_style["song_id"].to_numpy()] = song_style["pref_cluster"].to_numpy()
    return {"true_genre": np.where(cl >= 0, cl // n_languages, -1), "true_language": np.where(cl >= 0, cl % n_languages, -1)}


def badcase_per_seed(seeds: np.ndarray, neighbours: np.ndarray, codes: dict[str, np.ndarray]) -> np.ndarray:
    """Share of bad neighbours per seed (float64 [len(seeds)], NaN for a seed without neighbours).

    ``neighbours[i]`` are the neighbour ids of ``seeds[i]`` (``-1`` = empty slot).
    """
    if not codes:
        raise ValueError("no attribute to judge a bad case with")
    seeds, nb = np.asarray(seeds, dtype=np.int64), np.asarray(neighbours, dtype=np.int64)
    valid = nb >= 0
    safe = np.where(valid, nb, 0)
    shared = np.zeros(nb.shape, dtype=bool)
    for c in codes.values():
        cs = c[seeds][:, None]
        shared |= (cs >= 0) & (c[safe] == cs)
    bad = valid & ~shared
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, bad.sum(axis=1) / np.maximum(n, 1), np.nan)


def badcase_seeds(candidates: np.ndarray, n_seeds: int, seed: int = 0) -> np.ndarray:
    """A seeded uniform sample (sorted) of at most ``n_seeds`` songs from ``candidates``."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if len(candidates) <= n_seeds:
        return np.sort(candidates)
    return np.sort(np.random.default_rng([seed, 3]).choice(candidates, n_seeds, replace=False))


def neighbours_side_by_side(song: int, tables: dict[str, np.ndarray], items: pl.DataFrame, k: int = 10) -> pl.DataFrame:
    """The talk's "Dong Feng Po" table: the top-``k`` neighbours of ``song`` under each model, with each
    neighbour's artist, genre and language (``tables``: model name -> neighbour-id table)."""
    cols = [c for c in ("title", "artist", "genre", "language") if c in items.columns]
    info = items.select("song_id", *cols)
    parts = []
    for name, table in tables.items():
        ids = table[song, :k]
        frame = pl.DataFrame({"rank": np.arange(1, len(ids) + 1), "song_id": ids})
        frame = frame.join(info, on="song_id", how="left").sort("rank")
        parts.append(frame.rename({c: f"{name}:{c}" for c in frame.columns if c != "rank"}))
    out = parts[0]
    for p in parts[1:]:
        out = out.join(p, on="rank", how="left")
    return out
