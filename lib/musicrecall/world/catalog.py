"""The song catalogue: artists, albums, songs, latent styles, and the published (possibly shuffled) KG.

Internally songs live in a *latent* order (contiguous by artist, then album, then track) so that
"next track of the album" is ``i + 1`` and per-artist / per-cluster sampling is a guide-table
lookup (:class:`SegmentSampler`) over a contiguous slice.
The public ``song_id`` is a random permutation of that order, so ids carry no structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .profiles import GENRE_SHARE, GENRES, INSTRUMENTAL, LANG_MIX, LANGUAGES, VERSIONS, WorldConfig

N_STYLE = 8
_WORD_A = ("Blue", "Silent", "Golden", "Broken", "Midnight", "Summer", "Electric", "Lonely", "Wild", "Paper",
           "Neon", "Distant", "Falling", "Endless", "Secret", "Crystal", "Burning", "Quiet", "Velvet", "Rainy")  # fmt: skip
_WORD_B = ("Heart", "River", "Sky", "Road", "Dream", "Light", "City", "Moon", "Rain", "Fire", "Ocean", "Song",
           "Garden", "Window", "Letter", "Train", "Mirror", "Shadow", "Island", "Winter")  # fmt: skip


def draw_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` (rows sum to 1), vectorised via cumulative sums."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None] * cum[:, -1:]
    return np.minimum((cum < u).sum(axis=1), probs.shape[1] - 1)


@dataclass
class SegmentSampler:
    """Weighted draws inside contiguous segments of a cumulative-weight array, via a guide table.

    Why: ``np.searchsorted`` over a whole catalogue costs ~18 cache-missing probes per draw, and the
    simulation makes tens of millions of draws. Each segment is cut into ``res x len`` equal-mass
    buckets and the answer at every bucket edge is stored; a draw whose bucket holds no item boundary
    (most of them) is answered by one lookup, only the rest fall back to ``searchsorted``. The result
    is the same inverse-CDF draw, so the distribution is exactly that of plain inversion.
    """

    cum: np.ndarray  # len n+1 cumulative weights in segment order
    start: np.ndarray  # per segment: first index
    end: np.ndarray  # per segment: one past the last index
    n_buckets: np.ndarray  # per segment: number of equal-mass buckets
    offset: np.ndarray  # per segment: position of its first bucket edge in ``guide``
    guide: np.ndarray  # int32 item index at each bucket edge (``n_buckets + 1`` edges per segment)

    @classmethod
    def build(cls, cum: np.ndarray, start: np.ndarray, end: np.ndarray, res: int = 8) -> SegmentSampler:
        """Guide table for segments ``[start, end)`` of ``cum`` (len n+1); empty segments never drawn."""
        start, end = np.asarray(start, np.int64), np.asarray(end, np.int64)
        n_b = res * np.maximum(end - start, 1)
        offset = np.cumsum(n_b + 1) - (n_b + 1)
        seg = np.repeat(np.arange(len(start)), n_b + 1)
        j = np.arange(len(seg)) - offset[seg]
        lo, hi = cum[start[seg]], cum[end[seg]]
        edge = lo + (j / n_b[seg]) * (hi - lo)
        idx = np.searchsorted(cum, edge, side="right") - 1
        guide = np.clip(idx, start[seg], np.maximum(end[seg] - 1, start[seg])).astype(np.int32)
        return cls(cum=cum, start=start, end=end, n_buckets=n_b, offset=offset, guide=guide)

    def draw(self, rng: np.random.Generator, seg: np.ndarray) -> np.ndarray:
        """One weighted item index (int32) inside each segment ``seg``."""
        u = rng.random(len(seg))
        nb = self.n_buckets[seg]
        g = self.offset[seg] + np.minimum((u * nb).astype(np.int64), nb - 1)
        lo, hi = self.guide[g], self.guide[g + 1]
        amb = np.flatnonzero(lo != hi)  # bucket straddles an item boundary: resolve exactly
        if len(amb):
            s = seg[amb]
            c0, c1 = self.cum[self.start[s]], self.cum[self.end[s]]
            x = c0 + u[amb] * (c1 - c0)
            lo[amb] = np.clip(np.searchsorted(self.cum, x, side="right") - 1, lo[amb], hi[amb])
        return lo


@dataclass
class Catalog:
    """Latent catalogue arrays, all indexed by latent song index ``li`` unless named otherwise."""

    n: int
    artist: np.ndarray  # int32 artist index
    album: np.ndarray  # int32 album index (global)
    track_no: np.ndarray  # 1-based track number inside the album
    genre: np.ndarray  # int8 true genre
    language: np.ndarray  # int8 true language
    version: np.ndarray  # int8
    duration_ms: np.ndarray  # int32 (<= 600 s)
    release_year: np.ndarray  # int32
    pop: np.ndarray  # float64 popularity, sums to 1
    style: np.ndarray  # float32 (n, 8): dims 0-3 timbre family, 4-7 feel
    feel_unit: np.ndarray  # float32 (n, 4) unit-normalised feel (for cosine with taste)
    cluster: np.ndarray  # int32 = genre * n_lang + language
    song_id: np.ndarray  # int32 li -> public song id
    li_of_id: np.ndarray  # int64 public id -> li
    next_in_album: np.ndarray  # int32 li of next track or -1
    artist_genre: np.ndarray  # int8 per artist primary genre
    artist_start: np.ndarray  # first li of each artist
    artist_end: np.ndarray
    cluster_order: np.ndarray  # int32 li sorted by cluster
    cluster_pop: np.ndarray  # total popularity per cluster
    by_artist: SegmentSampler  # popularity draws inside an artist (latent order)
    by_cluster: SegmentSampler  # popularity draws inside a cluster (positions in cluster_order)
    by_all: SegmentSampler  # popularity draws from the whole catalogue
    popular: np.ndarray  # li of the globally most popular songs (autoplay pool)
    pub_src: np.ndarray  # li whose attributes are published for li (identity unless KG placebo)

    @property
    def n_clusters(self) -> int:
        """Number of (genre, language) clusters."""
        return len(GENRES) * len(LANGUAGES)

    def draw_artist(self, rng: np.random.Generator, artist: np.ndarray) -> np.ndarray:
        """Popularity-weighted li (int32) among each given artist's songs."""
        return self.by_artist.draw(rng, artist)

    def draw_cluster(self, rng: np.random.Generator, cluster: np.ndarray) -> np.ndarray:
        """Popularity-weighted li (int32) of the given clusters (each must be non-empty)."""
        return self.cluster_order[self.by_cluster.draw(rng, cluster)]

    def draw_global(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` popularity-weighted li (int32) from the whole catalogue."""
        return self.by_all.draw(rng, np.zeros(n, dtype=np.int32))


def build_catalog(cfg: WorldConfig) -> Catalog:
    """Generate the latent catalogue (deterministic in ``cfg.seed``)."""
    rng = np.random.default_rng([cfg.seed, 1])
    n = cfg.n_songs
    n_genre, n_lang = len(GENRES), len(LANGUAGES)
    n_art = max(8, n // 12)
    # artists: genre, language, popularity, number of songs (>= 1)
    a_genre = rng.choice(n_genre, size=n_art, p=GENRE_SHARE).astype(np.int8)
    a_lang = draw_categorical(rng, LANG_MIX[a_genre]).astype(np.int8)
    a_pop = rng.lognormal(0.0, 1.4, n_art)
    weights = rng.lognormal(0.0, 0.7, n_art)
    a_count = 1 + rng.multinomial(n - n_art, weights / weights.sum())
    artist = np.repeat(np.arange(n_art, dtype=np.int32), a_count)
    a_end = np.cumsum(a_count)
    a_start = a_end - a_count
    within = np.arange(n) - a_start[artist]  # song index inside its artist
    # albums: each artist cuts its songs into albums of a fixed, artist-specific size
    alb_size = rng.integers(5, 13, n_art)
    alb_local = within // alb_size[artist]
    alb_new = np.ones(n, dtype=bool)
    alb_new[1:] = (artist[1:] != artist[:-1]) | (alb_local[1:] != alb_local[:-1])
    album = (np.cumsum(alb_new) - 1).astype(np.int32)
    n_alb = int(album[-1]) + 1
    track_no = (within % alb_size[artist] + 1).astype(np.int32)
    alb_year = np.clip(np.round(2026 - rng.exponential(9.0, n_alb)), 1980, 2026).astype(np.int32)
    release_year = alb_year[album]
    # songs: genre mostly the artist's, language mostly the artist's
    genre = np.where(rng.random(n) < 0.85, a_genre[artist], rng.choice(n_genre, size=n, p=GENRE_SHARE))
    genre = genre.astype(np.int8)
    lang = np.where(rng.random(n) < 0.9, a_lang[artist], draw_categorical(rng, LANG_MIX[genre])).astype(
        np.int8
    )
    version = rng.choice(len(VERSIONS), size=n, p=[0.8, 0.08, 0.07, 0.05]).astype(np.int8)
    duration = np.clip(rng.lognormal(np.log(210_000), 0.3, n), 60_000, 600_000).astype(np.int32)
    # popularity: artist popularity x within-artist Zipf x noise
    pop = a_pop[artist] * (within + 1.0) ** -0.8 * rng.lognormal(0.0, 0.5, n)
    pop /= pop.sum()
    # latent style: timbre dims follow genre + artist, feel dims are mostly idiosyncratic
    g_timbre = rng.normal(0.0, 1.0, (n_genre, 4))
    g_feel = rng.normal(0.0, 1.0, (n_genre, 4))
    a_off = rng.normal(0.0, 0.5, (n_art, 4))
    timbre = g_timbre[genre] + a_off[artist] + rng.normal(0.0, 0.3, (n, 4))
    feel = 0.3 * g_feel[genre] + rng.normal(0.0, 1.0, (n, 4))
    feel[lang == INSTRUMENTAL, 3] -= 1.5  # vocalness
    style = np.hstack([timbre, feel]).astype(np.float32)
    feel_unit = (feel / np.linalg.norm(feel, axis=1, keepdims=True)).astype(np.float32)
    cluster = genre.astype(np.int32) * n_lang + lang
    # public ids are a random permutation of the latent order
    song_id = rng.permutation(n).astype(np.int32)
    li_of_id = np.empty(n, dtype=np.int64)
    li_of_id[song_id] = np.arange(n)
    nxt = np.full(n, -1, dtype=np.int32)
    same = album[1:] == album[:-1]
    nxt[:-1][same] = np.arange(1, n)[same]
    cum_pop = np.concatenate([[0.0], np.cumsum(pop)])
    n_cl = n_genre * n_lang
    order = np.argsort(cluster, kind="stable").astype(np.int32)
    c_count = np.bincount(cluster, minlength=n_cl)
    c_end = np.cumsum(c_count)
    popular = np.argsort(-pop, kind="stable")[: max(20, min(500, n // 10))].astype(np.int32)
    # KG-relevance placebo: publish the attribute rows of a random (1 - r) share of songs shuffled
    krng = np.random.default_rng([cfg.seed, 2])
    pub_src = np.arange(n)
    shuffled = np.flatnonzero(krng.random(n) >= cfg.effects.kg_relevance)
    pub_src[shuffled] = krng.permutation(shuffled)
    return Catalog(
        n=n, artist=artist, album=album, track_no=track_no, genre=genre, language=lang, version=version,
        duration_ms=duration, release_year=release_year, pop=pop, style=style, feel_unit=feel_unit,
        cluster=cluster, song_id=song_id, li_of_id=li_of_id, next_in_album=nxt, artist_genre=a_genre,
        artist_start=a_start, artist_end=a_end, cluster_order=order,
        cluster_pop=np.bincount(cluster, weights=pop, minlength=n_cl), popular=popular, pub_src=pub_src,
        by_artist=SegmentSampler.build(cum_pop, a_start, a_end),
        by_cluster=SegmentSampler.build(np.concatenate([[0.0], np.cumsum(pop[order])]), c_end - c_count, c_end),
        by_all=SegmentSampler.build(cum_pop, [0], [n]),
    )  # fmt: skip


def items_frame(cat: Catalog) -> pl.DataFrame:
    """Published items table (``ITEMS_SCHEMA``), one row per song id, attributes from ``pub_src``."""
    li = cat.li_of_id
    src = cat.pub_src[li]
    rng = np.random.default_rng(int(cat.n) * 7919 + 17)  # titles only; independent of behaviour
    wa = rng.integers(0, len(_WORD_A), cat.n)
    wb = rng.integers(0, len(_WORD_B), cat.n)
    version = cat.version[src]
    suffix = np.array(["", " (Live)", " (Cover)", " (Remix)"])
    df = pl.DataFrame(
        {
            "song_id": np.arange(cat.n, dtype=np.int64),
            "wa": pl.Series(_WORD_A).gather(wa),
            "wb": pl.Series(_WORD_B).gather(wb),
            "sfx": pl.Series(suffix).gather(version),
            "artist_i": cat.artist[src],
            "album_i": cat.album[src],
            "genre": pl.Series(GENRES).gather(cat.genre[src]),
            "language": pl.Series(LANGUAGES).gather(cat.language[src]),
            "version": pl.Series(VERSIONS).gather(version),
            "duration_ms": cat.duration_ms[li].astype(np.int64),
            "release_year": cat.release_year[src].astype(np.int32),
        }
    )
    return df.select(
        "song_id",
        ("s" + pl.col("song_id").cast(pl.String).str.zfill(6)).alias("song_key"),
        pl.concat_str("wa", pl.lit(" "), "wb", "sfx").alias("title"),
        ("artist_" + pl.col("artist_i").cast(pl.String).str.zfill(4)).alias("artist"),
        ("album_" + pl.col("album_i").cast(pl.String).str.zfill(5)).alias("album"),
        "genre",
        "language",
        "version",
        "duration_ms",
        "release_year",
    )


def triples_frame(items: pl.DataFrame, cat: Catalog) -> pl.DataFrame:
    """KG triples from the published items plus the (true) primary genre of each artist."""
    head = pl.lit("song:") + pl.col("song_id").cast(pl.String)
    parts = [
        items.select(
            head.alias("head"), pl.lit(rel).alias("relation"), (pl.lit(pre) + pl.col(col)).alias("tail")
        )
        for rel, pre, col in (
            ("song_artist", "artist:", "artist"),
            ("song_album", "album:", "album"),
            ("song_genre", "genre:", "genre"),
            ("song_language", "language:", "language"),
            ("song_version", "version:", "version"),
        )
    ]
    art = pl.DataFrame(
        {"a": np.arange(len(cat.artist_genre)), "g": pl.Series(GENRES).gather(cat.artist_genre)}
    )
    parts.append(
        art.select(
            ("artist:artist_" + pl.col("a").cast(pl.String).str.zfill(4)).alias("head"),
            pl.lit("artist_genre").alias("relation"),
            ("genre:" + pl.col("g")).alias("tail"),
        )
    )
    return pl.concat(parts)


def song_style_frame(cat: Catalog) -> pl.DataFrame:
    """Truth: latent style and true preference cluster per song id."""
    li = cat.li_of_id
    cols: dict[str, object] = {"song_id": np.arange(cat.n, dtype=np.int64)}
    for d in range(N_STYLE):
        cols[f"style_{d}"] = cat.style[li, d]
    cols["pref_cluster"] = cat.cluster[li].astype(np.int64)
    return pl.DataFrame(cols)
