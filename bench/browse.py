#!/usr/bin/env python3
"""Browse UI latency on a large archive: every kind of page of both origins, p50/p95/max.

    python bench/browse.py [--storage /tmp/browse-10k] [--requests 200] [--seed 7]

When the storage root holds no archive yet, it is built first: the synthetic 20-outlet web
of ../shared/bench/site (500 articles each) is served by nginx on loopback and crawled with
the bench topics plus one that every article matches, so all 10,000 articles are archived.
Then `archiver serve` is started on 127.0.0.1 (UI port and replay port) and timed from one
keep-alive client per origin, one request at a time:

- UI origin: home; search pages and /api/search, each with single words, two words, a
  quoted phrase, the commonest word (every article matches), eight common words, a pasted
  paragraph (some 60 words of an article), one common word 100 times, topic and outlet
  filters, a date range, newest first, page 2, a late page and filters without words (a
  quarter of --requests each); capture pages, capture pages with ?diff= another capture,
  the replay frame (/replay/ID), /web/<ts>/<url> frames, /raw/ID, an unknown capture,
  /healthz;
- replay origin (as the frame loads it: Sec-Fetch-Dest: iframe): the replayed document
  (/replay/ID), /web/<ts>/<url> of an archived URL at another time, /web/ of the URLs the
  replayed pages name that are not in the archive (images, stylesheets: what a browser asks
  for next), /healthz.

Prints a table per page kind (n, statuses, median size, p50/p95/max ms), the load average
(the machine may be shared) and whether every kind's p95 is under 1 s; exit 1 when one is
not, or a page answered with a status it should not have. Loopback only.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import os
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode

HERE = Path(__file__).resolve().parent
TARGET_MS = 1000.0  # every page kind's p95
# what a browser loading a replayed page asks the replay origin for next
_REPLAY_LINKS = re.compile(r"""(?:src|href)="(/web/[^"]+)\"""")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _as_sent(link: str) -> str:
    """An href as a browser requests it: entities decoded, no fragment, percent-encoded."""
    return quote(html.unescape(link).split("#", 1)[0], safe="/:?&=%;,+@!$'()*~")


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


@dataclass
class Kind:
    """One kind of page: where it is asked for, how its paths are made, which statuses it may answer."""

    name: str
    origin: str  # "ui" | "replay"
    path: Callable[[], str]
    ok: tuple[int, ...] = (200,)
    n: int | None = None  # requests; None: the run's --requests
    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


@dataclass
class Capture:
    id: int
    url: str
    title: str
    outlet: str
    topics: list[str]
    ts: str  # 14 digits
    text_path: str | None


def _captures(storage: Path) -> list[Capture]:
    conn = sqlite3.connect(f"file:{storage / 'index.sqlite3'}?mode=ro", uri=True)
    rows = conn.execute("SELECT id, COALESCE(final_url, url), title, outlet, topics, fetched_at, text_path "
                        "FROM captures WHERE kind = 'article' AND state = 'archived' ORDER BY id").fetchall()
    conn.close()
    return [Capture(i, u, t or "", o, json.loads(ts or "[]"), "".join(ch for ch in f if ch.isdigit())[:14], p)
            for i, u, t, o, ts, f, p in rows]


def _replayable_urls(storage: Path) -> set[str]:
    """Every URL the archive holds a response for, whatever its kind (feeds, sitemaps too)."""
    conn = sqlite3.connect(f"file:{storage / 'index.sqlite3'}?mode=ro", uri=True)
    rows = conn.execute("SELECT url, final_url FROM captures WHERE warc_file IS NOT NULL").fetchall()
    conn.close()
    return {u for row in rows for u in row if u}


def kinds_for(caps: list[Capture], rng: random.Random, requests: int, storage: Path) -> list[Kind]:
    words = sorted({w.lower() for c in caps for w in re.findall(r"[A-Za-z]{5,}", c.title)})
    topics = sorted({t for c in caps for t in c.topics})
    outlets = sorted({c.outlet for c in caps})
    days = sorted({c.ts[:8] for c in caps})
    common = ["the", "and", "that", "with", "from", "said", "this", "have"]
    pick = lambda: rng.choice(caps)  # noqa: E731
    day = lambda d: f"{d[:4]}-{d[4:6]}-{d[6:8]}"  # noqa: E731

    def pasted() -> dict[str, str]:
        """About 60 words of an article's text, whole words, as someone pastes a paragraph."""
        for _ in range(20):
            c = pick()
            text = (storage / c.text_path).read_text(encoding="utf-8").split() if c.text_path else []
            if len(text) > 80:
                break
        i = rng.randrange(max(1, len(text) - 60))
        q = ""
        for w in text[i:i + 60]:
            if len(q) + len(w) + 1 > 500:  # the search terms' limit (search.MAX_QUERY_CHARS)
                break
            q = f"{q} {w}" if q else w
        return {"q": q}

    def week() -> dict[str, str]:
        i = rng.randrange(len(days))
        return {"since": day(days[i]), "until": day(days[min(len(days) - 1, i + 6)])}

    queries: list[tuple[str, Callable[[], dict[str, str]]]] = [
        ("one word", lambda: {"q": rng.choice(words)}),
        ("two words", lambda: {"q": f"{rng.choice(words)} {rng.choice(words)}"}),
        ("phrase", lambda: {"q": '"' + " ".join(pick().title.split()[:3]) + '"'}),
        ("commonest word", lambda: {"q": "the"}),
        ("8 common words", lambda: {"q": " ".join(rng.sample(common, len(common)))}),
        ("pasted paragraph", pasted),
        ("one word 100 times", lambda: {"q": " ".join([rng.choice(common)] * 100)}),
        ("word + topic", lambda: {"q": rng.choice(words), "topic": rng.choice(topics)}),
        ("word + outlet", lambda: {"q": rng.choice(words), "outlet": rng.choice(outlets)}),
        ("word + dates", lambda: {"q": rng.choice(words), **week()}),
        ("word, newest first", lambda: {"q": rng.choice(words), "sort": "date"}),
        ("common word, page 2", lambda: {"q": rng.choice(common), "page": "2"}),
        ("common word, page 400", lambda: {"q": rng.choice(common), "page": "400", "sort": "date"}),
        ("no words, topic", lambda: {"topic": rng.choice(topics)}),
        ("no words, outlet+dates", lambda: {"outlet": rng.choice(outlets), **week()}),
    ]
    per_query = max(10, requests // 4)
    out = [Kind("home", "ui", lambda: "/", n=max(20, requests // 4))]
    for label, make in queries:
        out.append(Kind(f"search: {label}", "ui", lambda make=make: "/search?" + urlencode(make()), n=per_query))
    for label, make in queries:
        out.append(Kind(f"api: {label}", "ui", lambda make=make: "/api/search?" + urlencode(make()), n=per_query))
    out += [
        Kind("capture page", "ui", lambda: f"/capture/{pick().id}"),
        # each URL has one capture here: the diff is against another article, all of it changed
        Kind("capture + ?diff=", "ui", lambda: f"/capture/{pick().id}?diff={pick().id}"),
        Kind("capture, unknown id", "ui", lambda: f"/capture/{10**9 + rng.randrange(1000)}", ok=(404,),
             n=max(10, requests // 10)),
        Kind("replay frame /replay/ID", "ui", lambda: f"/replay/{pick().id}"),
        Kind("/web/ frame", "ui", lambda: (lambda c: f"/web/{c.ts}/{c.url}")(pick())),
        Kind("/raw/ID (text/plain)", "ui", lambda: f"/raw/{pick().id}"),
        Kind("/healthz", "ui", lambda: "/healthz", n=max(10, requests // 4)),
        Kind("replayed document", "replay", lambda: f"/replay/{pick().id}"),
        # another time than the capture's: the nearest capture is looked up
        Kind("/web/ archived URL", "replay", lambda: f"/web/{rng.choice(days)}/{pick().url}"),
    ]
    return out


def measure(storage: Path, requests: int = 200, seed: int = 7) -> dict:
    """Start `archiver serve` on the archive in `storage` and time requests of each kind;
    {"captures", "outlets", "topics", "start_s", "hits", "times": {kind: [ms, ...]},
    "statuses": {kind: {status: n}}, "sizes": {kind: median bytes}, "unexpected": [...]}."""
    load_before = os.getloadavg()[0]
    caps = _captures(storage)
    rng = random.Random(seed)
    kinds = kinds_for(caps, rng, requests, storage)

    port, replay_port = free_ports(2)
    exe = Path(sys.executable).with_name("archiver")
    cache = storage / "search.sqlite3"
    for leftover in (cache, cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")):
        leftover.unlink(missing_ok=True)
    t0 = time.monotonic()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(exe), "serve", "--config", str(storage / "bench.yaml"), "--port", str(port),
                             "--replay-port", str(replay_port)], stdout=log, stderr=subprocess.STDOUT)

    def server_died() -> RuntimeError:
        log.seek(0)
        said = log.read().decode("utf-8", "replace")[-2000:]
        return RuntimeError(f"archiver serve stopped answering (exit status {proc.poll()}): {said}")
    conns = {"ui": http.client.HTTPConnection("127.0.0.1", port, timeout=30),
             "replay": http.client.HTTPConnection("127.0.0.1", replay_port, timeout=30)}
    # the replay origin answers a top-level navigation with a redirect to the UI; the frame's
    # own requests say they are for a frame, as a browser's do
    extra = {"ui": {}, "replay": {"Sec-Fetch-Dest": "iframe"}}

    def timed(origin: str, path: str) -> tuple[float, int, bytes]:
        c = conns[origin]
        t = time.perf_counter()
        c.request("GET", path, headers=extra[origin])
        r = c.getresponse()
        body = r.read()
        return (time.perf_counter() - t) * 1000, r.status, body

    try:
        while True:
            try:
                timed("ui", "/healthz")
                break
            except OSError:
                conns["ui"].close()
                if proc.poll() is not None or time.monotonic() - t0 > 600:
                    raise server_died()
                time.sleep(0.2)
        start_s = time.monotonic() - t0

        hits: list[int] = []
        missing: list[str] = []  # URLs replayed pages name that the archive does not hold

        def run(kind: Kind) -> None:
            for _ in range(kind.n or requests):
                path = kind.path()
                try:
                    ms, status, body = timed(kind.origin, path)
                except OSError as e:
                    raise server_died() from e
                kind.times.append(ms)
                kind.sizes.append(len(body))
                kind.statuses[status] += 1
                if kind.name.startswith("api: ") and status == 200:
                    hits.append(json.loads(body)["total"])
                if kind.name == "replayed document" and status == 200:
                    missing.extend(_as_sent(link) for link in _REPLAY_LINKS.findall(body.decode("utf-8", "replace")))

        for kind in kinds:
            run(kind)
        # the replay frame's next requests: what the replayed pages link to (images,
        # stylesheets, other articles); those not archived answer "not in the archive"
        archived = _replayable_urls(storage)
        absent = sorted({p for p in missing if p.split("/", 3)[3] not in archived})
        more = [Kind("/web/ not archived", "replay", lambda: rng.choice(absent), ok=(404,))] if absent else []
        more.append(Kind("replay /healthz", "replay", lambda: "/healthz", n=max(10, requests // 4)))
        for kind in more:
            run(kind)
        kinds += more
    finally:
        for c in conns.values():
            c.close()
        proc.terminate()
        proc.wait(10)
        log.close()
    unexpected = [f"{k.name}: HTTP {s} x{n}" for k in kinds for s, n in sorted(k.statuses.items()) if s not in k.ok]
    return {"captures": len(caps), "outlets": len({c.outlet for c in caps}),
            "topics": len({t for c in caps for t in c.topics}), "start_s": start_s, "hits": hits,
            "times": {k.name: k.times for k in kinds},
            "statuses": {k.name: dict(k.statuses) for k in kinds},
            "sizes": {k.name: statistics.median(k.sizes) for k in kinds}, "unexpected": unexpected,
            "load": (load_before, os.getloadavg()[0])}


# the README's figures pool every query kind of a page: (figure, page kinds whose names start so)
POOLED = (("search page", ("search: ",)), ("/api/search", ("api: ",)), ("capture page", ("capture page",)))


def pooled(times: dict[str, list[float]]) -> dict[str, list[float]]:
    """The times of each POOLED figure, and "slowest kind" (the times of the page kind with the
    highest p95)."""
    out = {name: [t for kind, ts in times.items() if kind.startswith(prefixes) for t in ts]
           for name, prefixes in POOLED}
    out["slowest kind"] = max(times.values(), key=lambda ts: percentile(ts, 95))
    return out


def slowest(times: dict[str, list[float]]) -> str:
    return max(times, key=lambda kind: percentile(times[kind], 95))


def report(r: dict) -> list[str]:
    """Print the table; the page kinds whose p95 is at or over TARGET_MS."""
    print(f"archive: {r['captures']} archived article captures, {r['outlets']} outlets, {r['topics']} topics")
    print(f"start with a cold search cache (built from the text files): {r['start_s']:.1f} s; "
          f"load average {r['load'][0]:.1f} before, {r['load'][1]:.1f} after ({os.cpu_count()} cores)")
    if r["hits"]:
        print(f"search hits per /api/search query: median {statistics.median(r['hits']):.0f}, max {max(r['hits'])}")
    print(f"{'page kind':<30}{'n':>5}  {'statuses':<12}{'KB':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    slow = []
    for name, times in r["times"].items():
        statuses = " ".join(f"{s}" if len(r["statuses"][name]) == 1 else f"{s}x{n}"
                            for s, n in sorted(r["statuses"][name].items()))
        p95 = percentile(times, 95)
        if p95 >= TARGET_MS:
            slow.append(name)
        print(f"{name:<30}{len(times):>5}  {statuses:<12}{r['sizes'][name] / 1024:>7.1f}"
              f"{percentile(times, 50):>9.1f}{p95:>9.1f}{max(times):>9.1f}")
    return slow


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", default="/tmp/browse-10k")
    ap.add_argument("--requests", type=int, default=200, help="requests per kind (a quarter for each search kind)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--site", default="/tmp/site-browse", help="where the synthetic web is generated")
    ap.add_argument("--port", type=int, default=18090, help="port the synthetic outlets listen on")
    ap.add_argument("--json", help="also write the raw times here")
    a = ap.parse_args()
    storage = Path(a.storage)
    if not (storage / "index.sqlite3").exists():
        build(storage, Path(a.site), a.port)
    r = measure(storage, a.requests, a.seed)
    if a.json:
        Path(a.json).write_text(json.dumps(r), encoding="utf-8")
    slow = report(r)
    every = max(percentile(t, 95) for t in r["times"].values())
    print(f"every page kind p95 < {TARGET_MS:.0f} ms: {'yes' if not slow else 'NO: ' + ', '.join(slow)}"
          f" (slowest p95 {every:.1f} ms)")
    for line in r["unexpected"]:
        print(f"unexpected status: {line}")
    return 1 if slow or r["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
