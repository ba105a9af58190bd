"""When each HTTP request reached the server machine, as its kernel saw it.

`ArrivalRelay` listens on a server's public address(es) on loopback and relays every byte to
where the server really listens. A request's time is the kernel's receive timestamp of its
first bytes (SO_TIMESTAMPNS, taken as the packet is queued to the socket), not the time a
process got round to reading them: a server's own log (nginx's `$msec` is the time of its
event loop's last wake-up) stamps requests late whenever the server process was busy or
waiting for a core, so requests that arrived 0.35 s apart can be logged together.

With HTTP/1.1 and no pipelining, the first bytes a client sends after a response started
coming back are its next request on that connection.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import defaultdict
from dataclasses import dataclass

# <asm-generic/socket.h>: SO_TIMESTAMPNS_OLD, whose control message has the same number
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")


@dataclass(frozen=True)
class Arrival:
    address: str  # "ip:port" the client connected to
    at: float  # seconds since the epoch (CLOCK_REALTIME), as the kernel received the bytes
    line: str  # the request line


class ArrivalRelay:
    """`with ArrivalRelay({(ip, port): (ip, upstream_port), ...}) as relay:` then `relay.arrivals`."""

    def __init__(self, routes: dict[tuple[str, int], tuple[str, int]]):
        self.routes = routes
        self.arrivals: list[Arrival] = []
        self.errors: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="arrival-relay", daemon=True)
        self._listeners: list[socket.socket] = []
        self._relays: set[asyncio.Task[None]] = set()

    def __enter__(self) -> "ArrivalRelay":
        try:
            for public in self.routes:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._listeners.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # accepted sockets inherit it
                s.bind(public)
                s.listen(4096)
                s.setblocking(False)
        except OSError as e:
            for s in self._listeners:
                s.close()
            raise OSError(e.errno, f"arrival relay cannot listen on {public[0]}:{public[1]}: {e.strerror}") from e
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def by_address(self) -> dict[str, list[Arrival]]:
        out: dict[str, list[Arrival]] = defaultdict(list)
        for a in sorted(self.arrivals, key=lambda a: a.at):
            out[a.address].append(a)
        return out

    async def _start(self) -> None:
        for s in self._listeners:
            self._loop.add_reader(s.fileno(), self._accept, s)

    async def _stop(self) -> None:
        for s in self._listeners:
            self._loop.remove_reader(s.fileno())
            s.close()
        for t in self._relays:
            t.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        public = listener.getsockname()
        task = self._loop.create_task(self._relay(conn, f"{public[0]}:{public[1]}", self.routes[public]))
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    async def _relay(self, client: socket.socket, address: str, upstream: tuple[str, int]) -> None:
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        next_is_request = [True]
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._loop.sock_connect(up, upstream)
            tasks = {self._loop.create_task(self._from_client(client, up, address, next_is_request)),
                     self._loop.create_task(self._to_client(up, client, next_is_request))}
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except OSError:
            pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # a closed side ends the other
            client.close()
            up.close()

    async def _from_client(self, client: socket.socket, up: socket.socket, address: str,
                           next_is_request: list[bool]) -> None:
        while True:
            await self._readable(client)
            try:
                data, ancillary, _, _ = client.recvmsg(65536, socket.CMSG_SPACE(_TIMESPEC.size))
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            if next_is_request[0]:
                next_is_request[0] = False
                self._note(address, data, ancillary)
            await self._loop.sock_sendall(up, data)

    async def _to_client(self, up: socket.socket, client: socket.socket, next_is_request: list[bool]) -> None:
        while True:
            data = await self._loop.sock_recv(up, 262144)
            if not data:
                return
            next_is_request[0] = True
            await self._loop.sock_sendall(client, data)

    async def _readable(self, sock: socket.socket) -> None:
        ready = self._loop.create_future()
        self._loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            self._loop.remove_reader(sock.fileno())

    def _note(self, address: str, data: bytes, ancillary: list[tuple[int, int, bytes]]) -> None:
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(payload)
                self.arrivals.append(Arrival(address, sec + nsec / 1e9, line))
                return
        # a time taken now could be late by however long this relay waited for a core
        self.errors.append(f"no kernel receive timestamp for {line!r} to {address}")
