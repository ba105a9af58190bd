#!/usr/bin/env python3
"""Run the daemon against the synthetic news web for a while and check politeness and memory.

    python bench/daemon_soak.py [--minutes 10] [--latency 100] [--every 1m] [--delay 0.5] [--site /tmp/site]

Serves ../shared/bench/site with nginx (added latency through the echo module), adds an access
log with millisecond times and the server address, runs `archiver run` polling all 20 outlets
every minute, samples the daemon's RSS every 5 s, stops it with SIGTERM, then reads the access
log: for each outlet host, the smallest gap between two requests, against the delay it must
hold (max of per_host_delay and robots.txt Crawl-delay). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from site_pass import SITE_TOOLS, make_config  # noqa: E402

# $msec is taken when the response is done; minus $request_time it is when the request came in
LOG_FORMAT = "log_format archiver_ts '$msec $request_time $server_addr \"$request\" $status';"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--latency", default="100")
    ap.add_argument("--every", default="1m")
    ap.add_argument("--delay", type=float, default=0.5, help="per_host_delay in the config")
    ap.add_argument("--site", default="/tmp/site")
    ap.add_argument("--articles", type=int, default=500, help="articles per outlet (fewer: the backfill ends "
                                                                  "early and the rest is steady polling)")
    ap.add_argument("--out", default="/tmp/archiver-soak")
    a = ap.parse_args()
    site = Path(a.site)
    sh = ["bash", str(SITE_TOOLS / "serve.sh")]
    subprocess.run([sys.executable, str(SITE_TOOLS / "make_site.py"), "--out", str(site), "--articles",
                    str(a.articles), "--quiet"], check=True)
    manifest = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    out = Path(a.out)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    text = make_config(manifest, out).replace("per_host_delay: 0.0", f"per_host_delay: {a.delay}")
    text = text.replace("    sitemaps: [auto]", f"    sitemaps: [auto]\n    schedule: {{every: {a.every}}}")
    text = text.replace("discover:\n", "daemon:\n  listen: 127.0.0.1:18771\n  shutdown_grace: 20\ndiscover:\n")
    config = out / "soak.yaml"
    config.write_text(text)
    subprocess.run(sh + ["start", "--site", str(site), "--latency", a.latency, "--ttl", "3600"], check=True,
                   stdout=subprocess.DEVNULL)
    run = site / "run"
    conf = (run / "nginx.conf").read_text()
    ts_log = run / "access-ts.log"
    ts_log.unlink(missing_ok=True)
    conf = conf.replace("  access_log off;\n", "")  # "off" at the same level would cancel our log too
    conf = conf.replace("http {", "http {\n  " + LOG_FORMAT + f"\n  access_log {ts_log} archiver_ts;", 1)
    (run / "nginx.conf").write_text(conf)
    subprocess.run(["nginx", "-p", str(run), "-c", str(run / "nginx.conf"), "-e", str(run / "error.log"),
                    "-s", "reload"], check=True)
    time.sleep(1)
    samples: list[tuple[float, float]] = []
    exe = Path(sys.executable).with_name("archiver")
    daemon = subprocess.Popen([str(exe), "run", "--config", str(config), "--log-format", "json"],
                              stdout=subprocess.DEVNULL, stderr=open(out / "daemon.log", "w"))
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < a.minutes * 60 and daemon.poll() is None:
            samples.append((time.monotonic() - t0, rss_mb(daemon.pid)))
            time.sleep(5)
        stop_t = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        stop_s = time.monotonic() - stop_t
    finally:
        if daemon.poll() is None:
            daemon.kill()
        subprocess.run(sh + ["stop", "--site", str(site)], stdout=subprocess.DEVNULL)
    need = {o["ip"]: max(a.delay, float(o["robots"]["crawl_delay"] or 0)) for o in manifest["outlets"]}
    times: dict[str, list[float]] = defaultdict(list)
    line_re = re.compile(r"^(\d+\.\d+) (\d+\.\d+) (\S+) ")
    for line in ts_log.read_text().splitlines():
        m = line_re.match(line)
        if m and m.group(3) in need:
            times[m.group(3)].append(float(m.group(1)) - float(m.group(2)))
    report = {"minutes": a.minutes, "requests": sum(len(v) for v in times.values()), "exit_code": code,
              "stop_seconds": round(stop_s, 1), "hosts": {}}
    ok = code == 0
    for ip, ts in sorted(times.items()):
        ts.sort()
        gaps = [b - a_ for a_, b in zip(ts, ts[1:])]
        # arrival = $msec - $request_time
        smallest = min(gaps) if gaps else None
        # nginx stamps both values from its cached clock (updated once per event-loop wake-up)
        # at 1 ms resolution: a difference of two such stamps is good to a few milliseconds
        held = smallest is None or smallest >= need[ip] - 0.005
        ok = ok and held
        report["hosts"][ip] = {"requests": len(ts), "min_gap_s": round(smallest, 3) if smallest else None,
                               "required_s": need[ip], "held": held}

    def at(minute: float) -> float:
        cands = [r for t, r in samples if t <= minute * 60]
        return round(cands[-1], 1) if cands else 0.0

    report["rss_mb"] = {"at_2_min": at(2), "at_5_min": at(5), f"at_{a.minutes:g}_min": at(a.minutes),
                        "peak": round(max((r for _, r in samples), default=0), 1),
                        "samples_per_minute": [at(m) for m in range(1, int(a.minutes) + 1)]}
    conn_rows = subprocess.run([str(exe), "status", "--config", str(config)], capture_output=True, text=True).stdout
    print(conn_rows)
    print(json.dumps(report, indent=1))
    print(f"per-host delays held on every host: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
