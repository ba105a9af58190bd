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
import select
import socket
import typing
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import httpcore

from .errors import BlockedByPolicy

Sink = Callable[[bytes], None]


# IPv6 ranges that stand for an IPv4 host: a packet to one of them reaches the IPv4 address
# inside it (through the kernel, a NAT64 or SIIT translator, a 6to4 relay), so that address
# is what the policy judges. `is_global` alone accepts most of them, and on a network with
# such a translator `[64:ff9b::7f00:1]` is the translator's own loopback.
_MAPPED = IPv6Network("::ffff:0:0/96")          # RFC 4291 IPv4-mapped
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")    # RFC 2765 IPv4-translated (SIIT)
_COMPATIBLE = IPv6Network("::/96")              # RFC 4291 IPv4-compatible (deprecated)
_NAT64 = IPv6Network("64:ff9b::/96")            # RFC 6052 well-known prefix
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")    # RFC 8215 local-use prefix
_SIX_TO_FOUR = IPv6Network("2002::/16")         # RFC 3056
_TEREDO = IPv6Network("2001::/32")              # RFC 4380
_SITE_LOCAL = IPv6Network("fec0::/10")          # RFC 3879: deprecated, routed inside a site

# Where RFC 6052 puts the IPv4 bytes for each prefix length a network may carve out of the
# local-use /48 (byte 8, bits 64-71, is always skipped). Which length a network uses cannot
# be told from the address, so every reading is judged.
_RFC6052_BYTES = {48: (6, 7, 9, 10), 56: (7, 9, 10, 11), 64: (9, 10, 11, 12), 96: (12, 13, 14, 15)}


@dataclass(frozen=True)
class Embedded:
    """An IPv4 address carried inside an IPv6 one, and the form that carries it."""

    ipv4: IPv4Address
    form: str


def embedded_ipv4(addr: IPv6Address) -> list[Embedded]:
    """Every IPv4 address `addr` carries, in any of the forms that embed one."""
    b = addr.packed
    if addr in _MAPPED:
        return [Embedded(IPv4Address(b[12:]), "IPv4-mapped ::ffff:0:0/96")]
    if addr in _TRANSLATED:
        return [Embedded(IPv4Address(b[12:]), "IPv4-translated ::ffff:0:0:0/96")]
    if addr in _COMPATIBLE and int(addr) > 1:  # :: and ::1 are addresses of their own
        return [Embedded(IPv4Address(b[12:]), "IPv4-compatible ::/96")]
    if addr in _NAT64:
        return [Embedded(IPv4Address(b[12:]), "NAT64 64:ff9b::/96")]
    if addr in _NAT64_LOCAL:
        found: list[Embedded] = []
        for length, where in _RFC6052_BYTES.items():
            v4 = IPv4Address(bytes(b[i] for i in where))
            if all(e.ipv4 != v4 for e in found):
                found.append(Embedded(v4, f"NAT64 local-use 64:ff9b:1::/48 as a /{length}"))
        return found
    if addr in _SIX_TO_FOUR:
        return [Embedded(IPv4Address(b[2:6]), "6to4 2002::/16")]
    if addr in _TEREDO:
        return [Embedded(IPv4Address(b[4:8]), "Teredo 2001::/32 server"),
                Embedded(IPv4Address(int.from_bytes(b[12:], "big") ^ 0xFFFFFFFF), "Teredo 2001::/32 client")]
    return []


def _public_ipv4(addr: IPv4Address) -> bool:
    return addr.is_global and not addr.is_multicast


def is_public_address(ip: str) -> bool:
    """May archiver connect to `ip` when private networks are not allowed?"""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, IPv4Address):
        return _public_ipv4(addr)
    if addr in _SITE_LOCAL:
        return False
    embedded = embedded_ipv4(addr)
    if not all(_public_ipv4(e.ipv4) for e in embedded):
        return False
    if embedded and addr not in _TEREDO:
        # the IPv4 host is the destination, whatever this Python's is_global makes of the
        # IPv6 range (it changed between versions for 6to4 and the local-use prefix)
        return True
    # plain IPv6, and Teredo whatever it carries: its range is not globally reachable (IANA)
    return addr.is_global and not addr.is_multicast


def describe_address(ip: str) -> str:
    """`ip`, with the IPv4 addresses it carries, for messages."""
    addr = ipaddress.ip_address(ip)
    if not isinstance(addr, IPv6Address):
        return ip
    if addr in _SITE_LOCAL:
        return f"{ip} (site-local fec0::/10)"
    embedded = embedded_ipv4(addr)
    if not embedded:
        return ip
    return f"{ip} ({'; '.join(f'{e.form}: {e.ipv4}' for e in embedded)})"


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
        # asked before every request on a pooled connection; anyio builds a dict of all the
        # socket's attributes (and calls getpeername) to answer it each time
        self._socket = inner.get_extra_info("socket")

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
        if info == "is_readable" and self._socket is not None:
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket) -> bool:
    """Has an idle connection something to read: the server closed it, or sent what nobody asked
    for (httpcore drops such a connection rather than reuse it)."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


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
                shown = f"[{host}]" if ":" in host else host
                raise BlockedByPolicy(f"http://{shown}:{port}/", "private-address",
                                      f"{shown} resolves to {', '.join(describe_address(ip) for ip in ips)}, "
                                      "a non-public address (set fetch.allow_private_networks to allow)")
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
