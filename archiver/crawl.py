"""One archiving pass: discover → filter → fetch → WARC → extract → provenance, per outlet.

Order of durability for every capture: WARC records written and flushed, then text files
written, then the index row committed. A crash between steps leaves at worst records
without a row (found again by `fsck`), never a row pointing at nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import SOFTWARE, __version__, faults
from .blocked import block_reason
from .config import LoadedConfig, Outlet
from .decode import decode_text, maybe_gunzip
from .discover import (Candidate, DiscoveryError, SitemapResult, listing_links, parse_feed, parse_sitemap,
                       search_urls)
from .errors import BlockedByPolicy, StorageError, os_reason
from .extract import MAX_PAGE_BYTES, Extraction, extract_page
from .fetch import Fetcher, FetchResult, Response
from .index import (ARCHIVED, BLOCKED, DUPLICATE, FAILED, NOT_MODIFIED, OFF_TOPIC, ROBOTS, UNCHANGED,
                    CaptureRow, Index)
from .polite import Ticket
from .recover import repair_storage
from .topics import TopicMatcher
from .urls import host_key, slug
from .warc import RecordRef, WarcWriter, read_payload, sha1_b32, utc_now as _now, warc_date as _iso
from .warcfiles import WarcFiles, store_settings
from .workers import ExtractorPool, WorkerDied

T = TypeVar("T")
log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
# tried, in this order, when `sitemaps: [auto]` finds no Sitemap line in robots.txt
WELL_KNOWN_SITEMAPS = ("/sitemap.xml", "/sitemap_index.xml", "/sitemap-index.xml", "/news-sitemap.xml",
                       "/sitemap_news.xml")
MAX_LISTED_FAILURES = 20  # failed articles a pass summary names (all are in the index)


@dataclass
class OutletStats:
    outlet: str
    discovered: int = 0
    on_topic: int = 0
    fetched: int = 0
    archived: int = 0
    robots: int = 0
    failed: int = 0
    blocked: int = 0
    skipped_known: int = 0
    not_due: int = 0  # candidates whose HTTP failures say not yet, or never (retry.py)
    refetched: int = 0  # kept articles fetched again by the refetch policy
    unchanged: int = 0  # ... of which had not changed (304 or the same payload)
    updated: int = 0  # ... of which had changed: a new capture linked to the previous one
    errors: list[str] = field(default_factory=list)  # discovery documents' and the pass's problems
    failures: list[str] = field(default_factory=list)  # the first failed articles, with their reasons
    # final URLs archived in this pass: two candidates redirecting to one page give one capture
    archived_urls: set[str] = field(default_factory=set, repr=False)

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("discovered", "on_topic", "fetched", "archived", "robots",
                                               "failed", "blocked", "skipped_known", "not_due", "refetched",
                                               "unchanged", "updated")}


@dataclass
class Document:
    """A discovery document's decoded body and the record id its candidates will cite."""

    url: str
    body: bytes
    content_type: str
    record_id: str
    capture_id: int  # the index row of this fetch, where a parse failure is noted


@dataclass
class PassResult:
    outlets: list[OutletStats]
    warc_files: list[str]
    storage_root: Path
    worker_peak_mb: float = 0.0  # largest peak RSS of an extraction worker (0: none ran, or not Linux)


Progress = Callable[[str, int, int], None]  # (event, advance, total-delta)


def _warc_date_of(row: CaptureRow) -> str:
    """The WARC-Date of a row's response record (fetched_at is written from the same instant)."""
    return row.fetched_at


def warcinfo_fields(cfg: LoadedConfig) -> dict[str, str]:
    f = cfg.config.fetch
    return {
        "software": SOFTWARE,
        "operator": cfg.config.storage.warc.operator,
        "http-header-user-agent": f.user_agent,
        "robots": "obey" if f.respect_robots else "ignore",
        "isPartOf": "archiver",
        "description": "news archiving pass",
        "archiver-config-sha256": cfg.sha256,
    }


def credentials(cfg: LoadedConfig) -> dict[str, dict[str, str]]:
    """Per host, the credential headers of the outlet(s) naming that host."""
    out: dict[str, dict[str, str]] = {}
    for outlet in cfg.config.outlets:
        headers = outlet.credential_headers()
        if headers:
            for host in outlet.hosts():
                out.setdefault(host, {}).update(headers)
    return out


class Pass:
    """State shared by the outlets of one pass: fetcher, WARC writer, index."""

    def __init__(self, cfg: LoadedConfig, index: Index, progress: Progress | None = None):
        self.cfg = cfg
        self.index = index
        self.root = cfg.storage_root
        self.warcs = WarcFiles.for_root(self.root, index, store_settings(cfg.config.storage))
        c = cfg.config
        self.fetcher = Fetcher(c.fetch)
        self.fetcher.credentials = credentials(cfg)
        self._retired: list[Fetcher] = []
        # feeds, sitemaps and listings are parsed in two threads: lxml parses outside the GIL,
        # and their results (candidate lists) are wanted here; articles go to worker processes
        self._parsers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="parse")
        self.extractors = ExtractorPool(c.extract.workers)
        # articles fetched and not yet written or dropped, across all outlets: memory stays
        # flat when fetching outpaces extraction (see polite.Ticket)
        self.places = asyncio.Semaphore(c.fetch.concurrency)
        self.writer = self._new_writer(cfg)
        self.progress = progress or (lambda event, advance, total: None)
        # set when the WARCs or the index cannot be written (disk full): the passes running
        # stop taking candidates, since every fetch would be thrown away; a new pass tries again
        self.storage_failed: StorageError | None = None

    def _new_writer(self, cfg: LoadedConfig) -> WarcWriter:
        w = cfg.config.storage.warc
        return WarcWriter(self.root, w.prefix, w.rotate_size, warcinfo_fields(cfg), w.compress_level)

    def reconfigure(self, cfg: LoadedConfig) -> None:
        """Use a new config from the next request on (the daemon's SIGHUP). Runs between awaits,
        so no capture is half written; a new config hash starts a new WARC with a new warcinfo."""
        old, self.cfg = self.cfg, cfg
        if cfg.config.fetch != old.config.fetch:
            observer = self.fetcher.observer
            self._retired.append(self.fetcher)
            # the hosts' gates go on: a new set would forget every last request time
            self.fetcher = Fetcher(cfg.config.fetch, gates=self.fetcher.gates)
            self.fetcher.observer = observer
            self.places = asyncio.Semaphore(cfg.config.fetch.concurrency)
        self.fetcher.credentials = credentials(cfg)
        if cfg.sha256 != old.sha256:
            self.writer.close()
            closed, written = self.writer.closed_files, self.writer.bytes_written
            self.writer = self._new_writer(cfg)
            self.writer.closed_files, self.writer.bytes_written = closed, written

    async def aclose(self) -> None:
        for f in (*self._retired, self.fetcher):
            await f.aclose()
        self._parsers.shutdown(wait=True)
        self.extractors.shutdown()
        self.writer.close()

    # ------------------------------------------------------------------ archiving helpers

    def _archive(self, resp: Response) -> tuple[RecordRef, RecordRef]:
        return self.writer.write_exchange(resp.url, resp.started, resp.ip, resp.request_bytes, resp.raw,
                                          resp.raw_length, resp.block_sha1, resp.payload_sha1, resp.truncated)

    def _row_for(self, resp: Response, outlet: str, kind: str, state: str, pass_id: int,
                 refs: tuple[RecordRef, RecordRef] | None, **extra: object) -> CaptureRow:
        row = CaptureRow(outlet=outlet, kind=kind, state=state, url=resp.url, final_url=resp.url,
                         status=resp.status, fetched_at=_iso(resp.started), pass_id=pass_id,
                         payload_digest=sha1_b32(resp.payload_sha1), content_type=resp.content_type or None,
                         truncated=resp.truncated, ip_address=resp.ip, etag=resp.headers.get("etag"),
                         last_modified=resp.headers.get("last-modified"))
        if refs is not None:
            req, res = refs
            row.warc_file, row.warc_offset, row.warc_length = res.warc_file, res.offset, res.length
            row.warc_record_id, row.request_record_id = res.record_id, req.record_id
        for k, v in extra.items():
            setattr(row, k, v)
        return row

    def _archive_plain(self, resp: Response, outlet: str, kind: str, pass_id: int,
                       via: Candidate | None = None) -> CaptureRow:
        """Archive a discovery document or robots.txt and index it."""
        refs = self._archive(resp)
        self.writer.flush()
        row = self._row_for(resp, outlet, kind, ARCHIVED, pass_id, refs)
        if via is not None:
            row.discovered_via_url, row.discovered_via_record_id = via.via_url, via.via_record_id
        self.index.add(row)
        return row

    def _archive_robots(self, result: FetchResult, outlet: str, pass_id: int) -> None:
        for r in result.robots:
            self._archive_plain(r, outlet, "robots", pass_id)

    def _fail(self, url: str, outlet: str, kind: str, pass_id: int, state: str, error: str | None,
              via: Candidate | None = None, final: Response | None = None) -> None:
        """Index a capture attempt that left nothing in the WARC (failed, off topic, robots, ...)."""
        row = CaptureRow(outlet=outlet, kind=kind, state=state, url=url, fetched_at=_now(), pass_id=pass_id,
                         error=error)
        if final is not None:
            row.final_url, row.status, row.fetched_at = final.url, final.status, _iso(final.started)
            row.content_type = final.content_type or None
        if via is not None:
            row.discovered_via_url, row.discovered_via_record_id = via.via_url, via.via_record_id
        self.index.add(row, frontier_id=via.frontier_id if via is not None and kind == "article" else None)

    def _article_failed(self, c: Candidate, outlet: str, pass_id: int, stats: OutletStats, reason: str,
                        final: Response | None = None) -> None:
        stats.failed += 1
        if len(stats.failures) < MAX_LISTED_FAILURES:
            stats.failures.append(f"{c.url}: {reason}")
        self._fail(c.url, outlet, "article", pass_id, FAILED, reason, via=c, final=final)

    # ------------------------------------------------------------------ discovery

    def _validators(self, prev: CaptureRow | None) -> dict[str, str] | None:
        if prev is None:
            return None
        headers = {}
        if prev.etag:
            headers["If-None-Match"] = prev.etag
        if prev.last_modified:
            headers["If-Modified-Since"] = prev.last_modified
        return headers or None

    def _not_modified(self, resp: Response, prev: CaptureRow, outlet: str, kind: str, pass_id: int,
                      url: str | None = None, previous_id: int | None = None) -> CaptureRow:
        """A 304 to a conditional request: a server-not-modified revisit (or nothing), and a row.
        `prev` is the full capture the revisit refers to; `previous_id` the capture it follows."""
        row = self._row_for(resp, outlet, kind, NOT_MODIFIED, pass_id, None,
                            previous_capture_id=previous_id if previous_id is not None else prev.id,
                            revisit_of=prev.warc_record_id, payload_digest=prev.payload_digest)
        if url is not None:
            row.url = url
        if self.cfg.config.daemon.not_modified == "revisit":
            assert prev.warc_record_id and prev.payload_digest and prev.final_url
            resp.raw.seek(0)
            refs = self.writer.write_revisit(resp.url, resp.started, resp.ip, resp.request_bytes,
                                             resp.raw.read(resp.raw_length), "server-not-modified",
                                             prev.warc_record_id, prev.final_url, _warc_date_of(prev),
                                             prev.payload_digest)
            self.writer.flush()
            req, rev = refs
            row.warc_file, row.warc_offset, row.warc_length = rev.warc_file, rev.offset, rev.length
            row.warc_record_id, row.request_record_id = rev.record_id, req.record_id
        self.index.add(row)
        return row

    async def _fetch_document(self, url: str, outlet: str, kind: str, pass_id: int,
                              stats: OutletStats, probe: bool = False) -> Document | None:
        """Fetch and archive a discovery document, conditionally when we have it already.
        A `probe` (a well-known sitemap path tried on the off chance) that is not there is
        archived like any answer but is no problem worth reporting."""
        prev = self.index.latest(url, (kind,))
        result = await self.fetcher.fetch(url, extra_headers=self._validators(prev))
        try:
            faults.check("document", url)
            self._archive_robots(result, outlet, pass_id)
            for hop in result.hops[:-1]:
                faults.check("redirect", hop.url)
                self._archive_plain(hop, outlet, "redirect", pass_id)
            final = result.final
            if result.error is not None or final is None:
                err = result.error
                state = ROBOTS if isinstance(err, BlockedByPolicy) and err.reason == "robots" else FAILED
                if final is not None:
                    self._archive_plain(final, outlet, kind, pass_id)
                self._fail(url, outlet, kind, pass_id, state, str(err))
                stats.errors.append(f"{kind}: {err}")
                log.warning("%s: %s %s not usable: %s", outlet, kind, url, err)
                return None
            if final.status == 304 and prev is not None and prev.final_url == final.url:
                nm = self._not_modified(final, prev, outlet, kind, pass_id)
                # unchanged: read the candidates again from the capture we have, so earlier
                # failures are retried; known articles are skipped later anyway
                assert prev.warc_file is not None and prev.warc_offset is not None
                body = await self._off_loop(self._stored_payload, prev)
                return Document(final.url, body, prev.content_type or "", prev.warc_record_id or "", nm.id or 0)
            row = self._archive_plain(final, outlet, kind, pass_id)
            if final.status != 200:
                if probe:
                    log.info("%s: no sitemap at %s (HTTP %d)", outlet, url, final.status)
                    return None
                stats.errors.append(f"{kind}: {url}: HTTP {final.status}")
                log.warning("%s: %s %s answered HTTP %d", outlet, kind, url, final.status)
                return None
            assert row.warc_record_id is not None
            return Document(final.url, final.body or b"", final.content_type, row.warc_record_id, row.id or 0)
        finally:
            result.close()

    def _unusable(self, doc: Document, problem: str, outlet: str, stats: OutletStats) -> None:
        """A discovery document was archived but could not be read, or not all of it: say why,
        in the log and on its row."""
        stats.errors.append(problem)
        log.warning("%s: %s", outlet, problem)
        self.index.note_error(doc.capture_id, problem)

    def _document_failed(self, e: Exception, url: str, doc: Document | None, outlet: str, kind: str,
                         pass_id: int, stats: OutletStats) -> None:
        """An unexpected exception while fetching or reading one discovery document: that
        document's failure (on its row if it was archived, else a failed row), not the pass's."""
        reason = _unexpected(e, f"{kind} {url}")
        if doc is not None:
            self._unusable(doc, reason, outlet, stats)
        else:
            stats.errors.append(reason)
            self._fail(url, outlet, kind, pass_id, FAILED, reason)

    def _stored_payload(self, row: CaptureRow) -> bytes:
        """The entity body of an earlier capture, wherever its WARC file is now."""
        assert row.warc_file is not None and row.warc_offset is not None
        with self.warcs.open_record(row.warc_file, row.warc_offset, row.warc_length) as f:
            _, body = read_payload(f, self.cfg.config.fetch.max_decoded_bytes)
        return body

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._parsers, fn, *args)

    async def discover(self, outlet: Outlet, pass_id: int, stats: OutletStats) -> list[Candidate]:
        limits = self.cfg.config.discover
        found: dict[str, Candidate] = {}

        def add(cands: list[Candidate], record_id: str) -> None:
            for c in cands:
                c.via_record_id = record_id
                prev = found.get(c.url)
                if prev is None:
                    if len(found) < limits.max_candidates_per_outlet:
                        found[c.url] = c
                elif not prev.title and c.title:  # a feed's title/summary beats a bare sitemap entry
                    prev.title, prev.summary = c.title, c.summary or prev.summary

        async def feed(url: str) -> None:
            got = None
            try:
                got = await self._fetch_document(url, outlet.name, "feed", pass_id, stats)
                if got is None:
                    return
                faults.check("parse", url)
                try:
                    # parsed off the event loop: a huge feed must not stall the other fetches
                    parsed = await self._off_loop(parse_feed, got.body, url, got.content_type)
                except DiscoveryError as e:
                    self._unusable(got, str(e), outlet.name, stats)
                    return
                if parsed.problem:
                    self._unusable(got, parsed.problem, outlet.name, stats)
                add(parsed.entries, got.record_id)
            except StorageError:
                raise
            except Exception as e:
                self._document_failed(e, url, got, outlet.name, "feed", pass_id, stats)

        async def page(url: str, kind: str) -> None:
            got = None
            try:
                got = await self._fetch_document(url, outlet.name, kind, pass_id, stats)
                if got is None:
                    return
                faults.check("parse", url)
                text = decode_text(got.body, got.content_type).text
                add(await self._off_loop(listing_links, text, got.url, kind), got.record_id)
            except StorageError:
                raise
            except Exception as e:
                self._document_failed(e, url, got, outlet.name, kind, pass_id, stats)

        sitemap_urls = [u for u in outlet.sitemaps if u != "auto"]
        probes: list[str] = []  # well-known paths tried when robots.txt names no sitemap
        if "auto" in outlet.sitemaps:
            base = outlet.home or next(iter(outlet.feeds + outlet.pages + sitemap_urls), None)
            if base is None and outlet.search:
                base = outlet.search[0].replace("{query}", "")
            if base is not None:
                rules, fetched_now = await self.fetcher.robots.rules(base)
                for r in fetched_now:
                    self._archive_plain(r, outlet.name, "robots", pass_id)
                    r.close()
                named = [u for u in rules.sitemaps() if u not in sitemap_urls]
                if named:
                    sitemap_urls.extend(named)
                else:
                    probes = [u for u in (host_key(base) + p for p in WELL_KNOWN_SITEMAPS) if u not in sitemap_urls]

        async def sitemaps() -> None:
            queue = list(sitemap_urls) + probes
            seen: set[str] = set()
            while queue and len(seen) < limits.max_sitemaps_per_outlet:
                url = queue.pop(0)
                if url in seen:
                    continue
                seen.add(url)
                got = None
                try:
                    got = await self._fetch_document(url, outlet.name, "sitemap", pass_id, stats,
                                                     probe=url in probes)
                    if got is None:
                        continue
                    faults.check("parse", url)
                    try:
                        sm = await self._off_loop(_read_sitemap, got.body, url,
                                                  self.cfg.config.fetch.max_decoded_bytes, limits.max_age_days)
                    except DiscoveryError as e:
                        if url in probes:  # a soft 404 page at a guessed path says nothing
                            self.index.note_error(got.capture_id, str(e))
                        else:
                            self._unusable(got, str(e), outlet.name, stats)
                        continue
                    if sm.problem:
                        self._unusable(got, sm.problem, outlet.name, stats)
                    add(sm.urls, got.record_id)
                    queue.extend(u for u in sm.sitemaps if u not in seen)
                except StorageError:
                    raise
                except Exception as e:
                    self._document_failed(e, url, got, outlet.name, "sitemap", pass_id, stats)

        terms = sorted({t for topic in self.cfg.topics_for(outlet) for t in (*topic.any, *topic.all)})
        jobs = [feed(u) for u in outlet.feeds]
        jobs += [page(u, "page") for u in outlet.listing_pages()]
        jobs += [page(u, "search") for tpl in outlet.search for u in search_urls(tpl, terms)]
        jobs.append(sitemaps())
        await asyncio.gather(*jobs)
        return list(found.values())

    # ------------------------------------------------------------------ articles

    async def article(self, c: Candidate, outlet: Outlet, matcher: TopicMatcher, pass_id: int,
                      stats: OutletStats, previous: CaptureRow | None = None) -> None:
        """Fetch a candidate; with `previous` (the URL's last capture) it is a conditional refetch.
        Whatever goes wrong with this one candidate is its failure row; the pass goes on (only
        storage failures, which would cost every later capture too, stop it)."""
        try:
            await self._candidate(c, outlet, matcher, pass_id, stats, previous)
        except StorageError:
            raise
        except Exception as e:
            self._article_failed(c, outlet.name, pass_id, stats, _unexpected(e, f"article {c.url}"))

    async def _candidate(self, c: Candidate, outlet: Outlet, matcher: TopicMatcher, pass_id: int,
                         stats: OutletStats, previous: CaptureRow | None = None) -> None:
        full = self.index.latest(previous.final_url, ("article",)) if previous and previous.final_url else None
        ticket = Ticket(self.places)
        try:
            # extraction reads MAX_PAGE_BYTES at most: decoding more would only hold memory
            result = await self.fetcher.fetch(c.url, extra_headers=self._validators(full), ticket=ticket,
                                              max_decoded=min(MAX_PAGE_BYTES, self.cfg.config.fetch.max_decoded_bytes))
        except BaseException:
            ticket.release()
            raise
        try:
            faults.check("candidate", c.url)
            if previous is not None and full is not None and await self._refetch_same(result, c, outlet, pass_id,
                                                                                       stats, previous, full):
                return
            await self._article(result, c, outlet, matcher, pass_id, stats, previous)
        finally:
            result.close()
            ticket.release()
            self.progress("article", 1, 0)

    async def _refetch_same(self, result: FetchResult, c: Candidate, outlet: Outlet, pass_id: int,
                            stats: OutletStats, previous: CaptureRow, full: CaptureRow) -> bool:
        """Record a refetch that found no change (304, or the same payload); False if it changed."""
        final = result.final
        if result.error is not None or final is None or final.url != full.final_url:
            return False
        if final.status == 304:
            self._archive_robots(result, outlet.name, pass_id)
            self._not_modified(final, full, outlet.name, "article", pass_id, url=c.url, previous_id=previous.id)
        elif final.status == 200 and sha1_b32(final.payload_sha1) == full.payload_digest:
            self._archive_robots(result, outlet.name, pass_id)
            final.raw.seek(0)
            req, rev = self.writer.write_revisit(
                final.url, final.started, final.ip, final.request_bytes, final.raw.read(final.head_length),
                "identical-payload-digest", full.warc_record_id or "", full.final_url or "", _warc_date_of(full),
                full.payload_digest or "")
            self.writer.flush()
            self.index.add(self._row_for(
                final, outlet.name, "article", UNCHANGED, pass_id, (req, rev), url=c.url,
                previous_capture_id=previous.id, revisit_of=full.warc_record_id, topics=full.topics,
                matched=full.matched, discovered_via_url=c.via_url, discovered_via_record_id=c.via_record_id))
        else:
            return False
        stats.fetched += 1
        stats.unchanged += 1
        return True

    async def _article(self, result: FetchResult, c: Candidate, outlet: Outlet, matcher: TopicMatcher,
                       pass_id: int, stats: OutletStats, previous: CaptureRow | None = None) -> None:
        name = outlet.name
        self._archive_robots(result, name, pass_id)
        final = result.final
        err = result.error
        if final is None or err is not None:
            if isinstance(err, BlockedByPolicy) and err.reason == "robots":
                stats.robots += 1
                self._fail(c.url, name, "article", pass_id, ROBOTS, str(err), via=c)
            else:
                self._article_failed(c, name, pass_id, stats, str(err), final)
            return
        stats.fetched += 1
        ctype = final.content_type.split(";")[0].strip().lower()
        if final.status != 200:
            self._article_failed(c, name, pass_id, stats, f"HTTP {final.status} {final.reason}".strip(), final)
            return
        if ctype and ctype not in HTML_TYPES:
            self._article_failed(c, name, pass_id, stats, f"not an HTML page ({ctype})", final)
            return
        try:
            ex: Extraction = await self.extractors.run(extract_page, final.body or b"", final.content_type)
        except WorkerDied as e:
            self._article_failed(c, name, pass_id, stats, str(e), final)
            log.warning("%s: %s: %s", name, final.url, e)
            return
        faults.check("extract", final.url)
        # checked after the last await: from here to the index row nothing else runs
        if self._kept_already(final.url, c, stats):
            self._fail(c.url, name, "article", pass_id, DUPLICATE,
                       f"same page as {final.url}, already archived in this pass", via=c, final=final)
            return
        # the page decides; every place each matched term was seen, feed hints included, is recorded
        faults.check("decide", final.url)
        seen = matcher.terms_in({"feed_title": c.title, "feed_summary": c.summary, "page_title": ex.title,
                                 "body": ex.body_text})
        on_page = {t: ws for t, ws in ((t, [w for w in ws if w in ("page_title", "body")]) for t, ws in seen.items())
                   if ws}
        page = matcher.decide(on_page)
        blocked = block_reason(final.status, ex.page_text, ex.body_text)
        if page and not blocked:
            page.matched = {t: seen[t] for t in page.matched}
            stats.on_topic += 1
        # a new version of a kept article is kept even if it no longer matches: it is the record
        keep = blocked is not None or bool(page) or previous is not None or self.cfg.config.storage.keep_off_topic
        if not keep:
            self._fail(c.url, name, "article", pass_id, OFF_TOPIC, None, via=c, final=final)
            return
        self._keep(result, c, name, pass_id, ex, page.topics if not blocked else [],
                   page.matched if not blocked else {}, blocked, stats, previous)

    def _keep(self, result: FetchResult, c: Candidate, outlet: str, pass_id: int, ex: Extraction,
              topics: list[str], matched: dict[str, list[str]], blocked: str | None, stats: OutletStats,
              previous: CaptureRow | None = None) -> None:
        final = result.final
        assert final is not None
        if not blocked and not self._claim(final.url, c, stats):
            self._fail(c.url, outlet, "article", pass_id, DUPLICATE,
                       f"same page as {final.url}, being archived from another candidate", via=c, final=final)
            return
        redirect_ids = []
        for hop in result.hops[:-1]:
            faults.check("redirect", hop.url)
            _, hop_ref = self._archive(hop)
            redirect_ids.append(hop_ref.record_id)
        refs = self._archive(final)
        faults.check("keep", final.url)
        resp_ref = refs[1]
        now = datetime.now(timezone.utc)
        article_bytes = ex.article_text.encode("utf-8")
        conv = self.writer.write_conversion(final.url, now, resp_ref.record_id, article_bytes)
        meta = [("via", c.via_url), ("via-record-id", c.via_record_id or ""), ("via-kind", c.via_kind),
                ("outlet", outlet), ("topics", ", ".join(topics))]
        meta += [("matched", f"{term} in {', '.join(where)}") for term, where in sorted(matched.items())]
        meta += [("extractor", f"{ex.extractor}/{ex.extractor_version}"), ("renderer", ex.renderer),
                 ("conversion-record-id", conv.record_id), ("software", SOFTWARE),
                 ("config-sha256", self.cfg.sha256)]
        if blocked:
            meta.append(("blocked", blocked))
        if result.hops[0].url != final.url:
            meta.append(("requested-url", result.hops[0].url))
        if previous is not None:
            meta.append(("previous-capture", previous.warc_record_id or ""))
        meta_ref = self.writer.write_metadata(final.url, now, resp_ref.record_id, meta)
        self.writer.flush()
        key = hashlib.sha256(resp_ref.record_id.encode("ascii")).hexdigest()[:16]
        day = final.started.astimezone(timezone.utc).strftime("%Y-%m-%d")
        rel_dir = Path("text") / slug(outlet) / day
        article_rel, page_rel = rel_dir / f"{key}.article.txt", rel_dir / f"{key}.page.txt"
        page_bytes = ex.page_text.encode("utf-8")
        try:
            (self.root / rel_dir).mkdir(parents=True, exist_ok=True)
            (self.root / article_rel).write_bytes(article_bytes)
            (self.root / page_rel).write_bytes(page_bytes)
        except OSError as e:
            raise StorageError(f"cannot write text file {e.filename or self.root / rel_dir}: {os_reason(e)}") from None
        row = self._row_for(
            final, outlet, "article", BLOCKED if blocked else ARCHIVED, pass_id, refs,
            url=c.url, discovered_via_url=c.via_url, discovered_via_record_id=c.via_record_id,
            topics=topics, matched=matched, conversion_record_id=conv.record_id,
            metadata_record_id=meta_ref.record_id, redirect_record_ids=redirect_ids, title=ex.title,
            byline=ex.byline or None, published=ex.published or None, language=ex.language or None,
            text_path=article_rel.as_posix(), text_sha256=hashlib.sha256(article_bytes).hexdigest(),
            page_text_path=page_rel.as_posix(), page_text_sha256=hashlib.sha256(page_bytes).hexdigest(),
            extractor=ex.extractor, extractor_version=ex.extractor_version, renderer=ex.renderer,
            error=f"blocked: {blocked}" if blocked else None,
            previous_capture_id=previous.id if previous is not None else None)
        self.index.add(row, frontier_id=c.frontier_id)
        if blocked:
            stats.blocked += 1
            log.warning("%s: %s served a block page (%s); kept as evidence, will retry", outlet, final.url, blocked)
        elif previous is not None:
            stats.updated += 1
        else:
            stats.archived += 1

    def _kept_already(self, final_url: str, c: Candidate, stats: OutletStats) -> bool:
        """Was this page kept in this pass from another candidate (a redirect to it)?"""
        return final_url in stats.archived_urls

    def _claim(self, final_url: str, c: Candidate, stats: OutletStats) -> bool:
        """Take the page for this candidate; False when another candidate has it already."""
        if final_url in stats.archived_urls:
            return False
        stats.archived_urls.add(final_url)
        return True

    # ------------------------------------------------------------------ outlet pass

    async def _refetch_due(self, outlet: Outlet, matcher: TopicMatcher, pass_id: int, stats: OutletStats,
                           pass_started: str) -> None:
        due = self.index.due_for_refetch(outlet.name, self.cfg.config.refetch.after, _now(), pass_started)
        if not due:
            return
        self.progress("discovered", 0, len(due))
        sem = asyncio.Semaphore(self.cfg.config.fetch.concurrency)

        async def one(url: str) -> None:
            previous = self.index.last_in_chain(url)
            if previous is None:
                return
            stats.refetched += 1
            c = Candidate(url, previous.discovered_via_url or url, "refetch",
                          via_record_id=previous.discovered_via_record_id)
            async with sem:
                await self.article(c, outlet, matcher, pass_id, stats, previous=previous)

        await asyncio.gather(*(one(url) for url, _ in due))

    async def outlet(self, outlet: Outlet) -> OutletStats:
        stats = OutletStats(outlet.name)
        started = _now()
        self.storage_failed = None
        pass_id = self.index.start_pass(outlet.name, started, SOFTWARE, self.cfg.sha256)
        error = None
        try:
            candidates = await self.discover(outlet, pass_id, stats)
            stats.discovered = len(candidates)
            known = self.index.known_articles(outlet.name)
            waiting = self.index.failures_not_due(outlet.name, datetime.now(timezone.utc))
            todo = [c for c in candidates if c.url not in known and c.url not in waiting]
            stats.skipped_known = sum(1 for c in candidates if c.url in known)
            stats.not_due = len(candidates) - len(todo) - stats.skipped_known
            self.progress("discovered", 0, len(todo))
            matcher = TopicMatcher(self.cfg.topics_for(outlet))
            # the page decides, but candidates whose feed/sitemap title or summary already
            # match go first, so a long pass archives the likely articles early
            todo.sort(key=lambda c: not matcher.match({"feed_title": c.title, "feed_summary": c.summary}))
            # a bounded worker pool: never more candidate tasks alive than fetch slots allow
            queue: asyncio.Queue[Candidate] = asyncio.Queue()
            for c in todo:
                queue.put_nowait(c)

            async def worker() -> None:
                while self.storage_failed is None:
                    try:
                        c = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    await self.article(c, outlet, matcher, pass_id, stats)
                raise self.storage_failed

            n = min(len(todo), self.cfg.config.fetch.concurrency)
            await asyncio.gather(*(worker() for _ in range(n)))
            await self._refetch_due(outlet, matcher, pass_id, stats, started)
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
                self.index.finish_pass(pass_id, _now(), stats.counts(),
                                       error or ("; ".join(stats.errors[:5]) or None))
            except StorageError as e:  # the index may be on the disk that filled up
                log.error("%s: pass end not recorded: %s", outlet.name, e)
        return stats


def _unexpected(e: Exception, what: str) -> str:
    """The reason an unexpected exception gives one item's failure row; logged with its traceback,
    since it is a defect (or a case nobody foresaw) worth a report."""
    reason = f"{type(e).__name__}: {e}"
    log.error("%s failed unexpectedly: %s", what, reason, exc_info=e)
    return f"unexpected error: {reason}"


def _read_sitemap(body: bytes, url: str, max_decoded: int, max_age_days: float | None) -> SitemapResult:
    return parse_sitemap(maybe_gunzip(body, max_decoded), url, max_age_days=max_age_days)


async def run_pass(cfg: LoadedConfig, progress: Progress | None = None,
                   outlets: list[str] | None = None) -> PassResult:
    """Run one pass over every (or the named) outlet; returns per-outlet statistics."""
    index = Index.open(cfg.storage_root, url=cfg.config.index.url)
    repair_storage(cfg.storage_root, index)  # a previous run may have been killed mid-write
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
    return PassResult(stats, p.writer.closed_files, cfg.storage_root, p.extractors.peak_worker_mb)


__all__ = ["run_pass", "PassResult", "OutletStats", "__version__"]
