"""The one definition of the log-cleaning and Song2Vec-corpus rules, shared by both engines.

:mod:`musicrecall.cleaning` (polars, one machine) and :mod:`musicrecall.spark` (Apache Spark, a
cluster) both read their thresholds, reason names, label vocabularies and token format from here, and
``tests/test_spark.py`` requires them to give identical outputs. Change a rule here, then in both
engines; the equivalence test fails until they agree again.

Cleaning accounts for every row: ``rows in = rows kept + rows removed``, each removed row carrying the
first rule that caught it. Rules run in this order:

Invalid rows (``stage="invalid"``, quarantined):
  ``missing_user``        user_id is null.
  ``unparseable_ts``      ts is null (the importer could not parse it).
  ``future_ts``           ts later than the export time ``now`` plus ``future_tolerance_s`` (clock skew).
  ``negative_play_ms``    play_ms < 0.
  ``play_beyond_length``  play_ms > ``beyond_length_factor`` × song length + ``beyond_length_slack_ms``.
  ``unknown_song``        song_id null or absent from the items table.
Noise (``stage="noise"``, removed from training but kept in the quarantine file):
  ``duplicate``           an exact copy (all content columns) of an earlier row in source order.
  ``bot``                 the user's plays per active day exceed ``bot_max_plays_per_day``, or the user has
                          at least ``bot_min_plays`` plays whose inter-play gaps have a coefficient of
                          variation below ``bot_max_gap_cv`` (machines play at a fixed cadence).
  ``accidental``          play_ms < ``accidental_ms`` (a tap, not a listen).
  ``autoplay``            a trailing run of at least ``autoplay_min_run`` plays in a session that all
                          started with ``reason_start == "autoplay"``: passive listening the user never
                          chose (needs a source that logs reason_start; otherwise the rule is inert).

The song length is the event's ``song_ms`` or, when null, the items table's ``duration_ms``. Active
days are UTC calendar days. *Source order* is the order of the input rows (polars: the frame's row
order; Spark: a ``_row`` column when the input has one, else ``(source_file, source_row)``); it breaks
ties between plays of a user with the same timestamp.

Sessions: a new session starts when the gap between the end of one play (ts + play_ms) and the start of
the next exceeds ``session_gap_min`` minutes. ``session_id`` numbers the kept sessions densely (0-based)
in (user_id, time) order; ``pos_in_session`` is the play's 0-based position in its session.

Labels on kept rows:
  ``full_play``  play_ms ≥ ``full_play_share`` × song length, or the play ended with ``trackdone``.
                 Without a song length: ``trackdone`` if reason_end is logged, else not ``skipped`` and
                 play_ms ≥ ``full_play_fallback_ms`` if skipped is logged, else play_ms ≥ fallback; a
                 scrobble with no play_ms at all (Last.fm) counts as a full play by Last.fm's own rule.
  ``skip``       not full_play.
  ``strong_pos`` action in collect / playlist_add / follow_artist;  ``strong_neg``: action == block.

Song2Vec corpus (:mod:`musicrecall.corpus`): one sentence per kept session, its *full plays* in
time order, consecutive repeats of a song collapsed, sessions with fewer than ``CORPUS_MIN_LEN`` songs
dropped; songs are tokens ``SONG_PREFIX + str(song_id)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from musicrecall.schema import EVENTS_SCHEMA

INVALID_REASONS = ("missing_user", "unparseable_ts", "future_ts", "negative_play_ms", "play_beyond_length",
                   "unknown_song")
NOISE_REASONS = ("duplicate", "bot", "accidental", "autoplay")
REASONS = INVALID_REASONS + NOISE_REASONS
# Content columns that define an exact duplicate (the source position is not content).
CONTENT_COLUMNS = tuple(c for c in EVENTS_SCHEMA if c not in ("source_file", "source_row"))
# Label vocabularies (values of the canonical columns ``action``, ``reason_start``, ``reason_end``).
STRONG_POS_ACTIONS = ("collect", "playlist_add", "follow_artist")
STRONG_NEG_ACTION = "block"
AUTOPLAY_START = "autoplay"
TRACKDONE_END = "trackdone"
# Columns cleaning adds to kept rows, with their types.
SESSION_COLUMNS: dict[str, pl.DataType] = {"session_id": pl.Int64(), "pos_in_session": pl.Int32()}
LABEL_COLUMNS = ("full_play", "skip", "strong_pos", "strong_neg")

SONG_PREFIX = "song:"
CORPUS_MIN_LEN = 2  # a session of one song gives no skip-gram pair


@dataclass(frozen=True)
class CleaningConfig:
    """Thresholds of every rule; see the module docstring for what each one does."""

    future_tolerance_s: int = 3600
    beyond_length_factor: float = 1.5
    beyond_length_slack_ms: int = 10_000
    accidental_ms: int = 5_000
    bot_max_plays_per_day: float = 400.0
    bot_min_plays: int = 200
    bot_max_gap_cv: float = 0.15
    session_gap_min: float = 30.0
    autoplay_min_run: int = 3
    full_play_share: float = 0.8
    full_play_fallback_ms: int = 30_000


def session_gap_ms(gap_min: float) -> int:
    """The session gap in whole milliseconds, as both engines compare it."""
    return int(gap_min * 60_000)


def stage_of(reason: str) -> str:
    """``"invalid"`` or ``"noise"``."""
    return "invalid" if reason in INVALID_REASONS else "noise"


def accounting_from_counts(rows_in: int, rows_kept: int, counts: dict[str, int]) -> pl.DataFrame:
    """The accounting table: one row per reason (in rule order, zeros included) plus ``kept`` and
    ``rows_in``, with each count's share of the input. Both engines build it here."""
    unknown = set(counts) - set(REASONS)
    if unknown:
        raise ValueError(f"unknown removal reasons {sorted(unknown)}")
    rows = [("rows_in", "", rows_in), ("kept", "", rows_kept)]
    rows += [(r, stage_of(r), int(counts.get(r, 0))) for r in REASONS]
    table = pl.DataFrame(rows, schema={"reason": pl.String, "stage": pl.String, "rows": pl.Int64}, orient="row")
    return table.with_columns(share=pl.col("rows") / max(rows_in, 1))
