"""Paths and the one place where thread counts are set (torch, BLAS, faiss, lightgbm).

Call :func:`set_threads` once at the top of a notebook or script. Models that take an ``n_jobs`` /
``num_threads`` argument (lightgbm, gensim) read :func:`n_threads` instead of hard-coding a number.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("MUSICRECALL_DATA", REPO_ROOT / "data"))
REPORTS_DIR = Path(os.environ.get("MUSICRECALL_REPORTS", REPO_ROOT / "reports"))
SHARED_DIR = Path(os.environ.get("MUSICRECALL_SHARED", REPO_ROOT.parent / "shared"))

_THREADS: int | None = None


def n_threads() -> int:
    """The thread count every library should use (``MUSICRECALL_THREADS``, default: all cores)."""
    if _THREADS is not None:
        return _THREADS
    return int(os.environ.get("MUSICRECALL_THREADS", os.cpu_count() or 1))


def set_threads(n: int | None = None) -> int:
    """Set the thread count of torch, BLAS/OpenMP (via threadpoolctl) and faiss; return it.

    ``n=None`` takes ``MUSICRECALL_THREADS`` or the number of cores. lightgbm and gensim have no
    global switch, so callers pass ``n_threads()`` to them.
    """
    global _THREADS
    n = int(n or os.environ.get("MUSICRECALL_THREADS", os.cpu_count() or 1))
    _THREADS = n
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ.setdefault(var, str(n))
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # torch is a dependency, but config must not need it to import
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


def data_path(*parts: str) -> Path:
    """A path under ``data/`` whose parent folder exists."""
    path = DATA_DIR.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def notebook_setup(n: int | None = None, table_rows: int = 40) -> int:
    """Everything a notebook's first code cell needs: thread counts, and polars tables shown whole."""
    import polars as pl

    pl.Config.set_tbl_rows(table_rows)
    pl.Config.set_tbl_cols(16)
    pl.Config.set_fmt_str_lengths(60)
    return set_threads(n)
