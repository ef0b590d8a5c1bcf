"""``reports/index.html``: the one page a product manager opens.

It opens with a one-screen summary (verdict counts and one line per claim), then the runs (the simulated
world and every imported dataset, side by side), the claims ledger (C1–C7 of ``../shared/claims.md``: the
talk's figure, ours with a 95% CI, the placebo world, one column per real dataset, and a verdict; rows
nobody has measured yet say *open*), then this run's key figures, each notebook's status and runtime in
every run, and every recorded metric of this run. A dataset run (``reports/datasets/<name>/``) gets the
same page for itself. Figures of different runs are never mixed: each run's figures live in its own
folder and only appear on its own page. No external assets: figures are PNG files next to the page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from musicrecall.report.claims import CLAIMS
from musicrecall.report.forest import forest_html
from musicrecall.report.record import NA, REAL_DATA_UNTESTED, cap_for_dataset, format_ci, format_value

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1240px;
 padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0 2rem;font-size:.92rem}
th,td{border-bottom:1px solid #ddd;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f7} .num{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{padding:.1rem .5rem;border-radius:.7rem;font-size:.8rem;white-space:nowrap}
.reproduced,.ok{background:#d9f2e1;color:#135c2c} .partly,.not-falsified{background:#fff1cc;color:#7a5600}
.not-reproduced,.failed{background:#fbdada;color:#8a1c1c} .open,.not-run{background:#eee;color:#555}
.summary{background:#f8f8fb;border:1px solid #e3e3ea;border-radius:.5rem;padding:.8rem 1.2rem}
.summary li{margin:.25rem 0} .figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
figure{margin:0;border:1px solid #eee;padding:.4rem} figure img{width:100%} figcaption{font-size:.85rem;color:#444}
table.ledger{table-layout:fixed;font-size:.85rem} .ledger td{overflow-wrap:anywhere;hyphens:auto}
.ledger col.claim{width:22%} .ledger col.talk{width:10%} .ledger col.verdict{width:11%}
.ledger th{overflow-wrap:anywhere} .scroll{overflow-x:auto} figure.forest{border:0} figure.forest img{width:100%}
"""


def _badge(text: str) -> str:
    return f'<span class="badge {html.escape(text.replace(" ", "-"))}">{html.escape(text)}</span>'


def _rel(target: Path, page: Path) -> str:
    """``target`` as a link relative to the folder of ``page``."""
    return html.escape(Path(os.path.relpath(target, page.parent)).as_posix())


def _world_runs(metrics: dict[str, Any]) -> dict[str, Any]:
    """Notebook runs of this page's own dataset. Older versions merged runs on imported data into the
    world's ``metrics.json``; such entries are not shown as world results."""
    runs = metrics.get("notebooks", {})
    if metrics.get("dataset"):
        return runs
    return {n: r for n, r in runs.items()
            if all(str(rec.get("dataset", "world")) == "world" for rec in r.get("records", []))}


def _found_claims(runs: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Claim id -> (notebook, ledger row) for every claim some notebook measured.

    Rows recorded on imported data are capped at "not falsified" here too, so records of older versions
    (which let a missing placebo pass) cannot show "reproduced" for real data.
    """
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, run in sorted(runs.items()):
        for record in run.get("records", []):
            for row in record.get("claims", []):
                row = cap_for_dataset(row, str(record.get("dataset", "world")))
                if run.get("status") != "ok" and run.get("last_good"):
                    row = {**row, "note": "; ".join(x for x in (
                        f"from the last good run ({run['last_good'].get('finished') or 'earlier'}): the latest run "
                        f"failed, see {run.get('failed_report', '')}", row.get("note", "")) if x)}
                found[row["id"]] = (name, row)
    return found


def _report_file(run: dict[str, Any], folder: Path) -> str:
    """The notebook's report to link: its last good HTML, else the failed one."""
    good = f"{run['name']}.html" if run.get("name") else ""
    if run.get("status") == "ok" or not run.get("failed_report") or (folder / good).exists():
        return good
    return run["failed_report"]


def _failure(run: dict[str, Any], folder: str = "") -> str:
    """What the index says about a failed run: the error, the failed report, and what was kept."""
    if run.get("status") == "ok":
        return ""
    out = f"<br><small>{html.escape(run.get('error', ''))}</small>" if run.get("error") else ""
    if run.get("failed_report"):
        out += f'<br><small><a href="{html.escape(folder + run["failed_report"])}">failed report</a></small>'
    if run.get("last_good"):
        out += (f"<br><small>last good results kept (run of {html.escape(str(run['last_good'].get('finished') or 'earlier'))})"
                "</small>")
    return out


def _rows(found: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {cid: row for cid, (_, row) in found.items()}


def ledger_rows(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Claim id -> the ledger row the index shows for ``metrics`` (one run's ``metrics.json``): the input of
    the forest plot (:func:`musicrecall.report.forest.collect_points`)."""
    return _rows(_found_claims(_world_runs(metrics)))


def _summary(runs: dict[str, Any], what: str, whole_run: dict[str, Any] | None = None) -> str:
    """Verdict counts and one line per claim: what fits on one screen. ``whole_run`` (``metrics["run"]`` of a
    full run) gives the wall time when notebooks ran side by side."""
    found = _found_claims(runs)
    verdicts = [found[c.id][1]["verdict"] if c.id in found else "open" for c in CLAIMS]
    kinds = ("reproduced", "partly", "not falsified", "not reproduced", "open")
    counts = " · ".join(f"{_badge(v)} {verdicts.count(v)}" for v in kinds if verdicts.count(v))
    items = "".join(
        f"<li><b>{c.id}</b> {html.escape(c.short)}: {_badge(v)} "
        f"<small>{html.escape(_claim_text(found[c.id][1])) if c.id in found else 'not measured in this run'}</small></li>"
        for c, v in zip(CLAIMS, verdicts, strict=True))
    total = sum(r["seconds"] for r in runs.values())
    failed = [r["name"] for r in runs.values() if r["status"] != "ok"]
    health = (f"all {len(runs)} notebooks ran" if not failed else
              f"<b>{len(failed)} notebook(s) failed</b>: {html.escape(', '.join(failed))}")
    timing = f"{total / 60:.1f} min in all"
    if whole_run and whole_run.get("wall_seconds"):
        timing = (f"{whole_run['wall_seconds'] / 60:.1f} min wall ({whole_run.get('jobs', 1)} notebooks side by side; "
                  f"{total / 60:.1f} min of notebook time)")
    return (f'<div class="summary"><p><b>Claims of the talk ({html.escape(what)}):</b> {counts}</p><ul>{items}</ul>'
            f"<p>{health}, {timing}.</p></div>")


def _claim_text(row: dict[str, Any]) -> str:
    """What a ledger row measured: ``ours``, or ``real`` for rows of older dataset runs."""
    return row.get("ours") or row.get("real") or ""


def _figures(runs: dict[str, Any]) -> str:
    cards = [
        f'<figure><a href="{html.escape(name)}.html"><img src="{html.escape(f["file"])}" alt="{html.escape(f["caption"])}">'
        f'</a><figcaption><b>{html.escape(name)}</b>: {html.escape(f["caption"])}</figcaption></figure>'
        for name, run in sorted(runs.items()) for f in run.get("figures", [])]
    return f'<div class="figs">{"".join(cards)}</div>' if cards else "<p>No figures in this run.</p>"


def _dataset_cell(found: dict[str, tuple[str, dict[str, Any]]], claim_id: str) -> str:
    """A real dataset's ledger cell: its figure, its verdict (at most "not falsified") and what was and
    was not tested."""
    if claim_id not in found:
        return f"<td>{_badge('not run')}</td>"
    _, row = found[claim_id]
    tested = f"<br><small>tested: {html.escape(row['tested'])}</small>" if row.get("tested") else ""
    untested = row.get("not_tested") or REAL_DATA_UNTESTED
    return (f"<td>{html.escape(_claim_text(row)) or NA}<br>{_badge(row['verdict'])}{tested}"
            f"<br><small>not tested: {html.escape(untested)}</small></td>")


def _claim_rows(runs: dict[str, Any], datasets: dict[str, dict[str, Any]], own_dataset: bool) -> list[str]:
    found = _found_claims(runs)
    found_ds = {name: _found_claims(m.get("notebooks", {})) for name, m in datasets.items()}
    rows = []
    for claim in CLAIMS:
        if claim.id in found:
            nb, row = found[claim.id]
            link = f' <a href="{html.escape(nb)}.html">{html.escape(nb)}</a>'
            cells = [_claim_text(row)] if own_dataset else [row["ours"], row["placebo"] or "not run"]
            verdict = _badge(row["verdict"]) + (f"<br><small>{html.escape(row['note'])}</small>" if row.get("note") else "")
            if row.get("tested"):
                verdict += f"<br><small>tested: {html.escape(row['tested'])}</small>"
            if row.get("not_tested"):
                verdict += f"<br><small>not tested: {html.escape(row['not_tested'])}</small>"
        else:
            link = f" <small>notebook {claim.notebook}</small>"
            cells = ["open"] if own_dataset else ["open", "open"]
            verdict = _badge("open")
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        tds += "".join(_dataset_cell(found_ds[name], claim.id) for name in datasets)
        rows.append(
            f"<tr><td><b>{claim.id}</b>{link}<br>{html.escape(claim.claim)}<br><small>{html.escape(claim.measured_as)}"
            f"</small></td><td>{html.escape(claim.talk_figure)}</td>{tds}<td>{verdict}</td></tr>"
        )
    return rows


def _ledger(runs: dict[str, Any], datasets: dict[str, dict[str, Any]], own_dataset: str | None) -> str:
    heads = [f"{own_dataset} (real data)"] if own_dataset else ["world: ours (95% CI)", "placebo world"]
    heads += [f"{name} (real data)" for name in datasets]
    cols = '<col class="claim"><col class="talk">' + "<col>" * len(heads) + '<col class="verdict">'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    verdict = "verdict" if own_dataset else "verdict (world)"
    return (f'<table class="ledger"><colgroup>{cols}</colgroup><tr><th>claim</th><th>talk</th>{head}<th>{verdict}</th></tr>'
            f'{"".join(_claim_rows(runs, datasets, bool(own_dataset)))}</table>')


def _metric_cell(m: dict[str, Any]) -> str:
    ci = format_ci(m)
    world = "" if m.get("world", "default") == "default" else f" <small>({html.escape(m['world'])})</small>"
    unit = html.escape(m.get("unit", "")) if format_value(m["value"]) != NA else ""
    return f"{html.escape(m['name'])}: <b>{format_value(m['value'])}</b>{unit} {ci}{world}"


def _runs_table(out_path: Path, world: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> str:
    """The world run and every dataset run side by side: one column per run, one row per notebook."""
    columns = [("world (simulated)", out_path, _world_runs(world), world)]
    columns += [(f"{name} (real data)", out_path.parent / "datasets" / name / "index.html", m.get("notebooks", {}), m)
                for name, m in datasets.items()]
    head = "".join(f'<th><a href="{_rel(page, out_path)}">{html.escape(label)}</a></th>' for label, page, _, _ in columns)
    source = "".join(f"<td><small>{html.escape(str(m.get('dataset', {}).get('source', 'built-in simulator')))}"
                     f"<br>updated {html.escape(m.get('updated', ''))}</small></td>" for _, _, _, m in columns)
    names = sorted({n for _, _, runs, _ in columns for n in runs})
    rows = []
    for name in names:
        cells = []
        for _, page, runs, _ in columns:
            run = runs.get(name)
            if run is None:
                cells.append("<td>—</td>")
                continue
            folder = _rel(page.parent, out_path)
            folder = "" if folder == "." else folder + "/"
            link = _rel(page.parent / _report_file({"name": name, **run}, page.parent), out_path)
            cells.append(f'<td><a href="{link}">{_badge(run["status"])}</a> '
                         f"<span class='num'>{run['seconds']:.0f} s</span>{_failure(run, folder)}</td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    totals = "".join(f"<td class='num'><b>{sum(r['seconds'] for r in runs.values()):.0f} s</b></td>" for _, _, runs, _ in columns)
    return (f'<div class="scroll"><table><tr><th>notebook</th>{head}</tr><tr><td>source</td>{source}</tr>{"".join(rows)}'
            f"<tr><td><b>total</b></td>{totals}</tr></table></div>")


def _usage(run: dict[str, Any]) -> str:
    """The CPU time and peak memory of a notebook's kernel and its child processes, when the run recorded them."""
    if not run.get("peak_gb"):
        return ""
    return f"<br><small>{run.get('cpu_seconds') or 0:.0f} CPU s, {run['peak_gb']:.1f} GB</small>"


def build_index(metrics: dict[str, Any], out_path: Path, datasets: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write the stakeholder index page for ``metrics`` (the content of one run's ``metrics.json``).

    On the world's page, ``datasets`` (report folder name -> that run's metrics) add a column per real
    dataset to the claims ledger and to the runs table; their figures stay on their own pages.
    """
    datasets = datasets or {}
    own = metrics.get("dataset", {}).get("name") if metrics.get("dataset") else None
    runs = _world_runs(metrics)
    n_ok = sum(r["status"] == "ok" for r in runs.values())
    profiles = sorted({str(r["parameters"].get("profile")) for r in runs.values()})
    nb_rows = []
    for name, run in sorted(runs.items()):
        ms = [m for rec in run.get("records", []) for m in rec.get("metrics", [])]
        key = "<br>".join(_metric_cell(m) for m in ms[:5]) + (f"<br><small>+{len(ms) - 5} more</small>" if len(ms) > 5 else "")
        err = _failure(run)
        params = ", ".join(f"{k}={v}" for k, v in run["parameters"].items())
        nb_rows.append(
            f'<tr><td><a href="{html.escape(_report_file({"name": name, **run}, out_path.parent))}">{html.escape(name)}</a>'
            f'<br><small>{html.escape(params)}</small></td>'
            f"<td>{_badge(run['status'])}{err}</td><td class='num'>{run['seconds']:.0f} s{_usage(run)}</td><td>{key}</td></tr>"
        )
    total = sum(r["seconds"] for r in runs.values())
    nb_rows.append(f"<tr><td><b>total</b></td><td></td><td class='num'><b>{total:.0f} s</b></td><td></td></tr>")
    all_rows = [
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(m['name'])}</td><td class='num'>{format_value(m['value'])}</td>"
        f"<td class='num'>{format_ci(m)}</td><td>{html.escape(m.get('world', ''))}</td><td>{html.escape(m.get('note', ''))}</td></tr>"
        for name, run in sorted(runs.items()) for rec in run.get("records", []) for m in rec.get("metrics", [])
    ]
    own_claims = ledger_rows(metrics)
    ds_claims = {name: _rows(_found_claims(m.get("notebooks", {}))) for name, m in datasets.items()}
    forest = forest_html({}, {own: own_claims}) if own else forest_html(own_claims, ds_claims)
    if own:
        title = f"musicrecall on real data: {own}"
        intro = (f"<p>The workbook's notebooks on the imported dataset <b>{html.escape(own)}</b> "
                 f"(<small>{html.escape(str(metrics['dataset'].get('source', '')))}</small>). Real data has no placebo "
                 "world, so a claim measured here can at most be <b>not falsified</b>. "
                 f'<a href="{_rel(out_path.parents[2] / "index.html", out_path)}">Back to all runs</a>.</p>')
        runs_section = ""
    else:
        title = "musicrecall: does the talk's recall system hold up?"
        intro = ("<p>Each claim of the QQ Music recall talk is measured on the built-in simulated world with a 95% bootstrap "
                 "confidence interval, and again in a <b>placebo world</b> where the simulator switches off the effect the "
                 "method relies on: a real method shows no gain there. A claim that does not reproduce is reported with "
                 "its numbers. Runs on real listening logs have their own column and their own pages.</p>")
        runs_section = f"<h2>Runs</h2>{_runs_table(out_path, metrics, datasets)}"
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="sub">{n_ok} of {len(runs)} notebooks ran · profile {html.escape(", ".join(profiles) or "—")} ·
updated {html.escape(metrics.get("updated", ""))}</p>
{forest}
{intro}
{_summary(runs, own or "simulated world", metrics.get("run"))}
<h2>Claims ledger</h2>
{_ledger(runs, datasets, own)}
{runs_section}
<h2>Key figures{html.escape(f" ({own})" if own else " (simulated world)")}</h2>
{_figures(runs)}
<h2>Notebooks and runtimes</h2>
<table><tr><th>notebook</th><th>status</th><th>runtime (CPU, peak memory)</th><th>key figures</th></tr>{"".join(nb_rows)}</table>
<h2>All recorded metrics</h2>
<div class="scroll"><table><tr><th>notebook</th><th>metric</th><th>value</th><th>95% CI</th><th>world</th><th>note</th></tr>{"".join(all_rows)}</table></div>
</body></html>"""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f"{out_path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
