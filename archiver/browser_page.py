"""One page in a tab: its requests served through the caller's fetch function, then
settle, scroll, DOM and screenshot.

Every request of the tab, its frames and workers is paused at the request stage (the
Fetch domain) and handed to the fetch function, which fetches it with archiver's recording
fetcher; the tab is fulfilled with the decoded body it returned, or the request fails. So
robots.txt, per-host politeness, the address policy and the body caps hold for browser
traffic, and the WARC keeps the bytes as the server sent them. The page's own document is
the response the caller already has: it is not fetched a second time.

What the page does not get: the browser's own cookies are not sent (requests carry what
archiver's fetcher sends: its User-Agent, an outlet's configured headers and cookies); only
GET and HEAD are fetched (a CORS preflight is answered here); a WebSocket is listed in
`blocked` and its connection refused by the browser's proxy.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .cdp import quiet
from .errors import BrowserError, BrowserGone as _Gone, BrowserRefused as _Refused, FetchError

if TYPE_CHECKING:
    from .browser import BrowserSettings, Tab

log = logging.getLogger("archiver.browser")


@dataclass
class Fulfil:
    """What the fetch function gives back for one request: the browser gets status, headers
    and the decoded body; `exchange` (whatever the caller records) is returned in Rendered."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    exchange: Any = None


@dataclass
class Rendered:
    dom: str  # the doctype and document.documentElement.outerHTML after settle and scroll
    screenshot: bytes | None  # PNG of the full page, at the viewport's width, up to screenshot_max_height
    exchanges: list[Any]  # Fulfil.exchange of every request the page made, in request order
    blocked: list[str]  # "URL (reason)" for every request refused
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


# `fetch(url, request_headers)`: None refuses the request (robots.txt, address policy); a
# FetchError it raises refuses it with that error's reason.
FetchFunction = Callable[[str, dict[str, str]], Awaitable[Fulfil | None]]

QUIET = 0.2  # the network has settled when nothing was in flight for this long
MAX_SCREENSHOT_PX = 16384  # Chromium's largest texture: the tallest viewport and screenshot
MAX_DOM_CHARS = 50_000_000

# hop-by-hop and framing headers: the browser gets the decoded body, with its own framing
_DROP_RESPONSE = frozenset({
    "content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade"})
# the fetcher sends its own User-Agent and Accept-Encoding (it must decode what it asks for);
# client hints would announce HeadlessChrome next to that User-Agent
_DROP_REQUEST = frozenset({
    "user-agent", "accept-encoding", "host", "connection", "content-length", "cookie",
    "proxy-connection", "keep-alive", "te", "upgrade"})

_DOM_SCRIPT = f"""(() => {{
  const dt = document.doctype ? new XMLSerializer().serializeToString(document.doctype) + '\\n' : '';
  const html = document.documentElement ? document.documentElement.outerHTML : '';
  if (dt.length + html.length > {MAX_DOM_CHARS}) return {{tooBig: dt.length + html.length}};
  return {{html: dt + html}};
}})()"""

# Lazy content (native loading=lazy, intersection observers, scroll handlers comparing an
# element's box with the viewport, lists that grow near the bottom) is started by making the
# viewport as tall as the page for a while, rather than by walking it down a viewport at a
# time: one layout and two frames instead of a pair of frames per step, which on a 2-core
# machine cost 1.4 s for a 36,000 px page against 0.2 s. The scroll and resize events the
# handlers listen for are sent, and the tall viewport is kept until the network settles, so
# throttled handlers run while everything is still in view. A page that grows while its lazy
# parts load is stretched again, STRETCH_ROUNDS times at most (an endless list stops there).
STRETCH_ROUNDS = 3
STRETCH_SCALE = 0.1
FRAME_WAIT = 1.0  # seconds waited at most for the two animation frames after stretching
_STRETCH_SCRIPT = f"""(async () => {{
  const frames = () => new Promise(r => {{
    const t = setTimeout(r, {FRAME_WAIT * 1000:.0f});
    requestAnimationFrame(() => requestAnimationFrame(() => {{ clearTimeout(t); r(); }}));
  }});
  await frames();
  window.dispatchEvent(new Event('scroll'));
  document.dispatchEvent(new Event('scroll'));
  await frames();
  return true;
}})()"""
_HEIGHT_SCRIPT = """(() => {
  const el = document.scrollingElement || document.documentElement;
  return Math.max(el ? el.scrollHeight : 0, document.body ? document.body.scrollHeight : 0);
})()"""

_NOT_FETCHED = object()


def _header(request: dict, name: str) -> str | None:
    for k, v in (request.get("headers") or {}).items():
        if k.lower() == name:
            return v
    return None


# ---------------------------------------------------------------------- one page

class PageRun:
    """One page in a tab: serve its requests, settle, scroll, capture."""

    def __init__(self, tab: Tab, settings: BrowserSettings, url: str,
                 main: tuple[int, list[tuple[str, str]], bytes], fetch: FetchFunction,
                 screenshots: asyncio.Lock | None = None):
        self.tab = tab
        # held while taking a screenshot, shared by the browser's tabs: a full-page shot
        # holds the page's bitmap several times over (compositor, readback, encoder), and
        # two at once were the browser's peaks of memory
        self.screenshots = screenshots or asyncio.Lock()
        self.browser = tab.browser
        self.conn = tab.conn
        self.settings = settings
        self.url = url
        self.main = main
        self.fetch = fetch
        self.slots: list[Any] = []  # one per request fetched, in the order the browser asked
        self.blocked: list[str] = []
        self.timings: dict[str, float] = {}
        self.stage = "loading the page"
        self.tasks: set[asyncio.Task] = set()
        self.in_flight = 0
        self.requests = 0
        self.last_change = time.monotonic()
        self.main_served = False
        self.closing = False
        self.loader = ""  # the navigation's loader id: events of the blank page before are not its
        self.lifecycle: dict[str, set[str]] = {}
        self.changed = asyncio.Event()
        self.failed: asyncio.Future = asyncio.get_running_loop().create_future()

    # -------------------------------------------------------------- events

    def _fail(self, message: str) -> None:
        if not self.failed.done():
            self.failed.set_result(message)

    def _on_gone(self, reason: str) -> None:
        self._fail("gone")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_event(self, session: str, method: str, params: dict) -> None:
        if method == "Fetch.requestPaused":
            self._spawn(self._paused(session, params))
        elif method == "Network.webSocketCreated":
            self.blocked.append(f"{params.get('url', '?')} (websocket)")
        elif session != self.tab.session:
            return
        elif method == "Page.lifecycleEvent":
            if params.get("frameId") == self.tab.frame_id:
                self.lifecycle.setdefault(params.get("loaderId", ""), set()).add(params.get("name", ""))
                self.changed.set()
        elif method == "Inspector.targetCrashed":
            self._fail("the page's renderer crashed")

    def _reached(self, name: str) -> bool:
        return bool(self.loader) and name in self.lifecycle.get(self.loader, ())

    async def _until(self, name: str) -> None:
        while not self._reached(name):
            self.changed.clear()
            await self.changed.wait()

    # -------------------------------------------------------------- requests

    async def _paused(self, session: str, event: dict) -> None:
        rid = event["requestId"]
        request = event.get("request") or {}
        url = request.get("url", "")
        method = request.get("method", "GET")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if event.get("resourceType") == "Document" and scheme in ("http", "https"):
            self.tab.origins.add(f"{scheme}://{parts.netloc}")
            if event.get("frameId") == self.tab.frame_id:
                if not self.main_served:
                    self.main_served = True
                    status, headers, body = self.main
                    await self._fulfil(session, rid, url, status, headers, body)
                    return
                return await self._refuse(session, rid, url, "navigation away from the page", "BlockedByClient")
        if self.closing:
            return await self._refuse(session, rid, url, "after the page was captured", "Aborted")
        if scheme in ("data", "blob"):
            await quiet(self.conn.send("Fetch.continueRequest", {"requestId": rid}, session))
            return
        if scheme not in ("http", "https"):
            return await self._refuse(session, rid, url, f"scheme {scheme or '?'}", "BlockedByClient")
        if method == "OPTIONS" and _header(request, "access-control-request-method"):
            return await self._preflight(session, rid, request)
        if method not in ("GET", "HEAD"):
            return await self._refuse(session, rid, url, f"method {method}", "BlockedByClient")
        headers = {k: v for k, v in (request.get("headers") or {}).items()
                   if k.lower() not in _DROP_REQUEST and not k.lower().startswith("sec-ch-")}
        slot = len(self.slots)
        self.slots.append(_NOT_FETCHED)
        self._busy(+1)
        try:
            try:
                result = await self.fetch(url, headers)
            except FetchError as e:
                return await self._refuse(session, rid, url, e.reason + (f": {e.detail}" if e.detail else ""),
                                          "Failed")
            except Exception as e:
                log.warning("fetch function failed for %s", url, exc_info=True)
                return await self._refuse(session, rid, url, f"fetch failed: {type(e).__name__}: {e}", "Failed")
            if result is None:
                return await self._refuse(session, rid, url, "refused by the fetcher", "BlockedByClient")
            self.slots[slot] = result.exchange
            body = b"" if method == "HEAD" else result.body
            await self._fulfil(session, rid, url, result.status, result.headers, body)
        finally:
            self._busy(-1)

    async def _preflight(self, session: str, rid: str, request: dict) -> None:
        """A CORS preflight is answered here, allowing what it asks: the fetcher sends only
        GETs, and the answer to the GET itself still has to allow the page to read it."""
        origin = _header(request, "origin") or "*"
        allow = [("Access-Control-Allow-Origin", origin),
                 ("Access-Control-Allow-Methods", _header(request, "access-control-request-method") or "GET"),
                 ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
        asked = _header(request, "access-control-request-headers")
        if asked:
            allow.append(("Access-Control-Allow-Headers", asked))
        await self._fulfil(session, rid, request.get("url", ""), 204, allow, b"")

    def _busy(self, delta: int) -> None:
        self.in_flight += delta
        if delta > 0:
            self.requests += 1
        self.last_change = time.monotonic()

    async def _fulfil(self, session: str, rid: str, url: str, status: int, headers: list[tuple[str, str]],
                      body: bytes) -> None:
        # a server's Connection header may name more hop-by-hop headers
        hop = {t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")}
        params = {
            "requestId": rid,
            "responseCode": status,
            "responseHeaders": [{"name": k, "value": v} for k, v in headers
                                if k.lower() not in _DROP_RESPONSE and k.lower() not in hop],
            "body": base64.b64encode(body).decode("ascii"),
        }
        try:
            await self.conn.send("Fetch.fulfillRequest", params, session)
        except _Refused as e:
            # an odd status or header the browser will not take: this request fails, the
            # exchange (already made) stays in the list
            await self._refuse(session, rid, url, f"the browser refused the response: {e.message}", "Failed")

    async def _refuse(self, session: str, rid: str, url: str, reason: str, error: str) -> None:
        self.blocked.append(f"{url} ({reason})")
        await quiet(self.conn.send("Fetch.failRequest", {"requestId": rid, "errorReason": error}, session))

    # -------------------------------------------------------------- the page

    async def run(self) -> Rendered:
        """Render the page within the page timeout; BrowserError when it cannot be."""
        self.conn.on_gone.add(self._on_gone)
        if self.conn.gone is not None:
            self._fail("gone")
        self.tab.run = self
        body = asyncio.ensure_future(self._render())
        try:
            done, _ = await asyncio.wait({body, self.failed}, timeout=self.settings.page_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if body in done:
                error = body.exception()
                if error is None:
                    return body.result()
                if not isinstance(error, _Gone):
                    raise error  # a BrowserError naming what went wrong
                self._fail("gone")
            body.cancel()
            if self.failed.done():
                why = self.failed.result()
                if why == "gone":
                    why = f"the browser exited while rendering ({await self.browser.exit_status()})"
                raise self._error(why)
            raise self._error(f"not rendered within page_timeout ({self.settings.page_timeout:g}s) "
                              f"while {self.stage}")
        finally:
            self.tab.run = None
            body.cancel()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(body, *self.tasks, return_exceptions=True)
            self.conn.on_gone.discard(self._on_gone)

    def _error(self, message: str) -> BrowserError:
        return BrowserError(message, url=self.url, exchanges=self._exchanges(), blocked=list(self.blocked))

    def _exchanges(self) -> list[Any]:
        return [s for s in self.slots if s is not _NOT_FETCHED]

    async def _render(self) -> Rendered:
        send = self.conn.send
        session = self.tab.session
        t0 = mark = time.monotonic()

        def lap(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            self.timings[name] = now - mark
            mark = now

        try:
            nav = await send("Page.navigate", {"url": self.url}, session)
            if nav.get("errorText"):
                raise self._error(f"the browser could not show the page: {nav['errorText']}")
            self.loader = nav.get("loaderId", "")
            await self._until("DOMContentLoaded")
            lap("load")
            # scripts of the page cannot reach into an isolated world, nor change what its
            # DOM methods do there
            world = (await send("Page.createIsolatedWorld", {"frameId": self.tab.frame_id, "worldName": "archiver"},
                                session))["executionContextId"]
            stretched = 0
            if self.settings.scroll:
                # at once, so the lazy loads overlap the page's own
                self.stage = "showing the whole page for lazy content"
                stretched = await self._stretch(world, 0)
                lap("stretch")
            self.stage = "waiting for the network to settle"
            await self._settle(wait_for_load=True)
            lap("settle")
            if stretched:
                self.stage = "showing the whole page for lazy content"
                for _ in range(STRETCH_ROUNDS - 1):
                    taller = await self._stretch(world, stretched)
                    if not taller:
                        break
                    stretched = taller
                    await self._settle(wait_for_load=False)
                await self._viewport(self.settings.viewport[1])
                lap("stretch_more")
            self.stage = "reading the DOM"
            dom = await self._evaluate(world, _DOM_SCRIPT)
            if "tooBig" in dom:
                raise self._error(f"the DOM has {dom['tooBig']} characters (more than {MAX_DOM_CHARS})")
            lap("dom")
            shot = None
            if self.settings.screenshot:
                self.stage = "waiting to take the screenshot"
                async with self.screenshots:
                    lap("screenshot_wait")
                    self.stage = "taking the screenshot"
                    shot = await self._screenshot()
                lap("screenshot")
            # what the page asks for from here on is not part of the capture; what it asked
            # for before is, so those fetches are waited for (within the page timeout)
            self.closing = True
            self.stage = f"waiting for the last requests ({self.in_flight} in flight)"
            while self.in_flight:
                await asyncio.sleep(0.02)
            lap("drain")
            self.timings["total"] = time.monotonic() - t0
            return Rendered(dom=dom["html"], screenshot=shot, exchanges=self._exchanges(),
                            blocked=list(self.blocked), timings=dict(self.timings))
        except _Refused as e:
            raise self._error(f"the browser refused {e}") from None

    async def _evaluate(self, world: int, expression: str, await_promise: bool = False) -> Any:
        r = await self.conn.send("Runtime.evaluate", {
            "expression": expression, "contextId": world, "returnByValue": True,
            "awaitPromise": await_promise}, self.tab.session)
        if "exceptionDetails" in r:
            raise _Refused("Runtime.evaluate", {"message": str(r["exceptionDetails"].get("text"))})
        return (r.get("result") or {}).get("value")

    async def _settle(self, wait_for_load: bool) -> None:
        """Until nothing was in flight for QUIET seconds (and the load event came), or the cap."""
        deadline = time.monotonic() + self.settings.settle_timeout
        while True:
            now = time.monotonic()
            if (self.in_flight == 0 and now - self.last_change >= QUIET
                    and (not wait_for_load or self._reached("load"))):
                return
            if now >= deadline:
                self.timings["settle_capped"] = 1.0
                return
            await asyncio.sleep(min(0.02, max(0.0, deadline - now)))

    async def _stretch(self, world: int, before: int) -> int:
        """Make the viewport as tall as the page (at most MAX_SCREENSHOT_PX) when that is taller
        than the viewport and than `before`; the height used, or 0 when it was not."""
        height = min(int(await self._evaluate(world, _HEIGHT_SCRIPT) or 0), MAX_SCREENSHOT_PX)
        if height <= max(before, self.settings.viewport[1]):
            return 0
        await self._viewport(height)
        await self._evaluate(world, _STRETCH_SCRIPT, await_promise=True)
        # what the scroll handlers start within QUIET counts: the settle that follows waits
        # at least that long from here
        self.last_change = time.monotonic()
        self.timings["stretched_px"] = float(height)
        return height

    async def _viewport(self, height: int) -> None:
        params = {"width": self.settings.viewport[0], "height": height, "deviceScaleFactor": 1, "mobile": False}
        if height > self.settings.viewport[1]:
            # the stretched page is laid out at full size (what lazy loaders measure, and the
            # device pixel ratio srcset picks by, stay 1) but drawn at a tenth: its frames cost
            # 0.16 s instead of 0.36 for 1280 x 16384
            params["scale"] = STRETCH_SCALE
        await self.conn.send("Emulation.setDeviceMetricsOverride", params, self.tab.session)

    async def _screenshot(self) -> bytes:
        metrics = await self.conn.send("Page.getLayoutMetrics", None, self.tab.session)
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        # the viewport's width, as a reader sees the page: a ticker or menu running off to the
        # side made shots 15,000 px wide, rasterised for seconds
        width = self.settings.viewport[0]
        height = min(max(int(size.get("height", 0)), 1), self.settings.screenshot_max_height)
        shot = await self.conn.send("Page.captureScreenshot", {
            # optimizeForSpeed: a faster zlib setting, the PNG lossless all the same (0.76 -> 0.43 s
            # for a 1280 x 16384 shot)
            "format": "png", "optimizeForSpeed": True, "captureBeyondViewport": True, "fromSurface": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, self.tab.session)
        return base64.b64decode(shot["data"])
