"""Capture modes `browser` and `auto`: a page rendered in Chromium (browser.py), every
request it makes fetched by the pass's own fetcher.

The page's document is the response the pass already fetched. Every other request of the
page, its frames and its workers goes through the same Fetcher as pages and requisites
(robots.txt, per-host gaps and concurrency, the address policy, body caps, exact bytes),
one hop at a time (the browser follows redirects itself, so each hop is an exchange of its
own), within the page's requisite limits (`capture.requisites`: max_per_page,
max_bytes_per_page, scope). A request refused, by any of those or by the browser engine
(other methods, WebSockets), gets nothing, is logged and is listed in the page's
provenance. A request for a requisite captured within `capture.requisites.refresh` is
answered from the archive, not fetched (archived_requisites.py), as requisites mode does;
the page's provenance lists it with its record id. What the page fetched is held until the
page is decided: a kept page's exchanges become its requisites, an off-topic page's are
dropped.

`auto` fetches statically first and renders only the pages that need it (`needs_browser`):
those whose HTML gives too little article text, or that say they are a JavaScript app.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .archived_requisites import ArchivedRequisites, Reused
from .browser import BrowserPool, BrowserSettings, Fulfil
from .settings import BrowserCaptureSettings, RequisiteSettings
from .errors import BlockedByPolicy, BrowserError
from .extract import Extraction
from .fetch import Fetcher, FetchResult, Response
from .requisites import same_site

log = logging.getLogger("archiver.crawl")

# article text (characters) below which the static HTML holds no article worth keeping
MIN_ARTICLE_CHARS = 200
# an empty app root or a <noscript> asking for JavaScript count below these
APP_ROOT_MAX_CHARS = 1000
NOSCRIPT_MAX_CHARS = 600

# a browser with no page to render for this long is closed (a daemon's passes may be
# half an hour apart; an idle Chromium holds hundreds of MB)
IDLE_CLOSE = 60.0

# the mount points of the common frameworks (React, Vue, Next.js, Nuxt, Gatsby, Angular,
# Svelte), empty in the HTML the server sends
_APP_ROOT = re.compile(
    rb"<(div|main|section|app-root)\b[^>]*?\bid\s*=\s*[\"']?(root|app|__next|__nuxt|___gatsby|svelte|main-app)"
    rb"[\"']?[^>]*>\s*</\1\s*>", re.IGNORECASE)
_NOSCRIPT = re.compile(rb"<noscript\b[^>]*>(.*?)</noscript\s*>", re.IGNORECASE | re.DOTALL)
_ASKS_FOR_JS = re.compile(
    rb"(enable|turn on|activate|switch on|allow|requires?|required|needs?)\W+(\w+\W+){0,4}?javascript"
    rb"|javascript\W+(\w+\W+){0,3}?(enabled?|required|needed|disabled|is off|to run|to view|to use)",
    re.IGNORECASE)
_SCRIPT = re.compile(rb"<script\b", re.IGNORECASE)


def needs_browser(ex: Extraction, body: bytes) -> str | None:
    """Why a statically fetched page needs the browser (auto mode), or None when its HTML
    already holds the article. `ex` is the extraction of `body`."""
    chars = len(ex.body_text.strip())
    text = f"{chars} characters of article text in the static HTML"
    root = _APP_ROOT.search(body)
    if root is not None and chars < APP_ROOT_MAX_CHARS and _SCRIPT.search(body):
        return (f"a JavaScript app: an empty <{root.group(1).decode().lower()} id=\"{root.group(2).decode()}\"> "
                f"for its scripts to fill, {text}")
    asks = any(_ASKS_FOR_JS.search(m.group(1)) for m in _NOSCRIPT.finditer(body))
    if asks and chars < NOSCRIPT_MAX_CHARS:
        return f"a JavaScript app: its <noscript> asks to enable JavaScript, {text}"
    if chars < MIN_ARTICLE_CHARS:
        return f"too little article text: {text} (fewer than {MIN_ARTICLE_CHARS})"
    return None


def engine_settings(s: BrowserCaptureSettings) -> BrowserSettings:
    return BrowserSettings(executable=s.executable, pages_at_once=s.pages_at_once, page_timeout=s.page_timeout,
                           settle_timeout=s.settle_timeout, scroll=s.scroll, screenshot=s.screenshot,
                           screenshot_max_height=s.screenshot_max_height,
                           viewport=s.size, restart_after=s.restart_after, max_browser_mb=s.max_browser_mb)


@dataclass
class Rendering:
    """A page as the browser left it after settling and scrolling."""

    dom: bytes  # the serialised DOM, UTF-8
    screenshot: bytes | None  # full-page PNG
    blocked: list[str]  # "URL (reason)" of every request the page did not get
    rendered_at: datetime
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[Reused] = field(default_factory=list)  # requests answered from the archive


def _allows(archived: list[tuple[str, str]], headers: dict[str, str]) -> bool:
    """Whether the archived response lets this request's origin read it, when it is a
    cross-origin read: one answered for another page's origin is fetched again instead."""
    origin = next((v for k, v in headers.items() if k.lower() == "origin"), None)
    allowed = [v.strip() for k, v in archived if k.lower() == "access-control-allow-origin"]
    return origin is None or not allowed or allowed[0] in ("*", origin)


class BrowserCapture:
    """The pass's browser: started on the first page that needs it, restarted with new
    settings, closed after `idle_close` seconds without a page."""

    def __init__(self, settings: BrowserCaptureSettings, idle_close: float = IDLE_CLOSE):
        self.settings = settings
        self.idle_close = idle_close
        self._pool: BrowserPool | None = None
        self._retired: list[BrowserPool] = []
        self._rendering = 0
        self._idle: asyncio.Task | None = None  # waiting to close an idle browser
        self._closing: set[asyncio.Future] = set()  # closing it
        self.peak_mb = 0.0  # largest memory (PSS) of the browser's processes, as sampled (BrowserPool)

    def reconfigure(self, settings: BrowserCaptureSettings) -> None:
        if settings != self.settings:
            self.settings = settings
            if self._pool is not None:
                # pages still rendering in it finish there; it is closed with the pass
                self._retired.append(self._pool)
                self._pool = None

    @property
    def pool(self) -> BrowserPool:
        if self._pool is None:
            self._pool = BrowserPool(engine_settings(self.settings))
        return self._pool

    async def aclose(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            await asyncio.gather(self._idle, return_exceptions=True)
            self._idle = None
        await asyncio.gather(*self._closing)
        for pool in (*self._retired, *([self._pool] if self._pool is not None else [])):
            await pool.aclose()
        self._retired.clear()
        self._pool = None

    async def _close_when_idle(self) -> None:
        await asyncio.sleep(self.idle_close)
        # from here nothing awaits: a page starting after this gets a new pool, and the
        # closing of this one is a task of its own that nothing cancels
        self._idle = None
        pools, self._retired = [*self._retired, *([self._pool] if self._pool is not None else [])], []
        self._pool = None
        closing = asyncio.ensure_future(asyncio.gather(*(p.aclose() for p in pools)))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def render(self, fetcher: Fetcher, page: Response, limits: RequisiteSettings,
                     results: list[FetchResult], archive: ArchivedRequisites | None = None) -> Rendering:
        """Render the fetched `page`; every fetch its requests caused is appended to
        `results` (the caller archives or drops them, and closes them, whatever happens).
        With `archive`, a requisite captured within `limits.refresh` is taken from there.
        Raises BrowserError when the page cannot be rendered."""
        used = {"requests": 0, "bytes": 0}
        reused: list[Reused] = []

        def from_archive(url: str, headers: dict[str, str]) -> Fulfil | None:
            # a range (media) asks for part of a response, which the archive does not keep apart
            row = archive.find(url, limits.refresh) if archive is not None else None
            if row is None or any(k.lower() == "range" for k in headers):
                return None
            got = archive.read(row, fetcher.settings.max_decoded_bytes)
            if got is None or not _allows(got.headers, headers):
                return None
            done = Reused(url, row)
            reused.append(done)
            return Fulfil(got.status, got.headers, got.body, done)

        async def fetch(url: str, headers: dict[str, str]) -> Fulfil | None:
            if limits.scope == "same-site" and not same_site(url, page.url):
                raise BlockedByPolicy(url, "another-site", "capture.requisites.scope is same-site")
            if used["requests"] >= limits.max_per_page or used["bytes"] >= limits.max_bytes_per_page:
                raise BlockedByPolicy(url, "page-limit", f"the page's requisite limits (max_per_page "
                                                         f"{limits.max_per_page}, max_bytes_per_page "
                                                         f"{limits.max_bytes_per_page}) were reached")
            used["requests"] += 1
            kept = from_archive(url, headers)
            if kept is not None:
                return kept
            # one hop: a redirect goes back to the browser, which asks for its target in turn
            result = await fetcher.fetch_raw_chain(url, 0, extra_headers=headers, check_robots=True)
            results.append(result)
            final = result.final
            if final is None:
                err = result.error
                assert err is not None
                # a script reaching where archiver may not go is worth a look; a failed fetch less so
                policy = err.reason == "private-address" or (isinstance(err, BlockedByPolicy)
                                                             and err.reason != "robots")
                log.log(logging.WARNING if policy else logging.INFO, "%s: the page asked for %s, refused: %s",
                        page.url, url, err.reason + (f": {err.detail}" if err.detail else ""))
                raise err
            used["bytes"] += final.raw_length
            return Fulfil(final.status, list(final.headers.multi_items()), final.body or b"", result)

        main = (page.status, list(page.headers.multi_items()), page.body or b"")
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        pool = self.pool
        self._rendering += 1
        try:
            r = await pool.render(page.url, main, fetch)
        finally:
            self.peak_mb = max(self.peak_mb, pool.peak_memory / 2**20)
            self._rendering -= 1
            if self._rendering == 0:
                self._idle = asyncio.ensure_future(self._close_when_idle())
        log.debug("%s: rendered in %.2f s (%s)", page.url, r.timings.get("total", 0.0),
                  ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items() if k != "total"))
        if r.blocked:
            log.info("%s: %d requests of the page refused: %s", page.url, len(r.blocked), "; ".join(r.blocked[:10]))
        return Rendering(r.dom.encode("utf-8", "replace"), r.screenshot, list(r.blocked),
                         datetime.now(timezone.utc), dict(r.timings), reused)


def failure_reason(e: BrowserError) -> str:
    """A render failure as a page's failure row has it: what went wrong, without the URL."""
    text = str(e)
    if e.url and text.startswith(f"{e.url}: "):
        text = text[len(e.url) + 2:]
    return f"browser: {text}"


__all__ = ["BrowserCapture", "Rendering", "needs_browser", "failure_reason", "MIN_ARTICLE_CHARS"]
