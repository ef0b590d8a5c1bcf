"""One entry point for every notebook: ``load_dataset`` and ``prepare``.

``dataset="world"`` (the default) is the built-in simulated world at a profile and seed, optionally
with placebo ``effects``; any other value is a folder written by :func:`musicrecall.io.save_dataset`
(your own imported export). Both are cached under ``data/`` by content hash.

What is missing from the cache (the world, the cleaned log) is built in a child process that writes it and
exits; the caller then reads it from the cache. A notebook's kernel that already holds models and a first
world (notebook 02's placebo cell at profile medium: 14-15 GB) would otherwise add generation and cleaning
peaks of 11 and 15 GB to its own, and keep the freed memory the allocator does not return.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from musicrecall import cleaning as cleaning_module
from musicrecall import rules as rules_module
from musicrecall.cache import build_lock, content_key, file_fingerprint, source_fingerprint
from musicrecall.cleaning import CleaningConfig, CleanResult, accounting_table, clean_log
from musicrecall.config import DATA_DIR, REPO_ROOT, n_threads

# Build missing caches in a child process (see the module docstring); MUSICRECALL_BUILD_IN_CHILD=0 builds in
# the calling process (for debugging a build with breakpoints).
BUILD_IN_CHILD = os.environ.get("MUSICRECALL_BUILD_IN_CHILD", "1") != "0"


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
    raw_rows: int = -1  # rows of the raw log (also when it was not loaded: see ``raw_log``)

    @property
    def raw_log_loaded(self) -> bool:
        """Whether ``events`` holds the raw log (``prepare(..., raw_log=False)`` leaves it out)."""
        return self.events.height == self.raw_rows

    @property
    def is_world(self) -> bool:
        return self.world is not None


# The build process's entry (``python -c``, not multiprocessing: spawn would re-run a calling script that lacks an
# ``if __name__ == "__main__"`` guard). It reads the caller's sys.path, then the job, from stdin.
_CHILD_BOOT = ("import pickle, sys; path, job = pickle.load(sys.stdin.buffer); sys.path[:0] = path; "
               "from musicrecall.data import _child_main; _child_main(job)")


def _child_main(job: bytes) -> None:
    """Body of the build process: run the task for its cache, send back ``None`` or the exception."""
    import pickle
    import threading
    import traceback

    from musicrecall.config import set_threads

    task, kwargs, threads, data_dir, result_fd = pickle.loads(job)

    def exit_with_caller() -> None:  # the caller holds stdin open: EOF means it died, so stop building for nobody
        while os.read(0, 1 << 16):  # the raw descriptor: a daemon thread inside sys.stdin's lock aborts at exit
            pass
        os._exit(1)

    threading.Thread(target=exit_with_caller, daemon=True).start()
    global DATA_DIR
    DATA_DIR = Path(data_dir)  # the caller's, even when it was changed after import (tests do)
    try:
        set_threads(threads)
        if task == "world":
            _world(**kwargs, in_child=False)
        else:
            prepare(**kwargs, in_child=False)
        message = None
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the caller
        trace = traceback.format_exc()
        try:
            payload = pickle.dumps(err)
        except Exception:  # noqa: BLE001 - an exception that cannot travel becomes a RuntimeError
            payload = pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
        message = (payload, trace)
    with os.fdopen(result_fd, "wb") as out:
        pickle.dump(message, out)


def build_in_child(task: str, what: str, **kwargs) -> None:
    """Build the cache of ``task`` (``"world"``: generate and save; ``"prepare"``: load and clean) in a fresh
    Python process, wait for it, and re-raise its exception here (its traceback added as a note). A child killed
    by a signal (the out-of-memory killer) raises a :class:`RuntimeError` that says so; an interrupted caller
    stops its child, and a child whose caller died stops by itself."""
    import pickle
    import subprocess
    import sys

    read_fd, write_fd = os.pipe()
    job = pickle.dumps((task, kwargs, n_threads(), str(DATA_DIR), write_fd))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD_BOOT], stdin=subprocess.PIPE, pass_fds=(write_fd,))
    os.close(write_fd)
    try:
        try:
            proc.stdin.write(pickle.dumps((list(sys.path), job)))
            proc.stdin.flush()
        except BrokenPipeError:  # it died at start-up: its exit code says how, below
            pass
        with os.fdopen(read_fd, "rb") as answer:
            reply = answer.read()  # until the child closes its end (done, or dead)
        proc.wait()
    except BaseException:  # interrupted (the notebook's stop button): stop the build too, its writes are atomic
        proc.terminate()
        proc.wait()
        raise
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    message = pickle.loads(reply) if reply else None
    if message is not None:
        err = pickle.loads(message[0])
        err.add_note(f"(raised while building {what} in a child process; its traceback:)\n{message[1]}")
        raise err
    if proc.returncode != 0 or not reply:
        code = proc.returncode
        cause = (f"killed by signal {-code}" + (" (out of memory?)" if code == -9 else "") if code < 0
                 else f"exit code {code}")
        raise RuntimeError(f"the process building {what} under {DATA_DIR} died: {cause}; nothing was cached")


def _world_folder(profile: str, seed: int, effects) -> tuple[Path, str]:
    """Cache folder and content key of the world at (``profile``, ``seed``, ``effects``)."""
    from musicrecall import world as world_pkg
    from musicrecall.world import Effects

    key = content_key("world", profile, seed, asdict(effects or Effects()), source_fingerprint(world_pkg))
    return DATA_DIR / "raw" / f"world-{profile}-seed{seed}-{key}", key


def _world(profile: str, seed: int, effects, in_child: bool | None = None, raw_log: bool = True) -> Dataset:
    from musicrecall.world import Effects, World, generate_world

    effects = effects or Effects()
    folder, key = _world_folder(profile, seed, effects)
    w = None
    if not (folder / "config.json").exists():
        if BUILD_IN_CHILD if in_child is None else in_child:
            build_in_child("world", f"the world {folder.name}", profile=profile, seed=seed, effects=effects)
        else:
            with build_lock(folder):  # notebooks run side by side: one kernel generates, the others wait for it
                if not (folder / "config.json").exists():
                    w = generate_world(profile=profile, seed=seed, effects=effects)
                    w.save(folder)
    if w is None:
        w = World.load(folder, raw_log=raw_log)
    raw_rows = w.events.height if raw_log else _parquet_rows(folder / "events.parquet")
    return Dataset(f"world:{profile}:seed{seed}", w.events, w.items, w.users, w.triples, w.end_ts,
                   dict(w.truth), w.cross_business, w, key, raw_rows)


def _parquet_rows(path: Path) -> int:
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def load_dataset(dataset: str = "world", profile: str = "small", seed: int = 0, effects=None,
                 in_child: bool | None = None, raw_log: bool = True) -> Dataset:
    """The simulated world (``dataset="world"``) or an imported dataset folder.

    A world not in the cache yet is generated and saved in a child process (``in_child=None`` follows
    ``BUILD_IN_CHILD``), then read back here. ``raw_log=False`` does not read the world's raw log and noise
    flags (see :meth:`musicrecall.world.World.load`); an imported dataset is always read whole."""
    if dataset == "world":
        return _world(profile, seed, effects, in_child, raw_log)
    from musicrecall.io import load_dataset_dir

    folder = Path(dataset).expanduser()
    if not folder.is_absolute() and not folder.exists():  # relative to the repository, e.g. data/raw/me
        folder = REPO_ROOT / folder
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r}: no such folder (expected 'world' or a folder written by "
                                "musicrecall.io.save_dataset)")
    tables = load_dataset_dir(folder)
    return Dataset(folder.name, tables["events"], tables["items"], tables["users"], tables["triples"],
                   now=datetime.now(UTC), key=file_fingerprint(list(folder.glob("*.parquet"))),
                   raw_rows=tables["events"].height)


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


def _cleaning_target(dataset_key: str, events: pl.DataFrame, config: CleaningConfig | None, engine: str
                     ) -> tuple[CleaningConfig, list[str], Path, Path]:
    """The cleaning config adapted to the data's time kind (``events`` may be just its ``ts`` maximum), the notes
    saying how, and the cache folders of the kept and the removed rows."""
    from musicrecall.evaluation import detect_time_kind

    cfg, notes = cleaning_module.config_for_time_kind(config or CleaningConfig(), detect_time_kind(events))
    key = content_key(dataset_key, asdict(cfg), _engine_fingerprint(engine))
    return cfg, notes, DATA_DIR / "processed" / f"clean-{key}", DATA_DIR / "interim" / f"clean-{key}"


def _world_ts_max(profile: str, seed: int, effects) -> pl.DataFrame:
    """The saved world's ``ts`` maximum as a one-row frame: all the time kind needs, without the 22M-row log."""
    return pl.scan_parquet(_world_folder(profile, seed, effects)[0] / "events.parquet").select(pl.col("ts").max()).collect()


def _is_cleaned(processed: Path, interim: Path) -> bool:
    return (processed / "clean_events.parquet").exists() and (interim / "quarantine.parquet").exists()


def build_ahead(dataset: str = "world", profile: str = "small", seed: int = 0, effects=None,
                config: CleaningConfig | None = None) -> bool:
    """Generate and clean a world that a notebook reads later (its placebo world) *now*, in a child process,
    while the kernel is still small; the later :func:`prepare` with the same arguments reads the cache.

    Building in a child keeps the builder's peak out of the kernel, but the two still add up while it runs: at
    profile medium a kernel holding notebook 02's models (14-15 GB) plus a child generating and cleaning a world
    (~11 GB) is more than 24 GB, at the start of the notebook it is not. Returns whether anything was built; an
    imported dataset has no placebo world (nothing to build), and ``BUILD_IN_CHILD`` off defers to ``prepare``.
    """
    if dataset != "world" or not BUILD_IN_CHILD:
        return False
    folder, key = _world_folder(profile, seed, effects)
    if (folder / "config.json").exists() and _is_cleaned(
            *_cleaning_target(key, _world_ts_max(profile, seed, effects), config, "polars")[2:]):
        return False
    build_in_child("prepare", f"the world {profile}:seed{seed} ahead", dataset=dataset, profile=profile, seed=seed,
                   effects=effects, config=config, engine="polars")
    return True


def prepare(dataset: str = "world", profile: str = "small", seed: int = 0, effects=None,
            config: CleaningConfig | None = None, engine: str = "polars", in_child: bool | None = None,
            raw_log: bool = True) -> Prepared:
    """Load and clean; cleaned plays go to ``data/processed/``, removed rows to ``data/interim/``.

    ``raw_log=False`` (the simulated world only) leaves the raw log and its noise flags out of the returned
    dataset (``dataset.events`` is empty, ``dataset.raw_rows`` counts it): the notebooks after cleaning read the
    cleaned plays, and at profile medium the two are about half of what a world costs a kernel.

    What the cache misses is built in a child process (``in_child=None`` follows ``BUILD_IN_CHILD``): a
    missing world and its cleaning in one child, a missing cleaning of a dataset at hand in one child; the
    result is then read from the cache here. Spark cleaning runs here (its work is in Spark's own JVM).

    ``engine="spark"`` runs the cleaning on Apache Spark (the active SparkSession, or a local one; see
    :mod:`musicrecall.spark`) with the same rules and the same result; it is cached apart, so a run
    with ``engine="spark"`` really runs Spark.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {ENGINES}")
    in_child = BUILD_IN_CHILD if in_child is None else in_child
    build_args = dict(dataset=dataset, profile=profile, seed=seed, effects=effects, config=config, engine=engine)
    if (in_child and engine == "polars" and dataset == "world"
            and not (_world_folder(profile, seed, effects)[0] / "config.json").exists()):
        # one child generates the world and cleans it; this process then reads both
        build_in_child("prepare", f"the world {profile}:seed{seed} and its cleaning", **build_args)
    ds = load_dataset(dataset, profile, seed, effects, in_child, raw_log)
    kind_of = ds.events if ds.raw_log_loaded else _world_ts_max(profile, seed, effects)
    cfg, notes, processed, interim = _cleaning_target(ds.key, kind_of, config, engine)
    if not _is_cleaned(processed, interim) and in_child and engine == "polars":
        build_in_child("prepare", f"the cleaning of {ds.name}", **build_args)
    if not _is_cleaned(processed, interim) and not ds.raw_log_loaded:  # cleaning here needs the raw log
        ds = load_dataset(dataset, profile, seed, effects, in_child)
    if not _is_cleaned(processed, interim):
        with build_lock(processed):  # notebooks run side by side: one kernel cleans, the others wait for it
            if not _is_cleaned(processed, interim):
                if engine == "spark":
                    from musicrecall.spark import clean_frames

                    spark_dir = DATA_DIR / "interim" / processed.name.replace("clean-", "spark-", 1)
                    result = clean_frames(ds.events, ds.items, ds.now, cfg, spark_dir)
                else:
                    result = clean_log(ds.events, ds.items, ds.now, cfg)
                result.write(processed, interim)
                return Prepared(ds, result, notes)
    kept = pl.read_parquet(processed / "clean_events.parquet")
    removed = pl.read_parquet(interim / "quarantine.parquet")
    result = CleanResult(kept, removed, accounting_table(ds.raw_rows, kept.height, removed), cfg, ds.raw_rows)
    result.check_balance()
    return Prepared(ds, result, notes)
