"""One archiving pass, per outlet: discover → filter → fetch → extract and decide → WARC →
text → index.

Pages are extracted and decided on (topics, block pages) before anything of them is
written: an off-topic page leaves only its index row, never WARC records. In capture modes
browser and auto a page may be rendered first (browser_capture.py); its rendered DOM is then
what is extracted, and what the browser fetched is held until the page is decided. `Pass` only
orchestrates; sources.py fetches and reads the outlet's feeds, sitemaps and listings,
capture.py writes what is kept (records, texts, rows, in that order of durability), and a
`Claims` decides which of two candidates leading to one page archives it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import SOFTWARE, __version__, faults
from .alerts import Alerts
from .blocked import block_reason
from .archived_requisites import ArchivedRequisites, Reused
from .browser_capture import BrowserCapture, Rendering, failure_reason, needs_browser
from .capture import DOM_TYPE, Decision, HowCaptured, Recorder, WriterFactory, local_writer
from .claims import Claims, PassClaims
from .config import LoadedConfig
from .discover import Candidate
from .errors import BlockedByPolicy, BrowserError, StorageError
from .extract import MAX_PAGE_BYTES, Extraction, extract_page
from .fetch import Fetcher, FetchResult, Response, host_credentials
from .index import DUPLICATE, FAILED, OFF_TOPIC, ROBOTS, CaptureRow, Index, PassCounts
from .outletrun import OutletRun, OutletStats, unexpected
from .page_requisites import PageRequisites
from .polite import Gates, SharedTurns, Ticket
from .recover import open_archive
from .rerender import FetchedAgain, rendered_before, same_rendering
from .settings import Outlet
from .sources import WELL_KNOWN_SITEMAPS, Sources, validators
from .lanes import Lanes
from .topics import TopicMatcher
from .clock import utc_now as _now
from .warc import WarcWriter, sha1_b32
from .warcfiles import WarcFiles, store_settings
from .procpool import ExtractorPool, WorkerDied

T = TypeVar("T")
log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass
class PassResult:
    outlets: list[OutletStats]
    warc_files: list[str]
    storage_root: Path
    worker_peak_mb: float = 0.0  # largest peak RSS of an extraction worker (0: none ran, or not Linux)
    browser_peak_mb: float = 0.0  # largest memory (PSS) of the browser's processes after a page (0: none ran)


Progress = Callable[[str, int, int], None]  # (event, advance, total-delta)
Observer = Callable[[int | None, str | None], None]  # after every exchange: (HTTP status, failure reason)


class Pass:
    """What the outlets of one pass share (fetcher, extraction pool, recorder, index) and the
    order of their stages. `root` is where WARCs and texts go (a worker's spool in a scaled
    setup), `new_writer` makes its WARC writer, `claims` settles duplicates, `turns` shares
    hosts' turns with other processes."""

    def __init__(self, cfg: LoadedConfig, index: Index, progress: Progress | None = None, *,
                 root: Path | None = None, new_writer: WriterFactory | None = None, claims: Claims | None = None,
                 turns: SharedTurns | None = None, observer: Observer | None = None):
        self.cfg = cfg
        self.index = index
        self.root = root or cfg.storage_root
        c = cfg.config
        self.fetcher = Fetcher(c.fetch, gates=Gates(c.fetch.per_host_concurrency, c.fetch.per_host_delay, turns),
                               credentials=host_credentials(c.outlets), observer=observer)
        self._retired: list[Fetcher] = []
        # feeds, sitemaps and listings are parsed in two threads: lxml parses outside the GIL,
        # and their results (candidate lists) are wanted here; articles go to worker processes
        self._parsers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="parse")
        self.extractors = ExtractorPool(c.extract.workers)
        # articles fetched and not yet written or dropped, across all outlets: memory stays
        # flat when fetching outpaces extraction (see polite.Ticket)
        self.places = asyncio.Semaphore(c.fetch.concurrency)
        self.recorder = Recorder(cfg, index, self.root, new_writer or local_writer)
        index.watch(Alerts.for_pass(cfg, self.root))  # deliveries queued with the capture rows
        self.warcs = WarcFiles.for_root(self.root, index, store_settings(c.storage))
        self.sources = Sources(self.recorder, index, self.warcs, self._off_loop)
        self.claims = claims or PassClaims()
        self.requisites = PageRequisites(self.recorder, index, self._off_loop)
        # started on the first page to render (capture modes browser and auto)
        self.browsers = BrowserCapture(c.capture.browser)
        self.archived = ArchivedRequisites(index, self.warcs)  # requisites the browser gets from the archive
        self.lanes = Lanes()  # each outlet pass's candidates, until fetched
        self.progress = progress or (lambda event, advance, total: None)
        # set when the WARCs or the index cannot be written (disk full): the passes running
        # stop taking candidates, since every fetch would be thrown away; a new pass tries again
        self.storage_failed: StorageError | None = None

    @property
    def writer(self) -> WarcWriter:
        return self.recorder.writer

    def reconfigure(self, cfg: LoadedConfig) -> None:
        """Use a new config from the next request on (the daemon's SIGHUP). Runs between awaits,
        so no capture is half written; a new config hash starts a new WARC with a new warcinfo."""
        old, self.cfg = self.cfg, cfg
        if cfg.config.fetch != old.config.fetch:
            old_fetcher = self.fetcher
            self._retired.append(old_fetcher)
            # the hosts' gates go on: a new set would forget every last request time
            self.fetcher = Fetcher(cfg.config.fetch, gates=old_fetcher.gates, observer=old_fetcher.observer)
            self.places = asyncio.Semaphore(cfg.config.fetch.concurrency)
        self.fetcher.use_credentials(host_credentials(cfg.config.outlets))
        self.recorder.reconfigure(cfg)
        self.index.watch(Alerts.for_pass(cfg, self.root))
        self.browsers.reconfigure(cfg.config.capture.browser)

    async def aclose(self) -> None:
        for f in (*self._retired, self.fetcher):
            await f.aclose()
        await self.browsers.aclose()
        self._parsers.shutdown(wait=True)
        self.extractors.shutdown()
        self.lanes.close()
        self.recorder.close()

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._parsers, fn, *args)

    def start(self, outlet: Outlet, pass_id: int) -> OutletRun:
        return OutletRun.start(outlet, pass_id, TopicMatcher(self.cfg.topics_for(outlet)))

    async def discover(self, run: OutletRun) -> list[Candidate]:
        return await self.sources.discover(self.fetcher, run)

    def todo(self, run: OutletRun, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates to fetch: not settled already, not waiting out an HTTP failure;
        those whose feed/sitemap title or summary already match first, so a long pass
        archives the likely articles early (the page still decides)."""
        urls = [c.url for c in candidates]
        known = self.index.known_articles(run.name, urls)
        waiting = self.index.failures_not_due(run.name, datetime.now(timezone.utc), urls)
        todo = [c for c in candidates if c.url not in known and c.url not in waiting]
        run.stats.skipped_known = sum(1 for c in candidates if c.url in known)
        run.stats.not_due = len(candidates) - len(todo) - run.stats.skipped_known
        todo.sort(key=lambda c: not run.matcher.match({"feed_title": c.title, "feed_summary": c.summary}))
        return todo

    # ------------------------------------------------------------------ articles

    def _article_failed(self, c: Candidate, run: OutletRun, reason: str, final: Any = None) -> None:
        run.stats.article_failed(c.url, reason)
        self.recorder.nothing(c.url, run, "article", FAILED, reason, via=c, final=final)

    async def article(self, c: Candidate, run: OutletRun, previous: CaptureRow | None = None) -> None:
        """Fetch a candidate; with `previous` (the URL's last capture) it is a conditional refetch.
        Whatever goes wrong with this one candidate is its failure row; the pass goes on (only
        storage failures, which would cost every later capture too, stop it)."""
        try:
            await self._candidate(c, run, previous)
        except StorageError:
            raise
        except Exception as e:
            self._article_failed(c, run, unexpected(e, f"article {c.url}"))

    async def _candidate(self, c: Candidate, run: OutletRun, previous: CaptureRow | None) -> None:
        full = self.index.latest(previous.final_url, ("article",)) if previous and previous.final_url else None
        # rendered again: its HTML may stay the same while its article changes (rerender.py)
        again = full if rendered_before(self.index, full, self.cfg.capture_mode(run.outlet)) else None
        ticket = Ticket(self.places)
        try:
            # extraction reads MAX_PAGE_BYTES at most: decoding more would only hold memory
            result = await self.fetcher.fetch(c.url, extra_headers=None if again else validators(full), ticket=ticket,
                                              max_decoded=min(MAX_PAGE_BYTES, self.cfg.config.fetch.max_decoded_bytes))
        except BaseException:
            ticket.release()
            raise
        try:
            faults.check("candidate", c.url)
            if previous and full and not again and self._refetch_same(result, c, run, previous, full):
                return
            kept = await self._fetched(result, c, run, previous, ticket, again)
            # the page keeps its place until its requisites are archived, so at most
            # fetch.concurrency pages are held; their fetches take no place, and a page waiting
            # for a place holds no host's turn (polite.HostGate), so none waits for another
            if kept is not None and self.cfg.capture_mode(run.outlet) in ("requisites", "auto"):
                await self._requisites(*kept, run)
        finally:
            result.close()
            ticket.release()
            self.progress("article", 1, 0)

    def _refetch_same(self, result: FetchResult, c: Candidate, run: OutletRun, previous: CaptureRow,
                      full: CaptureRow) -> bool:
        """Record a refetch that found no change (304, or the same payload); False if it changed."""
        final = result.final
        if result.error is not None or final is None or final.url != full.final_url:
            return False
        if final.status == 304:
            self.recorder.robots(result, run)
            self.recorder.not_modified(final, full, run, "article", url=c.url, previous_id=previous.id)
        elif final.status == 200 and sha1_b32(final.payload_sha1) == full.payload_digest:
            self.recorder.robots(result, run)
            self.recorder.unchanged(final, c, run, previous, full)
        else:
            return False
        run.stats.fetched += 1
        run.stats.unchanged += 1
        return True

    async def _fetched(self, result: FetchResult, c: Candidate, run: OutletRun, previous: CaptureRow | None = None,
                       ticket: Ticket | None = None, again: CaptureRow | None = None) -> tuple[Response, str] | None:
        """Extract (from the rendered DOM when the page is rendered), decide and keep (or not)
        a fetched candidate; a kept page that is not a block page nor rendered is returned
        with its response record id, for its requisites. `again` is the full capture of a
        page rendered before, refetched: the same payload and article text are unchanged."""
        rec, stats = self.recorder, run.stats
        rec.robots(result, run)
        final = result.final
        err = result.error
        if final is None or err is not None:
            if isinstance(err, BlockedByPolicy) and err.reason == "robots":
                stats.robots += 1
                rec.nothing(c.url, run, "article", ROBOTS, str(err), via=c)
            else:
                self._article_failed(c, run, str(err), final)
            return
        stats.fetched += 1
        ctype = final.content_type.split(";")[0].strip().lower()
        if final.status != 200:
            self._article_failed(c, run, f"HTTP {final.status} {final.reason}".strip(), final)
            return
        if ctype and ctype not in HTML_TYPES:
            self._article_failed(c, run, f"not an HTML page ({ctype})", final)
            return
        mode = self.cfg.capture_mode(run.outlet)
        ex: Extraction | None = None
        if mode != "browser":
            ex = await self._extract(final.body or b"", final.content_type, c, run, final)
            if ex is None:
                return
        how = HowCaptured(mode, f"capture mode {mode}")
        if mode == "auto":
            assert ex is not None
            why = needs_browser(ex, final.body or b"")
            how = HowCaptured("browser", why) if why else HowCaptured(
                "requisites", f"the static HTML holds the article ({len(ex.body_text.strip())} characters of text)")
        fetched: list[FetchResult] = []  # what the browser fetched, held until the page is decided
        browser: tuple[list[FetchResult], list[str], list[Reused]] | None = None
        try:
            if how.mode == "browser":
                # the page's place bounds pages fetched and waiting; the browser's requests must
                # not wait for places held by pages that wait for their hosts (see _candidate),
                # and pages_at_once bounds the pages rendering
                if ticket is not None:
                    ticket.release()
                page = await self._render(final, c, run, fetched, again)
                if page is None:
                    return
                how = dataclasses.replace(how, dom=page.dom, screenshot=page.screenshot, rendered_at=page.rendered_at)
                ex = await self._extract(page.dom, DOM_TYPE, c, run, final)
                if ex is None:
                    return
                browser = (fetched, page.blocked, page.reused)
            assert ex is not None
            if again is not None and previous is not None and same_rendering(final, again, ex):
                rec.unchanged(final, c, run, previous, again)  # what the browser fetched is dropped
                stats.unchanged += 1
                return None
            return self._decided(result, c, run, ex, previous, how, browser)
        finally:
            for r in fetched:
                r.close()

    async def _extract(self, body: bytes, content_type: str, c: Candidate, run: OutletRun,
                       final: Response) -> Extraction | None:
        """The page's extraction in a worker; None (and the failure row) when the worker died."""
        try:
            ex: Extraction = await self.extractors.run(extract_page, body, content_type)
        except WorkerDied as e:
            self._article_failed(c, run, str(e), final)
            log.warning("%s: %s: %s", run.name, final.url, e)
            return None
        faults.check("extract", final.url)
        return ex

    async def _render(self, final: Response, c: Candidate, run: OutletRun, fetched: list[FetchResult],
                      again: CaptureRow | None = None) -> Rendering | None:
        """The page rendered in the browser (`again`: its last capture, rendered too); None
        (and the failure row) when it could not be: a crash, hang or timeout costs this page only."""
        archived = FetchedAgain(self.archived, again.warc_record_id or "") if again else self.archived
        try:
            return await self.browsers.render(self.fetcher, final, self.cfg.config.capture.requisites, fetched,
                                              archived)
        except BrowserError as e:
            self._article_failed(c, run, failure_reason(e), final)
            log.warning("%s: %s: %s", run.name, final.url, failure_reason(e))
            return None
        finally:
            # the robots.txt files the browser's requests led to, whatever becomes of the page
            for r in fetched:
                self.recorder.robots(r, run)

    def _decided(self, result: FetchResult, c: Candidate, run: OutletRun, ex: Extraction,
                 previous: CaptureRow | None, how: HowCaptured,
                 browser: tuple[list[FetchResult], list[str], list[Reused]] | None) -> tuple[Response, str] | None:
        """Decide and keep (or not); `browser` holds what the browser fetched, refused and got
        from the archive for the page, archived and listed as its requisites when it is kept.
        Nothing here awaits."""
        rec, stats = self.recorder, run.stats
        final = result.final
        assert final is not None
        # checked after the last await: from here to the index row nothing else runs
        if self.claims.kept_already(final.url, c, run):
            rec.nothing(c.url, run, "article", DUPLICATE, f"same page as {final.url}, already archived in this pass",
                        via=c, final=final)
            return
        faults.check("decide", final.url)
        decision = self._decide(c, run, ex, final.status)
        if decision is None and previous is None and not self.cfg.config.storage.keep_off_topic:
            # what the page said stays: a topic added later is tested on it (rematch.py)
            rec.nothing(c.url, run, "article", OFF_TOPIC, None, via=c, final=final, page=ex)
            return
        # a new version of a kept article is kept even if it no longer matches: it is the record
        decision = decision or Decision([], {})
        if not decision.blocked and not self.claims.claim(final.url, c, run):
            rec.nothing(c.url, run, "article", DUPLICATE,
                        f"same page as {final.url}, being archived from another candidate", via=c, final=final)
            return
        kept = rec.keep(result, c, run, ex, decision, previous, how)
        if browser is not None:
            fetched, refused, reused = browser
            stats.requisites += rec.browser_requisites(fetched, refused, run, final.url, kept.response.record_id,
                                                       reused)
            stats.requisites_reused += len(reused)
        if decision.blocked:
            stats.blocked += 1
            log.warning("%s: %s served a block page (%s); kept as evidence, will retry", run.name, final.url,
                        decision.blocked)
        elif previous is not None:
            stats.updated += 1
        else:
            stats.archived += 1
        return None if decision.blocked or browser is not None else (final, kept.response.record_id)

    async def _requisites(self, page: Response, page_record_id: str, run: OutletRun) -> None:
        """The kept page's requisites; whatever goes wrong there is theirs, not the page's,
        which is archived already."""
        try:
            got = await self.requisites.capture(self.fetcher, page, page_record_id, run,
                                                self.cfg.config.capture.requisites)
        except StorageError:
            raise
        except Exception as e:
            run.stats.errors.append(unexpected(e, f"requisites of {page.url}"))
            return
        run.stats.requisites += got.fetched
        run.stats.requisites_reused += got.reused
        run.stats.requisites_failed += got.failed

    def _decide(self, c: Candidate, run: OutletRun, ex: Extraction, status: int) -> Decision | None:
        """On topic (the page's title and body decide; every place each matched term was seen,
        feed hints included, is recorded), a block page, or None: off topic."""
        seen = run.matcher.terms_in({"feed_title": c.title, "feed_summary": c.summary, "page_title": ex.title,
                                     "body": ex.body_text})
        on_page = {t: ws for t, ws in ((t, [w for w in ws if w in ("page_title", "body")]) for t, ws in seen.items())
                   if ws}
        page = run.matcher.decide(on_page)
        blocked = block_reason(status, ex.page_text, ex.body_text)
        if blocked:
            return Decision([], {}, blocked)
        if not page:
            return None
        run.stats.on_topic += 1
        return Decision(page.topics, {t: seen[t] for t in page.matched})

    # ------------------------------------------------------------------ outlet pass

    async def refetch_due(self, run: OutletRun, pass_started: str) -> None:
        due = self.index.due_for_refetch(run.name, self.cfg.config.refetch.after, _now(), pass_started)
        if not due:
            return
        self.progress("discovered", 0, len(due))
        sem = asyncio.Semaphore(self.cfg.config.fetch.concurrency)

        async def one(url: str) -> None:
            previous = self.index.last_in_chain(url)
            if previous is None:
                return
            run.stats.refetched += 1
            c = Candidate(url, previous.discovered_via_url or url, "refetch",
                          via_record_id=previous.discovered_via_record_id)
            async with sem:
                await self.article(c, run, previous=previous)

        await _all_or_none(one(url) for url, _ in due)

    async def outlet(self, outlet: Outlet, given: list[Candidate] | None = None) -> OutletStats:
        """One pass of the outlet: what discovery finds and is not settled yet, then the
        refetches due. With `given`, just those candidates instead (pages fetched before and
        found again otherwise: a rematch), fetched, decided and kept like discovered ones."""
        started = _now()
        self.storage_failed = None
        run = self.start(outlet, self.index.start_pass(outlet.name, started, SOFTWARE, self.cfg.sha256))
        stats, error, lane = run.stats, None, self.lanes.lane()
        run.archived = lane.pages
        try:
            if given is None:
                candidates = await self.discover(run)
                stats.discovered = len(candidates)
                lane.add(self.todo(run, candidates))
                del candidates  # on disk now, read back a batch at a time
            else:
                stats.discovered = len(given)
                lane.add(given)
            self.progress("discovered", 0, len(lane))
            # a bounded worker pool: never more candidate tasks alive than fetch slots allow
            async def worker() -> None:
                while self.storage_failed is None:
                    c = lane.take()
                    if c is None:
                        return
                    await self.article(c, run)
                raise self.storage_failed

            await _all_or_none(worker() for _ in range(min(len(lane), self.cfg.config.fetch.concurrency)))
            if given is None:
                await self.refetch_due(run, started)
        except StorageError as e:
            self.storage_failed = self.storage_failed or e
            error = f"storage: {e}"
            stats.errors.append(error)
            log.error("%s: pass stopped, nothing more is written: %s", outlet.name, e)
            raise
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            stats.errors.append(error)
            log.exception("%s: pass failed", outlet.name)
            raise
        finally:
            try:
                self.index.record_pass(run.pass_id, PassCounts(**stats.counts()),
                                       error or ("; ".join(stats.errors[:5]) or None), ended_at=_now())
            except StorageError as e:  # the index may be on the disk that filled up
                log.error("%s: pass end not recorded: %s", outlet.name, e)
            lane.close()
        return stats


async def _all_or_none(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; when one fails (the disk is full) or the pass is
    cancelled, the others are cancelled and awaited before the error goes on. With a plain
    gather they would go on fetching and writing after their pass ended, beside the next
    pass of the same outlet, and archive its articles a second time."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def run_pass(cfg: LoadedConfig, progress: Progress | None = None,
                   outlets: list[str] | None = None) -> PassResult:
    """Run one pass over every (or the named) outlet; returns per-outlet statistics."""
    index = open_archive(cfg)  # a previous run may have been killed mid-write
    p = Pass(cfg, index, progress)
    try:
        chosen = [o for o in cfg.config.outlets if not outlets or o.name in outlets]
        results = await asyncio.gather(*(p.outlet(o) for o in chosen), return_exceptions=True)
        stats: list[OutletStats] = []
        for o, r in zip(chosen, results):
            if isinstance(r, BaseException):
                s = OutletStats(o.name)
                s.errors.append(f"{type(r).__name__}: {r}")
                if not isinstance(r, Exception):
                    raise r
                stats.append(s)
            else:
                stats.append(r)
    finally:
        await p.aclose()
        index.close()
    return PassResult(stats, p.writer.closed_files, cfg.storage_root, p.extractors.peak_worker_mb,
                      p.browsers.peak_mb)


__all__ = ["run_pass", "Pass", "PassResult", "OutletStats", "OutletRun", "WELL_KNOWN_SITEMAPS", "__version__"]
