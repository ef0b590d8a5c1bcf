"""What a notebook's kernel used (peak memory, CPU time) and how much memory the runner may hand out.

:class:`KernelWatch` samples a kernel and every process it started (a world built in a child process,
a training process of ``musicrecall.ddp_train``) once a second: the peak of their summed resident memory
and their CPU time. The runner records both per notebook in ``metrics.json``, and the next run of the same
profile reads them back: two notebooks start side by side only when their recorded peaks fit in the
memory the machine has (:func:`fits_beside`), and a notebook whose last peak exceeds that memory is named
before it starts (at profile ``medium`` one kernel can need more than 24 GB).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import psutil

GB = 2**30

# Peak memory (GB) of each notebook's kernel and its child processes, by profile, for a run without a recorded
# one of the same profile in its report folder (a recorded run replaces them). medium: measured notebook by
# notebook on a 24 GB machine (README, "The medium profile"); a notebook killed for memory is entered at what
# it reached (a lower bound). A notebook without an entry is expected to need as much as the profile's
# largest entry (:func:`expected_peaks`); a profile without entries (tiny, small) has no expectation until
# its first recorded run.
TYPICAL_PEAK_GB: dict[str, dict[str, float]] = {
    "medium": {"00": 11.4, "01": 15.4, "02": 22.6, "03": 23.1, "04": 20.3, "05": 0.7, "06": 17.9,
               "07": 21.4},
}


def available_gb() -> float:
    """Memory the machine can still hand out (Linux's MemAvailable), in GB."""
    return psutil.virtual_memory().available / GB


class KernelWatch:
    """Sample process ``pid`` and its descendants every ``interval`` seconds until :meth:`stop`.

    ``peak_gb``: the largest sum of their resident set sizes seen (pages shared between them count in each);
    ``cpu_seconds``: user + system time of the tree, including children that already exited, as of the last
    sample (so up to ``interval`` short of the end)."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.peak_gb = 0.0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._root: psutil.Process | None = None

    def attach(self, pid: int) -> None:
        """Start sampling ``pid`` (a kernel just started)."""
        try:
            self._root = psutil.Process(pid)
        except psutil.Error:
            return
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"kernel-watch-{pid}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        """One sample of the tree (a process that exits between listing and reading is skipped). The runner
        also takes one just before it shuts the kernel down, so a short notebook is measured at its end."""
        root = self._root
        if root is None:
            return
        rss, cpu = 0, 0.0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    t = proc.cpu_times()
                    # a process's exited, reaped children are in its children_* times, a live one is listed
                    # itself: each process counted once, a grandchild that exited included
                    cpu += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
        self.peak_gb = max(self.peak_gb, rss / GB)
        self.cpu_seconds = max(self.cpu_seconds, cpu)


def known_peaks(profile: str, previous: Mapping[str, Mapping]) -> dict[str, float]:
    """The peaks (GB, by notebook prefix) known at ``profile``: the last recorded run of each notebook at that
    profile (``previous``: the ``notebooks`` entries of ``metrics.json``), else :data:`TYPICAL_PEAK_GB`."""
    peaks = dict(TYPICAL_PEAK_GB.get(profile, {}))
    for name, run in previous.items():
        if (run.get("parameters") or {}).get("profile") == profile and run.get("peak_gb"):
            peaks[name[:2]] = float(run["peak_gb"])
    return peaks


def expected_peaks(profile: str, previous: Mapping[str, Mapping], prefixes: list[str]) -> dict[str, float]:
    """The expected peak (GB) of each notebook prefix in ``prefixes``: its known peak (:func:`known_peaks`),
    else the largest known one (unknown is not small); none at all when nothing is known at ``profile``."""
    peaks = known_peaks(profile, previous)
    if not peaks:
        return {}
    largest = max(peaks.values())
    return {p: peaks.get(p, largest) for p in prefixes}


def fits_beside(candidate: str, running: list[str], peaks: Mapping[str, float], budget_gb: float) -> bool:
    """Whether notebook ``candidate`` may start while ``running`` run: their expected peaks fit in
    ``budget_gb``. Alone a notebook always starts (there is nothing to wait for); a notebook without an
    expected peak counts as 0."""
    if not running:
        return True
    return sum(peaks.get(p, 0.0) for p in (*running, candidate)) <= budget_gb
