"""Fetching what a kept page needs to render (capture mode `requisites`).

Each requisite goes through the same fetcher as pages (robots.txt, per-host gaps and
concurrency for CDN hosts too, the address policy, body caps, exact bytes) and is archived
with its own row, linked to the page that named it. A requisite captured within
`capture.requisites.refresh` is not fetched again; one fetched again with the same payload
becomes an identical-payload-digest revisit. Stylesheets are read one level further: what
they @import and url() is fetched too, but not what those name in turn. The page's
provenance gains a metadata record listing every requisite and where it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .archived_requisites import fresh
from .capture import Recorder
from .decode import decode_text
from .errors import BlockedByPolicy, StorageError
from .fetch import Fetcher, Response
from .index import FAILED, ROBOTS, CaptureRow, Index
from .outletrun import OutletRun, unexpected
from .requisites import Requisite, from_css, from_html, same_site
from .settings import RequisiteSettings

log = logging.getLogger("archiver.crawl")

AT_ONCE = 4  # requisites of one page fetched at a time (per-host limits still apply)
MAX_CSS_BYTES = 2_000_000  # a stylesheet is read this far for what it imports


@dataclass
class Found:
    """What became of a page's requisites, for its provenance and the pass's counts."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    fetched: int = 0
    reused: int = 0
    failed: int = 0
    bytes: int = 0


OffLoop = Callable[..., Awaitable[Any]]


class PageRequisites:
    def __init__(self, recorder: Recorder, index: Index, off_loop: OffLoop):
        self.recorder, self.index = recorder, index
        self._off_loop = off_loop
        # a requisite being fetched for one page is awaited by the others naming it
        self._in_flight: dict[str, asyncio.Future[CaptureRow | None]] = {}

    async def capture(self, fetcher: Fetcher, page: Response, page_record_id: str, run: OutletRun,
                      settings: RequisiteSettings) -> Found:
        found = Found()
        if settings.max_per_page == 0:
            return found
        markup = decode_text(page.body or b"", page.content_type).text
        todo = [(r, 1) for r in await self._off_loop(from_html, markup, page.url)]
        seen = {r.url for r, _ in todo}
        sem = asyncio.Semaphore(AT_ONCE)

        async def one(req: Requisite, depth: int) -> None:
            if found.fetched + found.reused >= settings.max_per_page or found.bytes >= settings.max_bytes_per_page:
                found.lines.append(("requisite-skipped", f"{req.url} (page limit reached)"))
                return
            if settings.scope == "same-site" and not same_site(req.url, page.url):
                found.lines.append(("requisite-skipped", f"{req.url} (another site)"))
                return
            async with sem:
                row, css = await self._one(fetcher, req, run, page.url, page_record_id, settings, found)
            if css is not None and depth < 2:
                more = [r for r in from_css(css, row.final_url if row and row.final_url else req.url)
                        if r.url not in seen]
                seen.update(r.url for r in more)
                await asyncio.gather(*(one(r, depth + 1) for r in more))

        await asyncio.gather(*(one(r, d) for r, d in todo))
        if found.lines:
            self.recorder.requisites_listed(page.url, page_record_id, found.lines)
        return found

    async def _one(self, fetcher: Fetcher, req: Requisite, run: OutletRun, page_url: str, page_record_id: str,
                   settings: RequisiteSettings, found: Found) -> tuple[CaptureRow | None, str | None]:
        """Fetch and archive one requisite (or reuse a fresh capture); returns its row and, for a
        stylesheet, its text."""
        prev = self.index.latest(req.url, ("requisite",))
        if prev is not None and fresh(prev, settings.refresh):
            found.reused += 1
            found.lines.append(("requisite", f"{req.url} {prev.warc_record_id} (captured {prev.fetched_at})"))
            return prev, None
        pending = self._in_flight.get(req.url)
        if pending is not None:
            row = await asyncio.shield(pending)
            found.reused += 1
            found.lines.append(("requisite", f"{req.url} {row.warc_record_id if row else '(failed)'}"))
            return row, None
        fut: asyncio.Future[CaptureRow | None] = asyncio.get_running_loop().create_future()
        self._in_flight[req.url] = fut
        row: CaptureRow | None = None
        css: str | None = None
        try:
            result = await fetcher.fetch(req.url, max_decoded=MAX_CSS_BYTES)
            try:
                rec = self.recorder
                rec.robots(result, run)
                for hop in result.hops[:-1]:
                    rec.document(hop, run, "redirect")
                final = result.final
                if result.error is not None or final is None:
                    err = result.error
                    state = ROBOTS if isinstance(err, BlockedByPolicy) and err.reason == "robots" else FAILED
                    rec.nothing(req.url, run, "requisite", state, str(err))
                    found.failed += 1
                    found.lines.append(("requisite-failed", f"{req.url} ({err})"))
                    return None, None
                row = rec.requisite(final, run, page_url, page_record_id, prev)
                found.fetched += 1
                found.bytes += final.raw_length
                found.lines.append(("requisite", f"{req.url} {row.warc_record_id}"))
                if final.status == 200 and _is_css(final, req):
                    css = decode_text(final.body or b"", final.content_type).text
            finally:
                result.close()
        except StorageError:
            raise
        except Exception as e:
            reason = unexpected(e, f"requisite {req.url}")
            self.recorder.nothing(req.url, run, "requisite", FAILED, reason)
            found.failed += 1
            found.lines.append(("requisite-failed", f"{req.url} ({reason})"))
        finally:
            del self._in_flight[req.url]
            fut.set_result(row)
        return row, css


def _is_css(resp: Response, req: Requisite) -> bool:
    ctype = resp.content_type.split(";")[0].strip().lower()
    return ctype == "text/css" or (req.kind == "stylesheet" and ctype in ("", "text/plain"))


__all__ = ["PageRequisites", "Found"]
