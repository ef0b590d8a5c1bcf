"""Global temporal train / valid / test split and leakage guards.

A *global* cut (one timestamp for every user) is the only split that mirrors deployment: a model
trained at time ``t`` is served on what happens after ``t``. Leave-last-out or random splits let a
model see interactions that happened after the ones it is asked to predict ("data leakage";
Meng, McCreadie, Macdonald & Ounis, *Exploring Data Splitting Strategies for the Evaluation of
Recommendation Models*, RecSys 2020; Ji, Sun, Zhang & Li, *A Critical Study on Data Leakage in
Recommender System Offline Evaluation*, ACM TOIS 2023).

Layout::

    train  :            ts <  t_valid
    valid  : t_valid <= ts <  t_test
    test   : t_test  <= ts

A model evaluated on ``valid`` may only be fitted on ``train``; a model evaluated on ``test`` may be
fitted on ``train + valid`` (:meth:`Split.fit_frame`). :func:`check_no_leakage` raises when any
frame used to build features reaches the cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import polars as pl

Stage = Literal["valid", "test"]

__all__ = ["LeakageError", "Split", "Stage", "check_no_leakage", "temporal_split"]


class LeakageError(AssertionError):
    """A frame used to fit a model or build features contains events at or after the cut."""


def _as_utc(t: datetime) -> datetime:
    """``t`` as a timezone-aware UTC datetime (naive datetimes are taken to be UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True)
class Split:
    """The three parts of a global temporal split and its two cut points (UTC)."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    t_valid: datetime
    t_test: datetime
    ts_col: str = "ts"
    n_dropped_null_ts: int = 0

    def fit_frame(self, stage: Stage) -> pl.DataFrame:
        """Everything a model evaluated on ``stage`` may see: ``train`` for "valid", ``train+valid`` for "test"."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return pl.concat([self.train, self.valid], how="vertical_relaxed")
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def eval_frame(self, stage: Stage) -> pl.DataFrame:
        """The events a model is evaluated on at ``stage``."""
        if stage == "valid":
            return self.valid
        if stage == "test":
            return self.test
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def cut(self, stage: Stage) -> datetime:
        """The timestamp no fitting data may reach at ``stage`` (``t_valid`` or ``t_test``)."""
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        return self.t_valid if stage == "valid" else self.t_test

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
    if ts_col not in events.columns:
        raise KeyError(f"events has no column {ts_col!r}")
    n_null = int(events[ts_col].null_count())
    ev = events.filter(pl.col(ts_col).is_not_null()) if n_null else events
    if ev.height == 0:
        raise ValueError("no events with a timestamp to split")
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
    ts = pl.col(ts_col)
    return Split(
        train=ev.filter(ts < t_valid),
        valid=ev.filter((ts >= t_valid) & (ts < t_test)),
        test=ev.filter(ts >= t_test),
        t_valid=t_valid,
        t_test=t_test,
        ts_col=ts_col,
        n_dropped_null_ts=n_null,
    )


def check_no_leakage(
    features_max_ts: datetime | pl.DataFrame | pl.LazyFrame | None,
    t_cut: datetime,
    *,
    ts_col: str = "ts",
    name: str = "features",
) -> None:
    """Raise :class:`LeakageError` if a feature-building input reaches ``t_cut``.

    ``features_max_ts`` is either the latest timestamp a feature saw, or the frame itself (its
    ``ts_col`` maximum is taken). ``None`` (an empty frame) passes. Use it right before fitting::

        fit = split.fit_frame("test")
        check_no_leakage(fit, split.t_test)
    """
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
