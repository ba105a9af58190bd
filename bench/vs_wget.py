#!/usr/bin/env python3
"""archiver's fetch + WARC path against wget --warc-file, side by side, on the synthetic news web.

    python bench/vs_wget.py [--urls 3000] [--rounds 3] [--latency 0] [--site /tmp/site] [--port 8080]

Generates the site of ../shared/bench/site if needed (20 outlets x 500 articles, about a
minute), serves it with nginx on 127.0.0.10-30 (`--latency MS` delays every request inside
nginx), then runs, in each round and in rotated order:

- `wget -i URLS --warc-file` (serial, as wget is), and
- `bench/fetch_warc.py` (archiver's Fetcher + WarcWriter: per-host clients, bytes recorded at
  the socket, digests while they arrive, one gzip member per record; robots.txt off, since
  wget -i does not read it either),

and prints, per tool, the median over rounds of: pages/s, CPU ms per page (user + system of
the process), peak RSS, WARC MB, and archiver's figures as ratios to wget's in the same round.
With --latency, wget gets a tenth of the URLs (it is serial) and ratios are of pages/s. The
WARCs of the last round are checked with `warcio check`. Loopback only; nginx is stopped at
the end. A site that serve.sh already serves (another benchmark's, with the same latency) is
used as it is: neither regenerated, restarted nor stopped. The load average before and after
is printed with the figures, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("ARCHIVER_SHARED", ROOT.parent / "shared"))
SITE_TOOLS = SHARED / "bench" / "site"


def run_measured(cmd: list[str], cwd: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "rc": os.waitstatus_to_exitcode(status), "out": out}


def warc_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.warc.gz")) / 1e6


def serve(site: Path, latency: int = 0) -> None:
    """(Re)start nginx on the site, with `latency` ms added to every request."""
    tool = ["bash", str(SITE_TOOLS / "serve.sh")]
    subprocess.run(tool + ["stop", "--site", str(site)], capture_output=True)
    subprocess.run(tool + ["start", "--site", str(site), "--ttl", "1800"] + (["--latency", str(latency)] if latency else []),
                   check=True, stdout=subprocess.DEVNULL)


def serving(site: Path) -> str | None:
    """The latency mode ("none", "40", ...) of an nginx serve.sh already runs on `site`, if any."""
    status = subprocess.run(["bash", str(SITE_TOOLS / "serve.sh"), "status", "--site", str(site)],
                            capture_output=True, text=True).stdout
    if "nginx: running" not in status and "proxy: running" not in status:
        return None
    return next((line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("latency:")), "-")


def stop(site: Path) -> None:
    subprocess.run(["bash", str(SITE_TOOLS / "serve.sh"), "stop", "--site", str(site)], capture_output=True)


def compare(site: Path, urls_wanted: int, rounds: int, latency: int, concurrency: int = 32,
            log: bool = True) -> dict:
    """Rounds of wget and archiver's fetch + WARC path on the same URLs (nginx must be serving
    `site` with `latency`); medians, per-round ratios, and whether archiver's WARCs are valid."""
    scratch = Path(tempfile.mkdtemp(prefix="archiver-vs-wget-"))
    try:
        urls = (site / "urls" / "articles-all.txt").read_text().split()[:urls_wanted]
        if len(urls) < urls_wanted:
            print(f"  {site} has only {len(urls)} article URLs (asked for {urls_wanted}): "
                  f"generated with fewer articles per outlet", file=sys.stderr)
        lists = {"archiver": scratch / "urls.txt", "wget": scratch / "urls-wget.txt"}
        lists["archiver"].write_text("\n".join(urls) + "\n")
        lists["wget"].write_text("\n".join(urls[: max(50, len(urls) // 10)] if latency else urls) + "\n")
        n = {k: len(p.read_text().split()) for k, p in lists.items()}
        tools = {
            "wget": lambda out: ["wget", "-nv", "-i", str(lists["wget"]), "-O", "/dev/null", "--tries=1",
                                 "--timeout=30", f"--warc-file={out}/wget", f"--warc-tempdir={out}"],
            "archiver": lambda out: [sys.executable, str(HERE / "fetch_warc.py"), "--urls", str(lists["archiver"]),
                                     "--out", str(out), "-c", str(concurrency)],
        }
        rows: dict[str, list[dict]] = {t: [] for t in tools}
        order = list(tools)
        for rnd in range(rounds):
            for name in order:
                out = scratch / f"{name}-{rnd}"
                out.mkdir()
                r = run_measured(tools[name](out), out)
                if r["rc"] != 0 and name == "archiver":
                    raise RuntimeError(f"archiver fetch + WARC run failed (exit {r['rc']})")
                r["pages"] = n[name]
                r["pages_per_s"] = n[name] / r["wall"]
                r["cpu_ms"] = 1000 * r["cpu"] / n[name]
                r["warc_mb"] = warc_mb(out)
                rows[name].append(r)
                if log:
                    print(f"  round {rnd + 1} {name:9s} {n[name]:6d} pages {r['wall']:7.2f} s "
                          f"{r['pages_per_s']:8.1f} pages/s {r['cpu_ms']:6.2f} CPU ms/page {r['rss_mb']:6.1f} MB RSS",
                          flush=True)
                if rnd < rounds - 1:
                    shutil.rmtree(out)
            order = order[1:] + order[:1]  # rotate, so neither tool always runs on a warm cache
        ratios = [rows["archiver"][i]["pages_per_s"] / rows["wget"][i]["pages_per_s"] for i in range(rounds)]
        cpu_ratios = [rows["archiver"][i]["cpu_ms"] / rows["wget"][i]["cpu_ms"] for i in range(rounds)]
        med = {t: {k: statistics.median(r[k] for r in rs) for k in ("pages_per_s", "cpu_ms", "rss_mb", "warc_mb")}
               for t, rs in rows.items()}
        check = subprocess.run([str(Path(sys.executable).with_name("warcio")), "check",
                                *map(str, (scratch / f"archiver-{rounds - 1}").rglob("*.warc.gz"))],
                               capture_output=True, text=True)
        return {"latency_ms": latency, "rounds": rounds, "pages": n, "median": med,
                "ratio_pages_per_s": statistics.median(ratios), "ratio_cpu": statistics.median(cpu_ratios),
                "round_ratios": ratios, "warcs_valid": check.returncode == 0}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def needs_tools() -> str | None:
    if not (SITE_TOOLS / "make_site.py").exists():
        return f"missing {SITE_TOOLS}/make_site.py (set ARCHIVER_SHARED)"
    if not shutil.which("wget") or not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        return "needs wget and nginx (apt-get install wget nginx-light)"
    return None


def make_site(site: Path, port: int) -> None:
    subprocess.run([sys.executable, str(SITE_TOOLS / "make_site.py"), "--out", str(site), "--port", str(port),
                    "--quiet"], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=3000, help="article URLs per run (outlets interleaved)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency", type=int, default=0, help="ms added to every request by nginx")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--site", type=Path, default=Path("/tmp/site"))
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--keep-serving", action="store_true")
    a = ap.parse_args()
    missing = needs_tools()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    mode = serving(a.site)
    ours = mode is None
    if ours:
        make_site(a.site, a.port)
        serve(a.site, a.latency)
    elif mode != (str(a.latency) if a.latency else "none"):
        print(f"{a.site} is already served with latency {mode} (not {a.latency or 'none'}); "
              f"use --latency to match or another --site and --port", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    try:
        r = compare(a.site, a.urls, a.rounds, a.latency, a.concurrency)
    finally:
        if ours and not a.keep_serving:
            stop(a.site)
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    n, med = r["pages"], r["median"]
    print(f"\nfetch + WARC, {n['archiver']} pages (wget: {n['wget']}), latency {a.latency} ms, "
          f"median of {a.rounds} rounds, {os.cpu_count()} cores, load average {load['before'][0]:.2f} before "
          f"and {load['after'][0]:.2f} after (1 min)")
    print(f"{'tool':10s} {'pages/s':>9s} {'CPU ms/page':>12s} {'peak RSS MB':>12s} {'WARC MB':>9s} "
          f"{'x wget pages/s':>15s} {'x wget CPU':>11s}")
    for t in ("wget", "archiver"):
        m = med[t]
        rel = (f"{r['ratio_pages_per_s']:15.2f} {r['ratio_cpu']:11.2f}" if t == "archiver" else f"{1:15.2f} {1:11.2f}")
        print(f"{t:10s} {m['pages_per_s']:9.1f} {m['cpu_ms']:12.2f} {m['rss_mb']:12.1f} {m['warc_mb']:9.1f} {rel}")
    target = 20.0 if a.latency else 1.0
    got = r["ratio_pages_per_s"]
    print(f"\ntarget: archiver >= {target:g}x wget pages/s: {'MET' if got >= target else 'NOT MET'} ({got:.2f}x); "
          f"archiver WARCs: {'valid' if r['warcs_valid'] else 'INVALID'} (warcio check)")
    print(json.dumps({"latency_ms": a.latency, "ratio_pages_per_s": round(got, 3), "median": med, "load": load}))
    return 0 if r["warcs_valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
