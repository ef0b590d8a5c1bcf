"""One entry point for every notebook: ``load_dataset`` and ``prepare``.

``dataset="world"`` (the default) is the built-in simulated world at a profile and seed, optionally
with placebo ``effects``; any other value is a folder written by :func:`musicrecall.io.save_dataset`
(your own imported export). Both are cached under ``data/`` by content hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from musicrecall import cleaning as cleaning_module
from musicrecall.cache import content_key, file_fingerprint, source_fingerprint
from musicrecall.cleaning import CleaningConfig, CleanResult, accounting_table, clean_log
from musicrecall.config import DATA_DIR, REPO_ROOT


@dataclass
class Dataset:
    """Canonical tables of one dataset, plus the simulator's extras when it is the world."""

    name: str
    events: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    triples: pl.DataFrame
    now: datetime  # export time: later timestamps are clock skew
    truth: dict[str, pl.DataFrame] = field(default_factory=dict)  # ground truth (world only)
    cross_business: pl.DataFrame | None = None  # party B's user features (world only)
    world: object | None = None  # the musicrecall.world.World, when simulated
    key: str = ""  # content hash of the source (world parameters and code, or the dataset files)

    @property
    def is_world(self) -> bool:
        return self.world is not None


def _world(profile: str, seed: int, effects) -> Dataset:
    from musicrecall import world as world_pkg
    from musicrecall.world import Effects, World, generate_world

    effects = effects or Effects()
    key = content_key("world", profile, seed, asdict(effects), source_fingerprint(world_pkg))
    folder = DATA_DIR / "raw" / f"world-{profile}-seed{seed}-{key}"
    if (folder / "config.json").exists():
        w = World.load(folder)
    else:
        w = generate_world(profile=profile, seed=seed, effects=effects)
        w.save(folder)
    return Dataset(f"world:{profile}:seed{seed}", w.events, w.items, w.users, w.triples, w.end_ts,
                   dict(w.truth), w.cross_business, w, key)


def load_dataset(dataset: str = "world", profile: str = "small", seed: int = 0, effects=None) -> Dataset:
    """The simulated world (``dataset="world"``) or an imported dataset folder."""
    if dataset == "world":
        return _world(profile, seed, effects)
    from musicrecall.io import load_dataset_dir

    folder = Path(dataset).expanduser()
    if not folder.is_absolute() and not folder.exists():  # relative to the repository, e.g. data/raw/me
        folder = REPO_ROOT / folder
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r}: no such folder (expected 'world' or a folder written by "
                                "musicrecall.io.save_dataset)")
    tables = load_dataset_dir(folder)
    return Dataset(folder.name, tables["events"], tables["items"], tables["users"], tables["triples"],
                   now=datetime.now(UTC), key=file_fingerprint(list(folder.glob("*.parquet"))))


@dataclass
class Prepared:
    """A dataset and its cleaning result (kept plays with sessions and labels)."""

    dataset: Dataset
    clean: CleanResult


def prepare(dataset: str = "world", profile: str = "small", seed: int = 0, effects=None,
            config: CleaningConfig | None = None) -> Prepared:
    """Load and clean; cleaned plays go to ``data/processed/``, removed rows to ``data/interim/``."""
    ds = load_dataset(dataset, profile, seed, effects)
    cfg = config or CleaningConfig()
    key = content_key(ds.key, asdict(cfg), source_fingerprint(cleaning_module))
    processed, interim = DATA_DIR / "processed" / f"clean-{key}", DATA_DIR / "interim" / f"clean-{key}"
    if (processed / "clean_events.parquet").exists() and (interim / "quarantine.parquet").exists():
        kept = pl.read_parquet(processed / "clean_events.parquet")
        removed = pl.read_parquet(interim / "quarantine.parquet")
        result = CleanResult(kept, removed, accounting_table(ds.events.height, kept.height, removed), cfg,
                             ds.events.height)
        result.check_balance()
    else:
        result = clean_log(ds.events, ds.items, ds.now, cfg)
        result.write(processed, interim)
    return Prepared(ds, result)
