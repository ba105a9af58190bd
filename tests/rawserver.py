"""A tiny HTTP server on 127.0.0.1 that answers with exactly the bytes a test scripts.

Each route maps a request path to a handler `async (reader, writer) -> None` that writes
whatever it likes (broken framing, silence, trickles); `raw(bytes)` builds the common case.
The server runs its own event loop in a thread, so sync and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def raw(data: bytes, close: bool = True) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
    handler.close = close  # type: ignore[attr-defined]
    return handler


def silence(after: bytes = b"", seconds: float = 30) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(after)
        await writer.drain()
        await asyncio.sleep(seconds)
    return handler


class RawServer:
    def __init__(self, routes: dict[str, Handler], host: str = "127.0.0.1"):
        self.routes = routes
        self.host = host
        self.requests: list[bytes] = []
        self.times: list[float] = []  # time.monotonic() as each request's head arrived
        self.open_connections = 0  # connections accepted and not yet closed by either side
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, self.host, 0))
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.times.append(time.monotonic())
                self.requests.append(head)
                path = head.split(b" ", 2)[1].decode()
                handler = self.routes.get(path) or raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await handler(reader, writer)
                if getattr(handler, "close", True):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> "RawServer":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
