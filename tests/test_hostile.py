"""Servers that misbehave on purpose: each costs one failed or truncated fetch with a reason.

Every route answers on a real socket on 127.0.0.1 (tests/rawserver.py). The last test runs a
whole pass over a feed that links them all: the pass ends, every URL is in the index with a
reason, and the WARC files stay valid.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from pathlib import Path

import pytest

from archiver import wire
from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.fetch import Fetcher, FetchResult
from archiver.index import Index
from archiver.settings import FetchSettings

from .rawserver import RawServer, raw, silence
from .test_fetch import fetch as fetch_with
from .test_recover import all_records_ok, rows_point_at_records

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"


def trickle(seconds: float) -> object:
    async def handler(reader, writer) -> None:
        writer.write(OK_HEAD + b"Content-Length: 1000\r\n\r\n")
        for _ in range(int(seconds * 4)):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.25)
    return handler


def endless() -> object:
    async def handler(reader, writer) -> None:
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"4000\r\n" + b"y" * 0x4000 + b"\r\n"
        for _ in range(2000):  # bounded: 32 MB at most, far past the limit
            writer.write(chunk)
            await writer.drain()
    return handler


def redirect(to: str) -> bytes:
    return f"HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n".encode()


ROUTES = {
    "/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    "/headers-then-silence": silence(OK_HEAD + b"Content-Length: 10\r\n\r\n"),
    "/connect-then-silence": silence(b""),
    "/trickle": trickle(20),
    "/endless": endless(),
    "/over-limit-no-length": raw(OK_HEAD + b"\r\n" + b"z" * 300_000),
    "/length-longer": raw(OK_HEAD + b"Content-Length: 5000\r\n\r\nonly this"),
    "/length-shorter": raw(OK_HEAD + b"Content-Length: 4\r\n\r\nfour and then some more"),
    "/broken-chunks": raw(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n"),
    "/wrong-encoding": raw(OK_HEAD + b"Content-Encoding: gzip\r\nContent-Length: 11\r\n\r\nnot gzipped"),
    "/many-headers": raw(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10000))
                         + b"Content-Length: 0\r\n\r\n"),
    "/huge-header": raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\nContent-Length: 0\r\n\r\n"),
    "/bad-status": raw(b"HTTP/1.1 twohundred OK\r\nContent-Length: 0\r\n\r\n"),
    "/binary-as-html": raw(OK_HEAD + b"Content-Length: 4096\r\n\r\n" + bytes(range(256)) * 16),
    "/bad-charset": raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 35\r\n\r\n"
                        b"<p>\xff\xfe caf\xe9 \x93quoted\x94 text here..</p>"),
    "/redirect-to-file": raw(redirect("file:///etc/passwd")),
    **{f"/hop/{i}": raw(redirect(f"/hop/{i + 1}")) for i in range(50)},
}
EXPECT = {  # path -> (error reason or None, truncated)
    "/headers-then-silence": ("timeout", None),
    "/connect-then-silence": ("timeout", None),
    "/trickle": ("timeout", None),
    "/endless": (None, "length"),
    "/over-limit-no-length": (None, "length"),
    "/length-longer": ("protocol", None),
    "/broken-chunks": ("protocol", None),
    "/many-headers": ("protocol", None),
    "/huge-header": ("protocol", None),
    "/bad-status": ("protocol", None),
    "/redirect-to-file": ("bad-redirect", None),
    "/hop/0": ("too-many-redirects", None),
}


@pytest.fixture(scope="module")
def server():
    with RawServer(ROUTES) as s:
        yield s


def fetch(url: str, **settings) -> FetchResult:
    return fetch_with(url, timeout=0.6, max_body_bytes=65536, **settings)


@pytest.mark.parametrize("path", sorted(EXPECT))
def test_each_hostile_route_fails_or_truncates_with_a_reason(server, path: str):
    reason, truncated = EXPECT[path]
    res = fetch(server.url(path))
    if reason is None:
        assert res.error is None and res.final.truncated == truncated
        assert res.final.raw_length - res.final.head_length == 65536
    else:
        assert res.error is not None and res.error.reason == reason, res.error


def test_length_shorter_than_body_keeps_the_declared_length(server):
    res = fetch(server.url("/length-shorter"))
    assert res.error is None and res.final.body == b"four"


def test_wrong_encoding_and_bad_bytes_are_recorded_not_fatal(server):
    res = fetch(server.url("/wrong-encoding"))
    assert res.error is None and res.final.body_error and "gzip" in res.final.body_error
    res = fetch(server.url("/bad-charset"))
    assert res.error is None and res.final.status == 200


def test_private_addresses_are_refused_before_connecting():
    # the check runs on the resolved address before any connection (a loopback address, so that
    # even a broken check could not send anything off this machine)
    async def go() -> FetchResult:
        f = Fetcher(FetchSettings(allow_private_networks=False, per_host_delay=0, timeout=1))
        try:
            return await f.fetch("http://127.0.0.2:9/admin")
        finally:
            await f.aclose()
    res = asyncio.run(go())
    assert res.error is not None and "non-public address" in str(res.error) and not res.hops


def test_a_pass_over_every_hostile_link_ends_with_a_reason_for_each(server, tmp_path: Path):
    links = [p for p in sorted(ROUTES) if not p.startswith("/hop/") or p == "/hop/0"]
    links.remove("/robots.txt")
    items = "".join(f"<item><title>Blinken {p}</title><link>{server.url(p)}</link></item>" for p in links)
    feed = f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{items}</channel></rss>".encode()
    ROUTES["/feed.xml"] = raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: "
                              + str(len(feed)).encode() + b"\r\n\r\n" + feed)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"""
storage: {{root: {tmp_path / 'st'}, keep_off_topic: true}}
fetch: {{allow_private_networks: true, per_host_delay: 0, timeout: 0.6, max_body_bytes: 64 KB, concurrency: 8,
        per_host_concurrency: 4}}
topics: [{{name: t, any: [Blinken]}}]
outlets: [{{name: hostile, feeds: ["{server.url('/feed.xml')}"]}}]
""")
    cfg = load_config(cfg_path)
    stats = asyncio.run(run_pass(cfg)).outlets[0]
    assert stats.discovered == len(links)
    with Index.open(cfg.storage_root, readonly=True) as idx:
        rows = {r.url: r for r in idx.captures(kind="article")}
    assert len(rows) == len(links)
    for path in links:
        row = rows[server.url(path)]
        assert row.state in ("failed", "off_topic", "archived"), (path, row.state)
        if row.state == "failed":
            assert row.error, path
    assert rows[server.url("/endless")].truncated == "length"
    assert all_records_ok(cfg.storage_root) > 3
    assert rows_point_at_records(cfg.storage_root) > 1
    data = b"".join(gzip.decompress(p.read_bytes()) for p in (cfg.storage_root / "warc").glob("*.warc.gz"))
    assert b"root:x:0:0" not in data  # nothing from a local file


def test_dns_rebinding_cannot_reach_a_private_address(monkeypatch):
    """A name that resolves to an allowed address first and to loopback next time: the address
    checked is the address connected to, so the second connection is refused.

    127.0.0.3 stands in for a public address (the policy is told to treat it as one), so the
    test never leaves loopback; 127.0.0.1 is the "internal" service holding a secret."""
    hits: dict[str, list[bytes]] = {"127.0.0.3": [], "127.0.0.1": []}

    async def serve(ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        hits[ip].append(head)
        if ip == "127.0.0.3":  # a redirect that closes the connection: the next hop must connect anew
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /secret\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET")
        await writer.drain()
        writer.close()

    answers = iter(["127.0.0.3", "127.0.0.1"] * 4)
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_resolver(host, port, *args, **kwargs):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver)
    monkeypatch.setattr(wire, "is_public_address", lambda ip: ip == "127.0.0.3")

    async def go() -> FetchResult:
        public = await asyncio.start_server(lambda r, w: serve("127.0.0.3", r, w), "127.0.0.3", 0)
        port = public.sockets[0].getsockname()[1]
        internal = await asyncio.start_server(lambda r, w: serve("127.0.0.1", r, w), "127.0.0.1", port)
        f = Fetcher(FetchSettings(allow_private_networks=False, respect_robots=False, per_host_delay=0, timeout=2))
        try:
            return await f.fetch(f"http://rebind.test:{port}/start")
        finally:
            await f.aclose()
            public.close()
            internal.close()

    res = asyncio.run(go())
    assert len(hits["127.0.0.3"]) == 1 and res.hops and res.hops[0].status == 302
    assert res.error is not None and res.error.reason == "private-address", res.error
    assert "127.0.0.1" in str(res.error)
    assert hits["127.0.0.1"] == []  # the internal service never saw a request


def test_redirect_to_a_private_address_is_refused(monkeypatch):
    """A public page redirecting to an internal one: the hop is refused before connecting
    (127.0.0.3 stands in for a public address, as above)."""
    monkeypatch.setattr(wire, "is_public_address", lambda ip: ip == "127.0.0.3")
    internal_hits: list[bytes] = []

    async def go() -> FetchResult:
        async def public(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/admin\r\n"
                         "Content-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        async def internal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            internal_hits.append(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

        outside = await asyncio.start_server(public, "127.0.0.3", 0)
        port = outside.sockets[0].getsockname()[1]
        inside = await asyncio.start_server(internal, "127.0.0.1", port)
        f = Fetcher(FetchSettings(allow_private_networks=False, respect_robots=False, per_host_delay=0, timeout=2))
        try:
            return await f.fetch(f"http://127.0.0.3:{port}/news")
        finally:
            await f.aclose()
            outside.close()
            inside.close()

    res = asyncio.run(go())
    assert [h.status for h in res.hops] == [302]
    assert res.error is not None and res.error.reason == "private-address" and not internal_hits
