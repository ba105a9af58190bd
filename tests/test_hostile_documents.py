"""Hostile discovery documents and pages, in one `archiver crawl` run, with its memory measured.

Feeds that are HTML, malformed, 100,000 items long, or carry entity bombs and external
entities; sitemaps that index themselves, hold 50,000 URLs in 60 MB, or are gzip bombs;
robots.txt files of 10 MB, of binary noise, or behind a redirect; pages that are 50 MB of
nested <div>s, gzip and brotli bombs, or lie about their charset. Each costs one failed,
truncated or refused document with its reason on its index row (and in the log); the run
ends normally; its peak RSS stays within a stated bound above a run over a harmless outlet;
nothing from a local file reaches a WARC.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import brotli

from archiver.index import Index

from .archive_checks import check_closed_warc, rows_point_at_records, warc_text
from .rawserver import RawServer, raw

EXE = Path(sys.executable).with_name("archiver")
# Bodies are capped at 20 MB on the wire and 50 MB decoded (the defaults; a sitemap may be 50 MB
# uncompressed), pages at 3 MB for extraction. Measured growth: ~110 MB; before pages were capped
# and accent folding stopped making one object per character, ~500 MB.
RSS_GROWTH_LIMIT_MB = 160


def ok(body: bytes, ctype: str = "application/xml", extra: bytes = b"") -> object:
    return raw(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype.encode() + b"\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def streamed(head: bytes, first: bytes, unit: bytes, total: int) -> object:
    """A body of `total` bytes made by repeating `unit`, written as it goes (never held whole)."""
    async def handler(reader, writer) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: " + str(total).encode() + b"\r\n\r\n" + first)
        sent = len(first)
        block = unit * max(1, (1 << 20) // len(unit))
        while sent < total:
            piece = block[: total - sent]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
    return handler


def rss(links: list[str]) -> bytes:
    items = "".join(f"<item><title>Blinken {i}</title><link>{u}</link></item>" for i, u in enumerate(links))
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{items}</channel></rss>".encode()


def bomb(encoder, size: int = 1 << 30) -> bytes:
    zeros = bytes(1 << 24)
    out = bytearray()
    for _ in range(size // len(zeros)):
        out += encoder.process(zeros) if hasattr(encoder, "process") else encoder.compress(zeros)
    out += encoder.finish() if hasattr(encoder, "finish") else encoder.flush()
    return bytes(out)


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
          b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
          b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>')
XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'


def routes(base: str) -> dict[str, object]:
    feed_100k = rss([f"{base}/many/{i}.html" for i in range(100_000)])
    url_entry = "<url><loc>{base}/sm/{i}.html</loc><!-- {pad} --></url>"
    pad = "p" * 1150
    sitemap_head = b"<?xml version='1.0'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"
    sitemap_unit = "".join(url_entry.format(base=base, i=i, pad=pad) for i in range(50)).encode()
    return {
        "/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        "/feed-html": ok(b"<!DOCTYPE html><html><body><p>Blinken <b>news</p></body></html>", "application/rss+xml"),
        "/feed-malformed": ok(b"<?xml version='1.0'?><rss version='2.0'><channel><item><title>Blinken"
                              b"</titel><link>" + base.encode() + b"/x.html</link></item>&&<<", "application/rss+xml"),
        "/feed-100k": ok(feed_100k, "application/rss+xml"),
        "/feed-laughs": ok(LAUGHS + b"<rss version='2.0'><channel><item><title>&f;</title></item></channel></rss>"),
        "/feed-xxe": ok(XXE + b"<rss version='2.0'><channel><item><title>Blinken</title><link>&x;</link></item>"
                        b"</channel></rss>"),
        "/sitemap-self.xml": ok(b"<sitemapindex xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><sitemap><loc>"
                                + base.encode() + b"/sitemap-self.xml</loc></sitemap></sitemapindex>"),
        # 50,000 URLs in 60 MB: cut at max_body_bytes (20 MB) on the wire, the whole URLs before the cut used
        "/sitemap-60mb.xml": streamed(b"Content-Type: application/xml\r\n", sitemap_head, sitemap_unit, 60_000_000),
        "/sitemap-laughs.xml": ok(LAUGHS + b"<urlset><url><loc>&f;</loc></url></urlset>"),
        "/sitemap-xxe.xml": ok(XXE + b"<urlset><url><loc>&x;</loc></url></urlset>"),
        "/sitemap-bomb.xml.gz": ok(bomb(zlib.compressobj(9, zlib.DEFLATED, 31)), "application/gzip"),
        "/pages.xml": ok(rss([f"{base}{p}" for p in ("/nested", "/gzip-bomb", "/brotli-bomb", "/lying-charset",
                                                      "/binary-as-html")]), "application/rss+xml"),
        "/nested": streamed(b"Content-Type: text/html\r\n", b"<html><head><title>Blinken</title></head><body>",
                            b"<div>Blinken ", 50_000_000),
        "/gzip-bomb": ok(bomb(zlib.compressobj(9, zlib.DEFLATED, 31)), "text/html", b"Content-Encoding: gzip\r\n"),
        "/brotli-bomb": ok(bomb(brotli.Compressor(quality=5)), "text/html", b"Content-Encoding: br\r\n"),
        "/lying-charset": ok("<html><head><meta charset='utf-16'></head><body><p>Blinken in Hanoi: caf\u00e9 "
                             "\u201cquoted\u201d</p></body></html>".encode("utf-8"), "text/html; charset=shift_jis"),
        "/binary-as-html": ok(os.urandom(200_000), "text/html"),
    }


STORY = ok(b"<html><head><title>Blinken story</title></head><body><article><p>Antony Blinken arrived in "
           b"Hanoi on Saturday for talks about trade and security with officials.</p></article></body></html>",
           "text/html")


def robots_hosts() -> dict[str, dict[str, object]]:
    story = STORY
    return {
        "huge": {"/robots.txt": streamed(b"Content-Type: text/plain\r\n", b"User-agent: *\n",
                                         b"Disallow: /nothing-here-\n", 10_000_000), "/story.html": story},
        "binary": {"/robots.txt": ok(os.urandom(100_000), "text/plain"), "/story.html": story},
        "redirect": {"/robots.txt": raw(b"HTTP/1.1 301 Moved\r\nLocation: /real-robots.txt\r\nContent-Length: 0\r\n\r\n"),
                     "/real-robots.txt": ok(b"User-agent: *\nDisallow: /story.html\n", "text/plain"),
                     "/story.html": story},
    }


def crawl(config: Path) -> tuple[int, int, str]:
    """(exit status, peak RSS in MB, stderr) of one `archiver crawl`."""
    proc = subprocess.Popen([str(EXE), "crawl", "--config", str(config), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss // 1024, stderr


def write_config(path: Path, root: Path, outlets: str) -> Path:
    path.write_text(f"""
storage: {{root: {root}}}
fetch: {{allow_private_networks: true, per_host_delay: 0, timeout: 5}}
discover: {{max_candidates_per_outlet: 40, max_age_days: null}}
topics: [{{name: t, any: [Blinken]}}]
outlets:
{outlets}""")
    return path


def test_hostile_documents_cost_one_document_each_and_bounded_memory(tmp_path: Path):
    servers = {name: RawServer(r) for name, r in robots_hosts().items()}
    main = RawServer({})
    with main, servers["huge"], servers["binary"], servers["redirect"]:
        base = main.url("")
        main.routes.update(routes(base))
        main.routes["/calm.xml"] = ok(rss([f"{base}/calm.html"]), "application/rss+xml")
        main.routes["/calm.html"] = STORY

        calm = write_config(tmp_path / "calm.yaml", tmp_path / "calm", f"""
  - {{name: calm, feeds: ["{base}/calm.xml"]}}""")
        status, calm_rss, err = crawl(calm)
        assert status == 0, err

        feeds = [f"{base}/feed-{n}" for n in ("html", "malformed", "100k", "laughs", "xxe")] + [f"{base}/pages.xml"]
        sitemaps = [f"{base}/sitemap-{n}" for n in ("self.xml", "60mb.xml", "laughs.xml", "xxe.xml", "bomb.xml.gz")]
        robots = "".join(f'\n  - {{name: robots-{n}, feeds: ["{s.url("/feed.xml")}"]}}' for n, s in servers.items())
        for s in servers.values():
            s.routes["/feed.xml"] = ok(rss([s.url("/story.html")]), "application/rss+xml")
        hostile = write_config(tmp_path / "hostile.yaml", tmp_path / "hostile", f"""
  - {{name: docs, feeds: {feeds}, sitemaps: {sitemaps}}}{robots}""".replace("'", '"'))
        status, hostile_rss, err = crawl(hostile)
        assert status == 0, err[-3000:]

    root = tmp_path / "hostile"
    with Index.open(root, readonly=True) as idx:
        all_rows = list(idx.captures())
    rows = {r.url: r for r in all_rows}
    errors = {u.removeprefix(base): (r.error or "") for u, r in rows.items() if u.startswith(base)}
    assert "not an RSS or Atom feed" in errors["/feed-html"]
    assert "not well-formed" in errors["/feed-malformed"]
    assert "entities" in errors["/feed-laughs"] and "entities" in errors["/feed-xxe"]
    assert "unsafe XML" in errors["/sitemap-laughs.xml"] and "unsafe XML" in errors["/sitemap-xxe.xml"]
    # the 100,000-item feed gave the outlet its candidate cap, no more
    assert sum(1 for u in rows if "/many/" in u) <= 40
    assert [r for u, r in rows.items() if u.endswith("/sitemap-self.xml")][0].state == "archived"
    assert sum(1 for r in all_rows if r.url.endswith("/sitemap-self.xml")) == 1  # fetched once, not looped
    assert rows[f"{base}/sitemap-60mb.xml"].truncated == "length"
    assert rows[f"{base}/nested"].truncated == "length"
    for page in ("/gzip-bomb", "/brotli-bomb", "/lying-charset", "/binary-as-html", "/nested"):
        assert rows[base + page].state in ("archived", "off_topic", "failed"), page
    # robots.txt: 10 MB is read (its first 500 KB), noise means no rules, a redirect is followed
    assert rows[servers["huge"].url("/story.html")].state == "archived"
    assert rows[servers["binary"].url("/story.html")].state == "archived"
    assert rows[servers["redirect"].url("/story.html")].state == "robots"
    assert "not well-formed" in err or "not an RSS" in err  # and the log says so too

    assert sum(check_closed_warc(p) for p in (root / "warc").glob("*.warc.gz")) > 20
    assert rows_point_at_records(root) > 10
    assert b"root:x:0:0" not in warc_text(root)
    growth = hostile_rss - calm_rss
    print(f"peak RSS: calm crawl {calm_rss} MB, hostile crawl {hostile_rss} MB, growth {growth} MB")
    assert growth < RSS_GROWTH_LIMIT_MB
