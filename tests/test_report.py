"""Metrics contract, offline HTML and the index page with its claims ledger."""

from __future__ import annotations

import json
import os
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


# --- NaN and missing values -------------------------------------------------------------------------


def test_an_unmeasurable_value_is_null_with_its_reason_and_a_nan_interval_is_null():
    m = metric("nmi_vs_genre", float("nan"), note="imported data has no genre")
    assert m["value"] is None and m["note"] == "imported data has no genre"
    m = metric("hr@200", 0.2, (float("nan"), 0.3))
    assert m["ci_lo"] is None and m["ci_hi"] is None
    with pytest.raises(ValueError, match="not finite"):
        metric("hr@200", float("inf"), note="why")
    payload = build_record("01_x", [m, metric("x", None, note="n/a here")], profile="tiny")
    text = json.dumps(payload, allow_nan=False)  # strict JSON: no NaN, no "nan"
    assert "nan" not in text.lower().replace("n/a", "")


def test_nan_strings_of_older_runs_are_read_as_null_and_shown_as_na(tmp_path):
    """Regression: jupyter's packer stored a NaN interval as the string "nan"; every later `make nb`
    then failed formatting it in report/record.py."""
    from musicrecall.report.runner import build_indexes, load_metrics

    rec = build_record("02_x", [metric("lift", 0.05, (0.01, 0.09))], profile="tiny")
    rec["metrics"][0].update(ci_lo="nan", ci_hi="nan")
    rec["metrics"].append({"name": "nmi", "value": "nan", "ci_lo": None, "ci_hi": None, "unit": "", "world": "default",
                           "note": ""})
    run = {"name": "02_x", "status": "ok", "seconds": 1.0, "parameters": {"profile": "tiny"}, "error": "",
           "records": [rec], "figures": []}
    (tmp_path / "metrics.json").write_text(json.dumps({"notebooks": {"02_x": run}}))
    metrics = load_metrics(tmp_path)
    got = {m["name"]: m for m in metrics["notebooks"]["02_x"]["records"][0]["metrics"]}
    assert got["lift"]["ci_lo"] is None and got["nmi"]["value"] is None
    page = build_indexes(tmp_path).read_text()
    assert "nmi: <b>n/a</b>" in page and ">nan<" not in page


# --- runs on imported data: their own folder ---------------------------------------------------------


def _fake_notebooks(folder, names=("00_a", "01_b")):
    """Tiny notebooks that honour the contract: a parameters cell and a last cell recording metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        params = nbformat.v4.new_code_cell('profile = "small"\nseed = 0\ndataset = "world"\nfail = False')
        params.metadata["tags"] = ["parameters"]
        body = nbformat.v4.new_code_cell(
            "from musicrecall.report import metric, record_metrics\n"
            "assert not fail, 'asked to fail'\n"
            f"record_metrics({name!r}, [metric('share', 0.5 if dataset == 'world' else 0.25)], profile=profile,"
            " dataset=dataset, seed=seed)")
        nb = nbformat.v4.new_notebook(cells=[params, body])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def test_parse_only_and_dataset_names(tmp_path):
    from musicrecall.report.runner import dataset_name, parse_only, run_reports_dir

    assert parse_only("01,02, 03") == ["01", "02", "03"] and parse_only(["01,02", "04"]) == ["01", "02", "04"]
    assert parse_only(None) is None and parse_only([]) is None
    (tmp_path / "30music").mkdir()
    assert dataset_name(str(tmp_path / "30music")) == "30music"
    assert dataset_name(str(tmp_path / "30music" / "sequences.txt")) == "30music-sequences"
    assert run_reports_dir("world", tmp_path) == tmp_path
    first = run_reports_dir(str(tmp_path / "30music"), tmp_path / "r")
    assert first == tmp_path / "r" / "datasets" / "30music"
    first.mkdir(parents=True)
    (first / "metrics.json").write_text(json.dumps({"notebooks": {}, "dataset": {"source": "/elsewhere/30music"}}))
    other = run_reports_dir(str(tmp_path / "30music"), tmp_path / "r")
    assert other != first and other.name.startswith("30music-")  # same name, another source: its own folder


def test_a_dataset_run_writes_its_own_folder_and_never_touches_the_world(tmp_path):
    from musicrecall.report.runner import run_all

    nbs = _fake_notebooks(tmp_path / "nbs")
    reports = tmp_path / "reports"
    world = run_all("tiny", reports_dir=reports, notebooks_dir=nbs)
    assert [r.status for r in world] == ["ok", "ok"], [r.error for r in world]
    world_before = (reports / "metrics.json").read_text()
    data = tmp_path / "mylog"
    data.mkdir()
    runs = run_all("tiny", only="01", extra={"dataset": str(data)}, reports_dir=reports, notebooks_dir=nbs)
    assert [r.name for r in runs] == ["01_b"] and runs[0].status == "ok", runs[0].error
    assert (reports / "metrics.json").read_text() == world_before  # the world's results are untouched
    own = reports / "datasets" / "mylog"
    metrics = json.loads((own / "metrics.json").read_text())
    assert metrics["dataset"] == {"name": "mylog", "source": str(data.resolve())}
    assert metrics["notebooks"]["01_b"]["records"][0]["metrics"][0]["value"] == 0.25
    assert (own / "01_b.html").exists() and (own / "01_b.ipynb").exists() and (own / "index.html").exists()
    assert not (reports / "01_b.ipynb").read_text().count(str(data))  # the world's notebook is the world's
    top = (reports / "index.html").read_text()
    assert "mylog (real data)" in top and 'href="datasets/mylog/01_b.html"' in top and 'href="01_b.html"' in top


def test_dataset_runs_default_to_the_notebooks_that_apply_to_imported_data(tmp_path):
    from musicrecall.report.runner import DATASET_NOTEBOOKS, run_all

    nbs = _fake_notebooks(tmp_path / "nbs", names=("00_a", "05_audio", "07_fed"))
    data = tmp_path / "mylog"
    data.mkdir()
    runs = run_all("tiny", extra={"dataset": str(data)}, reports_dir=tmp_path / "r", notebooks_dir=nbs)
    assert [r.name for r in runs] == ["00_a"]  # 05 and 07 do not apply to an imported log
    assert DATASET_NOTEBOOKS == ("00", "01", "02", "03", "04", "06", "08")


def test_the_world_page_ignores_imported_entries_of_older_runs(tmp_path):
    rec_world = build_record("01_x", [metric("share", 0.5)], profile="tiny")
    rec_real = build_record("02_y", [metric("share", 0.25)], profile="tiny", dataset="/data/me")
    run = lambda n, r: {"name": n, "status": "ok", "seconds": 1.0, "parameters": {}, "error": "",  # noqa: E731
                        "records": [r], "figures": [{"file": f"figures/{n}-1.png", "caption": n}]}
    page = build_index({"notebooks": {"01_x": run("01_x", rec_world), "02_y": run("02_y", rec_real)}},
                       tmp_path / "index.html").read_text()
    assert "figures/01_x-1.png" in page and "02_y" not in page


def test_cli_dataset_option_and_comma_separated_only(monkeypatch, tmp_path):
    import musicrecall.report.__main__ as cli

    seen = {}
    monkeypatch.setattr(cli, "run_all", lambda profile, only=None, extra=None, jobs=None: seen.update(only=only, extra=extra) or [])
    monkeypatch.setattr(cli, "REPORTS_DIR", tmp_path / "reports")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--profile", "tiny", "--dataset", "logs/me", "--only", "01,02,03"]) == 0
    assert seen["only"] == ["01", "02", "03"]
    assert seen["extra"]["dataset"] == str(tmp_path / "logs" / "me")


# --- claims ledger: headline effects, verdict caps, real-data columns, forest plot ---------------------


def test_a_missing_placebo_never_counts_as_a_pass():
    from musicrecall.report.record import headline

    eff = headline(0.08, (0.05, 0.11), label="HR@200 lift", unit="%")
    for placebo in ("", "n/a (imported data)", "not run"):
        row = record_claim("C2", ours="+8%", placebo=placebo, verdict="reproduced", effect=eff)
        assert row["verdict"] == "not falsified" and row["verdict_asked"] == "reproduced", placebo
        assert "placebo" in row["not_tested"]
    nan_placebo = headline(float("nan"), None, label="lift", unit="%")
    assert record_claim("C2", effect=eff, placebo_effect=nan_placebo, verdict="partly")["verdict"] == "not falsified"
    ok = record_claim("C2", effect=eff, placebo_effect=headline(0.0, (-0.02, 0.02), label="lift", unit="%"),
                      verdict="reproduced")
    assert ok["verdict"] == "reproduced" and ok["ours"] == "+8.0% [+5.0%, +11.0%]" and ok["placebo"].startswith("+0.0%")
    # a negative result needs no placebo to stand
    assert record_claim("C2", ours="-3%", verdict="not reproduced")["verdict"] == "not reproduced"


def test_claims_recorded_on_real_data_read_at_most_not_falsified():
    from musicrecall.report.record import headline

    row = record_claim("C1", ours="+3.9% [+0.6, +7.6]", placebo="+0.1% [-1, 1]", verdict="reproduced",
                       effect=headline(0.039, (0.006, 0.076), label="HR@200 lift", unit="%"))
    assert row["verdict"] == "reproduced"  # the world's rule: a placebo was measured
    rec = build_record("02_kg", [], profile="tiny", dataset="/data/30music", claims=[row])
    (capped,) = rec["claims"]
    assert capped["verdict"] == "not falsified" and capped["verdict_asked"] == "reproduced"
    assert "placebo world" in capped["not_tested"] and capped["tested"]
    assert build_record("02_kg", [], profile="tiny", claims=[row])["claims"][0]["verdict"] == "reproduced"
    said = record_claim("C2", ours="+41%", verdict="not falsified", not_tested="placebo world (imported data)")
    assert said["not_tested"] == "placebo world (imported data)"
    (kept,) = build_record("03_seq", [], profile="tiny", dataset="/data/x", claims=[said])["claims"]
    assert kept["not_tested"] == "placebo world (imported data)"  # said once, not three times


def _run(name, records, figures=()):
    return {"name": name, "status": "ok", "seconds": 10.0, "parameters": {"profile": "tiny"}, "error": "",
            "records": records, "figures": list(figures)}


LONG = ("matched channels (short_term+audio_i2i), songs_with_audio: collect AUC gain +0.8% [+0.3%, +1.4%] "
        "(A/A noise +0.0% [-0.2%, +0.2%]); all impressions: 0.712 -> 0.718, gain +0.6% [+0.1%, +1.0%]; collect "
        "hit@10 lift +4.1% [+1.0%, +7.5%]; all five channels: collect AUC 0.701 -> 0.709, gain +1.1% [+0.5%, +1.7%]")


def _ledger_fixture(n_datasets=3):
    from musicrecall.report.record import headline

    world_claims = [record_claim(c, ours=LONG, placebo=LONG, verdict="reproduced",
                                 effect=headline(0.05 * i, (0.02 * i, 0.08 * i), label="relative lift", unit="%"),
                                 placebo_effect=headline(0.001, (-0.02, 0.02), label="relative lift", unit="%"))
                    for i, c in enumerate(("C1", "C2", "C3", "C4", "C5", "C6", "C7"), start=1)]
    world = {"notebooks": {"02_kg": _run("02_kg", [build_record("02_kg", [metric("x", 0.5)], profile="tiny",
                                                                claims=world_claims)])}}
    datasets = {}
    for j in range(n_datasets):
        rows = [record_claim(c, ours=LONG, placebo="n/a (imported data)", verdict="reproduced",
                             effect=headline(0.03 + 0.01 * j, (0.01, 0.06), label="relative lift", unit="%"))
                for c in ("C1", "C2", "C3", "C6")]
        rec = build_record("02_kg", [metric("x", 0.25)], profile="tiny", dataset=f"/data/log{j}", claims=rows)
        datasets[f"public_music_log_{j}"] = {"notebooks": {"02_kg": _run("02_kg", [rec])},
                                             "dataset": {"name": f"public_music_log_{j}", "source": f"/data/log{j}"}}
    return world, datasets


def test_ledger_has_a_column_per_dataset_and_the_index_opens_with_a_forest_plot(tmp_path):
    from musicrecall.report.forest import collect_points

    world, datasets = _ledger_fixture(2)
    # an older dataset record that still says "reproduced" (written before the cap existed)
    old = build_record("03_seq", [], profile="tiny", claims=[record_claim("C2", ours="+41%", placebo="x",
                                                                          verdict="reproduced")])
    old["dataset"] = "/data/log0"
    datasets["public_music_log_0"]["notebooks"]["03_seq"] = _run("03_seq", [old])
    page = build_index(world, tmp_path / "index.html", datasets=datasets).read_text()
    assert page.index('<figure class="forest"><img src="data:image/png;base64,') < page.index("Claims ledger")
    head = re.search(r'<table class="ledger">.*?</tr>', page, re.S).group(0)
    assert "public_music_log_0 (real data)" in head and "public_music_log_1 (real data)" in head
    c2 = re.search(r"<tr><td><b>C2</b>.*?</tr>", page, re.S).group(0)
    dataset_cells = re.findall(r"<td>[^<]*<br><span class=\"badge ([a-z-]+)\">", c2)
    assert dataset_cells == ["not-falsified", "not-falsified"], dataset_cells
    assert "not tested: placebo world (none exists for real data)" in c2
    c4 = re.search(r"<tr><td><b>C4</b>.*?</tr>", page, re.S).group(0)
    assert c4.count("not-run") == 2  # measured in the world only
    w = {r["id"]: r for r in world["notebooks"]["02_kg"]["records"][0]["claims"]}
    d = {n: {r["id"]: r for r in m["notebooks"]["02_kg"]["records"][0]["claims"]} for n, m in datasets.items()}
    points = collect_points(w, d)
    assert {(p.claim, p.source) for p in points} >= {("C1", "world"), ("C1", "placebo world"),
                                                    ("C1", "public_music_log_0"), ("C1", "public_music_log_1")}
    assert not any(p.claim == "C4" and p.source.startswith("public") for p in points)


def test_ledger_fits_a_laptop_screen_in_a_browser(tmp_path):
    """At 1366 px the index does not scroll sideways and the claim column stays readable, with the
    world, the placebo world and three real datasets in the ledger."""
    from musicrecall.report.browser import LEDGER_LAYOUT, check_pages, find_chromium

    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs the Debian package 'chromium'")
        pytest.skip("chromium not installed (outside CI); apt-get install chromium")
    world, datasets = _ledger_fixture(3)
    page = build_index(world, tmp_path / "index.html", datasets=datasets)
    (check,) = check_pages([page], viewport=(1366, 768), expression=LEDGER_LAYOUT)
    m = check.measured
    assert m["columns"] == 2 + 2 + 3 + 1  # claim, talk, world, placebo, 3 datasets, verdict
    assert m["page_scroll_width"] <= m["page_client_width"], m
    assert m["table_right"] <= m["page_client_width"], m
    assert m["claim_width"] >= 180, m
    assert not check.outside_requests and check.broken_images == 0


# --- runner: parameters, failed runs, interrupted writes -----------------------------------------------


def test_an_unknown_parameter_is_an_error_listing_the_notebooks_parameters_before_anything_runs(tmp_path):
    from musicrecall.report.runner import (
        UnknownParameterError,
        check_parameters,
        notebook_parameters,
        run_all,
    )

    nbs = _fake_notebooks(tmp_path / "nbs")
    assert notebook_parameters(nbs / "00_a.ipynb") == {"profile": '"small"', "seed": "0", "dataset": '"world"',
                                                       "fail": "False"}
    with pytest.raises(UnknownParameterError, match=r"sede") as err:
        run_all("tiny", extra={"sede": 7}, reports_dir=tmp_path / "r", notebooks_dir=nbs)
    assert "seed=0" in str(err.value) and "00_a" in str(err.value) and "01_b" in str(err.value)
    assert not (tmp_path / "r").exists()  # nothing ran, nothing was written
    # a parameter some notebooks declare goes to those only
    extra_nb = nbformat.read(nbs / "01_b.ipynb", as_version=4)
    extra_nb.cells[0].source += "\nvalid_days = 7"
    nbformat.write(extra_nb, nbs / "01_b.ipynb")
    shares = check_parameters(sorted(nbs.glob("*.ipynb")), {"profile": "tiny", "valid_days": 30})
    assert [shares[p] for p in sorted(shares)] == [{"profile": "tiny"}, {"profile": "tiny", "valid_days": 30}]


def test_report_cli_exits_with_the_parameter_listing_on_a_typo(monkeypatch, tmp_path, capsys):
    import musicrecall.report.__main__ as cli
    from musicrecall.report import runner

    nbs = _fake_notebooks(tmp_path / "nbs")
    monkeypatch.setattr(cli, "run_all", lambda profile, only=None, extra=None, jobs=None: runner.run_all(
        profile, only, extra, reports_dir=tmp_path / "r", notebooks_dir=nbs, jobs=jobs))
    assert cli.main(["run", "--profile", "tiny", "--only", "01", "-p", "sede", "7"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) sede" in err and "seed=0" in err


def test_a_failed_rerun_keeps_the_last_good_outputs_and_the_index_shows_the_failure(tmp_path):
    from musicrecall.report.runner import run_all

    nbs = _fake_notebooks(tmp_path / "nbs", names=("01_b",))
    reports = tmp_path / "reports"
    assert run_all("tiny", reports_dir=reports, notebooks_dir=nbs)[0].status == "ok"
    good = {f: (reports / f).read_bytes() for f in ("01_b.ipynb", "01_b.html")}
    (bad,) = run_all("tiny", only="01", extra={"fail": True}, reports_dir=reports, notebooks_dir=nbs)
    assert bad.status == "failed" and "asked to fail" in bad.error
    assert {f: (reports / f).read_bytes() for f in good} == good  # the last good outputs are untouched
    assert "asked to fail" in (reports / "01_b.FAILED.html").read_text()
    assert (reports / "01_b.FAILED.ipynb").exists()
    entry = json.loads((reports / "metrics.json").read_text())["notebooks"]["01_b"]
    assert entry["status"] == "failed" and entry["failed_report"] == "01_b.FAILED.html"
    assert entry["records"][0]["metrics"][0]["value"] == 0.5 and entry["last_good"]["finished"]
    index = (reports / "index.html").read_text()
    assert 'href="01_b.FAILED.html"' in index and "last good results kept" in index and "1 notebook(s) failed" in index
    assert not list(reports.glob("*.running*")) and not list(reports.glob("*.tmp"))
    (ok,) = run_all("tiny", only="01", reports_dir=reports, notebooks_dir=nbs)
    assert ok.status == "ok" and not (reports / "01_b.FAILED.html").exists()  # a success clears the failure


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_interrupted_runs_are_cleaned_but_a_live_runs_are_kept(tmp_path):
    from musicrecall.report.runner import clean_stale_temp

    dead, live = _dead_pid(), os.getpid()
    stale = [tmp_path / f"metrics.json.{dead}.tmp", tmp_path / f"03_x.running-{dead}.ipynb", tmp_path / "index.html.tmp"]
    mine = [tmp_path / f"index.html.{live}.tmp", tmp_path / f"04_y.running-{live}.html"]
    for f in stale + mine:
        f.write_text("x")
    assert sorted(clean_stale_temp(tmp_path)) == sorted(stale)
    assert all(f.exists() for f in mine)


def test_world_save_cleans_temp_folders_of_interrupted_saves(tmp_path):
    from musicrecall.world import generate_world

    world = generate_world("tiny", seed=0, n_users=50, n_days=3)
    target = tmp_path / "world-x"
    dead = _dead_pid()
    killed_tmp = tmp_path / f".world-x.tmp-{dead}-abc123"
    old_style = tmp_path / ".world-x.tmp-k2j3h4"  # older versions had no pid in the name
    running = tmp_path / f".world-x.tmp-{os.getpid()}-zzz"  # a save in progress (this process)
    for d in (killed_tmp, old_style, running):
        d.mkdir()
        (d / "events.parquet").write_bytes(b"partial")
    two_hours_ago = __import__("time").time() - 7200
    os.utime(old_style, (two_hours_ago, two_hours_ago))
    world.save(target)
    assert not killed_tmp.exists() and not old_style.exists() and running.exists()
    assert (target / "config.json").exists()
    leftovers = {p.name for p in tmp_path.iterdir()} - {"world-x", running.name}
    assert not leftovers, leftovers
    # killed between moving the old copy aside and moving the new one in: the old copy comes back
    aside = tmp_path / f".world-x.old-{dead}"
    os.replace(target, aside)
    world.save(tmp_path / "other")  # a save of another folder leaves this one alone
    assert aside.exists()
    from musicrecall.world.core import clean_interrupted_saves

    assert clean_interrupted_saves(target) == [] and (target / "config.json").exists() and not aside.exists()


# --- the sanity rule for recorded metrics, by unit ------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "unit"), [
    ("sasrec_unshared_seconds_per_epoch", 2.69, "s"),  # issue 16: a loaded machine; "unshared" is not "share"
    ("sasrec_unshared_seconds_per_epoch", 2.69, ""),  # a time by its name alone
    ("mind_train_time", 41.0, ""), ("encode_s", 7.5, ""), ("kg_vs_plain_train_time", 1.41, "x"),
    ("eval_rate@10_ms", 12.0, ""), ("hr@200_speed_ratio", 3.2, "x"),  # a unit makes it a quantity, not a share
    ("placebo_lift_sasrec_vs_youtube_dnn_all_hr@200", -0.4, ""), ("shuffle_change_sasrec_all_ndcg@50", 1.5, ""),
    ("kg_song2vec_all_hr@200", 0.31, ""), ("rows_in", 3043, ""),
])
def test_times_lifts_and_quantities_with_a_unit_are_exempt_from_the_share_bound(name, value, unit):
    from musicrecall.report.record import metric_problems

    assert metric_problems(metric(name, value, unit=unit)) == []


@pytest.mark.parametrize("name", ["kg_song2vec_all_hr@200", "kept_share", "collect_hit_rate@10", "genre_coverage",
                                  "noise_removal_precision", "hnsw_recall@200_ids", "mean_daily_repeat_ratio"])
def test_a_share_outside_0_1_is_a_problem(name):
    from musicrecall.report.record import is_share, metric_problems

    assert is_share(name)
    assert "outside [0, 1]" in metric_problems(metric(name, 1.2))[0]
    assert metric_problems(metric(name, -0.01))


def test_interval_and_null_rules():
    from musicrecall.report.record import metric_problems

    assert "outside its interval" in metric_problems(metric("lift", 0.5, (0.1, 0.2)))[0]
    assert metric_problems(metric("nmi", None, note="no genre in this data")) == []
    assert metric_problems({"name": "nmi", "value": None, "ci_lo": None, "ci_hi": None, "unit": "", "note": ""})


def test_a_dataset_that_does_not_exist_is_an_error_before_anything_runs(tmp_path):
    from musicrecall.report.runner import DatasetNotFoundError, run_all

    nbs = _fake_notebooks(tmp_path / "nbs")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        run_all("tiny", extra={"dataset": str(tmp_path / "no-such-log")}, reports_dir=tmp_path / "r", notebooks_dir=nbs)
    assert not (tmp_path / "r").exists()


def test_the_forest_plot_is_a_one_line_note_when_no_claim_has_an_effect(tmp_path):
    rec = build_record("03_seq", [], profile="tiny", claims=[record_claim("C2", ours="+5%", placebo="+0%",
                                                                          verdict="partly")])
    page = build_index({"notebooks": {"03_seq": _run("03_seq", [rec])}}, tmp_path / "index.html").read_text()
    assert "no claim has recorded a headline effect" in page and "data:image/png" not in page


# --- notebooks side by side ---------------------------------------------------------------------------


def _scheduled(names, jobs, threads_total=2, expected=None, seconds=None, peaks=None, budget_gb=None):
    """Run ``schedule`` with a fake notebook runner; return (start/end events, threads per notebook, peak
    concurrency). Each fake notebook sleeps ``seconds[prefix]`` (default 0.05 s)."""
    import threading
    import time as _time
    from pathlib import Path

    from musicrecall.report.runner import NotebookRun, schedule

    lock, events, threads_of, live, peak = threading.Lock(), [], {}, [0], [0]

    def run_one(path, threads):
        with lock:
            events.append(("start", path.name[:2]))
            threads_of[path.name[:2]] = threads
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        _time.sleep((seconds or {}).get(path.name[:2], 0.05))
        with lock:
            live[0] -= 1
            events.append(("end", path.name[:2]))
        return NotebookRun(path.stem, "ok", 0.0, {})

    paths = [Path(f"{n}_x.ipynb") for n in names]
    runs = schedule(paths, jobs, run_one, threads_total, expected, peaks, budget_gb)
    assert [r.name for r in runs] == [p.stem for p in paths]  # results in notebook order, whatever ran first
    return events, threads_of, peak[0]


def test_notebooks_run_side_by_side_only_after_what_they_read():
    names = ["00", "01", "02", "03", "04", "05", "06", "07", "08"]
    events, threads_of, peak = _scheduled(names, jobs=2)
    pos = {e: i for i, e in enumerate(events)}
    for n in names[1:]:
        assert pos[("end", "00")] < pos[("start", n)]  # every notebook reads the generated world
    for n in names[1:8]:
        assert pos[("end", n)] < pos[("start", "08")]  # 08 reuses the models of 02-07
    # 01 (the cleaning report) is no gate: the others clean through prepare's cache, so it runs in a lane
    assert pos[("start", "02")] < pos[("end", "01")] or pos[("start", "03")] < pos[("end", "01")]
    assert peak == 2
    # alone (00, 08): every thread; side by side: a share each, never more threads than cores
    assert threads_of["00"] == threads_of["08"] == 2
    assert all(threads_of[n] == 1 for n in names[1:7])


def test_one_job_runs_the_notebooks_one_at_a_time_in_order():
    names = ["00", "01", "02", "03", "08"]
    events, threads_of, peak = _scheduled(names, jobs=1, threads_total=2)
    assert peak == 1 and [n for kind, n in events if kind == "start"] == names
    assert set(threads_of.values()) == {2}


def test_the_longest_expected_notebook_starts_first():
    events, _, _ = _scheduled(["00", "01", "02", "03", "07"], jobs=2, expected={"07": 300, "03": 400, "02": 10, "01": 60})
    starts = [n for kind, n in events if kind == "start"]
    assert starts[:3] == ["00", "03", "07"]


def _overlapping(events):
    """Pairs of notebooks that ran at the same time, from start/end events."""
    live, pairs = set(), set()
    for kind, n in events:
        if kind == "start":
            pairs |= {frozenset((n, m)) for m in live}
            live.add(n)
        else:
            live.discard(n)
    return pairs


def test_notebooks_run_side_by_side_only_when_their_memory_fits():
    names = ["00", "02", "03", "04", "05"]
    seconds = {"02": 0.3, "03": 0.3, "04": 0.1, "05": 0.1}
    peaks = {"00": 11.0, "02": 20.0, "03": 18.0, "04": 6.0, "05": 3.0}
    events, threads_of, _ = _scheduled(names, jobs=2, seconds=seconds, peaks=peaks, budget_gb=22.0)
    together = _overlapping(events)
    for pair in together:  # never two whose expected peaks exceed the budget
        assert sum(peaks[n] for n in pair) <= 22.0, (pair, events)
    assert frozenset(("02", "03")) not in together
    # 02 and 03 only fit beside 05 (20 + 3 > 22, 18 + 3 <= 22): 03 gets a lane-mate, 02 runs alone with every thread
    assert frozenset(("03", "05")) in together or frozenset(("03", "04")) in together
    assert threads_of["02"] == 2
    # with room for everything the same notebooks run two at a time, each on its share of the threads
    events, threads_of, peak = _scheduled(names, jobs=2, seconds=seconds, peaks=peaks, budget_gb=64.0)
    assert peak == 2 and frozenset(("02", "03")) in _overlapping(events)
    assert threads_of["02"] == threads_of["03"] == 1
    # no expectation (a first run at small): as before, memory does not hold anything back
    _, _, peak = _scheduled(names, jobs=2, seconds=seconds, peaks={}, budget_gb=1.0)
    assert peak == 2
    # a notebook expected to need more than the budget still runs (alone), it is not skipped
    events, _, peak = _scheduled(["00", "02"], jobs=2, peaks={"00": 1.0, "02": 30.0}, budget_gb=22.0)
    assert ("end", "02") in events and peak == 1


def test_expected_peaks_come_from_the_last_run_of_the_same_profile():
    from musicrecall.report.usage import TYPICAL_PEAK_GB, expected_peaks

    previous = {"03_seq": {"parameters": {"profile": "medium"}, "peak_gb": 9.5},
                "04_mind": {"parameters": {"profile": "small"}, "peak_gb": 2.0}}
    got = expected_peaks("medium", previous, ["00", "03", "09"])  # 09: no such notebook, so never measured
    assert got["03"] == 9.5  # the recorded run replaces the measured figure
    assert got["00"] == TYPICAL_PEAK_GB["medium"]["00"]
    largest = max({**TYPICAL_PEAK_GB["medium"], "03": 9.5}.values())  # of what is known, the recorded run included
    assert got["09"] == largest  # unknown at medium: as much as the largest known
    assert expected_peaks("small", previous, ["03", "04"]) == {"03": 2.0, "04": 2.0}  # 04's run at small
    assert expected_peaks("tiny", previous, ["03"]) == {}  # nothing known at tiny: no expectation


def test_a_run_names_the_notebooks_expected_to_exceed_the_memory(capsys, monkeypatch):
    from pathlib import Path

    from musicrecall.report import runner, usage

    monkeypatch.setattr(usage, "available_gb", lambda: 20.0)
    previous = {"02_kg": {"parameters": {"profile": "medium"}, "peak_gb": 24.3}}
    peaks, budget = runner._memory_plan("medium", previous, [Path("02_kg.ipynb"), Path("05_audio.ipynb")])
    out = capsys.readouterr().out
    assert budget == 20.0 and peaks["02"] == 24.3
    # 05 has no known peak at medium: it is scheduled as if it needed the largest, but not named
    assert "02_kg is expected to need 24.3 GB" in out and "05_audio" not in out
    _, _ = runner._memory_plan("small", {}, [Path("02_kg.ipynb")])
    assert "warning" not in capsys.readouterr().out


def test_the_kernel_watch_sees_a_process_tree_memory_and_cpu(tmp_path):
    import subprocess
    import sys
    import time

    import psutil

    from musicrecall.report.usage import KernelWatch

    # a parent holding ~200 MB starts a child holding ~300 MB; the child starts a grandchild that burns 0.6 s of
    # CPU and exits (reaped by the child, not by the watched root), burns 1.0 s itself, marks that it is done and
    # waits. The watch reads the tree then, while the child lives: once the root has reaped the child, the root's
    # own children_* times hold the whole tree and the former count (the root's only) would read it right too.
    def burn(seconds):
        return f"t = time.process_time()\nwhile time.process_time() - t < {seconds}: pass\n"

    done = tmp_path / "burnt"
    grandchild = f"import time\n{burn(0.6)}"
    child = (f"import pathlib, subprocess, sys, time\nb = bytearray(300 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"
             f"subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)\n{burn(1.0)}"
             f"pathlib.Path({str(done)!r}).touch()\ntime.sleep(60)")
    parent = (f"import subprocess, sys; a = bytearray(200 * 2**20); a[::4096] = b'x' * len(a[::4096]); "
              f"subprocess.run([sys.executable, '-c', {child!r}], check=True)")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    watch = KernelWatch(interval=0.1)
    watch.attach(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done.exists(), "the child never finished burning"
        watch.sample()  # the tree as it is now (the thread's samples may lag on a loaded machine)
        watch.stop()
    finally:
        for p in [*psutil.Process(proc.pid).children(recursive=True), proc]:
            p.kill()
        proc.wait(timeout=60)
    assert watch.peak_gb >= 0.45, watch.peak_gb  # both processes at once: 200 + 300 MB (bytearray pages are touched)
    # the grandchild's 0.6 s stays counted after it exits (in the child's children_* times) and the child's 1.0 s
    # adds to it (plus ~0.5 s of start-up and page touching): dropping the exited grandchild reads ~1.3-1.5 s
    assert watch.cpu_seconds >= 1.85, watch.cpu_seconds


def _one_cell_notebook(folder, name, source):
    """``folder/name.ipynb``: a parameters cell (profile) and one code cell ``source``."""
    folder.mkdir(exist_ok=True)
    params = nbformat.v4.new_code_cell('profile = "small"')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{name}.ipynb")
    return folder / f"{name}.ipynb"


def test_a_kernel_killed_for_memory_leaves_its_peak_in_the_record(tmp_path):
    """The case the peak is for: a kernel the OOM killer takes (here it kills itself after holding ~300 MB)
    fails the run, and the failed run still records what the kernel reached."""
    from musicrecall.report.runner import run_notebook

    path = _one_cell_notebook(tmp_path / "nbs", "00_k", "import os, signal, time\nb = bytearray(300 * 2**20)\n"
                              "b[::4096] = b'x' * len(b[::4096])\ntime.sleep(2.5)\nos.kill(os.getpid(), signal.SIGKILL)")
    run = run_notebook(path, {"profile": "tiny"}, tmp_path / "r", env={"MUSICRECALL_THREADS": "1"})
    assert run.status == "failed" and "Dead" in run.error, run.error
    assert run.peak_gb >= 0.3, run.peak_gb  # 300 MB held for 2.5 s: seen by the once-a-second samples


def test_a_kernel_gets_the_thread_budget_the_runner_gives_it(tmp_path):
    from musicrecall.report.runner import run_notebook

    path = _one_cell_notebook(tmp_path / "nbs", "00_t", "from musicrecall.config import n_threads\n"
                              "from musicrecall.report import metric, record_metrics\n"
                              "record_metrics('00_t', [metric('threads', n_threads(), unit='threads')], profile=profile)")
    got, before = {}, os.environ.get("MUSICRECALL_THREADS")
    for threads in ("1", "3"):
        run = run_notebook(path, {"profile": "tiny"}, tmp_path / f"r{threads}",
                           env={"MUSICRECALL_THREADS": threads})
        assert run.status == "ok", run.error
        assert run.peak_gb > 0.03 and run.cpu_seconds > 0.1, (run.peak_gb, run.cpu_seconds)  # the kernel was watched
        got[threads] = run.records[0]["metrics"][0]["value"]
    assert got == {"1": 1, "3": 3}
    assert os.environ.get("MUSICRECALL_THREADS") == before  # the runner's own environment is untouched


def test_a_full_run_records_its_wall_time_and_lanes(tmp_path):
    from musicrecall.report.runner import run_all

    nbs = _fake_notebooks(tmp_path / "nbs", names=("00_a", "01_b", "02_c", "03_d"))
    reports = tmp_path / "reports"
    runs = run_all("tiny", reports_dir=reports, notebooks_dir=nbs, jobs=2)
    assert [r.status for r in runs] == ["ok"] * 4, [r.error for r in runs]
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["run"]["jobs"] == 2 and metrics["run"]["wall_seconds"] > 0
    assert all(run["peak_gb"] > 0 and run["cpu_seconds"] > 0 for run in metrics["notebooks"].values())
    page = (reports / "index.html").read_text()
    assert "min wall" in page and "CPU s," in page  # each notebook's CPU time and peak memory beside its runtime
    run_all("tiny", only="02", reports_dir=reports, notebooks_dir=nbs)  # a partial rerun: no whole-run wall time
    assert "run" not in json.loads((reports / "metrics.json").read_text())
