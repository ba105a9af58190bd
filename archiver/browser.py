"""Browser capture: pages written by JavaScript, rendered in Chromium, every byte from archiver's fetcher.

Chromium is driven over the DevTools protocol on a private pipe (`--remote-debugging-pipe`:
no port that another local process could connect to). A page is rendered in a tab of its
own browser context; a tab serves one page after another and is emptied in between (no
cookies, storage, session storage, history or cached bodies of the page before), so a
capture does not depend on what was rendered before it. Every request of the tab, its
frames and workers is paused at the request stage (the Fetch domain) and handed to the
caller's fetch function, which fetches it with archiver's recording fetcher; the tab is
fulfilled with the decoded body it returned, or the request fails. So robots.txt, per-host politeness, the
address policy and the body caps hold for browser traffic, and the WARC keeps the bytes as
the server sent them. The page's own document is the response the caller already has: it is
not fetched a second time.

Nothing else reaches the network even if a request escapes interception (a service worker's
script, a popup, a WebSocket, a preconnect): the browser's only proxy is a loopback port that
is bound but never listens (loopback included: `<-loopback>`), with no direct fallback; host
names resolve to nothing (`--host-resolver-rules`); QUIC is off; WebRTC may not use UDP that
does not go through the proxy (`--webrtc-ip-handling-policy`; Chromium 156 no longer knows
the `force-` spelling); a WebSocket is listed in `blocked` and its connection refused by
the proxy; service worker registration is refused; background networking, component
updates, sync and the other startup calls to Google services are off.

Costs are bounded: a semaphore of `pages_at_once`, a page timeout, a browser restarted after
`restart_after` pages or when, after a page, the memory of its process tree (PSS: shared
pages counted once) is past `max_browser_mb`. A browser that exits
or crashes costs the pages it was rendering (BrowserError), never the caller; the next page
gets a new browser.

What the tab does not get: the browser's own cookies are not sent (requests carry what
archiver's fetcher sends: its User-Agent, an outlet's configured headers and cookies), and
only GET and HEAD are fetched.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import BrowserError, FetchError

log = logging.getLogger(__name__)


@dataclass
class BrowserSettings:
    executable: str = "/usr/bin/chromium"
    pages_at_once: int = 2
    page_timeout: float = 30.0  # seconds for one page, from its navigation to its last exchange
    settle_timeout: float = 5.0  # cap on each wait for the network to go quiet
    scroll: bool = True  # scroll to the bottom (lazy images, infinite lists) before capturing
    screenshot: bool = True
    viewport: tuple[int, int] = (1280, 900)
    restart_after: int = 100  # pages per browser
    max_browser_mb: int = 600  # PSS of the browser's process tree

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
        if self.restart_after < 1:
            raise bad("restart_after", "must be at least 1 page")
        if self.max_browser_mb < 1:
            raise bad("max_browser_mb", "must be at least 1 MB")


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
    screenshot: bytes | None  # PNG of the full page (up to MAX_SCREENSHOT_PX each way)
    exchanges: list[Any]  # Fulfil.exchange of every request the page made, in request order
    blocked: list[str]  # "URL (reason)" for every request refused
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


# `fetch(url, request_headers)`: None refuses the request (robots.txt, address policy); a
# FetchError it raises refuses it with that error's reason.
FetchFunction = Callable[[str, dict[str, str]], Awaitable[Fulfil | None]]

QUIET = 0.2  # the network has settled when nothing was in flight for this long
SCROLL_STEPS = 40  # viewports scrolled at most (an endless list stops here)
MAX_SCREENSHOT_PX = 16384  # Chromium's largest texture; a taller page is cut at this height
MAX_DOM_CHARS = 50_000_000
MAX_MESSAGE = 256 << 20  # a larger message from the browser means something is wrong with it
LAUNCH_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0

# hop-by-hop and framing headers: the browser gets the decoded body, with its own framing
_DROP_RESPONSE = frozenset({
    "content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade"})
# the fetcher sends its own User-Agent and Accept-Encoding (it must decode what it asks for);
# client hints would announce HeadlessChrome next to that User-Agent
_DROP_REQUEST = frozenset({
    "user-agent", "accept-encoding", "host", "connection", "content-length", "cookie",
    "proxy-connection", "keep-alive", "te", "upgrade"})

# Chromium's own traffic at startup and in the background, and behaviour that changes what a
# page gets: from Playwright's list for Chromium 15x (HTTPS upgrades would ask the fetcher
# for https:// URLs the page never named; with Fetch interception Chromium 155 aborts
# preflighted cross-origin redirects unless AvoidCorsURLLoaderRestartOnRedirect is off),
# plus the WebUI omnibox popups that Chromium 156 preloads in headless mode (two renderers
# doing work on every navigation: ~40% of the CPU per page in measurement) and the spare
# renderer (memory; each context gets its own renderer anyway)
_DISABLED_FEATURES = ",".join([
    "WebUIOmniboxPopup", "WebUIOmniboxFullPopup", "WebUIOmniboxAimPopup", "AimEnabled",
    "SpareRendererForSitePerProcess", "HttpsUpgrades", "HttpsFirstBalancedModeAutoEnable",
    "AvoidCorsURLLoaderRestartOnRedirect", "PaintHolding", "LensOverlay", "OptimizationHints",
    "NetworkTimeServiceQuerying", "PreconnectToSearch", "MediaRouter", "DialMediaRouteProvider",
    "Translate", "AutofillServerCommunication", "CertificateTransparencyComponentUpdater",
])

# runs in every frame before the page's scripts: a service worker could answer the page's
# requests from its own cache and outlive the page
_INIT_SCRIPT = """(() => {
  const refuse = () => Promise.reject(new DOMException('service workers are off in this browser', 'SecurityError'));
  if (self.ServiceWorkerContainer) ServiceWorkerContainer.prototype.register = refuse;
})();"""

_DOM_SCRIPT = f"""(() => {{
  const dt = document.doctype ? new XMLSerializer().serializeToString(document.doctype) + '\\n' : '';
  const html = document.documentElement ? document.documentElement.outerHTML : '';
  if (dt.length + html.length > {MAX_DOM_CHARS}) return {{tooBig: dt.length + html.length}};
  return {{html: dt + html}};
}})()"""

_SCROLL_SCRIPT = """(() => {
  const el = document.scrollingElement || document.documentElement;
  window.scrollBy(0, window.innerHeight);
  return [window.scrollY + window.innerHeight, el ? el.scrollHeight : 0];
})()"""

_TWO_FRAMES = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def chromium_args(profile: str, proxy_port: int, viewport: tuple[int, int], sandbox: bool) -> list[str]:
    """The command line: headless, driven over fds 3/4, no way to the network but the fetcher."""
    args = [
        "--headless",
        "--remote-debugging-pipe",
        f"--user-data-dir={profile}",
        f"--window-size={viewport[0]},{viewport[1]}",
        # the backstop: whatever escapes interception goes to a port that refuses it
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-quic",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-field-trial-config",
        "--no-pings",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--password-store=basic",
        "--use-mock-keychain",
        "--deny-permission-prompts",
        f"--disable-features={_DISABLED_FEATURES}",
        # a headless tab counts as hidden: without these its timers and animation frames
        # (and so lazy loading) are throttled
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
        # a page navigated away from stays alive in the back-forward cache
        "--disable-back-forward-cache",
        "--disable-hang-monitor",
        "--hide-scrollbars",
        "--mute-audio",
    ]
    if not sandbox:
        args.append("--no-sandbox")
    return args


# ---------------------------------------------------------------------- processes and memory

def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name in parentheses may itself hold spaces and parentheses
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_memory(root: int) -> int:
    """Bytes of memory the process tree costs: the sum of PSS (each shared page split among
    the processes sharing it), or of RSS where the kernel gives no PSS. Summed RSS would
    count Chromium's 300 MB binary and shared memory once per process."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            continue
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
        except OSError:
            pass
    return total


# ---------------------------------------------------------------------- the DevTools pipe

class _Gone(Exception):
    """The browser's end of the pipe closed: it exited, crashed or was killed."""


class _Refused(Exception):
    """The browser answered a command with an error."""

    def __init__(self, method: str, error: dict):
        self.method = method
        self.message = str(error.get("message", error))
        super().__init__(f"{method}: {self.message}")


Listener = Callable[[str, str, dict], None]  # (session id, method, params)


class _Reader(asyncio.Protocol):
    def __init__(self, conn: "_Connection"):
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn._feed(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn._lose("the browser closed its end of the pipe")


class _Writer(asyncio.Protocol):
    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()

    def pause_writing(self) -> None:
        self.ready.clear()

    def resume_writing(self) -> None:
        self.ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ready.set()


class _Connection:
    """CDP over Chromium's pipe: JSON messages separated by NUL bytes, sessions flattened."""

    def __init__(self) -> None:
        self._next_id = 0
        self._pending: dict[int, tuple[str, asyncio.Future]] = {}
        self._buf = bytearray()
        self._scanned = 0
        self.listeners: dict[str, Listener] = {}  # session id -> its page's listener
        self.on_gone: set[Callable[[str], None]] = set()
        self.gone: str | None = None

    async def open(self, read_fd: int, write_fd: int) -> None:
        loop = asyncio.get_running_loop()
        self._rt, _ = await loop.connect_read_pipe(lambda: _Reader(self), os.fdopen(read_fd, "rb", 0))
        self._wt, self._wp = await loop.connect_write_pipe(_Writer, os.fdopen(write_fd, "wb", 0))

    def _feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\0", self._scanned)
            if end < 0:
                self._scanned = len(self._buf)
                if self._scanned > MAX_MESSAGE:
                    self._lose(f"the browser sent a message of more than {MAX_MESSAGE} bytes")
                    self.close()
                return
            raw = bytes(self._buf[:end])
            del self._buf[:end + 1]
            self._scanned = 0
            try:
                self._dispatch(json.loads(raw))
            except Exception:
                # one odd message or a listener's bug must not stop the reader
                log.warning("browser message not handled", exc_info=True)

    def _dispatch(self, msg: dict) -> None:
        if "id" in msg:
            entry = self._pending.pop(msg["id"], None)
            if entry is None or entry[1].done():
                return
            method, fut = entry
            if "error" in msg:
                fut.set_exception(_Refused(method, msg["error"]))
            else:
                fut.set_result(msg.get("result") or {})
            return
        listener = self.listeners.get(msg.get("sessionId", ""))
        if listener is not None:
            listener(msg.get("sessionId", ""), msg.get("method", ""), msg.get("params") or {})

    def _lose(self, reason: str) -> None:
        if self.gone is not None:
            return
        self.gone = reason
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(_Gone(reason))
        self._pending.clear()
        for callback in list(self.on_gone):
            callback(reason)

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        if self.gone is not None:
            raise _Gone(self.gone)
        self._next_id += 1
        mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self._pending[mid] = (method, fut)
        try:
            self._wt.write(json.dumps(msg).encode() + b"\0")
            await self._wp.ready.wait()
            return await fut
        finally:
            self._pending.pop(mid, None)

    def close(self) -> None:
        for transport in (getattr(self, "_wt", None), getattr(self, "_rt", None)):
            if transport is not None:
                transport.close()


# ---------------------------------------------------------------------- one browser process

class _Browser:
    def __init__(self, pid: int, conn: _Connection, profile: str):
        self.pid = pid
        self.conn = conn
        self.profile = profile
        self.pages = 0  # pages started in it
        self.active = 0  # pages rendering now
        self.retiring: str | None = None  # why it is to be restarted once its pages are done
        self.killed_for: str | None = None
        self._status: int | None = None

    @property
    def alive(self) -> bool:
        return self.conn.gone is None

    @classmethod
    async def launch(cls, settings: BrowserSettings, proxy_port: int) -> "_Browser":
        if not os.access(settings.executable, os.X_OK):
            raise BrowserError(f"browser executable {settings.executable} is not there or not executable "
                               "(set executable, or apt-get install chromium)")
        profile = tempfile.mkdtemp(prefix="archiver-browser-")
        log_path = os.path.join(profile, "chromium.log")
        argv = [settings.executable, *chromium_args(profile, proxy_port, settings.viewport,
                                                    sandbox=os.geteuid() != 0)]
        # Chromium reads commands from fd 3 and writes to fd 4; move our ends above them first
        # so that placing one cannot overwrite the other
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        child_r = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_r)
        os.close(from_w)
        logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            pid = os.posix_spawn(settings.executable, argv, os.environ, setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, logfd, 1),
                (os.POSIX_SPAWN_DUP2, logfd, 2),
                (os.POSIX_SPAWN_DUP2, child_r, 3),
                (os.POSIX_SPAWN_DUP2, child_w, 4),
            ])
        except OSError as e:
            for fd in (child_r, child_w, to_w, from_r):
                os.close(fd)
            shutil.rmtree(profile, ignore_errors=True)
            raise BrowserError(f"browser {settings.executable} could not be started: {e.strerror or e}") from None
        finally:
            os.close(logfd)
        os.close(child_r)
        os.close(child_w)
        conn = _Connection()
        browser = cls(pid, conn, profile)
        # a browser that died leaves renderers and a zygote behind for a moment: they go
        # before it is reaped
        conn.on_gone.add(browser._kill_group)
        try:
            await conn.open(from_r, to_w)
            async with asyncio.timeout(LAUNCH_TIMEOUT):
                await conn.send("Browser.getVersion")
                # the tab Chromium opens at startup would hold a renderer for nothing
                targets = await conn.send("Target.getTargets")
                for t in targets.get("targetInfos", []):
                    if t.get("type") == "page":
                        await conn.send("Target.closeTarget", {"targetId": t["targetId"]})
        except (TimeoutError, _Gone, _Refused, OSError) as e:
            why = "no answer within %gs" % LAUNCH_TIMEOUT if isinstance(e, TimeoutError) else str(e)
            tail = _tail(log_path)
            await browser.kill()
            raise BrowserError(f"browser {settings.executable} did not start: {why}"
                               + (f"; its output ends: {tail}" if tail else "")) from None
        except BaseException:
            await browser.kill()
            raise
        log.info("browser started: pid %d", pid)
        return browser

    def memory(self) -> int:
        return tree_memory(self.pid) if self.alive else 0

    async def exit_status(self, wait: float = 1.0) -> str:
        """How the process ended, for messages: 'killed by SIGKILL', 'exit code 1'."""
        if self.killed_for:
            return self.killed_for
        deadline = time.monotonic() + wait
        while self._status is None and time.monotonic() < deadline:
            self._reap()
            if self._status is None:
                await asyncio.sleep(0.02)
        if self._status is None:
            return self.conn.gone or "still running"
        if os.WIFSIGNALED(self._status):
            sig = os.WTERMSIG(self._status)
            try:
                return f"killed by {signal.Signals(sig).name}"
            except ValueError:
                return f"killed by signal {sig}"
        return f"exit code {os.WEXITSTATUS(self._status)}"

    def _reap(self) -> None:
        if self._status is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self._status = 0
            return
        if pid:
            self._status = status

    async def close(self) -> None:
        """Ask the browser to quit, then make sure: kill what is left, remove the profile."""
        if self.alive:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.conn.send("Browser.close")
            except (TimeoutError, _Gone, _Refused):
                pass
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while self._status is None and time.monotonic() < deadline:
            self._reap()
            if self._status is None:
                await asyncio.sleep(0.02)
        await self.kill()

    def _kill_group(self, reason: str = "") -> None:
        """SIGKILL to the browser's process group and its descendants. Only while it is not
        reaped: until then its pid (the group's id) cannot belong to another process."""
        if self._status is not None:
            return
        for pid in process_tree(self.pid):  # descendants that left the group too
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    async def kill(self, reason: str | None = None) -> None:
        if reason and not self.killed_for:
            self.killed_for = reason
        self._kill_group()
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while self._status is None and time.monotonic() < deadline:
            self._reap()
            if self._status is None:
                await asyncio.sleep(0.01)
        self.conn._lose(self.killed_for or "the browser was stopped")
        self.conn.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def _tail(path: str, size: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return " ".join(f.read().decode("utf-8", "replace").split())
    except OSError:
        return ""


# ---------------------------------------------------------------------- tabs

_NETWORK_BUFFERS = {"maxTotalBufferSize": 0, "maxResourceBufferSize": 0, "maxPostDataSize": 0}
_NOT_FETCHED = object()


def _header(request: dict, name: str) -> str | None:
    for k, v in (request.get("headers") or {}).items():
        if k.lower() == name:
            return v
    return None


async def _quiet(coro: Awaitable[Any]) -> None:
    """A command whose failure only means its frame, request or worker has gone."""
    try:
        await coro
    except (_Refused, _Gone):
        pass


class _Tab:
    """A browser context with one tab, kept for the pages of one slot.

    A new context and tab per page cost a renderer process and a profile each time: in
    measurement ~40% of the CPU per page. So a tab serves page after page and is emptied in
    between (see reset); a page that fails takes its tab with it."""

    def __init__(self, browser: _Browser):
        self.browser = browser
        self.conn = browser.conn
        self.context = ""
        self.frame_id = ""  # a tab's main frame has its target's id
        self.session = ""
        self.children: set[str] = set()  # sessions of its out-of-process frames and workers
        self.tasks: set[asyncio.Task] = set()
        self.run: _PageRun | None = None  # the page being rendered; None between pages
        self.origins: set[str] = set()  # of the documents since the last reset

    @classmethod
    async def open(cls, browser: _Browser, settings: BrowserSettings) -> "_Tab":
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
            self._spawn(_quiet(self.conn.send("Page.handleJavaScriptDialog",
                                              {"accept": params.get("type") == "beforeunload"}, session)))
        elif self.run is not None:
            self.run.on_event(session, method, params)
        elif method == "Fetch.requestPaused":
            # between pages (a page's unload handlers): nothing is fetched
            self._spawn(_quiet(self.conn.send("Fetch.failRequest",
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
                await _quiet(self._network(session))
            await self.conn.send("Runtime.runIfWaitingForDebugger", None, session)
        except (_Refused, _Gone):
            pass  # the frame or worker went away meanwhile

    async def reset(self) -> None:
        """Empty the tab for the next page: a blank document (the page's unload handlers
        have run; session storage does not outlive it), and no cookies or storage left by
        the page before; its history goes as the next page starts (_PageRun._render). A
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


# ---------------------------------------------------------------------- one page

class _PageRun:
    """One page in a tab: serve its requests, settle, scroll, capture."""

    def __init__(self, tab: _Tab, settings: BrowserSettings, url: str,
                 main: tuple[int, list[tuple[str, str]], bytes], fetch: FetchFunction):
        self.tab = tab
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
            await _quiet(self.conn.send("Fetch.continueRequest", {"requestId": rid}, session))
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
        await _quiet(self.conn.send("Fetch.failRequest", {"requestId": rid, "errorReason": error}, session))

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
            # history.length would count the pages before; Chromium refuses this while a
            # navigation is committing, so it is done here, on the blank page left by reset
            await _quiet(send("Page.resetNavigationHistory", None, session))
            nav = await send("Page.navigate", {"url": self.url}, session)
            if nav.get("errorText"):
                raise self._error(f"the browser could not show the page: {nav['errorText']}")
            self.loader = nav.get("loaderId", "")
            await self._until("DOMContentLoaded")
            lap("load")
            self.stage = "waiting for the network to settle"
            await self._settle(wait_for_load=True)
            lap("settle")
            # scripts of the page cannot reach into an isolated world, nor change what its
            # DOM methods do there
            world = (await send("Page.createIsolatedWorld", {"frameId": self.tab.frame_id, "worldName": "archiver"},
                                session))["executionContextId"]
            if self.settings.scroll:
                self.stage = "scrolling"
                if await self._scroll(world):
                    await self._settle(wait_for_load=False)
                lap("scroll")
            self.stage = "reading the DOM"
            dom = await self._evaluate(world, _DOM_SCRIPT)
            if "tooBig" in dom:
                raise self._error(f"the DOM has {dom['tooBig']} characters (more than {MAX_DOM_CHARS})")
            lap("dom")
            shot = None
            if self.settings.screenshot:
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

    async def _scroll(self, world: int) -> bool:
        """Scroll a viewport at a time to the bottom, then back up; True when that started requests."""
        before = self.requests
        for _ in range(SCROLL_STEPS):
            bottom, height = await self._evaluate(world, _SCROLL_SCRIPT)
            await self._frames(world)
            if bottom >= height:
                break
        await self._evaluate(world, "window.scrollTo(0, 0)")
        await self._frames(world)
        return self.requests != before

    async def _frames(self, world: int) -> None:
        # two animation frames: intersection observers (lazy loading) run after a frame
        try:
            async with asyncio.timeout(1.0):
                await self._evaluate(world, _TWO_FRAMES, await_promise=True)
        except TimeoutError:
            pass

    async def _screenshot(self) -> bytes:
        metrics = await self.conn.send("Page.getLayoutMetrics", None, self.tab.session)
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        width = min(max(int(size.get("width", 0)), self.settings.viewport[0]), MAX_SCREENSHOT_PX)
        height = min(max(int(size.get("height", 0)), 1), MAX_SCREENSHOT_PX)
        shot = await self.conn.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "fromSurface": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, self.tab.session)
        return base64.b64decode(shot["data"])


# ---------------------------------------------------------------------- the pool

class BrowserPool:
    """Renders pages, `pages_at_once` at a time, in one browser restarted as settings say."""

    def __init__(self, settings: BrowserSettings):
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.pages_at_once)
        self._cond = asyncio.Condition()
        self._browser: _Browser | None = None
        self._idle: list[_Tab] = []  # emptied tabs of the current browser
        self._closed = False
        # the proxy port: bound, never listening, so a connection to it is refused, and no
        # other process can take it while the pool lives
        self._sink = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sink.bind(("127.0.0.1", 0))
        self.proxy_port = self._sink.getsockname()[1]

    @property
    def browser_pid(self) -> int | None:
        b = self._browser
        return b.pid if b is not None and b.alive else None

    def browser_memory(self) -> int | None:
        """Bytes the current browser's process tree costs (see tree_memory), None without one."""
        b = self._browser
        return b.memory() if b is not None and b.alive else None

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
                waited = time.monotonic() - started
                rendered = await _PageRun(tab, self.settings, url, main, fetch).run()
                rendered.timings["start"] = waited
                kept = await self._empty(tab)
                return rendered
            finally:
                await self._release(browser, tab, kept)

    async def _open_tab(self, browser: _Browser, url: str) -> _Tab:
        try:
            async with asyncio.timeout(self.settings.page_timeout):
                return await _Tab.open(browser, self.settings)
        except TimeoutError:
            raise BrowserError(f"no tab opened within page_timeout ({self.settings.page_timeout:g}s)",
                               url=url) from None
        except _Gone:
            raise BrowserError(f"the browser exited while opening a tab ({await browser.exit_status()})",
                               url=url) from None
        except _Refused as e:
            raise BrowserError(f"the browser refused {e}", url=url) from None

    async def _empty(self, tab: _Tab) -> bool:
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

    async def _lease(self) -> tuple[_Browser, _Tab | None]:
        async with self._cond:
            while True:
                if self._closed:
                    raise BrowserError("the browser pool is closed")
                b = self._browser
                if b is not None and b.alive and b.retiring is None:
                    b.active += 1
                    b.pages += 1
                    if b.pages >= self.settings.restart_after:
                        b.retiring = f"{b.pages} pages rendered (restart_after)"
                    return b, (self._idle.pop() if self._idle else None)
                if b is not None and b.alive and b.active > 0:
                    await self._cond.wait()  # a restart waits for the pages still in it
                    continue
                if b is not None:
                    self._browser = None
                    self._idle.clear()
                    if b.alive:
                        log.info("restarting the browser: %s", b.retiring)
                    await b.close()
                self._browser = await _Browser.launch(self.settings, self.proxy_port)

    async def _release(self, browser: _Browser, tab: _Tab | None, kept: bool) -> None:
        async with self._cond:
            browser.active -= 1
            if tab is not None and not kept and not await tab.dispose():
                # a tab that will not close: the other pages in this browser would be next
                await browser.kill("a page's tab could not be closed")
            if browser.alive and browser.retiring is None:
                mb = browser.memory() / 2**20
                if mb > self.settings.max_browser_mb:
                    browser.retiring = f"{mb:.0f} MB of memory (max_browser_mb {self.settings.max_browser_mb})"
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
        if b is not None:
            await b.close()
        self._sink.close()

    async def __aenter__(self) -> "BrowserPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
