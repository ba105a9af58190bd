"""Browser capture: pages written by JavaScript, rendered in Chromium, every byte from archiver's fetcher.

A page is rendered in a tab of its own browser context; a tab serves one page after another
and is emptied in between (no cookies, storage, session storage, history or cached bodies of
the page before), so a capture does not depend on what was rendered before it. cdp.py
starts Chromium and speaks to it over a private pipe, with no way to the network but
archiver's fetcher; browser_page.py renders one page in a tab; here are the settings, the
tabs and the pool that leases them.

Costs are bounded: a semaphore of `pages_at_once`, a page timeout, a browser restarted after
`restart_after` pages, and memory: that of its process tree (PSS: shared pages counted
once) is sampled after each page and every `memory_every` seconds while pages render, off
the event loop (a sample reads every process's smaps_rollup: tens of milliseconds). A
browser past `max_browser_mb` is handed no new page; once the pages in it are done it is
sampled again, and restarted if still past (a moment's peak, such as a screenshot's, is gone
by then; memory that stays is not). One screenshot at a time per browser. A browser that
exits or crashes costs the pages it was rendering (BrowserError), never the caller; the next
page gets a new browser. Service worker registration is refused in every frame.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from .browser_page import MAX_SCREENSHOT_PX, FetchFunction, Fulfil, PageRun, Rendered
from .cdp import CLOSE_TIMEOUT, BrowserProcess, process_tree, quiet, tree_memory
from .errors import BrowserError, BrowserGone as _Gone, BrowserRefused as _Refused

log = logging.getLogger(__name__)


@dataclass
class BrowserSettings:
    executable: str = "/usr/bin/chromium"
    pages_at_once: int = 2
    page_timeout: float = 30.0  # seconds for one page, from its navigation to its last exchange
    settle_timeout: float = 5.0  # cap on each wait for the network to go quiet
    scroll: bool = True  # stretch the viewport over the page (lazy images, growing lists) before capturing
    screenshot: bool = True
    screenshot_max_height: int = 8192  # a taller page's shot is cut at this height
    viewport: tuple[int, int] = (1280, 900)
    restart_after: int = 100  # pages per browser
    max_browser_mb: int = 600  # PSS of the browser's process tree
    memory_every: float = 2.0  # seconds between samples of that memory while pages render

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> BrowserError:
            return BrowserError(f"browser settings: {name} {rule} (got {getattr(self, name)!r})")

        if not 1 <= self.pages_at_once <= 64:
            raise bad("pages_at_once", "must be between 1 and 64")
        if not self.page_timeout > 0:
            raise bad("page_timeout", "must be more than 0 seconds")
        if not self.settle_timeout >= 0:
            raise bad("settle_timeout", "must be 0 seconds or more")
        if (len(self.viewport) != 2 or not all(isinstance(v, int) and 100 <= v <= MAX_SCREENSHOT_PX
                                               for v in self.viewport)):
            raise bad("viewport", f"must be (width, height) in pixels, each 100 to {MAX_SCREENSHOT_PX}")
        if not 100 <= self.screenshot_max_height <= MAX_SCREENSHOT_PX:
            raise bad("screenshot_max_height", f"must be 100 to {MAX_SCREENSHOT_PX} pixels")
        if self.restart_after < 1:
            raise bad("restart_after", "must be at least 1 page")
        if self.max_browser_mb < 1:
            raise bad("max_browser_mb", "must be at least 1 MB")
        if not self.memory_every > 0:
            raise bad("memory_every", "must be more than 0 seconds")


# runs in every frame before the page's scripts: a service worker could answer the page's
# requests from its own cache and outlive the page
_INIT_SCRIPT = """(() => {
  const refuse = () => Promise.reject(new DOMException('service workers are off in this browser', 'SecurityError'));
  if (self.ServiceWorkerContainer) ServiceWorkerContainer.prototype.register = refuse;
})();"""

_NETWORK_BUFFERS = {"maxTotalBufferSize": 0, "maxResourceBufferSize": 0, "maxPostDataSize": 0}
HISTORY_TRIES = 50  # a tab whose history is not reset after that many tries (20 ms apart) is not reused


# ---------------------------------------------------------------------- tabs

class Tab:
    """A browser context with one tab, kept for the pages of one slot.

    A new context and tab per page cost a renderer process and a profile each time: in
    measurement ~40% of the CPU per page. So a tab serves page after page and is emptied in
    between (see reset); a page that fails takes its tab with it."""

    def __init__(self, browser: BrowserProcess):
        self.browser = browser
        self.conn = browser.conn
        self.context = ""
        self.frame_id = ""  # a tab's main frame has its target's id
        self.session = ""
        self.children: set[str] = set()  # sessions of its out-of-process frames and workers
        self.tasks: set[asyncio.Task] = set()
        self.run: PageRun | None = None  # the page being rendered; None between pages
        self.origins: set[str] = set()  # of the documents since the last reset

    @classmethod
    async def open(cls, browser: BrowserProcess, settings: BrowserSettings) -> "Tab":
        tab = cls(browser)
        send = tab.conn.send
        tab.context = (await send("Target.createBrowserContext", {"disposeOnDetach": True}))["browserContextId"]
        try:
            target = await send("Target.createTarget", {"url": "about:blank", "browserContextId": tab.context})
            tab.frame_id = target["targetId"]
            tab.session = (await send("Target.attachToTarget", {"targetId": tab.frame_id, "flatten": True}))[
                "sessionId"]
            tab.conn.listeners[tab.session] = tab._listen
            width, height = settings.viewport
            await asyncio.gather(
                *tab._setup(tab.session),
                send("Inspector.enable", None, tab.session),
                send("Page.setLifecycleEventsEnabled", {"enabled": True}, tab.session),
                send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, tab.session),
                send("Browser.setDownloadBehavior", {"behavior": "deny", "browserContextId": tab.context}),
            )
        except BaseException:
            await tab.dispose()
            raise
        return tab

    def _setup(self, session: str) -> list[Awaitable[Any]]:
        """Interception for a tab or an out-of-process frame, before any of its requests;
        Fetch.enable first."""
        send = self.conn.send
        return [
            send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]}, session),
            self._network(session),
            send("Page.enable", None, session),
            send("Page.addScriptToEvaluateOnNewDocument", {"source": _INIT_SCRIPT}, session),
            send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True},
                 session),
        ]

    async def _network(self, session: str) -> None:
        send = self.conn.send
        # the Network domain tells of WebSockets (Fetch never sees them: their connection
        # goes to the proxy, which refuses it; Network.setBlockedURLs was measured not to
        # stop that connection); its buffers would keep copies of bodies
        await send("Network.enable", _NETWORK_BUFFERS, session)
        # a kept tab's memory cache would give the next page stylesheets and images without
        # asking for them, and the capture would miss them
        await send("Network.setCacheDisabled", {"cacheDisabled": True}, session)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _listen(self, session: str, method: str, params: dict) -> None:
        if method == "Target.attachedToTarget":
            child = params.get("sessionId", "")
            self.children.add(child)
            self.conn.listeners[child] = self._listen
            self._spawn(self._attached(child, params.get("targetInfo") or {}))
        elif method == "Target.detachedFromTarget":
            child = params.get("sessionId", "")
            self.children.discard(child)
            self.conn.listeners.pop(child, None)
        elif method == "Page.javascriptDialogOpening":
            # an open alert() stops the page's scripts until someone answers it
            self._spawn(quiet(self.conn.send("Page.handleJavaScriptDialog",
                                              {"accept": params.get("type") == "beforeunload"}, session)))
        elif self.run is not None:
            self.run.on_event(session, method, params)
        elif method == "Fetch.requestPaused":
            # between pages (a page's unload handlers): nothing is fetched
            self._spawn(quiet(self.conn.send("Fetch.failRequest",
                                              {"requestId": params["requestId"], "errorReason": "Aborted"}, session)))

    async def _attached(self, session: str, info: dict) -> None:
        """A frame in another process or a worker: intercept it too, then let it run."""
        try:
            kind = info.get("type")
            if kind == "iframe":
                intercepted, *rest = await asyncio.gather(*self._setup(session), return_exceptions=True)
                if isinstance(intercepted, BaseException):
                    return  # not resumed: a frame whose requests are not ours does not load
            elif kind in ("worker", "shared_worker"):
                # a dedicated worker's requests are paused in its frame's session; this is
                # for the WebSockets it may open
                await quiet(self._network(session))
            await self.conn.send("Runtime.runIfWaitingForDebugger", None, session)
        except (_Refused, _Gone):
            pass  # the frame or worker went away meanwhile

    async def reset(self) -> None:
        """Empty the tab for the next page: a blank document (the page's unload handlers
        have run; session storage does not outlive it), no cookies or storage left by the
        page before, and no history (history.length would count the pages before). A
        third-party frame's partitioned storage, keyed by the page's site as well, is left:
        it goes with the browser."""
        self.run = None
        send = self.conn.send
        await send("Page.navigate", {"url": "about:blank"}, self.session)
        clears = [send("Network.clearBrowserCookies", None, self.session)]
        for origin in self.origins:
            clears.append(send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"},
                               self.session))
        self.origins.clear()
        await asyncio.gather(*clears)
        # refused while the blank page is still committing: asked again until it has
        for attempt in range(HISTORY_TRIES):
            try:
                await send("Page.resetNavigationHistory", None, self.session)
                return
            except _Refused:
                if attempt == HISTORY_TRIES - 1:
                    raise
                await asyncio.sleep(0.02)

    async def dispose(self) -> bool:
        """Close the tab and its context; False when the browser would not (within CLOSE_TIMEOUT)."""
        self.run = None
        for task in list(self.tasks):
            task.cancel()
        for s in (self.session, *self.children):
            self.conn.listeners.pop(s, None)
        if not self.context or not self.browser.alive:
            return True
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.conn.send("Target.disposeBrowserContext", {"browserContextId": self.context})
            return True
        except (TimeoutError, _Refused) as e:
            log.warning("browser context not closed: %s", e or "no answer")
            return False
        except _Gone:
            return True


# ---------------------------------------------------------------------- the pool

class BrowserPool:
    """Renders pages, `pages_at_once` at a time, in one browser restarted as settings say."""

    def __init__(self, settings: BrowserSettings):
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.pages_at_once)
        self._cond = asyncio.Condition()
        self._browser: BrowserProcess | None = None
        self._idle: list[Tab] = []  # emptied tabs of the current browser
        self._closed = False
        self._shots = asyncio.Lock()  # one screenshot at a time (see PageRun.screenshots)
        self._watcher: asyncio.Task | None = None  # samples the current browser's memory
        self.peak_memory = 0  # bytes: the largest sample of any of its browsers
        # the proxy port: bound, never listening, so a connection to it is refused, and no
        # other process can take it while the pool lives
        self._sink = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sink.bind(("127.0.0.1", 0))
        self.proxy_port = self._sink.getsockname()[1]

    @property
    def browser_pid(self) -> int | None:
        b = self._browser
        return b.pid if b is not None and b.alive else None

    async def render(self, url: str, main: tuple[int, list[tuple[str, str]], bytes],
                     fetch: FetchFunction) -> Rendered:
        """Render `url` from its already fetched response `main` (status, headers, decoded
        body), every other request through `fetch`. Raises BrowserError for this page only."""
        if self._closed:
            raise BrowserError("the browser pool is closed", url=url)
        async with self._slots:
            started = time.monotonic()
            try:
                browser, tab = await self._lease()
            except BrowserError as e:
                raise BrowserError(str(e), url=url) from None
            kept = False
            try:
                if tab is None:
                    tab = await self._open_tab(browser, url)
                begun = time.monotonic()
                waited = begun - started
                try:
                    rendered = await PageRun(tab, self.settings, url, main, fetch, self._shots).run()
                finally:
                    # before its tab is emptied for another page; a page the watcher saw is
                    # not sampled again (a sample costs tens of milliseconds of CPU), unless
                    # the browser was past the cap: the page's own peak may have been that
                    if browser.memory_at < begun or browser.over is not None:
                        await self._sample(browser)
                rendered.timings["start"] = waited
                kept = await self._empty(tab)
                return rendered
            finally:
                await self._release(browser, tab, kept)

    async def _open_tab(self, browser: BrowserProcess, url: str) -> Tab:
        try:
            async with asyncio.timeout(self.settings.page_timeout):
                return await Tab.open(browser, self.settings)
        except TimeoutError:
            raise BrowserError(f"no tab opened within page_timeout ({self.settings.page_timeout:g}s)",
                               url=url) from None
        except _Gone:
            raise BrowserError(f"the browser exited while opening a tab ({await browser.exit_status()})",
                               url=url) from None
        except _Refused as e:
            raise BrowserError(f"the browser refused {e}", url=url) from None

    async def _empty(self, tab: Tab) -> bool:
        """Ready the tab for the next page; False when it has to go instead."""
        if not tab.browser.alive or tab.browser.retiring is not None:
            return False
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await tab.reset()
            return True
        except (TimeoutError, _Refused, _Gone) as e:
            log.info("tab not reused: %s", e or "no answer")
            return False

    async def _lease(self) -> tuple[BrowserProcess, Tab | None]:
        async with self._cond:
            while True:
                if self._closed:
                    raise BrowserError("the browser pool is closed")
                b = self._browser
                if b is not None and b.alive and b.retiring is None and b.over is not None and b.active == 0:
                    # its pages are done: what it holds now, it keeps
                    await self._sample(b)
                    if b.over is not None:
                        b.retiring = b.over
                if b is not None and b.alive and b.retiring is None and b.over is None:
                    b.active += 1
                    b.pages += 1
                    if b.pages >= self.settings.restart_after:
                        b.retiring = f"{b.pages} pages rendered (restart_after)"
                    return b, (self._idle.pop() if self._idle else None)
                if b is not None and b.alive and b.active > 0:
                    # a restart, or memory past the cap, waits for the pages still in it
                    await self._cond.wait()
                    continue
                if b is not None:
                    self._browser = None
                    self._idle.clear()
                    if b.alive:
                        log.info("restarting the browser: %s", b.retiring)
                    await b.close()
                if self._watcher is not None:
                    self._watcher.cancel()
                self._browser = await BrowserProcess.launch(self.settings.executable, self.settings.viewport,
                                                            self.proxy_port)
                self._watcher = asyncio.ensure_future(self._watch(self._browser))

    async def _watch(self, browser: BrowserProcess) -> None:
        """Samples the memory of `browser` while pages render in it: with two pages at once
        the other page may render for long after one ends, and memory grows meanwhile."""
        every = self.settings.memory_every
        while browser.alive and browser is self._browser:
            await asyncio.sleep(every)
            if browser.active and browser.retiring is None and time.monotonic() - browser.memory_at >= every:
                was = browser.over
                await self._sample(browser)
                if was is not None and browser.over is None:
                    async with self._cond:
                        self._cond.notify_all()  # pages waiting for its memory to fall

    async def _sample(self, browser: BrowserProcess) -> None:
        """Measure the browser's memory in a thread; past max_browser_mb it gets no new page."""
        if not browser.alive:
            return
        browser.memory_at = time.monotonic()
        used = await asyncio.to_thread(browser.memory)
        self.peak_memory = max(self.peak_memory, used)
        mb = used / 2**20
        cap = self.settings.max_browser_mb
        browser.over = f"{mb:.0f} MB of memory (max_browser_mb {cap})" if mb > cap else None

    async def _release(self, browser: BrowserProcess, tab: Tab | None, kept: bool) -> None:
        async with self._cond:
            browser.active -= 1
            if tab is not None and not kept and not await tab.dispose():
                # a tab that will not close: the other pages in this browser would be next
                await browser.kill("a page's tab could not be closed")
            if kept and tab is not None and browser is self._browser and browser.alive and browser.retiring is None:
                self._idle.append(tab)
            if browser is not self._browser and browser.active == 0:
                await browser.close()
            self._cond.notify_all()

    async def aclose(self) -> None:
        self._closed = True
        async with self._cond:
            b, self._browser = self._browser, None
            self._idle.clear()
            self._cond.notify_all()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if b is not None:
            await b.close()
        self._sink.close()

    async def __aenter__(self) -> "BrowserPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["BrowserPool", "BrowserSettings", "Fulfil", "Rendered", "FetchFunction", "process_tree", "tree_memory"]
