"""The schedule both runtimes share (archiver/schedule.py) and their signal handling
(archiver/runtime.py), on real SQLite job stores in a temporary storage root."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import re
import signal
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from archiver.config import LoadedConfig, load_config
from archiver.runtime import handle_signals
from archiver.jobstore import next_run_times
from archiver.schedule import Schedule
from archiver.triggers import make_trigger

from .test_daemon import wait_for

OUTLET = "harbor-times"


def config(tmp_path: Path, every: str) -> LoadedConfig:
    """One outlet on `every`; nothing here fetches it."""
    root = tmp_path / "arch"
    root.mkdir(exist_ok=True)
    path = root / "config.yaml"
    path.write_text(f"""storage:
  root: {root}
topics:
  - name: blinken
    any: ["Blinken"]
outlets:
  - name: {OUTLET}
    feeds: ["http://127.0.0.1:9/rss.xml"]
    schedule: {{every: {every}}}
""", encoding="utf-8")
    return load_config(path)


def started(calls: list[str], stop_after: float) -> None:
    wait_for("a pass started by the schedule", lambda: bool(calls), timeout=stop_after)


def test_a_restarted_schedule_runs_the_jobs_its_predecessor_stored(tmp_path: Path):
    cfg = config(tmp_path, "1s")
    first: list[str] = []
    s1 = Schedule(cfg, "scheduler", first.append, in_thread=True)
    assert s1.start()
    try:
        started(first, 10)
    finally:
        s1.shutdown()
    assert OUTLET in next_run_times(cfg)  # the job stays in the store
    calls_before = len(first)

    second: list[str] = []  # the next run: a new object with a pass starter of its own
    s2 = Schedule(cfg, "scheduler", second.append, in_thread=True)
    assert s2.start()
    try:
        started(second, 10)
        assert s2.last_fired is not None and s2.problems() == []
    finally:
        s2.shutdown()
    assert second[0] == OUTLET
    assert len(first) == calls_before  # nothing went to the schedule that had stopped


def test_jobs_a_daemon_stored_are_run_by_a_scaled_scheduler_on_the_same_store(tmp_path: Path):
    """An archive moves from `archiver run` to a scaled setup: the scheduler takes over the
    daemon's jobs (their next run times too) and its own pass starter runs them."""
    cfg = config(tmp_path, "2s")
    daemon_calls: list[str] = []

    async def daemon_pass(outlet: str) -> None:
        daemon_calls.append(outlet)

    async def run_daemon_schedule() -> None:
        s = Schedule(cfg, "daemon", daemon_pass)
        assert s.start()
        deadline = time.monotonic() + 10
        while not daemon_calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        s.shutdown()
        await asyncio.sleep(0)

    asyncio.run(run_daemon_schedule())
    assert daemon_calls == [OUTLET]  # the daemon's job ran on its loop
    planned = next_run_times(cfg)[OUTLET]

    scaled: list[str] = []
    s = Schedule(cfg, "scheduler", scaled.append, in_thread=True)
    assert s.start()
    try:
        assert next_run_times(cfg)[OUTLET] == planned  # taken over, not scheduled anew
        started(scaled, 10)
    finally:
        s.shutdown()
    assert scaled[0] == OUTLET and daemon_calls == [OUTLET]


def rewrite_stored_job(cfg: LoadedConfig, planned: float, **fields: object) -> None:
    """Make the outlet's stored job look as an earlier release stored it: `fields` of its
    state replaced, its next run at `planned`."""
    store = sqlite3.connect(cfg.storage_root / "scheduler.sqlite3", isolation_level=None)
    try:
        (state_bytes,) = store.execute("SELECT job_state FROM apscheduler_jobs WHERE id = ?", (OUTLET,)).fetchone()
        state = pickle.loads(state_bytes)
        state.update(fields)
        state["next_run_time"] = datetime.fromtimestamp(planned, timezone.utc)
        store.execute("UPDATE apscheduler_jobs SET job_state = ?, next_run_time = ? WHERE id = ?",
                      (pickle.dumps(state), planned, OUTLET))
    finally:
        store.close()


def next_run_after_restart(cfg: LoadedConfig) -> float:
    """The outlet's next run (epoch seconds) as a scheduler started on the stored jobs has it."""
    s = Schedule(cfg, "scheduler", lambda outlet: None, in_thread=True)
    assert s.start()
    try:
        return next_run_times(cfg)[OUTLET].timestamp()
    finally:
        s.shutdown()


def test_jobs_stored_by_the_previous_release_keep_their_next_run_times(tmp_path: Path, caplog):
    """Before schedule.py, a job named its runtime's own function (archiver.daemon:scheduled_pass,
    archiver.scale.scheduler:scheduled_outlet) and the outlet alone."""
    cfg = config(tmp_path, "15m")
    s = Schedule(cfg, "scheduler", lambda outlet: None, in_thread=True)
    assert s.start()
    s.shutdown()
    planned = float(int(time.time()) + 3600)  # whole seconds: exact as a float and a datetime
    rewrite_stored_job(cfg, planned, func="archiver.scale.scheduler:scheduled_outlet", args=(OUTLET,))

    caplog.set_level(logging.INFO)
    assert next_run_after_restart(cfg) == planned
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert f"scheduled {OUTLET}" not in caplog.text  # it was not added again


def test_an_interval_schedule_keeps_its_pace_whatever_the_jitter_did(tmp_path: Path):
    """`every: 15m` with the default 10 % jitter: 96 passes a day, each in the 90 s after its
    quarter of an hour, however late the jitter put the passes before it."""
    cfg = config(tmp_path, "15m")
    trigger = make_trigger(cfg.config.outlets[0], cfg.config.daemon.jitter)
    first = trigger.start_date
    fire = trigger.get_next_fire_time(None, first)
    for k in range(96):
        assert fire is not None
        late = (fire - first).total_seconds() - k * 900
        assert 0 <= late <= 90, f"pass {k} came {late:.0f}s after its time"
        fire = trigger.get_next_fire_time(fire, fire)


def test_a_job_stored_with_the_previous_interval_trigger_keeps_its_next_run(tmp_path: Path):
    """Jobs stored before the steady interval trigger get it, and keep their next run time."""
    from apscheduler.triggers.interval import IntervalTrigger

    cfg = config(tmp_path, "15m")
    s = Schedule(cfg, "scheduler", lambda outlet: None, in_thread=True)
    assert s.start()
    s.shutdown()
    planned = float(int(time.time()) + 600)
    rewrite_stored_job(cfg, planned, trigger=IntervalTrigger(seconds=900, timezone=timezone.utc, jitter=90))
    assert next_run_after_restart(cfg) == planned
    store = sqlite3.connect(cfg.storage_root / "scheduler.sqlite3")
    try:
        (state_bytes,) = store.execute("SELECT job_state FROM apscheduler_jobs WHERE id = ?", (OUTLET,)).fetchone()
    finally:
        store.close()
    assert type(pickle.loads(state_bytes)["trigger"]).__name__ == "SteadyIntervalTrigger"


def test_many_outlets_on_one_interval_are_spread_evenly_over_it(tmp_path: Path, caplog):
    """300 new outlets on `every: 15m`: their first passes start over a few seconds, not at
    once, and after that each outlet keeps a phase of its own, so each tenth of the interval
    gets about a tenth of the passes instead of all of them coming together."""
    root = tmp_path / "arch"
    root.mkdir()
    path = root / "config.yaml"
    path.write_text(f"storage: {{root: {root}}}\ntopics: [{{name: t, any: [x]}}]\noutlets:\n" + "".join(
        f'  - {{name: outlet-{i}, feeds: ["http://127.0.0.1:9/{i}.xml"], schedule: {{every: 15m}}}}\n'
        for i in range(300)), encoding="utf-8")
    cfg = load_config(path)
    caplog.set_level(logging.INFO, logger="archiver.schedule")
    before = time.time()
    s = Schedule(cfg, "scheduler", lambda outlet: None, in_thread=True)
    assert s.start()
    s.shutdown()
    said = re.compile(r"scheduled (outlet-\d+): interval\[0:15:00\], first pass at (\S+), then from (\S+)$")
    plans = {m[1]: (datetime.fromisoformat(m[2]).timestamp(), datetime.fromisoformat(m[3]).timestamp())
             for m in (said.match(r.getMessage()) for r in caplog.records) if m}
    assert len(plans) == 300, caplog.text[:2000]
    firsts = [first for first, _ in plans.values()]
    assert before <= min(firsts) and max(firsts) <= before + 300 / 20 + 5  # 20 first passes a second
    assert max(firsts) - min(firsts) > 5  # spread, not all in the first seconds
    tenths = [0] * 10
    for first, then in plans.values():
        assert first + 450 <= then <= first + 450 + 900  # the next pass half an interval later at least
        tenths[int(then % 900 // 90)] += 1
    assert min(tenths) >= 15 and max(tenths) <= 45, tenths  # 30 each if perfectly even
    # and that is where the stored jobs run: each on its phase from then on
    store = sqlite3.connect(root / "scheduler.sqlite3")
    try:
        states = {st["id"]: st for st in (pickle.loads(b) for (b,) in store.execute(
            "SELECT job_state FROM apscheduler_jobs"))}
    finally:
        store.close()
    assert {k: st["trigger"].start_date.timestamp() for k, st in states.items()} == {k: t for k, (_, t) in plans.items()}


def test_signals_stop_and_reload_and_the_handlers_before_come_back():
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with handle_signals(stop.set):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) == before

    told: list[str] = []

    async def on_the_loop() -> None:
        done = asyncio.Event()

        def reload() -> None:
            told.append("reload")

        def stopping() -> None:
            told.append("stop")
            done.set()

        with handle_signals(stopping, reload, asyncio.get_running_loop()):
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(done.wait(), 5)

    hup_before = signal.getsignal(signal.SIGHUP)
    asyncio.run(on_the_loop())
    assert told == ["reload", "stop"]
    assert signal.getsignal(signal.SIGHUP) == hup_before and signal.getsignal(signal.SIGTERM) == before
