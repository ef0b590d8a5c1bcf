"""Execute the notebooks with papermill, export offline HTML, gather metrics, build the index.

``python -m musicrecall.report run --profile small`` is what ``make run`` calls;
``python -m musicrecall.report run --only 01 -p seed 7`` reruns one notebook with other parameters.

Runs on the simulated world write to ``reports/``; a run on imported data (``--dataset <folder>`` or
``-p dataset <folder>``) writes to its own folder ``reports/datasets/<name>/`` with its own executed
notebooks, HTML, figures and ``metrics.json``, so it can never replace the world's results.
``reports/index.html`` lists the world run and every dataset run side by side.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from musicrecall.cache import pid_alive
from musicrecall.config import REPO_ROOT, REPORTS_DIR
from musicrecall.report.html import export_html
from musicrecall.report.record import METRICS_MIME, dumps, sanitize_json

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
WORLD = "world"
# The notebooks that apply to imported data (05 embeds audio files and 07 needs a second party's data,
# which an imported listening log does not have). ``--only`` overrides it.
DATASET_NOTEBOOKS = ("00", "01", "02", "03", "04", "06", "08")
DATASETS_SUBDIR = "datasets"


def is_world(dataset: Any) -> bool:
    """Whether a ``dataset`` parameter names the simulated world (the default)."""
    return dataset is None or str(dataset) in ("", WORLD)


def resolve_dataset(dataset: str) -> str:
    """An imported dataset's absolute path (notebooks run with ``notebooks/`` as working directory);
    a relative path that does not exist from here is read from the repository root, as ``prepare`` does."""
    path = Path(dataset).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return str(path.resolve())


def dataset_name(dataset: str) -> str:
    """The report folder name of an imported dataset: its folder's name (a file: folder and file stem)."""
    path = Path(dataset)
    raw = path.name if not path.suffix or path.is_dir() else f"{path.parent.name}-{path.stem}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._") or "dataset"


def run_reports_dir(dataset: Any = WORLD, reports_dir: Path = REPORTS_DIR) -> Path:
    """Where a run on ``dataset`` writes: ``reports_dir`` for the world, else
    ``reports_dir/datasets/<name>/`` (with a short hash of the path when another source took the name)."""
    if is_world(dataset):
        return reports_dir
    source = resolve_dataset(str(dataset))
    base = reports_dir / DATASETS_SUBDIR / dataset_name(source)
    recorded = load_metrics(base).get("dataset", {}).get("source")
    if recorded is None or recorded == source:
        return base
    return base.with_name(f"{base.name}-{hashlib.sha1(source.encode()).hexdigest()[:8]}")


def dataset_runs(reports_dir: Path = REPORTS_DIR) -> dict[str, dict[str, Any]]:
    """The metrics of every dataset run under ``reports_dir/datasets/``, by report folder name."""
    root = reports_dir / DATASETS_SUBDIR
    runs = {}
    for path in sorted(root.glob("*/metrics.json")) if root.is_dir() else []:
        runs[path.parent.name] = load_metrics(path.parent)
    return runs


def parse_only(only: list[str] | str | None) -> list[str] | None:
    """``["01", "02"]``, ``"01,02"`` or ``["01,02", "03"]`` -> ``["01", "02", "03"]``; empty -> None."""
    if only is None:
        return None
    items = [only] if isinstance(only, str) else only
    out = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    return out or None


@dataclass
class NotebookRun:
    """What happened to one notebook in one run."""

    name: str
    status: str  # "ok" or "failed"
    seconds: float
    parameters: dict[str, Any]
    error: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, str]] = field(default_factory=list)  # key figures: file (relative) and caption
    finished: str = ""  # UTC time the run ended
    failed_report: str = ""  # a failed run's HTML, beside the last good one (e.g. "03_x.FAILED.html")
    peak_gb: float = 0.0  # the kernel's and its child processes' peak resident memory (report.usage.KernelWatch)
    cpu_seconds: float = 0.0  # their CPU time (user + system)


class UnknownParameterError(ValueError):
    """A parameter that none of the selected notebooks declares (a typo such as ``-p sede 7``)."""


class DatasetNotFoundError(FileNotFoundError):
    """``--dataset`` names a path that does not exist."""


def notebook_parameters(path: Path) -> dict[str, str]:
    """Names assigned in the notebook's ``parameters`` cell, with the source text of their defaults."""
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    names: dict[str, str] = {}
    for node in ast.parse(cell.source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
                names[target.id] = ast.get_source_segment(cell.source, node.value) or ""
    return names


def check_parameters(paths: list[Path], parameters: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Each notebook's share of ``parameters``: what its ``parameters`` cell declares.

    A name no selected notebook declares is an :class:`UnknownParameterError` that lists every notebook's
    parameters, raised before anything runs (papermill itself only warns and runs on the defaults). A
    name only some notebooks declare (``valid_days`` in 01-04, not 00) goes to those that do.
    """
    declared = {p: notebook_parameters(p) for p in paths}
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(parameters) - known)
    if unknown:
        listing = "\n".join(f"  {p.stem}: " + ", ".join(f"{k}={v}" for k, v in d.items()) if d else
                            f"  {p.stem}: (no cell tagged 'parameters')" for p, d in declared.items())
        raise UnknownParameterError(f"unknown parameter(s) {', '.join(unknown)}: no selected notebook declares "
                                    f"{'it' if len(unknown) == 1 else 'them'}. The notebooks' parameters:\n{listing}")
    return {p: {k: v for k, v in parameters.items() if k in d} for p, d in declared.items()}


def list_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in pipeline order, optionally only those whose name starts with ``only``."""
    paths = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
        if not paths:
            raise SystemExit(f"no notebook in {notebooks_dir} matches {only}")
    return paths


def extract_records(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """Every metrics payload that :func:`musicrecall.report.record_metrics` displayed in ``nb``."""
    records = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if METRICS_MIME in data:
                payload = data[METRICS_MIME]
                records.append(json.loads(payload) if isinstance(payload, str) else dict(payload))
    return records


def _caption(cells: list[nbformat.NotebookNode], index: int) -> str:
    """The heading (or first line) of the markdown cell nearest above cell ``index``."""
    for cell in reversed(cells[:index]):
        if cell.cell_type == "markdown" and cell.source.strip():
            lines = [ln.strip() for ln in cell.source.strip().splitlines()]
            heads = [ln for ln in lines if ln.startswith("#")]
            return (heads[-1] if heads else lines[0]).lstrip("# ").strip()
    return ""


def extract_key_figures(nb: nbformat.NotebookNode, name: str, reports_dir: Path, limit: int = 3) -> list[dict[str, str]]:
    """Save the PNG outputs of cells tagged ``key-figure`` (else the notebook's first figure) to
    ``reports/figures/`` for the index page; returns their relative paths with a caption."""
    cells = nb.cells
    tagged = [i for i, c in enumerate(cells) if "key-figure" in c.get("metadata", {}).get("tags", [])]
    with_png = [i for i, c in enumerate(cells) if c.cell_type == "code"
                and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    chosen = [i for i in tagged if i in with_png] or with_png[:1]
    out_dir = reports_dir / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for i in chosen:
        for out in cells[i].outputs:
            png = out.get("data", {}).get("image/png")
            if png is None or len(figures) >= limit:
                continue
            path = out_dir / f"{name}-{len(figures) + 1}.png"
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(base64.b64decode(png if isinstance(png, str) else "".join(png)))
            tmp.replace(path)
            figures.append({"file": f"figures/{path.name}", "caption": _caption(cells, i)})
    return figures


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


FAILED = "FAILED"  # failed runs are written beside the last good one as NAME.FAILED.ipynb / .html



def clean_stale_temp(folder: Path) -> list[Path]:
    """Remove temporary files an interrupted run left in ``folder`` (``*.<pid>.tmp``, ``*.running-<pid>.*``)
    whose process is gone; returns what was removed. A live run's files are left alone."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in [*folder.glob("*.tmp"), *folder.glob("figures/*.tmp"), *folder.glob("*.running*")]:
        match = re.search(r"\.(?:running-)?(\d+)(?:\.tmp|\.ipynb|\.html)$", path.name)
        if match is None or not pid_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_notebook(path: Path, parameters: dict[str, Any], reports_dir: Path = REPORTS_DIR,
                 env: dict[str, str] | None = None) -> NotebookRun:
    """Run one notebook into ``reports_dir``.

    A successful run replaces ``<name>.ipynb`` and ``<name>.html`` (written under temporary names, moved
    into place only once both exist). A failed run keeps the last good ones and writes
    ``<name>.FAILED.ipynb`` / ``<name>.FAILED.html`` beside them (papermill keeps the failing cell's
    traceback in the notebook); a later success removes those. ``env`` is added to the kernel's environment
    (e.g. its ``MUSICRECALL_THREADS``). The kernel and its child processes are watched while it runs
    (:class:`musicrecall.report.usage.KernelWatch`): the run records their peak memory and CPU time.
    """
    import papermill as pm

    from musicrecall.report.usage import KernelWatch

    reports_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    tmp_nb = reports_dir / f"{path.stem}.running-{pid}.ipynb"
    tmp_html = reports_dir / f"{path.stem}.running-{pid}.html"
    watch = KernelWatch()
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        pm.execute_notebook(str(path), str(tmp_nb), parameters=parameters, kernel_name="python3",
                            cwd=str(path.parent), progress_bar=False, log_output=False,
                            kernel_manager_class=_kernel_manager_with(env or {}, watch))
    except Exception as err:  # papermill stores the failing cell's traceback in the output notebook
        status, error = "failed", f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
    finally:
        watch.stop()
    seconds = round(time.perf_counter() - start, 1)
    usage = {"peak_gb": round(watch.peak_gb, 2), "cpu_seconds": round(watch.cpu_seconds, 1)}
    if not tmp_nb.exists():
        return NotebookRun(path.stem, "failed", seconds, parameters, error or "no output notebook", finished=_now(),
                           **usage)
    nb = nbformat.read(tmp_nb, as_version=4)
    records = extract_records(nb)
    if status == "ok" and not records:
        status, error = "failed", "the notebook recorded no metrics (last cell must call record_metrics)"
    try:
        export_html(nb, tmp_html, title=path.stem)
        if status != "ok":
            failed_html = reports_dir / f"{path.stem}.{FAILED}.html"
            tmp_nb.replace(reports_dir / f"{path.stem}.{FAILED}.ipynb")
            tmp_html.replace(failed_html)
            return NotebookRun(path.stem, status, seconds, parameters, error, records, [], _now(), failed_html.name,
                               **usage)
        tmp_nb.replace(reports_dir / path.name)
        tmp_html.replace(reports_dir / f"{path.stem}.html")
    finally:
        for tmp in (tmp_nb, tmp_html):
            tmp.unlink(missing_ok=True)
    for stale in (reports_dir / f"{path.stem}.{FAILED}.ipynb", reports_dir / f"{path.stem}.{FAILED}.html"):
        stale.unlink(missing_ok=True)
    figures = extract_key_figures(nb, path.stem, reports_dir)
    return NotebookRun(path.stem, status, seconds, parameters, error, records, figures, _now(), **usage)


def merge_run(previous: dict[str, Any] | None, run: NotebookRun) -> dict[str, Any]:
    """The ``metrics.json`` entry after ``run``: the run itself, or, when it failed and an earlier run
    succeeded, the last good results (records, figures, report) with the failure on top."""
    entry = asdict(run)
    if run.status == "ok" or not previous or not previous.get("records"):
        return entry
    last_good = previous.get("last_good") or {k: previous.get(k) for k in ("parameters", "seconds", "finished")}
    return {**previous, "status": "failed", "error": run.error, "seconds": run.seconds,
            "parameters": run.parameters, "finished": run.finished, "failed_report": run.failed_report,
            "peak_gb": run.peak_gb, "cpu_seconds": run.cpu_seconds, "last_good": last_good}


def load_metrics(reports_dir: Path = REPORTS_DIR) -> dict[str, Any]:
    """``reports_dir/metrics.json``, with NaN (``NaN`` or the string ``"nan"`` of older runs) read as null."""
    path = reports_dir / "metrics.json"
    if path.exists():
        metrics = sanitize_json(json.loads(path.read_text()))
        metrics.setdefault("notebooks", {})
        return metrics
    return {"notebooks": {}}


def build_indexes(reports_dir: Path = REPORTS_DIR) -> Path:
    """Rebuild ``index.html`` of every dataset run and the top ``reports_dir/index.html`` (world and
    datasets side by side); returns the top page."""
    from musicrecall.report.index import build_index

    datasets = dataset_runs(reports_dir)
    for name, metrics in datasets.items():
        build_index(metrics, reports_dir / DATASETS_SUBDIR / name / "index.html")
    return build_index(load_metrics(reports_dir), reports_dir / "index.html", datasets=datasets)


# What each notebook reads from another notebook's run through the content-keyed caches under data/ (and
# 02's recorded Song2Vec choice): it starts only after those finished. Every notebook after 00 reads the
# generated world; 08 reuses the models of 02-07 (a cache miss would train them a second time, side by side).
# The cleaned log is not a dependency: each notebook's `prepare` cleans on a cache miss (a few seconds at
# small; two kernels that miss together write the same files, each atomically), so 01's report runs in a
# lane beside the models instead of alone before them (~35 s less wall time at small).
DEPENDS_ON = {"00": (), "01": ("00",), "08": ("00", "01", "02", "03", "04", "05", "06", "07")}
DEFAULT_DEPENDS = ("00",)
# Which notebook to start first when no earlier run in the report folder says how long each takes: CPU
# seconds at one thread, profile small, measured in the sessions of 2026-12-05 (07: 533 since it validates
# twice a pass, 835 before). Only the order matters: the longest start first, so none starts late.
TYPICAL_SECONDS = {"00": 24, "01": 67, "02": 267, "03": 549, "04": 616, "05": 35, "06": 129, "07": 533, "08": 390}


def default_jobs() -> int:
    """How many notebooks run side by side: ``MUSICRECALL_JOBS``, else one per core (at most 2: most
    notebooks keep one core busy, and each kernel holds its own copy of the data)."""
    return max(1, int(os.environ.get("MUSICRECALL_JOBS", min(2, os.cpu_count() or 1))))


def _prefix(path: Path) -> str:
    return path.name[:2]


def schedule(paths: list[Path], jobs: int, run_one: Any, threads_total: int,
             expected_seconds: dict[str, float] | None = None, peaks: dict[str, float] | None = None,
             budget_gb: float | None = None) -> list[NotebookRun]:
    """Run ``run_one(path, threads)`` for every notebook, at most ``jobs`` at a time, each after the
    notebooks it depends on (:data:`DEPENDS_ON`, among those in ``paths``); return the runs in ``paths`` order.

    A notebook that runs alone (nothing else running or ready when it starts, e.g. 00 and 08) gets all
    ``threads_total`` threads; side by side each gets ``threads_total // jobs`` (at least 1), so the
    kernels never oversubscribe the cores. Among ready notebooks the longest expected one starts first
    (``expected_seconds`` by prefix, e.g. the last run's times), so the last lane does not wait on a
    long notebook started late. A failed notebook does not stop the others (its dependants still run,
    as in the one-at-a-time runner, and report what they lack).

    Memory: with ``peaks`` (expected peak GB by prefix, :func:`musicrecall.report.usage.expected_peaks`) and
    ``budget_gb`` (what the machine can hand out), a notebook starts beside others only when the expected
    peaks of all of them fit in the budget (:func:`musicrecall.report.usage.fits_beside`); otherwise it
    waits, and a notebook that can only run alone gets every thread.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from musicrecall.report.usage import fits_beside

    def fits(path: Path, beside: list[Path]) -> bool:
        if not peaks or budget_gb is None:
            return True
        return fits_beside(_prefix(path), [_prefix(q) for q in beside], peaks, budget_gb)

    present = {_prefix(p) for p in paths}
    needs = {p: {d for d in DEPENDS_ON.get(_prefix(p), DEFAULT_DEPENDS) if d in present and d != _prefix(p)}
             for p in paths}
    expected = expected_seconds or {}
    order = {p: i for i, p in enumerate(paths)}
    done: set[str] = set()
    results: dict[Path, NotebookRun] = {}
    pending = list(paths)
    running: dict[Any, Path] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            ready = [p for p in pending if needs[p] <= done]
            ready.sort(key=lambda p: (-expected.get(_prefix(p), 0.0), order[p]))
            while len(running) < jobs:
                path = next((p for p in ready if fits(p, list(running.values()))), None)
                if path is None:  # nothing ready, or nothing that fits in memory beside what runs
                    break
                ready.remove(path)
                pending.remove(path)
                alone = not running and not any(fits(q, [path]) for q in ready)
                threads = threads_total if alone else max(1, threads_total // jobs)
                running[pool.submit(run_one, path, threads)] = path
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                path = running.pop(future)
                results[path] = future.result()
                done.add(_prefix(path))
    return [results[p] for p in paths]


def _kernel_manager_with(env: dict[str, str], watch: Any = None) -> type:
    """A kernel manager class whose kernels start with ``env`` on top of this process's environment
    (per-kernel thread budgets without touching ``os.environ`` while other kernels start) and are handed to
    ``watch`` (a :class:`musicrecall.report.usage.KernelWatch`) once started."""
    from jupyter_client.manager import AsyncKernelManager

    class _EnvKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            await super().start_kernel(**kw)
            pid = getattr(self.provisioner, "pid", None)
            if watch is not None and pid is not None:
                watch.attach(pid)

        async def shutdown_kernel(self, *args: Any, **kw: Any) -> None:
            if watch is not None:
                watch.sample()  # the kernel's CPU time and memory at its end, before it exits
            await super().shutdown_kernel(*args, **kw)

    return _EnvKernelManager


def _memory_plan(profile: str, previous: dict[str, Any], paths: list[Path]) -> tuple[dict[str, float], float]:
    """Expected peak memory per notebook (:func:`musicrecall.report.usage.expected_peaks`) and the memory
    available now; names every notebook expected to need more than that, before anything runs."""
    from musicrecall.report.usage import available_gb, expected_peaks, known_peaks

    peaks, budget = expected_peaks(profile, previous, [_prefix(p) for p in paths]), available_gb()
    known = known_peaks(profile, previous)
    for path in paths:
        need = known.get(_prefix(path), 0.0)
        if need > budget:
            print(f"[musicrecall] warning: {path.stem} is expected to need {need:.1f} GB at profile {profile!r} "
                  f"(its last recorded run, or the measured figure), and {budget:.1f} GB are available now: it may "
                  "be killed for memory", flush=True)
    return peaks, budget


def run_all(profile: str, only: list[str] | str | None = None, extra: dict[str, Any] | None = None,
            reports_dir: Path = REPORTS_DIR, notebooks_dir: Path = NOTEBOOKS_DIR,
            jobs: int | None = None) -> list[NotebookRun]:
    """Run notebooks (``jobs`` side by side, default :func:`default_jobs`, in dependency order); merge
    results into ``metrics.json`` and rebuild the index pages.

    ``reports_dir`` is the reports root. With ``extra={"dataset": <folder>}`` the run writes to
    :func:`run_reports_dir` (``reports_dir/datasets/<name>/``) and runs :data:`DATASET_NOTEBOOKS`
    unless ``only`` says otherwise; the world's ``metrics.json`` is left untouched.
    """
    from musicrecall.config import n_threads

    extra = dict(extra or {})
    only = parse_only(only)
    full = only is None  # a full run replaces everything, so removed notebooks do not linger
    dataset = extra.get("dataset", WORLD)
    if is_world(dataset):
        out_dir = reports_dir
    else:
        extra["dataset"] = resolve_dataset(str(dataset))
        if not Path(extra["dataset"]).exists():  # say so before any kernel starts or any folder is made
            raise DatasetNotFoundError(f"dataset {dataset!r}: {extra['dataset']} does not exist (expected 'world' "
                                       "or a folder written by musicrecall.io, e.g. python -m musicrecall.io ...)")
        out_dir = run_reports_dir(extra["dataset"], reports_dir)
        only = only or list(DATASET_NOTEBOOKS)
    paths = list_notebooks(notebooks_dir, only)
    shares = check_parameters(paths, {"profile": profile, **extra})  # before anything runs
    clean_stale_temp(out_dir)
    # Kernels inherit the environment: a user's MPLBACKEND=Agg would silently drop every figure.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    jobs = default_jobs() if jobs is None else max(1, jobs)
    previous = load_metrics(out_dir)
    last_seconds = {**TYPICAL_SECONDS,
                    **{name[:2]: float(run.get("seconds") or 0) for name, run in previous["notebooks"].items()}}

    peaks, budget = _memory_plan(profile, previous["notebooks"], paths)

    def run_one(path: Path, threads: int) -> NotebookRun:
        params = shares[path]
        print(f"[musicrecall] running {path.name} ({threads} thread{'s' * (threads > 1)}) with {params}", flush=True)
        run = run_notebook(path, params, out_dir, env={"MUSICRECALL_THREADS": str(threads)})
        print(f"[musicrecall]   {path.stem}: {run.status} in {run.seconds:.1f}s ({run.cpu_seconds:.0f} CPU s, peak "
              f"{run.peak_gb:.1f} GB) {run.error}", flush=True)
        return run

    start = time.perf_counter()
    runs = schedule(paths, jobs, run_one, n_threads(), last_seconds, peaks, budget)
    wall = round(time.perf_counter() - start, 1)
    metrics = {"notebooks": {}} if full else previous
    if not is_world(dataset):
        metrics["dataset"] = {"name": out_dir.name, "source": extra["dataset"]}
    for run in runs:
        metrics["notebooks"][run.name] = merge_run(previous["notebooks"].get(run.name), run)
    if full:  # the wall time of the whole workbook (notebooks side by side: less than the sum of their times)
        metrics["run"] = {"wall_seconds": wall, "jobs": jobs, "threads": n_threads()}
    else:
        metrics.pop("run", None)  # a partial rerun: the recorded wall time no longer describes these reports
    metrics["updated"] = _now()
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "metrics.json", dumps(metrics))
    build_indexes(reports_dir)
    return runs
