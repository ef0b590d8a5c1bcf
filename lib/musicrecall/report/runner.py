"""Execute the notebooks with papermill, export offline HTML, gather metrics, build the index.

``python -m musicrecall.report run --profile small`` is what ``make run`` calls;
``python -m musicrecall.report run --only 01 -p seed 7`` reruns one notebook with other parameters.
"""

from __future__ import annotations

import base64
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
    figures: list[dict[str, str]] = field(default_factory=list)  # key figures: file (relative) and caption


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
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(base64.b64decode(png if isinstance(png, str) else "".join(png)))
            tmp.replace(path)
            figures.append({"file": f"figures/{path.name}", "caption": _caption(cells, i)})
    return figures


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
    figures = extract_key_figures(nb, path.stem, reports_dir)
    return NotebookRun(path.stem, status, round(seconds, 1), parameters, error, records, figures)


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
