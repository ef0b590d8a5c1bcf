"""Command lines a user types: importing an export, and `make nb`'s parameter handling."""

from __future__ import annotations

import os

from musicrecall.config import SHARED_DIR
from musicrecall.io import load_dataset_dir


def test_import_cli_writes_a_dataset_folder(tmp_path, capsys):
    from musicrecall.io.__main__ import main

    assert main(["spotify-basic", str(SHARED_DIR / "data" / "spotify" / "basic"), str(tmp_path / "me")]) == 0
    tables = load_dataset_dir(tmp_path / "me")
    assert tables["events"].height == 9990 + 10000 - 21  # 21 "Unknown Track" rows are rejected, and counted
    assert "19,969 events" in capsys.readouterr().out


def test_report_cli_parses_parameters_and_makes_dataset_paths_absolute(monkeypatch, tmp_path):
    import musicrecall.report.__main__ as cli

    seen = {}

    def fake_run_all(profile, only=None, extra=None, jobs=None):
        seen.update(profile=profile, only=only, extra=extra, jobs=jobs)
        return []

    monkeypatch.setattr(cli, "run_all", fake_run_all)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--profile", "tiny", "--only", "01", "-p", "seed", "7", "-p", "dataset", "data/raw/me"]) == 0
    assert seen["profile"] == "tiny" and seen["only"] == ["01"] and seen["jobs"] is None
    assert seen["extra"]["seed"] == 7
    assert seen["extra"]["dataset"] == os.path.join(str(tmp_path), "data", "raw", "me")
