"""Paths and the one place where thread counts are set (torch, BLAS, faiss, lightgbm, gensim, numba).

Call :func:`set_threads` once at the top of a notebook or script (:func:`notebook_setup` does). Models
that take an ``n_jobs`` / ``num_threads`` / ``workers`` argument (lightgbm, gensim) read
:func:`n_threads` instead of hard-coding a number.

**Waiting policy.** torch, faiss and lightgbm each bring their own copy of the GNU OpenMP runtime, whose
idle threads busy-wait (spin) after every parallel region by default. On a shared, loaded machine the
spinning threads of one pool take the cores the working threads of another pool (or of the same pool at
its next barrier) are waiting for: a MIND training step on a 2-core machine with load ~10 took 3.1 s
instead of 0.33 s with passive waiting (``bench/bench_load.py kernels``). OpenMP reads its policy from
the environment once, when the runtime is loaded, so importing this module (which ``import musicrecall``
does, before any of torch, faiss or lightgbm is loaded by the package) sets ``OMP_WAIT_POLICY=PASSIVE``
(and ``KMP_BLOCKTIME=0`` for Intel's runtime) unless the caller set them. ``MUSICRECALL_WAIT_POLICY=spin``
keeps the runtimes' default (for benchmarks of the old behaviour).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

# Libraries whose OpenMP runtime reads the waiting policy when it is loaded (too late after import).
_OPENMP_MODULES = ("torch", "faiss", "lightgbm", "sklearn")


def _passive_waiting() -> bool:
    """Set the OpenMP waiting policy to passive in the environment (before the runtimes load)."""
    if os.environ.get("MUSICRECALL_WAIT_POLICY", "passive").lower() == "spin":
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    return True


_ENV_BEFORE = frozenset(os.environ)
_PASSIVE = _passive_waiting()
_LOADED_BEFORE = tuple(m for m in _OPENMP_MODULES if m in sys.modules)

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
    """Set the thread count of torch (intra- and inter-op), BLAS/OpenMP (via threadpoolctl) and faiss;
    return it.

    ``n=None`` takes ``MUSICRECALL_THREADS`` or the number of cores. lightgbm and gensim have no
    global switch, so callers pass ``n_threads()`` to them; numba reads ``NUMBA_NUM_THREADS`` (set
    here) when it is first imported.
    """
    global _THREADS
    n = int(n or os.environ.get("MUSICRECALL_THREADS", os.cpu_count() or 1))
    _THREADS = n
    # read when each library loads: numba (librosa) and OpenBLAS/MKL started later get the same budget
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                "POLARS_MAX_THREADS"):
        os.environ.setdefault(var, str(n))
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    try:
        import torch

        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # allowed once, before any inter-op work
            torch.set_num_interop_threads(n)
    except ImportError:  # torch is a dependency, but config must not need it to import
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Run a block with every library's thread count set to ``n`` (:func:`set_threads`), then restore it.

    For one level of parallelism: code that runs its own pool of Python workers (or talks to another
    process in a ping-pong) runs the libraries inside single-threaded, so that a worker never waits on
    another thread pool's helper threads; on a loaded machine such nested pools serialise behind the one
    helper thread that gets a core (``musicrecall.audio.simulated.world_embeddings``).
    """
    before = n_threads()
    set_threads(n)
    try:
        yield n
    finally:
        set_threads(before)


def data_path(*parts: str) -> Path:
    """A path under ``data/`` whose parent folder exists."""
    path = DATA_DIR.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def notebook_setup(n: int | None = None, table_rows: int = 40) -> int:
    """Everything a notebook's first code cell needs: thread counts, and polars tables shown whole."""
    import polars as pl

    if _PASSIVE and _LOADED_BEFORE and "OMP_WAIT_POLICY" not in _ENV_BEFORE:
        warnings.warn(f"{', '.join(_LOADED_BEFORE)} was imported before musicrecall: its OpenMP threads "
                      "busy-wait, which slows everything down on a loaded machine; import musicrecall first "
                      "or set OMP_WAIT_POLICY=PASSIVE", RuntimeWarning, stacklevel=2)
    pl.Config.set_tbl_rows(table_rows)
    pl.Config.set_tbl_cols(16)
    pl.Config.set_fmt_str_lengths(60)
    return set_threads(n)
