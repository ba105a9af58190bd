"""`archiver run`: the long-running service.

One asyncio process: its schedule (schedule.py: one job per outlet, kept in a job store in the
storage root so next-run times survive restarts) runs every outlet pass on one shared
crawler, so per-host politeness and robots.txt hold across passes and across outlets that
share a host. A small HTTP endpoint serves /healthz and /metrics. A background task sends
the alerts that captures queue (alerts.py), woken as each capture is committed.

Signals: SIGTERM/SIGINT stop scheduling, give in-flight passes `daemon.shutdown_grace`
seconds, let the alert delivery in flight end, then close every WARC (no `.open` left) and
the index, exit 0. SIGHUP reloads the
config; a config that does not validate is reported and the running one stays in force. A
reload that adds topics or changes their terms tests the pages fetched before on those topics
(rematch.py), in the background, and archives what now matches.

Nothing here stops in silence: the listener bounds what a client can hold (archiver/listener.py),
a failing job store or scheduling round is logged and retried, a watchdog wakes the scheduler
when passes stop starting (both in schedule.py), and /healthz answers 503 with the reason
while any of that, or a storage root with less than `daemon.min_free_bytes` free, lasts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .alerts import Deliverer
from .config import LoadedConfig, load_config
from .crawl import Pass
from .errors import ConfigError
from .index import Index
from .listener import Listener, Response
from .metrics import Metrics
from .ratelog import RateLimitedLog
from .recover import open_archive
from .rematch import changed_topics, rematch
from .runtime import handle_signals
from .schedule import Schedule

log = logging.getLogger(__name__)

WATCH_EVERY = 2.0  # seconds between the watchdog's looks at the scheduler and the free space


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


class Daemon:
    def __init__(self, config_path: Path, loaded: LoadedConfig | None = None):
        """`loaded`: the config at `config_path` when the caller has just loaded it; the
        caller should not keep it (it would outlive a reload: megabytes with thousands of outlets)."""
        self.config_path = config_path
        self.cfg: LoadedConfig = loaded if loaded is not None else load_config(config_path)
        self.metrics = Metrics()
        self.schedule: Schedule | None = None
        self.crawler: Pass | None = None
        self.index: Index | None = None
        self.listener: Listener | None = None
        self.deliverer: Deliverer | None = None  # sends the alerts' outbox
        self._deliveries: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        # the newest rematch a reload started; one runs at a time, so two never fetch one page
        self.rematching: asyncio.Task[None] | None = None
        self._rematch_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # cuts a wait short: a stop, a reload
        self._pending = 0
        self._rate = RateLimitedLog(log, 60.0)

    # ------------------------------------------------------------------ passes

    async def pass_outlet(self, name: str) -> None:
        """What an outlet's job runs: one pass of it on the shared crawler."""
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

    # ------------------------------------------------------------------ config

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
        old, self.cfg = self.cfg, new
        if self.crawler is not None:
            self.crawler.reconfigure(new)
        if self.schedule is not None:
            self.schedule.reconfigure(new)
        if self.deliverer is not None:
            self.deliverer.reconfigure(new)
        self._wake.set()
        log.info("config reloaded from %s (sha256 %s)", self.config_path, new.sha256[:12])
        self._rematch_for(changed_topics(old, new))
        return True

    def _rematch_for(self, wanted: dict[str, set[str]]) -> None:
        """Topics added or changed by a reload are tested on the pages fetched before (outlet ->
        its topics to test), in the background on the shared crawler."""
        if not wanted or self.crawler is None or self._stop.is_set():
            return
        self.rematching = asyncio.get_running_loop().create_task(self._rematch(wanted))

    async def _rematch(self, wanted: dict[str, set[str]]) -> None:
        topics = ", ".join(sorted({t for names in wanted.values() for t in names}))
        async with self._rematch_lock:
            if self.crawler is None or self._stop.is_set():
                return
            room = self._room_problem()
            if room is not None:
                log.warning("rematch for topics %s not started: %s (archiver rematch runs it by hand)", topics, room)
                return
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)  # stopping gives it the passes' grace
            log.info("rematch of the pages fetched before, for topics %s, starting", topics)
            try:
                r = await rematch(self.crawler, wanted)
            except Exception as e:  # one failed rematch, never the daemon
                log.exception("rematch for topics %s failed: %s", topics, e)
                return
            finally:
                self._running.discard(task)
        log.info("rematch for topics %s done: tested %d, now matching %d, fetched %d, promoted %d, failed %d",
                 topics, r.tested, r.matching, r.fetched, r.promoted, r.failed)

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

    def health(self) -> list[str]:
        """Every reason the daemon is not doing its job; empty when it is."""
        problems = self.schedule.problems() if self.schedule is not None else ["scheduler not running"]
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
            schedule = self.schedule
            m.set("archiver_up", 1 if schedule is not None and schedule.running else 0)
            m.set("archiver_job_store_errors_total", schedule.health.errors if schedule is not None else 0)
            if schedule is not None and schedule.last_fired is not None:
                # a pass started, or the outlet's previous one was found still running
                m.set("archiver_last_pass_start_timestamp_seconds", schedule.last_fired)
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

    async def _watch_schedule(self) -> None:
        while not self._stop.is_set():
            await self._pause(WATCH_EVERY)
            if self.schedule is not None and not self._stop.is_set():
                self.schedule.check()

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
        host, port = self.cfg.config.daemon.host_port
        self.listener = Listener(host, port, self._answer)
        self.listener.start()
        background: list[asyncio.Task[None]] = []
        with handle_signals(self._request_stop, self.reload, asyncio.get_running_loop()):
            try:
                if await self._wait_for_room():
                    await self._serve(background)
            finally:
                await self._stop_deliveries()
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                await self.listener.aclose()
                if self.schedule is not None:
                    self.schedule.shutdown()
                if self.crawler is not None:
                    await self.crawler.aclose()
                if self.deliverer is not None:
                    await self.deliverer.aclose()
                if self.index is not None:
                    self.index.close()
        log.info("stopped cleanly")
        return 0

    async def _stop_deliveries(self) -> None:
        """Let the delivery in flight end (each is bounded by its alert's timeout), then stop:
        what is not delivered stays in the outbox for the next start."""
        task, deliverer = self._deliveries, self.deliverer
        if task is None or deliverer is None:
            return
        deliverer.stop()
        longest = max((a.timeout for a in self.cfg.config.alerts), default=0.0) + 1.0
        _, pending = await asyncio.wait({task}, timeout=longest)
        for t in pending:
            t.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _serve(self, background: list[asyncio.Task[None]]) -> None:
        cfg = self.cfg
        root = cfg.storage_root
        self.index = open_archive(cfg)
        self.crawler = Pass(cfg, self.index, self._progress, observer=self._observe)
        self.deliverer = Deliverer(cfg, self.index)
        self.index.notify_queued(self.deliverer.wake)  # a capture with deliveries was committed
        self._deliveries = asyncio.create_task(self._keep("delivering alerts", self.deliverer.run))
        self.schedule = schedule = Schedule(cfg, "daemon", self.pass_outlet)
        schedule.start()  # when the job store fails, the watchdog tries again
        background.append(asyncio.create_task(self._keep("closing idle WARCs", self._close_idle_warc)))
        background.append(asyncio.create_task(self._keep("the scheduler's watchdog", self._watch_schedule)))
        host, port = cfg.config.daemon.host_port
        log.info("archiver daemon running: %d outlets, storage %s, health on http://%s:%d/healthz",
                 len(cfg.config.outlets), root, host, port)
        await self._stop.wait()
        log.info("stopping: no new passes; in-flight passes get %gs", self.cfg.config.daemon.shutdown_grace)
        schedule.pause()
        if self._running:
            done, pending = await asyncio.wait(set(self._running), timeout=self.cfg.config.daemon.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning("cancelled %d pass(es) still running after the grace period", len(pending))
        schedule.shutdown()
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn


    def main(self) -> int:
        """Run until stopped, on an event loop of its own."""
        os.makedirs(self.cfg.storage_root, exist_ok=True)
        return asyncio.run(self.run())
