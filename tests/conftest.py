"""Test markers, so that a fast subset exists (``make test-fast``); ``make test`` still runs everything.

The markers are registered in ``pyproject.toml`` and applied here, from what a test does rather than
by hand in every file, so a new test is marked by the same rules:

- ``notebooks``: executes notebooks with papermill (its code, or a fixture it uses, calls ``run_all``,
  ``run_notebook`` or ``execute_notebook``, or runs ``python -m musicrecall.report run``): a Jupyter
  kernel per notebook;
- ``spark``: starts Apache Spark (``pyspark``, ``SparkSession``, ``musicrecall.spark``, ``engine="spark"``);
- ``real_data``: reads the real datasets in ``../shared`` (``SHARED_DIR``, or a module constant built from it;
  of a parametrised test, the cases whose id contains "real");
- ``slow``: measured at more than ~5 s on the 2-core machine (listed in :data:`SLOW`, by file or test).

A test can also carry a marker explicitly (``@pytest.mark.slow``); the rules only add markers.
"""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path

import pytest

NOTEBOOK_CALL = re.compile(r"(?<![\w])(?:run_all|run_notebook|execute_notebook)\(|\"musicrecall\.report\", \"run\"")
DOCSTRING = re.compile(r'"""(?:.|\n)*?"""')
SPARK_USE = re.compile(r"pyspark|SparkSession|musicrecall\.spark|musicrecall import spark|engine=\"spark\"|spark_session")
SHARED_USE = "SHARED_DIR"

# Slow tests, measured with `pytest --durations` (see CONTRIBUTING.md): a whole file, or file::test-name
# prefix (parametrised cases included). Keep it short: prefer making a test faster to listing it here.
# Measured 07:36 UTC 5 Dec 2026 with the fast subset at load average ~20 on the 2 cores (the figures in
# brackets, so about 5-10x a quiet machine's); mostly tests that start a fresh Python (torch import) or
# a browser.
SLOW: tuple[str, ...] = (
    "test_federated.py::test_party_b_runs_in_a_separate_process",  # [22 s] a second process for party B
    "test_audio_sources.py::test_auto_follows_musicrecall_shared",  # [2 x 16 s] a fresh interpreter each
    "test_threads.py::test_wait_policy_set_by_the_caller_wins",  # [11 s] a fresh interpreter
    "test_threads.py::test_importing_musicrecall_makes_openmp_wait_passively",  # [11 s] a fresh interpreter
    "test_audio_badfiles.py::test_every_case_is_reported_and_good_files_embed",  # [17 s] renders and embeds
    "test_audio_world.py::test_metric_learning_learns_a_planted_taste",  # [7 s] trains
    "test_audio_world.py::test_world_embeddings_threads_and_cache_give_the_same_rows",  # [5 s] embeds twice
    "test_audio_tagger.py::test_port_matches_reference_outputs",  # [7 s] the full tagger
    "test_world_audio.py::test_vocal_sections_have_voice_band_energy",  # [5 s] renders songs
    "test_report.py::test_ledger_fits_a_laptop_screen_in_a_browser",  # [7 s] starts Chromium
    # measured 07:51 UTC, load average ~22
    "test_distributed.py",  # [65 s] two training processes
    "test_bad_input_audio.py::test_ogg_cut_at_every_fraction_is_reported",  # [6.5 s] decodes every cut
    # measured 08:08 UTC, load average ~20
    "test_ann.py::test_ivfpq_reranks_exactly_and_its_recall_grows_with_nprobe",  # [10 s] trains IVF-PQ
    # measured 10:45 UTC, load average ~25
    "test_federated_seeds.py::test_seed_replicates",  # [20 s] trains two federated DSSMs on the tiny world
)


@functools.cache
def _module_shared_names(path: str) -> frozenset[str]:
    """Module-level constants built from ``SHARED_DIR`` (e.g. ``THIRTY = SHARED_DIR / "data" / ...``)."""
    text = Path(path).read_text(encoding="utf-8")
    return frozenset(re.findall(rf"^([A-Za-z_]\w*)\s*(?::[^=]+)?=.*{SHARED_USE}", text, re.M))


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _item_source(item: pytest.Item) -> str:
    """The test's own source and that of every fixture it uses that lives in the tests folder."""
    parts = [_source(getattr(item, "function", None))]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        for fixture in defs:
            func = getattr(fixture, "func", None)
            module = getattr(func, "__module__", "") or ""
            if not module.startswith(("_pytest", "pytest")):
                parts.append(_source(func))
    return DOCSTRING.sub("", "\n".join(parts))  # what a test says about itself is not what it does


def markers_for(item: pytest.Item) -> set[str]:
    """The markers the rules above give ``item``."""
    src = _item_source(item)
    path = str(item.path)
    marks = set()
    if NOTEBOOK_CALL.search(src):
        marks.add("notebooks")
    if SPARK_USE.search(src) or item.path.name == "test_spark.py":
        marks.add("spark")
    shared = _module_shared_names(path) | {SHARED_USE}
    callspec = getattr(item, "callspec", None)
    # a parametrised test that touches ../shared in some cases only: the cases whose id says "real"
    if any(re.search(rf"\b{re.escape(name)}\b", src) for name in shared) and (callspec is None or "real" in callspec.id):
        marks.add("real_data")
    rel = f"{item.path.name}::{item.name}"
    if any(rel.startswith(s) if "::" in s else item.path.name == s for s in SLOW):
        marks.add("slow")
    return marks


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(markers_for(item)):
            item.add_marker(getattr(pytest.mark, name))
