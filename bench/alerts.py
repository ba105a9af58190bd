#!/usr/bin/env python3
"""Alert latency: from a capture's commit to its webhook delivery, p50/p95/max, under a daemon
that keeps crawling.

    python bench/alerts.py [--seconds 30] [--per-second 10] [--every 2s] [--out /tmp/archiver-alerts]

Serves the sample outlet (archiver.demo.site) on 127.0.0.1 and a webhook receiver beside it,
starts `archiver run` polling the outlet every `--every` (capture mode requisites: every
article brings its stylesheet, image and their revisits), and publishes `--per-second` new
on-topic articles each second for `--seconds`. Each delivery's latency is the receiver's
arrival time minus the event's `queued_at`, which Index.add stamps inside the transaction
that commits the capture (just before the commit, so the figure is an upper bound). Also
checks that each event arrived once (by delivery id) with a valid signature. Prints the
counts, p50/p95/max in seconds and the load average; exit 1 when the p95 is over 5 s, an
event is missing or one arrived twice. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from archiver.demo.site import Article, SampleSite

SECRET = "bench-secret"
P95_TARGET = 5.0


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[float, bytes, str]] = []  # (arrival, body, signature header)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.got.append((time.time(), body, self.headers.get("X-Archiver-Signature", "")))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queued(root: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{root / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--per-second", type=int, default=10)
    ap.add_argument("--every", default="2s", help="the outlet's schedule")
    ap.add_argument("--out", default="/tmp/archiver-alerts")
    a = ap.parse_args()
    out = Path(a.out)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    receiver = Receiver()
    with SampleSite(crawl_delay=0) as site:
        config = out / "config.yaml"
        extra = (f"daemon:\n  listen: 127.0.0.1:{free_port()}\n  jitter: 0\n"
                 f"alerts:\n  - webhook: {receiver.url}\n    secret: ${{BENCH_SECRET}}\n")
        text = site.config_yaml(str(out)).replace("schedule: {every: 15m}", f"schedule: {{every: {a.every}}}")
        config.write_text(text.replace("per_host_delay: 0.05", "per_host_delay: 0")
                          .replace("discover:\n", extra + "discover:\n"))
        exe = Path(sys.executable).with_name("archiver")
        log = open(out / "daemon.log", "w")
        proc = subprocess.Popen([str(exe), "run", "--config", str(config)], env={**os.environ, "BENCH_SECRET": SECRET},
                                stdout=subprocess.DEVNULL, stderr=log)
        published = 0
        try:
            started = time.monotonic()
            while time.monotonic() - started < a.seconds:
                for _ in range(a.per_second):
                    published += 1
                    site.publish(Article(f"/2025/07/{published:05d}/blinken-briefing.html",
                                         f"Blinken briefing number {published}", "Desk", "2025-07-01T08:00:00Z",
                                         (f"Antony Blinken gave briefing number {published} on the region today.",
                                          "Officials took questions on trade and security."), ("blinken",)))
                time.sleep(1.0)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                n = queued(out)
                if n >= published and len(receiver.got) >= n:
                    break
                time.sleep(0.5)
            time.sleep(1.0)  # a repeat would arrive now
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            receiver.server.shutdown()
    events = [json.loads(body) for _, body, _ in receiver.got]
    bad = sum(1 for _, body, sig in receiver.got
              if sig != "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest())
    ids = [e["delivery"] for e in events]
    latencies = [at - datetime.fromisoformat(e["queued_at"].replace("Z", "+00:00")).timestamp()
                 for (at, _, _), e in zip(receiver.got, events)]
    total = queued(out)
    print(f"published {published} articles; outbox {total} deliveries; received {len(events)} "
          f"({len(set(ids))} distinct, {bad} bad signatures); daemon exit {code}")
    if not latencies:
        print("nothing was delivered")
        return 1
    p95 = percentile(latencies, 0.95)
    print(f"commit -> delivery: p50 {statistics.median(latencies):.3f} s, p95 {p95:.3f} s, "
          f"max {max(latencies):.3f} s (target p95 <= {P95_TARGET:g} s)")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} on {os.cpu_count()} cores")
    ok = p95 <= P95_TARGET and len(ids) == len(set(ids)) == total and not bad and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
