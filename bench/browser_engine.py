#!/usr/bin/env python3
"""Browser capture throughput and memory: a simple local article page, rendered over and over.

    python bench/browser_engine.py [--pages 60] [--at-once 2] [--no-screenshot]

A threaded HTTP server on 127.0.0.1 serves an article page (gzip) with a stylesheet, an image
and a script that fetches a JSON body and writes a paragraph from it. Each page is fetched
by archiver's Fetcher, then rendered by archiver.browser.BrowserPool with every subresource
fetched through the same Fetcher. Prints pages/s, CPU seconds per page (browser tree and
this process), and the peak memory of the browser's process tree, sampled every 0.1 s: PSS
(what the cap uses) and summed RSS; and the load average, since the machine may be shared.
Exit 1 when a page fails or the script's paragraph is missing. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archiver.browser import BrowserPool, BrowserSettings, Fulfil, process_tree, tree_memory  # noqa: E402
from archiver.settings import FetchSettings  # noqa: E402
from archiver.fetch import Fetcher  # noqa: E402

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
ARTICLE = ("<!doctype html><html><head><meta charset=utf-8><title>Article</title>"
           "<link rel=stylesheet href=/style.css><script src=/app.js defer></script></head><body><article>"
           "<h1>Harbour talks resume</h1>" + "<p>The talks resumed on Tuesday after a week of delays. </p>" * 30
           + "<img src=/pic.png width=200 height=100 alt=''><p id=more></p></article></body></html>").encode()
FILES = {
    "/style.css": (b"body{font-family:serif;max-width:40em;margin:auto}h1{color:#333}", "text/css"),
    "/app.js": (b"fetch('/data.json').then(r => r.json()).then(d => "
                b"{ document.getElementById('more').textContent = d.text; })", "text/javascript"),
    "/data.json": (b'{"text": "Written by the page\'s script."}', "application/json"),
    "/pic.png": (PNG, "image/png"),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/article"):
            body, ctype = ARTICLE, "text/html; charset=utf-8"
        elif path in FILES:
            body, ctype = FILES[path]
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime, with that of reaped children (renderers of closed tabs), of these pids."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


async def run(pages: int, at_once: int, screenshot: bool) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    fetcher = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, per_host_concurrency=8,
                                    concurrency=32))

    async def fetch(url: str, headers: dict[str, str]) -> Fulfil | None:
        result = await fetcher.fetch(url, extra_headers=headers)
        resp = result.final
        if resp is None:
            raise result.error  # type: ignore[misc]
        return Fulfil(resp.status, list(resp.headers.multi_items()), resp.body or b"", result)

    async def one(i: int) -> bool:
        url = f"{base}/article{i}"
        page = (await fetcher.fetch(url)).final
        assert page is not None
        r = await pool.render(url, (page.status, list(page.headers.multi_items()), page.body or b""), fetch)
        return "Written by the page" in r.dom and len(r.exchanges) >= 4

    pool = BrowserPool(BrowserSettings(pages_at_once=at_once, screenshot=screenshot,
                                       restart_after=max(pages * 2, 100)))
    peak = {"pss": 0, "rss": 0}
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            pid = pool.browser_pid
            if pid:
                peak["pss"] = max(peak["pss"], tree_memory(pid))
                peak["rss"] = max(peak["rss"], rss(process_tree(pid)))
            await asyncio.sleep(0.1)

    failures = 0
    try:
        await one(-1)  # the browser's launch is not what is measured
        root = pool.browser_pid
        assert root is not None
        sampler = asyncio.ensure_future(sample())
        cpu0 = cpu_seconds([root]) + sum(os.times()[:2])
        t0 = time.monotonic()
        todo = list(range(pages))

        async def worker() -> None:
            nonlocal failures
            while todo:
                i = todo.pop()
                try:
                    ok = await one(i)
                except Exception as e:
                    print(f"page {i}: {e}")
                    ok = False
                failures += not ok

        await asyncio.gather(*(worker() for _ in range(at_once * 2)))
        elapsed = time.monotonic() - t0
        cpu1 = cpu_seconds(process_tree(root)) + sum(os.times()[:2])
        stop.set()
        await sampler
    finally:
        await pool.aclose()
        await fetcher.aclose()
        server.shutdown()
    print(f"{pages} pages, {at_once} at once, screenshot {'on' if screenshot else 'off'}: "
          f"{pages / elapsed:.2f} pages/s, {(cpu1 - cpu0) / pages * 1000:.0f} ms CPU per page "
          f"(browser + this process)")
    print(f"browser process tree peak: PSS {peak['pss'] / 2**20:.0f} MB, summed RSS {peak['rss'] / 2**20:.0f} MB")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; failures: {failures}")
    return 1 if failures else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=60)
    ap.add_argument("--at-once", type=int, default=2)
    ap.add_argument("--no-screenshot", action="store_true")
    a = ap.parse_args()
    sys.exit(asyncio.run(run(a.pages, a.at_once, not a.no_screenshot)))


if __name__ == "__main__":
    main()
