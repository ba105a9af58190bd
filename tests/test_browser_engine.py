"""Browser capture (archiver.browser): Debian's Chromium renders pages whose every request
goes through archiver's Fetcher, against real servers on 127.0.0.1.

Each test renders real pages in a real browser; the fetch function wraps archiver.fetch.Fetcher,
so the bytes the browser gets are the bytes a server sent, decoded by the fetcher.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from archiver.browser import BrowserPool, BrowserSettings, Fulfil, Rendered
from archiver.settings import FetchSettings
from archiver.errors import BrowserError
from archiver.fetch import FetchResult, Fetcher
from tests.rawserver import Handler, RawServer, silence

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def browser_path() -> str:
    """Debian's chromium; skips (or fails under .ci/run) without one, as tests/test_browse.py does."""
    path = os.environ.get("ARCHIVER_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        if os.environ.get("ARCHIVER_REQUIRE_BROWSER"):
            pytest.fail(f"no browser at {path}")
        pytest.skip(f"no browser at {path} (apt-get install chromium)")
    return path


def settings(**kw: Any) -> BrowserSettings:
    return BrowserSettings(executable=browser_path(), **kw)


def response(body: bytes, ctype: str = "text/html; charset=utf-8", headers: tuple[str, ...] = (),
             gzipped: bool = False, status: str = "200 OK") -> bytes:
    if gzipped:
        body = gzip.compress(body)
        headers = (*headers, "Content-Encoding: gzip")
    head = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
            "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def serve(data: bytes, delay: float = 0) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if delay:
            await asyncio.sleep(delay)
        writer.write(data)
        await writer.drain()
    return handler


def html(body: str, head: str = "") -> bytes:
    return response(f"<!DOCTYPE html><html><head><meta charset=utf-8>{head}</head><body>{body}</body></html>"
                    .encode())


FetchFn = Callable[[str, dict[str, str]], Awaitable[Fulfil | None]]


def fetch_function(fetcher: Fetcher, *netlocs: str) -> FetchFn:
    """The caller's recording fetcher: refuses every host but the page's (as the address
    policy or robots.txt would), fetches the rest with archiver's Fetcher."""
    async def fetch(url: str, headers: dict[str, str]) -> Fulfil | None:
        if urlsplit(url).netloc not in netlocs:
            return None
        result = await fetcher.fetch(url, extra_headers=headers)
        resp = result.final
        if resp is None:
            raise result.error  # type: ignore[misc]
        return Fulfil(resp.status, list(resp.headers.multi_items()), resp.body or b"", result)
    return fetch


def fetcher() -> Fetcher:
    return Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, per_host_concurrency=4))


async def render(pool: BrowserPool, f: Fetcher, url: str, *more_netlocs: str) -> Rendered:
    """What a pass does: fetch the page itself, then have it rendered from that response."""
    page = (await f.fetch(url)).final
    assert page is not None and page.body is not None
    return await pool.render(url, (page.status, list(page.headers.multi_items()), page.body),
                             fetch_function(f, urlsplit(url).netloc, *more_netlocs))


def urls(r: Rendered) -> list[str]:
    # the browser asks for /favicon.ico of a page without an icon once per tab and host
    return [e.url for e in r.exchanges if not e.url.endswith("/favicon.ico")]


def requested(server: RawServer, path: str) -> int:
    return sum(1 for head in server.requests if head.split(b" ", 2)[1] == path.encode())


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------- what is captured

def test_article_written_by_script_is_in_the_dom_and_its_json_came_through_the_fetcher():
    story = b'{"text": "Harbour talks resumed on Tuesday after a week of delays."}'
    script = ("fetch('/api/story.json').then(r => r.json()).then(d => {"
              " document.getElementById('story').innerHTML = '<p>' + d.text + '</p>'; });")
    with RawServer({
        "/article": serve(html("<article id=story>Loading</article>", f"<script>{script}</script>")),
        "/api/story.json": serve(response(story, "application/json", gzipped=True)),
    }) as server:
        async def go() -> Rendered:
            f = fetcher()
            pool = BrowserPool(settings())
            try:
                return await render(pool, f, server.url("/article"))
            finally:
                await pool.aclose()
                await f.aclose()
        r = asyncio.run(go())
    assert "<p>Harbour talks resumed on Tuesday after a week of delays.</p>" in r.dom
    assert r.dom.startswith("<!DOCTYPE html>\n<html>")
    assert server.url("/api/story.json") in urls(r)
    json_exchange: FetchResult = r.exchanges[urls(r).index(server.url("/api/story.json"))]
    # the record keeps the server's bytes (gzip and all); the page got the decoded JSON
    resp = json_exchange.final
    assert resp is not None and resp.headers["content-encoding"] == "gzip"
    resp.raw.seek(resp.head_length)
    assert gzip.decompress(resp.raw.read()) == story
    # the page itself came from the response handed in, not from a second request
    assert requested(server, "/article") == 1
    assert r.blocked == []


def test_a_workers_and_a_cross_site_frames_requests_go_through_the_fetch_function():
    worker = b"fetch('/counts.json').then(r => r.json()).then(d => postMessage(d.text));"
    with RawServer({
        "/w.js": serve(response(worker, "text/javascript")),
        "/counts.json": serve(response(b'{"text": "Counted by a worker."}', "application/json")),
        "/frame": serve(html("<p>embedded</p><img src=/frame.png alt=''>")),
        "/frame.png": serve(response(PNG, "image/png")),
    }) as server:
        # localhost and 127.0.0.1 are different sites: the frame gets a renderer of its own
        frame = f"http://localhost:{server.port}/frame"
        server.routes["/page"] = serve(html(
            f"<p id=count>not counted</p><iframe src='{frame}'></iframe>",
            "<script>const w = new Worker('/w.js');"
            " w.onmessage = e => { document.getElementById('count').textContent = e.data; };</script>"))

        async def go() -> Rendered:
            f = fetcher()
            pool = BrowserPool(settings(screenshot=False))
            try:
                return await render(pool, f, server.url("/page"), f"localhost:{server.port}")
            finally:
                await pool.aclose()
                await f.aclose()
        r = asyncio.run(go())
    assert '<p id="count">Counted by a worker.</p>' in r.dom
    got = urls(r)
    frame_png, script, counts = f"http://localhost:{server.port}/frame.png", server.url("/w.js"), server.url("/counts.json")
    assert sorted(got) == sorted([frame, frame_png, script, counts])
    # in the order the browser asked
    assert got.index(frame) < got.index(frame_png) and got.index(script) < got.index(counts)
    assert r.blocked == []


def test_a_cross_origin_call_with_a_preflight_gets_its_data_and_the_server_no_options_request():
    script = ("fetch(API, {headers: {'X-Client': 'archiver-test'}}).then(r => r.json()).then(d => {"
              " document.getElementById('score').textContent = d.score; });")
    with RawServer({
        "/api/score.json": serve(response(b'{"score": "3-1"}', "application/json",
                                          headers=("Access-Control-Allow-Origin: *",))),
    }) as server:
        api = f"http://localhost:{server.port}/api/score.json"  # another origin than the page's
        server.routes["/match"] = serve(html("<p id=score>unknown</p>",
                                             f"<script>const API = '{api}'; {script}</script>"))

        async def go() -> Rendered:
            f = fetcher()
            pool = BrowserPool(settings(screenshot=False))
            try:
                return await render(pool, f, server.url("/match"), f"localhost:{server.port}")
            finally:
                await pool.aclose()
                await f.aclose()
        r = asyncio.run(go())
        methods = [head.split(b" ", 1)[0] for head in server.requests]
    assert '<p id="score">3-1</p>' in r.dom
    assert urls(r) == [api]
    assert b"OPTIONS" not in methods
    # the page's own header went to the server with the GET
    assert any(b"/api/score.json" in head and b"x-client: archiver-test" in head.lower() for head in server.requests)


async def render_without_screenshot(url: str, scroll: bool) -> Rendered:
    # no screenshot: a full-page capture lays out the whole page in view and would start the
    # lazy loads itself
    f = fetcher()
    pool = BrowserPool(settings(scroll=scroll, screenshot=False))
    try:
        return await render(pool, f, url)
    finally:
        await pool.aclose()
        await f.aclose()


def test_lazy_images_are_fetched_only_after_scrolling():
    observer = ("new IntersectionObserver(entries => { for (const e of entries) if (e.isIntersecting) {"
                " const i = new Image(); i.src = e.target.dataset.src; e.target.appendChild(i); } })"
                ".observe(document.getElementById('later'));")
    page = html("<div style='height:7000px'>The top of a long article.</div>"
                "<img loading=lazy src=/lazy.png width=20 height=20 alt=''>"
                f"<div id=later data-src=/observed.png style='height:20px'></div><script>{observer}</script>")
    with RawServer({
        "/long": serve(page),
        "/lazy.png": serve(response(PNG, "image/png")),
        "/observed.png": serve(response(PNG, "image/png")),
    }) as server:
        unscrolled = asyncio.run(render_without_screenshot(server.url("/long"), scroll=False))
        assert requested(server, "/lazy.png") == 0 and requested(server, "/observed.png") == 0
        scrolled = asyncio.run(render_without_screenshot(server.url("/long"), scroll=True))
    assert server.url("/lazy.png") not in urls(unscrolled)
    assert server.url("/lazy.png") in urls(scrolled)
    assert server.url("/observed.png") in urls(scrolled)
    assert requested(server, "/lazy.png") == 1 and requested(server, "/observed.png") == 1


def test_lazy_loaders_that_watch_scroll_events_and_lists_that_grow_are_loaded_within_bounds():
    # an older kind of lazy loader: on a scroll event (throttled, as they are), swap in the
    # src of images whose box is within the viewport; and an endless list that appends a
    # screenful whenever its end is in view, each time with one more image
    script = """
      let waiting = false, added = 0;
      function check() {
        waiting = false;
        for (const img of document.querySelectorAll('img[data-src]'))
          if (img.getBoundingClientRect().top < window.innerHeight) { img.src = img.dataset.src; img.removeAttribute('data-src'); }
        const end = document.getElementById('end');
        if (end.getBoundingClientRect().top < window.innerHeight) {
          added++;
          const more = document.createElement('div');
          more.innerHTML = "<div style='height:3000px'>more</div><img src=/more" + added + ".png width=5 height=5 alt=''>";
          end.before(more);
        }
      }
      window.addEventListener('scroll', () => { if (!waiting) { waiting = true; setTimeout(check, 150); } });
    """
    page = html("<div style='height:5000px'>The top of a long article.</div>"
                "<img data-src=/handled.png width=20 height=20 alt=''><div id=end></div>"
                f"<script>{script}</script>")
    routes = {"/long": serve(page), "/handled.png": serve(response(PNG, "image/png"))}
    routes.update({f"/more{i}.png": serve(response(PNG, "image/png")) for i in range(1, 20)})
    with RawServer(routes) as server:
        unscrolled = asyncio.run(render_without_screenshot(server.url("/long"), scroll=False))
        scrolled = asyncio.run(render_without_screenshot(server.url("/long"), scroll=True))
    assert server.url("/handled.png") not in urls(unscrolled)
    assert server.url("/handled.png") in urls(scrolled)
    grown = [u for u in urls(scrolled) if "/more" in u]
    # the list grew while it was in view, and stopped growing: the capture was bounded
    assert server.url("/more1.png") in grown and 1 <= len(grown) < 19
    assert "more" in scrolled.dom


def test_screenshot_is_a_png_of_the_full_page_height_and_the_viewport_width():
    # a ticker running off to the side does not widen the shot (it made 15,000 px wide ones)
    with RawServer({"/tall": serve(html("<div style='width:9000px;white-space:nowrap'>ticker</div>"
                                        "<div style='height:2980px;background:#369'>tall</div>",
                                        "<style>body{margin:0} div{height:20px}</style>"))}) as server:
        async def go(**kw: Any) -> Rendered:
            f = fetcher()
            pool = BrowserPool(settings(viewport=(1280, 900), **kw))
            try:
                return await render(pool, f, server.url("/tall"))
            finally:
                await pool.aclose()
                await f.aclose()
        r = asyncio.run(go())
        # a page taller than screenshot_max_height: its top, that tall
        cut = asyncio.run(go(screenshot_max_height=1200))
    assert r.screenshot is not None and cut.screenshot is not None
    assert png_size(r.screenshot) == (1280, 3000)
    assert png_size(cut.screenshot) == (1280, 1200)
    assert "tall" in cut.dom  # the DOM is the whole page all the same


# ---------------------------------------------------------------------- what does not get out

class TcpCanary:
    """A listener standing in for another host: counts the connections it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


class UdpCanary:
    """A UDP port standing in for a STUN server: counts the datagrams it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.packets = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.packets += 1

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def test_nothing_but_the_fetch_function_reaches_the_network():
    tcp, udp = TcpCanary(), UdpCanary()
    other = f"http://127.0.0.1:{tcp.port}"
    script = f"""
      fetch('{other}/steal').catch(() => {{}});
      new Image().src = '{other}/pixel.gif';
      try {{ const ws = new WebSocket('ws://127.0.0.1:{tcp.port}/live'); ws.onerror = () => {{}}; }} catch (e) {{}}
      navigator.sendBeacon('/beacon', 'seen');
      fetch('/form', {{method: 'POST', body: 'a=1'}}).catch(() => {{}});
      const pc = new RTCPeerConnection({{iceServers: [{{urls: 'stun:127.0.0.1:{udp.port}'}}]}});
      pc.createDataChannel('d');
      pc.onicegatheringstatechange = () => {{
        if (pc.iceGatheringState === 'complete') document.getElementById('ice').textContent = 'gathered';
      }};
      pc.createOffer().then(o => pc.setLocalDescription(o));
    """
    # /slow keeps the page open for a second, long enough for ICE gathering and the socket
    page = html("<p id=ice>not gathered</p><img src=/slow.png alt=''>", f"<script>{script}</script>")
    with RawServer({"/page": serve(page), "/slow.png": serve(response(PNG, "image/png"), delay=1.0)}) as server:
        async def go() -> Rendered:
            f = fetcher()
            pool = BrowserPool(settings(screenshot=False))
            try:
                return await render(pool, f, server.url("/page"))
            finally:
                await pool.aclose()
                await f.aclose()
        try:
            r = asyncio.run(go())
            time.sleep(0.3)  # a late packet or connection would still be counted
        finally:
            tcp.close()
            udp.close()
        methods = [head.split(b" ", 1)[0] for head in server.requests]
    assert f"{other}/steal (refused by the fetcher)" in r.blocked
    assert f"{other}/pixel.gif (refused by the fetcher)" in r.blocked
    assert f"ws://127.0.0.1:{tcp.port}/live (websocket)" in r.blocked
    assert f"{server.url('/beacon')} (method POST)" in r.blocked
    assert f"{server.url('/form')} (method POST)" in r.blocked
    assert "gathered" in r.dom  # the peer connection did run its ICE gathering
    assert tcp.connections == 0
    assert udp.packets == 0
    assert set(methods) == {b"GET"}
    assert server.url("/slow.png") in urls(r)


# ---------------------------------------------------------------------- bounded costs

def test_a_hanging_page_costs_a_page_timeout_and_the_next_page_renders():
    with RawServer({
        "/spin": serve(html("<p>spinning</p><script>for (;;) {}</script>")),
        "/stuck": serve(html("<p>waiting</p><img src=/ok.png alt=''><img src=/never.png alt=''>")),
        "/ok.png": serve(response(PNG, "image/png")),
        "/never.png": silence(seconds=30),
        "/fine": serve(html("<p>A page that renders.</p>")),
    }) as server:
        async def go() -> tuple[list[BrowserError], Rendered, float]:
            f = fetcher()
            pool = BrowserPool(settings(page_timeout=3, settle_timeout=1, screenshot=False))
            errors = []
            t0 = time.monotonic()
            try:
                for path in ("/spin", "/stuck"):
                    with pytest.raises(BrowserError) as e:
                        await render(pool, f, server.url(path))
                    errors.append(e.value)
                spent = time.monotonic() - t0
                return errors, await render(pool, f, server.url("/fine")), spent
            finally:
                await pool.aclose()
                await f.aclose()
        errors, fine, spent = asyncio.run(go())
    assert "not rendered within page_timeout (3s) while loading the page" in str(errors[0])
    assert str(errors[0]).startswith(server.url("/spin"))
    assert "page_timeout (3s)" in str(errors[1]) and "waiting for the last requests" in str(errors[1])
    # what was fetched before the timeout is handed back with the error, for the record
    assert server.url("/ok.png") in [e.url for e in errors[1].exchanges]
    assert spent < 20  # two timeouts, not the 30 s the stuck server would take
    assert "A page that renders." in fine.dom


def test_a_killed_browser_costs_the_page_it_was_on_and_the_next_page_gets_a_new_browser():
    with RawServer({
        "/slow": serve(html("<p>slow</p><img src=/slow.png alt=''>")),
        "/slow.png": serve(response(PNG, "image/png"), delay=5),
        "/fine": serve(html("<p>After the crash.</p>")),
    }) as server:
        async def go() -> tuple[BrowserError, Rendered, int, int | None]:
            f = fetcher()
            pool = BrowserPool(settings(screenshot=False))
            try:
                task = asyncio.ensure_future(render(pool, f, server.url("/slow")))
                for _ in range(500):  # until the browser asked for the image
                    if requested(server, "/slow.png"):
                        break
                    await asyncio.sleep(0.02)
                pid = pool.browser_pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                with pytest.raises(BrowserError) as e:
                    await task
                after = await render(pool, f, server.url("/fine"))
                return e.value, after, pid, pool.browser_pid
            finally:
                await pool.aclose()
                await f.aclose()
        error, after, killed, new = asyncio.run(go())
    assert str(error) == f"{server.url('/slow')}: the browser exited while rendering (killed by SIGKILL)"
    assert "After the crash." in after.dom
    assert new is not None and new != killed


def test_the_browser_is_restarted_after_restart_after_pages():
    with RawServer({f"/p{i}": serve(html(f"<p>page {i}</p>")) for i in range(3)}) as server:
        async def go() -> tuple[list[int | None], list[str]]:
            f = fetcher()
            pool = BrowserPool(settings(restart_after=2, screenshot=False))
            pids, doms = [], []
            try:
                for i in range(3):
                    doms.append((await render(pool, f, server.url(f"/p{i}"))).dom)
                    pids.append(pool.browser_pid)
                return pids, doms
            finally:
                await pool.aclose()
                await f.aclose()
        pids, doms = asyncio.run(go())
    assert pids[0] == pids[1] != pids[2]
    assert all(f"page {i}" in d for i, d in enumerate(doms))
    with pytest.raises(ProcessLookupError):  # the first browser is gone, not left running
        os.kill(pids[0], 0)  # type: ignore[arg-type]


def test_a_browser_past_its_memory_cap_is_restarted_for_the_next_page():
    with RawServer({"/a": serve(html("<p>a</p>")), "/b": serve(html("<p>b</p>"))}) as server:
        async def go() -> list[int | None]:
            f = fetcher()
            # any browser uses more than 1 MB
            pool = BrowserPool(settings(max_browser_mb=1, screenshot=False))
            try:
                pids = []
                for path in ("/a", "/b"):
                    await render(pool, f, server.url(path))
                    pids.append(pool.browser_pid)
                return pids
            finally:
                await pool.aclose()
                await f.aclose()
        pids = asyncio.run(go())
    assert pids[0] != pids[1]


def test_a_browser_past_its_memory_cap_while_a_page_renders_gets_no_new_page():
    # the first page renders for seconds (its image is slow); the second asks for a place
    # meanwhile: the browser, past its cap already, finishes the first and the second page
    # gets a new browser
    with RawServer({
        "/slow": serve(html("<p>slow</p><img src=/slow.png alt=''>")),
        "/slow.png": serve(response(PNG, "image/png"), delay=4),
        "/quick": serve(html("<p>quick</p>")),
    }) as server:
        async def go() -> tuple[Rendered, Rendered, int | None, int | None, bool]:
            f = fetcher()
            pool = BrowserPool(settings(max_browser_mb=1, memory_every=0.2, screenshot=False))
            try:
                slow = asyncio.ensure_future(render(pool, f, server.url("/slow")))
                for _ in range(500):  # until the browser asked for the image
                    if requested(server, "/slow.png"):
                        break
                    await asyncio.sleep(0.02)
                first = pool.browser_pid
                await asyncio.sleep(1.0)  # memory sampled while the page renders
                quick = await render(pool, f, server.url("/quick"))
                return await slow, quick, first, pool.browser_pid, slow.done()
            finally:
                await pool.aclose()
                await f.aclose()
        slow, quick, first, second, slow_done = asyncio.run(go())
    assert "<p>slow</p>" in slow.dom and server.url("/slow.png") in urls(slow)
    assert "<p>quick</p>" in quick.dom
    assert first is not None and second is not None and second != first
    assert slow_done  # the first page finished in its browser before that one was closed


# ---------------------------------------------------------------------- pages do not mix

def test_each_page_starts_clean_and_lists_everything_it_needs():
    # each page shows what it finds, then leaves cookies, storage and history behind it
    script = ("document.getElementById('state').textContent = JSON.stringify([document.cookie,"
              " localStorage.length, sessionStorage.length, history.length]);"
              " document.cookie = 'seen=1'; localStorage.setItem('seen', '1'); sessionStorage.setItem('seen', '1');"
              " fetch('/mark');")
    page = html(f"<p id=state></p><script>{script}</script>", "<link rel=stylesheet href=/site.css>")
    with RawServer({
        "/first": serve(page),
        "/second": serve(page),
        "/mark": serve(response(b"{}", "application/json", headers=("Set-Cookie: visit=1; Path=/",))),
        "/site.css": serve(response(b"p { color: #333 }", "text/css", headers=("Cache-Control: max-age=3600",))),
    }) as server:
        async def go() -> tuple[Rendered, Rendered]:
            f = fetcher()
            # one page at a time: the second page is rendered in the tab the first one used
            pool = BrowserPool(settings(pages_at_once=1, screenshot=False))
            try:
                return await render(pool, f, server.url("/first")), await render(pool, f, server.url("/second"))
            finally:
                await pool.aclose()
                await f.aclose()
        first, second = asyncio.run(go())

    def state(r: Rendered) -> str:
        return r.dom.split('<p id="state">', 1)[1].split("</p>", 1)[0]
    assert state(first).startswith('["",0,0,')
    assert server.url("/mark") in urls(first)  # its Set-Cookie reached the browser
    assert state(second) == state(first)
    # the stylesheet the first page loaded (cacheable) is asked for again: the second page's
    # list has it too
    assert server.url("/site.css") in urls(first) and server.url("/site.css") in urls(second)
    assert requested(server, "/site.css") == 2


def test_two_pages_at_once_keep_their_requests_apart():
    routes: dict[str, Handler] = {}
    for name in ("left", "right"):
        routes[f"/{name}"] = serve(html(f"<p>{name}</p><img src=/{name}.png alt=''>",
                                        f"<script src=/{name}.js></script>"))
        routes[f"/{name}.png"] = serve(response(PNG, "image/png"), delay=0.3)
        routes[f"/{name}.js"] = serve(response(f"document.title = '{name}';".encode(), "text/javascript"))
    with RawServer(routes) as server:
        async def go() -> list[Rendered]:
            f = fetcher()
            pool = BrowserPool(settings(pages_at_once=2, screenshot=False))
            try:
                return list(await asyncio.gather(render(pool, f, server.url("/left")),
                                                 render(pool, f, server.url("/right"))))
            finally:
                await pool.aclose()
                await f.aclose()
        left, right = asyncio.run(go())
    assert urls(left) == [server.url("/left.js"), server.url("/left.png")]
    assert urls(right) == [server.url("/right.js"), server.url("/right.png")]
    assert "<title>left</title>" in left.dom and "<title>right</title>" in right.dom


# ---------------------------------------------------------------------- bad input

def test_bad_settings_and_a_missing_browser_are_named():
    with pytest.raises(BrowserError, match=r"browser settings: pages_at_once must be between 1 and 64 \(got 0\)"):
        BrowserSettings(pages_at_once=0)
    with pytest.raises(BrowserError, match=r"viewport .* \(got \(1280, 5\)\)"):
        BrowserSettings(viewport=(1280, 5))

    async def go() -> None:
        pool = BrowserPool(BrowserSettings(executable="/nonexistent/chromium"))
        try:
            await pool.render("http://127.0.0.1:9/", (200, [], b"<p>x</p>"), fetch_function(fetcher(), "x"))
        finally:
            await pool.aclose()
    with pytest.raises(BrowserError, match=r"^http://127\.0\.0\.1:9/: browser executable /nonexistent/chromium "
                                           r"is not there or not executable"):
        asyncio.run(go())
