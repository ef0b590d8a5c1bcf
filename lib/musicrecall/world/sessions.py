"""Vectorised listening simulation: session skeletons -> song choice -> outcomes -> timestamps.

All steps work on flat arrays of sessions (``S``) and plays (``P``); there is no per-event Python loop.
The only loop is over continuation *depth* (a play that continues the previous song needs that song
resolved first), which is ~15 iterations even for tens of millions of plays.
"""

from __future__ import annotations

import numpy as np

from .catalog import Catalog, _draw_categorical
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
COLUMNS = ("user", "li", "ts", "play_ms", "song_ms", "entry", "action", "rs", "re", "skipped", "noise")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


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


def simulate_sessions(cfg: WorldConfig, cat: Catalog, users: Users) -> dict[str, np.ndarray]:
    """Genuine plays plus the noise that lives inside sessions (accidental plays, autoplay tails).

    Returns flat row arrays (see ``COLUMNS``); ``ts`` is ms since ``cfg.start``.
    """
    rng = np.random.default_rng([cfg.seed, 10])
    seq = cfg.effects.sequence
    audio = cfg.effects.audio_preference
    # ---- (1) session skeleton ----------------------------------------------------------------------
    n_sess_u = np.zeros(users.n, dtype=np.int64)
    normal = users.kind == NORMAL
    active_share = (cfg.n_days - users.join_day[normal]) / cfg.n_days
    lam = users.activity[normal] * cfg.sessions_per_user * active_share
    n_sess_u[normal] = np.maximum(1, rng.poisson(lam))
    n_sess_u[users.kind == COLD] = 1  # cold start: one short session after joining
    su = np.repeat(np.arange(users.n, dtype=np.int64), n_sess_u)
    n_s = len(su)
    join = users.join_day[su]
    day = join + np.floor(rng.random(n_s) * (cfg.n_days - join)).astype(np.int64)
    start = day * DAY_MS + (_diurnal_hours(rng, n_s) * 3_600_000).astype(np.int64)
    order = np.lexsort((start, su))  # su is already grouped; this orders sessions in time per user
    start = start[order]
    t = start / (cfg.n_days * DAY_MS)
    entry = _draw_categorical(rng, users.entry_p[su]).astype(np.int8)
    mu = np.log(cfg.mean_session_len) - 0.32  # lognormal(sigma=0.8) has mean exp(mu + 0.32)
    length = np.clip(np.ceil(rng.lognormal(mu, 0.8, n_s)), 1, 300).astype(np.int64)
    is_cold = users.kind[su] == COLD
    length[is_cold] = rng.integers(1, 9, is_cold.sum())
    # session interest: drifting weights, sticky between consecutive sessions of a user
    w = users.int_w[su] * np.exp(seq * users.drift[su] * (t[:, None] - 0.5))
    k_fresh = _draw_categorical(rng, w)
    first = np.ones(n_s, dtype=bool)
    first[1:] = su[1:] != su[:-1]
    fresh = first | (rng.random(n_s) >= cfg.sticky_prob * seq)
    k_sess = k_fresh[np.maximum.accumulate(np.where(fresh, np.arange(n_s), 0))]

    # ---- (2) song choice per play ------------------------------------------------------------------
    n_p = int(length.sum())
    ps = np.repeat(np.arange(n_s), length)
    off = np.cumsum(length) - length
    pos = np.arange(n_p) - off[ps]
    pu = su[ps]
    pe = entry[ps]
    seg_start = (pos == 0) | ((rng.random(n_p) < cfg.switch_prob) & (pos > 0))
    seg_first = np.flatnonzero(seg_start)
    seg_sess = ps[seg_first]
    seg_k = _draw_categorical(rng, w[seg_sess])
    opening = pos[seg_first] == 0
    seg_k[opening] = k_sess[seg_sess[opening]]
    kp = np.repeat(seg_k, np.diff(np.append(seg_first, n_p)))
    li = cat.draw_cluster(rng, users.int_cluster[pu, kp])
    fi = np.flatnonzero(rng.random(n_p) < cfg.fav_artist_prob)
    art = users.fav_artist[pu[fi], kp[fi] * N_FAV_ARTISTS + rng.integers(0, N_FAV_ARTISTS, len(fi))]
    li[fi] = cat.draw_segment(rng, cat.artist_start[art], cat.artist_end[art])
    loose = rng.random(n_p) < LOOSE_P[pe]
    li[loose] = cat.draw_global(rng, int(loose.sum()))
    cont = (rng.random(n_p) < cfg.continuation_prob * seq) & (pos > 0)
    rep = (rng.random(n_p) < cfg.repeat_prob) & ~loose & ~cont
    ri = np.flatnonzero(rep)
    li[ri] = users.fav_songs[pu[ri], rng.integers(0, N_FAV_SONGS, len(ri))]
    # continuations: resolve chains by depth (depth d needs depth d-1 resolved)
    ci = np.flatnonzero(cont)
    if len(ci):
        idx = np.arange(n_p)
        depth = (idx - np.maximum.accumulate(np.where(cont, 0, idx)))[ci]
        ci = ci[np.argsort(depth, kind="stable")]
        bounds = np.searchsorted(np.sort(depth), np.arange(1, depth.max() + 2))
        for d0, d1 in zip(bounds[:-1], bounds[1:], strict=True):
            m = ci[d0:d1]
            prev = li[m - 1]
            nxt = cat.next_in_album[prev]
            a = cat.artist[prev]
            other = cat.draw_segment(rng, cat.artist_start[a], cat.artist_end[a])
            li[m] = np.where((rng.random(len(m)) < 0.7) & (nxt >= 0), nxt, other)

    # ---- (3) outcome -------------------------------------------------------------------------------
    scl = cat.cluster[li]
    sart = cat.artist[li]
    aff = np.zeros(n_p)
    for j in range(users.int_cluster.shape[1]):  # loop over <= 5 interest slots, not over events
        aff += users.int_w[pu, j] * (users.int_cluster[pu, j] == scl)
    fav_art = np.zeros(n_p, dtype=bool)
    for j in range(users.fav_artist.shape[1]):
        fav_art |= users.fav_artist[pu, j] == sart
    aff += 0.5 * fav_art + 0.5 * rep
    cos = np.einsum("ij,ij->i", users.taste[pu], cat.feel_unit[li])
    logit = -0.6 + 2.2 * aff + ENTRY_BIAS[pe] + audio * 1.5 * cos
    full = rng.random(n_p) < _sigmoid(logit)
    song_ms = cat.duration_ms[li]
    skip_ms = np.clip(rng.lognormal(np.log(20_000), 0.8, n_p), 2_000, 0.6 * song_ms).astype(np.int64)
    play_ms = np.where(full, song_ms - rng.integers(0, 1500, n_p), skip_ms)
    p_collect = _sigmoid(-4.5 + 2.0 * aff + audio * 1.5 * cos)
    r = rng.random(n_p)
    action = np.full(n_p, -1, dtype=np.int8)
    action[full & (r < p_collect)] = COLLECT
    action[full & (r >= p_collect) & (r < 1.3 * p_collect)] = PLAYLIST_ADD
    r2 = rng.random(n_p)
    action[(action < 0) & (r2 < 0.002)] = FOLLOW
    action[~full & (aff < 0.1) & (r2 > 0.99)] = BLOCK

    # ---- (4) sequence placebo: shuffle content among each user's plays ----------------------------
    if seq == 0.0:
        perm = np.lexsort((rng.random(n_p), pu))  # pu is sorted, so perm stays inside each user
        li, full, play_ms, song_ms, pe, action = (x[perm] for x in (li, full, play_ms, song_ms, pe, action))
    rs = np.where(np.roll(full, 1), TRACKDONE, FWDBTN).astype(np.int8)
    rs[(pos == 0) | (pe == SEARCH)] = CLICKROW
    rs[rng.random(n_p) < cfg.autoplay_confuser] = AUTOPLAY  # isolated genuine "autoplay" rows
    re = np.where(full, TRACKDONE, FWDBTN).astype(np.int8)
    re[(pos == length[ps] - 1) & ~full] = ENDPLAY

    # ---- (5) timestamps ----------------------------------------------------------------------------
    acc = rng.random(n_p) < cfg.accidental_rate  # an accidental play follows these rows
    acc_ms = rng.integers(300, 4001, n_p)
    delta = play_ms + rng.integers(0, 3001, n_p) + np.where(acc, acc_ms + 200, 0)
    # autoplay tail at the end of some sessions: popular songs played through
    tail_len = np.where(rng.random(n_s) < cfg.autoplay_session_rate, rng.integers(3, 13, n_s), 0)
    n_t = int(tail_len.sum())
    t_sess = np.repeat(np.arange(n_s), tail_len)
    t_li = cat.popular[rng.integers(0, len(cat.popular), n_t)]
    t_ms = cat.duration_ms[t_li]
    t_delta = t_ms + rng.integers(0, 3001, n_t)
    gen_dur = np.bincount(ps, weights=delta, minlength=n_s).astype(np.int64)
    dur = gen_dur + np.bincount(t_sess, weights=t_delta, minlength=n_s).astype(np.int64)
    # push sessions so that a user's sessions never overlap (>= 5 min apart):
    # x_i = max(s_i, x_{i-1} + d_{i-1} + g) = E_i + segmented-cummax(s_j - E_j)
    step = dur + 300_000
    e = _within_offsets(n_sess_u, step)
    v = start - e
    big = int(4 * (np.abs(v).max() + 1))
    if big * (users.n + 1) >= 2**62:  # pragma: no cover - guard for absurd sizes
        raise OverflowError("world too large for the session push key")
    x = e + np.maximum.accumulate(v + su * big) - su * big
    ts = x[ps] + _within_offsets(length, delta)
    t_ts = x[t_sess] + gen_dur[t_sess] + _within_offsets(tail_len, t_delta)
    # accidental plays right after their host row
    ai = np.flatnonzero(acc)
    a_li = cat.draw_global(rng, len(ai))
    coin = rng.random(len(ai)) < 0.5
    skipped = ~full
    rows = {
        "user": [pu, su[t_sess], pu[ai]],
        "li": [li, t_li, a_li],
        "ts": [ts, t_ts, ts[ai] + play_ms[ai] + 100],
        "play_ms": [play_ms, t_ms, acc_ms[ai]],
        "song_ms": [song_ms, t_ms, cat.duration_ms[a_li]],
        "entry": [pe, entry[t_sess], pe[ai]],
        "action": [action, np.full(n_t, -1, np.int8), np.full(len(ai), -1, np.int8)],
        "rs": [rs, np.full(n_t, AUTOPLAY, np.int8), np.where(coin, CLICKROW, FWDBTN).astype(np.int8)],
        "re": [re, np.full(n_t, TRACKDONE, np.int8), np.where(coin, FWDBTN, ENDPLAY).astype(np.int8)],
        "skipped": [skipped, np.zeros(n_t, bool), np.ones(len(ai), bool)],
        "noise": [
            np.zeros(n_p, np.int8),
            np.full(n_t, AUTOPLAY_NOISE, np.int8),
            np.full(len(ai), ACCIDENTAL, np.int8),
        ],
    }
    # sessions pushed past the export time are never logged; filter each part, concatenate once
    keep = [x < cfg.n_days * DAY_MS for x in rows["ts"]]
    bots = simulate_bots(cfg, cat, users)
    return {
        k: np.concatenate([*(v[m] for v, m in zip(rows[k], keep, strict=True)), bots[k]]) for k in COLUMNS
    }


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
    return {
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
