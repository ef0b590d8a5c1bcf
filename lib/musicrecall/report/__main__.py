"""Command line: ``python -m musicrecall.report run [--profile P] [--dataset PATH] [--only NN,NN ...] [--jobs N] [-p name value ...]``.

``--dataset`` (same as ``-p dataset PATH``) runs on imported data; its reports go to
``reports/datasets/<name>/`` and it runs notebooks 00-04, 06 and 08 unless ``--only`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from musicrecall.report.runner import (
    REPORTS_DIR,
    DatasetNotFoundError,
    UnknownParameterError,
    build_indexes,
    parse_only,
    run_all,
    run_reports_dir,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicrecall.report")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks with papermill and export reports")
    run.add_argument("--profile", default="small", choices=["tiny", "small", "medium"])
    run.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 01 03 or 01,02,03")
    run.add_argument("--dataset", help="a folder of imported data (default: the simulated world)")
    run.add_argument("--jobs", type=int, help="notebooks run side by side (default: MUSICRECALL_JOBS or one per "
                     "core, at most 2); each gets its share of the threads")
    # papermill-style parameters; values are parsed as YAML (7 -> int, 0.5 -> float, a/b -> str)
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    sub.add_parser("index", help="rebuild reports/index.html from reports/metrics.json")
    args = parser.parse_args(argv)
    if args.command == "index":
        build_indexes(REPORTS_DIR)
        return 0
    extra = {name: yaml.safe_load(value) for name, value in args.parameter}
    if args.dataset:
        extra["dataset"] = args.dataset
    # Notebooks run with notebooks/ as their working directory: make a dataset path absolute from here.
    if isinstance(extra.get("dataset"), str) and extra["dataset"] != "world":
        extra["dataset"] = str(Path(extra["dataset"]).expanduser().resolve())
    try:
        runs = run_all(args.profile, only=parse_only(args.only), extra=extra, jobs=args.jobs)
    except (UnknownParameterError, DatasetNotFoundError) as err:  # a typo must not run on the defaults
        print(f"[musicrecall] {err}", file=sys.stderr)
        return 2
    failed = [r.name for r in runs if r.status != "ok"]
    page = run_reports_dir(extra.get("dataset", "world"), REPORTS_DIR) / "index.html"
    print(f"[musicrecall] {len(runs) - len(failed)} ok, {len(failed)} failed; open {page} (all runs: "
          f"{REPORTS_DIR / 'index.html'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
