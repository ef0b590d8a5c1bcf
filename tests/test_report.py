"""Metrics contract, offline HTML and the index page with its claims ledger."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from musicrecall.report import metric, record_claim
from musicrecall.report.html import export_html, markdown_math_to_mathml
from musicrecall.report.index import build_index
from musicrecall.report.record import METRICS_MIME, build_record
from musicrecall.report.runner import extract_records


def test_metric_rejects_non_finite_values():
    with pytest.raises(ValueError, match="not finite"):
        metric("hr@200", float("nan"))


def test_claim_rows_validate_id_and_verdict():
    with pytest.raises(ValueError, match="unknown claim"):
        record_claim("C9", ours="1", placebo="0", verdict="reproduced")
    with pytest.raises(ValueError, match="verdict"):
        record_claim("C1", ours="1", placebo="0", verdict="sort of")


def test_records_round_trip_through_notebook_outputs():
    payload = build_record("01_x", [metric("hr@200", 0.2, (0.18, 0.22))], profile="tiny",
                             claims=[record_claim("C2", ours="+3%", placebo="+0.1%", verdict="partly")])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={METRICS_MIME: payload, "text/plain": "t"})]
    assert extract_records(nb) == [payload]


def test_math_becomes_mathml_but_dollar_amounts_stay():
    out = markdown_math_to_mathml(r"weight $\gamma w_r$ costs $5 and $6")
    assert "<math" in out and r"\gamma" not in out and "$5 and $6" in out


def test_html_export_has_no_cdn_scripts_and_embeds_plots(tmp_path):
    import base64

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 32).decode()
    cell = nbformat.v4.new_code_cell("plot()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png})]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(r"$$\sum_i x_i$$"), cell])
    html = export_html(nb, tmp_path / "r.html").read_text()
    assert not re.findall(r"<script[^>]+src=", html)
    assert not re.search(r"cdn\.jsdelivr|cdnjs|unpkg\.com|require\.min\.js|MathJax\.js", html)
    assert "data:image/png;base64," in html and "<math" in html


def test_index_fills_measured_claims_and_marks_the_rest_open(tmp_path):
    rec = build_record("03_seq", [metric("lift", 0.05, (0.01, 0.09))], profile="tiny",
                         claims=[record_claim("C2", ours="+5% [1, 9]", placebo="+0.2% [-2, 2]", verdict="partly")])
    metrics = {"notebooks": {"03_seq": {"status": "ok", "seconds": 3.0, "parameters": {"profile": "tiny"},
                                        "error": "", "records": [rec]}}}
    page = build_index(json.loads(json.dumps(metrics)), tmp_path / "index.html").read_text()
    rows = re.findall(r"<tr><td><b>(C\d)</b>.*?</tr>", page, re.S)
    assert rows == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    c2 = re.search(r"<b>C2</b>.*?</tr>", page, re.S).group(0)
    assert "+5% [1, 9]" in c2 and "partly" in c2
    c1 = re.search(r"<b>C1</b>.*?</tr>", page, re.S).group(0)
    assert c1.count(">open<") >= 3
    assert 'href="03_seq.html"' in page


def test_key_figures_are_saved_with_captions_and_shown_in_the_summary_page(tmp_path):
    import base64

    from musicrecall.report.runner import extract_key_figures

    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    fig = lambda: nbformat.v4.new_output("display_data", data={"image/png": png})  # noqa: E731
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Overview plot"), nbformat.v4.new_code_cell("a", outputs=[fig()]),
        nbformat.v4.new_markdown_cell("## The headline\nwhy it matters"), nbformat.v4.new_code_cell("b", outputs=[fig()]),
    ])
    nb.cells[3].metadata["tags"] = ["key-figure"]
    figures = extract_key_figures(nb, "02_x", tmp_path)
    assert figures == [{"file": "figures/02_x-1.png", "caption": "The headline"}]  # the tagged one, not the first
    assert (tmp_path / "figures" / "02_x-1.png").read_bytes().startswith(b"\x89PNG")
    untagged = extract_key_figures(nbformat.v4.new_notebook(cells=nb.cells[:2]), "03_y", tmp_path)
    assert untagged == [{"file": "figures/03_y-1.png", "caption": "Overview plot"}]

    rec = build_record("02_x", [], profile="tiny",
                       claims=[record_claim("C1", ours="+3% [1, 5]", placebo="0%", verdict="reproduced")])
    runs = {"02_x": {"name": "02_x", "status": "ok", "seconds": 60.0, "parameters": {}, "error": "",
                     "records": [rec], "figures": figures},
            "03_y": {"name": "03_y", "status": "failed", "seconds": 30.0, "parameters": {}, "error": "boom",
                     "records": [], "figures": []}}
    page = build_index({"notebooks": runs}, tmp_path / "index.html").read_text()
    summary = re.search(r'<div class="summary">.*?</div>', page, re.S).group(0)
    assert "reproduced</span> 1" in summary and "open</span> 6" in summary
    assert "1 notebook(s) failed" in summary and "03_y" in summary and "1.5 min" in summary
    assert '<img src="figures/02_x-1.png"' in page and "The headline" in page
    assert "<b>90 s</b>" in page  # runtime total
