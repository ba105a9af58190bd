"""Fetching against real sockets: bytes stored exactly as sent, limits, redirects, policy."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from archiver.settings import FetchSettings
from archiver import fetch as fetch_module
from archiver.fetch import Fetcher, FetchResult
from archiver.warc import WarcWriter, sha1_b32

from .rawserver import RawServer, raw, silence

CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
           b"X-Odd-Header:   kept   as sent\r\n\r\n"
           b"5\r\n<html\r\n1a;ext=1\r\n><body>chunked body</body>\r\n7\r\n</html>\r\n0\r\n\r\n")
BIG = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300000
BOMB_BODY = gzip.compress(b"\0" * 30_000_000)
BOMB = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: "
        + str(len(BOMB_BODY)).encode() + b"\r\n\r\n" + BOMB_BODY)


def redirect(to: str) -> bytes:
    return f"HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n".encode()


ROUTES = {
    "/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    "/chunked": raw(CHUNKED),
    "/big": raw(BIG),
    "/bomb": raw(BOMB),
    "/loop-a": raw(redirect("/loop-b")),
    "/loop-b": raw(redirect("/loop-a")),
    "/to-ftp": raw(redirect("ftp://example.org/file")),
    "/silent": silence(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"),
    "/kept-alive": raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok", close=False),
}


@pytest.fixture(scope="module")
def server():
    with RawServer(ROUTES) as s:
        yield s


def fetch(url: str, **settings) -> FetchResult:
    async def go() -> FetchResult:
        f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, **settings))
        try:
            return await f.fetch(url)
        finally:
            await f.aclose()
    return asyncio.run(go())


def test_chunked_response_is_stored_byte_for_byte(server, tmp_path: Path):
    res = fetch(server.url("/chunked"))
    assert res.error is None
    resp = res.final
    resp.raw.seek(0)
    assert resp.raw.read() == CHUNKED  # framing, odd spacing and chunk extensions as sent
    assert resp.body == b"<html><body>chunked body</body></html>"
    w = WarcWriter(tmp_path, "t", 10**9, {"software": "test"})
    _, ref = w.write_exchange(resp.url, resp.started, resp.ip, resp.request_bytes, resp.raw, resp.raw_length,
                              resp.block_sha1, resp.payload_sha1)
    w.close()
    with open(tmp_path / ref.warc_file, "rb") as f:
        f.seek(ref.offset)
        rec = next(iter(ArchiveIterator(f, check_digests=True)))
        body = rec.raw_stream.read()
        assert rec.digest_checker.passed is not False
    head_end = CHUNKED.index(b"\r\n\r\n") + 4
    assert body == CHUNKED[head_end:]
    assert rec.rec_headers.get_header("WARC-Payload-Digest") == sha1_b32(hashlib.sha1(CHUNKED[head_end:]).digest())
    assert rec.rec_headers.get_header("WARC-IP-Address") == "127.0.0.1"
    assert not list(tmp_path.glob("warc/*.open"))


def test_a_host_left_idle_has_its_connections_closed(server, monkeypatch):
    """A daemon polling thousands of hosts every few minutes must not keep a client and a
    socket per host between polls: they are closed once the host has been idle a while."""
    monkeypatch.setattr(fetch_module, "IDLE_CLIENT", 0.3)

    async def go() -> tuple[int, int]:
        f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0))
        try:
            res = await f.fetch(server.url("/kept-alive"))
            assert res.error is None and res.final.body == b"ok"
            during = server.open_connections
            for _ in range(50):  # bounded: 5 s
                await asyncio.sleep(0.1)
                if server.open_connections == 0:
                    break
            return during, server.open_connections
        finally:
            await f.aclose()

    during, after = asyncio.run(go())
    assert during >= 1  # the connection was kept alive after the exchange
    assert after == 0


def test_body_over_the_limit_is_truncated_on_the_wire(server):
    res = fetch(server.url("/big"), max_body_bytes=65536)
    resp = res.final
    assert res.error is None and resp.truncated == "length"
    assert resp.raw_length - resp.head_length == 65536


def test_gzip_bomb_is_capped_when_decoded(server):
    res = fetch(server.url("/bomb"), max_decoded_bytes=1_000_000)
    resp = res.final
    assert res.error is None and resp.truncated is None  # stored as sent: small on the wire
    assert len(resp.body) == 1_000_000 and resp.body_truncated


def test_redirect_loop_fails_with_reason_and_keeps_hops(server):
    res = fetch(server.url("/loop-a"))
    assert res.error is not None and res.error.reason == "redirect-loop"
    assert [h.status for h in res.hops] == [302, 302]


def test_redirect_to_other_scheme_is_refused(server):
    res = fetch(server.url("/to-ftp"))
    assert res.error.reason == "bad-redirect" and len(res.hops) == 1


def test_silent_server_times_out(server):
    res = fetch(server.url("/silent"), timeout=0.5)
    assert res.error is not None and res.error.reason == "timeout" and not res.hops


def test_private_addresses_are_refused_by_default(server):
    async def go() -> FetchResult:
        f = Fetcher(FetchSettings(per_host_delay=0))
        try:
            return await f.fetch(server.url("/chunked"))
        finally:
            await f.aclose()
    before = len(server.requests)
    res = asyncio.run(go())
    assert res.error is not None and "non-public address" in str(res.error)
    assert len(server.requests) == before  # refused before connecting: the server saw nothing


def test_429_retry_after_pauses_the_host_and_is_capped():
    from email.utils import format_datetime
    from datetime import datetime, timedelta, timezone
    import time

    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=3), usegmt=True)
    routes = {
        "/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        "/slow-down": raw(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n"),
        "/date-form": raw(f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {when}\r\nContent-Length: 0\r\n\r\n"
                          .encode()),
        "/absurd": raw(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 99999999\r\nContent-Length: 0\r\n\r\n"),
        "/ok": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    }
    with RawServer(routes) as srv:
        async def go(first: str, max_retry_after: float, timeout: float):
            f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, max_retry_after=max_retry_after,
                                      timeout=timeout))
            try:
                r1 = await f.fetch(srv.url(first))
                t0 = time.monotonic()
                r2 = await f.fetch(srv.url("/ok"))
                return r1, r2, time.monotonic() - t0
            finally:
                await f.aclose()

        r1, r2, waited = asyncio.run(go("/date-form", 3600, 30))
        assert r1.final.status == 503 and r2.error is None and waited >= 1.0  # HTTP-date form honoured
        r1, r2, waited = asyncio.run(go("/slow-down", 3600, 30))
        assert r1.final.status == 429 and r2.error is None and waited >= 1.8  # seconds form honoured
        r1, r2, waited = asyncio.run(go("/absurd", 3, 30))
        assert r2.error is None and 2.5 <= waited < 10  # capped by fetch.max_retry_after
        r1, r2, waited = asyncio.run(go("/absurd", 60, 1))
        assert r2.error is not None and r2.error.reason == "host-backoff" and waited < 1  # retried next pass


# IPv6 forms that carry an internal IPv4 address: on a network with NAT64, SIIT, 6to4 or
# Teredo they reach that IPv4 host, so each is refused for the address inside it.
EMBEDS_LOOPBACK = [
    "::ffff:127.0.0.1",                      # IPv4-mapped
    "::ffff:0:127.0.0.1",                    # IPv4-translated (SIIT)
    "::127.0.0.1",                           # IPv4-compatible
    "64:ff9b::7f00:1",                       # NAT64 well-known prefix
    "64:ff9b:1::7f00:1",                     # NAT64 local-use, as a /96
    "64:ff9b:1:0:7f:0:100:0",                # NAT64 local-use, as a /64
    "64:ff9b:1:7f:0:1::",                    # NAT64 local-use, as a /56
    "64:ff9b:1:7f00:0:100::",                # NAT64 local-use, as a /48
    "2002:7f00:1::",                         # 6to4
    "2001:0:7f00:1:8000:63bf:f7f7:f7f7",     # Teredo, server 127.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
]
NOT_PUBLIC = EMBEDS_LOOPBACK + [
    "::a9fe:a9fe",            # IPv4-compatible 169.254.169.254 (cloud metadata)
    "64:ff9b:1::a9fe:a9fe",   # NAT64 local-use 169.254.169.254
    "64:ff9b::a00:1",         # NAT64 10.0.0.1
    "::ffff:0:c0a8:1",        # SIIT 192.168.0.1
    "2002:a9fe:a9fe::1",      # 6to4 169.254.169.254
    "2001:0:808:808:8000:63bf:f7f7:fbfb",  # Teredo with public server and client: the range is not global
    "fec0::1",                # site-local (deprecated, routed inside a site)
    "fefe::1",                # site-local too (fec0::/10)
    "::1", "::", "fe80::1", "fd00::2", "ff02::1", "2001:db8::1",
    "127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "224.0.0.1", "0.0.0.0",
]
PUBLIC = [
    "2606:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8", "::ffff:0:8.8.8.8", "::8.8.8.8",
    "64:ff9b::808:808", "64:ff9b:1:808:8:808:808:808", "2002:808:808::1", "8.8.8.8", "1.1.1.1",
]


@pytest.mark.parametrize("ip", NOT_PUBLIC)
def test_non_public_addresses_in_every_form_are_refused(ip: str):
    from archiver.wire import is_public_address

    assert not is_public_address(ip)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_in_every_form_are_accepted(ip: str):
    from archiver.wire import is_public_address

    assert is_public_address(ip)


def fetch_from_loopback_listener(host: str, allow_private_networks: bool = False) -> tuple[FetchResult, int]:
    """Fetch http://[host]:PORT/ with a listener on 127.0.0.1:PORT; (result, connections it saw)."""
    seen: list[int] = []

    async def go() -> FetchResult:
        async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET")
            await writer.drain()
            writer.close()

        listener = await asyncio.start_server(count, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        f = Fetcher(FetchSettings(allow_private_networks=allow_private_networks, respect_robots=False,
                                  per_host_delay=0, timeout=2))
        try:
            return await f.fetch(f"http://[{host}]:{port}/admin")
        finally:
            await f.aclose()
            listener.close()

    res = asyncio.run(go())
    return res, len(seen)


def test_the_loopback_listener_is_reachable_through_an_ipv4_mapped_address():
    """The kernel delivers ::ffff:127.0.0.1 to the IPv4 listener: what the refusals below prevent."""
    res, seen = fetch_from_loopback_listener("::ffff:127.0.0.1", allow_private_networks=True)
    assert res.error is None and res.final.body == b"SECRET" and seen == 1


@pytest.mark.parametrize("host", EMBEDS_LOOPBACK)
def test_ipv6_forms_embedding_loopback_are_refused_before_connecting(host: str):
    res, seen = fetch_from_loopback_listener(host)
    # the policy's reason (not a connect error or a timeout): refused before any connect
    assert res.error is not None and res.error.reason == "private-address", res.error
    assert "127.0.0.1" in str(res.error) and "non-public address" in str(res.error)
    assert seen == 0 and not res.hops
