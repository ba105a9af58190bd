"""Capture mode `requisites`: a kept page's stylesheets (and what they import), fonts,
images (src, srcset, <picture>, lazy data-src), scripts, icons and frames are archived with
it, through the same polite fetcher, shared ones once; replay then looks like the page.

The outlet lives on 127.0.0.1 and its images on a "CDN" at 127.0.0.2, each a real server.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import Index
from archiver.requisites import from_css, from_html

from .localoutlet import outlet_config
from .rawserver import RawServer, raw
from .test_item_failures import _feed, _ok
from .test_recover import all_records_ok, rows_point_at_records

DELAY = 0.2


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A real PNG of one colour (so a browser shows it and reports its size)."""
    row = b"\x00" + bytes(rgb) * size
    raw_data = zlib.compress(row * size)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw_data) + chunk(b"IEND", b""))


def article(title: str, cdn: str, own_image: str, topic: bool = True) -> bytes:
    words = "Vietnam and its neighbours met again this week." if topic else "The weather was mild."
    return f"""<!DOCTYPE html><html><head><title>{title}</title>
<link rel="stylesheet" href="/static/site.css"><link rel="icon" href="/favicon.ico">
<script src="/static/app.js"></script></head>
<body><header><img src="{cdn}/img/logo.png" alt="logo"></header>
<article><h1 id="headline">{title}</h1>
<img id="lead" src="{cdn}/img/{own_image}" srcset="{cdn}/img/{own_image} 1x, {cdn}/img/2x-{own_image} 2x">
<picture><source srcset="{cdn}/img/pic.webp" type="image/webp"><img src="{cdn}/img/pic.png"></picture>
<img class="lazy" data-src="{cdn}/img/lazy.png" src="data:image/gif;base64,R0lGOD">
<img src="{cdn}/private/secret.png">
{''.join(f'<p>Paragraph {i}. {words} Officials spoke at length about trade and the sea.</p>' for i in range(5))}
<iframe src="/embed/map"></iframe></article></body></html>""".encode()


def test_parsing_finds_every_kind_and_keeps_urls_as_written():
    page = """<html><head><base href="https://x.org/news/"><link rel="stylesheet" href="a.css">
<link rel="preload" as="font" href="/f.woff2"><link rel="apple-touch-icon" href="/t.png">
<style>@import "b.css"; .x{background:url('/bg.png')}</style></head>
<body style="background-image: url(/body.png)"><img src="i.png?w=3&amp;h=4#frag" srcset="s1.png 1x, s2.png 2x">
<video poster="/poster.jpg"><source src="/v.mp4"></video><img data-src="lazy.png"><img data-src="not a url">
<a href="/not-a-requisite.html">x</a><script src="//cdn.x.org/app.js"></script><img src="javascript:alert(1)">
</body></html>"""
    got = {r.url: r.kind for r in from_html(page, "https://x.org/news/story.html")}
    assert got == {
        "https://x.org/news/a.css": "stylesheet", "https://x.org/f.woff2": "font", "https://x.org/t.png": "icon",
        "https://x.org/news/b.css": "stylesheet", "https://x.org/bg.png": "image", "https://x.org/body.png": "image",
        "https://x.org/news/i.png?w=3&h=4": "image", "https://x.org/news/s1.png": "image",
        "https://x.org/news/s2.png": "image", "https://x.org/poster.jpg": "image", "https://x.org/v.mp4": "media",
        "https://x.org/news/lazy.png": "image", "https://cdn.x.org/app.js": "script"}
    css = from_css("/* url(/no.png) */ @import url(print.css) screen; @font-face{src:url(\"../f/a.woff2\")} "
                   "p{background:url(data:image/png;base64,xx)} q{background:url( img/q.png )}",
                   "https://x.org/css/site.css")
    assert {r.url: r.kind for r in css} == {"https://x.org/css/print.css": "stylesheet",
                                            "https://x.org/f/a.woff2": "font", "https://x.org/css/img/q.png": "image"}


def test_requisites_are_archived_once_politely_and_listed_in_the_provenance(tmp_path: Path):
    site_routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                   "/static/app.js": raw(_ok(b"console.log(1)", "application/javascript")),
                   "/favicon.ico": raw(_ok(png((1, 2, 3)), "image/x-icon")),
                   "/fonts/f.woff2": raw(_ok(b"wOF2fake", "font/woff2")),
                   "/static/print.css": raw(_ok(b"body{background:url(/img/deep.png)}", "text/css")),
                   "/img/deep.png": raw(_ok(png((9, 9, 9)), "image/png")),
                   "/embed/map": raw(_ok(b"<html><body>map</body></html>"))}
    cdn_routes = {"/robots.txt": raw(_ok(b"User-agent: *\nDisallow: /private/\n", "text/plain"))}
    for name in ("logo.png", "a1.png", "2x-a1.png", "a2.png", "2x-a2.png", "pic.png", "pic.webp", "lazy.png",
                 "bg.png", "off.png", "2x-off.png", "private/secret.png"):
        cdn_routes[f"/img/{name}" if not name.startswith("private") else f"/{name}"] = raw(_ok(png((0, 0, 200)),
                                                                                              "image/png"))
    root = tmp_path / "root"
    with RawServer(site_routes) as site, RawServer(cdn_routes, host="127.0.0.2") as cdn:
        c = cdn.url("")
        site_routes["/static/site.css"] = raw(_ok(
            f'@import url("/static/print.css"); @font-face{{font-family:F;src:url(/fonts/f.woff2)}} '
            f'h1{{color:rgb(200, 0, 0)}} header{{background:url({c}/img/bg.png)}}'.encode(), "text/css"))
        site_routes["/a1"] = raw(_ok(article("Talks in Hanoi", c, "a1.png")))
        site_routes["/a2"] = raw(_ok(article("Talks in Manila", c, "a2.png")))
        site_routes["/off"] = raw(_ok(article("Weather", c, "off.png", topic=False)))
        site_routes["/feed.xml"] = raw(_ok(_feed([site.url("/a1"), site.url("/a2"), site.url("/off")]),
                                           "application/rss+xml"))
        cfg = tmp_path / "c.yaml"
        outlet_config(cfg, root, [site.url("/feed.xml")], delay=DELAY, fetch=", concurrency: 1")
        result = asyncio.run(run_pass(load_config(cfg)))
        site_paths = [h.split(b" ", 2)[1].decode() for h in site.requests]
        cdn_paths = [h.split(b" ", 2)[1].decode() for h in cdn.requests]
        cdn_times = list(cdn.times)
        styled = replay_in_chromium(cfg, root, site.url("/a1"), tmp_path)
        assert len(site.requests) == len(site_paths) and len(cdn.requests) == len(cdn_paths)  # replay asked neither
    assert styled["color"] == "rgb(200, 0, 0)"  # the archived stylesheet applies
    assert styled["lead"] == 8 and styled["logo"] == 8  # the archived images (from the CDN) show
    assert styled["outside"] == [], styled["outside"]
    stats = result.outlets[0]
    assert stats.archived == 2
    shared = ["/static/site.css", "/static/app.js", "/favicon.ico", "/fonts/f.woff2", "/static/print.css",
              "/embed/map"]
    for path in shared:
        assert site_paths.count(path) == 1, (path, site_paths)  # the second article fetched none again
    for path in ["/img/logo.png", "/img/pic.png", "/img/pic.webp", "/img/lazy.png", "/img/bg.png"]:
        assert cdn_paths.count(path) == 1, (path, cdn_paths)
    for path in ["/img/a1.png", "/img/2x-a1.png", "/img/a2.png", "/img/2x-a2.png"]:
        assert cdn_paths.count(path) == 1, (path, cdn_paths)
    assert "/img/off.png" not in cdn_paths  # an off-topic page fetches no requisites
    assert "/img/deep.png" not in site_paths  # one level beyond the page's CSS, not two
    assert "/private/secret.png" not in cdn_paths  # the CDN's robots.txt holds for requisites too
    gaps = [b - a for a, b in zip(cdn_times, cdn_times[1:])]
    assert gaps and min(gaps) >= DELAY - 0.02, gaps  # the per-host gap holds for the CDN host

    responses: dict[str, str] = {}
    listed: dict[str, list[str]] = {}
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                uri = rec.rec_headers.get_header("WARC-Target-URI")
                if rec.rec_type == "response":
                    responses[uri] = rec.rec_headers.get_header("WARC-Record-ID")
                elif rec.rec_type == "metadata":
                    body = rec.content_stream().read().decode()
                    if "requisites-of:" in body:
                        listed[uri] = [line.split(": ", 1)[1] for line in body.splitlines()
                                       if line.startswith("requisite: ")]
    a1 = site.url("/a1")
    expected = [site.url(p) for p in shared] + [cdn.url(p) for p in (
        "/img/logo.png", "/img/a1.png", "/img/2x-a1.png", "/img/pic.webp", "/img/pic.png", "/img/lazy.png",
        "/img/bg.png")]
    for url in expected:
        assert url in responses, url  # every requisite of a1 is in the WARCs
        assert any(line.startswith(url + " ") for line in listed[a1]), (url, listed[a1])
    with Index.open(root, readonly=True) as idx:
        page_row = next(r for r in idx.captures(kind="article") if r.final_url == a1)
        req_rows = [r for r in idx.captures(kind="requisite") if r.discovered_via_record_id == page_row.warc_record_id]
        robots_rows = [r for r in idx.captures(kind="requisite") if r.state == "robots"]
    assert {r.final_url for r in req_rows} >= set(expected) - {site.url("/static/print.css"),
                                                               site.url("/fonts/f.woff2"), cdn.url("/img/bg.png")}
    assert [r.url for r in robots_rows] == [cdn.url("/private/secret.png")] * len(robots_rows) and robots_rows
    assert all_records_ok(root) and rows_point_at_records(root)


def replay_in_chromium(cfg: Path, root: Path, url: str, tmp_path: Path) -> dict:
    """Open the page's capture in the browse UI's replay; what the browser shows and asks for."""
    from .test_browse import chromium, start_serve, stop

    sync_api, browser_path = chromium()
    with Index.open(root, readonly=True) as idx:
        cid = next(r.id for r in idx.captures(kind="article") if r.final_url == url)
    proc, base, replay = start_serve(cfg)
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            try:
                context = browser.new_context()
                context.on("request", lambda req: requests.append(req.url))
                page = context.new_page()
                page.goto(f"{base}/replay/{cid}")
                frame = page.wait_for_selector("iframe.replay").content_frame()
                assert frame is not None
                frame.wait_for_selector("#headline")
                frame.wait_for_function("() => document.images.length && [...document.images].every(i => i.complete)")
                got = {
                    "color": frame.eval_on_selector("#headline", "e => getComputedStyle(e).color"),
                    "lead": frame.eval_on_selector("#lead", "e => e.naturalWidth"),
                    "logo": frame.eval_on_selector("header img", "e => e.naturalWidth"),
                }
                page.screenshot(path=str(tmp_path / "styled-replay.png"))
            finally:
                browser.close()
    finally:
        stop(proc)
    got["outside"] = [u for u in requests if not u.startswith((base + "/", replay + "/", "data:"))]
    return got


def test_a_requisite_fetched_again_with_the_same_payload_is_a_revisit(tmp_path: Path):
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/s.css": raw(_ok(b"h1{color:red}", "text/css"))}
    page = b"<html><head><link rel=stylesheet href=/s.css></head><body><p>Vietnam story, one.</p></body></html>"
    root = tmp_path / "root"
    with RawServer(routes) as srv:
        routes["/one"] = raw(_ok(page))
        routes["/two"] = raw(_ok(page.replace(b"one", b"two")))
        cfg = tmp_path / "c.yaml"

        def crawl(links: list[str]) -> None:
            routes["/feed.xml"] = raw(_ok(_feed([srv.url(p) for p in links]), "application/rss+xml"))
            outlet_config(cfg, root, [srv.url("/feed.xml")], extra="capture: {requisites: {refresh: 0s}}\n")
            asyncio.run(run_pass(load_config(cfg)))

        crawl(["/one"])
        crawl(["/two"])
    revisits = []
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "revisit" and rec.rec_headers.get_header("WARC-Target-URI").endswith("/s.css"):
                    revisits.append(rec.rec_headers.get_header("WARC-Profile"))
    assert revisits == ["http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"]
    with Index.open(root, readonly=True) as idx:
        states = [r.state for r in idx.captures(kind="requisite")]
    assert states == ["archived", "unchanged"]
    assert all_records_ok(root) and rows_point_at_records(root)


def test_capture_mode_html_fetches_no_requisites(tmp_path: Path):
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/s.css": raw(_ok(b"h1{color:red}", "text/css"))}
    page = b"<html><head><link rel=stylesheet href=/s.css></head><body><p>Vietnam story.</p></body></html>"
    with RawServer(routes) as srv:
        routes["/one"] = raw(_ok(page))
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/one")]), "application/rss+xml"))
        cfg = tmp_path / "c.yaml"
        outlet_config(cfg, tmp_path / "root", [srv.url("/feed.xml")], outlet=", capture_mode: html")
        result = asyncio.run(run_pass(load_config(cfg)))
        paths = [h.split(b" ", 2)[1] for h in srv.requests]
    assert result.outlets[0].archived == 1 and b"/s.css" not in paths


def test_a_wacz_carries_the_requisites_its_pages_reuse_from_earlier_files(tmp_path: Path):
    import json
    import time
    import zipfile
    from datetime import datetime, timezone

    from .conftest import invoke

    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/s.css": raw(_ok(b"h1{color:red} p{background:url(/dot.png)}", "text/css")),
              "/dot.png": raw(_ok(png((0, 0, 0)), "image/png"))}
    page = b"<html><head><link rel=stylesheet href=/s.css></head><body><p>Vietnam story, one.</p></body></html>"
    root = tmp_path / "root"
    cfg = tmp_path / "c.yaml"
    with RawServer(routes) as srv:
        routes["/one"] = raw(_ok(page))
        routes["/two"] = raw(_ok(page.replace(b"one", b"two")))
        for links in (["/one"], ["/two"]):
            routes["/feed.xml"] = raw(_ok(_feed([srv.url(p) for p in links]), "application/rss+xml"))
            outlet_config(cfg, root, [srv.url("/feed.xml")])
            time.sleep(1.1)  # --since takes whole seconds: the first page is a second before it
            since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            asyncio.run(run_pass(load_config(cfg)))
        asked = [h.split(b" ", 2)[1] for h in srv.requests]
    assert asked.count(b"/s.css") == 1 and asked.count(b"/dot.png") == 1
    files = sorted(p.name for p in (root / "warc").glob("*.warc.gz"))
    assert len(files) == 2
    out = tmp_path / "two.wacz"
    proc = invoke("export", "wacz", "--config", str(cfg), "--out", str(out), "--since", since)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as z:
        inside = sorted(n.removeprefix("archive/export-") for n in z.namelist() if n.startswith("archive/"))
        pages = [json.loads(line) for line in z.read("pages/pages.jsonl").decode().splitlines()[1:]]
    assert [p["url"] for p in pages] == [srv.url("/two")]
    assert inside == files  # the stylesheet and its image, captured with /one, travel with /two


def test_pages_whose_requisites_live_on_each_others_hosts_do_not_starve_each_other(tmp_path: Path):
    """Places (fetch.concurrency) are shared by every outlet; a page waiting for its turn on a
    host holds that host's turn. Requisites are fetched after the page gives its place back,
    or two outlets naming each other's images would wait for each other forever."""
    a_routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")}
    b_routes = dict(a_routes)
    with RawServer(a_routes) as a, RawServer(b_routes, host="127.0.0.2") as b:
        for routes, own, other in ((a_routes, a, b), (b_routes, b, a)):
            links = []
            for i in range(4):
                routes[f"/img/{i}.png"] = raw(_ok(png((i, i, i)), "image/png"))
                routes[f"/story-{i}"] = raw(_ok(
                    f'<html><body><p>Vietnam story {i}.</p><img src="{other.url(f"/img/{i}.png")}">'
                    f'<img src="{own.url(f"/img/{i}.png")}"></body></html>'.encode()))
                links.append(own.url(f"/story-{i}"))
            routes["/feed.xml"] = raw(_ok(_feed(links), "application/rss+xml"))
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"""\
storage: {{root: {tmp_path / 'root'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0.05, concurrency: 1, per_host_concurrency: 1}}
extract: {{workers: 0}}
topics: [{{name: vietnam, any: [Vietnam]}}]
outlets:
  - {{name: a, feeds: ["{a.url('/feed.xml')}"]}}
  - {{name: b, feeds: ["{b.url('/feed.xml')}"]}}
""")

        async def bounded() -> object:
            return await asyncio.wait_for(run_pass(load_config(cfg)), timeout=60)

        result = asyncio.run(bounded())
    assert [s.archived for s in result.outlets] == [4, 4]
    # each image is named by one page of each outlet: fetched once, reused once
    assert sum(s.requisites for s in result.outlets) == 8 and sum(s.requisites_reused for s in result.outlets) == 8


def test_pages_waiting_for_their_requisites_are_bounded_by_fetch_concurrency(tmp_path: Path):
    """A page is held (its body, its text) from its fetch until its requisites are archived.
    However many outlets run, no more pages than fetch.concurrency are held at once, so a slow
    image host cannot make the pass hold every outlet's pages in memory."""
    held = {"now": 0, "most": 0}

    def page(body: bytes):
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(_ok(body))
            await writer.drain()
            held["now"] += 1
            held["most"] = max(held["most"], held["now"])
        return handler

    def slow_image(rgb: tuple[int, int, int]):
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0.3)
            writer.write(_ok(png(rgb), "image/png"))
            await writer.drain()
            held["now"] -= 1  # that page's one requisite is answered
        return handler

    no_robots = raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    cdn_routes = {"/robots.txt": no_robots}
    hosts = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    servers = [RawServer({"/robots.txt": no_robots}, host=h) for h in hosts]
    with RawServer(cdn_routes, host="127.0.0.4") as cdn, servers[0] as a, servers[1] as b, servers[2] as c:
        outlets = []
        for n, srv in enumerate((a, b, c)):
            links = []
            for i in range(5):
                cdn_routes[f"/img/{n}-{i}.png"] = slow_image((n, i, 0))
                srv.routes[f"/story-{i}"] = page(
                    f'<html><body><p>Vietnam story {n}-{i}.</p><img src="{cdn.url(f"/img/{n}-{i}.png")}">'
                    f'</body></html>'.encode())
                links.append(srv.url(f"/story-{i}"))
            srv.routes["/feed.xml"] = raw(_ok(_feed(links), "application/rss+xml"))
            outlets.append(f'  - {{name: o{n}, feeds: ["{srv.url("/feed.xml")}"]}}')
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"""\
storage: {{root: {tmp_path / 'root'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0, concurrency: 2, per_host_concurrency: 8}}
extract: {{workers: 0}}
capture: {{mode: requisites}}
topics: [{{name: vietnam, any: [Vietnam]}}]
outlets:
""" + "\n".join(outlets) + "\n")

        async def bounded() -> object:
            return await asyncio.wait_for(run_pass(load_config(cfg)), timeout=60)

        result = asyncio.run(bounded())
    assert [s.archived for s in result.outlets] == [5, 5, 5]
    assert sum(s.requisites for s in result.outlets) == 15
    assert held["most"] <= 2, held  # 3 outlets x 2 workers each could hold 6
