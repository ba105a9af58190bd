#!/usr/bin/env python3
"""One archiving pass over the synthetic news web of ../shared/bench/site, scored against its manifest.

    python bench/site_pass.py [--articles 500] [--outlets 20] [--site /tmp/site] [--out DIR]
                              [--conformance] [--keep-serving] [--capture html|requisites|browser|auto]

Generates the site (skipped when it already matches the parameters), serves it with nginx on
127.0.0.10-30 (serve.sh), writes an archiver config for every outlet (feeds + sitemaps from
robots.txt), runs `archiver crawl`, and prints: pages/s, recall and precision of the archived
set against the manifest's on-topic articles, and (with --conformance) the result of
../shared/checks/warc-conformance on the WARCs written. Exit 0 when recall and precision are
both >= 0.95 (and conformance passed, when asked). With --capture browser or auto, also the
peak memory of the crawl's browser processes (summed RSS, and PSS).

Loopback only; nginx is stopped at the end unless --keep-serving.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("ARCHIVER_SHARED", ROOT.parent / "shared"))
SITE_TOOLS = SHARED / "bench" / "site"


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def make_config(manifest: dict, storage: Path, workers: int | None = None, capture: str = "html") -> str:
    """The bench config; `capture: html` by default, so figures measure pages as before (the
    requisites figures ask for `requisites`)."""
    topics = "\n".join(f"  - name: {key}\n    any: [{json.dumps(word)}]"
                       for key, word in manifest["topic_keywords"].items())
    outlets = []
    for o in manifest["outlets"]:
        feeds = [f"{o['base_url']}/rss.xml"] + ([f"{o['base_url']}/atom.xml"] if o.get("atom") else [])
        outlets.append(f"  - name: {o['slug']}\n    feeds: {json.dumps(feeds)}\n    sitemaps: [auto]")
    return f"""\
storage:
  root: {storage}
  warc:
    operator: "archiver bench"
fetch:
  user_agent: "archiver-bench/1.0"
  concurrency: 32
  per_host_concurrency: 2
  per_host_delay: 0.0
  timeout: 20
  allow_private_networks: true
  # the site asks for Crawl-delay 1-2 s on 5 of its 20 hosts; obeyed, they alone take 17
  # minutes, which measures the delay, not archiver
  max_crawl_delay: 0
discover:
  max_age_days: null
  max_candidates_per_outlet: 100000
  max_sitemaps_per_outlet: 100
extract:
  workers: {"null" if workers is None else workers}
capture:
  mode: {capture}
topics:
{topics}
outlets:
{chr(10).join(outlets)}
"""


def score(manifest: dict, storage: Path, index_url: str | None = None) -> dict:
    from archiver.index import Index

    truth = {a["url"] for a in manifest["articles"] if a["topics"]}
    with Index.open(storage, readonly=True, url=index_url) as idx:
        archived = {r.final_url for r in idx.captures(kind="article", state="archived")}
        states = idx.state_counts("article")
    hit = archived & truth
    return {"on_topic_truth": len(truth), "archived": len(archived), "true_positives": len(hit),
            "recall": round(len(hit) / max(1, len(truth)), 4),
            "precision": round(len(hit) / max(1, len(archived)), 4),
            "missed_sample": sorted(truth - archived)[:5], "false_sample": sorted(archived - truth)[:5],
            "article_states": states}


def warc_bytes(storage: Path) -> dict:
    """WARC bytes per archived article, and the requisites the pass fetched."""
    from archiver.index import Index

    total = sum(p.stat().st_size for p in (storage / "warc").glob("*.warc.gz"))
    with Index.open(storage, readonly=True) as idx:
        kept = idx.state_counts("article").get("archived", 0)
        reqs = sum(idx.state_counts("requisite").values())
    return {"warc_bytes": total, "warc_bytes_per_article": round(total / max(1, kept)), "requisite_rows": reqs}


class BrowserPeak:
    """Peak memory of the crawl's browser processes (Chromium and its renderers), sampled
    every 0.25 s: summed RSS, and PSS (shared pages counted once: what max_browser_mb caps);
    and their CPU time, each process's last sample (a renderer that lived less than 0.25 s
    is missed, so it is a lower bound)."""

    def __init__(self, pid: int):
        import threading

        self.pid, self.rss, self.pss, self.pages = pid, 0, 0, 0
        self.cpu: dict[int, float] = {}  # pid -> utime + stime, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from archiver.browser import process_tree

        while not self._stop.wait(0.25):
            rss = pss = 0
            for pid in process_tree(self.pid)[1:]:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"chromium" not in f.read().split(b"\0", 1)[0]:
                            continue
                    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                        for line in f:
                            if line.startswith(b"Rss:"):
                                rss += int(line.split()[1]) * 1024
                            elif line.startswith(b"Pss:"):
                                pss += int(line.split()[1]) * 1024
                    with open(f"/proc/{pid}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                except OSError:
                    continue
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def figures(self) -> dict:
        if not self.rss:
            return {}
        return {"browser_peak_rss_mb": round(self.rss / 2**20), "browser_peak_pss_mb": round(self.pss / 2**20),
                "browser_cpu_s": round(sum(self.cpu.values()), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=500)
    ap.add_argument("--outlets", type=int, default=20)
    ap.add_argument("--site", default="/tmp/site")
    ap.add_argument("--port", type=int, default=8080, help="port every outlet listens on (127.0.0.10-30)")
    ap.add_argument("--out", default=None, help="storage root (default: a fresh folder under /tmp)")
    ap.add_argument("--conformance", action="store_true", help="run ../shared/checks/warc-conformance afterwards")
    ap.add_argument("--keep-serving", action="store_true")
    ap.add_argument("--workers", type=int, default=None, help="extract.workers (default: one per core)")
    ap.add_argument("--capture", choices=["html", "requisites", "browser", "auto"], default="html",
                    help="capture.mode (requisites: stylesheets, images on the site's CDN host, fonts...; "
                         "browser: every page rendered in Chromium; auto: only pages without article text)")
    a = ap.parse_args()
    if not (SITE_TOOLS / "make_site.py").exists():
        print(f"missing {SITE_TOOLS}/make_site.py (set ARCHIVER_SHARED)", file=sys.stderr)
        return 2
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        print("nginx is not installed (apt-get install nginx-light)", file=sys.stderr)
        return 2
    site = Path(a.site)
    sh([sys.executable, str(SITE_TOOLS / "make_site.py"), "--out", str(site), "--articles", str(a.articles),
        "--outlets", str(a.outlets), "--port", str(a.port), "--quiet"])
    manifest = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    storage = Path(a.out) if a.out else Path(subprocess.check_output(["mktemp", "-d", "/tmp/archiver-bench-XXXX"],
                                                                       text=True).strip())
    storage.mkdir(parents=True, exist_ok=True)
    config = storage / "bench.yaml"
    config.write_text(make_config(manifest, storage, a.workers, a.capture), encoding="utf-8")
    sh(["bash", str(SITE_TOOLS / "serve.sh"), "start", "--site", str(site), "--access-log", "--ttl", "3600"],
       stdout=subprocess.DEVNULL)
    try:
        exe = Path(sys.executable).with_name("archiver")
        t0 = time.monotonic()
        proc = subprocess.Popen([str(exe), "crawl", "--config", str(config), "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        browser_peak = BrowserPeak(proc.pid)
        out, err = proc.communicate()
        proc = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        elapsed = time.monotonic() - t0
        browser_peak.stop()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(proc.stdout)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
    finally:
        if not a.keep_serving:
            subprocess.run(["bash", str(SITE_TOOLS / "serve.sh"), "stop", "--site", str(site)],
                           stdout=subprocess.DEVNULL)
    result = score(manifest, storage)
    fetched = sum(result["article_states"].values())
    result.update({"seconds": round(elapsed, 1), "article_fetches_per_s": round(fetched / elapsed, 1),
                   "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                   "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "storage": str(storage),
                   "capture": a.capture, **browser_peak.figures(), **warc_bytes(storage)})
    print(json.dumps(result, indent=1))
    ok = result["recall"] >= 0.95 and result["precision"] >= 0.95
    if a.conformance:
        checker = SHARED / "checks" / "warc-conformance"
        c = subprocess.run([sys.executable, str(checker), str(storage / "warc"), "--skip", "replayweb"],
                           capture_output=True, text=True)
        tail = c.stdout.strip().splitlines()[-1] if c.stdout.strip() else c.stderr[-500:]
        print(f"warc-conformance: {tail}")
        ok = ok and c.returncode == 0
    print(f"recall {result['recall']:.4f}, precision {result['precision']:.4f}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
