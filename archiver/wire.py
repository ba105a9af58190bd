"""Byte-exact recording of HTTP exchanges at the socket.

httpx decodes chunked framing and (optionally) content encodings; a WARC must hold what the
server actually sent. So we give httpcore a network backend whose streams tee every byte
written and read. A response's bytes are handed to a *sink* as they arrive, so bodies are
never held whole in memory.

The backend also enforces the address policy at connect time, on the resolved IP: checking
a hostname before resolution would let DNS rebinding walk around it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Callable

import httpcore

from .errors import BlockedByPolicy

Sink = Callable[[bytes], None]


def is_public_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class WireExchange:
    """The raw bytes of one request/response on one connection."""

    __slots__ = ("request", "pending", "sink", "server_addr", "_reading")

    def __init__(self, server_addr: str | None):
        self.request = bytearray()
        self.pending = bytearray()  # response bytes read before a sink is attached
        self.sink: Sink | None = None
        self.server_addr = server_addr
        self._reading = False

    def attach(self, sink: Sink) -> None:
        """Route response bytes to `sink`, starting with those already read."""
        self.sink = sink
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            sink(data)

    def _feed(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink(data)
        else:
            self.pending += data


class RecordingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, ip: str | None,
                 on_send: Callable[[], None] | None = None):
        self._inner = inner
        self._ip = ip
        self._on_send = on_send
        self.exchange: WireExchange | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        ex = self.exchange
        if ex is not None and data:
            ex._reading = True
            ex._feed(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # HTTP/1.1 without pipelining: the first write after a read starts a new exchange.
        first = self.exchange is None or self.exchange._reading
        if first:
            self.exchange = WireExchange(self._ip)
        assert self.exchange is not None
        self.exchange.request += buffer
        await self._inner.write(buffer, timeout)
        if first and self._on_send is not None:
            # the bytes are with the kernel now (the write may have yielded to the loop before
            # sending): politeness counts from here, the moment the server sees the request
            self._on_send()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: typing.Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return RecordingStream(inner, self._ip, self._on_send)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Resolves, applies the address policy, connects by IP and wraps the stream."""

    def __init__(self, allow_private_networks: bool = False, on_send: Callable[[], None] | None = None):
        self._inner = httpcore.AnyIOBackend()
        self.allow_private_networks = allow_private_networks
        self._on_send = on_send

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise httpcore.ConnectError(f"cannot resolve host {host!r}: {e.strerror}") from None
        seen: list[str] = []
        for info in infos:
            ip = str(info[4][0])
            if ip not in seen:
                seen.append(ip)
        return seen

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        ips = await self._resolve(host, port)
        if not self.allow_private_networks:
            public = [ip for ip in ips if is_public_address(ip)]
            if not public:
                raise BlockedByPolicy(f"http://{host}:{port}/", "private-address",
                                      f"{host} resolves to {', '.join(ips)}, a non-public address "
                                      "(set fetch.allow_private_networks to allow)")
            ips = public
        last: Exception | None = None
        for ip in ips:
            try:
                stream = await self._inner.connect_tcp(ip, port, timeout, local_address, socket_options)
                return RecordingStream(stream, ip, self._on_send)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
