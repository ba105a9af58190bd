"""`archiver run`: the long-running service.

One asyncio process: APScheduler 3 (AsyncIOScheduler, SQLAlchemy job store in the storage
root so next-run times survive restarts) fires one job per outlet; every job runs an outlet
pass on one shared crawler, so per-host politeness and robots.txt hold across passes and
across outlets that share a host. A small HTTP endpoint serves /healthz and /metrics.

Signals: SIGTERM/SIGINT stop scheduling, give in-flight passes `daemon.shutdown_grace`
seconds, then close every WARC (no `.open` left) and the index, exit 0. SIGHUP reloads the
config; a config that does not validate is reported and the running one stays in force.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import LoadedConfig, Outlet, load_config
from .crawl import Pass
from .errors import ConfigError
from .index import Index, index_url
from .metrics import Metrics
from .recover import repair_storage

log = logging.getLogger(__name__)

SCHEDULER_DB = "scheduler.sqlite3"
JOBS_TABLE = "apscheduler_jobs"
_CURRENT: "Daemon | None" = None


async def scheduled_pass(outlet_name: str) -> None:
    """The job every outlet's schedule fires (module level: the job store keeps a reference to it)."""
    if _CURRENT is None:  # pragma: no cover - jobs only run inside a daemon
        log.error("no daemon running; outlet %s skipped", outlet_name)
        return
    await _CURRENT.pass_outlet(outlet_name)


class _SkippedRunFilter(logging.Filter):
    """APScheduler warns every time a run is skipped because the outlet's previous pass is
    still going; with short intervals that is routine, so it is logged at INFO instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("apscheduler.scheduler").addFilter(_SkippedRunFilter())


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


class Daemon:
    def __init__(self, config_path: Path):
        self.config_path = config_path
        self.cfg: LoadedConfig = load_config(config_path)
        self.metrics = Metrics()
        self.scheduler: AsyncIOScheduler | None = None
        self.crawler: Pass | None = None
        self.index: Index | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._pending = 0

    # ------------------------------------------------------------------ passes

    async def pass_outlet(self, name: str) -> None:
        outlet = next((o for o in self.cfg.config.outlets if o.name == name), None)
        if outlet is None or self.crawler is None or self._stop.is_set():
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
        if status is None:
            self.metrics.inc("archiver_fetches_total", status_class="error")
            self.metrics.inc("archiver_errors_total", reason=reason or "unknown")
        else:
            self.metrics.inc("archiver_fetches_total", status_class=f"{status // 100}xx")

    # ------------------------------------------------------------------ schedule

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
        assert self.crawler is not None
        self.crawler.reconfigure(new)
        self._sync_jobs()
        log.info("config reloaded from %s (sha256 %s)", self.config_path, new.sha256[:12])
        return True

    # ------------------------------------------------------------------ health

    def healthy(self) -> tuple[bool, str]:
        if self.scheduler is None or not self.scheduler.running:
            return False, "scheduler not running"
        root = self.cfg.storage_root
        try:
            with tempfile.NamedTemporaryFile(dir=root, prefix=".healthz-"):
                pass
        except OSError as e:
            return False, f"storage root {root} not writable: {e.strerror}"
        return True, "ok"

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/healthz":
                ok, why = self.healthy()
                status, body, ctype = (200 if ok else 503), (why + "\n").encode(), "text/plain; charset=utf-8"
            elif path == "/metrics":
                self.metrics.set("archiver_up", 1.0 if self.healthy()[0] else 0.0)
                if self.crawler is not None:
                    self.metrics.set("archiver_bytes_archived_total", float(self.crawler.writer.bytes_written))
                status, body = 200, self.metrics.render().encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            else:
                status, body, ctype = 404, b"not found\n", "text/plain; charset=utf-8"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _close_idle_warc(self) -> None:
        """A WARC stays `.open` while written; close it when nothing has been written for a while."""
        while not self._stop.is_set():
            await asyncio.sleep(min(30.0, self.cfg.config.daemon.close_idle_warc / 2))
            c = self.crawler
            if c is not None and c.writer.is_open and not self._running and \
                    time.monotonic() - c.writer.last_write >= self.cfg.config.daemon.close_idle_warc:
                c.writer.close()
                log.info("closed idle WARC %s", c.writer.closed_files[-1])

    # ------------------------------------------------------------------ main

    async def run(self) -> int:
        global _CURRENT
        cfg = self.cfg
        root = cfg.storage_root
        self.index = Index.open(root, url=cfg.config.index.url)
        repaired = repair_storage(root, self.index)
        if repaired:
            log.warning("repaired %d WARC file(s) left open by an earlier run", len(repaired))
        self.crawler = Pass(cfg, self.index, self._progress)
        self.crawler.fetcher.observer = self._observe
        d = cfg.config.daemon
        self.scheduler = AsyncIOScheduler(
            timezone=timezone.utc,
            jobstores={"default": SQLAlchemyJobStore(url=scheduler_url(cfg), tablename=JOBS_TABLE)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(d.misfire_grace_time)})
        host, port = d.host_port
        server = await asyncio.start_server(self._serve_http, host, port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        _CURRENT = self
        self.scheduler.start()
        self._sync_jobs()
        idle = asyncio.create_task(self._close_idle_warc())
        log.info("archiver daemon running: %d outlets, storage %s, health on http://%s:%d/healthz",
                 len(cfg.config.outlets), root, host, port)
        try:
            await self._stop.wait()
            log.info("stopping: no new passes; in-flight passes get %gs", self.cfg.config.daemon.shutdown_grace)
            self.scheduler.shutdown(wait=False)
            if self._running:
                done, pending = await asyncio.wait(set(self._running), timeout=self.cfg.config.daemon.shutdown_grace)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                    log.warning("cancelled %d pass(es) still running after the grace period", len(pending))
        finally:
            idle.cancel()
            server.close()
            await self.crawler.aclose()
            self.index.close()
            _CURRENT = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("stopped cleanly")
        return 0


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
