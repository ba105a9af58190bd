"""`archiver run`: the long-running service.

One asyncio process: APScheduler 3 (AsyncIOScheduler, SQLAlchemy job store in the storage
root so next-run times survive restarts) fires one job per outlet; every job runs an outlet
pass on one shared crawler, so per-host politeness and robots.txt hold across passes and
across outlets that share a host. A small HTTP endpoint serves /healthz and /metrics.

Signals: SIGTERM/SIGINT stop scheduling, give in-flight passes `daemon.shutdown_grace`
seconds, then close every WARC (no `.open` left) and the index, exit 0. SIGHUP reloads the
config; a config that does not validate is reported and the running one stays in force.

Nothing here stops in silence: the listener bounds what a client can hold (archiver/listener.py),
a failing job store or scheduling round is logged and retried (archiver/schedule_guard.py), a
watchdog wakes the scheduler when passes stop starting, and /healthz answers 503 with the
reason while any of that, or a storage root with less than `daemon.min_free_bytes` free, lasts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import LoadedConfig, Outlet, load_config
from .crawl import Pass
from .errors import ConfigError
from .index import Index, index_url
from .listener import Listener, Response
from .metrics import Metrics
from .ratelog import RateLimitedLog
from .recover import repair_storage
from .schedule_guard import GuardedScheduler, JobStoreHealth, WatchedJobStore

log = logging.getLogger(__name__)

SCHEDULER_DB = "scheduler.sqlite3"
JOBS_TABLE = "apscheduler_jobs"
_CURRENT: "Daemon | None" = None
# a pass counts as overdue this long after two of its intervals (and its jitter) went by
PASS_START_GRACE = 10.0
WATCH_EVERY = 2.0  # seconds between the watchdog's looks at the scheduler and the free space


async def scheduled_pass(outlet_name: str) -> None:
    """The job every outlet's schedule fires (module level: the job store keeps a reference to it)."""
    if _CURRENT is None:  # pragma: no cover - jobs only run inside a daemon
        log.error("no daemon running; outlet %s skipped", outlet_name)
        return
    await _CURRENT.pass_outlet(outlet_name)




def make_trigger(outlet: Outlet, jitter_fraction: float) -> IntervalTrigger | CronTrigger:
    sched = outlet.schedule
    if sched.every is not None:
        return IntervalTrigger(seconds=sched.every, timezone=timezone.utc,
                               jitter=int(sched.every * jitter_fraction) or None)
    assert sched.cron is not None
    trigger = CronTrigger.from_crontab(sched.cron, timezone=timezone.utc)
    now = datetime.now(timezone.utc)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    if first and second:
        trigger.jitter = int((second - first).total_seconds() * jitter_fraction) or None
    return trigger


def _same_trigger(a: object, b: object) -> bool:
    return str(a) == str(b) and getattr(a, "jitter", None) == getattr(b, "jitter", None)


def pass_due_by(outlet: Outlet, jitter_fraction: float, since: float) -> float:
    """When (epoch seconds) a working scheduler has surely started a pass of this outlet, counting
    from `since`: after two of its intervals, their jitter and PASS_START_GRACE."""
    sched = outlet.schedule
    if sched.every is not None:
        return since + sched.every * (2 + jitter_fraction) + PASS_START_GRACE
    assert sched.cron is not None
    trigger = CronTrigger.from_crontab(sched.cron, timezone=timezone.utc)
    first = trigger.get_next_fire_time(None, datetime.fromtimestamp(since, timezone.utc))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    if first is None or second is None:
        return math.inf
    return second.timestamp() + (second - first).total_seconds() * jitter_fraction + PASS_START_GRACE


def free_bytes(root: Path) -> int | None:
    """Bytes this process may still write on the storage root's filesystem; None if unknown."""
    try:
        return shutil.disk_usage(root).free
    except OSError:
        return None


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class Daemon:
    def __init__(self, config_path: Path):
        self.config_path = config_path
        self.cfg: LoadedConfig = load_config(config_path)
        self.metrics = Metrics()
        self.scheduler: GuardedScheduler | None = None
        self.store_health = JobStoreHealth(where=_store_name(self.cfg))
        self.crawler: Pass | None = None
        self.index: Index | None = None
        self.listener: Listener | None = None
        self._store: WatchedJobStore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # cuts a wait short: a stop, a reload
        self._pending = 0
        self._jobs_synced = False
        self._scheduling_since: float | None = None  # time.time() the schedule was last (re)started
        self._last_fired: float | None = None  # time.time() the scheduler last started a pass
        self._rate = RateLimitedLog(log, 60.0)

    # ------------------------------------------------------------------ passes

    def _fired(self, *_: object) -> None:
        """The scheduler started a pass, or found the outlet's previous one still running: it works."""
        self._last_fired = time.time()
        self.metrics.set("archiver_last_pass_start_timestamp_seconds", self._last_fired)

    async def pass_outlet(self, name: str) -> None:
        self._fired()
        outlet = next((o for o in self.cfg.config.outlets if o.name == name), None)
        if outlet is None or self.crawler is None or self._stop.is_set():
            return
        room = self._room_problem()
        if room is not None:
            # a pass would stop at its first failed write; waiting keeps the index and job store working
            self._rate.log(logging.WARNING, "deferred", "pass of %s not started: %s", name, room)
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        log.info("pass of %s starting", name)
        try:
            stats = await self.crawler.outlet(outlet)
        except Exception as e:  # a pass that blows up is one failed pass, never the daemon
            self.metrics.inc("archiver_passes_total", outlet=name, result="error")
            log.exception("pass of %s failed: %s", name, e)
            return
        finally:
            self._running.discard(task)
        self.metrics.inc("archiver_passes_total", outlet=name, result="ok")
        self.metrics.inc("archiver_captures_kept_total", stats.archived + stats.updated, outlet=name)
        self.metrics.set("archiver_last_success_timestamp_seconds", time.time(), outlet=name)
        log.info("pass of %s done: %s", name, ", ".join(f"{k} {v}" for k, v in stats.counts().items() if v))

    def _progress(self, event: str, advance: int, total: int) -> None:
        self._pending += total - advance
        self.metrics.set("archiver_queue_depth", max(0, self._pending))

    def _observe(self, status: int | None, reason: str | None) -> None:
        """Count one exchange: by its status class, and as an error when no answer came (by
        the failure's reason) or the answer was an error status (http_4xx, http_5xx)."""
        if status is None:
            self.metrics.inc("archiver_fetches_total", status_class="error")
            self.metrics.inc("archiver_errors_total", reason=reason or "unknown")
            return
        status_class = f"{status // 100}xx"
        self.metrics.inc("archiver_fetches_total", status_class=status_class)
        if status >= 400:
            self.metrics.inc("archiver_errors_total", reason=f"http_{status_class}")

    # ------------------------------------------------------------------ schedule

    def _new_scheduler(self) -> GuardedScheduler:
        d = self.cfg.config.daemon
        self._store = WatchedJobStore(self.store_health, url=scheduler_url(self.cfg), tablename=JOBS_TABLE)
        scheduler = GuardedScheduler(
            timezone=timezone.utc, jobstores={"default": self._store},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(d.misfire_grace_time)})
        scheduler.add_listener(self._fired, EVENT_JOB_MAX_INSTANCES)
        return scheduler

    def _start_scheduler(self) -> bool:
        """Start the scheduler if it is not running and bring its jobs in line with the config;
        False when that failed (the job store's failures are logged by its health record)."""
        assert self.scheduler is not None
        try:
            if not self.scheduler.running:
                self.scheduler.start()
                self._scheduling_since = time.time()
            self._sync_jobs()
        except Exception as e:
            self._jobs_synced = False
            if self.store_health.failing is None:
                self._rate.log(logging.ERROR, "start", "could not start the schedule: %r; trying again", e)
            return False
        self._jobs_synced = True
        return True

    def _sync_jobs(self) -> None:
        assert self.scheduler is not None
        existing = {job.id: job for job in self.scheduler.get_jobs()}
        now = datetime.now(timezone.utc)
        for outlet in self.cfg.config.outlets:
            trigger = make_trigger(outlet, self.cfg.config.daemon.jitter)
            job = existing.pop(outlet.name, None)
            if job is None:
                # a new outlet gets its first pass soon, spread a little so outlets do not start together
                first = now + timedelta(seconds=random.uniform(0, min(5.0, (outlet.schedule.every or 60) / 10)))
                self.scheduler.add_job(scheduled_pass, trigger, args=[outlet.name], id=outlet.name,
                                       name=outlet.name, next_run_time=first, replace_existing=True)
                log.info("scheduled %s: %s, first pass at %s", outlet.name, trigger, first.isoformat())
            elif not _same_trigger(job.trigger, trigger):
                self.scheduler.reschedule_job(outlet.name, trigger=trigger)
                log.info("rescheduled %s: %s", outlet.name, trigger)
        for job_id in existing:
            self.scheduler.remove_job(job_id)
            log.info("unscheduled %s: no longer in the config", job_id)

    def reload(self) -> bool:
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            log.error("config reload refused; the running config stays in force:\n%s", e)
            return False
        if new.storage_root != self.cfg.storage_root:
            log.error("config reload refused: storage.root cannot change while running (%s -> %s)",
                      self.cfg.storage_root, new.storage_root)
            return False
        self.cfg = new
        if self.crawler is not None:
            self.crawler.reconfigure(new)
        if self.scheduler is not None and self.scheduler.running:
            # schedules may have changed: overdue is measured from now
            self._scheduling_since = time.time()
            self._start_scheduler()
        self._wake.set()
        log.info("config reloaded from %s (sha256 %s)", self.config_path, new.sha256[:12])
        return True

    # ------------------------------------------------------------------ health

    def _room_problem(self) -> str | None:
        root, floor = self.cfg.storage_root, self.cfg.config.daemon.min_free_bytes
        free = free_bytes(root)
        self.metrics.set("archiver_storage_min_free_bytes", floor)
        if free is None:
            return f"storage root {root}: its free space cannot be read" if floor else None
        self.metrics.set("archiver_storage_free_bytes", free)
        if free < floor:
            return (f"storage root {root} has {_size(free)} free ({free} bytes), "
                    f"below daemon.min_free_bytes ({_size(floor)})")
        return None

    def _overdue(self) -> str | None:
        """Why passes look stuck: none started in two of the shortest interval (plus grace)."""
        if self._scheduling_since is None or self.scheduler is None or not self.scheduler.running:
            return None
        since = max(self._scheduling_since, self._last_fired or 0.0)
        jitter = self.cfg.config.daemon.jitter
        due_by = min(pass_due_by(o, jitter, since) for o in self.cfg.config.outlets)
        now = time.time()
        if now <= due_by:
            return None
        last = f"the last at {_utc(self._last_fired)}" if self._last_fired else "none since the schedule started"
        return f"no pass started for {now - since:.0f}s though one was due by {_utc(due_by)} ({last})"

    def health(self) -> list[str]:
        """Every reason the daemon is not doing its job; empty when it is."""
        problems = []
        if self.scheduler is None or not self.scheduler.running:
            problems.append("scheduler not running")
        if self.store_health.failing is not None:
            problems.append(f"job store {self.store_health.where} failing since "
                            f"{_utc(self.store_health.failing_since or time.time())}: {self.store_health.failing}")
        overdue = self._overdue()
        if overdue is not None:
            problems.append(overdue)
        room = self._room_problem()
        if room is not None:
            problems.append(room)
        root = self.cfg.storage_root
        try:
            with tempfile.NamedTemporaryFile(dir=root, prefix=".healthz-"):
                pass
        except OSError as e:
            problems.append(f"storage root {root} not writable: {e.strerror}")
        return problems

    def healthy(self) -> tuple[bool, str]:
        problems = self.health()
        return not problems, "; ".join(problems) or "ok"

    def _answer(self, method: str, path: str) -> Response:
        if path == "/healthz":
            ok, why = self.healthy()
            return Response(200 if ok else 503, (why + "\n").encode())
        if path == "/metrics":
            ok, _ = self.healthy()
            m = self.metrics
            m.set("archiver_healthy", 1 if ok else 0)
            m.set("archiver_up", 1 if self.scheduler is not None and self.scheduler.running else 0)
            m.set("archiver_job_store_errors_total", self.store_health.errors)
            if self.listener is not None:
                m.set("archiver_http_connections_refused_total", self.listener.stats.refused)
                m.set("archiver_http_accept_errors_total", self.listener.stats.accept_errors)
            if self.crawler is not None:
                m.set("archiver_bytes_archived_total", self.crawler.writer.bytes_written)
            return Response(200, m.render().encode(), "text/plain; version=0.0.4; charset=utf-8")
        return Response(404, b"not found\n")

    # ------------------------------------------------------------------ watching

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once for a stop or a reload."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def _request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def _keep(self, what: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; one that raises is logged and started again, never lost."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                await body()
                return
            except Exception:
                log.exception("%s failed; starting it again in %gs", what, delay)
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)

    async def _wait_for_room(self) -> bool:
        """Before anything is opened for writing: wait while the storage root is below its floor.
        False if told to stop meanwhile."""
        waited = False
        while not self._stop.is_set():
            problem = self._room_problem()
            if problem is None:
                if waited:
                    log.warning("storage root %s has room again; starting", self.cfg.storage_root)
                return True
            self._rate.log(logging.ERROR, "room", "%s: waiting for room before starting "
                           "(GET /healthz answers 503 meanwhile)", problem)
            waited = True
            await self._pause(WATCH_EVERY)
        return False

    def _check_schedule(self) -> None:
        """The watchdog's look: the scheduler runs, its job store answers, passes start."""
        sched = self.scheduler
        if sched is None or self._stop.is_set():
            return
        if self.store_health.failing is not None:
            assert self._store is not None
            try:
                self._store.probe()  # clears the failure once the store answers for a while
            except Exception:
                return
            if self.store_health.failing is None and self._start_scheduler():
                sched.wakeup()  # due passes start now, not at the scheduler's next retry
            return
        if not sched.running:
            self._rate.log(logging.ERROR, "not-running", "the scheduler is not running; starting it")
            self._start_scheduler()
            return
        if not self._jobs_synced:
            self._start_scheduler()
        overdue = self._overdue()
        if overdue is not None:
            self._rate.log(logging.ERROR, "overdue", "%s; waking the scheduler and checking its jobs", overdue)
            self._start_scheduler()  # puts back a job the store lost
            sched.wakeup()  # arms its timer again if a round died without one

    async def _watch_schedule(self) -> None:
        while not self._stop.is_set():
            await self._pause(WATCH_EVERY)
            self._check_schedule()

    async def _close_idle_warc(self) -> None:
        """A WARC stays `.open` while written; close it when nothing has been written for a while."""
        while not self._stop.is_set():
            await asyncio.sleep(min(30.0, self.cfg.config.daemon.close_idle_warc / 2))
            c = self.crawler
            if c is not None and c.writer.is_open and not self._running and \
                    time.monotonic() - c.writer.last_write >= self.cfg.config.daemon.close_idle_warc:
                try:
                    c.writer.close()
                except OSError as e:  # a full disk: the next pass or the next look tries again
                    self._rate.log(logging.ERROR, "idle-warc", "could not close idle WARC: %s", e)
                    continue
                log.info("closed idle WARC %s", c.writer.closed_files[-1])

    # ------------------------------------------------------------------ main

    async def run(self) -> int:
        global _CURRENT
        host, port = self.cfg.config.daemon.host_port
        self.listener = Listener(host, port, self._answer)
        self.listener.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        _CURRENT = self
        background: list[asyncio.Task[None]] = []
        try:
            if await self._wait_for_room():
                await self._serve(background)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.listener.aclose()
            if self.crawler is not None:
                await self.crawler.aclose()
            if self.index is not None:
                self.index.close()
            _CURRENT = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("stopped cleanly")
        return 0

    async def _serve(self, background: list[asyncio.Task[None]]) -> None:
        cfg = self.cfg
        root = cfg.storage_root
        self.index = Index.open(root, url=cfg.config.index.url)
        repaired = repair_storage(root, self.index)
        if repaired:
            log.warning("repaired %d WARC file(s) left open by an earlier run", len(repaired))
        self.crawler = Pass(cfg, self.index, self._progress, observer=self._observe)
        self.scheduler = self._new_scheduler()
        self._start_scheduler()  # when the job store fails, the watchdog tries again
        background.append(asyncio.create_task(self._keep("closing idle WARCs", self._close_idle_warc)))
        background.append(asyncio.create_task(self._keep("the scheduler's watchdog", self._watch_schedule)))
        host, port = cfg.config.daemon.host_port
        log.info("archiver daemon running: %d outlets, storage %s, health on http://%s:%d/healthz",
                 len(cfg.config.outlets), root, host, port)
        await self._stop.wait()
        log.info("stopping: no new passes; in-flight passes get %gs", self.cfg.config.daemon.shutdown_grace)
        if self.scheduler.running:
            # paused, not shut down: shutting down cancels the passes it started, grace or not
            self.scheduler.pause()
        if self._running:
            done, pending = await asyncio.wait(set(self._running), timeout=self.cfg.config.daemon.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning("cancelled %d pass(es) still running after the grace period", len(pending))
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn


def _store_name(cfg: LoadedConfig) -> str:
    """The job store as logs and /healthz name it (never its URL: that may carry a password)."""
    return str(cfg.storage_root / SCHEDULER_DB) if scheduler_url(cfg).startswith("sqlite") else "in the index database"


def scheduler_url(cfg: LoadedConfig) -> str:
    """Where the scheduler keeps its jobs: beside a PostgreSQL index in the same database,
    else in its own SQLite file (the index's file is the crawl's alone)."""
    url = index_url(cfg.storage_root, cfg.config.index.url)
    return url if not url.startswith("sqlite") else f"sqlite:///{cfg.storage_root / SCHEDULER_DB}"


def next_run_times(cfg: LoadedConfig) -> dict[str, datetime]:
    """outlet -> next scheduled pass, read from the daemon's job store (works while it runs)."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    url = scheduler_url(cfg)
    if url.startswith("sqlite") and not (cfg.storage_root / SCHEDULER_DB).exists():
        return {}
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            if not inspect(c).has_table(JOBS_TABLE):
                return {}
            rows = c.execute(text(f"SELECT id, next_run_time FROM {JOBS_TABLE}")).all()
    except SQLAlchemyError:
        return {}
    finally:
        engine.dispose()
    return {job_id: datetime.fromtimestamp(ts, timezone.utc) for job_id, ts in rows if ts is not None}


def run_daemon(config_path: Path) -> int:
    daemon = Daemon(config_path)
    os.makedirs(daemon.cfg.storage_root, exist_ok=True)
    return asyncio.run(daemon.run())
