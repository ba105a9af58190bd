"""The capture page of a page the browser captured: its screenshot beside its text, and its
rendered DOM as a view of its own, sealed as replay is.

A local outlet publishes an article only JavaScript writes (captured in browser mode by
Debian's Chromium) and a plain one (html mode); `archiver serve` runs as a user starts it and
Chromium browses it. The screenshot the page shows is the PNG in the WARC byte for byte; the
rendered view shows the text the script wrote, with the photo it wrote from the archive, and
runs none of the page's scripts; the plain article's page has no screenshot.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import lxml.html
import pytest

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import CaptureRow, Index
from archiver.web.replayapp import timestamp14

from .rawserver import RawServer, raw
from .test_browse import chromium, get, start_serve, stop
from .test_browser_capture import NO_ROBOTS, browser_path, page, records, story_json
from .test_item_failures import _feed, _ok
from .test_requisites import png

WORDS = "Vietnam and its neighbours met in Hanoi."
PHOTO = png((200, 40, 40), 24)
# appends a marker each time it runs: the rendered DOM holds the one of the capture, a second
# one would mean a script of the page ran again
JS = ("document.body.insertAdjacentHTML('beforeend', '<p class=ran>script ran</p>');"
      "fetch('/api/story.json').then(r => r.json()).then(d => {"
      " document.getElementById('story').innerHTML = d.paragraphs.map(p => '<p>' + p + '</p>').join('')"
      " + '<img id=photo src=/img/photo.png width=24 height=24 alt=photo>'; });")
PLAIN = "".join(f"<p>{WORDS} Paragraph {i} of a plain story, long enough to read as an article body.</p>"
                for i in range(6))


@dataclass
class Served:
    outlet: RawServer
    root: Path
    base: str
    replay: str
    js: CaptureRow  # the article the script wrote, captured in browser mode
    plain: CaptureRow  # captured in html mode
    shot: CaptureRow  # the JS article's screenshot row


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    exe = browser_path()
    tmp = tmp_path_factory.mktemp("screens")
    routes = {"/robots.txt": NO_ROBOTS, "/api/story.json": raw(story_json(WORDS)),
              "/img/photo.png": raw(_ok(PHOTO, "image/png")),
              "/story": raw(page("<div id=root></div><article id=story></article>", JS)),
              "/plain": raw(page(f"<article><h1>Vietnam talks</h1>{PLAIN}</article>"))}
    with RawServer(routes) as srv:
        routes["/js.xml"] = raw(_ok(_feed([srv.url("/story")]), "application/rss+xml"))
        routes["/plain.xml"] = raw(_ok(_feed([srv.url("/plain")]), "application/rss+xml"))
        root = tmp / "root"
        config = tmp / "c.yaml"
        config.write_text(f"""\
storage: {{root: {root}}}
fetch: {{allow_private_networks: true, per_host_delay: 0}}
extract: {{workers: 0}}
capture: {{mode: html, browser: {{executable: {exe}}}}}
topics: [{{name: vietnam, any: [Vietnam]}}]
outlets: [{{name: js, feeds: ["{srv.url('/js.xml')}"], capture_mode: browser}},
          {{name: plain, feeds: ["{srv.url('/plain.xml')}"]}}]
""")
        result = asyncio.run(run_pass(load_config(config)))
        assert sum(o.archived for o in result.outlets) == 2, result.outlets
        with Index.open(root, readonly=True) as idx:
            kept = {r.url: r for r in idx.captures(kind="article", state="archived")}
            shot = next(r for r in idx.captures(kind="screenshot"))
        proc, base, replay = start_serve(config)
        try:
            yield Served(srv, root, base, replay, kept[srv.url("/story")], kept[srv.url("/plain")], shot)
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def browser():
    sync_api, path = chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_the_capture_page_shows_the_screenshot_in_the_warc_beside_the_text(served: Served, browser):
    status, _, body = get(f"{served.base}/capture/{served.js.id}")
    assert status == 200, body
    doc = lxml.html.fromstring(body)
    beside = doc.get_element_by_id("text-and-screenshot")
    assert beside.get_element_by_id("article") is not None and beside.get_element_by_id("screenshot") is not None
    img = doc.get_element_by_id("screenshot-image")
    alt = img.get("alt")
    assert alt.startswith(f"Screenshot of {served.js.url}") and served.shot.fetched_at in alt, alt
    assert doc.get_element_by_id("screenshot-full").get("href") == img.get("src")
    mode = doc.get_element_by_id("capture-mode").text_content()
    assert "browser" in mode and "Chromium" in mode and "capture mode browser" in mode, mode

    status, headers, png_bytes = fetch(served.base + img.get("src"))
    stored = next(r["body"] for r in records(served.root)
                  if r["type"] == "resource" and r["uri"] == f"urn:screenshot:{served.js.url}")
    assert status == 200 and png_bytes == stored and stored[:8] == b"\x89PNG\r\n\x1a\n"
    assert headers["content-type"] == "image/png" and headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store" and "sandbox" in headers["content-security-policy"]

    # as a reader sees it: the image loads under the UI's CSP, beside the text on a wide
    # screen and below it on a narrow one, as wide as its column
    for width, side_by_side in ((1400, True), (600, False)):
        context = browser.new_context(viewport={"width": width, "height": 900})
        try:
            tab = context.new_page()
            tab.goto(f"{served.base}/capture/{served.js.id}")
            shown = tab.locator("#screenshot-image")
            assert shown.evaluate("i => i.complete && i.naturalWidth") > 0
            text, column, picture = (tab.locator(sel).bounding_box() for sel in
                                     ("#article", "#screenshot", "#screenshot-image"))
            assert text and column and picture
            if side_by_side:
                assert column["x"] >= text["x"] + text["width"] and abs(column["y"] - text["y"]) < 5
            else:
                assert column["y"] >= text["y"] + text["height"] and abs(column["x"] - text["x"]) < 5
            assert abs(picture["width"] - column["width"]) < 4, (picture, column)
        finally:
            context.close()


def test_the_rendered_view_shows_what_the_script_wrote_and_runs_no_script(served: Served, browser):
    status, _, body = get(f"{served.base}/capture/{served.js.id}")
    assert lxml.html.fromstring(body).get_element_by_id("view-rendered").get("href") == f"/rendered/{served.js.id}"
    # the static replay is the empty shell the server sent
    _, _, static = get(f"{served.replay}/replay/{served.js.id}")
    assert WORDS not in static
    status, headers, dom = get(f"{served.replay}/rendered/{served.js.id}")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    csp = headers["content-security-policy"]
    assert "script-src 'none'" in csp and csp.endswith("sandbox") and headers["cache-control"] == "no-store"
    assert f"<p>{WORDS} Paragraph 0" in dom and "<script" not in dom.lower()
    photo = lxml.html.fromstring(dom).get_element_by_id("photo").get("src")
    assert photo == f"/web/{timestamp14(served.js.fetched_at)}/{served.outlet.url('/img/photo.png')}"

    outlet_asked = len(served.outlet.requests)
    context = browser.new_context()
    seen: list[str] = []
    context.on("request", lambda r: seen.append(r.url))
    try:
        tab = context.new_page()
        tab.goto(f"{served.base}/rendered/{served.js.id}")
        frame = tab.frame_locator("iframe.replay")
        assert WORDS in frame.locator("#story").inner_text()
        assert frame.locator("#photo").evaluate("i => i.complete && i.naturalWidth") == 24  # from the archive
        tab.wait_for_timeout(500)  # time for a script to run, were one allowed to
        assert frame.locator("p.ran").count() == 1  # the capture's marker; no script ran again
        # opened top-level, the replay origin's copy is sent to the UI's frame around it
        tab.goto(f"{served.replay}/rendered/{served.js.id}")
        assert tab.url == f"{served.base}/rendered/{served.js.id}"
        assert tab.frame_locator("iframe.replay").locator("p.ran").count() == 1
    finally:
        context.close()
    assert [u for u in seen if not u.startswith((served.base + "/", served.replay + "/"))] == []
    assert len(served.outlet.requests) == outlet_asked  # the live outlet was never asked


def test_the_screenshot_s_own_capture_page_shows_it(served: Served):
    """A search or a list of captures leads to the screenshot's row: its page shows the image."""
    status, _, body = get(f"{served.base}/capture/{served.shot.id}")
    assert status == 200, body
    img = lxml.html.fromstring(body).get_element_by_id("screenshot-image")
    assert img.get("alt").startswith(f"Screenshot of {served.js.url} as"), img.get("alt")
    status, headers, png_bytes = fetch(served.base + img.get("src"))
    stored = next(r["body"] for r in records(served.root)
                  if r["type"] == "resource" and r["uri"] == f"urn:screenshot:{served.js.url}")
    assert status == 200 and headers["content-type"] == "image/png" and png_bytes == stored


def test_an_html_mode_capture_page_has_no_screenshot(served: Served):
    status, _, body = get(f"{served.base}/capture/{served.plain.id}")
    assert status == 200, body
    doc = lxml.html.fromstring(body)
    for absent in ("text-and-screenshot", "screenshot", "screenshot-image", "view-rendered"):
        assert not doc.xpath(f"//*[@id='{absent}']"), absent
    assert doc.get_element_by_id("article") is not None
    mode = doc.get_element_by_id("capture-mode").text_content()
    assert mode.startswith("html") and "capture mode html" in mode, mode
    assert fetch(f"{served.base}/capture/{served.plain.id}/screenshot.png")[0] == 404
    status, _, missing = get(f"{served.replay}/rendered/{served.plain.id}")
    assert status == 404 and "Not in the archive" in missing
