"""Chromium driven over the DevTools protocol on a private pipe (`--remote-debugging-pipe`:
no port that another local process could connect to): its command line, starting and
stopping its process and every process that one starts, the messages on the pipe, and the
memory its process tree costs.

Nothing reaches the network from it but what archiver fetches, even if a request escapes
interception (a service worker's script, a popup, a WebSocket, a preconnect): the
browser's only proxy is a loopback port that is bound but never listens (loopback
included: `<-loopback>`), with no direct fallback; host names resolve to nothing
(`--host-resolver-rules`); QUIC is off; WebRTC may not use UDP that does not go through the
proxy (`--webrtc-ip-handling-policy`; Chromium 156 no longer knows the `force-` spelling);
background networking, component updates, sync and the other startup calls to Google
services are off.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import BrowserError, BrowserGone as _Gone, BrowserRefused as _Refused

log = logging.getLogger("archiver.browser")

MAX_MESSAGE = 256 << 20  # a larger message from the browser means something is wrong with it
LAUNCH_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0

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
        # the network service in the browser's own process (the proxy and resolver rules
        # above still hold): as a process of its own it cost 13 MB idle and held a copy of
        # the bodies fulfilled through it, ~50 MB of the peak with two pages at once
        "--enable-features=NetworkServiceInProcess2",
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

Listener = Callable[[str, str, dict], None]  # (session id, method, params)


class _Reader(asyncio.Protocol):
    def __init__(self, conn: "Connection"):
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


class Connection:
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


async def quiet(coro: Awaitable[Any]) -> None:
    """A command whose failure only means its frame, request or worker has gone."""
    try:
        await coro
    except (_Refused, _Gone):
        pass


# ---------------------------------------------------------------------- one browser process

class BrowserProcess:
    """One Chromium process, its profile folder and its pipe; what started it must close or
    kill it."""

    def __init__(self, pid: int, conn: Connection, profile: str):
        self.pid = pid
        self.conn = conn
        self.profile = profile
        self.pages = 0  # pages started in it
        self.active = 0  # pages rendering now
        self.retiring: str | None = None  # why it is to be restarted once its pages are done
        self.memory_at = 0.0  # monotonic time of the last sample of its memory
        self.over: str | None = None  # its memory past the cap, as last sampled: no new page for now
        self.killed_for: str | None = None
        self._status: int | None = None

    @property
    def alive(self) -> bool:
        return self.conn.gone is None

    @classmethod
    async def launch(cls, executable: str, viewport: tuple[int, int], proxy_port: int) -> "BrowserProcess":
        if not os.access(executable, os.X_OK):
            raise BrowserError(f"browser executable {executable} is not there or not executable "
                               "(set executable, or apt-get install chromium)")
        _remove_stale_profiles()
        profile = tempfile.mkdtemp(prefix=f"{PROFILE_PREFIX}{os.getpid()}-")
        log_path = os.path.join(profile, "chromium.log")
        argv = [executable, *chromium_args(profile, proxy_port, viewport,
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
            # Chromium keeps crash reports and caches under the XDG folders (~/.config/chromium):
            # inside the profile they go with it
            env = {**os.environ, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile}
            pid = os.posix_spawn(executable, argv, env, setsid=True, file_actions=[
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
            raise BrowserError(f"browser {executable} could not be started: {e.strerror or e}") from None
        finally:
            os.close(logfd)
        os.close(child_r)
        os.close(child_w)
        conn = Connection()
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
            raise BrowserError(f"browser {executable} did not start: {why}"
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


PROFILE_PREFIX = "archiver-browser-"


def _remove_stale_profiles() -> None:
    """Profiles of browsers whose archiver process is gone (killed before it could remove
    them: the browser itself exits when its pipe closes)."""
    tmp = tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        owner = name[len(PROFILE_PREFIX):].split("-", 1)[0]
        if not name.startswith(PROFILE_PREFIX) or not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
            continue  # its process is alive (or the pid is another's now): not ours to judge
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def _tail(path: str, size: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return " ".join(f.read().decode("utf-8", "replace").split())
    except OSError:
        return ""
