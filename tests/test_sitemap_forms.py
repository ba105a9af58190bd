"""Sitemaps in the forms sitemaps.org allows and sites publish: plain text (one URL a line),
RSS and Atom in a sitemap's place, sitemap indexes whose entries lack or repeat <loc>, and
documents that give nothing, each with its reason on its row. Entries left out by
`discover.max_age_days` are counted and named in the crawl summary.

Every test crawls a real server on 127.0.0.1 and reads the index the crawl wrote."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import Index
from archiver.sitemaps import parse_sitemap

from .conftest import run_cli
from .rawserver import RawServer, raw
from .test_item_failures import _ok, _page

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def _config(tmp_path: Path, outlet_yaml: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
storage: {{root: {tmp_path / 'root'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0, timeout: 5}}
extract: {{workers: 0}}
topics: [{{name: vietnam, any: [Vietnam]}}]
outlets:
  - {outlet_yaml}
""")
    return cfg


def _crawl(tmp_path: Path, outlet_yaml: str) -> tuple[dict, list, object]:
    result = asyncio.run(run_pass(load_config(_config(tmp_path, outlet_yaml))))
    with Index.open(tmp_path / "root", readonly=True) as idx:
        rows = list(idx.captures())
    docs = {r.url: r for r in rows if r.kind == "sitemap"}
    archived = sorted(r.url for r in rows if r.kind == "article" and r.state == "archived")
    return docs, archived, result.outlets[0]


def _stories(routes: dict, *paths: str) -> None:
    for p in paths:
        routes[p] = raw(_ok(_page(f"Vietnam story {p}", "Text of the story.")))


def _asked(srv: RawServer) -> set[str]:
    return {h.split(b" ", 2)[1].decode() for h in srv.requests}


def test_plain_text_sitemaps_are_read(tmp_path: Path):
    routes: dict = {"/": raw(_ok(b"<html><body><p>Front page</p></body></html>"))}
    _stories(routes, "/s/1", "/s/2", "/s/3", "/s/4", "/s/5")
    with RawServer(routes) as srv:
        u = srv.url
        routes["/robots.txt"] = raw(_ok("User-agent: *\nDisallow: /private/\n".encode() + "".join(
            f"Sitemap: {u(p)}\n" for p in ("/sitemap.txt", "/pages.txt.gz", "/list.xml", "/bogus")).encode(),
            "text/plain"))
        # a BOM, CRLF, blank lines, whitespace around URLs, and two lines that are no http(s) URL
        txt = f"\r\n  {u('/s/1')}  \r\n\r\n\t{u('/s/2')}\r\nftp://127.0.0.1/file\r\nsee the list below\r\n"
        routes["/sitemap.txt"] = raw(_ok(b"\xef\xbb\xbf" + txt.encode(), "text/plain; charset=utf-8"))
        # gzip served as a file, no trailing newline
        routes["/pages.txt.gz"] = raw(_ok(gzip.compress(f"{u('/s/3')}\n{u('/s/4')}".encode()), "application/x-gzip"))
        # a text sitemap under an .xml name: the content decides
        routes["/list.xml"] = raw(_ok(f"{u('/s/5')}\n".encode(), "text/plain"))
        routes["/bogus"] = raw(_ok(b"this is a bogus sitemap", "application/octet-stream"))
        docs, archived, stats = _crawl(tmp_path, f'{{name: x, home: "{u("/")}", sitemaps: [auto]}}')
    assert archived == [u(f"/s/{i}") for i in range(1, 6)]
    assert docs[u("/sitemap.txt")].error == (
        f"text sitemap {u('/sitemap.txt')}: 2 lines not an http(s) URL, left out (the first: "
        "'ftp://127.0.0.1/file')")
    assert docs[u("/pages.txt.gz")].error is None and docs[u("/list.xml")].error is None
    assert docs[u("/bogus")].error == (f"sitemap {u('/bogus')} is neither XML nor a list of URLs "
                                       "(it starts 'this is a bogus sitemap')")
    assert len(stats.errors) == 2, stats.errors


def test_feeds_named_as_sitemaps_are_read_as_feeds(tmp_path: Path):
    routes: dict = {"/": raw(_ok(b"<html><body><p>Front page</p></body></html>"))}
    _stories(routes, "/rss/a", "/rss/b", "/atom/c")
    with RawServer(routes) as srv:
        u = srv.url
        routes["/robots.txt"] = raw(_ok(f"User-agent: *\nSitemap: {u('/feed.rss')}\nSitemap: {u('/feed.atom')}\n"
                                        .encode(), "text/plain"))
        routes["/feed.rss"] = raw(_ok(f"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>Story a</title><link>{u('/rss/a')}</link></item>
<item><title>Story b</title><guid>{u('/rss/b')}</guid></item></channel></rss>""".encode(), "application/rss+xml"))
        routes["/feed.atom"] = raw(_ok(f"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">
<title>t</title>
<link rel="self" href="{u('/feed.atom')}"/><entry><title>Story c</title><id>tag:x,2025:c</id>
<link rel="alternate" type="application/json" href="{u('/atom/c.json')}"/>
<link rel="alternate" type="text/html" href="{u('/atom/c')}"/></entry></feed>""".encode(), "application/atom+xml"))
        docs, archived, stats = _crawl(tmp_path, f'{{name: x, home: "{u("/")}", sitemaps: [auto]}}')
        asked = _asked(srv)
    assert archived == [u("/atom/c"), u("/rss/a"), u("/rss/b")]
    assert "/atom/c.json" not in asked
    assert docs[u("/feed.rss")].error is None and docs[u("/feed.atom")].error is None
    assert not stats.errors, stats.errors


def _index(*entries: str) -> bytes:
    return f'<?xml version="1.0"?><sitemapindex xmlns="{SITEMAP_NS}">{"".join(entries)}</sitemapindex>'.encode()


def _urlset(*entries: str) -> bytes:
    return f'<?xml version="1.0"?><urlset xmlns="{SITEMAP_NS}">{"".join(entries)}</urlset>'.encode()


def test_entries_without_or_with_several_locs_and_empty_documents_say_so(tmp_path: Path):
    routes: dict = {}
    _stories(routes, "/s/1", "/s/2", "/s/3")
    with RawServer(routes) as srv:
        u = srv.url
        routes["/index.xml"] = raw(_ok(_index(
            f"<sitemap>\n{u('/bare.xml')}\n</sitemap>",  # a URL, but no <loc>
            f"<sitemap><loc>{u('/a.xml')}</loc><loc>{u('/b.xml')}</loc></sitemap>",
            "<sitemap><lastmod>2025-06-01</lastmod></sitemap>"), "application/xml"))
        routes["/bare.xml"] = raw(_ok(_urlset(f"<url><loc>{u('/s/1')}</loc></url>",
                                              "<url><lastmod>2025-06-01</lastmod></url>"), "application/xml"))
        routes["/a.xml"] = raw(_ok(_urlset(f"<url><loc>{u('/s/2')}</loc></url>"), "application/xml"))
        routes["/b.xml"] = raw(_ok(_urlset(f"<url><loc>{u('/s/3')}</loc></url>"), "application/xml"))
        routes["/empty.xml"] = raw(_ok(_urlset(), "application/xml"))
        routes["/nothing.xml"] = raw(_ok(_index("<sitemap><lastmod>2025-06-01</lastmod></sitemap>"),
                                         "application/xml"))
        sitemaps = json.dumps([u("/index.xml"), u("/empty.xml"), u("/nothing.xml")])
        docs, archived, stats = _crawl(tmp_path, f"{{name: x, sitemaps: {sitemaps}}}")
    assert archived == [u("/s/1"), u("/s/2"), u("/s/3")]
    assert docs[u("/index.xml")].error == (
        f"sitemap {u('/index.xml')}: 1 <sitemap> entry without <loc>: the entry's own text was read as the URL; "
        "1 <sitemap> entry without <loc>, left out; 1 <sitemap> entry with more than one <loc>, each read")
    assert docs[u("/bare.xml")].error == f"sitemap {u('/bare.xml')}: 1 <url> entry without <loc>, left out"
    assert docs[u("/a.xml")].error is None
    assert docs[u("/nothing.xml")].error == (f"sitemap {u('/nothing.xml')} gave no URLs: 1 <sitemap> entry "
                                            "without <loc>, left out")
    # a sound document that lists nothing says so on its row, and is no problem of the pass
    assert docs[u("/empty.xml")].error == f"sitemap {u('/empty.xml')} lists no URLs"
    assert len(stats.errors) == 3 and not [e for e in stats.errors if "empty.xml" in e], stats.errors


def test_entries_older_than_max_age_are_counted_and_shown(tmp_path: Path):
    routes: dict = {}
    _stories(routes, "/new", "/old/1", "/old/2", "/old/3", "/old/4")
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    with RawServer(routes) as srv:
        u = srv.url
        routes["/old.xml"] = raw(_ok(_urlset(*(f"<url><loc>{u(f'/old/{i}')}</loc><lastmod>2020-01-0{i}</lastmod></url>"
                                               for i in (1, 2, 3))), "application/xml"))
        routes["/mixed.xml"] = raw(_ok(_urlset(f"<url><loc>{u('/new')}</loc><lastmod>{today}</lastmod></url>",
                                               f"<url><loc>{u('/old/4')}</loc><lastmod>2019-05-01</lastmod></url>"),
                                       "application/xml"))
        cfg = _config(tmp_path, f'{{name: x, sitemaps: ["{u("/old.xml")}", "{u("/mixed.xml")}"]}}')
        proc = run_cli("crawl", "--config", str(cfg), "--no-progress")
        asked = _asked(srv)
    assert proc.returncode == 0, proc.stderr
    assert "x: 4 sitemap entries older than 30 days skipped (discover.max_age_days)" in proc.stdout, proc.stdout
    assert not {"/old/1", "/old/2", "/old/3", "/old/4"} & asked and "/new" in asked
    with Index.open(tmp_path / "root", readonly=True) as idx:
        counts = idx.passes()[0].counts
        docs = {r.url: r for r in idx.captures(kind="sitemap")}
        archived = [r.url for r in idx.captures(kind="article", state="archived")]
    assert counts is not None and counts.sitemap_too_old == 4
    assert archived == [u("/new")]
    assert docs[u("/old.xml")].error == (f"sitemap {u('/old.xml')}: its 3 entries are older than 30 days "
                                         "(discover.max_age_days)")
    assert docs[u("/mixed.xml")].error is None
    assert "problems" not in proc.stdout  # an old sitemap is no problem, only a reason


def _peak_kb(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] // 1024
    finally:
        tracemalloc.stop()


def test_text_sitemaps_are_bounded():
    body = "".join(f"https://e.org/{i}\n" for i in range(50_002)).encode()
    r = parse_sitemap(body, "https://e.org/s.txt")
    assert len(r.urls) == 50_000 and r.urls[-1].url == "https://e.org/49999"
    assert r.problem == ("text sitemap https://e.org/s.txt: 2 URLs past the first 50,000, left out (the "
                         "sitemaps.org limit)")
    # a body cut at the fetch's cap: its unfinished last line is not read
    r = parse_sitemap(b"https://e.org/a\nhttps://e.org/b-cu", "https://e.org/s.txt", truncated=True)
    assert [c.url for c in r.urls] == ["https://e.org/a"] and "cut at 34 bytes" in r.problem
    # a 20 MB line is passed over as it is read, never gathered whole
    body = b"https://e.org/a\n" + b"x" * 20_000_000 + b"\r\nhttps://e.org/b"
    assert _peak_kb(lambda: parse_sitemap(body, "https://e.org/s.txt")) < 2000
    r = parse_sitemap(body, "https://e.org/s.txt")
    assert [c.url for c in r.urls] == ["https://e.org/a", "https://e.org/b"]
    assert r.problem.startswith("text sitemap https://e.org/s.txt: 1 line not an http(s) URL, left out")
