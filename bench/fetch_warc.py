#!/usr/bin/env python3
"""archiver's fetch + WARC path on a list of URLs, nothing else (no discovery, no extraction).

    python bench/fetch_warc.py --urls FILE --out DIR [-c 32] [--per-host 2] [--limit N]

The crawler's own parts: one Fetcher (per-host clients and gates, robots.txt, redirects hop
by hop, bytes recorded at the socket, digests while they arrive) and one WarcWriter (a gzip
member per record). Prints one JSON line: pages, seconds, pages/s, WARC bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archiver.settings import FetchSettings, WarcSettings  # noqa: E402
from archiver.fetch import Fetcher  # noqa: E402
from archiver.warc import WarcWriter  # noqa: E402


async def run(urls: list[str], out: Path, concurrency: int, per_host: int, level: int, robots: bool) -> dict:
    settings = FetchSettings(concurrency=concurrency, per_host_concurrency=per_host, per_host_delay=0,
                             allow_private_networks=True, timeout=30, user_agent="archiver-bench/1.0",
                             respect_robots=robots)
    fetcher = Fetcher(settings)
    writer = WarcWriter(out, "bench", 1_000_000_000, {"software": "archiver bench"}, compress_level=level)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for u in urls:
        queue.put_nowait(u)
    counts = {"pages": 0, "failed": 0}

    async def worker() -> None:
        while not queue.empty():
            url = queue.get_nowait()
            result = await fetcher.fetch(url)
            try:
                for r in result.robots:
                    writer.write_exchange(r.url, r.started, r.ip, r.request_bytes, r.raw, r.raw_length,
                                          r.block_sha1, r.payload_sha1, r.truncated)
                for hop in result.hops:
                    writer.write_exchange(hop.url, hop.started, hop.ip, hop.request_bytes, hop.raw, hop.raw_length,
                                          hop.block_sha1, hop.payload_sha1, hop.truncated)
                counts["pages" if result.error is None else "failed"] += 1
            finally:
                result.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await fetcher.aclose()
    writer.close()
    wall = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (out / "warc").glob("*.warc.gz"))
    return {**counts, "seconds": round(wall, 3), "pages_per_s": round(counts["pages"] / wall, 1), "warc_bytes": size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--per-host", type=int, default=2)
    ap.add_argument("--level", type=int, default=WarcSettings().compress_level,
                    help="gzip level of the WARC members (default: storage.warc.compress_level's)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--robots", action="store_true",
                    help="honour robots.txt and its Crawl-delay (wget -i does not read robots.txt)")
    a = ap.parse_args()
    urls = [u.strip() for u in a.urls.read_text().splitlines() if u.strip()]
    if a.limit:
        urls = urls[: a.limit]
    print(json.dumps(asyncio.run(run(urls, a.out, a.concurrency, a.per_host, a.level, a.robots))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
