"""An outlet's sources in a pass: its feeds, sitemaps, listing and search pages fetched,
archived and read into candidates (the parsing itself is feeds.py's, sitemaps.py's
and listings.py's).

Every document is one item: whatever goes wrong with it is its row's problem (or a failed
row), never the pass's. Unchanged documents (304) are read again from the archived copy, so
candidates that failed earlier are tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import faults
from .capture import Recorder
from .decode import decode_content, decode_text
from .discover import Candidate, SitemapResult
from .errors import BlockedByPolicy, DiscoveryError, StorageError
from .extract import MAX_PAGE_BYTES
from .feeds import parse_feed
from .fetch import Fetcher
from .index import FAILED, ROBOTS, CaptureRow, Index
from .listings import listing_links, search_urls
from .outletrun import OutletRun, unexpected
from .polling import OutletPolls
from .sitemaps import parse_sitemap
from .urls import host_key
from .warc import read_payload
from .warcfiles import WarcFiles

T = TypeVar("T")
log = logging.getLogger("archiver.crawl")

# tried, in this order, when `sitemaps: [auto]` finds no Sitemap line in robots.txt
WELL_KNOWN_SITEMAPS = ("/sitemap.xml", "/sitemap_index.xml", "/sitemap-index.xml", "/news-sitemap.xml",
                       "/sitemap_news.xml")

OffLoop = Callable[..., Awaitable[Any]]


@dataclass
class Document:
    """A discovery document's decoded body and the record id its candidates will cite."""

    url: str
    body: bytes
    content_type: str
    record_id: str
    capture_id: int  # the index row of this fetch, where a parse failure is noted
    truncated: bool = False  # the body was cut at the fetch's cap


def validators(prev: CaptureRow | None) -> dict[str, str] | None:
    """Conditional-request headers from an earlier capture."""
    if prev is None:
        return None
    headers = {}
    if prev.etag:
        headers["If-None-Match"] = prev.etag
    if prev.last_modified:
        headers["If-Modified-Since"] = prev.last_modified
    return headers or None


class Sources:
    def __init__(self, recorder: Recorder, index: Index, warcs: WarcFiles, off_loop: OffLoop):
        self.recorder, self.index, self.warcs = recorder, index, warcs
        self._off_loop = off_loop
        # passes due together (thousands of outlets at a start, or after a pause) discover a few
        # at a time: one discovering holds its documents, connections and parsed entries, one
        # waiting almost nothing (5,000 at once took the daemon from 170 to 270 MB); four per
        # fetch slot keep the slots busy while hosts' gaps run
        self._discovering = asyncio.Semaphore(4 * recorder.cfg.config.fetch.concurrency)

    async def fetch_document(self, fetcher: Fetcher, url: str, run: OutletRun, kind: str,
                             probe: bool = False) -> Document | None:
        """Fetch and archive a discovery document, conditionally when we have it already.
        A `probe` (a well-known sitemap path tried on the off chance) that is not there is
        archived like any answer but is no problem worth reporting."""
        rec, stats = self.recorder, run.stats
        prev = self.index.latest(url, (kind,))
        # listing and search pages are read as far as articles are; the WARC keeps every byte
        cap = min(MAX_PAGE_BYTES, fetcher.settings.max_decoded_bytes) if kind in ("page", "search") else None
        result = await fetcher.fetch(url, extra_headers=validators(prev), max_decoded=cap)
        try:
            faults.check("document", url)
            rec.robots(result, run)
            for hop in result.hops[:-1]:
                faults.check("redirect", hop.url)
                rec.document(hop, run, "redirect")
            final = result.final
            if result.error is not None or final is None:
                err = result.error
                state = ROBOTS if isinstance(err, BlockedByPolicy) and err.reason == "robots" else FAILED
                if final is not None:
                    rec.document(final, run, kind)
                rec.nothing(url, run, kind, state, str(err))
                stats.errors.append(f"{kind}: {err}")
                log.warning("%s: %s %s not usable: %s", run.name, kind, url, err)
                return None
            if final.status == 304 and prev is not None and prev.final_url == final.url:
                nm = rec.not_modified(final, prev, run, kind)
                assert prev.warc_file is not None and prev.warc_offset is not None
                body = await self._off_loop(self.stored_payload, prev)
                return Document(final.url, body, prev.content_type or "", prev.warc_record_id or "", nm.id or 0,
                                prev.truncated is not None)
            row = rec.document(final, run, kind)
            if final.status != 200:
                if probe:
                    log.info("%s: no sitemap at %s (HTTP %d)", run.name, url, final.status)
                    return None
                stats.errors.append(f"{kind}: {url}: HTTP {final.status}")
                log.warning("%s: %s %s answered HTTP %d", run.name, kind, url, final.status)
                return None
            assert row.warc_record_id is not None
            return Document(final.url, final.body or b"", final.content_type, row.warc_record_id, row.id or 0,
                            final.body_truncated)
        finally:
            result.close()

    def stored_payload(self, row: CaptureRow) -> bytes:
        """The entity body of an earlier capture, wherever its WARC file is now."""
        assert row.warc_file is not None and row.warc_offset is not None
        with self.warcs.open_record(row.warc_file, row.warc_offset, row.warc_length) as f:
            _, body = read_payload(f, self.recorder.cfg.config.fetch.max_decoded_bytes)
        return body

    def unusable(self, doc: Document, problem: str, run: OutletRun) -> None:
        """A discovery document was archived but could not be read, or not all of it: say why,
        in the log and on its row."""
        run.stats.errors.append(problem)
        log.warning("%s: %s", run.name, problem)
        self.index.note_error(doc.capture_id, problem)

    def gave_nothing(self, doc: Document, note: str, run: OutletRun) -> None:
        """A sound document named no candidates (an empty news sitemap, every entry too old):
        no problem of the pass, but its row says why, so nobody wonders."""
        log.info("%s: %s", run.name, note)
        self.index.note_error(doc.capture_id, note)

    def document_failed(self, e: Exception, url: str, doc: Document | None, run: OutletRun, kind: str) -> None:
        """An unexpected exception while fetching or reading one discovery document: that
        document's failure (on its row if it was archived, else a failed row), not the pass's."""
        reason = unexpected(e, f"{kind} {url}")
        if doc is not None:
            self.unusable(doc, reason, run)
        else:
            run.stats.errors.append(reason)
            self.recorder.nothing(url, run, kind, FAILED, reason)

    async def _one(self, fetcher: Fetcher, url: str, run: OutletRun, kind: str,
                   read: Callable[[str, Document], Awaitable[None]], probe: bool = False) -> None:
        """Fetch one document and hand it to `read`; any failure is this document's."""
        got = None
        try:
            got = await self.fetch_document(fetcher, url, run, kind, probe=probe)
            if got is not None:
                faults.check("parse", url)
                await read(url, got)
        except StorageError:
            raise
        except Exception as e:
            self.document_failed(e, url, got, run, kind)

    async def discover(self, fetcher: Fetcher, run: OutletRun) -> list[Candidate]:
        """Every candidate the outlet's sources name, each URL once (a feed's title and summary
        preferred to a bare sitemap entry), at most `discover.max_candidates_per_outlet`."""
        async with self._discovering:
            return await self._discover(fetcher, run)

    async def _discover(self, fetcher: Fetcher, run: OutletRun) -> list[Candidate]:
        cfg = self.recorder.cfg
        outlet, limits = run.outlet, cfg.config.discover
        found: dict[str, Candidate] = {}
        # an adaptive schedule: only the documents due are fetched; each poll's URLs tell when next
        polls = OutletPolls.start(self.index, outlet.name, outlet.schedule) if outlet.schedule.adaptive else None
        listed: dict[tuple[str, str], list[str]] = {}  # (kind, URL) -> the URLs a document read named

        def add(cands: list[Candidate], record_id: str) -> None:
            for c in cands:
                c.via_record_id = record_id
                prev = found.get(c.url)
                if prev is None:
                    if len(found) < limits.max_candidates_per_outlet:
                        found[c.url] = c
                elif not prev.title and c.title:
                    prev.title, prev.summary = c.title, c.summary or prev.summary

        async def read_feed(url: str, got: Document) -> None:
            try:
                # parsed off the event loop: a huge feed must not stall the other fetches
                parsed = await self._off_loop(parse_feed, got.body, url, got.content_type)
            except DiscoveryError as e:
                self.unusable(got, str(e), run)
                return
            if parsed.problem:
                self.unusable(got, parsed.problem, run)
            elif parsed.note:
                self.gave_nothing(got, parsed.note, run)
            listed["feed", url] = [c.url for c in parsed.entries]
            add(parsed.entries, got.record_id)

        def read_page(kind: str) -> Callable[[str, Document], Awaitable[None]]:
            async def read(url: str, got: Document) -> None:
                text = decode_text(got.body[:MAX_PAGE_BYTES], got.content_type).text
                links = await self._off_loop(listing_links, text, got.url, kind)
                listed[kind, url] = [c.url for c in links]
                add(links, got.record_id)
            return read

        def due(urls: list[str]) -> list[str]:
            return polls.due(urls) if polls is not None else urls

        async def one(url: str, kind: str, read: Callable[[str, Document], Awaitable[None]],
                      probe: bool = False) -> None:
            await self._one(fetcher, url, run, kind, read, probe=probe)
            if polls is not None:
                polls.polled(url, kind, listed.pop((kind, url), None))

        sitemap_urls = [u for u in outlet.sitemaps if u != "auto"]
        probes: list[str] = []  # well-known paths tried when robots.txt names no sitemap
        if "auto" in outlet.sitemaps:
            base = outlet.home or next(iter(outlet.feeds + outlet.pages + sitemap_urls), None)
            if base is None and outlet.search:
                base = outlet.search[0].replace("{query}", "")
            if base is not None:
                rules, fetched_now = await fetcher.robots.rules(base)
                for r in fetched_now:
                    self.recorder.document(r, run, "robots")
                    r.close()
                named = [u for u in rules.sitemaps() if u not in sitemap_urls]
                if named:
                    sitemap_urls.extend(named)
                else:
                    probes = [u for u in (host_key(base) + p for p in WELL_KNOWN_SITEMAPS) if u not in sitemap_urls]

        async def sitemaps() -> None:
            queue = due(list(sitemap_urls) + probes)
            top = set(queue)  # a sitemap index's children are read whenever it is
            seen: set[str] = set()

            async def read_sitemap(url: str, got: Document) -> None:
                try:
                    sm = await self._off_loop(_read_sitemap, got.body, url, got.content_type,
                                              cfg.config.fetch.max_decoded_bytes, limits.max_age_days, got.truncated)
                except DiscoveryError as e:
                    if url in probes:  # a soft 404 page at a guessed path says nothing
                        self.index.note_error(got.capture_id, str(e))
                    else:
                        self.unusable(got, str(e), run)
                    return
                run.stats.sitemap_too_old += sm.too_old
                if sm.problem:
                    self.unusable(got, sm.problem, run)
                elif sm.note:
                    self.gave_nothing(got, sm.note, run)
                add(sm.urls, got.record_id)
                queue.extend(u for u in sm.sitemaps if u not in seen)

            while queue and len(seen) < limits.max_sitemaps_per_outlet:
                url = queue.pop(0)
                if url in seen:
                    continue
                seen.add(url)
                if url in top:
                    await one(url, "sitemap", read_sitemap, probe=url in probes)
                else:
                    await self._one(fetcher, url, run, "sitemap", read_sitemap, probe=url in probes)

        terms = sorted({t for topic in cfg.topics_for(outlet) for t in (*topic.any, *topic.all)})
        jobs = [one(u, "feed", read_feed) for u in due(outlet.feeds)]
        jobs += [one(u, "page", read_page("page")) for u in due(outlet.listing_pages())]
        jobs += [one(u, "search", read_page("search"))
                 for u in due([u for tpl in outlet.search for u in search_urls(tpl, terms)])]
        jobs.append(sitemaps())
        await asyncio.gather(*jobs)
        if polls is not None and polls.skipped:
            run.stats.sources_not_due = len(polls.skipped)
            run.stats.next_source_due = polls.next_due()
            when, url = run.stats.next_source_due or ("", "")
            log.info("%s: %d sources not due yet (adaptive schedule); the next, %s, at %s",
                     run.name, len(polls.skipped), url, when[:19])
        return list(found.values())


def _read_sitemap(body: bytes, url: str, content_type: str, max_decoded: int,
                  max_age_days: float | None, truncated: bool = False) -> SitemapResult:
    if body[:2] == b"\x1f\x8b":  # .xml.gz and .txt.gz are often served without Content-Encoding
        body, cut, err = decode_content(body, "gzip", max_decoded)
        if err is not None:
            raise DiscoveryError(f"sitemap {url}: {err}")
        truncated = truncated or cut
    return parse_sitemap(body, url, max_age_days=max_age_days, content_type=content_type, truncated=truncated)
