"""World parameters: placebo switches (:class:`Effects`), the resolved :class:`WorldConfig` and profiles."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

GENRES: tuple[str, ...] = (
    "pop", "rock", "hiphop", "rnb", "electronic", "folk", "jazz", "classical",
    "metal", "country", "kpop", "jpop", "cpop", "mandopop-ballad", "ambient", "soundtrack",
)  # fmt: skip
LANGUAGES: tuple[str, ...] = ("zh", "en", "ja", "ko", "yue", "es", "instrumental")
VERSIONS: tuple[str, ...] = ("original", "live", "cover", "remix")
INSTRUMENTAL = LANGUAGES.index("instrumental")

# Share of artists per genre (a catalogue is pop-heavy).
GENRE_SHARE = np.array([14, 9, 9, 6, 7, 5, 4, 4, 3, 3, 6, 5, 9, 8, 4, 4], dtype=np.float64)
GENRE_SHARE /= GENRE_SHARE.sum()

# Language mix per genre (rows: GENRES, columns: LANGUAGES) -- language is correlated with genre so that
# a (genre, language) cluster is a natural unit of taste.
_LANG_MIX = {
    "pop": [0.45, 0.35, 0.05, 0.05, 0.07, 0.03, 0.0],
    "rock": [0.35, 0.5, 0.07, 0.02, 0.04, 0.02, 0.0],
    "hiphop": [0.4, 0.45, 0.03, 0.08, 0.02, 0.02, 0.0],
    "rnb": [0.3, 0.6, 0.02, 0.05, 0.02, 0.01, 0.0],
    "electronic": [0.15, 0.45, 0.05, 0.05, 0.0, 0.05, 0.25],
    "folk": [0.55, 0.3, 0.03, 0.02, 0.05, 0.05, 0.0],
    "jazz": [0.1, 0.5, 0.05, 0.0, 0.0, 0.05, 0.3],
    "classical": [0.02, 0.03, 0.0, 0.0, 0.0, 0.0, 0.95],
    "metal": [0.15, 0.7, 0.1, 0.0, 0.0, 0.05, 0.0],
    "country": [0.05, 0.9, 0.0, 0.0, 0.0, 0.05, 0.0],
    "kpop": [0.0, 0.05, 0.0, 0.95, 0.0, 0.0, 0.0],
    "jpop": [0.0, 0.03, 0.97, 0.0, 0.0, 0.0, 0.0],
    "cpop": [0.8, 0.05, 0.0, 0.0, 0.15, 0.0, 0.0],
    "mandopop-ballad": [0.85, 0.0, 0.0, 0.0, 0.15, 0.0, 0.0],
    "ambient": [0.05, 0.05, 0.0, 0.0, 0.0, 0.0, 0.9],
    "soundtrack": [0.1, 0.1, 0.05, 0.0, 0.0, 0.0, 0.75],
}
LANG_MIX = np.array([_LANG_MIX[g] for g in GENRES], dtype=np.float64)
LANG_MIX /= LANG_MIX.sum(axis=1, keepdims=True)

AGE_BUCKETS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
GENDERS: tuple[str, ...] = ("f", "m")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central", "northeast", "southwest", "overseas")

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Effects:
    """Placebo switches: 1.0 = effect on as designed, 0.0 = effect removed (values in between scale it)."""

    sequence: float = 1.0  # order/sequence effect (continuations, interest drift, stickiness)
    kg_relevance: float = 1.0  # whether published KG attributes predict behaviour
    audio_preference: float = 1.0  # users' audio-style taste affects full play / collect
    cross_business: float = 1.0  # party-B user features carry interest signal
    multi_interest: float = 1.0  # 0 => every user has exactly one interest

    def placebo(self, name: str) -> Effects:
        """A copy with effect ``name`` switched off (sequence, kg, audio, cross_business, multi_interest)."""
        try:
            attr = _PLACEBO_NAMES[name]
        except KeyError:
            raise ValueError(f"unknown effect {name!r}; choose from {sorted(_PLACEBO_NAMES)}") from None
        return replace(self, **{attr: 0.0})


_PLACEBO_NAMES = {
    "sequence": "sequence",
    "kg": "kg_relevance",
    "kg_relevance": "kg_relevance",
    "audio": "audio_preference",
    "audio_preference": "audio_preference",
    "cross_business": "cross_business",
    "multi_interest": "multi_interest",
}


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of one generated world (the profile fills the sizes, overrides change any field)."""

    profile: str = "tiny"
    seed: int = 0
    effects: Effects = field(default_factory=Effects)
    n_users: int = 500
    n_songs: int = 2000
    n_days: int = 60
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    sessions_per_user: float = 6.0  # mean sessions of a normal user over the whole period
    mean_session_len: float = 12.0
    cold_share: float = 0.08
    bot_share: float = 0.003
    # behaviour
    continuation_prob: float = 0.35  # scaled by effects.sequence
    repeat_prob: float = 0.15
    fav_artist_prob: float = 0.25
    switch_prob: float = 0.08  # within-session interest switch
    sticky_prob: float = 0.6  # session keeps the previous session's interest (scaled by sequence)
    autoplay_confuser: float = 0.03  # genuine plays labelled reason_start=autoplay
    # noise
    accidental_rate: float = 0.03
    autoplay_session_rate: float = 0.12
    duplicate_rate: float = 0.005
    clock_skew_rate: float = 0.001
    invalid_rate: float = 0.0005  # per invalid kind

    @property
    def end(self) -> datetime:
        """Export time: ``start + n_days``."""
        return self.start + timedelta(days=self.n_days)

    @property
    def source_file(self) -> str:
        """``source_file`` value of every event row."""
        return f"world:{self.profile}:seed{self.seed}"

    def to_json(self) -> str:
        """JSON text (datetimes as ISO strings)."""
        d = dataclasses.asdict(self)
        d["start"] = self.start.isoformat()
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorldConfig:
        """Inverse of :meth:`to_json`."""
        d: dict[str, Any] = json.loads(text)
        d["effects"] = Effects(**d["effects"])
        d["start"] = datetime.fromisoformat(d["start"])
        return cls(**d)


PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"n_users": 500, "n_songs": 2000, "sessions_per_user": 6.0},
    "small": {"n_users": 20_000, "n_songs": 30_000, "sessions_per_user": 8.5},
    "medium": {"n_users": 100_000, "n_songs": 200_000, "sessions_per_user": 17.5},
}


def resolve_config(profile: str, seed: int, effects: Effects | None, **overrides: Any) -> WorldConfig:
    """Profile defaults + overrides -> :class:`WorldConfig` (unknown override names raise ``TypeError``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    names = {f.name for f in dataclasses.fields(WorldConfig)}
    bad = set(overrides) - names
    if bad:
        raise TypeError(f"unknown world overrides: {sorted(bad)}")
    params = {**PROFILES[profile], **overrides}
    return WorldConfig(profile=profile, seed=int(seed), effects=effects or Effects(), **params)


# Prior entry mix of a user (order of schema.ENTRIES) and entry-level behaviour.
ENTRY_BASE = np.array([0.2, 0.2, 0.2, 0.15, 0.1, 0.15])
LOOSE_P = np.array([0.45, 0.15, 0.2, 0.25, 0.2, 0.02])  # chance that exposure is only loosely matched
ENTRY_BIAS = np.array([-0.5, 0.2, 0.0, 0.1, 0.1, 1.0])  # logit bias on full play
