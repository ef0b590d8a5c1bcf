"""The index page's opening picture: a forest plot of every claim's headline effect with its 95% CI,
in the simulated world, the placebo world and each real dataset.

Each claim gets its own panel with its own axis (the claims measure different things: relative lifts,
correlations, AUC gains); the dashed line is "no effect". Drawn with matplotlib's object API (no pyplot,
so no backend is touched) and embedded in the page as a base64 PNG: the report stays offline.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any

from musicrecall.report.claims import CLAIMS
from musicrecall.report.record import finite_or_none, format_effect

WORLD_STYLE = {"color": "#1f5fa8", "marker": "o"}
PLACEBO_STYLE = {"color": "#8c8c8c", "marker": "o", "mfc": "white"}
DATASET_COLORS = ("#c2551b", "#2e8b57", "#8e44ad", "#b8860b", "#d6336c", "#0f7c8c")


@dataclass(frozen=True)
class Point:
    """One estimate on the forest plot."""

    claim: str
    source: str  # "world", "placebo world" or a dataset's name
    value: float
    lo: float | None
    hi: float | None
    unit: str
    label: str


def _point(claim: str, source: str, e: dict[str, Any] | None) -> Point | None:
    value = finite_or_none(e.get("value")) if e else None
    if value is None:
        return None
    lo, hi = finite_or_none(e.get("lo")), finite_or_none(e.get("hi"))
    return Point(claim, source, value, lo, hi, str(e.get("unit", "")), str(e.get("label", "")))


def collect_points(world_claims: dict[str, dict[str, Any]],
                   dataset_claims: dict[str, dict[str, dict[str, Any]]]) -> list[Point]:
    """Points of every claim: the world's effect and placebo effect, then each dataset's effect.

    ``world_claims`` maps claim id -> ledger row; ``dataset_claims`` maps dataset name -> the same.
    """
    points = []
    for claim in CLAIMS:
        row = world_claims.get(claim.id, {})
        points += [p for p in (_point(claim.id, "world", row.get("effect")),
                               _point(claim.id, "placebo world", row.get("placebo_effect"))) if p]
        for name, rows in dataset_claims.items():
            p = _point(claim.id, name, rows.get(claim.id, {}).get("effect"))
            if p:
                points.append(p)
    return points


def forest_png(points: list[Point], datasets: list[str]) -> bytes:
    """The forest plot as PNG bytes: one panel per claim (C1-C7, two columns), rows world / placebo /
    datasets."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sources = ["world", "placebo world", *datasets]
    styles = {"world": WORLD_STYLE, "placebo world": PLACEBO_STYLE}
    styles.update({d: {"color": DATASET_COLORS[i % len(DATASET_COLORS)], "marker": "D"} for i, d in enumerate(datasets)})
    row_h = 0.2 * len(sources) + 0.55
    n_rows = (len(CLAIMS) + 2) // 2  # two columns of panels, the last cell holds the legend
    fig = Figure(figsize=(12, row_h * n_rows), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.subplots(n_rows, 2, squeeze=False)
    panels = [grid[i // 2][i % 2] for i in range(2 * n_rows)]
    for ax, claim in zip(panels, CLAIMS, strict=False):
        mine = [p for p in points if p.claim == claim.id]
        pct = any(p.unit == "%" for p in mine)
        scale = 100.0 if pct else 1.0
        ax.axvline(0.0, color="#444", lw=0.8, ls="--")
        for p in mine:
            y = -sources.index(p.source)
            st = styles[p.source]
            if p.lo is not None and p.hi is not None:
                ax.plot([p.lo * scale, p.hi * scale], [y, y], color=st["color"], lw=2)
            ax.plot([p.value * scale], [y], ls="none", ms=6, markeredgecolor=st["color"],
                    **{k: v for k, v in st.items() if k != "color"}, color=st["color"])
        label = next((p.label for p in mine if p.label), "")
        unit = "%" if pct else next((p.unit for p in mine if p.unit), "")
        title = f"{claim.id}  {claim.short}" + (f"\n{label}" if label else "") + (f" ({unit})" if unit else "")
        ax.set_title(title, loc="left", fontsize=9)
        ax.set_yticks([-i for i in range(len(sources))], sources, fontsize=8)
        ax.set_ylim(-len(sources) + 0.4, 0.6)
        ax.tick_params(axis="x", labelsize=8)
        if not mine:
            ax.text(0.5, 0.5, "no headline effect recorded yet", transform=ax.transAxes, ha="center",
                    va="center", fontsize=8, color="#777")
            ax.set_xlim(-1, 1)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for ax in panels[len(CLAIMS):]:
        ax.axis("off")
        handles = [ax.plot([], [], ls="-", ms=6, markeredgecolor=styles[s]["color"],
                           **{k: v for k, v in styles[s].items() if k != "color"}, color=styles[s]["color"])[0]
                   for s in sources]
        ax.legend(handles, sources, loc="center", fontsize=8, frameon=False,
                  title="estimate with 95% CI; dashed: no effect", title_fontsize=8)
    fig.tight_layout(h_pad=0.8, w_pad=2.0)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def forest_html(world_claims: dict[str, dict[str, Any]], dataset_claims: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A ``<figure>`` with the inline forest plot and a caption listing every plotted figure as text."""
    points = collect_points(world_claims, dataset_claims)
    if not points:  # seven empty panels would say nothing at great length
        return ('<p class="sub"><b>Forest plot:</b> no claim has recorded a headline effect in these runs yet '
                "(notebooks pass <code>effect=headline(...)</code> to <code>record_claim</code>).</p>")
    png = base64.b64encode(forest_png(points, list(dataset_claims))).decode()
    text = "; ".join(f"{p.claim} {p.source}: {format_effect({'value': p.value, 'lo': p.lo, 'hi': p.hi, 'unit': p.unit})}"
                     for p in points) or "no claim has recorded a headline effect yet"
    return (f'<figure class="forest"><img src="data:image/png;base64,{png}" alt="{html.escape(text)}">'
            "<figcaption>Each claim's headline effect with its 95% CI: the simulated world (blue), the placebo "
            "world where the simulator switches the effect off (grey, open), and each real dataset (diamonds). "
            "The dashed line is no effect; each claim has its own axis. A real dataset has no placebo, so it can "
            "show an effect but not rule out a confound.</figcaption></figure>")
