"""A page archived in capture mode `requisites` replays as it looked: its stylesheet applies,
the stylesheet's web font draws the headline, its background image and the page's image from
a "CDN" host show, and all of it comes from the archive.

The outlet lives on 127.0.0.1 and its image host on 127.0.0.2, each a real server with a
request log. `archiver serve` then replays the article in Chromium (Debian's, through
playwright). The font is a real TrueType font whose every glyph is two em wide, wider than
any system font's, so the headline's width shows which font drew it. The stylesheet and
the image are marked `crossorigin`, as pages loading from a CDN often are: a replayed page's
origin is opaque (its sandbox), so a CORS-mode load of it fails unless the replay sees to it.
(That a second article sharing these requisites fetches none of them again is shown by
test_requisites.py.)
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import Index

from .localoutlet import outlet_config
from .rawserver import RawServer, raw
from .test_browse import chromium, get, start_serve, stop
from .test_item_failures import _feed, _ok
from .test_requisites import png

FONT_SIZE = 20  # px
WIDE = "ABCD"  # drawn 2 em a glyph by the archived font: 160 px; by any fallback, far less
INK = "rgb(20, 90, 160)"  # the headline's colour in the archived stylesheet


def wide_font(family: str) -> bytes:
    """A TrueType font that Chromium's font sanitizer (OTS) accepts: printable ASCII, each
    character one box two em wide."""
    upm, adv = 1000, 2000
    box = (100, 0, adv - 100, 700)  # xMin, yMin, xMax, yMax
    glyph = (struct.pack(">hhhhh", 1, *box) + struct.pack(">HH", 3, 0) + bytes([0x01] * 4)  # 4 on-curve points
             + struct.pack(">hhhhhhhh", box[0], 0, box[2] - box[0], 0, 0, box[3], 0, -box[3]))
    glyph += b"\0" * (-len(glyph) % 4)
    first, last = 0x20, 0x7E
    # cmap format 4: U+0020..U+007E all to glyph 1 through the glyph id array (idRangeOffset 4:
    # the array follows the two offsets), then the closing 0xFFFF segment
    cmap4 = (struct.pack(">HHHH", 4, 4, 1, 0) + struct.pack(">HHHHHhhHH", last, 0xFFFF, 0, first, 0xFFFF, 0, 1, 4, 0)
             + struct.pack(f">{last - first + 1}H", *[1] * (last - first + 1)))
    names = {1: family, 2: "Regular", 3: f"{family} Regular", 4: family, 6: family.replace(" ", "")}
    records, strings = b"", b""
    for nid, text in names.items():
        data = text.encode("utf-16-be")
        records += struct.pack(">HHHHHH", 3, 1, 0x409, nid, len(data), len(strings))
        strings += data
    tables = {
        b"head": struct.pack(">IIIIHHqqhhhhHHhhh", 0x00010000, 0x00010000, 0, 0x5F0F3CF5, 0x000B, upm, 0, 0,
                             *box, 0, 8, 2, 1, 0),
        b"hhea": struct.pack(">IhhhHhhhhhhhhhhhH", 0x00010000, 800, -200, 0, adv, 0, 100, box[2], 1, 0, 0,
                             0, 0, 0, 0, 0, 2),
        b"maxp": struct.pack(">IHHHHHHHHHHHHHH", 0x00010000, 2, 4, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0),
        b"hmtx": struct.pack(">HhHh", upm // 2, 0, adv, box[0]),
        b"glyf": glyph,
        b"loca": struct.pack(">III", 0, 0, len(glyph)),
        b"post": struct.pack(">IIhhIIIII", 0x00030000, 0, -100, 50, 0, 0, 0, 0, 0),
        b"cmap": struct.pack(">HHHHI", 0, 1, 3, 1, 12) + struct.pack(">HHH", 4, 6 + len(cmap4), 0) + cmap4,
        b"name": struct.pack(">HHH", 0, len(names), 6 + len(records)) + records + strings,
        b"OS/2": struct.pack(">HhHHHhhhhhhhhhhh10sIIII4sHHHhhhHHIIhhHHH", 4, adv, 400, 5, 0, 500, 500, 0, 100,
                             500, 500, 0, 300, 50, 250, 0, b"\0" * 10, 1, 0, 0, 0, b"ARCH", 0x40, first, last,
                             800, -200, 0, 800, 200, 1, 0, 500, 700, 0, first, 1),
    }

    def checksum(data: bytes) -> int:
        data += b"\0" * (-len(data) % 4)
        return sum(struct.unpack(f">{len(data) // 4}I", data)) & 0xFFFFFFFF

    tags = sorted(tables)
    power = 1 << (len(tags).bit_length() - 1)
    font = bytearray(struct.pack(">IHHHH", 0x00010000, len(tags), power * 16, power.bit_length() - 1,
                                 (len(tags) - power) * 16))
    offset, blobs, head_at = 12 + 16 * len(tags), b"", 0
    for tag in tags:
        data = tables[tag] + b"\0" * (-len(tables[tag]) % 4)
        font += struct.pack(">4sIII", tag, checksum(tables[tag]), offset, len(tables[tag]))
        head_at = offset if tag == b"head" else head_at
        blobs += data
        offset += len(data)
    font += blobs
    struct.pack_into(">I", font, head_at + 8, (0xB1B0AFBA - checksum(bytes(font))) & 0xFFFFFFFF)  # checkSumAdjustment
    return bytes(font)


def article(cdn: str) -> bytes:
    paragraphs = "".join(f"<p>Paragraph {i}. Vietnam and its neighbours met again this week; officials spoke "
                         "at length about trade and the sea.</p>" for i in range(4))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Talks in Hanoi</title>
<link rel="stylesheet" href="/static/styled.css" crossorigin="anonymous"></head>
<body><article><h1 id="headline"><span id="wide">{WIDE}</span></h1>
<img id="photo" src="{cdn}/img/photo.png" crossorigin="anonymous" alt="harbour">{paragraphs}</article></body></html>""".encode()


STYLESHEET = f"""@font-face {{ font-family: "Archived Face"; src: url(/fonts/archived.ttf) format("truetype"); }}
body {{ background: rgb(250, 240, 220) url(/static/paper.png) repeat; }}
h1 {{ color: {INK}; font: {FONT_SIZE}px "Archived Face", monospace; }}
""".encode()


def test_a_replayed_article_shows_its_archived_stylesheet_font_and_images(tmp_path: Path):
    site_routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                   "/static/styled.css": raw(_ok(STYLESHEET, "text/css")),
                   "/static/paper.png": raw(_ok(png((240, 230, 200), 4), "image/png")),
                   "/fonts/archived.ttf": raw(_ok(wide_font("Archived Face"), "font/ttf"))}
    cdn_routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                  "/img/photo.png": raw(_ok(png((0, 90, 160), 16), "image/png"))}
    root = tmp_path / "root"
    with RawServer(site_routes) as site, RawServer(cdn_routes, host="127.0.0.2") as cdn:
        site_routes["/a1"] = raw(_ok(article(cdn.url(""))))
        site_routes["/feed.xml"] = raw(_ok(_feed([site.url("/a1")]), "application/rss+xml"))
        cfg = outlet_config(tmp_path / "c.yaml", root, [site.url("/feed.xml")], extra="capture: {mode: requisites}\n")
        result = asyncio.run(run_pass(load_config(cfg)))
        assert result.outlets[0].archived == 1
        asked = len(site.requests), len(cdn.requests)
        shown = replay(cfg, root, site.url("/a1"))
        assert (len(site.requests), len(cdn.requests)) == asked  # the replay reached neither live host

    assert shown["outside"] == [], f"requests left the archive: {shown['outside']}"
    assert shown["failed"] == [], f"the archive did not answer: {shown['failed']}"
    assert shown["color"] == INK  # the archived stylesheet applies
    assert shown["fonts"] == ["Archived Face loaded"]
    assert shown["wide"] == pytest.approx(len(WIDE) * 2 * FONT_SIZE, abs=1)  # its archived font drew it
    assert shown["photo"] == 16  # the image from the CDN host shows
    assert shown["background"] == 200  # the stylesheet's background image came from the archive
    assert shown["cors"] == {"font": "null", "empty": None}


def replay(cfg: Path, root: Path, url: str) -> dict:
    """Open the page's capture in the browse UI's replay frame: what Chromium shows, what it
    asked for, and the replay origin's answers that were errors or never came."""
    sync_api, browser_path = chromium()
    with Index.open(root, readonly=True) as idx:
        cid = next(r.id for r in idx.captures(kind="article") if r.final_url == url)
    proc, base, replay_origin = start_serve(cfg)
    requests: list[str] = []
    answers: dict[str, int | str] = {}  # url -> status, or why the request failed
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            try:
                context = browser.new_context()
                context.on("request", lambda req: requests.append(req.url))
                context.on("response", lambda resp: answers.__setitem__(resp.url, resp.status))
                context.on("requestfailed", lambda req: answers.__setitem__(req.url, req.failure or "failed"))
                page = context.new_page()
                page.goto(f"{base}/replay/{cid}")
                frame = page.wait_for_selector("iframe.replay").content_frame()
                assert frame is not None
                frame.wait_for_selector("#headline")
                frame.wait_for_function("() => [...document.images].every(i => i.complete)")
                shown = {
                    "color": frame.eval_on_selector("#headline", "e => getComputedStyle(e).color"),
                    "fonts": frame.evaluate("() => document.fonts.ready.then(s => [...s].map(f => "
                                            "`${f.family.replace(/\"/g, '')} ${f.status}`))"),
                    "wide": frame.eval_on_selector("#wide", "e => e.getBoundingClientRect().width"),
                    "photo": frame.eval_on_selector("#photo", "e => e.naturalWidth"),
                }
            finally:
                browser.close()
        font = next((u for u in requests if u.endswith("/fonts/archived.ttf")), None)
        # the CORS answer that lets the font load is for font loads only: a page's fetch() of
        # the same URL (any page, any site, in the user's browser) cannot read it
        shown["cors"] = font and {dest: get(font, {"Sec-Fetch-Dest": dest, "Sec-Fetch-Mode": "cors",
                                                   "Origin": "null"})[1].get("access-control-allow-origin")
                                  for dest in ("font", "empty")}
    finally:
        stop(proc)
    shown["outside"] = [u for u in requests if not u.startswith((base + "/", replay_origin + "/", "data:"))]
    shown["failed"] = [(u, s) for u, s in answers.items() if u.startswith(replay_origin + "/")
                      and not (isinstance(s, int) and 200 <= s < 400)]
    shown["background"] = next((s for u, s in answers.items() if u.endswith("/static/paper.png")), None)
    return shown
