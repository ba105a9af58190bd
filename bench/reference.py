#!/usr/bin/env python3
"""The reference pipeline archiver's end-to-end crawl is measured against: fetch, WARC and
extraction as they are usually put together with the usual libraries, on a given URL list.

    python bench/reference.py --urls FILE --out DIR [--concurrency 16] [--per-host 2]

One process: one httpx.AsyncClient (HTTP/1.1, a keep-alive pool), `--concurrency` requests
at once and at most `--per-host` on one host (archiver's defaults for `fetch.concurrency`
and `fetch.per_host_concurrency`), redirects followed by hand so that every hop is archived;
a request and a response record per exchange written with warcio's WARCWriter(gzip=True) to
DIR/reference.warc.gz (the body as received, Content-Encoding kept); every HTML body sent to
a ProcessPoolExecutor of 2 workers that run readability-lxml (`Document.summary()`,
`.title()`) and write the text to DIR/text/N.txt. No robots.txt, discovery or index.

Prints a line for people, then a JSON line: pages, seconds (from the first request to the
last file written; time the process from outside to count start-up), pages/s, CPU seconds of
the main process and of the workers, peak RSS of the main process and of the largest worker.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import os
import re
import resource
import sys
import time
import zlib
from collections import defaultdict, deque
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import lxml.html
from readability import Document
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.I)


def extract(raw: bytes, content_encoding: str, content_type: str, path: str) -> int:
    """Worker side: decode the body as a browser would (header charset, else the page's meta,
    else UTF-8; readability's own guess runs chardet over the whole page), keep the text."""
    if content_encoding == "gzip":
        raw = zlib.decompress(raw, 47)
    elif content_encoding == "deflate":
        raw = zlib.decompress(raw, -15) if raw[:1] != b"\x78" else zlib.decompress(raw)
    m = CHARSET.search(content_type.encode("latin-1")) or CHARSET.search(raw[:2048])
    charset = m.group(1).decode("ascii") if m else "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    doc = Document(raw.decode(charset, "replace"))
    text = lxml.html.fromstring(doc.summary()).text_content().strip()
    Path(path).write_text(doc.title() + "\n\n" + text + "\n", encoding="utf-8")
    return len(text)


def by_host(urls: list[str]) -> deque[str]:
    """The URLs one host after another, so that a free slot seldom waits on a busy host."""
    hosts: dict[str, deque[str]] = defaultdict(deque)
    for u in urls:
        hosts[urlsplit(u).netloc].append(u)
    order: deque[str] = deque()
    while hosts:
        for host in list(hosts):
            order.append(hosts[host].popleft())
            if not hosts[host]:
                del hosts[host]
    return order


def record(writer: WARCWriter, req: httpx.Request, resp: httpx.Response, raw: bytes) -> None:
    target = req.url.raw_path.decode("ascii")
    req_headers = StatusAndHeaders(f"GET {target} HTTP/1.1", [(k.decode("latin-1"), v.decode("latin-1"))
                                   for k, v in req.headers.raw], is_http_request=True)
    resp_headers = StatusAndHeaders(f"{resp.status_code} {resp.reason_phrase}", [
        (k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw], protocol="HTTP/1.1")
    url = str(req.url)
    response = writer.create_warc_record(url, "response", payload=BytesIO(raw), length=len(raw),
                                         http_headers=resp_headers)
    request = writer.create_warc_record(url, "request", payload=BytesIO(b""), length=0, http_headers=req_headers)
    writer.write_request_response_pair(request, response)


async def run(urls: list[str], out: Path, concurrency: int, per_host: int, workers: int) -> dict:
    (out / "text").mkdir(parents=True, exist_ok=True)
    pending = by_host(urls)
    hosts: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))
    counts = {"pages": 0, "html": 0, "errors": 0, "text_chars": 0}
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with open(out / "reference.warc.gz", "wb") as fh, ProcessPoolExecutor(workers) as pool:
        writer = WARCWriter(fh, gzip=True)
        writer.write_record(writer.create_warcinfo_record("reference.warc.gz", {"software": "bench/reference.py"}))
        headers = {"User-Agent": "reference-bench/1.0"}
        async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

            async def fetch(url: str) -> None:
                for _ in range(6):
                    async with hosts[urlsplit(url).netloc]:
                        req = client.build_request("GET", url)
                        resp = await client.send(req, stream=True)
                        try:
                            raw = b"".join([chunk async for chunk in resp.aiter_raw()])
                        finally:
                            await resp.aclose()
                    record(writer, req, resp, raw)
                    if not (resp.is_redirect and "location" in resp.headers):
                        break
                    url = urljoin(url, resp.headers["location"])
                counts["pages"] += 1
                ctype = resp.headers.get("content-type", "")
                if resp.status_code == 200 and "html" in ctype:
                    n = counts["html"] = counts["html"] + 1
                    counts["text_chars"] += await loop.run_in_executor(
                        pool, extract, raw, resp.headers.get("content-encoding", "").lower(), ctype,
                        str(out / "text" / f"{n}.txt"))

            async def worker() -> None:
                while pending:
                    url = pending.popleft()
                    try:
                        await fetch(url)
                    except httpx.HTTPError:
                        counts["errors"] += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {**counts, "seconds": round(wall, 3), "pages_per_s": round(counts["pages"] / wall, 1),
            "main_cpu_s": round(me.ru_utime + me.ru_stime, 2), "worker_cpu_s": round(kids.ru_utime + kids.ru_stime, 2),
            "main_rss_mb": round(me.ru_maxrss / 1024), "worker_rss_mb": round(kids.ru_maxrss / 1024),
            "warc_bytes": (out / "reference.warc.gz").stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=Path, required=True, help="one URL a line")
    ap.add_argument("--out", type=Path, required=True, help="folder for the WARC and the text files")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--per-host", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="extraction processes")
    a = ap.parse_args()
    urls = [u.strip() for u in a.urls.read_text(encoding="utf-8").splitlines() if u.strip()]
    if not urls:
        print(f"{a.urls}: no URLs", file=sys.stderr)
        return 2
    r = asyncio.run(run(urls, a.out, a.concurrency, a.per_host, a.workers))
    print(f"reference: {r['pages']} pages ({r['errors']} failed) in {r['seconds']:.2f} s, "
          f"{r['pages_per_s']:.1f} pages/s; "
          f"CPU {r['main_cpu_s']:.1f} s main + {r['worker_cpu_s']:.1f} s workers; peak RSS {r['main_rss_mb']} MB main, "
          f"{r['worker_rss_mb']} MB largest worker; load average {os.getloadavg()[0]:.2f}")
    print(json.dumps(r))
    return 0 if r["pages"] else 1


if __name__ == "__main__":
    sys.exit(main())
