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
from musicrecall import rules as rules_module
from musicrecall.cache import build_lock, content_key, file_fingerprint, source_fingerprint
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
    w = None
    if not (folder / "config.json").exists():
        with build_lock(folder):  # notebooks run side by side: one kernel generates, the others wait for it
            if not (folder / "config.json").exists():
                w = generate_world(profile=profile, seed=seed, effects=effects)
                w.save(folder)
    if w is None:
        w = World.load(folder)
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
    notes: list[str] = field(default_factory=list)  # how cleaning was adapted to the data (one line each)


ENGINES = ("polars", "spark")


def _engine_fingerprint(engine: str) -> str:
    """Source hash of the cleaning code of ``engine`` (the shared rules included)."""
    if engine == "polars":
        return source_fingerprint(cleaning_module, rules_module)
    try:
        import musicrecall.spark as spark_pkg
    except ImportError as err:  # pyspark is an optional extra
        raise ImportError("engine='spark' needs the spark extra (pip install -e '.[spark]') and a Java runtime") from err
    return "spark:" + source_fingerprint(cleaning_module, rules_module, spark_pkg)


def prepare(dataset: str = "world", profile: str = "small", seed: int = 0, effects=None,
            config: CleaningConfig | None = None, engine: str = "polars") -> Prepared:
    """Load and clean; cleaned plays go to ``data/processed/``, removed rows to ``data/interim/``.

    ``engine="spark"`` runs the cleaning on Apache Spark (the active SparkSession, or a local one; see
    :mod:`musicrecall.spark`) with the same rules and the same result; it is cached apart, so a run
    with ``engine="spark"`` really runs Spark.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {ENGINES}")
    ds = load_dataset(dataset, profile, seed, effects)
    from musicrecall.evaluation import detect_time_kind

    cfg, notes = cleaning_module.config_for_time_kind(config or CleaningConfig(), detect_time_kind(ds.events))
    key = content_key(ds.key, asdict(cfg), _engine_fingerprint(engine))
    processed, interim = DATA_DIR / "processed" / f"clean-{key}", DATA_DIR / "interim" / f"clean-{key}"

    def cached() -> bool:
        return (processed / "clean_events.parquet").exists() and (interim / "quarantine.parquet").exists()

    if not cached():
        with build_lock(processed):  # notebooks run side by side: one kernel cleans, the others wait for it
            if not cached():
                if engine == "spark":
                    from musicrecall.spark import clean_frames

                    result = clean_frames(ds.events, ds.items, ds.now, cfg, DATA_DIR / "interim" / f"spark-{key}")
                else:
                    result = clean_log(ds.events, ds.items, ds.now, cfg)
                result.write(processed, interim)
                return Prepared(ds, result, notes)
    kept = pl.read_parquet(processed / "clean_events.parquet")
    removed = pl.read_parquet(interim / "quarantine.parquet")
    result = CleanResult(kept, removed, accounting_table(ds.events.height, kept.height, removed), cfg,
                         ds.events.height)
    result.check_balance()
    return Prepared(ds, result, notes)
