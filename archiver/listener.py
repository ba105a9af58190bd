"""The daemon's small HTTP endpoint (/healthz, /metrics), built to stay up under abuse.

asyncio's own server is not used: when accept() fails for want of file descriptors it logs a
traceback for every attempt, up to a hundred a loop turn, and holds every connection it
accepts for as long as the peer likes. Here one accept loop per listening socket backs off
exponentially on accept errors and logs them at most once a minute; at most
`max_connections` connections are served at once (the next ones are closed as soon as they
are accepted, so they cost one descriptor for a moment); a connection has `request_timeout`
seconds in all to send a request head of at most `max_request_bytes`; one request per
connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .ratelog import RateLimitedLog

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    def encode(self, head_only: bool = False) -> bytes:
        head = (f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unknown')}\r\n"
                f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        return head if head_only else head + self.body


@dataclass
class ListenerStats:
    served: int = 0
    refused: int = 0  # closed at once: max_connections were being served
    timed_out: int = 0
    accept_errors: int = 0


Handler = Callable[[str, str], Response]  # (method, path) -> response


class Listener:
    def __init__(self, host: str, port: int, handler: Handler, *, max_connections: int = 64,
                 request_timeout: float = 5.0, max_request_bytes: int = 8192,
                 max_backoff: float = 2.0, log_every: float = 60.0):
        self.host, self.port, self.handler = host, port, handler
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.max_request_bytes = max_request_bytes
        self.max_backoff = max_backoff
        self.stats = ListenerStats()
        self._log = RateLimitedLog(log, log_every)
        self._socks: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def ports(self) -> list[int]:
        """The ports bound (port 0 asks the system for a free one)."""
        return [s.getsockname()[1] for s in self._socks]

    def start(self) -> None:
        """Bind every address `host` resolves to (as asyncio's server does); OSError if one cannot be."""
        infos = socket.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(256)
                sock.setblocking(False)
        except OSError:
            self.close_sockets()
            raise
        loop = asyncio.get_running_loop()
        self._accepting = [loop.create_task(self._accept_loop(s)) for s in self._socks]

    def close_sockets(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks.clear()

    async def aclose(self) -> None:
        tasks = [*self._accepting, *self._conns]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.close_sockets()

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except ConnectionAbortedError:
                continue  # the peer gave up while queued; nothing is wrong here
            except Exception as e:  # EMFILE and its kind, or anything else: wait, never spin
                self.stats.accept_errors += 1
                delay = min(self.max_backoff, max(0.01, delay * 2))
                self._log.log(logging.ERROR, "accept", "health listener on %s:%d cannot accept connections: %s "
                              "(%d errors so far); backing off", self.host, self.port,
                              getattr(e, "strerror", None) or e, self.stats.accept_errors)
                await asyncio.sleep(delay)
                continue
            if delay:
                self._log.log(logging.INFO, "accept-ok", "health listener on %s:%d accepts connections again",
                              self.host, self.port)
            delay = 0.0
            if len(self._conns) >= self.max_connections:
                conn.close()
                self.stats.refused += 1
                self._log.log(logging.WARNING, "cap", "health listener: %d connections open, the most it serves; "
                              "closing new ones at once (%d so far)", self.max_connections, self.stats.refused)
                continue
            task = loop.create_task(self._serve(conn))
            self._conns.add(task)
            task.add_done_callback(self._conns.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                async with asyncio.timeout(self.request_timeout):
                    method, path, status = await self._read_request(conn)
            except TimeoutError:
                self.stats.timed_out += 1
                return
            if status is not None:
                response = Response(status, f"{_REASONS[status].lower()}\n".encode())
            elif method not in ("GET", "HEAD"):
                response = Response(405, b"method not allowed\n")
            else:
                try:
                    response = self.handler(method, path)
                except Exception as e:  # a bug in one answer is one 500, never the listener
                    self._log.log(logging.ERROR, "handler", "health listener: answering %s failed: %r", path, e)
                    response = Response(500, b"internal error\n")
            async with asyncio.timeout(self.request_timeout):
                await loop.sock_sendall(conn, response.encode(head_only=method == "HEAD"))
            self.stats.served += 1
        except (OSError, TimeoutError):
            pass  # the peer went away or would not read: nothing to tell it
        finally:
            conn.close()

    async def _read_request(self, conn: socket.socket) -> tuple[str, str, int | None]:
        """(method, path, None), or an error status for a head that is too long or not HTTP."""
        loop = asyncio.get_running_loop()
        buf = b""
        while b"\n\r\n" not in buf and b"\n\n" not in buf:
            chunk = await loop.sock_recv(conn, 4096)
            if not chunk:
                break
            buf += chunk
            if len(buf) > self.max_request_bytes:
                return "", "", 431
        parts = buf.split(b"\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "", "", 400
        return parts[0], parts[1].split("?", 1)[0], None
