"""Capture modes browser and auto in real passes: Debian's Chromium renders the pages, every
request it makes goes through the pass's fetcher, against real servers on 127.0.0.1.

What a user sees: an article that only JavaScript writes is found and archived with the
JSON it was written from, its rendered DOM and a screenshot as resource records; lazy images
are in the WARC; a script reaching for a host it may not reach gets nothing; auto renders
only the page that needs it and says why; a browser that dies costs one page.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from archiver.browser import process_tree
from archiver.browser_capture import BrowserCapture
from archiver.config import load_config
from archiver.crawl import PassResult, run_pass
from archiver.errors import ConfigError
from archiver.fetch import Fetcher, FetchResult
from archiver.index import Index
from archiver.settings import BrowserCaptureSettings, FetchSettings, RequisiteSettings

from .archive_checks import rows_point_at_records
from .test_recover import all_records_ok
from .conftest import run_cli
from .localoutlet import outlet_config
from .rawserver import Handler, RawServer, raw
from .test_item_failures import _feed, _ok
from .test_requisites import png


def browser_path() -> str:
    """Debian's chromium; these tests skip without one, and fail under CI (.ci/run)."""
    path = os.environ.get("ARCHIVER_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        if os.environ.get("ARCHIVER_REQUIRE_BROWSER") or os.environ.get("CI") == "true":
            pytest.fail(f"no browser at {path}")
        pytest.skip(f"no browser at {path} (apt-get install chromium)")
    return path


NO_ROBOTS = raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
PNG = png((0, 90, 200))


def page(body: str, script: str = "", head: str = "") -> bytes:
    return _ok(f"<!DOCTYPE html><html><head><meta charset=utf-8><title>News</title>{head}</head><body>{body}"
               f"{f'<script>{script}</script>' if script else ''}</body></html>".encode(), "text/html; charset=utf-8")


def js_article(api: str) -> bytes:
    """A page whose article the script writes from a JSON document: the HTML has none."""
    script = (f"fetch('{api}').then(r => r.json()).then(d => {{"
              " document.getElementById('story').innerHTML = d.paragraphs.map(p => '<p>' + p + '</p>').join(''); });")
    return page("<div id=root></div><article id=story></article>", script)


def story_json(words: str) -> bytes:
    paragraphs = [f"{words} Paragraph {i} of the story, told at some length so that it reads as an article."
                  for i in range(6)]
    return _ok(json.dumps({"paragraphs": paragraphs}).encode(), "application/json")


def config(tmp_path: Path, feed: str, mode: str, capture: str = "", fetch: str = "") -> Path:
    return outlet_config(tmp_path / "c.yaml", tmp_path / "root", [feed], fetch=fetch,
                         extra=f"capture: {{mode: {mode}, browser: {{executable: {browser_path()}{capture}}}}}\n")


def records(root: Path) -> list[dict[str, Any]]:
    """Every record of the closed WARCs, read back by warcio."""
    out = []
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                h = rec.rec_headers
                out.append({"type": rec.rec_type, "uri": h.get_header("WARC-Target-URI"),
                            "id": h.get_header("WARC-Record-ID"), "to": h.get_header("WARC-Concurrent-To"),
                            "refers": h.get_header("WARC-Refers-To"), "ctype": h.get_header("Content-Type"),
                            "body": rec.content_stream().read()})
    return out


def fields(body: bytes) -> list[tuple[str, str]]:
    return [tuple(line.split(": ", 1)) for line in body.decode().splitlines() if ": " in line]  # type: ignore[misc]


def paths(server: RawServer) -> list[str]:
    return [h.split(b" ", 2)[1].decode() for h in server.requests]


def test_an_article_written_by_script_is_found_archived_with_its_json_dom_and_screenshot(tmp_path: Path):
    routes: dict[str, Handler] = {"/robots.txt": NO_ROBOTS,
                                  "/api/story.json": raw(story_json("Vietnam and its neighbours met in Hanoi.")),
                                  "/api/weather.json": raw(story_json("The weather was mild all week.")),
                                  "/story": raw(js_article("/api/story.json")),
                                  "/weather": raw(js_article("/api/weather.json"))}
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/story"), srv.url("/weather")]), "application/rss+xml"))
        cfg = config(tmp_path, srv.url("/feed.xml"), "browser")
        result = asyncio.run(run_pass(load_config(cfg)))
        asked = paths(srv)
    stats = result.outlets[0]
    assert (stats.archived, stats.failed) == (1, 0), stats
    assert asked.count("/story") == 1  # the browser got the page from the pass's own fetch
    assert asked.count("/api/weather.json") == 1  # the off-topic page was rendered too...
    root = tmp_path / "root"
    recs = records(root)
    story, json_url = srv.url("/story"), srv.url("/api/story.json")
    # ...and keeps nothing
    assert not [r for r in recs if r["uri"] and "weather" in r["uri"]]
    response = next(r for r in recs if r["type"] == "response" and r["uri"] == story)
    assert b"Vietnam" not in response["body"]  # the server's bytes: no article in them
    json_rec = next(r for r in recs if r["type"] == "response" and r["uri"] == json_url)
    assert b"Vietnam and its neighbours met in Hanoi." in json_rec["body"]
    dom = next(r for r in recs if r["type"] == "resource" and r["uri"] == f"urn:dom:{story}")
    assert dom["ctype"] == "text/html; charset=utf-8" and dom["to"] == response["id"]
    assert b"<p>Vietnam and its neighbours met in Hanoi. Paragraph 0" in dom["body"]
    shot = next(r for r in recs if r["type"] == "resource" and r["uri"] == f"urn:screenshot:{story}")
    assert shot["ctype"] == "image/png" and shot["to"] == response["id"]
    assert shot["body"][:8] == b"\x89PNG\r\n\x1a\n"
    provenance = [dict(fields(r["body"])) for r in recs if r["type"] == "metadata" and r["refers"] == response["id"]]
    meta = next(m for m in provenance if "capture-mode" in m)
    assert meta["capture-mode"] == "browser" and meta["capture-reason"] == "capture mode browser"
    assert meta["matched"] == "Vietnam in body"
    assert meta["dom-record-id"] == dom["id"] and meta["screenshot-record-id"] == shot["id"]
    listing = [v for r in recs if r["type"] == "metadata" and r["refers"] == response["id"]
               for k, v in fields(r["body"]) if k == "requisite"]
    assert any(v.startswith(json_url + " <urn:uuid:") for v in listing), listing  # the JSON, listed as a requisite
    with Index.open(root, readonly=True) as idx:
        row = next(r for r in idx.captures(kind="article", state="archived"))
        reqs = [r for r in idx.captures(kind="requisite") if r.discovered_via_record_id == response["id"]]
    assert json_url in [r.final_url for r in reqs]
    # the texts come from the rendered page
    assert "Vietnam and its neighbours met in Hanoi." in (root / row.text_path).read_text()
    assert all_records_ok(root) and rows_point_at_records(root)

    # dump derives the text from the urn:dom: record, and verify checks it came from there
    out = tmp_path / "dump"
    done = run_cli("dump", "--config", str(cfg), "--out", str(out), "--kind", "article")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["files"][0]
    assert entry["dom"]["uri"] == f"urn:dom:{story}" and entry["dom"]["warc_record_id"] == dom["id"]
    assert (out / entry["file"]).read_text() == (root / row.text_path).read_text()
    checked = run_cli("verify", str(out), "--config", str(cfg))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # a manifest pointing the page at another record (its screenshot) is caught
    with Index.open(root, readonly=True) as idx:
        shot_row = next(r for r in idx.captures(kind="screenshot"))
    entry["dom"]["warc_offset"] = shot_row.warc_offset
    entry["dom"]["warc_length"] = shot_row.warc_length
    (out / "manifest.json").write_text(json.dumps(manifest))
    checked = run_cli("verify", str(out), "--config", str(cfg))
    assert checked.returncode == 1 and "is not the urn:dom: record of" in checked.stdout, checked.stdout


def test_a_lazy_image_loaded_on_scroll_is_in_the_warc(tmp_path: Path):
    observer = ("new IntersectionObserver(entries => { for (const e of entries) if (e.isIntersecting) {"
                " const i = new Image(); i.src = e.target.dataset.src; e.target.appendChild(i); } })"
                ".observe(document.getElementById('later'));")
    text = "".join(f"<p>Vietnam paragraph {i}, long enough to read as part of an article body.</p>" for i in range(8))
    routes: dict[str, Handler] = {"/robots.txt": NO_ROBOTS, "/img/observed.png": raw(_ok(PNG, "image/png")),
                                  "/img/lazy.png": raw(_ok(PNG, "image/png")),
                                  "/story": raw(page(f"<article>{text}<div style='height:6000px'></div>"
                                                     "<img loading=lazy src=/img/lazy.png width=8 height=8 alt=''>"
                                                     "<div id=later data-src=/img/observed.png style='height:20px'>"
                                                     "</div></article>", observer))}
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/story")]), "application/rss+xml"))
        # no screenshot: a full-page capture lays the whole page out and would start the loads itself
        result = asyncio.run(run_pass(load_config(config(tmp_path, srv.url("/feed.xml"), "browser",
                                                         ", screenshot: false"))))
    assert result.outlets[0].archived == 1
    got = {r["uri"] for r in records(tmp_path / "root") if r["type"] == "response"}
    assert srv.url("/img/observed.png") in got and srv.url("/img/lazy.png") in got


def chunked_gzip(body: bytes, content_type: str) -> bytes:
    """A response as a server may send a stylesheet: gzip, in two chunks."""
    data = gzip.compress(body)
    half = len(data) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:half], data[half:]))
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Encoding: gzip\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


def test_a_second_page_gets_the_stylesheet_and_image_it_shares_with_the_first_from_the_archive(tmp_path: Path):
    # the page's script shows that the browser got both: the stylesheet's rule applies, the image decodes
    script = ("window.addEventListener('load', () => { const pic = document.getElementById('pic');"
              " document.getElementById('story').insertAdjacentHTML('beforeend', '<p>probe '"
              " + getComputedStyle(document.getElementById('probe')).width + ', image ' + pic.naturalWidth + '</p>'); });")
    text = "".join(f"<p>Vietnam paragraph {i}, long enough to read as part of an article body.</p>" for i in range(6))

    def story(name: str) -> Handler:
        return raw(page(f"<article id=story><h1>{name}</h1>{text}<div id=probe></div>"
                        "<img id=pic src=/img/photo.png alt=''></article>", script,
                        "<link rel=stylesheet href=/site.css><link rel=icon href='data:,'>"))

    routes: dict[str, Handler] = {"/robots.txt": NO_ROBOTS, "/first": story("First"), "/second": story("Second"),
                                  "/site.css": raw(chunked_gzip(b"#probe { width: 123px; height: 4px }", "text/css")),
                                  "/img/photo.png": raw(_ok(png((200, 30, 30), 16), "image/png"))}
    with RawServer(routes) as srv:
        feed = srv.url("/feed.xml")
        cfg = config(tmp_path, feed, "browser", ", screenshot: false")
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/first")]), "application/rss+xml"))
        first = asyncio.run(run_pass(load_config(cfg))).outlets[0]
        # the next pass finds a second page naming the same stylesheet and image
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/first"), srv.url("/second")]), "application/rss+xml"))
        second = asyncio.run(run_pass(load_config(cfg))).outlets[0]
        asked = paths(srv)
    assert (first.archived, first.requisites, second.archived) == (1, 2, 1), (first, second)
    assert asked.count("/site.css") == 1 and asked.count("/img/photo.png") == 1, asked
    assert second.requisites == 0 and second.requisites_reused == 2
    recs = records(tmp_path / "root")
    ids = {r["uri"]: r["id"] for r in recs if r["type"] == "response"}
    css, photo = srv.url("/site.css"), srv.url("/img/photo.png")
    dom = next(r for r in recs if r["type"] == "resource" and r["uri"] == f"urn:dom:{srv.url('/second')}")
    assert b"<p>probe 123px, image 16</p>" in dom["body"]
    listing = [v for r in recs if r["type"] == "metadata" and r["refers"] == ids[srv.url("/second")]
               for k, v in fields(r["body"]) if k == "requisite"]
    # listed with the records the first page's fetches made, as requisites mode lists what it reused
    assert {v.split(" (captured ")[0] for v in listing} == {f"{css} {ids[css]}", f"{photo} {ids[photo]}"}, listing
    with Index.open(tmp_path / "root", readonly=True) as idx:
        assert sorted(r.final_url for r in idx.captures(kind="requisite")) == sorted([css, photo])  # the first's rows
    assert all_records_ok(tmp_path / "root") and rows_point_at_records(tmp_path / "root")


class TcpCanary:
    """A listener standing in for a host the page may not reach: counts connections."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
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


def test_a_script_reaching_a_host_outside_the_scope_gets_nothing_and_is_listed(tmp_path: Path, caplog):
    canary = TcpCanary("127.0.0.2")
    other = f"http://127.0.0.2:{canary.port}"
    script = (f"fetch('{other}/steal').catch(() => {{}}); new Image().src = '{other}/pixel.gif';"
              "fetch('/api/story.json').then(r => r.json()).then(d => {"
              " document.getElementById('story').innerHTML = d.paragraphs.map(p => '<p>' + p + '</p>').join(''); });")
    routes: dict[str, Handler] = {"/robots.txt": NO_ROBOTS, "/api/story.json": raw(story_json("Vietnam talks."))}
    try:
        with RawServer(routes) as srv:
            routes["/story"] = raw(page("<article id=story></article>", script))
            routes["/feed.xml"] = raw(_ok(_feed([srv.url("/story")]), "application/rss+xml"))
            cfg = config(tmp_path, srv.url("/feed.xml"), "browser", ", screenshot: false")
            cfg.write_text(cfg.read_text().replace("capture: {", "capture: {requisites: {scope: same-site}, "))
            with caplog.at_level(logging.INFO, logger="archiver"):
                result = asyncio.run(run_pass(load_config(cfg)))
            time.sleep(0.2)  # a late connection would still be counted
    finally:
        canary.close()
    assert result.outlets[0].archived == 1
    assert canary.connections == 0
    recs = records(tmp_path / "root")
    assert not [r for r in recs if r["uri"] and r["uri"].startswith(other)]
    listing = [v for r in recs if r["type"] == "metadata" for k, v in fields(r["body"]) if k == "requisite-refused"]
    assert f"{other}/steal (another-site: capture.requisites.scope is same-site)" in listing
    assert f"{other}/pixel.gif (another-site: capture.requisites.scope is same-site)" in listing
    assert any(f"{other}/steal" in m for m in caplog.messages)


def test_a_script_reaching_a_private_address_is_refused_by_the_address_policy(caplog):
    """The pass's fetcher refuses loopback and private addresses unless allowed; the page's
    scripts get nothing from them, and the refusal is logged (the page itself is handed in,
    as a pass would have fetched it from a public address)."""
    canary = TcpCanary()
    script = f"fetch('http://127.0.0.1:{canary.port}/steal').then(() => document.title = 'reached', () => {{}});"
    routes: dict[str, Handler] = {"/story": raw(page("<p>A story.</p>", script))}

    async def go() -> tuple[Any, list[FetchResult]]:
        allowed = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0))
        policy = Fetcher(FetchSettings(per_host_delay=0))  # the default: private networks refused
        browsers = BrowserCapture(BrowserCaptureSettings(executable=browser_path(), screenshot=False))
        fetched: list[FetchResult] = []
        try:
            main = (await allowed.fetch(srv.url("/story"))).final
            assert main is not None
            return await browsers.render(policy, main, RequisiteSettings(), fetched), fetched
        finally:
            for r in fetched:
                r.close()
            await browsers.aclose()
            await allowed.aclose()
            await policy.aclose()

    try:
        with RawServer(routes) as srv, caplog.at_level(logging.WARNING, logger="archiver"):
            rendering, fetched = asyncio.run(go())
            time.sleep(0.2)
    finally:
        canary.close()
    steal = f"http://127.0.0.1:{canary.port}/steal"
    assert canary.connections == 0
    assert b"<title>reached</title>" not in rendering.dom
    assert any(b.startswith(f"{steal} (private-address: ") for b in rendering.blocked), rendering.blocked
    # the browser asks for /favicon.ico of a page without an icon: refused as well
    assert [r.url for r in fetched if not r.url.endswith("/favicon.ico")] == [steal]
    assert all(r.final is None for r in fetched)
    assert any(steal in m and "private-address" in m for m in caplog.messages), caplog.messages


def test_auto_renders_only_the_page_that_needs_it_and_records_why(tmp_path: Path):
    text = "".join(f"<p>Vietnam paragraph {i}: the talks went on, and the officials said a great deal.</p>"
                   for i in range(6))
    routes: dict[str, Handler] = {
        "/robots.txt": NO_ROBOTS,
        "/static.css": raw(_ok(b"p{color:#222}", "text/css")),
        "/api/story.json": raw(story_json("Vietnam and its neighbours met in Hanoi.")),
        "/app": raw(js_article("/api/story.json")),
        "/plain": raw(page(f"<article><h1>Talks</h1>{text}</article>",
                           "document.body.dataset.seen = 'yes';", "<link rel=stylesheet href=/static.css>")),
    }
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/app"), srv.url("/plain")]), "application/rss+xml"))
        result = asyncio.run(run_pass(load_config(config(tmp_path, srv.url("/feed.xml"), "auto"))))
        asked = paths(srv)
    assert result.outlets[0].archived == 2
    assert asked.count("/api/story.json") == 1  # only a browser finds this one
    assert asked.count("/static.css") == 1  # the static page's requisite, fetched as requisites mode does
    recs = records(tmp_path / "root")
    doms = [r["uri"] for r in recs if r["type"] == "resource"]
    assert doms == [f"urn:dom:{srv.url('/app')}", f"urn:screenshot:{srv.url('/app')}"]
    modes = {}
    for r in recs:
        m = dict(fields(r["body"])) if r["type"] == "metadata" else {}
        if "capture-mode" in m:
            modes[r["uri"]] = (m["capture-mode"], m["capture-reason"])
    assert modes[srv.url("/app")] == ("browser", 'a JavaScript app: an empty <div id="root"> for its scripts to '
                                                 "fill, 0 characters of article text in the static HTML")
    assert modes[srv.url("/plain")][0] == "requisites"
    assert modes[srv.url("/plain")][1].startswith("the static HTML holds the article (")


def chromium_of(pid: int) -> int | None:
    """The browser a process started (its child running with the DevTools pipe)."""
    for child in process_tree(pid)[1:]:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"--remote-debugging-pipe" in f.read():
                    return child
        except OSError:
            continue
    return None


def test_a_browser_killed_mid_pass_costs_the_page_it_was_on(tmp_path: Path):
    killed: list[int] = []

    async def slow_image(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pid = chromium_of(os.getpid())
        if pid is not None and not killed:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(2)
        writer.write(_ok(PNG, "image/png"))

    text = "".join(f"<p>Vietnam paragraph {i}, long enough to read as part of an article body.</p>" for i in range(6))
    routes: dict[str, Handler] = {"/robots.txt": NO_ROBOTS, "/slow.png": slow_image}
    for name in ("one", "two", "three"):
        img = "<img src=/slow.png alt=''>" if name == "two" else ""
        routes[f"/{name}"] = raw(page(f"<article><h1>{name}</h1>{text}{img}</article>"))
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url(f"/{n}") for n in ("one", "two", "three")]),
                                      "application/rss+xml"))
        cfg = config(tmp_path, srv.url("/feed.xml"), "browser", ", pages_at_once: 1, screenshot: false",
                     fetch=", concurrency: 1")
        result: PassResult = asyncio.run(asyncio.wait_for(run_pass(load_config(cfg)), 90))
    assert killed
    stats = result.outlets[0]
    assert (stats.archived, stats.failed) == (2, 1), stats
    with Index.open(tmp_path / "root", readonly=True) as idx:
        failed = [r for r in idx.captures(kind="article", state="failed")]
    assert [r.url for r in failed] == [srv.url("/two")]
    assert failed[0].error == "browser: the browser exited while rendering (killed by SIGKILL)"
    assert all_records_ok(tmp_path / "root") and rows_point_at_records(tmp_path / "root")


def test_kill_9_during_browser_capture_leaves_valid_warcs_and_no_browser(tmp_path: Path):
    started = threading.Event()

    async def slow_image(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started.set()
        await asyncio.sleep(10)

    text = "".join(f"<p>Vietnam paragraph {i}, long enough to read as part of an article body.</p>" for i in range(6))
    routes: dict[str, Handler] = {"/robots.txt": NO_ROBOTS, "/slow.png": slow_image,
                                  "/img.png": raw(_ok(PNG, "image/png"))}
    routes["/first"] = raw(page(f"<article><h1>First</h1>{text}<img src=/img.png alt=''></article>"))
    routes["/second"] = raw(page(f"<article><h1>Second</h1>{text}<img src=/slow.png alt=''></article>"))
    # the browser's profile goes here; a short path, since Chromium puts a socket in it
    scratch = Path(tempfile.mkdtemp(prefix="ab-"))
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/first"), srv.url("/second")]), "application/rss+xml"))
        cfg = config(tmp_path, srv.url("/feed.xml"), "browser", ", pages_at_once: 1", fetch=", concurrency: 1")
        exe = Path(sys.executable).with_name("archiver")
        proc = subprocess.Popen([str(exe), "crawl", "--config", str(cfg), "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "TMPDIR": str(scratch)})
        try:
            assert started.wait(60), "the second page's image was never asked for"
            browser = chromium_of(proc.pid)
            assert browser is not None
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        # the browser goes with the process that drove it
        for _ in range(100):
            if not Path(f"/proc/{browser}").exists() or _zombie(browser):
                break
            time.sleep(0.1)
        assert not Path(f"/proc/{browser}").exists() or _zombie(browser), "the browser outlived archiver"
        root = tmp_path / "root"
        assert list((root / "warc").glob("*.open"))  # the kill left a file being written
        routes["/slow.png"] = raw(_ok(PNG, "image/png"))
        # the next run removes the profile the killed one left
        again = subprocess.run([str(exe), "crawl", "--config", str(cfg), "--no-progress"], capture_output=True,
                               text=True, timeout=120, env={**os.environ, "TMPDIR": str(scratch)})
        assert again.returncode == 0, again.stderr
    assert all_records_ok(root) and rows_point_at_records(root)
    with Index.open(root, readonly=True) as idx:
        kept = sorted(r.final_url for r in idx.captures(kind="article", state="archived"))
    assert kept == [srv.url("/first"), srv.url("/second")]
    left = list(scratch.iterdir())
    shutil.rmtree(scratch, ignore_errors=True)
    assert not left, left  # no browser profile left behind


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


def test_browser_modes_without_the_browser_are_a_config_error_naming_the_path(tmp_path: Path):
    feed = "http://127.0.0.1:9/feed.xml"
    cfg = outlet_config(tmp_path / "c.yaml", tmp_path / "root", [feed],
                        extra="capture: {mode: browser, browser: {executable: /nonexistent/chromium}}\n")
    done = run_cli("check-config", str(cfg))
    assert done.returncode == 2
    assert (f"{cfg}:4: capture.browser.executable: capture mode browser renders pages in a browser, and "
            "/nonexistent/chromium is not there or not executable") in done.stdout + done.stderr
    # an outlet asking for auto needs it as much
    outlet_config(cfg, tmp_path / "root", [feed], outlet=", capture_mode: auto",
                  extra="capture: {mode: html, browser: {executable: /nonexistent/chromium}}\n")
    done = run_cli("crawl", "--config", str(cfg))
    assert done.returncode == 2 and "/nonexistent/chromium is not there" in done.stdout + done.stderr
    assert not (tmp_path / "root").exists()  # nothing started
    # bad browser settings are named with their values
    outlet_config(cfg, tmp_path / "root", [feed],
                  extra=f"capture: {{browser: {{executable: {browser_path()}, viewport: 1280x50, page_timeout: 0}}}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert [(p.path, p.message, p.value) for p in e.value.problems] == [
        ("capture.browser.page_timeout", "must be more than 0 seconds", 0),
        ("capture.browser.viewport", "expected WIDTHxHEIGHT in pixels such as 1280x900, each 100 to 16384",
         "1280x50")]


def test_an_idle_browser_is_closed_and_the_next_page_starts_another():
    routes: dict[str, Handler] = {"/a": raw(page("<p>First.</p>")), "/b": raw(page("<p>Second.</p>"))}

    async def go() -> tuple[int | None, bool, bytes]:
        f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, respect_robots=False))
        browsers = BrowserCapture(BrowserCaptureSettings(executable=browser_path(), screenshot=False), idle_close=0.5)
        fetched: list[FetchResult] = []
        try:
            for path in ("/a", "/b"):
                main = (await f.fetch(srv.url(path))).final
                assert main is not None
                if path == "/b":
                    pid = browsers.pool.browser_pid
                    await asyncio.sleep(2)  # idle past idle_close
                    closed = pid is not None and not Path(f"/proc/{pid}").exists()
                rendered = await browsers.render(f, main, RequisiteSettings(), fetched)
            return pid, closed, rendered.dom
        finally:
            for r in fetched:
                r.close()
            await browsers.aclose()
            await f.aclose()

    with RawServer(routes) as srv:
        pid, closed, dom = asyncio.run(go())
    assert pid is not None and closed  # no browser kept running for nothing
    assert b"Second." in dom  # a new one rendered the next page
