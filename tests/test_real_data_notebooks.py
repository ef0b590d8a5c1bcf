"""The notebooks' ``dataset`` parameter: the workbook runs on a real imported Spotify export."""

from __future__ import annotations

import json

import pytest

from musicrecall.config import SHARED_DIR
from musicrecall.io import import_spotify_extended, save_dataset
from musicrecall.report.runner import run_all, run_reports_dir

EXTENDED = SHARED_DIR / "data" / "spotify" / "extended"


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory):
    # No skip: the shared exports are part of the test contract (CI has them beside the repo).
    assert EXTENDED.is_dir(), f"shared Spotify exports missing at {EXTENDED}"
    folder = tmp_path_factory.mktemp("spotify")
    save_dataset(import_spotify_extended(EXTENDED), folder)
    return folder


def test_cleaning_notebook_runs_on_a_real_export(real_dataset, tmp_path):
    runs = run_all("tiny", only=["00", "01"], extra={"dataset": str(real_dataset), "test_days": 60, "valid_days": 30},
                   reports_dir=tmp_path)
    assert {r.name: r.status for r in runs} == {"00_simulated_world": "ok", "01_log_cleaning": "ok"}, \
        [r.error for r in runs]
    metrics = json.loads((run_reports_dir(str(real_dataset), tmp_path) / "metrics.json").read_text())  # its own folder
    values = {m["name"]: m["value"] for rec in metrics["notebooks"]["01_log_cleaning"]["records"] for m in rec["metrics"]}
    # 1538 + 35 + 1470 records in the two users' files; podcasts are rejected by the importer, not here.
    assert values["rows_in"] == values["rows_kept"] + values["rows_removed"]
    assert 0 < values["rows_kept"] <= 3043
    assert not any(k.startswith("noise_removal") for k in values), "real data has no ground-truth noise"
