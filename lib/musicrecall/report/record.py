"""The metrics contract: the last cell of every notebook records its headline metrics.

A small replacement for scrapbook's ``glue`` (unmaintained): :func:`record_metrics` displays an HTML
table for the reader and, in the same output, a JSON bundle under :data:`METRICS_MIME`. The runner
(:mod:`musicrecall.report.runner`) reads that bundle back from the executed notebook, so metrics
travel inside the notebook and no side file can go stale.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from musicrecall.report.claims import CLAIMS_BY_ID, VERDICTS

METRICS_MIME = "application/vnd.musicrecall.metrics+json"


def metric(name: str, value: float, ci: tuple[float, float] | None = None, *, unit: str = "",
           world: str = "default", note: str = "") -> dict[str, Any]:
    """One headline metric. ``ci`` is a 95% interval; ``world`` names the (placebo) world it comes from."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"metric {name!r} is not finite: {value}")
    lo, hi = (float(ci[0]), float(ci[1])) if ci is not None else (None, None)
    return {"name": name, "value": value, "ci_lo": lo, "ci_hi": hi, "unit": unit, "world": world, "note": note}


def record_claim(claim_id: str, *, ours: str, placebo: str, verdict: str, real: str = "",
                 note: str = "") -> dict[str, str]:
    """A claims-ledger row. Figures are pre-formatted strings (e.g. ``"+8.1% [5.2, 11.0]"``)."""
    if claim_id not in CLAIMS_BY_ID:
        raise ValueError(f"unknown claim id {claim_id!r}; expected one of {sorted(CLAIMS_BY_ID)}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
    return {"id": claim_id, "ours": ours, "placebo": placebo, "real": real, "verdict": verdict, "note": note}


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def format_ci(m: dict[str, Any]) -> str:
    """``[lo, hi]`` of a recorded metric, or an empty string when it has no interval."""
    return "" if m.get("ci_lo") is None else f"[{_fmt(m['ci_lo'])}, {_fmt(m['ci_hi'])}]"


def build_record(notebook: str, metrics: list[dict[str, Any]], *, profile: str, dataset: str = "world",
                 seed: int = 0, claims: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The JSON payload of one notebook's headline metrics (and claims-ledger rows, if any)."""
    payload = {"notebook": notebook, "profile": profile, "dataset": str(dataset), "seed": seed,
               "metrics": metrics, "claims": claims or []}
    json.dumps(payload)  # fail here, in the notebook, if something is not serialisable
    return payload


def record_metrics(notebook: str, metrics: list[dict[str, Any]], *, profile: str, dataset: str = "world",
                   seed: int = 0, claims: list[dict[str, str]] | None = None) -> None:
    """Display the notebook's headline metrics as a table, with the payload the runner collects."""
    payload = build_record(notebook, metrics, profile=profile, dataset=dataset, seed=seed, claims=claims)
    rows = "".join(
        f"<tr><td>{html.escape(m['name'])}</td><td>{_fmt(m['value'])}</td><td>{format_ci(m)}</td>"
        f"<td>{html.escape(m['world'])}</td><td>{html.escape(m['note'])}</td></tr>"
        for m in metrics
    )
    table = (f"<p><b>Headline metrics of {html.escape(notebook)}</b> (profile {html.escape(profile)}, "
             f"dataset {html.escape(dataset)}, seed {seed})</p><table><tr><th>metric</th><th>value</th>"
             f"<th>95% CI</th><th>world</th><th>note</th></tr>{rows}</table>")
    try:
        from IPython.display import display

        display({"text/html": table, "text/plain": f"{len(metrics)} metrics of {notebook}", METRICS_MIME: payload},
                raw=True)
    except ImportError as err:  # pragma: no cover - IPython is a dependency
        raise RuntimeError("record_metrics needs IPython; use build_record outside notebooks") from err
