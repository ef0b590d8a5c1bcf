"""Importers for real listening logs, producing the canonical tables of :mod:`musicrecall.schema`.

Every importer returns (or reads into) canonical frames and accounts for every input row:

* :func:`import_spotify_extended` -- Spotify "Extended streaming history" (``Streaming_History_Audio_*.json``)
* :func:`import_spotify_basic` -- Spotify account data (``StreamingHistory*.json``)
* :func:`import_lastfm_1k` -- the Last.fm-1K TSV
* :func:`import_sequences` -- ``user,song:song:...`` lines (order only: ordinal time)
* :func:`import_user_item` -- ``user item`` lines in listening order (SASRec / RecBole ``.inter``)
* :func:`import_catalog` -- a song catalogue (artist, album, genre, ...) -> items and KG triples
* :func:`import_log` -- a generic CSV / TSV / Parquet / JSON play log (any id form, optional ts)
* :func:`import_events`, :func:`import_items`, :func:`import_triples`, :func:`import_users` -- CSV /
  Parquet files already in canonical column names
* :func:`save_dataset` / :func:`load_dataset_dir` -- a folder of parquet tables (import once, then pass
  the folder as the notebooks' ``dataset`` parameter)

Typical use::

    from musicrecall.io import import_spotify_extended, save_dataset
    res = import_spotify_extended("~/Downloads/my_spotify_data/Spotify Extended Streaming History")
    print(res.accounting())           # rows_read == events + rejected, per file
    save_dataset(res, "data/processed/my_spotify")

File-level problems raise :class:`InputError` (a ``ValueError``) naming the file and record / row.
"""

from musicrecall.io.catalog import Catalog, import_catalog
from musicrecall.io.errors import InputError
from musicrecall.io.generic import (
    ImportResult,
    import_events,
    import_items,
    import_triples,
    import_users,
    load_dataset_dir,
    load_meta,
    sample_users,
    save_dataset,
)
from musicrecall.io.lastfm import import_lastfm_1k
from musicrecall.io.log import import_log
from musicrecall.io.sequences import ORDINAL_EPOCH, import_sequences, import_user_item
from musicrecall.io.spotify import import_spotify_basic, import_spotify_extended
from musicrecall.io.validate import validate_tables

__all__ = [
    "ORDINAL_EPOCH",
    "Catalog",
    "ImportResult",
    "InputError",
    "import_catalog",
    "import_events",
    "import_items",
    "import_lastfm_1k",
    "import_log",
    "import_sequences",
    "import_spotify_basic",
    "import_spotify_extended",
    "import_triples",
    "import_user_item",
    "import_users",
    "load_dataset_dir",
    "load_meta",
    "sample_users",
    "save_dataset",
    "validate_tables",
]
