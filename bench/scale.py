#!/usr/bin/env python3
"""Throughput of a scaled setup with 1, 2 and 4 workers on this machine.

    python bench/scale.py [--articles 100] [--site /tmp/site-scale] [--workers 1,2,4]

For each worker count: a fresh PostgreSQL database and Redis (tests/services.py, loopback),
the synthetic news web served by nginx (../shared/bench/site), `archiver scheduler --once`
with N `archiver worker`s (extraction in-process: one process per worker), every article
kept (storage.keep_off_topic) so each one costs a full fetch, WARC write and extraction.
Prints article fetches per second, CPU per article of workers, PostgreSQL and Redis, and
the busiest process, as a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
SHARED = Path(os.environ.get("ARCHIVER_SHARED", ROOT.parent / "shared"))
SITE_TOOLS = SHARED / "bench" / "site"
EXE = Path(sys.executable).with_name("archiver")


def cpu_of(pids: list[int]) -> float:
    """utime + stime of running processes, seconds (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
        except (OSError, IndexError):
            pass
    return total


def run(n: int, manifest: dict, pg, redis_url: str, out: Path) -> dict:
    from site_pass import make_config

    db = pg.new_database()
    storage = out / f"workers-{n}"
    text = make_config(manifest, storage, workers=0)
    text = text.replace("storage:\n", "storage:\n  keep_off_topic: true\n", 1)
    text = f"index:\n  url: {db}\nscale:\n  broker: {redis_url}\n  worker_threads: 32\n" + text
    cfg = out / f"scale-{n}.yaml"
    cfg.write_text(text)
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHALL"], capture_output=True, check=True)
    subprocess.run([str(EXE), "migrate", "--config", str(cfg)], check=True, capture_output=True)
    pg_pids = [int(p) for p in subprocess.run(["pgrep", "-f", f"postgres.*{pg.port}|postgres:"], capture_output=True,
                                              text=True).stdout.split()]
    redis_pids = [int(p) for p in subprocess.run(["pgrep", "-f", f"redis-server.*{redis_url.split(':')[2].split('/')[0]}"],
                                                 capture_output=True, text=True).stdout.split()]
    logs = out / f"logs-{n}"
    logs.mkdir(exist_ok=True)
    workers = [subprocess.Popen([str(EXE), "worker", "--config", str(cfg), "--name", f"w{i}"],
                                stderr=open(logs / f"w{i}.log", "w"), stdout=subprocess.DEVNULL) for i in range(n)]
    time.sleep(2)
    pg_cpu0, redis_cpu0 = cpu_of(pg_pids), cpu_of(redis_pids)
    t0 = time.monotonic()
    sched = subprocess.Popen([str(EXE), "scheduler", "--config", str(cfg), "--once"],
                             stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w"))
    worker_cpu = 0.0
    try:
        while sched.poll() is None:
            worker_cpu = max(worker_cpu, cpu_of([w.pid for w in workers]))
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
    finally:
        worker_cpu = max(worker_cpu, cpu_of([w.pid for w in workers]))
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=120)
    pg_cpu, redis_cpu = cpu_of(pg_pids) - pg_cpu0, cpu_of(redis_pids) - redis_cpu0
    from archiver.index import Index

    with Index.open(storage, readonly=True, url=db) as idx:
        states = idx.state_counts("article")
        fetched, archived = sum(states.values()), states.get("archived", 0)
        kept = Counter(r.final_url for r in idx.captures(kind="article", state="archived"))
        dup = sum(1 for n in kept.values() if n > 1)
    return {"workers": n, "seconds": round(elapsed, 1), "article_fetches": fetched, "archived": archived,
            "archived_twice": dup, "pages_per_s": round(fetched / elapsed, 1),
            "worker_cpu_ms_per_page": round(worker_cpu * 1000 / max(1, fetched), 2),
            "postgres_cpu_ms_per_page": round(pg_cpu * 1000 / max(1, fetched), 2),
            "redis_cpu_ms_per_page": round(redis_cpu * 1000 / max(1, fetched), 2),
            "scheduler_exit": sched.returncode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=100, help="articles per outlet (20 outlets)")
    ap.add_argument("--site", default="/tmp/site-scale")
    ap.add_argument("--port", type=int, default=18085)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from tests.services import Postgres, Redis

    site = Path(a.site)
    subprocess.run([sys.executable, str(SITE_TOOLS / "make_site.py"), "--out", str(site), "--articles", str(a.articles),
                    "--outlets", "20", "--port", str(a.port), "--quiet"], check=True)
    manifest = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    out = Path(a.out) if a.out else Path(subprocess.check_output(["mktemp", "-d", "/tmp/archiver-scale-XXXX"],
                                                                   text=True).strip())
    subprocess.run(["bash", str(SITE_TOOLS / "serve.sh"), "start", "--site", str(site), "--ttl", "3600"],
                   check=True, stdout=subprocess.DEVNULL)
    results = []
    try:
        with Postgres() as pg, Redis() as redis:
            for n in [int(x) for x in a.workers.split(",")]:
                results.append(run(n, manifest, pg, redis.url, out))
                print(json.dumps(results[-1]), flush=True)
    finally:
        subprocess.run(["bash", str(SITE_TOOLS / "serve.sh"), "stop", "--site", str(site)], stdout=subprocess.DEVNULL)
    print(f"\n{'workers':>8} {'seconds':>8} {'pages/s':>8} {'worker ms/p':>12} {'pg ms/p':>8} {'redis ms/p':>10} "
          f"{'twice':>6}")
    for r in results:
        print(f"{r['workers']:>8} {r['seconds']:>8} {r['pages_per_s']:>8} {r['worker_cpu_ms_per_page']:>12} "
              f"{r['postgres_cpu_ms_per_page']:>8} {r['redis_cpu_ms_per_page']:>10} {r['archived_twice']:>6}")
    print(json.dumps({"scale": results, "cores": os.cpu_count(),
                      "bench_cpu_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime, 1)}))
    return 0 if all(r["scheduler_exit"] == 0 and r["archived_twice"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
