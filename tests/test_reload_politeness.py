"""A reload (SIGHUP) keeps politeness: the hosts' last request times, Crawl-delays and
back-offs outlive the Fetcher that a changed fetch section replaces."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from .rawserver import RawServer, raw
from .test_daemon import free_port
from .test_item_failures import _feed, _ok, _page

EXE = Path(sys.executable).with_name("archiver")
DELAY = 2.0


def test_a_reload_mid_pass_never_squeezes_two_requests_to_a_host(tmp_path: Path):
    """One candidate at a time (concurrency 1), so requests after the reload go through the
    new Fetcher; robots.txt may be asked again, through the same gate."""
    articles = [f"/story-{i}" for i in range(4)]
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")}
    for path in articles:
        routes[path] = raw(_ok(_page(f"Vietnam story {path}", "Text.")))
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url(p) for p in articles]), "application/rss+xml"))
        cfg = tmp_path / "c.yaml"
        body = f"""\
storage: {{root: {tmp_path / 'root'}}}
fetch: {{allow_private_networks: true, per_host_delay: {DELAY}, timeout: TIMEOUT, concurrency: 1}}
extract: {{workers: 0}}
daemon: {{listen: "127.0.0.1:{free_port()}", jitter: 0}}
topics: [{{name: vietnam, any: [Vietnam]}}]
outlets: [{{name: x, feeds: ["{srv.url('/feed.xml')}"], schedule: {{every: 1h}}}}]
"""
        cfg.write_text(body.replace("TIMEOUT", "10"))
        log = tmp_path / "daemon.log"
        proc = subprocess.Popen([str(EXE), "run", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=open(log, "w"))
        try:
            deadline = time.monotonic() + 60
            while len(srv.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            # a changed fetch section: the daemon builds a new Fetcher mid-pass
            cfg.write_text(body.replace("TIMEOUT", "11"))
            proc.send_signal(signal.SIGHUP)
            def articles_asked() -> int:
                return sum(1 for h in srv.requests if b"/story-" in h.split(b"\r\n", 1)[0])

            while articles_asked() < len(articles) and time.monotonic() < deadline:
                time.sleep(0.05)
            times = list(srv.times)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    text = log.read_text()
    assert "reload" in text.lower(), text[-2000:]
    assert len(times) >= 2 + len(articles), (len(times), text[-2000:])
    gaps = [b - a for a, b in zip(times, times[1:])]
    # measured where the requests arrive; a little slack for the server's own clock reads
    assert min(gaps) >= DELAY - 0.05, gaps
