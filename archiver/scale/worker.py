"""`archiver worker`: one worker process of a scaled setup.

It consumes the broker's discovery and fetch messages (tasks.py) with the same pass code as
`archiver run` (crawl.Pass), writing to its own spool `<storage root>/spool/<name>/`: WARC
files named `<prefix>-<name>-<timestamp>-<serial>.warc.gz`, so files of different workers
never collide and a file tells which worker wrote it (as Heritrix names them). Requests to a
host are spaced across all workers through turns kept in Redis (hostturns.py). Closed WARC
files are recorded in the index's `warc_files` table with their location and, with
`storage.ship_to` set, shipped to the shared store (ship.py).

All pass code runs on one asyncio loop in a thread of its own; Dramatiq's worker threads
hand it their tasks and wait for the result, so a task is acknowledged only once its
capture row is committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from .. import SOFTWARE
from . import frontier
from ..config import LoadedConfig
from ..claims import PassClaims
from ..crawl import Pass, _now
from ..discover import Candidate
from ..outletrun import OutletRun
from ..errors import ArchiverError
from .hostturns import RedisTurns
from ..index import Index, PassCounts
from ..recover import open_archive
from ..runtime import handle_signals, require_broker
from ..settings import Outlet
from .ship import Shipper, adopt_spool
from ..stores import store_for
from ..topics import TopicMatcher
from ..warc import WarcWriter
from ..warcfiles import store_settings

T = TypeVar("T")
log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


def default_worker_name() -> str:
    """The host name, made fit for a file name: a worker restarted on the same machine takes
    up its own spool (and repairs the file it left open)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "worker"
    return name[:40]


def spool_root(cfg: LoadedConfig, name: str) -> Path:
    return cfg.storage_root / "spool" / name


class FrontierClaims:
    """Claims across workers: the shared frontier says which candidate owns a final URL.
    Candidates that came from no frontier row (refetches) use the pass's own set."""

    def __init__(self, index: Index):
        self.index = index
        self._local = PassClaims()

    def kept_already(self, final_url: str, c: Candidate, run: OutletRun) -> bool:
        if c.frontier_id is None:
            return self._local.kept_already(final_url, c, run)
        owner = frontier.page_owner(self.index, final_url)
        return owner is not None and owner != c.frontier_id

    def claim(self, final_url: str, c: Candidate, run: OutletRun) -> bool:
        if c.frontier_id is None:
            return self._local.claim(final_url, c, run)
        return frontier.claim_page(self.index, final_url, c.frontier_id)


class ClusterPass(Pass):
    """A Pass whose candidates come from the shared frontier, one task at a time."""

    def __init__(self, cfg: LoadedConfig, index: Index, name: str, turns: RedisTurns | None):
        self.worker_name = name
        self.spool = spool_root(cfg, name)
        self.shipper: Shipper | None = None
        super().__init__(cfg, index, root=self.spool, new_writer=self._new_writer, claims=FrontierClaims(index),
                         turns=turns)
        self._matchers: dict[str, TopicMatcher] = {}
        self.broker: Any = None

    def _new_writer(self, cfg: LoadedConfig) -> WarcWriter:
        w = cfg.config.storage.warc
        writer = WarcWriter(spool_root(cfg, self.worker_name), f"{w.prefix}-{self.worker_name}", w.rotate_size,
                            self._warcinfo(cfg), w.compress_level, on_close=self._closed)
        return writer

    def _warcinfo(self, cfg: LoadedConfig) -> dict[str, str]:
        from ..capture import warcinfo_fields

        return {**warcinfo_fields(cfg), "archiver-worker": self.worker_name}

    def _closed(self, path: Path) -> None:
        """Record where a closed file lives, and hand it to the shipper when there is one."""
        self.index.record_warc_closed(path.name, self.worker_name, path.resolve().as_uri(), path.stat().st_size,
                                      _now())
        if self.shipper is not None:
            self.shipper.submit(path)

    def adopt_spool(self) -> None:
        adopt_spool(self.index, self.worker_name, self.spool / "warc", self._closed, self.shipper)

    def outlet_named(self, name: str) -> Outlet | None:
        return next((o for o in self.cfg.config.outlets if o.name == name), None)

    def run_for(self, outlet: Outlet, pass_id: int) -> OutletRun:
        """One task's view of an outlet's pass: its counts are the task's own (the scheduler
        adds them up from the rows), the matcher is built once per outlet."""
        m = self._matchers.get(outlet.name)
        if m is None:
            m = self._matchers[outlet.name] = TopicMatcher(self.cfg.topics_for(outlet))
        return OutletRun.start(outlet, pass_id, m)

    # ------------------------------------------------------------------ tasks

    async def discover_outlet(self, outlet_name: str, pass_id: int) -> None:
        from .tasks import send_fetches

        outlet = self.outlet_named(outlet_name)
        recorded = self.index.get_pass(pass_id)
        if outlet is None or recorded is None:
            log.warning("pass %s of outlet %s: not in this worker's config or index; skipped", pass_id, outlet_name)
            return
        if recorded.counts is None:  # not discovered yet (or the worker doing it died)
            run = self.run_for(outlet, pass_id)
            stats = run.stats
            candidates = await self.discover(run)
            todo = self.todo(run, candidates)
            frontier.add(self.index, outlet.name, pass_id, todo)
            await self.refetch_due(run, recorded.started_at)
            counts = PassCounts(discovered=len(candidates), skipped_known=stats.skipped_known, not_due=stats.not_due,
                                sitemap_too_old=stats.sitemap_too_old, refetched=stats.refetched,
                                unchanged=stats.unchanged, updated=stats.updated)
            self.index.record_pass(pass_id, counts, "; ".join(stats.errors[:5]) or None)
        # sent again on a redone discovery: a fetch of a settled row does nothing
        ids = frontier.unsettled(self.index, pass_id)
        await asyncio.get_running_loop().run_in_executor(None, send_fetches, self.broker, ids)
        log.info("%s: pass %d: %d candidates to fetch", outlet_name, pass_id, len(ids))

    async def fetch_one(self, frontier_id: int) -> None:
        got = frontier.claim(self.index, frontier_id, self.worker_name)
        if got is None:
            return
        outlet = self.outlet_named(got.outlet)
        if outlet is None:
            frontier.settle_without_capture(self.index, frontier_id)
            return
        await self.article(got.candidate, self.run_for(outlet, got.pass_id))
        if not frontier.is_settled(self.index, frontier_id):  # every path indexes a row; this is a guard
            frontier.settle_without_capture(self.index, frontier_id)


class WorkerProcess:
    def __init__(self, cfg: LoadedConfig, name: str, threads: int | None = None):
        scale = cfg.config.scale
        self.broker_url = require_broker(cfg)
        if not NAME_RE.match(name):
            raise ArchiverError(f"worker name {name!r}: use letters, digits, '.', '_' or '-' (at most 40)")
        self.cfg, self.name = cfg, name
        self.threads = threads or scale.worker_threads or cfg.config.fetch.concurrency
        spool = spool_root(cfg, name)
        spool.mkdir(parents=True, exist_ok=True)
        # only this worker's files: the spool is its own, the rows name every worker's files
        self.index = open_archive(cfg, spool, only_prefix=f"{cfg.config.storage.warc.prefix}-{name}-")
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="pass-loop", daemon=True)
        self._loop_thread.start()
        self.turns = self.call(self._make_turns(self.broker_url))
        self.crawler: ClusterPass = self.call(self._make_pass())
        store = store_for(store_settings(cfg.config.storage))
        if store is not None:
            self.crawler.shipper = Shipper(self.index, store, name)
        self.crawler.adopt_spool()

    async def _make_turns(self, url: str) -> RedisTurns:
        # a request lasts at most a few timeouts (connect, headers, body); past that an entry
        # left by a worker that died stops counting against the host
        return RedisTurns(url, in_flight_ttl=3 * self.cfg.config.fetch.timeout + 30)

    async def _make_pass(self) -> ClusterPass:
        return ClusterPass(self.cfg, self.index, self.name, self.turns)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def discover(self, outlet: str, pass_id: int) -> None:
        self.call(self.crawler.discover_outlet(outlet, pass_id))

    def fetch(self, frontier_id: int) -> None:
        self.call(self.crawler.fetch_one(frontier_id))

    def run(self) -> int:
        import dramatiq

        from .tasks import Heartbeat, declare, make_broker

        scale = self.cfg.config.scale
        broker = make_broker(self.broker_url, scale.requeue_after)
        self.crawler.broker = broker
        declare(broker, self.discover, self.fetch)
        stop = threading.Event()
        with handle_signals(stop.set):
            worker = dramatiq.Worker(broker, worker_threads=self.threads, worker_timeout=1000)
            beat = Heartbeat(broker, every=max(1.0, scale.requeue_after / 4))
            worker.start()
            beat.start()
            log.warning("worker %s: %d threads, spool %s, %s, index %s", self.name, self.threads,
                        self.crawler.spool, SOFTWARE, self.index.path)
            try:
                stop.wait()
            finally:
                log.warning("worker %s: stopping (tasks running are finished first)", self.name)
                worker.stop(timeout=int(self.cfg.config.fetch.timeout * 3 * 1000))
                beat.stop()
                self.call(self.crawler.aclose())  # closes the WARC file, which queues it for shipping
                if self.crawler.shipper is not None:
                    left = self.crawler.shipper.close()
                    if left:
                        log.warning("worker %s: %d closed WARC files not shipped yet; the next start ships them",
                                    self.name, left)
                self.call(self.turns.aclose())
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._loop_thread.join(timeout=10)
                self.index.close()
        log.warning("worker %s: stopped cleanly", self.name)
        return 0


def run_worker(cfg: LoadedConfig, name: str | None = None, threads: int | None = None) -> int:
    name = name or os.environ.get("ARCHIVER_WORKER_NAME") or default_worker_name()
    return WorkerProcess(cfg, name, threads).run()
