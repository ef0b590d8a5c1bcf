"""Import a real export into a dataset folder the notebooks read (``-p dataset <folder>``).

    python -m musicrecall.io spotify-extended ~/my_spotify_data data/raw/me
    python -m musicrecall.io spotify-basic    ~/MyData             data/raw/me_basic
    python -m musicrecall.io lastfm-1k        userid-timestamp-artid-artname-traid-traname.tsv data/raw/lfm

Prints the per-file accounting (rows read = events + rejected) and where the tables went.
"""

from __future__ import annotations

import argparse
import sys

import polars as pl

from musicrecall.io import import_lastfm_1k, import_spotify_basic, import_spotify_extended, save_dataset

IMPORTERS = {"spotify-extended": import_spotify_extended, "spotify-basic": import_spotify_basic,
             "lastfm-1k": import_lastfm_1k}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicrecall.io", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=sorted(IMPORTERS))
    parser.add_argument("source", help="export file or folder")
    parser.add_argument("out", help="dataset folder to write (parquet tables)")
    args = parser.parse_args(argv)
    result = IMPORTERS[args.format](args.source)
    with pl.Config(tbl_rows=50, tbl_cols=20):
        print(result.accounting())
    folder = save_dataset(result, args.out)
    print(f"{result.events.height:,} events, {result.items.height:,} songs, {result.users.height:,} users "
          f"-> {folder}\nrun: make nb NB=01 ARGS=\"-p dataset {args.out}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
