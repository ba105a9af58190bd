#!/usr/bin/env python3
"""Every performance figure of the README in one run, with the targets each must meet.

    python bench/run.py [--site /tmp/site] [--port 8080] [--rounds 3] [--out /tmp/archiver-bench-run]

On the synthetic news web of ../shared/bench/site (20 outlets x 500 articles, generated on
first use in about a minute, served by nginx on 127.0.0.10-30), in this order:

1. fetch + WARC against `wget -i --warc-file`, same 3,000 URLs, rounds rotated (vs_wget.py);
2. the same with 100 ms added to every request: archiver on 1,000 URLs, serial wget on 100;
3. end to end (`archiver crawl`: robots.txt, feeds, sitemaps, fetch, WARC, extraction in
   worker processes, topic filter, text files, index) on 1,000 and on 10,000 articles, every
   article kept (a topic that matches "the"), with the peak memory of the main process and
   of the largest extraction worker, at the default `fetch.concurrency` (16), then the
   10,000 again at 32 (each place holds a fetched page until it is written). The 1,000 runs
   twice, each time followed by the reference pipeline (../shared/bench/site/ref_pipeline.py:
   httpx -> warcio -> readability-lxml on 2 processes) on the article URLs the crawl captured, both timed from
   outside, start-up included; pages/s are medians of the 2 runs of each;
4. capture modes: `requisites` on 1,000 articles (against html mode's pages/s at 1,000) and
   `browser` on 100 (Chromium, 2 pages at once: pages/s and the browser's peak PSS);
5. `archiver dump` and `archiver verify` of every capture of the 10,000-article archive;
6. config load of 5,000 outlets (config_load.py) and adaptive polling, simulated
   (adaptive_polling.py);
7. `archiver serve` on that archive: every kind of page of the UI and the replay origin,
   p95 (browse.py): search, /api/search and capture pages, and the slowest kind.

Prints one table (figure, archiver, peer: wget or the reference pipeline, ratio, target, met)
and a JSON line. Exit 0 when every run worked (targets not met are reported, not fatal).
Loopback only; nginx is stopped at the end. About 10 minutes on 2 cores once the site exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from browse import POOLED, measure as measure_browse, percentile, pooled, slowest  # noqa: E402
from site_pass import SITE_TOOLS, BrowserPeak, make_config, warc_bytes  # noqa: E402
from vs_wget import compare, make_site, needs_tools, serve, stop  # noqa: E402

EXE = Path(sys.executable).with_name("archiver")
SLIM_MANIFEST = ("import json, sys; m = json.load(open(sys.argv[1], encoding='utf-8')); "
                 "print(json.dumps({'topic_keywords': m['topic_keywords'], 'outlets': m['outlets']}))")
RESOURCES = re.compile(r"resources: ([\d.]+) s CPU, peak memory (\d+) MB(?:; extraction workers ([\d.]+) s CPU"
                       r"(?:, peak memory (\d+) MB)?)?")


def set_aside(path: Path) -> None:
    """Move a previous run's output out of the way, deleted only when the benchmark ends: on
    ext4 without a journal, as here, creating files in the 30 s after thousands were deleted
    costs ~1 ms of kernel CPU per file (find_inode_bit skips recently freed inodes), which at
    two text files per article measured the deletion, not archiver."""
    if path.exists():
        trash = path.parent / ".set-aside"
        trash.mkdir(parents=True, exist_ok=True)
        path.rename(trash / f"{path.name}-{time.time_ns()}")


def empty_set_aside(out: Path) -> None:
    shutil.rmtree(out / ".set-aside", ignore_errors=True)


def crawl(site: Path, storage: Path, per_outlet: int | None, concurrency: int = 16, capture: str = "html") -> dict:
    """`archiver crawl` of the whole site (or `per_outlet` articles of each outlet), all kept,
    with `fetch.concurrency` (16 is archiver's default) and `capture.mode`."""
    # read in a child, keeping only what the config needs: the whole manifest is ~250 MB of
    # Python objects, and ru_maxrss of a process started later by this one would include them
    manifest = json.loads(subprocess.check_output([sys.executable, "-c", SLIM_MANIFEST, str(site / "manifest.json")]))
    set_aside(storage)
    storage.mkdir(parents=True)
    config = make_config(manifest, storage, capture=capture).replace("topics:\n", 'topics:\n  - name: everything\n    any: ["the"]\n', 1)
    if per_outlet:
        config = config.replace("max_candidates_per_outlet: 100000", f"max_candidates_per_outlet: {per_outlet}")
    config = config.replace("  concurrency: 32\n", f"  concurrency: {concurrency}\n")
    (storage / "bench.yaml").write_text(config, encoding="utf-8")
    t0 = time.perf_counter()
    child = subprocess.Popen([str(EXE), "crawl", "--config", str(storage / "bench.yaml"), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    browser = BrowserPeak(child.pid)
    out, err = child.communicate()
    wall = time.perf_counter() - t0
    browser.stop()
    proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    if proc.returncode != 0:
        raise RuntimeError(f"archiver crawl failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    m = RESOURCES.search(proc.stdout)
    if m is None:
        raise RuntimeError("archiver crawl printed no resources line")
    conn = sqlite3.connect(storage / "index.sqlite3")
    states = dict(conn.execute("SELECT state, COUNT(*) FROM captures WHERE kind = 'article' GROUP BY state"))
    conn.close()
    fetched = sum(states.values())
    main_cpu, worker_cpu = float(m.group(1)), float(m.group(3) or 0)
    return {"articles": fetched, "archived": states.get("archived", 0), "seconds": wall,
            "pages_per_s": fetched / wall, "main_rss_mb": int(m.group(2)),
            "worker_rss_mb": int(m.group(4) or 0), "main_cpu_ms": 1000 * main_cpu / fetched,
            "extract_cpu_ms": 1000 * worker_cpu / fetched, **browser.figures(), **warc_bytes(storage)}


def article_urls(storage: Path, dest: Path) -> Path:
    """The article URLs a crawl fetched (every state: a 404 is a page fetched too), one a line."""
    conn = sqlite3.connect(storage / "index.sqlite3")
    urls = [u for (u,) in conn.execute("SELECT url FROM captures WHERE kind = 'article' ORDER BY id")]
    conn.close()
    dest.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return dest


def reference(urls: Path, out: Path) -> dict:
    """The reference pipeline, ../shared/bench/site/ref_pipeline.py (httpx -> warcio
    WARCWriter(gzip) -> readability-lxml on 2 processes, 16 connections as archiver's default),
    on `urls`, timed from outside as `crawl()` is (start-up counts). pages/s: the URLs given
    over the wall time."""
    set_aside(out)
    out.mkdir(parents=True)
    wanted = len(urls.read_text(encoding="utf-8").split())
    cmd = [sys.executable, str(SITE_TOOLS / "ref_pipeline.py"), "--urls", str(urls), "-c", "16", "--extract",
           "--workers", "2", "--warc", str(out / "reference.warc.gz")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ref_pipeline.py failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if r["ok"] < 0.9 * wanted:  # the site's own errors are a few percent; more is a broken run
        raise RuntimeError(f"ref_pipeline.py got {r['ok']} answers of 200 for {wanted} URLs")
    return {"pages": wanted, "main_cpu_s": r["cpu_self_s"], "worker_cpu_s": r["cpu_children_s"],
            "main_rss_mb": r["maxrss_self_MB"], "worker_rss_mb": r["maxrss_largest_child_MB"],
            "inner_seconds": r["elapsed_s"], "raw": r, "seconds": wall, "pages_per_s": wanted / wall}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {proc.stderr[-1000:]}")
    return time.perf_counter() - t0


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", type=Path, default=Path("/tmp/site"))
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/archiver-bench-run"), help="archives written here")
    a = ap.parse_args()
    missing = needs_tools()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    started = time.perf_counter()

    def step(what: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {what}", flush=True)

    empty_set_aside(a.out)  # an interrupted run's; minutes pass before the first crawl
    step(f"site {a.site} (generated on first use)")
    make_site(a.site, a.port)
    rows: list[tuple[str, str, str, str, str, bool | None]] = []
    result: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine()}
    try:
        step(f"fetch + WARC vs wget, 3,000 pages, {a.rounds} rounds")
        serve(a.site, 0)
        fw = result["fetch_warc"] = compare(a.site, 3000, a.rounds, 0, log=False)
        med = fw["median"]
        rows.append(("fetch + WARC pages/s", f"{med['archiver']['pages_per_s']:.0f}", f"{med['wget']['pages_per_s']:.0f}",
                     f"{fw['ratio_pages_per_s']:.2f}x", ">= 2.0x wget", fw["ratio_pages_per_s"] >= 2.0 and fw["warcs_valid"]))
        rows.append(("fetch + WARC CPU ms/page", f"{med['archiver']['cpu_ms']:.2f}", f"{med['wget']['cpu_ms']:.2f}",
                     f"{fw['ratio_cpu']:.2f}x", "", None))
        rows.append(("fetch + WARC peak RSS MB", f"{med['archiver']['rss_mb']:.0f}", f"{med['wget']['rss_mb']:.0f}",
                     f"{med['archiver']['rss_mb'] / med['wget']['rss_mb']:.2f}x", "", None))
        rows.append(("fetch + WARC WARC MB", f"{med['archiver']['warc_mb']:.1f}", f"{med['wget']['warc_mb']:.1f}",
                     f"{med['archiver']['warc_mb'] / med['wget']['warc_mb']:.2f}x", "valid (warcio check)",
                     fw["warcs_valid"]))

        step(f"fetch + WARC vs serial wget with 100 ms latency, {a.rounds} rounds")
        serve(a.site, 100)
        lat = result["latency_100ms"] = compare(a.site, 1000, a.rounds, 100, log=False)
        med = lat["median"]
        rows.append(("100 ms latency pages/s", f"{med['archiver']['pages_per_s']:.0f}", f"{med['wget']['pages_per_s']:.1f}",
                     f"{lat['ratio_pages_per_s']:.1f}x", ">= 20x wget", lat["ratio_pages_per_s"] >= 20))

        serve(a.site, 0)
        runs, refs = [], []
        for rnd in (1, 2):
            step(f"end to end, 1,000 articles, run {rnd} of 2")
            runs.append(crawl(a.site, a.out / "e2e-1k", 50))
            urls = article_urls(a.out / "e2e-1k", a.out / "e2e-1k-urls.txt")
            step(f"reference pipeline on the same {runs[-1]['articles']} URLs, run {rnd} of 2")
            refs.append(reference(urls, a.out / "reference-1k"))
        # the last run's archive stays; its speed is the median of both, its memory the larger
        small = result["e2e_1k"] = {**runs[-1], "pages_per_s": statistics.median(r["pages_per_s"] for r in runs),
                                    "main_rss_mb": max(r["main_rss_mb"] for r in runs),
                                    "worker_rss_mb": max(r["worker_rss_mb"] for r in runs),
                                    "runs_pages_per_s": [r["pages_per_s"] for r in runs]}
        ref = result["reference_1k"] = {
            "pages": refs[-1]["pages"], "runs": refs,
            **{k: statistics.median(r[k] for r in refs)
               for k in ("pages_per_s", "seconds", "main_cpu_s", "worker_cpu_s", "main_rss_mb", "worker_rss_mb")}}
        vs_ref = result["e2e_1k_vs_reference"] = statistics.median(
            run["pages_per_s"] / r["pages_per_s"] for run, r in zip(runs, refs))
        step("end to end, 10,000 articles")
        big = result["e2e_10k"] = crawl(a.site, a.out / "e2e-10k", None)
        step("end to end, 10,000 articles, fetch.concurrency 32")
        wide = result["e2e_10k_c32"] = crawl(a.site, a.out / "e2e-10k-c32", None, concurrency=32)
        rows.append(("end to end 1k vs reference", f"{small['pages_per_s']:.1f}", f"{ref['pages_per_s']:.1f}",
                     f"{vs_ref:.2f}x", ">= 1.5x reference", vs_ref >= 1.5))
        rows.append(("end to end 10k pages/s", f"{big['pages_per_s']:.0f}", "", "", ">= 130",
                     big["pages_per_s"] >= 130))
        rows.append(("extraction CPU ms/page", f"{big['extract_cpu_ms']:.1f}", "", "", "<= 20",
                     big["extract_cpu_ms"] <= 20))
        rows.append(("main process CPU ms/page", f"{big['main_cpu_ms']:.1f}", "", "", "", None))
        rows.append(("main peak RSS flat 1k->10k", f"{small['main_rss_mb']} / {big['main_rss_mb']} MB", "", "",
                     "<= 80, <= 2 MB apart", max(small["main_rss_mb"], big["main_rss_mb"]) <= 80
                     and abs(big["main_rss_mb"] - small["main_rss_mb"]) <= 2))
        rows.append(("worker peak RSS MB 1k / 10k", f"{small['worker_rss_mb']} / {big['worker_rss_mb']}", "", "",
                     "<= 60", 0 < big["worker_rss_mb"] <= 60))
        rows.append(("10k at concurrency 32: pages/s", f"{wide['pages_per_s']:.0f}", "", "", "", None))
        rows.append(("10k at concurrency 32: main MB", f"{wide['main_rss_mb']}", "", "", "", None))

        step("capture mode requisites, 1,000 articles (images on the site's CDN host)")
        req = result["requisites_1k"] = crawl(a.site, a.out / "requisites-1k", 50, capture="requisites")
        share = req["pages_per_s"] / small["pages_per_s"]
        rows.append(("requisites mode pages/s", f"{req['pages_per_s']:.0f}", "", f"{share:.2f}x html",
                     ">= 0.60x html mode", share >= 0.6))
        rows.append(("requisites mode WARC KB/article", f"{req['warc_bytes_per_article'] / 1024:.0f}",
                     "", f"html {small['warc_bytes_per_article'] / 1024:.0f}", "", None))
        step("capture mode browser, 100 articles, 2 pages at once")
        brw = result["browser_100"] = crawl(a.site, a.out / "browser-100", 5, capture="browser")
        rows.append(("browser mode pages/s", f"{brw['pages_per_s']:.2f}", "", "", ">= 3", brw["pages_per_s"] >= 3))
        rows.append(("browser mode peak PSS MB", f"{brw.get('browser_peak_pss_mb', 0)}", "", "", "<= 600",
                     0 < brw.get("browser_peak_pss_mb", 0) <= 600))
        # CPU per rendered page, Chromium's and archiver's: the cores over it bound pages/s
        per_page = brw.get("browser_cpu_s", 0) / max(1, brw["articles"]) + (brw["main_cpu_ms"] + brw["extract_cpu_ms"]) / 1000
        result["browser_100"]["cpu_s_per_page"] = per_page
        rows.append(("browser mode CPU s/page", f"{per_page:.2f}", "", "", "", None))
        rows.append(("  so at most pages/s", f"{(os.cpu_count() or 1) / per_page:.2f}" if per_page else "", "", "",
                     "", None))
    finally:
        stop(a.site)

    storage = a.out / "e2e-10k"
    n = big["archived"]
    step(f"dump and verify {n} captures")
    dump_dir = a.out / "dump"
    set_aside(dump_dir)
    dump_s = timed([str(EXE), "dump", "--config", str(storage / "bench.yaml"), "--out", str(dump_dir)])
    verify_s = timed([str(EXE), "verify", str(dump_dir), "--config", str(storage / "bench.yaml")])
    result["dump"] = {"captures": n, "dump_s": dump_s, "verify_s": verify_s}
    rows.append(("dump captures/s", f"{n / dump_s:.0f}", "", "", ">= 500", n / dump_s >= 500))
    rows.append(("verify captures/s", f"{n / verify_s:.0f}", "", "", ">= 500", n / verify_s >= 500))

    step("config load, 5,000 outlets (config_load.py)")
    cl = subprocess.run([sys.executable, str(HERE / "config_load.py"), "--rounds", "3"], capture_output=True, text=True)
    if cl.returncode != 0:
        raise RuntimeError(f"config_load.py failed: {cl.stderr[-1000:]}")
    loads = result["config_load"] = json.loads(cl.stdout.strip().splitlines()[-1])["config_load"]
    worst = max(max(f["load_s"], f["check_config_s"]) for f in loads.values())
    rows.append(("config load 5,000 outlets s", " / ".join(f"{f['load_s']:.2f}" for f in loads.values()), "", "",
                 "< 2 (check-config too)", worst < 2))
    step("adaptive polling, simulated (adaptive_polling.py)")
    ap = subprocess.run([sys.executable, str(HERE / "adaptive_polling.py")], capture_output=True, text=True)
    m = re.search(r"adaptive: ([\d.]+)% fewer feed fetches .*?, ([\d.]+)% of items captured", ap.stdout)
    if m is None:
        raise RuntimeError(f"adaptive_polling.py printed no result: {ap.stdout[-500:]} {ap.stderr[-500:]}")
    fewer, captured = float(m.group(1)), float(m.group(2))
    result["adaptive_polling"] = {"fewer_fetches_pct": fewer, "captured_pct": captured}
    rows.append(("adaptive polling: fewer fetches", f"{fewer:.1f}%", "", "", ">= 50%", fewer >= 50))
    rows.append(("adaptive polling: captured", f"{captured:.2f}%", "", "", ">= 99%", captured >= 99))

    step("browse: archiver serve on the 10,000-capture archive")
    br = measure_browse(storage, requests=200)
    result["browse"] = {k: {"p50": percentile(v, 50), "p95": percentile(v, 95), "max": max(v)}
                        for k, v in br["times"].items()}
    result["browse_start_s"] = br["start_s"]
    figures = pooled(br["times"])
    result["browse_pooled"] = {k: {"p50": percentile(v, 50), "p95": percentile(v, 95), "max": max(v)}
                               for k, v in figures.items()}
    for name, _ in POOLED:
        p95 = percentile(figures[name], 95)
        rows.append((f"browse {name} p95 ms", f"{p95:.1f}", "", "", "< 100", p95 < 100))
    worst, p95 = slowest(br["times"]), percentile(figures["slowest kind"], 95)
    rows.append((f"browse slowest page p95 ms ({worst})", f"{p95:.1f}", "", "", "< 1000", p95 < 1000))
    step("done")
    empty_set_aside(a.out)

    print(f"\narchiver {subprocess.run([str(EXE), '--version'], capture_output=True, text=True).stdout.strip()}"
          f" on {result['machine']}, {result['date']}; medians of {a.rounds} rounds where wget runs alongside,"
          f" of 2 where the reference pipeline does")
    widths = (28, 12, 9, 8, 22)
    head = ("figure", "archiver", "peer", "ratio", "target")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  met")
    for *cells, met in rows:
        flag = "" if met is None else ("yes" if met else "NO")
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + "  " + flag)
    missed = [r[0] for r in rows if r[5] is False]
    print(f"\ntargets met: {sum(1 for r in rows if r[5])} of {sum(1 for r in rows if r[5] is not None)}"
          + (f"; not met: {', '.join(missed)}" if missed else ""))
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
