"""`archiver serve`: search, capture pages, diffs and replay over a real archive, offline.

The archive is crawled from the sample outlet; an article is then revised and refetched so
there are two versions to compare; `archiver serve` runs as a user starts it. The sample
outlet's hit log proves that browsing never reaches the outlet. `start_serve`, `get` and
`chromium` are shared with the other browse tests (test_replay_sealed.py, test_browse_hosts.py,
test_browse_bounds.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import lxml.html
import pytest

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.demo.site import CORRECTION, ON_TOPIC, REVISED_PATH, Article, SampleSite, archive_with_revision
from archiver.index import Index

from .test_daemon import free_port

REVISED = REVISED_PATH
LATER = Article("/2025/06/16/blinken-tokyo.html", "Blinken lands in Tokyo for the final talks of the tour",
                "Aiko Sato", "2025-06-16T08:00:00Z",
                ("Antony Blinken landed in Tokyo on Monday for talks on chip export controls.",), ("blinken",))


@dataclass
class Served:
    site: SampleSite
    root: Path
    config: Path
    base: str  # the browse UI
    replay: str  # the replay origin
    proc: subprocess.Popen


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode("utf-8", "replace")


def start_serve(config: Path, *extra: str, env: dict[str, str] | None = None,
                host: str = "127.0.0.1") -> tuple[subprocess.Popen, str, str]:
    """`archiver serve` on two free ports, as a user starts it; returns it once /healthz answers,
    with the UI's and the replay origin's base URLs."""
    port, replay_port = free_port(), free_port()
    while replay_port == port:
        replay_port = free_port()
    exe = Path(sys.executable).with_name("archiver")
    where = ["--host", host] if host != "127.0.0.1" else []
    proc = subprocess.Popen([str(exe), "serve", "--config", str(config), *where, "--port", str(port),
                             "--replay-port", str(replay_port), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base, replay = f"http://{host}:{port}", f"http://{host}:{replay_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if get(f"{base}/healthz", timeout=2)[0] == 200 and get(f"{replay}/healthz", timeout=2)[0] == 200:
                return proc, base, replay
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"archiver serve did not start: {proc.communicate()[0]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def chromium():
    """(playwright's sync API, the browser path); skips (or fails under .ci/run) without one."""
    sync_api = pytest.importorskip("playwright.sync_api")
    path = os.environ.get("ARCHIVER_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        if os.environ.get("ARCHIVER_REQUIRE_BROWSER"):
            pytest.fail(f"no browser at {path}")
        pytest.skip(f"no browser at {path} (apt-get install chromium)")
    return sync_api, path


def api(s: Served, query: str) -> dict:
    status, _, body = get(f"{s.base}/api/search?{query}")
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    with SampleSite(crawl_delay=0.05, etags=False) as site:
        config = archive_with_revision(site, root)
        proc, base, replay = start_serve(config)
        try:
            yield Served(site, root / "storage", config, base, replay, proc)
        finally:
            stop(proc)


def test_search_api_finds_highlights_filters_and_pages(served: Served):
    hits_before = len(served.site.hits)
    r = api(served, "q=Blinken")
    titles = {h["title"] for h in r["results"]}
    blinken = [a for a in ON_TOPIC if "blinken" in a.topics]
    assert r["total"] == len(blinken) and titles == {a.title for a in blinken}
    first = r["results"][0]
    assert set(first) == {"url", "final_url", "title", "outlet", "topics", "fetched_at", "published_at", "snippet",
                          "capture_id", "versions"}
    assert "blinken" in first["topics"] and first["outlet"] == "harbor-times"
    # accents and case do not matter; quoted phrases are phrases
    assert api(served, "q=vi%C3%8Atnam")["total"] == api(served, "q=vietnam")["total"] > 0
    # the revised story was captured twice: both versions are found, as one hit
    r = api(served, "q=%22South+China+Sea%22")
    assert r["total"] == len([a for a in ON_TOPIC if "south-china-sea" in a.topics])
    assert sorted(len(h["versions"]) for h in r["results"]) == [1] * (r["total"] - 1) + [2]
    assert api(served, "q=%22Sea+China+South%22")["total"] == 0
    # filters
    assert api(served, "q=Blinken&topic=vietnam")["total"] == len([a for a in blinken if "vietnam" in a.topics])
    assert api(served, "q=Blinken&outlet=elsewhere")["total"] == 0
    assert api(served, "q=Blinken&since=2999-01-01")["total"] == 0
    assert api(served, "q=Blinken&until=2000-01-01")["total"] == 0
    assert api(served, "q=Blinken&page=2")["results"] == []
    # operators typed by a user are words, not syntax errors
    assert api(served, "q=Blinken+AND+OR+NEAR%28%22")["total"] == 0
    # the correction made in the second version is searchable
    assert api(served, "q=Mekong")["total"] == 1
    status, _, body = get(f"{served.base}/search?q=Blinken")
    assert status == 200 and "<mark>Blinken</mark>" in body
    assert len(served.site.hits) == hits_before, "browsing reached the outlet"


def test_new_captures_are_searchable_without_a_restart(served: Served):
    assert api(served, "q=Tokyo")["total"] == 0
    served.site.publish(LATER)
    asyncio.run(run_pass(load_config(served.config)))
    r = api(served, "q=Tokyo")
    assert r["total"] == 1 and r["results"][0]["title"] == LATER.title


def test_capture_page_shows_headers_texts_provenance_and_diff(served: Served):
    with Index.open(served.root, readonly=True) as idx:
        rows = [r for r in idx.captures(kind="article") if (r.final_url or "").endswith(REVISED)]
        by_record = {r.warc_record_id: r for r in idx.captures() if r.warc_record_id}
    first, second = sorted((r for r in rows if r.state == "archived"), key=lambda r: r.id)
    status, headers, body = get(f"{served.base}/capture/{second.id}?diff={first.id}")
    assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
    assert "HTTP 200" in body and "Content-Type" in body
    assert "Manila and Washington review joint South China Sea patrols" in body
    assert second.warc_record_id.replace("<", "&lt;").replace(">", "&gt;") in body
    assert second.payload_digest in body and second.warc_file in body
    via = by_record[second.discovered_via_record_id]  # the feed, sitemap or listing that led to it
    assert f'href="/capture/{via.id}"' in body
    assert '<span class="term">South China Sea</span>' in body
    assert f"<ins>+ {CORRECTION}</ins>" in body
    assert "<del>" not in body  # only a paragraph was added
    # from the older capture's page the diff still reads from older to newer
    status, _, body = get(f"{served.base}/capture/{first.id}?diff={second.id}")
    assert status == 200 and f"<ins>+ {CORRECTION}</ins>" in body and "<del>" not in body


def test_replay_rewrites_to_the_archive_and_never_fetches(served: Served):
    with Index.open(served.root, readonly=True) as idx:
        row = next(r for r in idx.captures(kind="article", state="archived") if "jakarta" in (r.final_url or ""))
    hits_before = len(served.site.hits)
    status, headers, body = get(f"{served.replay}/replay/{row.id}")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    csp = headers["content-security-policy"]
    assert csp.endswith("; sandbox") and "script-src 'none'" in csp and "connect-src 'none'" in csp and "*" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    doc = lxml.html.document_fromstring(body)
    urls = [v for el in doc.iter() if isinstance(el.tag, str)
            for k, v in el.attrib.items() if k in ("href", "src", "action", "srcset", "poster")]
    assert urls and all(u.startswith(("/web/", "#")) for u in urls), urls  # every link points into the archive
    assert not list(doc.iter("script"))  # archived scripts are not replayed
    assert "Blinken meets Indonesian counterpart in Jakarta" in body
    ts = "".join(ch for ch in row.fetched_at if ch.isdigit())[:14]
    # an archived link resolves to its capture; an unarchived one is "missing", not fetched
    status, _, body = get(f"{served.replay}/web/{ts}/{served.site.base_url}/2025/06/09/analysis-blinken-hanoi.html")
    assert status == 200 and "Hanoi" in body
    status, headers, body = get(f"{served.replay}/web/{ts}/{served.site.base_url}/img/never-archived.jpg")
    assert status == 404 and "Not in the archive" in body and "sandbox" in headers["content-security-policy"]
    # the UI's origin serves no archived bytes: its /raw view is inert text, its /web and
    # /replay pages are its own, framing the replay origin
    status, headers, body = get(f"{served.base}/raw/{row.id}")
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8" and "<script>" in body
    assert headers["content-security-policy"].startswith("default-src 'none'") and "sandbox" in headers["content-security-policy"]
    status, headers, body = get(f"{served.base}/replay/{row.id}")
    assert status == 200 and f'src="{served.replay}/replay/{row.id}"' in body and 'sandbox=""' in body
    assert f"frame-src {served.replay};" in headers["content-security-policy"]
    assert len(served.site.hits) == hits_before


def test_home_counts_topics_and_outlets(served: Served):
    status, _, body = get(f"{served.base}/")
    assert status == 200
    assert 'href="/search?topic=blinken"' in body and 'href="/search?outlet=harbor-times"' in body
    assert "<svg class=\"chart\"" in body and "<rect" in body


def test_unknown_capture_is_a_404_page(served: Served):
    assert get(f"{served.base}/capture/999999")[0] == 404
    assert get(f"{served.base}/raw/999999")[0] == 404


def test_listens_on_loopback_only_by_default(served: Served):
    port = int(served.base.rsplit(":", 1)[1])
    with socket.socket() as probe:  # bound to 0.0.0.0 it would answer on every address
        assert probe.connect_ex(("127.0.0.2", port)) != 0


def test_text_from_the_request_is_escaped_in_every_page(served: Served):
    hostile = "<script>alert(1)</script>"
    for path in (f"/search?q={urllib.parse.quote(hostile)}",
                 f"/web/2025/http://example.org/{urllib.parse.quote(hostile)}"):
        status, _, body = get(served.base + path)
        assert status in (200, 404), path
        assert hostile not in body and "&lt;script&gt;" in body, path


def test_browser_search_open_capture_diff_and_replay_stay_on_the_archive(served: Served, tmp_path: Path):
    sync_api, browser_path = chromium()
    hits_before = len(served.site.hits)
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.on("request", lambda req: requests.append(req.url))
            page = context.new_page()
            page.goto(f"{served.base}/")
            page.fill("header input[name=q]", "Manila patrols")
            page.click("header button")
            page.wait_for_selector("li.hit")
            assert page.locator("li.hit mark").first.inner_text().lower() in ("manila", "patrols")
            page.click("li.hit a.title >> nth=0")
            page.wait_for_selector("#article")
            assert "Manila and Washington" in page.locator("#title").inner_text()
            assert "Found via" in page.locator("#provenance").inner_text()
            page.click("#versions button >> nth=0")
            page.wait_for_selector("#diff")
            assert CORRECTION in page.locator("#diff").inner_text()
            page.click("#view-archived")
            frame_el = page.wait_for_selector("iframe.replay")
            frame = frame_el.content_frame()
            assert frame is not None
            frame.wait_for_selector("h1")
            assert "Manila and Washington" in frame.locator("h1").inner_text()
            # a script in the replayed page cannot reach the UI around it
            reach = frame.evaluate("() => { try { return parent.document.title; } catch (e) { return 'blocked'; } }")
            assert reach == "blocked"
            page.screenshot(path=str(tmp_path / "replay.png"))
        finally:
            browser.close()
    assert requests, "the browser made no requests"
    outside = [u for u in requests if not u.startswith((served.base + "/", served.replay + "/", "data:"))]
    assert outside == [], f"requests left the archive: {outside}"
    assert any("/web/" in u and u.endswith("/img/photo.jpg") for u in requests)  # asked the archive, not the web
    assert len(served.site.hits) == hits_before


def test_serves_a_copied_archive_from_read_only_storage(crawled, tmp_path: Path):
    """A storage root copied elsewhere and mounted read-only, with no daemon beside it."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(crawled.root, copy, ignore=shutil.ignore_patterns("*.sqlite3-wal", "*.sqlite3-shm"))
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(copy), str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        assert not os.access(ro, os.W_OK)
        config = tmp_path / "config.yaml"
        config.write_text(crawled.config_path.read_text().replace(str(crawled.root), str(ro)))
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        proc, base, _ = start_serve(config, env=env)
        try:
            status, _, body = get(f"{base}/api/search?q=Blinken")
            assert status == 200 and json.loads(body)["total"] == len([a for a in ON_TOPIC if "blinken" in a.topics])
            assert list((tmp_path / "cache" / "archiver").glob("search-*.sqlite3"))  # the cache went elsewhere
        finally:
            stop(proc)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
