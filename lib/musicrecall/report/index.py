"""``reports/index.html``: the one page a product manager opens.

It opens with a one-screen summary (verdict counts and one line per claim), then the claims ledger (C1–C7 of ``../shared/claims.md``: the talk's figure, ours with a 95% CI,
the placebo world, real data, and a verdict; rows nobody has measured yet say *open*), then each
notebook's key figures, each notebook with its status, runtime, headline numbers and a link to its full
report, and every recorded metric. No external assets: figures are PNG files next to the page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from musicrecall.report.claims import CLAIMS
from musicrecall.report.record import _fmt, format_ci

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0 2rem;font-size:.92rem}
th,td{border-bottom:1px solid #ddd;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f7} .num{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{padding:.1rem .5rem;border-radius:.7rem;font-size:.8rem;white-space:nowrap}
.reproduced,.ok{background:#d9f2e1;color:#135c2c} .partly{background:#fff1cc;color:#7a5600}
.not-reproduced,.failed{background:#fbdada;color:#8a1c1c} .open{background:#eee;color:#555}
.summary{background:#f8f8fb;border:1px solid #e3e3ea;border-radius:.5rem;padding:.8rem 1.2rem}
.summary li{margin:.25rem 0} .figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
figure{margin:0;border:1px solid #eee;padding:.4rem} figure img{width:100%} figcaption{font-size:.85rem;color:#444}
"""


def _badge(text: str) -> str:
    return f'<span class="badge {html.escape(text.replace(" ", "-"))}">{html.escape(text)}</span>'


def _found_claims(metrics: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """Claim id -> (notebook, ledger row) for every claim some notebook measured."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for name, run in sorted(metrics.get("notebooks", {}).items()):
        for record in run.get("records", []):
            for row in record.get("claims", []):
                found[row["id"]] = (name, row)
    return found


def _summary(metrics: dict[str, Any]) -> str:
    """Verdict counts and one line per claim: what fits on one screen."""
    found = _found_claims(metrics)
    verdicts = [found[c.id][1]["verdict"] if c.id in found else "open" for c in CLAIMS]
    counts = " · ".join(f"{_badge(v)} {verdicts.count(v)}" for v in ("reproduced", "partly", "not reproduced", "open")
                        if verdicts.count(v))
    items = "".join(
        f"<li><b>{c.id}</b> {html.escape(c.short)}: {_badge(v)} "
        f"<small>{html.escape(found[c.id][1]['ours']) if c.id in found else 'not measured in this run'}</small></li>"
        for c, v in zip(CLAIMS, verdicts, strict=True))
    runs = metrics.get("notebooks", {}).values()
    total = sum(r["seconds"] for r in runs)
    failed = [r["name"] for r in runs if r["status"] != "ok"]
    health = (f"all {len(runs)} notebooks ran" if not failed else
              f"<b>{len(failed)} notebook(s) failed</b>: {html.escape(', '.join(failed))}")
    return (f'<div class="summary"><p><b>Claims of the talk:</b> {counts}</p><ul>{items}</ul>'
            f"<p>{health}, {total / 60:.1f} min in all.</p></div>")


def _figures(metrics: dict[str, Any]) -> str:
    cards = [
        f'<figure><a href="{html.escape(name)}.html"><img src="{html.escape(f["file"])}" alt="{html.escape(f["caption"])}">'
        f'</a><figcaption><b>{html.escape(name)}</b>: {html.escape(f["caption"])}</figcaption></figure>'
        for name, run in sorted(metrics.get("notebooks", {}).items()) for f in run.get("figures", [])]
    return f'<div class="figs">{"".join(cards)}</div>' if cards else "<p>No figures in this run.</p>"


def _claim_rows(metrics: dict[str, Any]) -> list[str]:
    found = _found_claims(metrics)
    rows = []
    for claim in CLAIMS:
        if claim.id in found:
            nb, row = found[claim.id]
            link = f'<a href="{html.escape(nb)}.html">{html.escape(nb)}</a>'
            cells = [row["ours"], row["placebo"], row.get("real") or "—"]
            verdict = _badge(row["verdict"]) + (f"<br><small>{html.escape(row['note'])}</small>" if row.get("note") else "")
        else:
            link = f"notebook {claim.notebook}"
            cells = ["open", "open", "open"]
            verdict = _badge("open")
        rows.append(
            f"<tr><td><b>{claim.id}</b></td><td>{html.escape(claim.claim)}<br><small>{html.escape(claim.measured_as)}"
            f"</small></td><td>{html.escape(claim.talk_figure)}</td>"
            + "".join(f'<td class="num">{html.escape(c)}</td>' for c in cells)
            + f"<td>{verdict}</td><td>{link}</td></tr>"
        )
    return rows


def _metric_cell(m: dict[str, Any]) -> str:
    ci = format_ci(m)
    world = "" if m.get("world", "default") == "default" else f" <small>({html.escape(m['world'])})</small>"
    return f"{html.escape(m['name'])}: <b>{_fmt(m['value'])}</b>{html.escape(m.get('unit', ''))} {ci}{world}"


def build_index(metrics: dict[str, Any], out_path: Path) -> Path:
    """Write the stakeholder index page for ``metrics`` (the content of ``metrics.json``)."""
    runs = metrics.get("notebooks", {})
    n_ok = sum(r["status"] == "ok" for r in runs.values())
    profiles = sorted({str(r["parameters"].get("profile")) for r in runs.values()})
    nb_rows = []
    for name, run in sorted(runs.items()):
        ms = [m for rec in run.get("records", []) for m in rec.get("metrics", [])]
        key = "<br>".join(_metric_cell(m) for m in ms[:5]) + (f"<br><small>+{len(ms) - 5} more</small>" if len(ms) > 5 else "")
        err = f"<br><small>{html.escape(run['error'])}</small>" if run.get("error") else ""
        params = ", ".join(f"{k}={v}" for k, v in run["parameters"].items())
        nb_rows.append(
            f'<tr><td><a href="{html.escape(name)}.html">{html.escape(name)}</a><br><small>{html.escape(params)}</small></td>'
            f"<td>{_badge(run['status'])}{err}</td><td class='num'>{run['seconds']:.0f} s</td><td>{key}</td></tr>"
        )
    total = sum(r["seconds"] for r in runs.values())
    nb_rows.append(f"<tr><td><b>total</b></td><td></td><td class='num'><b>{total:.0f} s</b></td><td></td></tr>")
    all_rows = [
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(m['name'])}</td><td class='num'>{_fmt(m['value'])}</td>"
        f"<td class='num'>{format_ci(m)}</td><td>{html.escape(m.get('world', ''))}</td><td>{html.escape(m.get('note', ''))}</td></tr>"
        for name, run in sorted(runs.items()) for rec in run.get("records", []) for m in rec.get("metrics", [])
    ]
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>musicrecall report</title>
<style>{_CSS}</style></head><body>
<h1>musicrecall: does the talk's recall system hold up?</h1>
<p class="sub">{n_ok} of {len(runs)} notebooks ran · profile {html.escape(", ".join(profiles) or "—")} ·
updated {html.escape(metrics.get("updated", ""))}</p>
<p>Each claim of the QQ Music recall talk is measured on the built-in simulated world with a 95% bootstrap
confidence interval, and again in a <b>placebo world</b> where the simulator switches off the effect the method
relies on: a real method shows no gain there. A claim that does not reproduce is reported with its numbers.</p>
{_summary(metrics)}
<h2>Claims ledger</h2>
<table><tr><th>id</th><th>claim</th><th>talk</th><th>ours (95% CI)</th><th>placebo world</th><th>real data</th>
<th>verdict</th><th>notebook</th></tr>{"".join(_claim_rows(metrics))}</table>
<h2>Key figures</h2>
{_figures(metrics)}
<h2>Notebooks and runtimes</h2>
<table><tr><th>notebook</th><th>status</th><th>runtime</th><th>key figures</th></tr>{"".join(nb_rows)}</table>
<h2>All recorded metrics</h2>
<table><tr><th>notebook</th><th>metric</th><th>value</th><th>95% CI</th><th>world</th><th>note</th></tr>{"".join(all_rows)}</table>
</body></html>"""
    tmp = out_path.with_name(out_path.name + ".tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
