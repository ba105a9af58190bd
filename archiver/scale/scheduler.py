"""`archiver scheduler`: the one process of a scaled setup that decides when outlets are polled.

It starts a pass (a row in `passes`) and sends its discovery message when an outlet's
schedule fires, skipping outlets whose last pass is still open, and closes a pass once its
discovery is done and every frontier row it queued is settled: the pass row then gets the
article counts, as a single-machine pass has them. Its schedule lives in the index's
database (APScheduler's SQLAlchemy job store; `scheduler.sqlite3` beside a SQLite index), so a
restarted scheduler keeps it. A job store that fails is logged and a scheduling round it
breaks is tried again, as in the daemon (schedule_guard.py): scheduling never stops in silence.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from .. import SOFTWARE
from . import frontier
from ..config import LoadedConfig
from ..errors import ArchiverError, BrokerError, ConfigError, ConfigProblem
from ..index import Index
from ..clock import utc_now as _now
from .worker import pass_summary

log = logging.getLogger(__name__)

_CURRENT: "Scheduler | None" = None


def scheduled_outlet(outlet_name: str) -> None:
    """The job each outlet's schedule fires (module level: the job store refers to it by name)."""
    if _CURRENT is not None:
        try:
            _CURRENT.start_pass(outlet_name)
        except ArchiverError as e:  # one line, not a traceback; an unsent discovery is sent again at start
            log.error("%s: pass not started: %s", outlet_name, e)


def broker_display(url: str) -> str:
    """The broker URL for messages: the password replaced by ***."""
    u = urlsplit(url)
    if u.password is None:
        return url
    host = u.hostname or ""
    netloc = f"{u.username or ''}:***@{f'[{host}]' if ':' in host else host}{f':{u.port}' if u.port else ''}"
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


def check_broker(url: str, timeout: float = 10.0) -> None:
    """Raise BrokerError, naming the broker and the reason, unless it answers a PING. Checked
    before anything is started: a pass whose message cannot be sent would wait for nothing."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as e:
        raise BrokerError(f"scale.broker {broker_display(url)}: {e}") from None
    try:
        client.ping()
    except redis.RedisError as e:
        raise BrokerError(f"broker {broker_display(url)} cannot be reached: {str(e) or type(e).__name__}") from None
    finally:
        client.close()


class Scheduler:
    def __init__(self, cfg: LoadedConfig):
        from .tasks import make_broker

        scale = cfg.config.scale
        if not scale.broker:
            raise ConfigError([ConfigProblem(str(cfg.path), 0, "scale.broker",
                                             "a scaled setup needs a broker: set scale.broker or ARCHIVER_BROKER_URL")])
        check_broker(scale.broker)
        self.cfg = cfg
        self.index = Index.open(cfg.storage_root, url=cfg.config.index.url)
        self.broker = make_broker(scale.broker, scale.requeue_after)
        self._lock = threading.Lock()

    def _send_discover(self, outlet: str, pass_id: int) -> None:
        import redis

        from .tasks import send_discover

        try:
            send_discover(self.broker, outlet, pass_id)
        except redis.RedisError as e:  # the broker went away after the start
            url = self.cfg.config.scale.broker or ""
            raise BrokerError(f"broker {broker_display(url)}: cannot send the discovery of pass {pass_id} "
                              f"({outlet}): {str(e) or type(e).__name__}") from None

    def close(self) -> None:
        self.index.close()
        self.broker.close()

    def start_pass(self, outlet: str) -> int | None:
        """Start a pass of `outlet` unless its last one is still open; returns its id."""
        with self._lock:
            running = self.index.rows("SELECT id FROM passes WHERE outlet = :o AND ended_at IS NULL", o=outlet)
            if running:
                log.info("%s: pass %d still running; this turn is skipped", outlet, running[0]["id"])
                return None
            pass_id = self.index.start_pass(outlet, _now(), SOFTWARE, self.cfg.sha256)
            self._send_discover(outlet, pass_id)
            log.info("%s: pass %d started", outlet, pass_id)
            return pass_id

    def resend_undiscovered(self) -> int:
        """Discovery messages again for open passes not discovered yet: the scheduler may have
        died between starting a pass and sending its message (a second one does no harm)."""
        rows = self.index.rows("SELECT id, outlet FROM passes WHERE ended_at IS NULL AND counts IS NULL")
        for r in rows:
            self._send_discover(r["outlet"], r["id"])
        return len(rows)

    def finish_ready(self) -> list[int]:
        """Close the passes whose discovery is done and whose frontier rows are all settled."""
        with self._lock:
            rows = self.index.rows("SELECT id, outlet, counts, error FROM passes "
                                   "WHERE ended_at IS NULL AND counts IS NOT NULL")
            busy = frontier.open_counts(self.index, [r["id"] for r in rows])
            done = []
            for r in rows:
                if busy.get(r["id"]):
                    continue
                counts = json.loads(r["counts"])
                states = pass_summary(self.index, r["id"])
                counts.update({"archived": states.get("archived", 0), "failed": states.get("failed", 0),
                               "robots": states.get("robots", 0), "blocked": states.get("blocked", 0),
                               "off_topic": states.get("off_topic", 0), "duplicate": states.get("duplicate", 0),
                               "fetched": sum(n for s, n in states.items() if s not in ("robots",))})
                self.index.finish_pass(r["id"], _now(), counts, r["error"])
                log.info("%s: pass %d done: %s", r["outlet"], r["id"], counts)
                done.append(r["id"])
            return done

    def open_passes(self) -> int:
        return len(self.index.rows("SELECT id FROM passes WHERE ended_at IS NULL"))

    def once(self, outlets: list[str] | None = None, progress: Callable[[int, int], None] | None = None,
             stop: threading.Event | None = None) -> list[int]:
        """One pass of every (or the named) outlet; returns when all of them are closed."""
        self.resend_undiscovered()
        started = [p for o in self.cfg.config.outlets if not outlets or o.name in outlets
                   if (p := self.start_pass(o.name)) is not None]
        waiting = set(started)
        while waiting and not (stop is not None and stop.is_set()):
            waiting -= set(self.finish_ready())
            if progress is not None:
                ids = list(waiting)
                progress(len(ids), sum(frontier.open_counts(self.index, ids).values()))
            time.sleep(0.5)
        return started

    def forever(self, stop: threading.Event) -> None:
        from ..daemon import JOBS_TABLE, _same_trigger, _store_name, make_trigger, scheduler_url
        from ..schedule_guard import GuardedBackgroundScheduler, JobStoreHealth, WatchedJobStore

        global _CURRENT
        _CURRENT = self
        jitter = self.cfg.config.daemon.jitter
        # the daemon's guards: a failing job store is logged (when it starts failing, once a
        # minute, when it works again) and a scheduling round it breaks is tried again
        health = JobStoreHealth(where=_store_name(self.cfg))
        store = WatchedJobStore(health, url=scheduler_url(self.cfg), tablename=JOBS_TABLE)
        sched = GuardedBackgroundScheduler(
            timezone=timezone.utc, jobstores={"default": store},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(self.cfg.config.daemon.misfire_grace_time)})
        sched.start(paused=True)
        names = {o.name for o in self.cfg.config.outlets}
        for job in sched.get_jobs():
            if job.id not in names:
                job.remove()
        for o in self.cfg.config.outlets:
            trigger = make_trigger(o, jitter)
            job = sched.get_job(o.name)
            if job is None:
                sched.add_job(scheduled_outlet, trigger, args=[o.name], id=o.name, next_run_time=datetime.now(timezone.utc))
            elif not _same_trigger(job.trigger, trigger):
                job.reschedule(trigger)
        self.resend_undiscovered()
        sched.resume()
        try:
            while not stop.wait(1.0):
                self.finish_ready()
        finally:
            sched.shutdown(wait=False)
            _CURRENT = None


def run_scheduler(cfg: LoadedConfig, once: bool = False, outlets: list[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[int]:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    s = Scheduler(cfg)
    try:
        if once:
            return s.once(outlets, progress, stop)
        s.forever(stop)
        return []
    finally:
        s.close()
