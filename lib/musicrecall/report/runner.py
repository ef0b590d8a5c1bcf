"""Execute the notebooks with papermill, export offline HTML, gather metrics, build the index.

``python -m musicrecall.report run --profile small`` is what ``make run`` calls;
``python -m musicrecall.report run --only 01 -p seed 7`` reruns one notebook with other parameters.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from musicrecall.config import REPO_ROOT, REPORTS_DIR
from musicrecall.report.html import export_html
from musicrecall.report.record import METRICS_MIME

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


@dataclass
class NotebookRun:
    """What happened to one notebook in one run."""

    name: str
    status: str  # "ok" or "failed"
    seconds: float
    parameters: dict[str, Any]
    error: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run_notebook(path: Path, parameters: dict[str, Any], reports_dir: Path = REPORTS_DIR) -> NotebookRun:
    """Run one notebook; write ``reports/<name>.ipynb`` and ``.html`` even when it fails."""
    import papermill as pm

    reports_dir.mkdir(parents=True, exist_ok=True)
    out_nb = reports_dir / path.name
    tmp_nb = reports_dir / (path.stem + ".running.ipynb")
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        pm.execute_notebook(str(path), str(tmp_nb), parameters=parameters, kernel_name="python3",
                            cwd=str(path.parent), progress_bar=False, log_output=False)
    except Exception as err:  # papermill stores the failing cell's traceback in the output notebook
        status, error = "failed", f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
    seconds = time.perf_counter() - start
    if not tmp_nb.exists():
        return NotebookRun(path.stem, "failed", seconds, parameters, error or "no output notebook")
    nb = nbformat.read(tmp_nb, as_version=4)
    tmp_nb.replace(out_nb)
    export_html(nb, out_nb.with_suffix(".html"))
    records = extract_records(nb)
    if status == "ok" and not records:
        status, error = "failed", "the notebook recorded no metrics (last cell must call record_metrics)"
    return NotebookRun(path.stem, status, round(seconds, 1), parameters, error, records)


def load_metrics(reports_dir: Path = REPORTS_DIR) -> dict[str, Any]:
    path = reports_dir / "metrics.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"notebooks": {}}


def run_all(profile: str, only: list[str] | None = None, extra: dict[str, Any] | None = None,
            reports_dir: Path = REPORTS_DIR, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[NotebookRun]:
    """Run notebooks in order; merge results into ``metrics.json`` and rebuild ``index.html``."""
    from musicrecall.report.index import build_index

    # Kernels inherit the environment: a user's MPLBACKEND=Agg would silently drop every figure.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    runs = []
    for path in list_notebooks(notebooks_dir, only):
        params = {"profile": profile, **(extra or {})}
        print(f"[musicrecall] running {path.name} with {params}", flush=True)
        run = run_notebook(path, params, reports_dir)
        print(f"[musicrecall]   {run.status} in {run.seconds:.1f}s {run.error}", flush=True)
        runs.append(run)
    metrics = load_metrics(reports_dir)
    if only is None:  # a full run replaces everything, so removed notebooks do not linger
        metrics = {"notebooks": {}}
    for run in runs:
        metrics["notebooks"][run.name] = asdict(run)
    metrics["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _atomic_write(reports_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    build_index(metrics, reports_dir / "index.html")
    return runs
