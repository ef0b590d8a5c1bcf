"""Import a real export into a dataset folder the notebooks read (``-p dataset <folder>``).

    python -m musicrecall.io spotify-extended ~/my_spotify_data data/raw/me
    python -m musicrecall.io spotify-basic    ~/MyData             data/raw/me_basic
    python -m musicrecall.io lastfm-1k        userid-timestamp-artid-artname-traid-traname.tsv data/raw/lfm
    python -m musicrecall.io sequences  ../shared/data/30music/sequences.txt \\
        --catalog ../shared/data/30music/songs.csv data/raw/30music
    python -m musicrecall.io user-item  ml.inter --catalog ml.item data/raw/ml     # SASRec / RecBole
    python -m musicrecall.io log        plays.csv --catalog songs.csv data/raw/plays  # CSV/TSV/Parquet/JSON

Options: ``--on-error raise|quarantine`` (default raise: the first bad record stops the import with its
file, row and reason; quarantine: bad records go to rejected.parquet with a reason and the rest is
imported), ``--catalog`` (songs with artist/album/genre/... columns: items and KG triples), ``--ts-unit``
(s/ms/us/ns for numeric timestamps; default detected), ``--extra-columns detect|ignore`` (user-item
without a header: a third field is the clock when it is numeric, never decreasing per user and epoch
times, else an error; ``ignore`` imports user and item only), ``--overwrite`` (replace a dataset already in
the output folder; without it that is an error), ``--sample-users N [--seed S]`` (a random subset
of N users with their whole sequences, ids renumbered: for quick runs and CI).

Prints the per-file accounting (rows read = events + rejected) and where the tables went.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import polars as pl

from musicrecall.io import (
    InputError,
    import_lastfm_1k,
    import_log,
    import_sequences,
    import_spotify_basic,
    import_spotify_extended,
    import_user_item,
    sample_users,
    save_dataset,
)
from musicrecall.io.generic import existing_dataset

# format -> (importer, accepts a catalogue, accepts ts_unit)
IMPORTERS: dict[str, tuple[Callable[..., Any], bool, bool]] = {
    "spotify-extended": (import_spotify_extended, False, False),
    "spotify-basic": (import_spotify_basic, False, False),
    "lastfm-1k": (import_lastfm_1k, False, False),
    "sequences": (import_sequences, True, False),
    "user-item": (import_user_item, True, True),
    "log": (import_log, True, True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicrecall.io", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=sorted(IMPORTERS))
    parser.add_argument("source", help="export file or folder")
    parser.add_argument("out", help="dataset folder to write (parquet tables and meta.json)")
    parser.add_argument("--on-error", choices=("raise", "quarantine"), default="raise",
                        help="a bad record stops the import (raise) or is quarantined with its reason")
    parser.add_argument("--catalog", help="catalogue file (sequences, user-item, log): song + any columns")
    parser.add_argument("--ts-unit", choices=("s", "ms", "us", "ns"), help="unit of numeric timestamps")
    parser.add_argument("--extra-columns", choices=("detect", "ignore"),
                        help="user-item without a header: a third field is used as the clock when it is one and "
                             "is an error otherwise (detect, default), or fields after user and item are ignored")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    parser.add_argument("--sample-users", type=int, metavar="N",
                        help="keep N users drawn at random (whole sequences; for quick runs and CI)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample-users (default 0)")
    args = parser.parse_args(argv)
    importer, takes_catalog, takes_unit = IMPORTERS[args.format]
    if args.catalog and not takes_catalog:
        parser.error(f"--catalog is not used by {args.format}")
    if args.ts_unit and not takes_unit:
        parser.error(f"--ts-unit is not used by {args.format}")
    if args.extra_columns and args.format != "user-item":
        parser.error(f"--extra-columns is not used by {args.format}")
    try:
        # checked before the (possibly long) import: do not make the user wait for an error
        from pathlib import Path

        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise InputError(out, None, "exists and is a file: give a folder for the dataset")
        if existing_dataset(out) and not args.overwrite:
            raise InputError(out, None, f"already holds a dataset ({', '.join(existing_dataset(out))}); "
                             "choose another folder or pass --overwrite")
        kwargs: dict[str, Any] = {"on_error": args.on_error}
        if takes_catalog and args.catalog:
            kwargs["catalog"] = args.catalog
        if takes_unit and args.ts_unit:
            kwargs["ts_unit"] = args.ts_unit
        if args.extra_columns:
            kwargs["extra_columns"] = args.extra_columns
        result = importer(args.source, **kwargs)
        with pl.Config(tbl_rows=50, tbl_cols=20, fmt_str_lengths=80):
            print(result.accounting())
        if args.sample_users:
            tables = sample_users(result, args.sample_users, args.seed)
            folder = save_dataset(tables, out, overwrite=args.overwrite)
            sub = tables["meta"]["subset"]
            print(f"subset: {sub['users']:,} of {sub['of_users']:,} users (seed {args.seed}), {sub['events']:,} of "
                  f"{sub['of_events']:,} events, {sub['songs']:,} of {sub['of_songs']:,} songs")
        else:
            folder = save_dataset(result, out, overwrite=args.overwrite)
    except (InputError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    time_kind = result.meta.get("time_kind", "clock")
    print(f"{result.events.height:,} events, {result.items.height:,} songs, {result.users.height:,} users, "
          f"{result.rejected.height:,} rejected (time: {time_kind}"
          f"{', order only, no clock' if time_kind == 'ordinal' else ''}) -> {folder}\n"
          f"run: make run DATASET={args.out}   (one notebook: make nb NB=01 DATASET={args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
