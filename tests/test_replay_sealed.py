"""Replayed pages stay sealed: no packet, request or navigation leaves the archive.

An outlet on 127.0.0.1 publishes pages crafted to escape a replay — WebRTC to a STUN and a
TURN server, target=_blank and SVG links, base href, form targets, meta refresh in its
variants, `location` and `top.location`, window.open, a robots.txt served as JavaScript —
and the archiver crawls it like any outlet. Chromium then browses the archive through
`archiver serve` with its popup blocker on. The outlet's own request log, a UDP socket
(the STUN canary) and a TCP listener (the TURN canary) on loopback must see nothing, and
every request the browser makes must go to the UI's or the replay origin.
"""

from __future__ import annotations

import asyncio
import html
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import lxml.html
import pytest

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import Index

from .test_browse import chromium, get, start_serve, stop

WORDS = ("Blinken met regional leaders on Saturday to talk about trade, climate and security. "
         "Officials said the talks would go on into the evening and resume on Sunday morning.")


class Canaries:
    """A UDP socket for STUN and a TCP listener for TURN on loopback, counting what arrives."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.tcp.settimeout(0.2)
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._udp_loop, daemon=True),
                         threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def stun(self) -> int:
        return self.udp.getsockname()[1]

    @property
    def turn(self) -> int:
        return self.tcp.getsockname()[1]

    def _udp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
                self.seen.append(f"udp {len(data)} bytes from {peer}")
            except (TimeoutError, OSError):
                continue

    def _tcp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.tcp.accept()
                self.seen.append(f"tcp connection from {peer}")
                conn.close()
            except (TimeoutError, OSError):
                continue

    def wait_for_any(self, seconds: float) -> list[str]:
        end = time.monotonic() + seconds
        while not self.seen and time.monotonic() < end:
            time.sleep(0.05)
        return list(self.seen)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


def leak_js(c: Canaries) -> str:
    """Script that starts ICE gathering against both canaries from window `w`."""
    return ("function leak(w){try{var pc=new w.RTCPeerConnection({iceServers:["
            f"{{urls:'stun:127.0.0.1:{c.stun}'}},"
            f"{{urls:'turn:127.0.0.1:{c.turn}?transport=tcp',username:'u',credential:'p'}}]}});"
            "pc.createDataChannel('x');pc.createOffer().then(function(o){return pc.setLocalDescription(o);});"
            "}catch(e){}}")


def page(title: str, body: str, head: str = "") -> bytes:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title} | Blinken Test Times</title>{head}"
            f"</head><body><article><h1>{title}</h1><p>{WORDS}</p><p>{WORDS}</p>{body}</article>"
            f"</body></html>").encode("utf-8")


@dataclass
class EscapeSite:
    """The outlet: serves `pages` (path -> (content type, body)), an RSS feed of the HTML ones
    and logs every request it gets."""

    pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def start(self) -> "EscapeSite":
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                site.hits.append(self.path)
                path = self.path.split("?")[0]
                if path == "/rss.xml":
                    items = "".join(f"<item><title>Blinken story {p}</title><link>{site.base}{p}</link></item>"
                                    for p, (ctype, _) in site.pages.items() if ctype.startswith("text/html"))
                    ctype, body = "application/rss+xml", (f"<?xml version='1.0'?><rss version='2.0'><channel>"
                                                          f"<title>Test</title>{items}</channel></rss>").encode()
                elif path in site.pages:
                    ctype, body = site.pages[path]
                else:
                    ctype, body = "text/html", b"<p>no such page</p>"
                self.send_response(200 if path in site.pages or path == "/rss.xml" else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def config_yaml(self, storage: Path) -> str:
        return (f"storage:\n  root: {storage}\n  keep_off_topic: true\nfetch:\n  allow_private_networks: true\n"
                f"  per_host_delay: 0\n  timeout: 10\ndiscover:\n  max_age_days: null\n"
                f"topics:\n  - name: blinken\n    any: [\"Blinken\"]\n"
                f"outlets:\n  - name: escapes\n    feeds: [\"{self.base}/rss.xml\"]\n")


def escape_pages(site: EscapeSite, c: Canaries) -> dict[str, tuple[str, bytes]]:
    live = site.base  # every absolute URL below names the live outlet
    leak = leak_js(c)
    inner = html.escape(f"<script>{leak}leak(window)</script><p>srcdoc</p>", quote=True)
    h = "text/html; charset=utf-8"
    return {
        # robots.txt as a script: the crawler archives it like any robots.txt
        "/robots.txt": ("application/javascript",
                        f"{leak}leak(window);document.title='robots.txt ran';\n".encode()),
        "/webrtc.html": (h, page("WebRTC", (
            f"<script>{leak}leak(window);"
            "var f=document.createElement('iframe');document.body.appendChild(f);leak(f.contentWindow);"
            "f.contentDocument.write('<script>parent.leak(window)<\\/script>');f.contentDocument.close();</script>"
            "<img src='/nothing.png' onerror='leak(window)'>"
            "<svg><script>leak(window)</script></svg>"
            "<script src='/robots.txt'></script>"
            f"<iframe srcdoc=\"{inner}\"></iframe>"
            "<iframe src='/webrtc-child.html'></iframe>"
            "<iframe src='about:blank' onload='leak(this.contentWindow)'></iframe>"))),
        "/webrtc-child.html": (h, page("WebRTC in a nested frame", (
            f"<script>{leak}leak(window);"
            "var g=document.createElement('iframe');document.body.appendChild(g);leak(g.contentWindow);</script>"))),
        "/links.html": (h, page("Links", (
            f"<a id='blank' href='{live}/hit/blank' target='_blank'>blank</a> "
            f"<a id='named' href='{live}/hit/named' target='elsewhere'>named</a> "
            f"<a id='top' href='{live}/hit/top' target='_top'>top</a> "
            "<a id='relative' href='hit/relative'>relative to the base</a> "
            f"<a id='ping' href='#here' ping='{live}/hit/ping'>ping</a> "
            f"<a id='js' href=\"javascript:window.open('{live}/hit/js')\">js</a> "
            f"<svg width='300' height='60'><a id='svg' xlink:href='{live}/hit/svg' target='_blank'>"
            "<text x='5' y='20'>svg link</text></a>"
            f"<a id='smil' href='#'><set attributeName='href' to='{live}/hit/smil'/>"
            "<text x='5' y='45'>smil link</text></a></svg>"
            f"<map name='m'><area id='area' shape='rect' coords='0,0,50,50' href='{live}/hit/area' target='_blank'>"
            "</map><img usemap='#m' src='data:image/gif;base64,R0lGODlhAQABAAAAACw=' width='50' height='50'>"
            f"<form id='form' action='{live}/hit/form' target='_blank'><button id='submit'>Go</button></form>"
            f"<img src='//{live.split('//')[1]}/hit/img'><iframe src='{live}/hit/frame'></iframe>"
            f"<script>window.open('{live}/hit/open');</script>"),
            head=f"<base href='{live}/sub/' target='_blank'><link rel='prefetch' href='{live}/hit/prefetch'>")),
        "/refresh-semicolon.html": (h, page("Refresh 1", "", f"<meta http-equiv='refresh' content='0; URL={live}/hit/r1'>")),
        "/refresh-comma.html": (h, page("Refresh 2", "", f"<meta http-equiv='Refresh' content='0,url={live}/hit/r2'>")),
        "/refresh-fraction.html": (h, page("Refresh 3", "", f"<meta http-equiv='refresh' content=\"0.1; url='{live}/hit/r3'\">")),
        "/refresh-bare.html": (h, page("Refresh 4", "", f"<meta http-equiv='refresh' content='0 {live}/hit/r4'>")),
        "/location.html": (h, page("Location", f"<script>location = '{live}/hit/location';</script>")),
        "/top-location.html": (h, page("Top location", f"<script>top.location = '{live}/hit/top-location';</script>")),
    }


@dataclass
class Sealed:
    site: EscapeSite
    canaries: Canaries
    base: str
    replay: str
    ids: dict[str, int]  # path -> capture id


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    root = tmp_path_factory.mktemp("sealed")
    canaries = Canaries()
    site = EscapeSite().start()
    site.pages.update(escape_pages(site, canaries))
    try:
        config = root / "config.yaml"
        config.write_text(site.config_yaml(root / "storage"), encoding="utf-8")
        asyncio.run(run_pass(load_config(config)))
        with Index.open(root / "storage", readonly=True) as idx:
            ids = {r.url.removeprefix(site.base): r.id for r in idx.captures() if r.state == "archived"}
        missing = [p for p in site.pages if p not in ids]
        assert not missing, f"not archived: {missing}"
        proc, base, replay = start_serve(config)
        try:
            yield Sealed(site, canaries, base, replay, ids)
        finally:
            stop(proc)
    finally:
        site.stop()
        canaries.close()


@pytest.fixture(scope="module")
def browser():
    sync_api, path = chromium()
    with sync_api.sync_playwright() as p:
        # Playwright turns Chromium's popup blocker off by default; a user's browser has it on
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"],
                              ignore_default_args=["--disable-popup-blocking"])
        try:
            yield b
        finally:
            b.close()


class Watch:
    """A browser context whose every request and every page opened is recorded."""

    def __init__(self, browser, s: Sealed):
        self.s = s
        self.context = browser.new_context()
        self.requests: list[str] = []
        self.pages: list = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.context.on("page", lambda p: self.pages.append(p))
        self.page = self.context.new_page()

    def outside(self) -> list[str]:
        ours = (self.s.base + "/", self.s.replay + "/", "data:", "about:")
        return [u for u in self.requests if not u.startswith(ours)]

    def close(self) -> None:
        self.context.close()


def test_webrtc_from_a_replayed_page_reaches_no_stun_or_turn_server(sealed: Sealed, browser):
    # control: the same page, live, does reach both canaries in this browser
    w = Watch(browser, sealed)
    try:
        w.page.goto(f"{sealed.site.base}/webrtc.html", wait_until="domcontentloaded")
        assert sealed.canaries.wait_for_any(5), "the page does not use WebRTC in this browser: the test proves nothing"
        deadline = time.monotonic() + 5
        while not any(s.startswith("tcp") for s in sealed.canaries.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(s.startswith("tcp") for s in sealed.canaries.seen), sealed.canaries.seen
    finally:
        w.close()
    time.sleep(1)  # late packets of the live visit
    sealed.canaries.seen.clear()
    sealed.site.hits.clear()

    w = Watch(browser, sealed)
    try:
        cid = sealed.ids["/webrtc.html"]
        w.page.goto(f"{sealed.base}/replay/{cid}")
        frame = w.page.frame_locator("iframe.replay")
        assert "WebRTC" in frame.locator("h1").inner_text()
        assert "nested frame" in frame.frame_locator("iframe[src*='webrtc-child']").locator("h1").inner_text()
        # the replay origin's copy opened directly, and the robots.txt script on its own
        w.page.goto(f"{sealed.replay}/replay/{cid}")
        w.page.goto(f"{sealed.replay}/replay/{sealed.ids['/webrtc-child.html']}")
        w.page.goto(f"{sealed.base}/raw/{cid}")
        seen = sealed.canaries.wait_for_any(3)
        assert seen == [], f"a replayed page sent WebRTC traffic: {seen}"
        assert w.page.title() != "robots.txt ran"
        assert w.outside() == [] and sealed.site.hits == []
    finally:
        w.close()


def test_no_click_or_automatic_navigation_leaves_the_archive(sealed: Sealed, browser):
    sealed.site.hits.clear()
    w = Watch(browser, sealed)
    try:
        w.page.goto(f"{sealed.base}/replay/{sealed.ids['/links.html']}")
        frame = w.page.frame_locator("iframe.replay")
        assert "Links" in frame.locator("h1").inner_text()
        for target in ("#blank", "#named", "#top", "#relative", "#ping", "#js", "#svg text", "#smil text",
                       "img[usemap]", "#submit"):
            w.page.goto(f"{sealed.base}/replay/{sealed.ids['/links.html']}")
            w.page.frame_locator("iframe.replay").locator(target).click(timeout=5000, no_wait_after=True,
                                                                        position={"x": 5, "y": 5})
            time.sleep(0.2)
        for path in ("/refresh-semicolon.html", "/refresh-comma.html", "/refresh-fraction.html",
                     "/refresh-bare.html", "/location.html", "/top-location.html"):
            w.page.goto(f"{sealed.base}/replay/{sealed.ids[path]}")
            w.page.frame_locator("iframe.replay").locator("h1").wait_for(timeout=5000)
        time.sleep(1)
        assert len(w.pages) == 1, f"a popup opened: {[p.url for p in w.pages[1:]]}"
        assert w.outside() == [], f"requests left the archive: {w.outside()}"
        assert sealed.site.hits == [], f"the live outlet was reached: {sealed.site.hits}"
        assert w.page.url.startswith(sealed.base + "/replay/")
    finally:
        w.close()


def test_archived_pages_opened_top_level_stay_inert(sealed: Sealed, browser):
    """A replay-origin URL opened directly is sent to the UI's frame around it; the UI's raw
    view is plain text. Neither follows a refresh, a `location` or a `top.location`."""
    sealed.site.hits.clear()
    w = Watch(browser, sealed)
    landed = []
    try:
        for path in ("/refresh-semicolon.html", "/refresh-comma.html", "/refresh-fraction.html",
                     "/refresh-bare.html", "/location.html", "/top-location.html", "/links.html"):
            cid = sealed.ids[path]
            w.page.goto(f"{sealed.base}/raw/{cid}")
            time.sleep(0.2)
            landed.append((f"/raw/{cid}", w.page.url, w.page.inner_text("body")[:200]))
            w.page.goto(f"{sealed.replay}/replay/{cid}")
            time.sleep(0.2)
            landed.append((f"replay origin /replay/{cid}", w.page.url, ""))
            ts = "2025"  # any time: the nearest capture answers
            w.page.goto(f"{sealed.replay}/web/{ts}/{sealed.site.base}{path}")
            time.sleep(0.2)
            landed.append((f"replay origin /web/{ts}/…{path}", w.page.url, ""))
        time.sleep(1)  # past the refresh delays
        assert sealed.site.hits == [], f"the live outlet was reached: {sealed.site.hits}"
        assert w.outside() == [], f"requests left the archive: {w.outside()}"
        for what, url, text in landed:
            if what.startswith("/raw/"):
                assert url == sealed.base + what and ("<meta" in text or "<script>" in text), (what, url, text)
            else:  # framed by the UI, in the sandbox
                assert url.startswith(sealed.base + "/"), (what, url)
        assert len(w.pages) == 1
    finally:
        w.close()


def test_archived_bytes_are_never_served_from_the_ui_origin(sealed: Sealed, browser):
    """A robots.txt captured as application/javascript is a script of the replay origin,
    where no script runs; on the UI's origin it exists only as plain text, which no page can
    run, even one that asks for it (here a script injected into a UI page)."""
    robots = sealed.ids["/robots.txt"]
    status, headers, body = get(f"{sealed.replay}/replay/{robots}")
    assert status == 200 and headers["content-type"] == "application/javascript" and "robots.txt ran" in body
    status, headers, body = get(f"{sealed.base}/raw/{robots}")
    assert headers["content-type"] == "text/plain; charset=utf-8" and headers["x-content-type-options"] == "nosniff"
    ts = "2025"
    status, headers, body = get(f"{sealed.base}/web/{ts}/{sealed.site.base}/robots.txt")
    assert headers["content-type"].startswith("text/html") and "robots.txt ran" not in body
    w = Watch(browser, sealed)
    try:
        w.page.goto(f"{sealed.base}/")
        for src in (f"/raw/{robots}", f"/web/{ts}/{sealed.site.base}/robots.txt", f"/replay/{robots}"):
            w.page.evaluate("""src => new Promise(done => { const s = document.createElement('script');
                s.src = src; s.onload = s.onerror = () => done(); document.head.appendChild(s); })""", src)
        assert w.page.title() == "archiver", "archived bytes ran as a script of the UI's origin"
    finally:
        w.close()


def test_every_url_a_replayed_page_names_is_in_the_archive(sealed: Sealed):
    """What the rewriting leaves (the first of the walls): links, SVG links, refresh targets
    in every spelling, srcdoc documents; no target attributes, no scripts, no handlers."""
    refreshes = {"/refresh-semicolon.html": "r1", "/refresh-comma.html": "r2", "/refresh-fraction.html": "r3",
                 "/refresh-bare.html": "r4"}
    seen_refresh = []

    def check(markup: str, where: str) -> None:
        doc = lxml.html.document_fromstring(markup)
        assert not list(doc.iter("script", "base", "set")), where
        for el in doc.iter():
            if not isinstance(el.tag, str):
                continue
            for k, v in el.attrib.items():
                assert k not in ("target", "formtarget", "ping") and not k.startswith("on"), (where, el.tag, k)
                if k in ("href", "xlink:href", "src", "action", "formaction"):
                    assert v.startswith(("/web/", "#", "data:image/", "about:blank")), (where, el.tag, k, v)
                if k == "srcdoc":
                    check(v, where + " srcdoc")
            if el.tag == "meta" and (el.get("http-equiv") or "").lower() == "refresh":
                seen_refresh.append((where, el.get("content")))

    for path in ("/links.html", "/webrtc.html", "/webrtc-child.html", *refreshes):
        status, _, body = get(f"{sealed.replay}/replay/{sealed.ids[path]}")
        assert status == 200 and "</h1>" in body, path
        check(body, path)
    assert [p for p, _ in seen_refresh] == list(refreshes), seen_refresh
    for path, content in seen_refresh:
        assert re.fullmatch(rf"0; url=/web/\d{{14}}/{re.escape(sealed.site.base)}/hit/{refreshes[path]}", content), content
