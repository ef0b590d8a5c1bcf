"""Users: kinds (normal / cold / bot), interests, drift, favourites, taste, demographics, party-B table."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl

from .catalog import Catalog, draw_categorical
from .profiles import AGE_BUCKETS, ENTRY_BASE, GENDERS, GENRES, LANGUAGES, REGIONS, WorldConfig

MAX_INTERESTS = 5
N_FAV_ARTISTS = 2  # per interest
N_FAV_SONGS = 10
N_TASTE = 4
N_CROSS = 24
NORMAL, COLD, BOT = 0, 1, 2
KINDS = ("normal", "cold", "bot")
_HOME_LANG_P = np.array([0.55, 0.2, 0.07, 0.08, 0.05, 0.03, 0.02])


@dataclass
class Users:
    """Latent user arrays indexed by user id."""

    n: int
    kind: np.ndarray  # int8 NORMAL / COLD / BOT
    activity: np.ndarray  # float64, mean 1
    join_day: np.ndarray  # int64 first active day
    n_int: np.ndarray  # int64 number of interests (1..5)
    int_cluster: np.ndarray  # (n, 5) int32 clusters, -1 padding, sorted by weight desc
    int_w: np.ndarray  # (n, 5) float64 base weights, 0 padding
    drift: np.ndarray  # (n, 5) per-interest drift slope (log-weight change over the period)
    fav_artist: np.ndarray  # (n, 5 * 2) int32 favourite artists, -1 padding
    fav_songs: np.ndarray  # (n, 10) li of favourite songs
    taste: np.ndarray  # (n, 4) float32 unit taste vector (matched against song feel)
    entry_p: np.ndarray  # (n, 6) entry mix
    age: np.ndarray  # int8 index into AGE_BUCKETS (complete)
    gender: np.ndarray  # int8
    region: np.ndarray  # int8

    def rows(self, lo: int, hi: int) -> Users:
        """Users ``[lo, hi)`` as a new :class:`Users` of views (ids become ``0 .. hi - lo - 1``)."""
        hi = min(hi, self.n)
        arrays = {f.name: getattr(self, f.name)[lo:hi] for f in fields(self) if f.name != "n"}
        return Users(n=hi - lo, **arrays)


def build_users(cfg: WorldConfig, cat: Catalog) -> Users:
    """Generate the latent users (deterministic in ``cfg.seed``)."""
    rng = np.random.default_rng([cfg.seed, 3])
    n = cfg.n_users
    n_bot = max(1, int(cfg.bot_share * n))
    n_cold = round(cfg.cold_share * n)
    kind = np.zeros(n, dtype=np.int8)
    perm = rng.permutation(n)
    kind[perm[:n_bot]] = BOT
    kind[perm[n_bot : n_bot + n_cold]] = COLD
    activity = rng.lognormal(0.0, 0.8, n)
    activity /= activity.mean()
    join_day = np.zeros(n, dtype=np.int64)
    late = rng.random(n) < 0.15  # some normal users join during the period
    join_day[late] = rng.integers(0, int(cfg.n_days * 0.7), late.sum())
    cold = kind == COLD
    join_day[cold] = rng.integers(int(np.floor(cfg.n_days * 0.85)), cfg.n_days, cold.sum())
    # interests: Gumbel top-k over (genre, language) clusters, biased to a home language
    n_lang = len(LANGUAGES)
    home = rng.choice(n_lang, size=n, p=_HOME_LANG_P)
    with np.errstate(divide="ignore"):
        base = np.log(cat.cluster_pop)  # empty clusters -> -inf, never chosen
    cl_lang = np.arange(cat.n_clusters) % n_lang
    logits = base[None, :] + 1.5 * (cl_lang[None, :] == home[:, None]) + rng.gumbel(size=(n, cat.n_clusters))
    top = np.argsort(-logits, axis=1)[:, :MAX_INTERESTS].astype(np.int32)
    n_int = rng.choice(np.arange(1, MAX_INTERESTS + 1), size=n, p=[0.2, 0.3, 0.25, 0.15, 0.1])
    n_int = np.where(rng.random(n) >= cfg.effects.multi_interest, 1, n_int)
    valid = np.arange(MAX_INTERESTS)[None, :] < n_int[:, None]
    w = np.where(valid, rng.gamma(1.0, 1.0, (n, MAX_INTERESTS)), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    order = np.argsort(-w, axis=1, kind="stable")  # rank 0 = strongest interest
    w = np.take_along_axis(w, order, axis=1)
    top = np.take_along_axis(top, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    int_cluster = np.where(valid, top, -1).astype(np.int32)
    drift = rng.normal(0.0, 1.5, (n, MAX_INTERESTS))
    # favourite artists: artists of popular songs in each interest cluster
    cl_rep = np.repeat(np.where(valid, top, top[:, :1]), N_FAV_ARTISTS, axis=1)
    fav_artist = cat.artist[cat.draw_cluster(rng, cl_rep.ravel())].reshape(n, -1).astype(np.int32)
    fav_artist[~np.repeat(valid, N_FAV_ARTISTS, axis=1)] = -1
    # favourite songs (repeat listening) drawn from the interests by weight
    k = draw_categorical(rng, np.repeat(w, N_FAV_SONGS, axis=0))
    fav_songs = cat.draw_cluster(rng, int_cluster[np.repeat(np.arange(n), N_FAV_SONGS), k]).reshape(n, -1)
    taste = rng.normal(0.0, 1.0, (n, N_TASTE))
    taste = (taste / np.linalg.norm(taste, axis=1, keepdims=True)).astype(np.float32)
    entry_p = rng.dirichlet(ENTRY_BASE * 6.0, n)
    age = rng.choice(len(AGE_BUCKETS), size=n, p=[0.08, 0.3, 0.3, 0.17, 0.1, 0.05]).astype(np.int8)
    gender = rng.integers(0, len(GENDERS), n).astype(np.int8)
    region = rng.integers(0, len(REGIONS), n).astype(np.int8)
    return Users(
        n=n, kind=kind, activity=activity, join_day=join_day, n_int=n_int, int_cluster=int_cluster, int_w=w,
        drift=drift, fav_artist=fav_artist, fav_songs=fav_songs, taste=taste, entry_p=entry_p, age=age,
        gender=gender, region=region,
    )  # fmt: skip


def _null_where(values: pl.Series, mask: np.ndarray) -> pl.Series:
    return pl.select(pl.when(pl.lit(pl.Series(~mask))).then(pl.lit(values))).to_series().alias(values.name)


def users_frame(cfg: WorldConfig, users: Users) -> pl.DataFrame:
    """Published users table with realistic gaps (age ~40 %, gender ~50 %, region ~30 % null)."""
    rng = np.random.default_rng([cfg.seed, 4])
    n = users.n
    ids = pl.Series("user_id", np.arange(n, dtype=np.int64))
    return pl.DataFrame(
        [
            ids,
            ("u" + ids.cast(pl.String).str.zfill(7)).alias("user_key"),
            _null_where(pl.Series("age_bucket", AGE_BUCKETS).gather(users.age), rng.random(n) < 0.4),
            _null_where(pl.Series("gender", GENDERS).gather(users.gender), rng.random(n) < 0.5),
            _null_where(pl.Series("region", REGIONS).gather(users.region), rng.random(n) < 0.3),
        ]
    )


def genre_weights(users: Users) -> np.ndarray:
    """(n_users, n_genres) true interest weight per genre."""
    n_lang = len(LANGUAGES)
    g = np.where(users.int_cluster >= 0, users.int_cluster // n_lang, 0)
    out = np.zeros((users.n, len(GENRES)))
    np.add.at(out, (np.repeat(np.arange(users.n), g.shape[1]), g.ravel()), users.int_w.ravel())
    return out


def cross_business_frame(cfg: WorldConfig, users: Users) -> pl.DataFrame:
    """Party B's table: complete age bucket + f00..f23 = s * signal + sqrt(1 - s^2) * noise."""
    rng = np.random.default_rng([cfg.seed, 5])
    x = np.hstack([genre_weights(users), (users.age[:, None] - 2.5) / 1.5])
    proj = rng.normal(0.0, 1.0, (x.shape[1], N_CROSS))
    z = x @ proj
    z = (z - z.mean(axis=0)) / (z.std(axis=0) + 1e-12)
    s = 0.8 * cfg.effects.cross_business
    f = (s * z + np.sqrt(1.0 - s * s) * rng.normal(0.0, 1.0, z.shape)).astype(np.float32)
    cols: dict[str, object] = {
        "user_id": np.arange(users.n, dtype=np.int64),
        "b_age_bucket": pl.Series(AGE_BUCKETS).gather(users.age),
    }
    for j in range(N_CROSS):
        cols[f"f{j:02d}"] = f[:, j]
    return pl.DataFrame(cols)


def truth_frames(users: Users) -> dict[str, pl.DataFrame]:
    """Truth tables: user_interests, user_taste, user_kind."""
    n_lang = len(LANGUAGES)
    valid = users.int_cluster >= 0
    uid, rank = np.nonzero(valid)
    cl = users.int_cluster[uid, rank]
    interests = pl.DataFrame(
        {
            "user_id": uid.astype(np.int64),
            "rank": rank.astype(np.int64),
            "cluster": cl.astype(np.int64),
            "genre": pl.Series(GENRES).gather(cl // n_lang),
            "language": pl.Series(LANGUAGES).gather(cl % n_lang),
            "weight": users.int_w[uid, rank],
        }
    )
    taste: dict[str, object] = {"user_id": np.arange(users.n, dtype=np.int64)}
    for d in range(N_TASTE):
        taste[f"taste_{d}"] = users.taste[:, d]
    kind = pl.DataFrame(
        {"user_id": np.arange(users.n, dtype=np.int64), "kind": pl.Series(KINDS).gather(users.kind)}
    )
    return {"user_interests": interests, "user_taste": pl.DataFrame(taste), "user_kind": kind}
