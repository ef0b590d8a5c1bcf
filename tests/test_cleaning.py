"""Each cleaning rule on hand-built rows, and the accounting identity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from musicrecall.cleaning import CleaningConfig, clean_log, noise_detection_report, sessionise
from musicrecall.schema import conform

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 1, tzinfo=UTC)
ITEMS = conform(pl.DataFrame({"song_id": [0, 1, 2, 3], "duration_ms": [200_000] * 4}), "items")


def make_events(rows: list[dict]) -> pl.DataFrame:
    base = {"user_id": 1, "song_id": 0, "play_ms": 200_000, "reason_start": "clickrow", "reason_end": "trackdone"}
    full = [{**base, **r, "source_file": "t.json", "source_row": i} for i, r in enumerate(rows)]
    return conform(pl.DataFrame(full), "events")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def reasons(result) -> dict[int, str]:
    return dict(result.removed.select("source_row", "reason").iter_rows())


def test_each_invalid_rule_names_its_reason_and_row():
    ev = make_events([
        {"ts": at(0)},                                   # 0 kept
        {"ts": at(4), "user_id": None},                  # 1 missing_user
        {"ts": None},                                    # 2 unparseable_ts
        {"ts": NOW + timedelta(days=400)},               # 3 future_ts
        {"ts": at(8), "play_ms": -5},                    # 4 negative_play_ms
        {"ts": at(12), "play_ms": 900_000},              # 5 play_beyond_length
        {"ts": at(16), "song_id": 99},                   # 6 unknown_song
        {"ts": at(20), "song_id": None},                 # 7 unknown_song
    ])
    res = clean_log(ev, ITEMS, NOW)
    assert reasons(res) == {1: "missing_user", 2: "unparseable_ts", 3: "future_ts", 4: "negative_play_ms",
                            5: "play_beyond_length", 6: "unknown_song", 7: "unknown_song"}
    assert res.events["source_row"].to_list() == [0]
    assert set(res.removed["stage"]) == {"invalid"}
    acc = dict(res.accounting.select("reason", "rows").iter_rows())
    assert acc["rows_in"] == 8 and acc["kept"] == 1 and acc["unknown_song"] == 2
    assert acc["kept"] + sum(v for k, v in acc.items() if k not in ("rows_in", "kept")) == acc["rows_in"]


def test_duplicate_keeps_first_in_source_order_and_accidental_is_removed():
    ev = make_events([{"ts": at(0)}, {"ts": at(0)}, {"ts": at(5), "play_ms": 1_200}, {"ts": at(10), "song_id": 2}])
    res = clean_log(ev, ITEMS, NOW)
    assert reasons(res) == {1: "duplicate", 2: "accidental"}
    assert res.events["source_row"].to_list() == [0, 3]


def test_bot_is_caught_by_cadence_and_normal_user_is_not():
    bot = [{"user_id": 7, "ts": at(i * 0.55), "play_ms": 30_500, "song_id": i % 4} for i in range(250)]
    human = [{"user_id": 8, "ts": at(i * 3.5 + (i % 5) * 7 + (i // 20) * 600), "song_id": i % 4} for i in range(250)]
    res = clean_log(make_events(bot + human), ITEMS, NOW)
    removed = res.removed
    assert removed.filter(pl.col("reason") == "bot")["user_id"].unique().to_list() == [7]
    assert res.events["user_id"].unique().to_list() == [8]


def test_trailing_autoplay_run_is_removed_but_isolated_autoplay_is_kept():
    rows = [{"ts": at(0)}, {"ts": at(4), "reason_start": "autoplay"}, {"ts": at(8)}]
    rows += [{"ts": at(12 + 4 * i), "reason_start": "autoplay", "song_id": 3} for i in range(4)]
    rows += [{"ts": at(600), "reason_start": "autoplay"}, {"ts": at(604), "reason_start": "autoplay"}]  # run of 2
    res = clean_log(make_events(rows), ITEMS, NOW, CleaningConfig(autoplay_min_run=3))
    assert sorted(k for k, v in reasons(res).items() if v == "autoplay") == [3, 4, 5, 6]
    assert res.events["source_row"].to_list() == [0, 1, 2, 7, 8]
    assert res.events["session_id"].n_unique() == 2


def test_sessions_split_on_gap_after_play_end():
    ev = make_events([{"ts": at(0)}, {"ts": at(3.5)}, {"ts": at(3.5 + 3.4 + 29)}, {"ts": at(200)}])
    s = sessionise(ev, 30)
    assert s["session_id"].to_list() == [0, 0, 0, 1]
    assert s["pos_in_session"].to_list() == [0, 1, 2, 0]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"play_ms": 170_000, "reason_end": "endplay"}, True),   # 85% of the song
        ({"play_ms": 60_000, "reason_end": "fwdbtn"}, False),
        ({"play_ms": 60_000, "reason_end": "trackdone"}, True),  # reached the end
    ],
)
def test_full_play_label(row, expected):
    res = clean_log(make_events([{"ts": at(0), **row}]), ITEMS, NOW)
    assert res.events["full_play"].to_list() == [expected]
    assert res.events["skip"].to_list() == [not expected]


def test_full_play_without_song_length_uses_skip_flag_then_fallback():
    items = conform(pl.DataFrame({"song_id": [0]}), "items")  # no durations known
    ev = make_events([
        {"ts": at(0), "reason_end": None, "skipped": True, "play_ms": 100_000},
        {"ts": at(10), "reason_end": None, "skipped": False, "play_ms": 100_000},
        {"ts": at(20), "reason_end": None, "play_ms": 10_000},
        {"ts": at(30), "reason_end": None, "play_ms": None},
    ])
    res = clean_log(ev, items, NOW)
    assert res.events.sort("source_row")["full_play"].to_list() == [False, True, False, True]


def test_strong_labels_from_actions():
    ev = make_events([{"ts": at(0), "action": "collect"}, {"ts": at(5), "action": "block", "play_ms": 20_000}])
    out = clean_log(ev, ITEMS, NOW).events.sort("source_row")
    assert out["strong_pos"].to_list() == [True, False]
    assert out["strong_neg"].to_list() == [False, True]


def test_noise_report_scores_rules_against_truth():
    ev = make_events([{"ts": at(0)}, {"ts": at(0)}, {"ts": at(5), "play_ms": 1_000}, {"ts": at(9)}])
    res = clean_log(ev, ITEMS, NOW)
    truth = pl.DataFrame({"source_row": [0, 1, 2, 3], "noise": [None, "duplicate", None, "accidental"]})
    rep = {r["rule"]: r for r in noise_detection_report(res.removed, res.events, truth).iter_rows(named=True)}
    assert rep["duplicate"]["precision"] == 1.0 and rep["duplicate"]["recall"] == 1.0
    assert rep["accidental"]["precision"] == 0.0 and rep["accidental"]["recall"] == 0.0
    assert rep["all"]["removed"] == 2 and rep["all"]["correct"] == 1


# Installed as sitecustomize.py on the PYTHONPATH of the test's processes, so every Python process they start
# (the spawned builders included) counts its builds and names its pid.
_BUILD_PROBE = """
import os, time
MODE = os.environ.get("PROBE_MODE", "count")
import musicrecall.data as data
import musicrecall.world as world
real_gen, real_clean = world.generate_world, data.clean_log
def slow_gen(*a, **k):  # a wide window: both processes miss the cache together
    print("GENERATED", os.getpid(), flush=True)
    if MODE == "kill":
        os.kill(os.getpid(), 9)
    if MODE == "hang":
        time.sleep(120)
    time.sleep(2.0); return real_gen(*a, **k)
def counted_clean(*a, **k):
    print("CLEANED", os.getpid(), flush=True); time.sleep(1.0); return real_clean(*a, **k)
world.generate_world, data.clean_log = slow_gen, counted_clean
"""

_PREPARE_CHILD = """
import os, signal
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a kernel, even if started with SIGINT ignored
import musicrecall.data as data
print("CALLER", os.getpid(), flush=True)
p = data.prepare("world", profile="tiny", seed=3)
print("ROWS", p.clean.events.height, int(p.clean.events["song_id"].sum()), p.clean.removed.height, flush=True)
"""


def _run_prepare_processes(tmp_path, n: int, mode: str = "count") -> list:
    procs = [_start_prepare(tmp_path, mode) for _ in range(n)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        outs.append((proc.returncode, out, err))
    return outs


def _start_prepare(tmp_path, mode: str = "count"):
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = tmp_path / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "sitecustomize.py").write_text(_BUILD_PROBE)
    env = {**os.environ, "MUSICRECALL_DATA": str(tmp_path / "data"), "MUSICRECALL_THREADS": "1", "PROBE_MODE": mode,
           "PYTHONPATH": os.pathsep.join([str(probe), str(Path(__file__).resolve().parents[1] / "lib")])}
    # a script file without a main guard: a builder started by multiprocessing's spawn would re-run it
    script = probe / "caller.py"
    script.write_text(_PREPARE_CHILD)
    return subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _pids(outs: list, tag: str) -> list[str]:
    return [line.split()[1] for _, out, _ in outs for line in out.splitlines() if line.startswith(tag)]


def test_kernels_side_by_side_build_a_missing_world_and_cleaning_once(tmp_path):
    """Two processes that miss the same world and cleaned log at once (notebooks 02-07 start together): one
    generates and cleans, the other waits on the build lock and reads the same result from the cache. The build
    runs in a child process of a caller, never in a caller (a kernel holding models would add its peaks)."""
    outs = _run_prepare_processes(tmp_path, 2)
    assert all(rc == 0 for rc, _, _ in outs), outs
    generated, cleaned, callers = _pids(outs, "GENERATED"), _pids(outs, "CLEANED"), _pids(outs, "CALLER")
    assert len(generated) == 1 and len(cleaned) == 1, outs
    assert len(callers) == 2 and not set(generated + cleaned) & set(callers), outs
    rows = [line for _, out, _ in outs for line in out.splitlines() if line.startswith("ROWS")]
    assert len(rows) == 2 and rows[0] == rows[1]


def test_a_builder_killed_for_memory_is_an_error_that_says_so_and_caches_nothing(tmp_path):
    """The out-of-memory killer takes the build process, not the kernel: the caller gets an error naming the
    signal, and no half-written world is left to be read as a cache."""
    outs = _run_prepare_processes(tmp_path, 1, mode="kill")
    (rc, out, err), = outs
    assert rc != 0 and "ROWS" not in out
    assert "RuntimeError: the process building the world tiny:seed3 and its cleaning" in err
    assert "killed by signal 9 (out of memory?)" in err and "nothing was cached" in err
    assert not list((tmp_path / "data" / "raw").glob("world-*/config.json"))


def test_a_builder_exception_reaches_the_caller_with_its_type_and_traceback(tmp_path, monkeypatch):
    import musicrecall.data as data

    monkeypatch.setattr(data, "DATA_DIR", tmp_path)  # the child builds under the caller's folder
    with pytest.raises(ValueError, match="unknown profile 'huge'") as info:
        data.prepare("world", profile="huge", seed=1)
    note = "".join(info.value.__notes__)
    assert "in a child process" in note and "generate_world" in note


def test_build_ahead_leaves_prepare_nothing_to_build(tmp_path, monkeypatch):
    """A notebook builds its placebo world ahead, while its kernel is small; the later ``prepare`` only reads, and
    ``build_ahead`` finds the world and its cleaning cached by the same keys as ``prepare``."""
    import shutil

    import musicrecall.data as data

    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    from musicrecall.world import Effects

    effects = Effects().placebo("sequence")
    assert data.build_ahead(profile="tiny", seed=5, effects=effects) is True

    def no_build(*a, **k):
        raise AssertionError("prepare built after build_ahead")

    with monkeypatch.context() as m:
        m.setattr(data, "build_in_child", no_build)
        m.setattr(data, "clean_log", no_build)
        prep = data.prepare("world", profile="tiny", seed=5, effects=effects)
        assert data.build_ahead(profile="tiny", seed=5, effects=effects) is False
    assert prep.clean.events.height > 0
    # the world cached, its cleaning gone (a cleaning rule changed): build_ahead cleans it again
    for folder in (tmp_path / "processed").glob("clean-*"):
        shutil.rmtree(folder)
    assert data.build_ahead(profile="tiny", seed=5, effects=effects) is True
    assert data.prepare("world", profile="tiny", seed=5, effects=effects).clean.events.height == prep.clean.events.height
    assert data.build_ahead("data/raw/some-import", profile="tiny") is False  # no placebo world to build


@pytest.mark.parametrize("how", ["interrupted", "killed"])
def test_a_builder_stops_with_its_caller(tmp_path, how):
    """The notebook's stop button (SIGINT in the kernel) or a killed kernel while a child builds: the builder
    stops too, rather than holding the lock and its memory for a result nobody waits for."""
    import signal
    import time

    from musicrecall.cache import pid_alive

    proc = _start_prepare(tmp_path, mode="hang")
    line = ""
    while not line.startswith("GENERATED"):  # the builder is at work
        line = proc.stdout.readline()
        assert line or proc.poll() is None, proc.stderr.read()
    builder = int(line.split()[1])
    proc.send_signal(signal.SIGINT if how == "interrupted" else signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert how == "killed" or "KeyboardInterrupt" in err
    deadline = time.monotonic() + 10
    while pid_alive(builder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(builder), "the builder outlived its caller"
    assert not list((tmp_path / "data" / "raw").glob("world-*/config.json"))


def test_prepare_without_the_raw_log_gives_the_same_cleaned_plays(tmp_path, monkeypatch):
    """``raw_log=False`` (notebooks after cleaning, to fit profile medium): the same cleaned plays, removals and
    accounting, the raw log's schema and row count without its rows, no noise flags; ``lacks`` asks for the cleaned
    plays instead of judging an empty log; a missing cleaning is still built from the raw log."""
    import musicrecall.data as data
    from musicrecall.yardsticks import lacks

    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    lean = data.prepare("world", profile="tiny", seed=2, raw_log=False)  # builds: the cleaning reads the raw log
    full = data.prepare("world", profile="tiny", seed=2)
    assert full.dataset.raw_log_loaded and not lean.dataset.raw_log_loaded
    assert lean.dataset.events.height == 0 and lean.dataset.events.schema == full.dataset.events.schema
    assert lean.dataset.raw_rows == full.dataset.raw_rows == full.dataset.events.height
    assert "event_noise" in full.dataset.truth and "event_noise" not in lean.dataset.truth
    assert set(lean.dataset.truth) == set(full.dataset.truth) - {"event_noise"}
    assert lean.clean.events.equals(full.clean.events) and lean.clean.removed.equals(full.clean.removed)
    assert lean.clean.accounting.equals(full.clean.accounting)
    assert data.prepare("world", profile="tiny", seed=2, raw_log=False).clean.events.equals(full.clean.events)
    with pytest.raises(ValueError, match="raw log was not loaded"):
        lacks(lean.dataset)
    assert lacks(lean.dataset, lean.clean.events) == lacks(full.dataset, full.clean.events)
