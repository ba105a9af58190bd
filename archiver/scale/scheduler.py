"""`archiver scheduler`: the one process of a scaled setup that decides when outlets are polled.

It starts a pass (a row in `passes`) and sends its discovery message when an outlet's
schedule fires, skipping outlets whose last pass is still open, and closes a pass once its
discovery is done and every frontier row it queued is settled: the pass row then gets the
article counts, as a single-machine pass has them. Its schedule lives in the index's
database (`scheduler.sqlite3` beside a SQLite index), so a restarted scheduler keeps it. It is
the daemon's schedule (schedule.py), run in a thread: a job store that fails is logged, a
scheduling round it breaks is tried again and a watchdog puts back what went wrong, so
scheduling never stops in silence.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from .. import SOFTWARE
from . import frontier
from ..config import LoadedConfig
from ..errors import ArchiverError, BrokerError
from ..index import Index, PassCounts
from ..clock import utc_now as _now
from ..runtime import handle_signals, require_broker
from ..schedule import Schedule

log = logging.getLogger(__name__)


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

        broker = require_broker(cfg)
        check_broker(broker)
        self.cfg = cfg
        self.index = Index.open(cfg.storage_root, url=cfg.config.index.url)
        self.broker = make_broker(broker, cfg.config.scale.requeue_after)
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
            running = self.index.passes(outlet=outlet, open_only=True)
            if running:
                log.info("%s: pass %d still running; this turn is skipped", outlet, running[0].id)
                return None
            pass_id = self.index.start_pass(outlet, _now(), SOFTWARE, self.cfg.sha256)
            self._send_discover(outlet, pass_id)
            log.info("%s: pass %d started", outlet, pass_id)
            return pass_id

    def resend_undiscovered(self) -> int:
        """Discovery messages again for open passes not discovered yet: the scheduler may have
        died between starting a pass and sending its message (a second one does no harm)."""
        undiscovered = [p for p in self.index.passes(open_only=True) if p.counts is None]
        for p in undiscovered:
            self._send_discover(p.outlet, p.id)
        return len(undiscovered)

    def finish_ready(self) -> list[int]:
        """Close the passes whose discovery is done and whose frontier rows are all settled."""
        with self._lock:
            discovered = [p for p in self.index.passes(open_only=True) if p.counts is not None]
            busy = frontier.open_counts(self.index, [p.id for p in discovered])
            done = []
            for p in discovered:
                if busy.get(p.id):
                    continue
                counts = (p.counts or PassCounts()).merged(self.index.pass_summary(p.id))
                self.index.record_pass(p.id, counts, p.error, ended_at=_now())
                log.info("%s: pass %d done: %s", p.outlet, p.id, counts.as_dict())
                done.append(p.id)
            return done

    def open_passes(self) -> int:
        return len(self.index.passes(open_only=True))

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

    def _scheduled(self, outlet: str) -> None:
        """What an outlet's job runs (in the schedule's thread pool)."""
        try:
            self.start_pass(outlet)
        except ArchiverError as e:  # one line, not a traceback; an unsent discovery is sent again at start
            log.error("%s: pass not started: %s", outlet, e)

    def forever(self, stop: threading.Event) -> None:
        """Start passes on the outlets' schedules and close those done, until `stop` is set."""
        self.resend_undiscovered()
        schedule = Schedule(self.cfg, "scheduler", self._scheduled, in_thread=True)
        schedule.start()  # when the job store fails, the watchdog below tries again
        try:
            while not stop.wait(1.0):
                schedule.check()
                self.finish_ready()
        finally:
            schedule.shutdown()


def run_scheduler(cfg: LoadedConfig, once: bool = False, outlets: list[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[int]:
    stop = threading.Event()
    with handle_signals(stop.set):
        s = Scheduler(cfg)
        try:
            if once:
                return s.once(outlets, progress, stop)
            s.forever(stop)
            return []
        finally:
            s.close()
