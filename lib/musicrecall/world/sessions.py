"""Vectorised listening simulation: session skeletons -> song choice -> outcomes -> timestamps.

Users are simulated in fixed-size chunks (``CHUNK_USERS``), each with its own RNG stream derived from
the seed: memory stays bounded, arrays stay cache-sized, and the output depends only on the seed.
Inside a chunk all steps work on flat arrays of sessions (``S``) and plays (``P``); there is no
per-event Python loop. The only inner loop is over continuation *depth* (a play that continues the
previous song needs that song resolved first), which is ~15 iterations.
"""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass

import numpy as np

from .catalog import Catalog, draw_categorical
from .profiles import DAY_MS, ENTRY_BIAS, LOOSE_P, WorldConfig
from .users import BOT, COLD, N_FAV_ARTISTS, N_FAV_SONGS, NORMAL, Users

REASONS: tuple[str, ...] = ("clickrow", "trackdone", "fwdbtn", "autoplay", "endplay", "logout")
CLICKROW, TRACKDONE, FWDBTN, AUTOPLAY, ENDPLAY, LOGOUT = range(6)
COLLECT, BLOCK, FOLLOW, PLAYLIST_ADD = range(4)  # schema.ACTIONS order
SEARCH = 5  # schema.ENTRIES index
NOISE_KINDS: tuple[str, ...] = (
    "accidental", "autoplay", "duplicate", "clock_skew", "bot",
    "negative_play_ms", "play_beyond_length", "unknown_song", "missing_user", "unparseable_ts",
)  # fmt: skip
# noise codes: 0 = genuine, i + 1 = NOISE_KINDS[i]
ACCIDENTAL, AUTOPLAY_NOISE, DUPLICATE, CLOCK_SKEW, BOT_NOISE = 1, 2, 3, 4, 5
# Row arrays and their compact dtypes (ts needs 64 bits: ms over months; everything else fits in 32).
COLUMNS: dict[str, type] = {
    "user": np.int32, "li": np.int32, "ts": np.int64, "play_ms": np.int32, "song_ms": np.int32,
    "entry": np.int8, "action": np.int8, "rs": np.int8, "re": np.int8, "skipped": np.bool_, "noise": np.int8,
}  # fmt: skip
# Users per simulation chunk. Part of the random design: changing it changes the draws (not the law).
CHUNK_USERS = 2048
_LOOSE_P32 = LOOSE_P.astype(np.float32)
_ENTRY_BIAS32 = ENTRY_BIAS.astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _coin(rng: np.random.Generator, n: int, p: float | np.ndarray) -> np.ndarray:
    """``n`` Bernoulli(p) flags; float32 uniforms are ~2x cheaper and exact enough for p >= 1e-4."""
    return rng.random(n, dtype=np.float32) < p


def _diurnal_hours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hour of day from a mixture: morning commute, lunch, long evening peak, plus a flat floor."""
    comp = rng.choice(4, size=n, p=[0.22, 0.18, 0.5, 0.1])
    mu = np.array([8.0, 12.5, 20.5, 12.0])[comp]
    sd = np.array([1.0, 0.8, 1.8, 0.0])[comp]
    h = np.where(comp == 3, rng.random(n) * 24.0, mu + sd * rng.standard_normal(n))
    return np.mod(h, 24.0)


def _within_offsets(lengths: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum of ``values`` restarting at each group of the given ``lengths``."""
    cs = np.cumsum(values)
    excl = cs - values
    first = np.cumsum(lengths) - lengths
    return excl - np.repeat(excl[first[lengths > 0]], lengths[lengths > 0])


@dataclass
class _Sessions:
    """Session arrays of one chunk, ordered by (user, start time)."""

    user: np.ndarray  # local user index
    per_user: np.ndarray  # sessions per local user
    start: np.ndarray  # ms since cfg.start (before the no-overlap push)
    entry: np.ndarray  # int8 entry point
    length: np.ndarray  # planned genuine plays (>= 1)
    w: np.ndarray  # (S, MAX_INTERESTS) drifted interest weights at the session's time
    k: np.ndarray  # interest slot the session opens with


@dataclass
class _Plays:
    """Genuine play arrays of one chunk (``P`` rows, grouped by session)."""

    sess: np.ndarray  # session index
    pos: np.ndarray  # position inside the session
    user: np.ndarray  # local user index
    entry: np.ndarray  # int8
    k: np.ndarray  # interest slot
    li: np.ndarray  # int32 latent song
    rep: np.ndarray  # bool: a favourite-song repeat


def simulate_sessions(cfg: WorldConfig, cat: Catalog, users: Users) -> dict[str, np.ndarray]:
    """Genuine plays plus the noise that lives inside sessions (accidental plays, autoplay tails), plus bots.

    Returns flat row arrays (see ``COLUMNS``); ``ts`` is ms since ``cfg.start``.
    """
    parts = []
    for i, lo in enumerate(range(0, users.n, CHUNK_USERS)):
        rng = np.random.default_rng([cfg.seed, 10, i])  # one independent stream per chunk
        part = _simulate_chunk(cfg, cat, users.rows(lo, lo + CHUNK_USERS), rng)
        part["user"] += lo
        parts.append(part)
    parts.append(simulate_bots(cfg, cat, users))
    # concatenate column by column, dropping the chunk pieces as we go (peak = result + one column)
    rows = {k: np.concatenate([p.pop(k) for p in parts]) for k in COLUMNS}
    _trim_heap()
    return rows


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc only; a no-op elsewhere).

    Why: chunk-sized arrays sit below glibc's mmap threshold, so they live on the heap, and the chunk
    results kept until the final concatenation fragment it: ~0.4 GB (medium) of freed space would
    otherwise stay resident while the assembly allocates its own, larger buffers.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _simulate_chunk(cfg: WorldConfig, cat: Catalog, users: Users, rng: np.random.Generator) -> dict:
    """All in-session rows of one chunk of users (local user ids), filtered to before the export time."""
    s = _sessions(cfg, users, rng)
    p = _choose_songs(cfg, cat, users, s, rng)
    full, play_ms, song_ms, action = _outcomes(cfg, cat, users, p, rng)
    if cfg.effects.sequence == 0.0:  # sequence placebo: shuffle content among each user's plays
        perm = np.lexsort((rng.random(len(p.li)), p.user))  # p.user is sorted: perm stays inside users
        p.li, p.entry = p.li[perm], p.entry[perm]
        full, play_ms, song_ms, action = full[perm], play_ms[perm], song_ms[perm], action[perm]
    rs, re = _reasons(cfg, s, p, full, rng)
    return _timestamps(cfg, cat, s, p, (full, play_ms, song_ms, action, rs, re), rng)


def _sessions(cfg: WorldConfig, users: Users, rng: np.random.Generator) -> _Sessions:
    """Session skeleton: count per user, start time, entry, planned length and interest."""
    seq = cfg.effects.sequence
    n_sess_u = np.zeros(users.n, dtype=np.int64)
    normal = users.kind == NORMAL
    active_share = (cfg.n_days - users.join_day[normal]) / cfg.n_days
    lam = users.activity[normal] * cfg.sessions_per_user * active_share
    n_sess_u[normal] = np.maximum(1, rng.poisson(lam))
    n_sess_u[users.kind == COLD] = 1  # cold start: one short session after joining
    su = np.repeat(np.arange(users.n), n_sess_u)
    n_s = len(su)
    join = users.join_day[su]
    day = join + np.floor(rng.random(n_s) * (cfg.n_days - join)).astype(np.int64)
    start = day * DAY_MS + (_diurnal_hours(rng, n_s) * 3_600_000).astype(np.int64)
    # order sessions in time per user: one sort of (user, start) packed into an int64 key
    span = cfg.n_days * DAY_MS
    start = np.sort(su * span + start) - su * span
    t = start / span
    entry = draw_categorical(rng, users.entry_p[su]).astype(np.int8)
    mu = np.log(cfg.mean_session_len) - 0.32  # lognormal(sigma=0.8) has mean exp(mu + 0.32)
    length = np.clip(np.ceil(rng.lognormal(mu, 0.8, n_s)), 1, 300).astype(np.int64)
    is_cold = users.kind[su] == COLD
    length[is_cold] = rng.integers(1, 9, is_cold.sum())
    # session interest: drifting weights, sticky between consecutive sessions of a user
    w = users.int_w[su] * np.exp(seq * users.drift[su] * (t[:, None] - 0.5))
    k_fresh = draw_categorical(rng, w)
    first = np.ones(n_s, dtype=bool)
    first[1:] = su[1:] != su[:-1]
    fresh = first | (rng.random(n_s) >= cfg.sticky_prob * seq)
    k_sess = k_fresh[np.maximum.accumulate(np.where(fresh, np.arange(n_s), 0))]
    return _Sessions(user=su, per_user=n_sess_u, start=start, entry=entry, length=length, w=w, k=k_sess)


def _choose_songs(
    cfg: WorldConfig, cat: Catalog, users: Users, s: _Sessions, rng: np.random.Generator
) -> _Plays:
    """Song of every genuine play: interest cluster, favourite artist, loose exposure, repeat, continuation."""
    n_p = int(s.length.sum())
    ps = np.repeat(np.arange(len(s.length)), s.length)
    off = np.cumsum(s.length) - s.length
    pos = np.arange(n_p) - off[ps]
    pu = s.user[ps]
    pe = s.entry[ps]
    # interest segments: a session opens on its interest and may switch mid-way
    seg_start = (pos == 0) | (_coin(rng, n_p, cfg.switch_prob) & (pos > 0))
    seg_first = np.flatnonzero(seg_start)
    seg_sess = ps[seg_first]
    seg_k = draw_categorical(rng, s.w[seg_sess])
    opening = pos[seg_first] == 0
    seg_k[opening] = s.k[seg_sess[opening]]
    kp = np.repeat(seg_k, np.diff(np.append(seg_first, n_p)))
    li = cat.draw_cluster(rng, users.int_cluster[pu, kp])
    fi = np.flatnonzero(_coin(rng, n_p, cfg.fav_artist_prob))
    art = users.fav_artist[pu[fi], kp[fi] * N_FAV_ARTISTS + rng.integers(0, N_FAV_ARTISTS, len(fi))]
    li[fi] = cat.draw_artist(rng, art)
    loose = _coin(rng, n_p, _LOOSE_P32[pe])
    li[loose] = cat.draw_global(rng, int(loose.sum()))
    cont = _coin(rng, n_p, cfg.continuation_prob * cfg.effects.sequence) & (pos > 0)
    rep = _coin(rng, n_p, cfg.repeat_prob) & ~loose & ~cont
    ri = np.flatnonzero(rep)
    li[ri] = users.fav_songs[pu[ri], rng.integers(0, N_FAV_SONGS, len(ri))]
    _resolve_continuations(cat, li, cont, rng)
    return _Plays(sess=ps, pos=pos, user=pu, entry=pe, k=kp, li=li, rep=rep)


def _resolve_continuations(cat: Catalog, li: np.ndarray, cont: np.ndarray, rng: np.random.Generator) -> None:
    """In place: a continuation plays the next album track (70 %) or another song of the same artist.

    Chains are resolved by depth, since depth d needs depth d - 1 resolved.
    """
    ci = np.flatnonzero(cont)
    if not len(ci):
        return
    idx = np.arange(len(li))
    depth = (idx - np.maximum.accumulate(np.where(cont, 0, idx)))[ci]
    ci = ci[np.argsort(depth, kind="stable")]
    bounds = np.searchsorted(np.sort(depth), np.arange(1, depth.max() + 2))
    for d0, d1 in zip(bounds[:-1], bounds[1:], strict=True):
        m = ci[d0:d1]
        prev = li[m - 1]
        nxt = cat.next_in_album[prev]
        other = cat.draw_artist(rng, cat.artist[prev])
        li[m] = np.where(_coin(rng, len(m), 0.7) & (nxt >= 0), nxt, other)


def _affinity(cat: Catalog, users: Users, p: _Plays) -> np.ndarray:
    """float32 interest affinity of each play: weight of the song's cluster + favourite artist + repeat."""
    n_cl = cat.n_clusters
    # dense (user, cluster) -> weight table of this chunk: one gather per play instead of 5 masked ones
    table = np.zeros((users.n, n_cl), dtype=np.float32)
    uu, slot = np.nonzero(users.int_cluster >= 0)
    table[uu, users.int_cluster[uu, slot]] = users.int_w[uu, slot]
    aff = table.ravel()[p.user * n_cl + cat.cluster[p.li]]
    fav_art = (users.fav_artist[p.user] == cat.artist[p.li][:, None]).any(axis=1)
    return aff + np.float32(0.5) * fav_art + np.float32(0.5) * p.rep


def _outcomes(
    cfg: WorldConfig, cat: Catalog, users: Users, p: _Plays, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full play vs skip, played ms, song length and explicit action of every play."""
    audio = np.float32(cfg.effects.audio_preference)
    n_p = len(p.li)
    aff = _affinity(cat, users, p)
    cos = np.einsum("ij,ij->i", users.taste[p.user], cat.feel_unit[p.li])
    taste = audio * np.float32(1.5) * cos
    full = rng.random(n_p, dtype=np.float32) < _sigmoid(-0.6 + 2.2 * aff + _ENTRY_BIAS32[p.entry] + taste)
    song_ms = cat.duration_ms[p.li]
    # full plays end a little before the song's end, skips after a lognormal ~20 s (drawn only where used)
    play_ms = song_ms - rng.integers(0, 1500, n_p, dtype=np.int32)
    sk = np.flatnonzero(~full)
    skip_ms = np.clip(rng.lognormal(np.log(20_000), 0.8, len(sk)), 2_000, 0.6 * song_ms[sk])
    play_ms[sk] = skip_ms
    p_collect = _sigmoid(-4.5 + 2.0 * aff + taste)
    r = rng.random(n_p, dtype=np.float32)
    action = np.full(n_p, -1, dtype=np.int8)
    action[full & (r < p_collect)] = COLLECT
    action[full & (r >= p_collect) & (r < 1.3 * p_collect)] = PLAYLIST_ADD
    r2 = rng.random(n_p, dtype=np.float32)
    action[(action < 0) & (r2 < 0.002)] = FOLLOW
    action[~full & (aff < 0.1) & (r2 > 0.99)] = BLOCK
    return full, play_ms, song_ms, action


def _reasons(
    cfg: WorldConfig, s: _Sessions, p: _Plays, full: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Spotify-style reason_start / reason_end codes of every genuine play."""
    rs = np.where(np.roll(full, 1), TRACKDONE, FWDBTN).astype(np.int8)
    rs[(p.pos == 0) | (p.entry == SEARCH)] = CLICKROW
    rs[_coin(rng, len(rs), cfg.autoplay_confuser)] = AUTOPLAY  # isolated genuine "autoplay" rows
    re = np.where(full, TRACKDONE, FWDBTN).astype(np.int8)
    re[(p.pos == s.length[p.sess] - 1) & ~full] = ENDPLAY
    return rs, re


def _timestamps(
    cfg: WorldConfig, cat: Catalog, s: _Sessions, p: _Plays, cols: tuple, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Timestamps, autoplay tails and accidental plays; returns the chunk's row arrays."""
    full, play_ms, song_ms, action, rs, re = cols
    n_p, n_s = len(p.li), len(s.length)
    acc = _coin(rng, n_p, cfg.accidental_rate)  # an accidental play follows these rows
    ai = np.flatnonzero(acc)
    acc_ms = rng.integers(300, 4001, len(ai), dtype=np.int32)
    delta = play_ms + rng.integers(0, 3001, n_p, dtype=np.int64)
    delta[ai] += acc_ms + 200
    # autoplay tail at the end of some sessions: popular songs played through
    tail_len = np.where(_coin(rng, n_s, cfg.autoplay_session_rate), rng.integers(3, 13, n_s), 0)
    n_t = int(tail_len.sum())
    t_sess = np.repeat(np.arange(n_s), tail_len)
    t_li = cat.popular[rng.integers(0, len(cat.popular), n_t)]
    t_ms = cat.duration_ms[t_li]
    t_delta = t_ms + rng.integers(0, 3001, n_t, dtype=np.int64)
    gen_dur = np.add.reduceat(delta, np.cumsum(s.length) - s.length)  # every session has >= 1 play
    dur = gen_dur + np.bincount(t_sess, weights=t_delta, minlength=n_s).astype(np.int64)
    x = _push_sessions(s, dur)
    ts = x[p.sess] + _within_offsets(s.length, delta)
    t_ts = x[t_sess] + gen_dur[t_sess] + _within_offsets(tail_len, t_delta)
    # accidental plays right after their host row
    a_li = cat.draw_global(rng, len(ai))
    coin = _coin(rng, len(ai), 0.5)
    rows = {
        "user": [p.user, s.user[t_sess], p.user[ai]],
        "li": [p.li, t_li, a_li],
        "ts": [ts, t_ts, ts[ai] + play_ms[ai] + 100],
        "play_ms": [play_ms, t_ms, acc_ms],
        "song_ms": [song_ms, t_ms, cat.duration_ms[a_li]],
        "entry": [p.entry, s.entry[t_sess], p.entry[ai]],
        "action": [action, np.full(n_t, -1), np.full(len(ai), -1)],
        "rs": [rs, np.full(n_t, AUTOPLAY), np.where(coin, CLICKROW, FWDBTN)],
        "re": [re, np.full(n_t, TRACKDONE), np.where(coin, FWDBTN, ENDPLAY)],
        "skipped": [~full, np.zeros(n_t, bool), np.ones(len(ai), bool)],
        "noise": [np.zeros(n_p), np.full(n_t, AUTOPLAY_NOISE), np.full(len(ai), ACCIDENTAL)],
    }
    # sessions pushed past the export time are never logged; filter each part, concatenate once
    keep = [x < cfg.n_days * DAY_MS for x in rows["ts"]]
    return {
        k: np.concatenate([v[m] for v, m in zip(rows[k], keep, strict=True)]).astype(dt, copy=False)
        for k, dt in COLUMNS.items()
    }


def _push_sessions(s: _Sessions, dur: np.ndarray) -> np.ndarray:
    """Session start times pushed so that a user's sessions never overlap (>= 5 min apart).

    x_i = max(s_i, x_{i-1} + d_{i-1} + g) = E_i + segmented-cummax(s_j - E_j), with the segments
    (users) separated by adding a per-user offset larger than any value.
    """
    e = _within_offsets(s.per_user, dur + 300_000)
    v = s.start - e
    big = int(4 * (np.abs(v).max() + 1))
    if big * (len(s.per_user) + 1) >= 2**62:  # pragma: no cover - guard for absurd sizes
        raise OverflowError("world too large for the session push key")
    return e + np.maximum.accumulate(v + s.user * big) - s.user * big


def simulate_bots(cfg: WorldConfig, cat: Catalog, users: Users) -> dict[str, np.ndarray]:
    """Bot users: daily blocks of 500-1500 plays at a fixed 30-35 s cadence of uniform random songs."""
    rng = np.random.default_rng([cfg.seed, 11])
    bots = np.flatnonzero(users.kind == BOT)
    nb = len(bots)
    n_days = rng.integers(2, 6, nb).clip(max=cfg.n_days)
    first_day = rng.integers(0, cfg.n_days - n_days + 1)
    cadence = rng.integers(30_000, 35_001, nb)
    blk_bot = np.repeat(np.arange(nb), n_days)
    blk_day = first_day[blk_bot] + _within_offsets(n_days, np.ones(len(blk_bot), np.int64))
    blk_n = rng.integers(500, 1501, len(blk_bot))
    blk_start = blk_day * DAY_MS + (rng.random(len(blk_bot)) * (DAY_MS - blk_n * cadence[blk_bot])).astype(
        np.int64
    )
    rb = np.repeat(np.arange(len(blk_bot)), blk_n)
    n = len(rb)
    step = _within_offsets(blk_n, np.ones(n, np.int64))
    li = rng.integers(0, cat.n, n)
    rows = {
        "user": bots[blk_bot[rb]],
        "li": li,
        "ts": blk_start[rb] + step * cadence[blk_bot[rb]],
        "play_ms": rng.integers(30_000, 31_001, n),
        "song_ms": cat.duration_ms[li],
        "entry": np.zeros(n, np.int8),
        "action": np.full(n, -1, np.int8),
        "rs": np.full(n, TRACKDONE, np.int8),
        "re": np.full(n, ENDPLAY, np.int8),
        "skipped": np.zeros(n, bool),
        "noise": np.full(n, BOT_NOISE, np.int8),
    }
    return {k: rows[k].astype(dt, copy=False) for k, dt in COLUMNS.items()}
