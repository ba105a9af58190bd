#!/usr/bin/env python3
"""Browse UI latency on a large archive: search, capture pages and replay, p50/p95/max.

    python bench/browse.py [--storage /tmp/browse-10k] [--requests 200] [--seed 7]

When the storage root holds no archive yet, it is built first: the synthetic 20-outlet web
of ../shared/bench/site (500 articles each) is served by nginx on loopback and crawled with
the bench topics plus one that every article matches, so all 10,000 articles are archived.
Then `archiver serve` is started on 127.0.0.1 and timed from a client on one keep-alive
connection: the first start (search cache built from the text files), search pages and
/api/search with single words, two words, phrases, topic and outlet filters, date sort and
page 2, capture pages of random captures, and replayed pages. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def build(storage: Path, site: Path, port: int) -> None:
    """Crawl the synthetic web with one extra topic that every article matches, so all 10,000
    articles are archived (the generator makes fewer than half of them about the bench topics)."""
    sys.path.insert(0, str(HERE))
    from site_pass import SITE_TOOLS, make_config

    print(f"building a 10,000-capture archive in {storage} (a few minutes)", flush=True)
    subprocess.run([sys.executable, str(SITE_TOOLS / "make_site.py"), "--out", str(site), "--articles", "500",
                    "--outlets", "20", "--port", str(port), "--quiet"], check=True)
    manifest = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    storage.mkdir(parents=True, exist_ok=True)
    config = make_config(manifest, storage).replace("topics:\n", 'topics:\n  - name: everything\n    any: ["the"]\n', 1)
    (storage / "bench.yaml").write_text(config, encoding="utf-8")
    subprocess.run(["bash", str(SITE_TOOLS / "serve.sh"), "start", "--site", str(site), "--ttl", "3600"],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        exe = Path(sys.executable).with_name("archiver")
        subprocess.run([str(exe), "crawl", "--config", str(storage / "bench.yaml"), "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(["bash", str(SITE_TOOLS / "serve.sh"), "stop", "--site", str(site)], stdout=subprocess.DEVNULL)


def measure(storage: Path, requests: int = 200, seed: int = 7) -> dict:
    """Start `archiver serve` on the archive in `storage` and time requests of each kind;
    {"captures", "outlets", "topics", "start_s", "hits", "times": {kind: [ms, ...]}}."""
    conn = sqlite3.connect(f"file:{storage / 'index.sqlite3'}?mode=ro", uri=True)
    rows = conn.execute("SELECT id, title, outlet, topics FROM captures WHERE kind = 'article' "
                        "AND state = 'archived'").fetchall()
    conn.close()
    rng = random.Random(seed)
    words = sorted({w for _, t, _, _ in rows for w in re.findall(r"[A-Za-z]{5,}", t or "")})
    topics = sorted({t for *_, ts in rows for t in json.loads(ts)})
    outlets = sorted({o for _, _, o, _ in rows})

    def query() -> dict[str, str]:
        kind = rng.randrange(7)
        title = rng.choice(rows)[1] or "news"
        q = {0: rng.choice(words), 1: f"{rng.choice(words)} {rng.choice(words)}",
             2: '"' + " ".join(title.split()[:3]) + '"'}.get(kind, rng.choice(words))
        params = {"q": q}
        if kind == 3:
            params["topic"] = rng.choice(topics)
        if kind == 4:
            params["outlet"] = rng.choice(outlets)
        if kind == 5:
            params["sort"] = "date"
        if kind == 6:
            params["page"] = "2"
        return params

    port = free_port()
    exe = Path(sys.executable).with_name("archiver")
    cache = storage / "search.sqlite3"
    for leftover in (cache, cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")):
        leftover.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.Popen([str(exe), "serve", "--config", str(storage / "bench.yaml"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while True:
            try:
                c.request("GET", "/healthz")
                c.getresponse().read()
                break
            except OSError:
                c.close()
                if proc.poll() is not None or time.monotonic() - t0 > 600:
                    raise RuntimeError("archiver serve did not start")
                time.sleep(0.2)
        start_s = time.monotonic() - t0

        def timed(path: str) -> tuple[float, int, bytes]:
            t = time.perf_counter()
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            return (time.perf_counter() - t) * 1000, r.status, body

        results: dict[str, list[float]] = {}
        found = []
        for name, make in (
            ("home", lambda: "/"),
            ("search (HTML)", lambda: "/search?" + urlencode(query())),
            ("search (JSON API)", lambda: "/api/search?" + urlencode(query())),
            ("capture page", lambda: f"/capture/{rng.choice(rows)[0]}"),
            ("replay (rewritten page)", lambda: f"/raw/{rng.choice(rows)[0]}"),
        ):
            times = []
            for _ in range(requests if name != "home" else 20):
                ms, status, body = timed(make())
                if status != 200:
                    raise RuntimeError(f"{name}: HTTP {status}")
                times.append(ms)
                if name == "search (JSON API)":
                    found.append(json.loads(body)["total"])
            results[name] = times
    finally:
        c.close()
        proc.terminate()
        proc.wait(10)
    return {"captures": len(rows), "outlets": len(outlets), "topics": len(topics), "start_s": start_s,
            "hits": found, "times": results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", default="/tmp/browse-10k")
    ap.add_argument("--requests", type=int, default=200, help="requests per kind")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--site", default="/tmp/site-browse", help="where the synthetic web is generated")
    ap.add_argument("--port", type=int, default=18090, help="port the synthetic outlets listen on")
    a = ap.parse_args()
    storage = Path(a.storage)
    if not (storage / "index.sqlite3").exists():
        build(storage, Path(a.site), a.port)
    r = measure(storage, a.requests, a.seed)
    print(f"archive: {r['captures']} archived article captures, {r['outlets']} outlets, {r['topics']} topics")
    print(f"start with a cold search cache (built from the text files): {r['start_s']:.1f} s")
    print(f"search hits per query: median {statistics.median(r['hits']):.0f}, max {max(r['hits'])}")
    print(f"{'request':<26}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for name, times in r["times"].items():
        print(f"{name:<26}{len(times):>5}{percentile(times, 50):>9.1f}{percentile(times, 95):>9.1f}{max(times):>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
