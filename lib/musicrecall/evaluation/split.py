"""Train / valid / test splits that fit the data, window-size guards and leakage guards.

Four kinds of split, one :class:`Split` object (``split.name`` says which, :meth:`Split.describe_split`
says it in one line for the report):

* ``"time"`` — a *global* cut by clock time (one timestamp for every user): the last ``test_days``
  are test, the ``valid_days`` before them validation. The only split that mirrors deployment: a
  model trained at time ``t`` is served on what happens after ``t``. Leave-last-out or random splits
  let a model see interactions that happened after the ones it is asked to predict ("data leakage";
  Meng, McCreadie, Macdonald & Ounis, *Exploring Data Splitting Strategies for the Evaluation of
  Recommendation Models*, RecSys 2020; Ji, Sun, Zhang & Li, *A Critical Study on Data Leakage in
  Recommender System Offline Evaluation*, ACM TOIS 2023). :func:`temporal_split`.
* ``"quantile"`` — the same global cut, placed by quantile of event time instead of by days (the
  last ``test_frac`` of events are test, the ``valid_frac`` before them validation), for logs whose
  last 7 days are empty or nearly so (a sparse personal export, a public log that ends with a
  trickle). :func:`quantile_split`.
* ``"position"`` — for order-only data (an imported sequence whose time is ordinal, no clock): per
  user, the last ``test_frac`` of the user's plays are test and the ``valid_frac`` before them
  validation (every user with >= 2 plays gets >= 1 test play, with >= 3 plays >= 1 validation play,
  and every user keeps >= 1 training play). :func:`position_split`.
* ``"leave_last_out"`` — per user, test = the last play, validation = the one before, train = the
  rest, as RecBole's ``LS`` split with ``valid_and_test`` (Zhao et al., *RecBole*, CIKM 2021); users
  with 2 plays get a test play and no validation play, users with 1 play only train.
  :func:`position_split` with counts.

:func:`choose_split` (``split="auto"``) picks: ``position`` for order-only data; else ``time`` when the
default day windows are populated (:func:`window_problem` finds none), else ``quantile``. The reason
is kept in ``split.params["reason"]``.

Layout, global splits::

    train  :            ts <  t_valid
    valid  : t_valid <= ts <  t_test
    test   : t_test  <= ts

Per-user splits have the same layout with a cut pair per user (``split.user_cuts``: ``user_id,
t_valid, t_test``; events sharing a timestamp with a user's first validation/test play go to that
later part, so every part is a strict time interval per user). What a model may fit on for a stage
is :meth:`Split.fit_frame` (``train`` for "valid", ``train + valid`` for "test"), so nothing a model
fits on comes at or after the user's first target: globally for time/quantile splits, per user for
position splits (other users' plays are ordered only within their own sequence, as in RecBole).

Guards:

* :func:`check_no_leakage` raises :class:`LeakageError` when a frame used to fit or build features
  reaches the cut; ``cut`` is a timestamp (global split) or the per-user frame of
  :meth:`Split.cut` (position splits). :meth:`Split.check_no_leakage` picks the right one.
* :func:`check_window` raises :class:`WindowTooSmallError` before any training when a validation or
  test window is empty or tiny (fewer than ``min_events`` full plays or ``min_users`` users with a
  full play), naming the window, its size and the parameter to change. Without it a log whose
  validation window is empty "tunes" on NaN.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import polars as pl

Stage = Literal["valid", "test"]
SplitName = Literal["auto", "time", "quantile", "position", "leave_last_out"]
TimeKind = Literal["auto", "clock", "ordinal"]

SPLITS = ("time", "quantile", "position", "leave_last_out")
PER_USER_SPLITS = ("position", "leave_last_out")
# A window is "tiny" below these sizes (full plays, users with a full play); users are capped at the
# number of users in the log, so a one-person export can still be evaluated.
MIN_WINDOW_EVENTS = 10
MIN_WINDOW_USERS = 10
# Timestamps before this are not a clock: they are positions written as times (ordinal data).
_ORDINAL_BEFORE = datetime(1971, 1, 1, tzinfo=UTC)

__all__ = [
    "LeakageError",
    "MIN_WINDOW_EVENTS",
    "MIN_WINDOW_USERS",
    "SPLITS",
    "Split",
    "SplitName",
    "Stage",
    "TimeKind",
    "WindowTooSmallError",
    "check_no_leakage",
    "check_window",
    "choose_split",
    "detect_time_kind",
    "position_split",
    "quantile_split",
    "temporal_split",
    "window_problem",
]


class LeakageError(AssertionError):
    """A frame used to fit a model or build features contains events at or after the cut."""


class WindowTooSmallError(ValueError):
    """A validation or test window is empty or too small to evaluate on (raised before any training).

    Attributes: ``window`` ("valid" or "test"), ``split`` (its kind), ``n_events`` (rows in the window),
    ``n_targets`` (full plays), ``n_users`` (users with a full play) and ``parameter`` (what to change).
    """

    def __init__(self, message: str, *, window: str, split: str, n_events: int, n_targets: int, n_users: int,
                 parameter: str):
        super().__init__(message)
        self.window, self.split, self.parameter = window, split, parameter
        self.n_events, self.n_targets, self.n_users = n_events, n_targets, n_users


def _as_utc(t: datetime) -> datetime:
    """``t`` as a timezone-aware UTC datetime (naive datetimes are taken to be UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class Split:
    """The three parts of a split, its cut points and its name.

    ``name`` is one of :data:`SPLITS`; ``params`` holds its parameters (days, fractions, counts) and,
    when chosen by :func:`choose_split`, the ``reason``. Global splits (time, quantile) have one cut
    pair ``t_valid`` / ``t_test``; per-user splits (position, leave_last_out) have ``user_cuts``
    (``user_id, t_valid, t_test``; null where the user has no play in that part or after) and reading
    ``t_valid`` / ``t_test`` raises (use :meth:`cut`, which works for every kind).
    """

    def __init__(self, train: pl.DataFrame, valid: pl.DataFrame, test: pl.DataFrame,
                 t_valid: datetime | None, t_test: datetime | None, ts_col: str = "ts",
                 n_dropped_null_ts: int = 0, *, name: str = "time", params: dict[str, Any] | None = None,
                 user_cuts: pl.DataFrame | None = None, time_kind: str = "clock"):
        if (user_cuts is None) == (t_valid is None or t_test is None):
            raise ValueError("a split has either global cuts (t_valid, t_test) or per-user cuts, not both")
        self.train, self.valid, self.test = train, valid, test
        self._t_valid, self._t_test = t_valid, t_test
        self.ts_col, self.n_dropped_null_ts = ts_col, n_dropped_null_ts
        self.name, self.params, self.user_cuts, self.time_kind = name, dict(params or {}), user_cuts, time_kind

    def __repr__(self) -> str:
        return f"Split({self.describe_split()})"

    @cached_property
    def n_users(self) -> int:
        """Distinct users over the three parts (computed once)."""
        return int(pl.concat([p.select("user_id") for p in (self.train, self.valid, self.test)])["user_id"].n_unique())

    @cached_property
    def _test_fit(self) -> pl.DataFrame:
        # built once: every test-stage setup on this split shares it (frames are immutable), so a second setup
        # for a subset of users (e.g. the cold-start users) costs no second copy of the log
        return pl.concat([self.train, self.valid], how="vertical_relaxed")

    @property
    def per_user(self) -> bool:
        """True for position / leave-last-out splits (one cut pair per user)."""
        return self.user_cuts is not None

    def _global(self, which: str, value: datetime | None) -> datetime:
        if value is None:
            raise AttributeError(f"{which}: a {self.name} split cuts each user at their own position and has "
                                 f"no global {which}; use split.cut(stage) (a per-user frame) and "
                                 "split.check_no_leakage(frame, stage)")
        return value

    @property
    def t_valid(self) -> datetime:
        """Start of the validation window (global splits only)."""
        return self._global("t_valid", self._t_valid)

    @property
    def t_test(self) -> datetime:
        """Start of the test window (global splits only)."""
        return self._global("t_test", self._t_test)

    def fit_frame(self, stage: Stage) -> pl.DataFrame:
        """Everything a model evaluated on ``stage`` may see: ``train`` for "valid", ``train+valid`` for "test"."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return self._test_fit
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def eval_frame(self, stage: Stage) -> pl.DataFrame:
        """The events a model is evaluated on at ``stage``."""
        if stage == "valid":
            return self.valid
        if stage == "test":
            return self.test
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def cut(self, stage: Stage) -> datetime | pl.DataFrame:
        """What no fitting data may reach at ``stage``: the global timestamp (time/quantile splits) or,
        for per-user splits, a frame ``user_id, cut`` (users without a play at or after the cut omitted)."""
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        if self.user_cuts is None:
            return self.t_valid if stage == "valid" else self.t_test
        col = "t_valid" if stage == "valid" else "t_test"
        return self.user_cuts.select("user_id", pl.col(col).alias("cut")).filter(pl.col("cut").is_not_null())

    def check_no_leakage(self, frame: pl.DataFrame | pl.LazyFrame, stage: Stage, name: str = "features") -> None:
        """Raise :class:`LeakageError` if ``frame`` reaches the cut of ``stage`` (per user where the split is)."""
        check_no_leakage(frame, self.cut(stage), ts_col=self.ts_col, name=name)

    def describe(self) -> pl.DataFrame:
        """One row per part: rows, distinct users and songs, first and last timestamp."""
        rows = []
        for name, df in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            ts = df[self.ts_col]
            rows.append(
                {
                    "part": name,
                    "rows": df.height,
                    "users": df["user_id"].n_unique() if "user_id" in df.columns else None,
                    "songs": df["song_id"].n_unique() if "song_id" in df.columns else None,
                    "ts_min": ts.min(),
                    "ts_max": ts.max(),
                }
            )
        schema = {
            "part": pl.String(),
            "rows": pl.Int64(),
            "users": pl.Int64(),
            "songs": pl.Int64(),
            "ts_min": self.train.schema[self.ts_col],
            "ts_max": self.train.schema[self.ts_col],
        }
        return pl.DataFrame(rows, schema=schema)

    def info(self) -> dict[str, Any]:
        """The split as plain values for a report: name, time kind, parameters (and reason), part sizes."""
        out: dict[str, Any] = {"split": self.name, "time_kind": self.time_kind, **self.params}
        for part, df in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            out[f"{part}_plays"], out[f"{part}_users"] = df.height, _n_users(df)
        if not self.per_user:
            out["t_valid"], out["t_test"] = self.t_valid.isoformat(), self.t_test.isoformat()
        return out

    def describe_split(self) -> str:
        """One line naming the split, its parameters, the window sizes and (if chosen automatically) why."""
        p = self.params
        sizes = (f"valid {self.valid.height:,} plays / {_n_users(self.valid):,} users, "
                 f"test {self.test.height:,} plays / {_n_users(self.test):,} users")
        if self.name == "time":
            head = (f"time split: valid = {p.get('valid_days', '?')} days from {self.t_valid:%Y-%m-%d %H:%M}, "
                    f"test = {p.get('test_days', '?')} days from {self.t_test:%Y-%m-%d %H:%M} UTC")
        elif self.name == "quantile":
            head = (f"quantile split: valid = the {p['valid_frac']:.0%} of plays before the last "
                    f"{p['test_frac']:.0%} (from {self.t_valid:%Y-%m-%d %H:%M}), test = the last "
                    f"{p['test_frac']:.0%} (from {self.t_test:%Y-%m-%d %H:%M} UTC)")
        elif self.name == "position":
            head = (f"position split per user: test = each user's last {p['test_frac']:.0%} of plays, valid = "
                    f"the {p['valid_frac']:.0%} before (at least one each when the user has enough plays)")
        else:
            head = "leave-last-out per user: test = each user's last play, valid = the one before (RecBole LS)"
        line = f"{head}; {sizes}; time is {'ordinal (order only, no clock)' if self.time_kind == 'ordinal' else 'a clock'}"
        if "reason" in p:
            line += f"; chosen automatically: {p['reason']}"
        return line


def _n_users(df: pl.DataFrame) -> int:
    return int(df["user_id"].n_unique()) if "user_id" in df.columns and df.height else 0


def _drop_null_ts(events: pl.DataFrame, ts_col: str) -> tuple[pl.DataFrame, int]:
    if ts_col not in events.columns:
        raise KeyError(f"events has no column {ts_col!r}")
    n_null = int(events[ts_col].null_count())
    ev = events.filter(pl.col(ts_col).is_not_null()) if n_null else events
    if ev.height == 0:
        raise ValueError("no events with a timestamp to split")
    return ev, n_null


def temporal_split(
    events: pl.DataFrame,
    valid_days: float = 7,
    test_days: float = 7,
    ts_col: str = "ts",
    *,
    align_to_day: bool = True,
    t_valid: datetime | None = None,
    t_test: datetime | None = None,
) -> Split:
    """Split ``events`` at two global timestamps: ``train < t_valid <= valid < t_test <= test``.

    By default the end of the data is the midnight (UTC) after the last event, ``t_test`` is
    ``test_days`` before it and ``t_valid`` is ``valid_days`` before ``t_test``; with
    ``align_to_day=False`` the end is the last timestamp itself. Explicit ``t_valid`` / ``t_test``
    override the computed cut points. Rows with a null timestamp cannot be placed in time and are
    dropped (their count is kept in ``Split.n_dropped_null_ts``).
    """
    ev, n_null = _drop_null_ts(events, ts_col)
    if t_test is None:
        last = _as_utc(ev[ts_col].max())  # type: ignore[arg-type]
        if align_to_day:
            end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        else:
            end = last + timedelta(milliseconds=1)  # so that the last event falls in test
        t_test = end - timedelta(days=test_days)
    t_test = _as_utc(t_test)
    t_valid = _as_utc(t_valid) if t_valid is not None else t_test - timedelta(days=valid_days)
    if not t_valid <= t_test:
        raise ValueError(f"t_valid {t_valid} is after t_test {t_test}")
    return _global_split(ev, t_valid, t_test, ts_col, n_null, "time",
                         {"valid_days": valid_days, "test_days": test_days})


def _global_split(ev: pl.DataFrame, t_valid: datetime, t_test: datetime, ts_col: str, n_null: int, name: str,
                  params: dict[str, Any], time_kind: str = "clock") -> Split:
    ts = pl.col(ts_col)
    return Split(ev.filter(ts < t_valid), ev.filter((ts >= t_valid) & (ts < t_test)), ev.filter(ts >= t_test),
                 t_valid, t_test, ts_col, n_null, name=name, params=params, time_kind=time_kind)


def _check_fracs(valid: float, test: float) -> None:
    if not (0 <= valid < 1 and 0 < test < 1 and valid + test < 1):
        raise ValueError(f"fractions must satisfy 0 <= valid_frac, 0 < test_frac, valid_frac + test_frac < 1; "
                         f"got valid_frac={valid}, test_frac={test}")


def quantile_split(events: pl.DataFrame, valid_frac: float = 0.1, test_frac: float = 0.1, ts_col: str = "ts", *,
                   time_kind: str = "clock") -> Split:
    """Global cut by quantile of event time: test = events from the ``1 - test_frac`` quantile on,
    valid = from the ``1 - test_frac - valid_frac`` quantile to it (events at a cut go to the later part)."""
    _check_fracs(valid_frac, test_frac)
    ev, n_null = _drop_null_ts(events, ts_col)
    ts = ev[ts_col].sort()
    n = ts.shape[0]
    # The cut is the timestamp of the first event of the last ``test_frac`` (lower order statistic).
    i_test = min(n - 1, max(0, n - math.ceil(n * test_frac)))
    i_valid = min(i_test, max(0, n - math.ceil(n * (test_frac + valid_frac))))
    t_test, t_valid = _as_utc(ts[i_test]), _as_utc(ts[i_valid])
    return _global_split(ev, t_valid, t_test, ts_col, n_null, "quantile",
                         {"valid_frac": valid_frac, "test_frac": test_frac}, time_kind)


def position_split(events: pl.DataFrame, valid_frac: float = 0.1, test_frac: float = 0.1, ts_col: str = "ts", *,
                   n_valid: int | None = None, n_test: int | None = None, time_kind: str | None = None) -> Split:
    """Per-user split by position in the user's own sequence (ordered by ``ts``, ties in frame order).

    With fractions: each user's last ``floor(n * test_frac)`` plays (at least 1 when ``n >= 2``) are test,
    the ``floor(n * valid_frac)`` before them (at least 1 when ``valid_frac > 0`` and 2 plays are left)
    validation, and at least one play stays in train. With counts (``n_valid``, ``n_test``) each user
    gives exactly that many (fewer when the user is short, train keeping one), as RecBole's leave-one-out;
    ``n_valid=1, n_test=1`` is named ``"leave_last_out"``. Plays sharing a timestamp with the user's first
    play of a later part join that part, so each part is a strict time interval per user. ``time_kind``
    (for the description only) is detected when not given.
    """
    counts = n_valid is not None or n_test is not None
    if counts:
        n_valid, n_test = int(n_valid or 0), int(n_test or 0)
        if n_valid < 0 or n_test < 1:
            raise ValueError(f"need n_test >= 1 and n_valid >= 0, got n_valid={n_valid}, n_test={n_test}")
        name = "leave_last_out" if (n_valid, n_test) == (1, 1) else "position"
        params: dict[str, Any] = {"n_valid": n_valid, "n_test": n_test}
    else:
        _check_fracs(valid_frac, test_frac)
        name, params = "position", {"valid_frac": valid_frac, "test_frac": test_frac}
    ev, n_null = _drop_null_ts(events, ts_col)
    time_kind = time_kind or detect_time_kind(ev, ts_col=ts_col)
    ev = ev.with_row_index("__row")
    s = ev.sort(["user_id", ts_col, "__row"]).with_columns(
        pl.int_range(pl.len()).over("user_id").alias("__pos"), pl.len().over("user_id").alias("__n"))
    n = pl.col("__n")
    if counts:
        want_t, want_v = pl.lit(n_test), pl.lit(n_valid)
    else:
        want_t = pl.max_horizontal((n * test_frac).floor().cast(pl.Int64), pl.lit(1))
        want_v = pl.max_horizontal((n * valid_frac).floor().cast(pl.Int64), pl.lit(1 if valid_frac > 0 else 0))
    s = s.with_columns(pl.min_horizontal(want_t, n - 1).clip(0).alias("__nt"))
    s = s.with_columns(pl.min_horizontal(want_v, n - 1 - pl.col("__nt")).clip(0).alias("__nv"))
    start_v = n - pl.col("__nt") - pl.col("__nv")
    part = (pl.when(pl.col("__pos") >= n - pl.col("__nt")).then(2)
            .when(pl.col("__pos") >= start_v).then(1).otherwise(0))
    s = s.with_columns(part.alias("__part"))
    cuts = s.group_by("user_id").agg(
        pl.col(ts_col).filter(pl.col("__part") >= 1).min().alias("t_valid"),
        pl.col(ts_col).filter(pl.col("__part") == 2).min().alias("t_test"),
    ).sort("user_id")
    s = s.join(cuts, on="user_id", how="left")
    ts = pl.col(ts_col)
    part = (pl.when(pl.col("t_test").is_not_null() & (ts >= pl.col("t_test"))).then(2)
            .when(pl.col("t_valid").is_not_null() & (ts >= pl.col("t_valid"))).then(1).otherwise(0))
    s = s.with_columns(part.alias("__part")).sort("__row")
    cols = [c for c in ev.columns if c != "__row"]
    parts = [s.filter(pl.col("__part") == i).select(cols) for i in range(3)]
    return Split(*parts, None, None, ts_col, n_null, name=name, params=params, user_cuts=cuts,
                 time_kind=time_kind)


def detect_time_kind(events: pl.DataFrame | None = None, meta: dict | str | Path | None = None,
                     ts_col: str = "ts") -> str:
    """``"ordinal"`` (order only, no clock) or ``"clock"``.

    ``meta`` (a dataset's ``meta.json`` path, folder or parsed dict) wins when it has ``time_kind``.
    Otherwise the data decides: an integer ``ts`` column, or timestamps that all lie before 1971 (positions
    written as times from the epoch; no music log is that old), mean ordinal time.
    """
    if meta is not None:
        if not isinstance(meta, dict):
            path = Path(meta)
            path = path / "meta.json" if path.is_dir() else path
            meta = json.loads(path.read_text()) if path.exists() else {}
        kind = meta.get("time_kind")
        if kind is not None:
            if kind not in ("clock", "ordinal"):
                raise ValueError(f"meta time_kind must be 'clock' or 'ordinal', got {kind!r}")
            return kind
    if events is None or ts_col not in events.columns:
        return "clock"
    dtype = events.schema[ts_col]
    if dtype.is_integer():
        return "ordinal"
    if isinstance(dtype, pl.Datetime):
        hi = events[ts_col].max()
        if hi is not None and _as_utc(hi) < _ORDINAL_BEFORE:  # type: ignore[arg-type]
            return "ordinal"
    return "clock"


def _window_size(df: pl.DataFrame, label: str | None) -> tuple[int, int, int]:
    """(rows, target plays, users with a target play) of a window."""
    tgt = df if label is None or label not in df.columns else df.filter(pl.col(label).fill_null(False))
    return df.height, tgt.height, _n_users(tgt)


def _parameter_hint(split: Split, stage: str) -> str:
    """What to change to widen ``stage``'s window of ``split`` ("train", "valid" or "test")."""
    p = split.params
    if stage == "train":
        if split.name == "time":
            return (f"valid_days / test_days (now {p.get('valid_days')} / {p.get('test_days')}: they cover the "
                    "whole log), or split='quantile'")
        if "valid_frac" in p:
            return f"valid_frac / test_frac (now {p['valid_frac']} / {p['test_frac']})"
        return "the split: users need more plays than the validation and test windows take"
    if split.name == "time":
        key = "valid_days" if stage == "valid" else "test_days"
        return f"{key} (now {p.get(key)}), or split='quantile'"
    if split.name in ("quantile", "position"):
        key = "valid_frac" if stage == "valid" else "test_frac"
        if key in p:
            return f"{key} (now {p[key]})"
        key = "n_valid" if stage == "valid" else "n_test"
        return f"{key} (now {p[key]})"
    return "the split (leave-last-out gives one play per user with >= 3 plays): try split='position'"


def window_problem(split: Split, stage: Stage | Literal["train"], min_events: int = MIN_WINDOW_EVENTS,
                   min_users: int = MIN_WINDOW_USERS, label: str | None = "full_play",
                   n_log_users: int | None = None) -> str | None:
    """Why ``stage``'s window of ``split`` is too small, or ``None`` when it is fine.

    Validation / test windows are too small with fewer than ``min_events`` target plays (``label`` true)
    or fewer than ``min(min_users, n_log_users)`` users with one (``n_log_users`` defaults to the users of
    the split). ``stage="train"`` checks what models fit on: at least ``min_events`` ``label`` plays.
    """
    frame = split.train if stage == "train" else split.eval_frame(stage)
    rows, n_t, n_u = _window_size(frame, label)
    if n_log_users is None:
        n_log_users = split.n_users
    need_u = 1 if stage == "train" else max(1, min(min_users, n_log_users))
    if n_t >= min_events and n_u >= need_u:
        return None
    what = {"train": "training", "valid": "validation", "test": "test"}[stage]
    lab = f"{label} " if label else ""
    noun = "plays to fit on" if stage == "train" else "targets"
    return (f"the {what} window of the {split.name} split is {'empty' if n_t == 0 else 'too small'}: {rows:,} plays, "
            f"{n_t:,} {lab}{noun}, {n_u:,} users (need >= {min_events} {lab}{noun} and >= {need_u} users)")


def check_window(split: Split, stage: Stage, min_events: int = MIN_WINDOW_EVENTS, min_users: int = MIN_WINDOW_USERS,
                 label: str | None = "full_play") -> None:
    """Raise :class:`WindowTooSmallError` when ``stage``'s window, or the training window every model fits
    on, is empty or tiny (see :func:`window_problem`)."""
    for window in (stage, "train"):
        problem = window_problem(split, window, min_events, min_users, label)  # type: ignore[arg-type]
        if problem is None:
            continue
        frame = split.train if window == "train" else split.eval_frame(stage)
        rows, n_t, n_u = _window_size(frame, label)
        hint = _parameter_hint(split, window)
        raise WindowTooSmallError(f"{problem}. Change {hint} before training ({split.describe_split()}).",
                                  window=window, split=split.name, n_events=rows, n_targets=n_t, n_users=n_u,
                                  parameter=hint)


def choose_split(events: pl.DataFrame, split: SplitName = "auto", *, time_kind: TimeKind | str = "auto",
                 valid_days: float = 7, test_days: float = 7, valid_frac: float = 0.1, test_frac: float = 0.1,
                 min_events: int = MIN_WINDOW_EVENTS, min_users: int = MIN_WINDOW_USERS,
                 label: str | None = "full_play", ts_col: str = "ts") -> Split:
    """Build the split named ``split``, or with ``"auto"`` the one that fits the data:

    * order-only data (``time_kind="ordinal"``, or detected by :func:`detect_time_kind`) -> ``position``;
    * a clock and populated default windows (``valid_days`` / ``test_days``, :func:`window_problem` finds
      none in the validation, test or training window) -> ``time`` (today's split, unchanged);
    * a clock and an empty or tiny day window (e.g. a two-week export leaves nothing to train on) ->
      ``quantile`` (``valid_frac`` / ``test_frac``).

    The reason is kept in ``split.params["reason"]``. An explicit ``"time"`` on ordinal data is refused
    (days mean nothing without a clock). Window sizes are not checked here (see :func:`check_window`).
    """
    if split not in ("auto", *SPLITS):
        raise ValueError(f"split must be 'auto' or one of {SPLITS}, got {split!r}")
    kind = detect_time_kind(events, ts_col=ts_col) if time_kind == "auto" else time_kind
    if kind not in ("clock", "ordinal"):
        raise ValueError(f"time_kind must be 'auto', 'clock' or 'ordinal', got {time_kind!r}")
    if split == "time":
        if kind == "ordinal":
            raise ValueError("split='time' needs a clock, but this log's time is ordinal (order only); "
                             "use split='position' or 'leave_last_out'")
        return temporal_split(events, valid_days, test_days, ts_col)
    if split == "quantile":
        return quantile_split(events, valid_frac, test_frac, ts_col, time_kind=kind)
    if split == "position":
        return position_split(events, valid_frac, test_frac, ts_col, time_kind=kind)
    if split == "leave_last_out":
        return position_split(events, ts_col=ts_col, n_valid=1, n_test=1, time_kind=kind)
    # auto
    if kind == "ordinal":
        out = position_split(events, valid_frac, test_frac, ts_col, time_kind=kind)
        out.params["reason"] = "time is ordinal (order only, no clock), so each user is cut by position"
        return out
    out = temporal_split(events, valid_days, test_days, ts_col)
    problems = [p for st in ("train", "valid", "test")
                if (p := window_problem(out, st, min_events, min_users, label))]  # type: ignore[arg-type]
    if not problems:
        out.params["reason"] = f"a clock and populated {valid_days:g}/{test_days:g}-day windows"
        return out
    q = quantile_split(events, valid_frac, test_frac, ts_col, time_kind=kind)
    q.params["reason"] = f"with {valid_days:g}/{test_days:g}-day windows " + "; ".join(problems)
    return q


def check_no_leakage(
    features_max_ts: datetime | pl.DataFrame | pl.LazyFrame | None,
    t_cut: datetime | pl.DataFrame,
    *,
    ts_col: str = "ts",
    name: str = "features",
) -> None:
    """Raise :class:`LeakageError` if a feature-building input reaches ``t_cut``.

    ``features_max_ts`` is either the latest timestamp a feature saw, or the frame itself (its
    ``ts_col`` maximum is taken). ``None`` (an empty frame) passes. ``t_cut`` is a global timestamp or,
    for per-user splits, the frame ``user_id, cut`` of :meth:`Split.cut`: then ``features_max_ts`` must be
    a frame with ``user_id`` and every user's rows must stay before that user's cut. Use it right
    before fitting::

        fit = split.fit_frame("test")
        check_no_leakage(fit, split.cut("test"))
    """
    if isinstance(t_cut, pl.DataFrame):
        _check_per_user(features_max_ts, t_cut, ts_col, name)
        return
    if isinstance(features_max_ts, pl.LazyFrame):
        features_max_ts = features_max_ts.select(pl.col(ts_col).max()).collect()
    if isinstance(features_max_ts, pl.DataFrame):
        if ts_col not in features_max_ts.columns:
            raise KeyError(f"{name}: no column {ts_col!r} to check for leakage")
        features_max_ts = features_max_ts[ts_col].max()  # type: ignore[assignment]
    if features_max_ts is None:
        return
    if not isinstance(features_max_ts, datetime):
        raise TypeError(f"{name}: expected a datetime, got {type(features_max_ts).__name__}")
    seen, cut = _as_utc(features_max_ts), _as_utc(t_cut)
    if seen >= cut:
        raise LeakageError(f"{name} contains events at {seen.isoformat()} >= cut {cut.isoformat()}")


def _check_per_user(frame: object, cuts: pl.DataFrame, ts_col: str, name: str) -> None:
    """Per-user leakage check: every row of ``frame`` before its user's cut."""
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    if frame is None:
        return
    if not isinstance(frame, pl.DataFrame) or "user_id" not in frame.columns or ts_col not in frame.columns:
        raise TypeError(f"{name}: a per-user split needs a frame with user_id and {ts_col!r} to check for leakage")
    last = frame.group_by("user_id").agg(pl.col(ts_col).max().alias("__seen"))
    bad = last.join(cuts.select(pl.col("user_id").cast(last.schema["user_id"]), "cut"), on="user_id") \
        .filter(pl.col("__seen") >= pl.col("cut")).sort("user_id")
    if bad.height:
        r = bad.row(0, named=True)
        raise LeakageError(f"{name} contains events of {bad.height} users at or after their own cut, e.g. user "
                           f"{r['user_id']} at {r['__seen']} >= cut {r['cut']}")
